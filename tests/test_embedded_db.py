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

import asyncpg
import pytest

from database import Database
from local_postgres import LocalPostgres

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

def bot_has_check() -> bool:
    return BOT.exists() and "--check" in BOT.read_text(encoding="utf-8")


needs_bot_check = pytest.mark.skipif(not bot_has_check(), reason="bot.py --check not written yet")


def run_check(data_dir: Path, **env: str) -> subprocess.CompletedProcess:
    """`python bot.py --check` with a dummy token, the embedded data in `data_dir`."""
    child = {k: v for k, v in os.environ.items()
             if k not in ("DATABASE_URL", "TEST_DATABASE_URL", "DISCORD_BOT_TOKEN", "GUILD_ID")}
    child.update(DISCORD_BOT_TOKEN="dummy-token-for-tests", GUILD_ID="123456789012345678",
                 ENV="dev", XPBOT_DATA_DIR=str(data_dir), **env)
    return subprocess.run([sys.executable, str(BOT), "--check"], cwd=data_dir.parent, env=child,
                          capture_output=True, text=True, timeout=180)


@needs_bot_check
def test_check_without_database_url_starts_the_embedded_server_and_stops_it(data_root):
    data_dir = data_root / "botdata"
    done = run_check(data_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert any(data_dir.rglob("postgresql.conf")), "no PostgreSQL data folder was created"
    assert str(data_dir) in done.stdout + done.stderr, "the log does not say where the data lives"
    assert running_postmaster(data_dir) is None, "the embedded server was left running"


@needs_bot_check
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


@needs_bot_check
def test_check_with_database_url_starts_no_embedded_server(data_root, database_url):
    data_dir = data_root / "never-created"
    done = run_check(data_dir, DATABASE_URL=database_url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not data_dir.exists()


START_EMBEDDED = "from local_postgres import LocalPostgres; print(LocalPostgres('.xpbot-pgdata').start())"


@needs_bot_check
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
