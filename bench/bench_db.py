"""The XP write path against a real PostgreSQL, side by side with the database's ceiling.

    python bench/bench_db.py [--players 200] [--messages 40000]

Prints, in one run: pgbench's single-row UPDATE rate (the ceiling), one `award_rp`
call per message, and the bot's XPQueue (messages that arrive together share one
round trip), each with its round trips per message and whether every character's
xp / daily_xp / char_buffer equals the one-at-a-time model. Two pools on one
database stand for two bot processes.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import time

from common import fresh_database, pgbench_tps, postgres_server, print_table

from database import Database, RPMessage
from helpers import drop_database, rp_rows, setup_guild
from oracle import OneAtATime
from xp_queue import XPQueue

GUILD, CHANNEL, RATE, CAP = 1, 10, 50, 1_000_000


async def setup(url: str, players: int) -> None:
    async with Database(url, max_size=2) as db:
        await setup_guild(db, GUILD, rp=[CHANNEL], rate=RATE, cap=CAP,
                          characters=[(p, f"Char{p}") for p in range(players)])


async def exact(url: str, model: OneAtATime) -> bool:
    async with Database(url, max_size=1) as db:
        return await rp_rows(db) == model.rp_rows()


async def run(url: str, messages: list[tuple[int, int]], mode: str, processes: int) -> tuple[float, int]:
    dbs = [Database(url, min_size=8, max_size=8) for _ in range(processes)]
    for db in dbs:
        await db.connect()
    queues = [XPQueue(db) for db in dbs]
    gate = asyncio.Semaphore(1000)  # messages in flight, as a gateway burst would be

    async def one(i: int, user: int, length: int) -> None:
        async with gate:
            if mode == "single":
                await dbs[i % processes].award_rp(GUILD, [CHANNEL], user, length, message_id=i + 1)
            else:
                await queues[i % processes].rp(RPMessage(GUILD, CHANNEL, None, user, length, i + 1))

    start = time.perf_counter()
    await asyncio.gather(*(one(i, u, n) for i, (u, n) in enumerate(messages)))
    elapsed = time.perf_counter() - start
    trips = len(messages) if mode == "single" else sum(q.round_trips for q in queues)
    for db in dbs:
        await db.close()
    return elapsed, trips


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--players", type=int, default=200)
    parser.add_argument("--messages", type=int, default=40000)
    args = parser.parse_args()
    rnd = random.Random(1)
    messages = [(rnd.randrange(args.players), rnd.randint(1, 600)) for _ in range(args.messages)]
    model = OneAtATime(RATE, CAP)
    for user, length in messages:
        model.rp(user, length)

    with postgres_server() as server:
        rows = []
        url = await fresh_database(server)
        ceiling = await asyncio.to_thread(pgbench_tps, url)
        rows.append(("pgbench single-row UPDATE (ceiling)", f"{ceiling:,.0f}" if ceiling else "n/a",
                     "1.00", "-", "-"))
        await drop_database(server, url)
        for mode, processes in (("single", 1), ("single", 2), ("queue", 1), ("queue", 2)):
            url = await fresh_database(server)
            await setup(url, args.players)
            elapsed, trips = await run(url, messages, mode, processes)
            rate = len(messages) / elapsed
            label = ("award_rp per message" if mode == "single" else "XPQueue (batched)") + \
                f", {processes} process{'es' if processes > 1 else ''}"
            rows.append((label, f"{rate:,.0f}", f"{trips / len(messages):.3f}",
                         f"{rate / ceiling:.0%}" if ceiling else "n/a",
                         "exact" if await exact(url, model) else "WRONG"))
            await drop_database(server, url)
    print_table(f"RP XP writes: {args.messages:,} messages from {args.players} players",
                rows, ("path", "messages/s", "round trips/msg", "of ceiling", "result"))


if __name__ == "__main__":
    asyncio.run(main())
