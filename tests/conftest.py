"""Shared test rig: a real PostgreSQL server, a fresh database per test session, and the
fixtures every test module uses (no test module imports from another).

TEST_DATABASE_URL wins when set; otherwise a throwaway server is started from the
binaries the requirements ship (as root it runs as `nobody` or in a user namespace).
"""
from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot import XPBot  # noqa: E402
from database import Database  # noqa: E402
from fake_discord import fake_discord, run_client  # noqa: E402,F401 - `fake_discord`: the fake Discord
from helpers import TABLES, create_database, drop_database, local_server_at, postgres_server  # noqa: E402
from local_postgres import throwaway_server  # noqa: E402
from world import World  # noqa: E402


@pytest.fixture(scope="session")
def server_url():
    """A PostgreSQL server URL (maintenance database) for the whole session."""
    with postgres_server(os.environ.get("TEST_DATABASE_URL")) as url:
        yield url


@pytest.fixture(scope="session")
def make_database(server_url):
    """Factory: a new empty database on the server; all are dropped at the end."""
    made: list[str] = []

    def make() -> str:
        made.append(asyncio.run(create_database(server_url)))
        return made[-1]

    yield make
    for url in made:
        try:
            asyncio.run(drop_database(server_url, url))
        except Exception:  # a failed drop must not hide the test results
            pass


@pytest.fixture(scope="session")
def database_url(make_database):
    """One database for the session, schema applied once; tests start from empty tables."""
    url = make_database()

    async def init():
        async with Database(url, max_size=1):
            pass
    asyncio.run(init())
    return url


@pytest.fixture
async def db(database_url):
    """A connected Database on empty tables."""
    async with Database(database_url, min_size=1, max_size=10) as database:
        await database.pool.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
        yield database


@pytest.fixture
async def second_process(database_url):
    """A second, independent pool on the same database: another bot process."""
    async with Database(database_url, min_size=8, max_size=8) as other:
        yield other


@pytest.fixture
def own_server():
    """A PostgreSQL server this test may stop and start (not the shared one): a LocalPostgres."""
    with throwaway_server(prefix="xpbot-outage-") as url:
        yield local_server_at(url)


@pytest.fixture
async def w(fake_discord, db, database_url):
    """A World (tests/world.py) with the real XPBot running in it, in dev mode for its guild."""
    world = World(fake_discord, db)
    world.client = XPBot(Database(database_url, max_size=5), env="dev", guild_id=world.guild.id)
    async with run_client(world.client):
        yield world
