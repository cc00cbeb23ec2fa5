"""Shared test rig: a real PostgreSQL server and a fresh database per test session.

TEST_DATABASE_URL wins when set; otherwise a throwaway server is started from the
binaries the requirements ship (as root it runs as `nobody` or in a user namespace).
"""
from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import asyncpg
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from database import Database  # noqa: E402
from local_postgres import LocalPostgres  # noqa: E402

TABLES = "config, users, characters, xp_grants, processed_messages, settings_log"


@pytest.fixture(scope="session")
def server_url():
    """A PostgreSQL server URL (maintenance database) for the whole session."""
    if os.environ.get("TEST_DATABASE_URL"):
        yield os.environ["TEST_DATABASE_URL"]
        return
    work = Path(tempfile.mkdtemp(prefix="xpbot-pg-"))
    os.chmod(work, 0o755)
    server = LocalPostgres(work / "data", throwaway=True)
    try:
        yield server.start()
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(work, ignore_errors=True)


async def _admin(url: str, sql: str) -> None:
    con = await asyncpg.connect(url)
    try:
        await con.execute(sql)
    finally:
        await con.close()


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name` instead."""
    from urllib.parse import urlsplit, urlunsplit
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
def make_database(server_url):
    """Factory: a new empty database on the server; all are dropped at the end."""
    made: list[str] = []

    def make() -> str:
        name = f"xpbot_test_{uuid.uuid4().hex[:12]}"
        asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}"'))
        made.append(name)
        return with_database(server_url, name)

    yield make
    for name in made:
        try:
            asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
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
    database = Database(database_url, min_size=1, max_size=10)
    await database.connect()
    await database.pool.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    try:
        yield database
    finally:
        await database.close()


# The fake Discord harness (tests/fake_discord.py): `fake_discord` fixture for end-to-end tests.
from fake_discord import fake_discord  # noqa: E402,F401
