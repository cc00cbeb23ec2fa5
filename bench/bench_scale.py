"""Character lookups as a guild grows, against a real PostgreSQL.

    python bench/bench_scale.py [--sizes 1000,100000] [--calls 200]

For each size, one guild is filled with that many characters through COPY (plus a small
second guild), then each database call a command makes is timed `--calls` times: an exact
name, a misspelt name (no exact match: the close-match path), autocomplete, the
leaderboard's first and a deep page, `/xp`'s active character. Printed side by side with
p50/p99 and the ratio between the largest and smallest size. During the misspelt lookups a
watchdog task measures how long the event loop was blocked at most (the gap between
`asyncio.sleep(0)` turns) — the other guilds of the process wait that long.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import time

from common import fresh_database, postgres_server, print_table

from database import Database
from helpers import drop_database

GUILD, SMALL = 1, 2


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


async def fill(db: Database, size: int, rng: random.Random) -> list[str]:
    made = names(size, rng)
    async with db.pool.acquire() as con:
        await con.copy_records_to_table("users", records=[(GUILD, i + 1) for i in range(size)],
                                        columns=["guild_id", "user_id"])
        await con.copy_records_to_table(
            "characters", records=[(GUILD, i + 1, n, rng.randint(0, 400_000)) for i, n in enumerate(made)],
            columns=["guild_id", "user_id", "name", "xp"])
        await con.execute("UPDATE users u SET active_character_id = c.id FROM characters c "
                          "WHERE c.guild_id = u.guild_id AND c.user_id = u.user_id")
    await db.sign_names()  # what the bot does at start-up for names it didn't write itself
    await db.pool.execute("VACUUM ANALYZE characters")
    await db.create_character(SMALL, 1, "Luna")
    return made


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


async def measure(server: str, size: int, calls: int) -> dict[str, tuple[float, float]]:
    url = await fresh_database(server)
    rng = random.Random(size)
    try:
        async with Database(url, max_size=4) as db:
            made = await fill(db, size, rng)
            picks = [rng.choice(made) for _ in range(calls)]
            typos = [misspell(n, rng) for n in picks]
            lag = 0.0
            stop = asyncio.Event()

            async def watchdog() -> None:
                nonlocal lag
                while not stop.is_set():
                    before = time.perf_counter()
                    await asyncio.sleep(0)
                    lag = max(lag, time.perf_counter() - before)

            results = {}
            results["exact name"] = await timed(calls, lambda i: db.find_character(GUILD, picks[i]))
            dog = asyncio.ensure_future(watchdog())

            async def misspelt(i: int) -> None:
                try:
                    await db.find_character(GUILD, typos[i])
                except Exception:
                    pass  # ambiguous or not found: the lookup still ran
            results["misspelt name"] = await timed(calls, misspelt)
            stop.set()
            await dog
            results["autocomplete"] = await timed(calls, lambda i: db.character_choices(GUILD, picks[i][:3]))
            results["leaderboard page 1"] = await timed(calls, lambda i: db.leaderboard(GUILD, page=0))
            results["leaderboard deep page"] = await timed(
                calls, lambda i: db.leaderboard(GUILD, page=max(0, size // 10 - 1)))
            results["/xp (active)"] = await timed(calls, lambda i: db.get_active_character(GUILD, i % size + 1))
            out = {what: (pct(s, 0.5), pct(s, 0.99)) for what, s in results.items()}
            out["event loop blocked at most"] = (lag * 1000, lag * 1000)
            return out
    finally:
        await drop_database(server, url)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with postgres_server() as server:
        figures = {size: await measure(server, size, args.calls) for size in sizes}
    rows = []
    for what in figures[sizes[0]]:
        row = [what]
        for size in sizes:
            p50, p99 = figures[size][what]
            row.append(f"{p50:.2f} / {p99:.2f}")
        row.append(f"{figures[sizes[-1]][what][1] / max(figures[sizes[0]][what][1], 0.01):.1f}x")
        rows.append(tuple(row))
    print_table("Database calls, ms p50 / p99, by characters in one guild", rows,
                ("call", *(f"{s:,} characters" for s in sizes), "p99 ratio"))


if __name__ == "__main__":
    asyncio.run(main())
