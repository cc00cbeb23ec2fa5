"""Character lookups as a guild grows, against a real PostgreSQL.

    python bench/bench_scale.py [--sizes 1000,100000,10000x100] [--calls 200]

A size is characters in one guild (`100000`) or guilds x characters each (`10000x100`: one
million characters over ten thousand guilds, each call in a random one). The database is
filled through COPY (plus a small second guild), names signed as the bot signs them, then
each database call a command makes is timed `--calls` times: an exact name, a misspelt name
(no exact match: the close-match path) through the database's signature index and through
the in-memory name index large guilds keep, autocomplete by prefix and by a run inside the
name, the leaderboard's first page and a deep one (paged from a row), `/xp`'s active
character. Printed side by side, p50/p99, with the p99 ratio of the last size to the first.
A watchdog task measures how long the event loop was blocked at most (the gap between
`asyncio.sleep(0)` turns) during the misspelt lookups and while the name index was built:
the other guilds of the process wait that long.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import random
import time

from common import fresh_database, postgres_server, print_table

import database
from asyncpg import BitString
from database import Database, _trigram_keys
from helpers import drop_database
from rules import letter_signature

GUILD, SMALL = 1, 0
INDEX_MIN = database.NAME_INDEX_MIN


def names(count: int, rng: random.Random) -> list[str]:
    """Fantasy names: two to four syllables, some with a second name."""
    onsets = ["", "b", "br", "c", "d", "dr", "f", "g", "gr", "h", "j", "k", "kh", "l", "m", "n", "p", "qu", "r",
              "s", "sh", "st", "t", "th", "tr", "v", "w", "y", "z"]
    vowels = ["a", "e", "i", "o", "u", "ae", "ai", "ia", "ei", "ou", "y"]
    codas = ["", "", "n", "r", "l", "s", "th", "nd", "rk", "x", "m", "ll", "sh"]

    def word() -> str:
        return "".join(rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas)
                       for _ in range(rng.randint(2, 3))).capitalize()
    made: set[str] = set()
    while len(made) < count:
        made.add(word() + (" " + word() if rng.random() < 0.4 else ""))
    return sorted(made)


async def fill(db: Database, guilds: int, per_guild: int, rng: random.Random) -> dict[int, list[str]]:
    """`guilds` guilds (ids 1, 2, ...) of `per_guild` characters, one per player, each active;
    names signed the way Database.sign_names signs them, computed here and copied in."""
    by_guild = {g + 1: names(per_guild, rng) for g in range(guilds)}
    users, characters = [], []
    for guild, made in by_guild.items():
        for i, name in enumerate(made):
            bits, length = letter_signature(name)
            users.append((guild, i + 1))
            characters.append((guild, i + 1, name, rng.randint(0, 400_000), BitString(bits), length,
                               _trigram_keys(guild, name.lower())))
    async with db.pool.acquire() as con:
        await con.copy_records_to_table("users", records=users, columns=["guild_id", "user_id"], timeout=3600)
        await con.copy_records_to_table(
            "characters", records=characters,
            columns=["guild_id", "user_id", "name", "xp", "name_letters", "name_length", "name_trigrams"],
            timeout=3600)
        await con.execute("UPDATE users u SET active_character_id = c.id FROM characters c "
                          "WHERE c.guild_id = u.guild_id AND c.user_id = u.user_id", timeout=3600)
    await db.pool.execute("VACUUM ANALYZE", timeout=3600)
    await db.create_character(SMALL, 1, "Luna")
    return by_guild


def misspell(name: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(name) - 1)
    return name[:i] + name[i + 1:]


async def timed(calls: int, call) -> list[float]:
    samples = []
    for i in range(calls):
        start = time.perf_counter()
        await call(i)
        samples.append((time.perf_counter() - start) * 1000)
    return sorted(samples)


def pct(samples: list[float], q: float) -> float:
    return samples[min(len(samples) - 1, int(q * len(samples)))]


class Watchdog:
    """The longest the event loop went without running this task (its other tasks wait as long)."""

    def __init__(self) -> None:
        self.lag, self._stop = 0.0, asyncio.Event()
        self._task = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while not self._stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0)
            self.lag = max(self.lag, time.perf_counter() - before)

    async def stop(self) -> float:
        self._stop.set()
        await self._task
        return self.lag * 1000


async def measure(server: str, size: str, calls: int) -> dict[str, tuple[float, float]]:
    guilds, per_guild = map(int, size.split("x")) if "x" in size else (1, int(size))
    url = await fresh_database(server)
    rng = random.Random(per_guild * guilds)
    try:
        async with Database(url, max_size=4) as db:
            by_guild = await fill(db, guilds, per_guild, rng)
            where = [rng.randrange(guilds) + 1 for _ in range(calls)]
            picks = [rng.choice(by_guild[g]) for g in where]
            typos = [misspell(n, rng) for n in picks]
            inside = [n[2:5] if len(n[2:5].strip()) == 3 else n[:3] for n in picks]
            del by_guild
            gc.collect()
            gc.freeze()  # as the bot does once it is ready: what start-up made is left out of full collections

            async def misspelt(i: int) -> None:
                try:
                    await db.find_character(where[i], typos[i])
                except Exception:
                    pass  # ambiguous or not found: the lookup still ran

            results = {}
            results["exact name"] = await timed(calls, lambda i: db.find_character(where[i], picks[i]))
            database.NAME_INDEX_MIN = 10 ** 9  # no in-memory index: the database's signatures
            dog = Watchdog()
            results["misspelt name (database)"] = await timed(calls, misspelt)
            lag_database = await dog.stop()
            database.NAME_INDEX_MIN = INDEX_MIN  # as the bot runs: an in-memory index for large guilds
            db._name_index_small.clear()  # (the lookups above found every guild "small")
            dog = Watchdog()
            start = time.perf_counter()
            for g in set(where):
                await db._name_index(g)  # starts the build; lookups meanwhile use the database
            await asyncio.gather(*db._name_index_loads.values())
            build = (time.perf_counter() - start) * 1000
            lag_build = await dog.stop()
            dog = Watchdog()
            results["misspelt name (as the bot looks)"] = await timed(calls, misspelt)
            lag_memory = await dog.stop()
            results["autocomplete, start of name"] = await timed(
                calls, lambda i: db.character_choices(where[i], picks[i][:3]))
            results["autocomplete, inside a name"] = await timed(
                calls, lambda i: db.character_choices(where[i], inside[i]))
            results["leaderboard page 1"] = await timed(calls, lambda i: db.leaderboard(where[i], page=0))
            deep = {g: (await db.pool.fetchrow(
                "SELECT xp, id FROM characters WHERE guild_id = $1 AND retired_at IS NULL "
                "ORDER BY -xp, id OFFSET $2 LIMIT 1", g, max(0, per_guild - 20))) for g in set(where)}
            results["leaderboard deep page"] = await timed(
                calls, lambda i: db.leaderboard(where[i], after=tuple(deep[where[i]])))
            results["/xp (active)"] = await timed(
                calls, lambda i: db.get_active_character(where[i], i % per_guild + 1))
            out = {what: (pct(s, 0.5), pct(s, 0.99)) for what, s in results.items()}
            out["building the name index (once)"] = (build, build)
            out["loop blocked: misspelt (database)"] = (lag_database, lag_database)
            out["loop blocked: building the index"] = (lag_build, lag_build)
            out["loop blocked: misspelt (as the bot)"] = (lag_memory, lag_memory)
            return out
    finally:
        database.NAME_INDEX_MIN = INDEX_MIN
        await drop_database(server, url)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,100000,10000x100")
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    sizes = args.sizes.split(",")
    with postgres_server() as server:
        figures = {size: await measure(server, size, args.calls) for size in sizes}
    rows = []
    for what in figures[sizes[0]]:
        row = [what]
        for size in sizes:
            p50, p99 = figures[size][what]
            row.append(f"{p50:.2f} / {p99:.2f}")
        if len(sizes) > 1:
            row.append(f"{figures[sizes[1]][what][1] / max(figures[sizes[0]][what][1], 0.01):.1f}x")
        rows.append(tuple(row))
    print_table("Database calls, ms p50 / p99, by how many characters (loop figures: ms at most)", rows,
                ("call", *(label(s) for s in sizes), *(["p99, 2nd size / 1st"] if len(sizes) > 1 else [])))


def label(size: str) -> str:
    if "x" in size:
        guilds, each = map(int, size.split("x"))
        return f"{guilds * each:,} over {guilds:,} guilds"
    return f"{int(size):,} in one guild"


if __name__ == "__main__":
    asyncio.run(main())
