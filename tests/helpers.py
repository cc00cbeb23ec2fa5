"""Helpers shared by the tests (through conftest.py and the test modules) and the benchmarks
(bench/common.py puts tests/ on sys.path): PostgreSQL servers and databases, polling, and
setting a guild up in the database. Nothing here needs pytest.
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
import uuid
from typing import Any, Awaitable, Callable, Iterable, Iterator, Optional, Union
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from database import Database
from local_postgres import LocalPostgres, throwaway_server

TABLES = ("config", "users", "characters", "xp_grants", "processed_messages", "settings_log", "xp_requests",
          "level_roles", "level_role_members", "level_role_failures",
          "quests", "quest_dms", "quest_pcs", "quest_monsters", "guild_character_counts")  # all of ours
STATE_TABLES = tuple(t for t in TABLES if t != "processed_messages")  # without the delivery log

# -- servers and databases ------------------------------------------------------------------


@contextlib.contextmanager
def postgres_server(url: Optional[str], prefix: str = "xpbot-pg-") -> Iterator[str]:
    """`url` when given (a server someone else runs), else a throwaway local server's URL."""
    if url:
        yield url
        return
    with throwaway_server(prefix=prefix) as started:
        yield started


def local_server_at(url: str) -> LocalPostgres:
    """A handle on the local server behind `url` (one `throwaway_server` started), to stop and
    start it: its data directory is asked of the server itself."""
    async def data_directory() -> str:
        con = await asyncpg.connect(url)
        try:
            return await con.fetchval("SHOW data_directory")
        finally:
            await con.close()
    server = LocalPostgres(asyncio.run(data_directory()), port=urlsplit(url).port, throwaway=True)
    server.start()  # already running: this only picks the identity pg_ctl must run as
    return server


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name` instead."""
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


async def _execute(url: str, sql: str) -> None:
    con = await asyncpg.connect(url)
    try:
        await con.execute(sql)
    finally:
        await con.close()


async def create_database(server_url: str, prefix: str = "xpbot_test_") -> str:
    """A new empty database on the server; returns its URL."""
    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    await _execute(server_url, f'CREATE DATABASE "{name}"')
    return with_database(server_url, name)


async def drop_database(server_url: str, url: str) -> None:
    """Drop the database `url` names, even with connections still open to it."""
    name = urlsplit(url).path.lstrip("/")
    await _execute(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- polling ---------------------------------------------------------------------------------

Predicate = Callable[[], Union[Any, Awaitable[Any]]]


async def eventually(predicate: Predicate, what: str, timeout: float = 10, interval: float = 0.02) -> Any:
    """Poll `predicate` (plain or async) until it returns something true, and return that;
    fails with "<what> within <timeout>s" when it has not by then."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} within {timeout}s")
        await asyncio.sleep(interval)


async def messages_counted(db: Database, n: int) -> bool:
    """At least `n` messages are recorded as processed (awarded, or refused as duplicates)."""
    return await db.pool.fetchval("SELECT count(*) FROM processed_messages") >= n


# -- what the database holds -----------------------------------------------------------------

async def setup_guild(db: Database, guild_id: int, *, rp: Iterable[int] = (), hf: Iterable[int] = (),
                      rate: Optional[int] = None, cap: Optional[int] = None, hf_settings: Optional[dict] = None,
                      characters: Iterable[tuple[int, str]] = ()) -> dict[tuple[int, str], int]:
    """Track the channels, set the rules, create the characters (user, name) in this order (the
    last one of a player is active); returns (user, name) -> character id."""
    for channel in rp:
        await db.add_channel(guild_id, "rp", channel)
    for channel in hf:
        await db.add_channel(guild_id, "hf", channel)
    if rate is not None:
        await db.set_rp_rate(guild_id, rate)
    if cap is not None:
        await db.set_rp_cap(guild_id, cap)
    if hf_settings is not None:
        await db.set_hf(guild_id, **hf_settings)
    ids = {}
    for user, name in characters:
        ids[(user, name)] = (await db.create_character(guild_id, user, name)).id
    return ids


async def rp_rows(db: Database) -> dict[int, list[int]]:
    """user -> [xp, daily_xp, char_buffer] of every character (one character per player)."""
    rows = await db.pool.fetch("SELECT user_id, xp, daily_xp, char_buffer FROM characters")
    return {r["user_id"]: [r["xp"], r["daily_xp"], r["char_buffer"]] for r in rows}


async def snapshot(db: Database, tables: Iterable[str], ignore: tuple[str, ...] = ()) -> dict[str, list]:
    """Every row of these tables (without the `ignore` columns), to show nothing changed."""
    out = {}
    for table in tables:
        rows = await db.pool.fetch(f"SELECT * FROM {table}")
        out[table] = sorted((tuple(v for k, v in r.items() if k not in ignore) for r in rows), key=repr)
    return out
