"""The embedded default database: a PostgreSQL kept in a data folder, started when
DATABASE_URL is unset, reused on the next start, stopped on shutdown.

These tests start their own servers in temporary folders (never the shared test server).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from urllib.parse import parse_qs, urlsplit, urlunsplit

import asyncpg
import pytest

import platforms
from database import Database
from local_postgres import PASSFILE, LocalPostgres, find_postgres_bin, throwaway_server

ROOT = Path(__file__).resolve().parent.parent
BOT = ROOT / "bot.py"
G, PLAYER = 9001, 9100


def running_postmaster(data_dir: Path) -> int | None:
    """The pid of a live PostgreSQL server on `data_dir` (found anywhere below it), else None."""
    for pidfile in Path(data_dir).rglob("postmaster.pid"):
        try:
            pid = int(pidfile.read_text().split()[0])
            os.kill(pid, 0)
        except (OSError, ValueError, IndexError):
            continue
        return pid
    return None


def wait_until_gone(pid: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.1)


def pgdata_in(folder: Path) -> Path:
    """The PostgreSQL data directory somewhere inside `folder`."""
    return next(Path(folder).rglob("postgresql.conf")).parent


@pytest.fixture
def data_root():
    """An empty folder a non-root server user can reach; any server left in it is stopped."""
    work = Path(tempfile.mkdtemp(prefix="xpbot-embedded-"))
    os.chmod(work, 0o755)
    try:
        yield work
    finally:
        for pidfile in work.rglob("postmaster.pid"):  # a failed test may leave a server up
            pid = running_postmaster(pidfile.parent)
            if pid:
                os.kill(pid, signal.SIGINT)  # PostgreSQL's "fast" shutdown
                wait_until_gone(pid)
        shutil.rmtree(work, ignore_errors=True)


async def test_local_server_keeps_its_data_across_stop_and_start(data_root):
    server = LocalPostgres(data_root / "pgdata")
    async with Database(server.start(), max_size=2) as db:
        await db.create_character(G, PLAYER, "Luna")
    server.stop()
    assert running_postmaster(data_root / "pgdata") is None

    again = LocalPostgres(data_root / "pgdata")  # a new process would build a new instance
    async with Database(again.start(), max_size=2) as db:
        assert [c.name for c in await db.list_characters(G, PLAYER)] == ["Luna"]
    again.stop()


async def test_starting_a_running_server_again_reuses_it(data_root):
    first = LocalPostgres(data_root / "pgdata")
    url = first.start()
    pid = running_postmaster(data_root / "pgdata")
    assert pid is not None

    assert first.start() == url  # same instance
    second = LocalPostgres(data_root / "pgdata")  # e.g. the bot restarted after a crash
    assert second.start() == url
    assert running_postmaster(data_root / "pgdata") == pid
    con = await asyncpg.connect(url)
    try:
        assert await con.fetchval("SELECT 1") == 1
    finally:
        await con.close()
    second.stop()
    assert running_postmaster(data_root / "pgdata") is None


# -- the bot's embedded default (python bot.py without DATABASE_URL) -----------------------


def run_check(data_dir: Path, **env: str) -> subprocess.CompletedProcess:
    """`python bot.py --check` with a dummy token, the embedded data in `data_dir`."""
    child = {k: v for k, v in os.environ.items()
             if k not in ("DATABASE_URL", "TEST_DATABASE_URL", "DISCORD_BOT_TOKEN", "GUILD_ID")}
    child.update(DISCORD_BOT_TOKEN="dummy-token-for-tests", GUILD_ID="123456789012345678",
                 ENV="dev", XPBOT_DATA_DIR=str(data_dir), **env)
    return subprocess.run([sys.executable, str(BOT), "--check"], cwd=data_dir.parent, env=child,
                          capture_output=True, text=True, timeout=180)


def test_check_without_database_url_starts_the_embedded_server_and_stops_it(data_root):
    data_dir = data_root / "botdata"
    done = run_check(data_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert any(data_dir.rglob("postgresql.conf")), "no PostgreSQL data folder was created"
    assert str(data_dir) in done.stdout + done.stderr, "the log does not say where the data lives"
    assert running_postmaster(data_dir) is None, "the embedded server was left running"


async def test_embedded_data_survives_a_restart_of_the_bot(data_root):
    data_dir = data_root / "botdata"
    assert run_check(data_dir).returncode == 0
    pgdata = pgdata_in(data_dir)
    server = LocalPostgres(pgdata)
    async with Database(server.start(), max_size=2) as db:
        await db.create_character(G, PLAYER, "Bram")
    server.stop()

    done = run_check(data_dir)  # the bot's second start reuses the folder
    assert done.returncode == 0, done.stdout + done.stderr
    assert pgdata_in(data_dir) == pgdata
    server = LocalPostgres(pgdata)
    async with Database(server.start(), max_size=2) as db:
        assert [c.name for c in await db.list_characters(G, PLAYER)] == ["Bram"]
    server.stop()


def test_check_with_database_url_starts_no_embedded_server(data_root, database_url):
    data_dir = data_root / "never-created"
    done = run_check(data_dir, DATABASE_URL=database_url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not data_dir.exists()


START_EMBEDDED = "from local_postgres import LocalPostgres; print(LocalPostgres('.xpbot-pgdata').start())"


def test_the_setup_guides_way_to_reach_the_embedded_server_works_and_the_bot_stops_it(data_root):
    assert START_EMBEDDED in (ROOT / "POSTGRES_SETUP.md").read_text(encoding="utf-8")
    snippet = START_EMBEDDED.replace("'.xpbot-pgdata'", repr(str(data_root / "botdata")))
    started = subprocess.run([sys.executable, "-c", snippet], cwd=ROOT, capture_output=True,
                             text=True, timeout=120, check=True)
    url = started.stdout.strip()
    assert url.startswith("postgresql://") and running_postmaster(data_root / "botdata")

    done = run_check(data_root / "botdata")  # reuses the running server, then stops it
    assert done.returncode == 0, done.stdout + done.stderr
    assert running_postmaster(data_root / "botdata") is None


# -- the real bot process on the embedded database, stopped the way Docker and Fly stop it ----

async def test_bot_keeps_its_embedded_data_across_a_restart_and_stops_the_server_on_sigterm(
        data_root, fake_discord, monkeypatch):
    from fake_discord import bot_process
    monkeypatch.delenv("DATABASE_URL", raising=False)
    fake = fake_discord
    guild = fake.add_guild("RP Server")
    channel = fake.add_channel(guild, "rp")
    alice = fake.add_member(guild, "alice")
    data_dir = data_root / "botdata"
    env = {"DISCORD_BOT_TOKEN": "dummy-token-for-tests", "GUILD_ID": str(guild.id), "ENV": "dev",
           "XPBOT_DATA_DIR": str(data_dir)}

    async with bot_process(fake, env=env) as bot:
        await bot.wait_for_output("is online")
        assert f"using the embedded PostgreSQL in {data_dir}" in bot.output
        assert running_postmaster(data_dir) is not None
        created = await fake.slash(guild, channel, alice, "xp_create", {"name": "Luna"})
        assert "Luna" in (await created.followup()).content
        assert await bot.stop() == 0  # SIGTERM
    assert running_postmaster(data_dir) is None, "the embedded server outlived the bot"

    async with bot_process(fake, env=env) as bot:  # the next start reuses the data folder
        await bot.wait_for_output("is online")
        shown = await (await fake.slash(guild, channel, alice, "xp")).followup()
        assert shown.embeds[0]["title"] == "Luna"
        assert await bot.stop() == 0
    assert running_postmaster(data_dir) is None


# -- who can reach the embedded server --------------------------------------------------------

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
RUNUSER = shutil.which("runuser") or "runuser"
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (to act as another local user)")
needs_sockets = pytest.mark.skipif(not platforms.current().unix_sockets, reason="no Unix sockets here")


def query(url: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}


def with_database(url: str, name: str) -> str:
    """What conftest and bench do to reach another database on the same server."""
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def password_of(data_dir: Path) -> str:
    return (Path(data_dir) / PASSFILE).read_text().strip().rsplit(":", 1)[1]


def nobody_can_run(exe: Path) -> bool:
    return subprocess.run([RUNUSER, "-u", "nobody", "--", str(exe), "--version"],
                          capture_output=True).returncode == 0


def system_bindir() -> Path | None:
    """PostgreSQL binaries `nobody` can run (not under a private home), with psql."""
    if not IS_ROOT or not shutil.which(RUNUSER):
        return None
    for bindir in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (bindir / "psql").exists() and nobody_can_run(bindir / "postgres"):
            return bindir
    return None


SYSTEM_BIN = system_bindir()
needs_system_bin = pytest.mark.skipif(SYSTEM_BIN is None,
                                      reason="needs root and PostgreSQL binaries `nobody` can run")


def psql(*args: str, as_nobody: bool = False) -> subprocess.CompletedProcess:
    exe = SYSTEM_BIN / "psql" if SYSTEM_BIN else find_postgres_bin() / "psql"
    prefix = [RUNUSER, "-u", "nobody", "--"] if as_nobody else []
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return subprocess.run([*prefix, str(exe), "-X", "-w", "-At", *args], capture_output=True, text=True,
                          timeout=60, env=env, cwd="/")


def conninfo(**kw: object) -> str:
    return " ".join(f"{k}='{v}'" for k, v in kw.items())


@needs_root
@needs_sockets
@needs_system_bin
async def test_no_other_local_user_can_reach_the_embedded_server(data_root):
    server = LocalPostgres(data_root / "pgdata")
    url = server.start()
    try:
        q = query(url)
        socket_dir, port = Path(q["host"]), int(q["port"])
        assert socket_dir.stat().st_mode & 0o077 == 0, "the socket folder is open to others"
        assert Path(q["passfile"]).stat().st_mode & 0o777 == 0o600
        # the bot's user gets in with the URL alone, through asyncpg and libpq (psql)
        con = await asyncpg.connect(url)
        try:
            assert await con.fetchval("SHOW listen_addresses") == ""  # no TCP listener at all
        finally:
            await con.close()
        assert psql("-d", url, "-c", "SELECT 42").stdout.strip() == "42"
        # ... but not even the bot's own user without the password: no trust authentication
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(host=str(socket_dir), port=port, user="postgres", password="guess",
                                  database="postgres")
        hba = [line.split() for line in (server.data_dir / "pg_hba.conf").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
        assert hba and all(rule[-1] == "scram-sha-256" for rule in hba)
        # another local user: neither through the socket nor over TCP, nor by reading the password
        for target in (conninfo(host=socket_dir, port=port), conninfo(host="127.0.0.1", port=port)):
            tried = psql("-d", f"{target} user=postgres dbname=postgres", "-c", "SELECT 1", as_nobody=True)
            assert tried.returncode != 0, f"nobody connected via {target}"
            assert "Permission denied" in tried.stderr or "refused" in tried.stderr, tried.stderr
        peek = subprocess.run([RUNUSER, "-u", "nobody", "--", "cat", q["passfile"]], capture_output=True)
        assert peek.returncode != 0
    finally:
        server.stop()


@needs_root
@needs_system_bin
async def test_on_tcp_as_on_windows_another_user_cannot_log_in(data_root):
    server = LocalPostgres(data_root / "pgdata", tcp=True)  # Windows' way, and throwaway servers'
    url = server.start()
    try:
        parts = urlsplit(url)
        assert parts.hostname == "127.0.0.1" and parts.password is None
        assert psql("-d", url, "-c", "SELECT 42").stdout.strip() == "42"
        tried = psql("-d", conninfo(host="127.0.0.1", port=parts.port, user="postgres", dbname="postgres"),
                     "-c", "SELECT 1", as_nobody=True)
        assert tried.returncode != 0 and "password" in tried.stderr, tried.stderr
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(host="127.0.0.1", port=parts.port, user="postgres", password="guess",
                                  database="postgres")
    finally:
        server.stop()


async def test_the_password_is_in_no_url_log_or_output(data_root, caplog, capfd):
    import logging
    caplog.set_level(logging.DEBUG)
    server = LocalPostgres(data_root / "pgdata")
    url = server.start()
    again = LocalPostgres(data_root / "pgdata").start()  # reused
    server.stop()
    secret = password_of(data_root / "pgdata")
    assert len(secret) >= 40 and secret not in url and secret not in again
    out = capfd.readouterr()
    for text in (out.out, out.err, caplog.text, (data_root / "pgdata" / "server.log").read_text()):
        assert secret not in text


@pytest.mark.parametrize("tcp", [False, True], ids=["socket", "tcp"])
async def test_paths_with_spaces_and_swapping_the_database_in_the_url(data_root, tcp):
    if not tcp and not platforms.current().unix_sockets:
        pytest.skip("no Unix sockets here")
    data_dir = data_root / "x y" / "My Data"
    server = LocalPostgres(data_dir, tcp=tcp)
    url = server.start()
    try:
        assert " " not in url
        con = await asyncpg.connect(url)
        try:
            await con.execute('CREATE DATABASE "xp bot"')
        finally:
            await con.close()
        other = with_database(url, "xp%20bot")
        con = await asyncpg.connect(other)
        try:
            assert await con.fetchval("SELECT current_database()") == "xp bot"
        finally:
            await con.close()
        assert psql("-d", with_database(url, "postgres"), "-c", "SELECT 7").stdout.strip() == "7"
    finally:
        server.stop()
    assert running_postmaster(data_dir) is None


@needs_sockets
async def test_a_data_folder_too_deep_for_a_socket_gets_a_private_socket_folder(data_root):
    deep = data_root / ("d" * 60) / ("e" * 60) / "pgdata"
    server = LocalPostgres(deep)
    url = server.start()
    socket_dir = Path(query(url)["host"])
    try:
        assert socket_dir != deep and socket_dir.stat().st_mode & 0o777 == 0o700
        async with Database(url, max_size=2) as db:
            await db.create_character(G, PLAYER, "Deep")
        server.stop()
        assert not socket_dir.exists(), "the socket folder was left behind"
        assert server.start() == url  # a restart keeps the URL (pools reconnect to it)
        async with Database(url, max_size=2) as db:
            assert [c.name for c in await db.list_characters(G, PLAYER)] == ["Deep"]
    finally:
        server.stop()


# -- throwaway servers for tests and benchmarks -------------------------------------------------

async def test_throwaway_server_yields_a_url_and_leaves_nothing_behind():
    with throwaway_server(prefix="xpbot-tt-") as url:
        work = Path(query(url)["passfile"]).parent.parent
        assert work.name.startswith("xpbot-tt-")
        assert urlsplit(url).hostname == "127.0.0.1" and urlsplit(url).port  # tests may proxy it
        con = await asyncpg.connect(url)
        try:
            await con.execute("CREATE DATABASE scratch")
        finally:
            await con.close()
        con = await asyncpg.connect(with_database(url, "scratch"))
        try:
            assert await con.fetchval("SELECT current_database()") == "scratch"
        finally:
            await con.close()
        pid = running_postmaster(work)
        assert pid
    wait_until_gone(pid, 5)
    assert not work.exists()
    with pytest.raises(OSError):
        os.kill(pid, 0)

    with pytest.raises(KeyError), throwaway_server() as url:  # a failing test body still cleans up
        work = Path(query(url)["passfile"]).parent.parent
        raise KeyError
    assert not work.exists()


# -- as root: a private home, `nobody`, and folders of older versions ---------------------------

def ownership(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid, st.st_mode


@pytest.fixture
def private_home():
    """A root-only folder like /root on a fresh VPS, with a git checkout inside."""
    home = Path(tempfile.mkdtemp(prefix="xpbot-home-"))
    os.chmod(home, 0o700)
    checkout = home / "xp-bot"
    checkout.mkdir(mode=0o755)
    subprocess.run(["git", "init", "-q", str(checkout)], check=True)
    try:
        yield home, checkout
    finally:
        for pidfile in home.rglob("postmaster.pid"):
            pid = running_postmaster(pidfile.parent)
            if pid:
                os.kill(pid, signal.SIGINT)
                wait_until_gone(pid)
        shutil.rmtree(home, ignore_errors=True)


BINDIRS = [pytest.param(None, id="default-binaries"),
           pytest.param("system", id="system-binaries", marks=needs_system_bin)]


@needs_root
@pytest.mark.parametrize("bindir", BINDIRS)
async def test_as_root_in_a_private_home_only_the_data_folder_is_new(private_home, bindir, monkeypatch):
    if bindir:
        monkeypatch.setenv("PG_BIN", str(SYSTEM_BIN))  # binaries `nobody` could run: old versions used it
    home, checkout = private_home
    before = {p: ownership(p) for p in (home, checkout)}
    server = LocalPostgres(checkout / ".xpbot-pgdata")
    url = server.start()
    try:
        async with Database(url, max_size=2) as db:
            await db.create_character(G, PLAYER, "Root")
    finally:
        server.stop()
    assert {p: ownership(p) for p in (home, checkout)} == before
    assert (checkout / ".xpbot-pgdata").stat().st_uid == 0
    assert subprocess.run(["git", "-C", str(checkout), "status"], capture_output=True).returncode == 0


@needs_root
@pytest.mark.parametrize("bindir", BINDIRS)
def test_the_readmes_commands_work_as_root_in_a_private_home(private_home, bindir):
    home, checkout = private_home
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, text=True)
    if listed.returncode == 0:  # the files of this checkout, not .env or a data folder
        for name in filter(None, listed.stdout.split("\0")):
            if (ROOT / name).is_file():
                (checkout / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, checkout / name)
    else:
        shutil.copytree(ROOT, checkout, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
            ".git", ".env", ".xpbot-pgdata*", "__pycache__", ".pytest_cache"))
    before = {p: ownership(p) for p in (home, checkout)}
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "TEST_DATABASE_URL", "XPBOT_DATA_DIR", "PG_BIN")}
    env.update(DISCORD_BOT_TOKEN="dummy-token-for-tests", GUILD_ID="123456789012345678", ENV="dev",
               **({"PG_BIN": str(SYSTEM_BIN)} if bindir else {}))
    done = subprocess.run([sys.executable, "bot.py", "--check"], cwd=checkout, env=env, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert running_postmaster(checkout / ".xpbot-pgdata") is None
    assert password_of(checkout / ".xpbot-pgdata") not in done.stdout + done.stderr
    assert {p: ownership(p) for p in (home, checkout)} == before
    status = subprocess.run(["git", "status", "--short"], cwd=checkout, capture_output=True, text=True)
    assert status.returncode == 0, status.stderr


@needs_root
def test_as_root_a_folder_private_to_another_user_gets_a_clear_error(data_root):
    import pwd
    nobody = pwd.getpwnam("nobody")
    theirs = data_root / "someone-elses-home"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, nobody.pw_uid, nobody.pw_gid)
    with pytest.raises(RuntimeError, match="can't reach .*someone-elses-home"):
        LocalPostgres(theirs / "pgdata").start()
    assert not (theirs / "pgdata").exists() and theirs.stat().st_uid == nobody.pw_uid


@needs_root
@needs_system_bin
async def test_as_root_without_user_namespaces_the_server_runs_as_nobody(data_root, monkeypatch):
    """macOS (or Linux with user namespaces off): only the data folder becomes nobody's."""
    monkeypatch.setenv("PG_BIN", str(SYSTEM_BIN))
    import pwd
    nobody = pwd.getpwnam("nobody").pw_uid
    before = ownership(data_root)
    server = LocalPostgres(data_root / "pgdata", platform=platforms.MACOS)
    url = server.start()
    try:
        pid = running_postmaster(data_root / "pgdata")
        assert Path(f"/proc/{pid}").stat().st_uid == nobody
        assert (data_root / "pgdata").stat().st_uid == nobody
        assert ownership(data_root) == before
        async with Database(url, max_size=2) as db:
            await db.create_character(G, PLAYER, "Nobody")
    finally:
        server.stop()

    private = data_root / "private"
    private.mkdir(mode=0o700)
    blocked = LocalPostgres(private / "pgdata", platform=platforms.MACOS)
    with pytest.raises(RuntimeError, match="can't reach"):
        blocked.start()
    assert not (private / "pgdata").exists() and ownership(private)[0] == 0


@needs_root
@needs_system_bin
async def test_a_normal_user_runs_the_server_as_itself(data_root):
    """The non-root path, as `nobody` with the system's Python (it can't read root's)."""
    home = data_root / "home"
    home.mkdir()
    import pwd
    nobody = pwd.getpwnam("nobody")
    os.chown(home, nobody.pw_uid, nobody.pw_gid)
    python = shutil.which("python3", path="/usr/bin:/bin")
    if not python or not nobody_can_run(Path(python)):
        pytest.skip("no Python that nobody can run")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from local_postgres import LocalPostgres; "
            "s = LocalPostgres(sys.argv[2]); print(s.start()) if sys.argv[3] == 'start' else s.stop()")
    env = {"PATH": "/usr/bin:/bin", "PG_BIN": str(SYSTEM_BIN), "HOME": str(home)}

    def as_nobody(action: str) -> str:
        done = subprocess.run([RUNUSER, "-u", "nobody", "--", python, "-c", code, str(ROOT),
                               str(home / "pgdata"), action], capture_output=True, text=True, env=env,
                              timeout=120, cwd=home)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout.strip()
    url = as_nobody("start")
    try:
        pid = running_postmaster(home / "pgdata")
        assert Path(f"/proc/{pid}").stat().st_uid == nobody.pw_uid
        async with Database(url, max_size=2) as db:  # root may enter nobody's folder
            await db.create_character(G, PLAYER, "Plain")
    finally:
        as_nobody("stop")
    assert running_postmaster(home / "pgdata") is None


# -- data folders of the previous version (trust authentication on 127.0.0.1) -----------------

def legacy_module(folder: Path) -> Path:
    """local_postgres.py as first committed (TCP + trust; as root it ran the server as nobody)."""
    try:
        shas = subprocess.run(["git", "-C", str(ROOT), "log", "--diff-filter=A", "--format=%H", "--",
                               "local_postgres.py"], capture_output=True, text=True, check=True).stdout.split()
        text = subprocess.run(["git", "-C", str(ROOT), "show", f"{shas[-1]}:local_postgres.py"],
                              capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError, IndexError):
        pytest.skip("the previous version is not in this checkout's history")
    assert "--auth=trust" in text
    (folder / "legacy_local_postgres.py").write_text(text)
    return folder


def legacy(folder: Path, data_dir: Path, action: str, **env: str) -> str:
    # as the old bot did: stop() only after start() (which reuses a running server)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from legacy_local_postgres import LocalPostgres; "
            "s = LocalPostgres(sys.argv[2]); url = s.start(); print(url) if sys.argv[3] == 'start' else s.stop()")
    done = subprocess.run([sys.executable, "-c", code, str(folder), str(data_dir), action], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **env})
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


async def tcp_refused(url: str) -> bool:
    try:
        con = await asyncpg.connect(url, timeout=5)
    except OSError:
        return True
    await con.close()
    return False


@pytest.mark.parametrize("left_running", [False, True], ids=["stopped", "still-running"])
async def test_a_data_folder_of_the_previous_version_keeps_its_data_and_loses_trust(data_root, left_running):
    old_code = legacy_module(data_root)
    data_dir = data_root / "pgdata"
    old_url = legacy(old_code, data_dir, "start")
    assert old_url.startswith("postgresql://postgres@127.0.0.1:")
    async with Database(old_url, max_size=2) as db:
        await db.create_character(G, PLAYER, "Old")
    if not left_running:  # else: the bot crashed and is started on the new code
        legacy(old_code, data_dir, "stop")

    server = LocalPostgres(data_dir)
    url = server.start()
    try:
        async with Database(url, max_size=2) as db:
            assert [c.name for c in await db.list_characters(G, PLAYER)] == ["Old"]
        assert await tcp_refused(old_url), "the old trust listener on 127.0.0.1 is still there"
        assert "trust" not in "".join(line for line in (data_dir / "pg_hba.conf").read_text().splitlines()
                                      if not line.startswith("#"))
        assert LocalPostgres(data_dir).start() == url  # converted once, then reused
    finally:
        server.stop()
    assert running_postmaster(data_dir) is None


@needs_root
@needs_system_bin
async def test_as_root_a_checkout_an_older_version_gave_to_nobody_is_given_back(private_home, monkeypatch):
    monkeypatch.setenv("PG_BIN", str(SYSTEM_BIN))
    import pwd
    nobody = pwd.getpwnam("nobody").pw_uid
    work = Path(tempfile.mkdtemp(prefix="xpbot-legacy-"))
    os.chmod(work, 0o755)
    checkout = work / "xp-bot"  # reachable by nobody, so the old version could start
    checkout.mkdir(mode=0o755)
    subprocess.run(["git", "init", "-q", str(checkout)], check=True)
    data_dir = checkout / ".xpbot-pgdata"
    try:
        old_code = legacy_module(work)
        old_url = legacy(old_code, data_dir, "start", PG_BIN=str(SYSTEM_BIN))
        async with Database(old_url, max_size=2) as db:
            await db.create_character(G, PLAYER, "Given")
        legacy(old_code, data_dir, "stop", PG_BIN=str(SYSTEM_BIN))
        assert checkout.stat().st_uid == nobody and data_dir.stat().st_uid == nobody  # the old damage

        server = LocalPostgres(data_dir)
        url = server.start()
        try:
            async with Database(url, max_size=2) as db:
                assert [c.name for c in await db.list_characters(G, PLAYER)] == ["Given"]
        finally:
            server.stop()
        assert checkout.stat().st_uid == 0 and data_dir.stat().st_uid == 0
        assert subprocess.run(["git", "-C", str(checkout), "status"], capture_output=True).returncode == 0
    finally:
        pid = running_postmaster(data_dir)
        if pid:
            os.kill(pid, signal.SIGINT)
            wait_until_gone(pid)
        shutil.rmtree(work, ignore_errors=True)


@needs_sockets
async def test_deleting_the_password_file_gives_a_new_password_at_the_next_start(data_root):
    server = LocalPostgres(data_root / "pgdata")
    server.start()
    first = password_of(data_root / "pgdata")
    (data_root / "pgdata" / PASSFILE).unlink()  # even while it runs: the next start restarts it
    url = LocalPostgres(data_root / "pgdata").start()
    try:
        assert password_of(data_root / "pgdata") != first
        q = query(url)
        con = await asyncpg.connect(url)
        await con.close()
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(host=q["host"], port=int(q["port"]), user="postgres", password=first,
                                  database="postgres")
    finally:
        server.stop()
