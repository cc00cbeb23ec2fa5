"""End to end: the real bot.py (a separate process) against the test suite's fake Discord
and a real PostgreSQL, with the two ceilings measured in the same run.

    python bench/bench_e2e.py [--players 200] [--messages 20000] [--stream-seconds 30]
                              [--stream-rate 2000]

Prints:
  - the fake Discord's rate into a client whose listener does nothing (Discord-side ceiling)
  - pgbench doing a single-row UPDATE like ours (database-side ceiling)
  - a burst of RP messages into one bot process, then into two (SHARD_COUNT=2), each as
    messages/s until the database holds the final state, database round trips per message,
    /xp p50/p99 latency measured during the burst, the bot's peak memory, and whether every
    character's xp, daily_xp and char_buffer equals the one-at-a-time model
  - a steady stream at a fixed rate, with the bot's memory sampled over time
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import sys
import time
from pathlib import Path

from common import ROOT, fresh_database, pgbench_tps, postgres_server, print_table

from database import Database
from fake_discord import FakeDiscord, bot_process
from helpers import drop_database, eventually, messages_counted, rp_rows
from oracle import OneAtATime
from world import sharded_guilds, track_rp

RATE, CAP = 50, 1_000_000
TOKEN = "bench-token"


def memory_kib(pid: int, field: str = "VmHWM") -> int:
    """Peak (VmHWM) or current (VmRSS) resident memory of a process, from /proc."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(match.group(1)) if match else 0


def build_world(fake: FakeDiscord, players: int, guilds: int):
    """`guilds` guilds spread over two shards, each with an RP channel and its share of players."""
    return sharded_guilds(fake, guilds, players // guilds, first_id=1000, name="Bench ")


async def prepare_database(url: str, world) -> None:
    async with Database(url, max_size=4) as db:
        await track_rp(db, world, RATE, CAP)


def plan_messages(world, count: int, seed: int):
    rnd = random.Random(seed)
    everyone = [(guild, channel, member) for guild, channel, members in world for member in members]
    return [(*rnd.choice(everyone), rnd.randint(1, 600)) for _ in range(count)]


async def send(fake: FakeDiscord, guild, channel, member, length: int) -> None:
    payload = fake._message_payload(channel, member, "x" * length)
    await fake.dispatch("MESSAGE_CREATE", payload, guild.id)


async def wait_counted(db: Database, total: int, timeout: float) -> float:
    """When the database had counted `total` messages (time.perf_counter())."""
    await eventually(lambda: messages_counted(db, total), f"the database counting {total} messages", timeout)
    return time.perf_counter()


async def exact(db: Database, model: OneAtATime) -> bool:
    rows, expected = await rp_rows(db), model.rp_rows()
    return all(v == expected.get(u, [0, 0, 0]) for u, v in rows.items()) and len(rows) >= len(expected)


async def measure_xp_command(fake: FakeDiscord, world, stop: asyncio.Event, samples: list[float]) -> None:
    guild, channel, members = world[0]
    while not stop.is_set():
        start = time.perf_counter()
        result = await fake.slash(guild, channel, members[0], "xp", timeout=30)
        if result.type == 5:
            await result.followup()
        samples.append((time.perf_counter() - start) * 1000)
        await asyncio.sleep(0.01)


def bot_env(url: str, shard: tuple[int, int] | None) -> dict:
    env = {"DISCORD_BOT_TOKEN": TOKEN, "DATABASE_URL": url, "ENV": "prod", "LOG_LEVEL": "INFO",
           "XPBOT_SPOOL": os.devnull + ".unused"}
    if shard:
        env.update(SHARD_COUNT=str(shard[1]), SHARD_IDS=str(shard[0]))
    return env


def round_trips(output: str) -> tuple[int, int]:
    match = re.search(r"XP events this run: (\d+) in (\d+) database round trips", output)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


async def burst(server: str, args, processes: int) -> tuple:
    url = await fresh_database(server)
    async with FakeDiscord(timeout=30) as fake:
        world = build_world(fake, args.players, guilds=4)
        await prepare_database(url, world)
        messages = plan_messages(world, args.messages, seed=processes)
        model = OneAtATime(RATE, CAP)
        for _, _, member, length in messages:
            model.rp(member.id, length)
        shards = [None] if processes == 1 else [(i, processes) for i in range(processes)]
        async with contextlib.AsyncExitStack() as stack:
            bots = [await stack.enter_async_context(bot_process(fake, env=bot_env(url, s), ready_timeout=60))
                    for s in shards]
            await asyncio.sleep(0.5)  # let start-up work (command sync) finish
            async with Database(url, max_size=2) as db:
                stop, samples = asyncio.Event(), []
                latency = asyncio.create_task(measure_xp_command(fake, world, stop, samples))
                start = time.perf_counter()
                for guild, channel, member, length in messages:
                    await send(fake, guild, channel, member, length)
                sent = time.perf_counter()
                done = await wait_counted(db, len(messages), timeout=600)
                stop.set()
                await latency
                correct = await exact(db, model)
            peak = max(memory_kib(b.process.pid) for b in bots)
        outputs = [b.output for b in bots]
    await drop_database(server, url)
    events, trips = map(sum, zip(*(round_trips(o) for o in outputs)))
    return (len(messages) / (done - start), len(messages) / (sent - start), trips / max(events, 1),
            percentile(samples, 0.5), percentile(samples, 0.99), len(samples), peak, correct)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def null_ceiling(args) -> float:
    async with FakeDiscord(timeout=30) as fake:
        world = build_world(fake, args.players, guilds=4)
        messages = plan_messages(world, args.messages, seed=0)
        async with bot_process(fake, env={"DISCORD_BOT_TOKEN": TOKEN, "NULL_BOT_TARGET": str(len(messages))},
                               script=str(ROOT / "bench" / "null_bot.py")):
            start = time.perf_counter()
            for guild, channel, member, length in messages:
                await send(fake, guild, channel, member, length)
            await fake.wait_for_posts(1, timeout=600)
            return len(messages) / (time.perf_counter() - start)


async def stream(server: str, args) -> list[tuple]:
    url = await fresh_database(server)
    rows = []
    async with FakeDiscord(timeout=30) as fake:
        world = build_world(fake, args.players, guilds=4)
        await prepare_database(url, world)
        total = int(args.stream_rate * args.stream_seconds)
        messages = plan_messages(world, total, seed=99)
        model = OneAtATime(RATE, CAP)
        for _, _, member, length in messages:
            model.rp(member.id, length)
        async with bot_process(fake, env=bot_env(url, None), ready_timeout=60) as bot:
            pid = bot.process.pid
            stop, samples = asyncio.Event(), []
            latency = asyncio.create_task(measure_xp_command(fake, world, stop, samples))
            start = time.perf_counter()
            next_sample = start
            for i, (guild, channel, member, length) in enumerate(messages):
                due = start + i / args.stream_rate
                now = time.perf_counter()
                if due > now:
                    await asyncio.sleep(due - now)
                if now >= next_sample:
                    rows.append((f"{now - start:5.0f} s", f"{i:,}", f"{memory_kib(pid, 'VmRSS') / 1024:.1f} MiB"))
                    next_sample += max(args.stream_seconds / 10, 1)
                await send(fake, guild, channel, member, length)
            stop.set()
            await latency
            async with Database(url, max_size=2) as db:
                await wait_counted(db, total, timeout=600)
                correct = await exact(db, model)
            p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
            rows.append((f"{time.perf_counter() - start:5.0f} s", f"{total:,}",
                         f"{memory_kib(pid, 'VmRSS') / 1024:.1f} MiB (peak {memory_kib(pid) / 1024:.1f})"
                         f" · {'exact' if correct else 'WRONG'} · /xp p50 {p50:.1f} ms, p99 {p99:.1f} ms"
                         f" ({len(samples)})"))
    await drop_database(server, url)
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--players", type=int, default=200)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--stream-seconds", type=float, default=30)
    parser.add_argument("--stream-rate", type=float, default=2000)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
          f"{args.messages:,} messages from {args.players} players in 4 guilds")
    with postgres_server() as server:
        url = await fresh_database(server)
        db_ceiling = await asyncio.to_thread(pgbench_tps, url)
        await drop_database(server, url)
        discord_ceiling = await null_ceiling(args)
        ceiling = min(x for x in (db_ceiling, discord_ceiling) if x)
        rows = [("fake Discord → do-nothing client (ceiling)", f"{discord_ceiling:,.0f}", "", "", "", "", ""),
                ("pgbench single-row UPDATE (ceiling)", f"{db_ceiling:,.0f}" if db_ceiling else "n/a",
                 "1.000", "", "", "", "")]
        for processes in (1, 2):
            rate, send_rate, trips, p50, p99, n, peak, correct = await burst(server, args, processes)
            rows.append((f"bot.py × {processes} (burst; sent at {send_rate:,.0f}/s)", f"{rate:,.0f}",
                         f"{trips:.3f}", f"{rate / ceiling:.0%}", f"{p50:.1f} / {p99:.1f} ({n})",
                         f"{peak / 1024:.0f} MiB", "exact" if correct else "WRONG"))
        print_table("RP messages per second until the database holds the final state", rows,
                    ("path", "messages/s", "round trips/msg", "of lower ceiling", "/xp p50/p99 ms (n)",
                     "peak memory", "result"))
        print_table(f"Steady stream: {args.stream_rate:,.0f} messages/s for {args.stream_seconds:.0f} s "
                    "(bot memory over time)", await stream(server, args), ("time", "messages sent", "bot RSS"))


if __name__ == "__main__":
    asyncio.run(main())
