"""The real bot.py (one process) connected to many guilds with many characters: start-up time
and memory, then a steady stream of RP messages spread over the guilds with `/xp` from random
players of random guilds during it.

    python bench/bench_guilds.py [--guilds 10000] [--players 100] [--channels 1] [--roles 1]
                                 [--shards N] [--burst 20000] [--seconds 60] [--rate 1000]
                                 [--xp-pause 0.02]

A small run: `--guilds 1000 --players 100 --seconds 10`.

The fake Discord (tests/fake_discord) holds the guilds, each with an RP channel and --channels
more, a staff role and --roles more, and a few members; the bot connects with the shards
Discord recommends (one per 1,000 guilds; a session may hold at most 2,500). Players become members of the fake guild when they first
speak (Discord sends the author's member object with every message, and a bot without the
GUILD_PRESENCES intent gets only its own member in GUILD_CREATE). The database is filled
through COPY: a config row per guild tracking its RP channel, `--players` players per guild,
one character each, set as the player's active one.

Prints:
  - the world: filling the fake and the database
  - start-up: until the fake has sent every GUILD_CREATE, and until on_ready (discord.py
    waits 2 s after the last GUILD_CREATE before it), the bot's RSS then and its peak
  - a burst right after start-up (--burst messages over random guilds, as fast as the fake
    sends them): messages/s until the database has counted them
  - the stream: RSS over time, `/xp` p50/p99, and whether every character that earned XP
    holds exactly what the one-at-a-time model says (and every other character nothing)
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import sys
import time

import asyncpg

from common import fresh_database, postgres_server, print_table

from bench_e2e import RATE, bot_env, memory_kib, percentile, round_trips, send
from asyncpg import BitString
from database import Database, _signatures
from fake_discord import FakeDiscord, bot_process
from fake_discord.gateway import GUILDS_PER_RECOMMENDED_SHARD
from helpers import drop_database, eventually
from oracle import OneAtATime

CAP = 1_000_000
FIRST_GUILD = 1000           # guild ids are (FIRST_GUILD + g) << 22
FIRST_PLAYER = 1 << 40       # player ids: FIRST_PLAYER + g * players + i (below real snowflakes)


class Guilds:
    """The fake's guilds and their players (ids only until a player first speaks)."""

    def __init__(self, fake: FakeDiscord, guilds: int, players: int, channels: int = 1, roles: int = 1):
        """Each guild: an RP channel and `channels` more, a staff role and `roles` more, the
        owner, a moderator and the bot."""
        self.fake, self.players = fake, players
        self.made = []
        for g in range(guilds):
            guild = fake.add_guild(f"Guild {g}", id=(FIRST_GUILD + g) << 22)
            channel = fake.add_channel(guild, "rp")
            for c in range(channels):
                fake.add_channel(guild, f"channel-{c}")
            for r in range(roles):
                fake.add_role(guild, f"Role {r}", position=1)
            fake.add_member(guild, f"mod{g}", permissions=["manage_guild"])
            self.made.append((guild, channel))

    def player_id(self, g: int, i: int) -> int:
        return FIRST_PLAYER + g * self.players + i

    def player(self, g: int, i: int):
        """The player's fake user (made on first use)."""
        uid = self.player_id(g, i)
        return self.fake.users.get(uid) or self.fake.add_user(f"p{g}-{i}", id=uid)

    def records(self):
        """(guild id, user id) of every player, guild by guild."""
        for g, (guild, _) in enumerate(self.made):
            for i in range(self.players):
                yield guild.id, self.player_id(g, i)


async def fill(url: str, guilds: Guilds) -> dict[str, float]:
    """The schema, then every config row, player and character through COPY; seconds per step."""
    took = {}
    async with Database(url, max_size=2) as db, db.pool.acquire() as con:
        start = time.perf_counter()
        await con.copy_records_to_table(
            "config", records=[(guild.id, [channel.id], RATE, CAP) for guild, channel in guilds.made],
            columns=["guild_id", "rp_channels", "char_per_rp", "daily_rp_cap"])
        await con.copy_records_to_table("users", records=guilds.records(), columns=["guild_id", "user_id"])
        took["COPY config and users"] = time.perf_counter() - start
        start = time.perf_counter()
        # Names signed as the bot writes them (else its start-up would sign a million in the background).
        def signed(guild_id: int, user_id: int) -> tuple:
            bits, length, grams = _signatures([(guild_id, f"C{user_id}")])[0]
            return guild_id, user_id, f"C{user_id}", BitString.frombytes(int(bits, 2).to_bytes(16, "big"), 128), \
                length, grams
        await con.copy_records_to_table("characters", records=(signed(g, u) for g, u in guilds.records()),
                                        columns=["guild_id", "user_id", "name", "name_letters", "name_length",
                                                 "name_trigrams"])
        took["COPY characters"] = time.perf_counter() - start
        start = time.perf_counter()
        await con.execute("UPDATE users u SET active_character_id = c.id FROM characters c "
                          "WHERE c.guild_id = u.guild_id AND c.user_id = u.user_id")
        took["active characters (one UPDATE)"] = time.perf_counter() - start
        start = time.perf_counter()
        for table in ("config", "users", "characters"):
            await con.execute(f"VACUUM ANALYZE {table}")
        took["VACUUM ANALYZE"] = time.perf_counter() - start
    return took


async def sample_memory(pid: int, start: float, every: float, rows: list, stop: asyncio.Event) -> None:
    while not stop.is_set():
        rows.append((time.perf_counter() - start, memory_kib(pid, "VmRSS"), memory_kib(pid)))
        try:
            await asyncio.wait_for(stop.wait(), every)
        except asyncio.TimeoutError:
            pass


async def xp_commands(fake: FakeDiscord, guilds: Guilds, rnd: random.Random, pause: float,
                      stop: asyncio.Event, samples: list[float], wrong: list[str]) -> None:
    """`/xp` from a random player of a random guild, one after another, until `stop`."""
    while not stop.is_set():
        g, i = rnd.randrange(len(guilds.made)), rnd.randrange(guilds.players)
        guild, channel = guilds.made[g]
        begin = time.perf_counter()
        result = await fake.slash(guild, channel, guilds.player(g, i), "xp", timeout=30)
        reply = (await result.followup()) if result.type == 5 else result
        samples.append((time.perf_counter() - begin) * 1000)
        if f"C{guilds.player_id(g, i)}" not in reply.text():
            wrong.append(reply.text()[:200])
        await asyncio.sleep(pause)


async def burst(fake: FakeDiscord, url: str, guilds: Guilds, count: int, model: OneAtATime) -> tuple[float, float]:
    """`count` RP messages from random players of random guilds, sent as fast as the fake can:
    (messages/s until the database counted them all, messages/s sent)."""
    rnd = random.Random(5)
    plan = [(rnd.randrange(len(guilds.made)), rnd.randrange(guilds.players), rnd.randint(1, 600))
            for _ in range(count)]
    start = time.perf_counter()
    for g, i, length in plan:
        model.rp(guilds.player_id(g, i), length)
        guild, channel = guilds.made[g]
        await send(fake, guild, channel, guilds.player(g, i), length)
    sent = time.perf_counter() - start
    await counted(url, count, max(60.0, count / 100))
    return count / (time.perf_counter() - start), count / sent


async def counted(url: str, count: int, timeout: float) -> None:
    """Wait until the database has counted `count` messages. A plain connection: a Database
    would apply the schema, taking locks beside the bot's writes."""
    con = await asyncpg.connect(url)
    try:
        async def enough() -> bool:
            return await con.fetchval("SELECT count(*) FROM processed_messages") >= count
        await eventually(enough, f"the database counting {count} messages", timeout)
    finally:
        await con.close()


async def stream(fake: FakeDiscord, guilds: Guilds, args, pid: int, model: OneAtATime) -> tuple:
    """RP messages at args.rate for args.seconds over random players of random guilds, with /xp."""
    rnd = random.Random(7)
    total = int(args.rate * args.seconds)
    stop, samples, wrong, memory = asyncio.Event(), [], [], []
    start = time.perf_counter()
    sampler = asyncio.create_task(sample_memory(pid, start, max(args.seconds / 10, 1), memory, stop))
    xp = asyncio.create_task(xp_commands(fake, guilds, random.Random(8), args.xp_pause, stop, samples, wrong))
    late = 0.0
    for n in range(total):
        due = start + n / args.rate
        now = time.perf_counter()
        if due > now:
            await asyncio.sleep(due - now)
        else:
            late = max(late, now - due)
        g, i = rnd.randrange(len(guilds.made)), rnd.randrange(guilds.players)
        guild, channel = guilds.made[g]
        length = rnd.randint(1, 600)
        model.rp(guilds.player_id(g, i), length)
        await send(fake, guild, channel, guilds.player(g, i), length)
    sent = time.perf_counter() - start
    stop.set()
    await asyncio.gather(sampler, xp)
    return total, sent, late, memory, samples, wrong


async def check(url: str, model: OneAtATime, total: int) -> tuple[bool, str]:
    """Every character that earned anything holds what the model says; no other changed."""
    await counted(url, total, 600)
    con = await asyncpg.connect(url)
    try:
        rows = await con.fetch("SELECT user_id, xp, daily_xp, char_buffer FROM characters "
                               "WHERE xp <> 0 OR daily_xp <> 0 OR char_buffer <> 0")
        messages = await con.fetchval("SELECT count(*) FROM processed_messages")
    finally:
        await con.close()
    got = {r["user_id"]: [r["xp"], r["daily_xp"], r["char_buffer"]] for r in rows}
    expected = {k: v for k, v in model.rp_rows().items() if v != [0, 0, 0]}
    exact = got == expected and messages == total
    return exact, f"{len(expected):,} characters changed, {messages:,} messages counted"


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


async def run_bot(fake: FakeDiscord, url: str, guilds: Guilds, args) -> dict:
    """Start bot.py, time its start-up, stream messages with /xp, check, stop it."""
    env = bot_env(url, None)
    if args.shards:
        env["SHARD_COUNT"] = str(args.shards)
    shards = args.shards or max(1, -(-args.guilds // GUILDS_PER_RECOMMENDED_SHARD))
    out: dict = {"shards": shards, "burst args": args.burst}
    start = time.perf_counter()
    async with bot_process(fake, env=env, ready_timeout=args.ready_timeout) as bot:
        try:
            await measure(fake, url, guilds, args, bot, shards, start, out)
        except BaseException:
            print("The bot's output, last lines:", *bot.lines[-40:], sep="\n", file=sys.stderr)
            raise
    return out


async def measure(fake: FakeDiscord, url: str, guilds: Guilds, args, bot, shards: int, start: float,
                  out: dict) -> None:
    pid = bot.process.pid
    await fake.wait_until(lambda: sum(s.ready for s in fake.sessions) >= shards,
                          f"{shards} ready gateway sessions", args.ready_timeout)
    out["sent"] = time.perf_counter() - start
    await bot.wait_for_output("is online", timeout=args.ready_timeout)
    out["online"] = time.perf_counter() - start
    out["ready rss"], out["ready peak"] = memory_kib(pid, "VmRSS"), memory_kib(pid)
    await asyncio.sleep(1)  # command sync and the like
    model = OneAtATime(RATE, CAP)
    if args.burst:
        out["burst"] = await burst(fake, url, guilds, args.burst, model)
        out["burst rss"] = memory_kib(pid, "VmRSS")
    out["total"], out["took"], out["late"], out["memory"], out["xp"], out["wrong"] = await stream(
        fake, guilds, args, pid, model)
    out["exact"], out["what"] = await check(url, model, args.burst + out["total"])
    out["end rss"], out["end peak"] = memory_kib(pid, "VmRSS"), memory_kib(pid)
    await bot.stop(timeout=60)
    out["output"] = bot.output


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--guilds", type=int, default=10_000)
    parser.add_argument("--players", type=int, default=100, help="players (one character each) per guild")
    parser.add_argument("--channels", type=int, default=1, help="channels per guild besides the RP channel")
    parser.add_argument("--roles", type=int, default=1, help="roles per guild besides @everyone, staff and the bot's")
    parser.add_argument("--burst", type=int, default=20_000,
                        help="RP messages sent as fast as possible over all guilds right after start-up, on a "
                             "cold cache (0: none)")
    parser.add_argument("--seconds", type=float, default=60, help="length of the message stream")
    parser.add_argument("--rate", type=float, default=1000, help="RP messages per second")
    parser.add_argument("--xp-pause", type=float, default=0.02, help="seconds between one /xp and the next")
    parser.add_argument("--shards", type=int, default=0,
                        help="SHARD_COUNT for the process (default: what Discord recommends, 1 per 1,000 guilds)")
    parser.add_argument("--ready-timeout", type=float, default=600)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; {args.guilds:,} guilds × "
          f"{args.players} players = {args.guilds * args.players:,} characters; {args.channels + 1} channels "
          f"and {args.roles + 3} roles per guild; "
          f"{args.rate:,.0f} messages/s for {args.seconds:.0f} s")
    with postgres_server() as server:
        url = await fresh_database(server)
        try:
            async with FakeDiscord(timeout=30) as fake:
                start = time.perf_counter()
                guilds = Guilds(fake, args.guilds, args.players, args.channels, args.roles)
                world = [("fake Discord: guilds, channels, roles, members", time.perf_counter() - start)]
                world += list((await fill(url, guilds)).items())
                print_table("The world", [(what, f"{took:.1f} s") for what, took in world], ("step", "took"))
                run = await run_bot(fake, url, guilds, args)
        finally:
            await drop_database(server, url)
    report(run)


def report(run: dict) -> None:
    print_table(f"Start-up of one process with {run['shards']} shard(s) (from starting it)", [
        ("every GUILD_CREATE sent by the fake", f"{run['sent']:.1f} s", ""),
        ("on_ready (discord.py waits 2 s after the last GUILD_CREATE)", f"{run['online']:.1f} s",
         f"RSS {mib(run['ready rss'])}, peak {mib(run['ready peak'])}"),
    ], ("event", "time", "bot memory"))
    if "burst" in run:
        rate, sent = run["burst"]
        print_table("Burst right after start-up (cold caches)", [
            (f"{run['burst args']:,} messages over random guilds", f"{rate:,.0f}", f"{sent:,.0f}",
             mib(run["burst rss"]))], ("what", "messages/s until counted", "sent at /s", "bot RSS after"))
    total, took = run["total"], run["took"]
    rows = [(f"{t:5.1f} s", mib(rss), mib(peak)) for t, rss, peak in run["memory"]]
    rows.append(("end", mib(run["end rss"]), mib(run["end peak"])))
    print_table(f"Stream: {total:,} messages in {took:.1f} s ({total / took:,.0f}/s, sender at most "
                f"{run['late'] * 1000:.0f} ms late)", rows, ("time", "bot RSS", "bot peak"))
    events, trips = round_trips(run["output"])
    reads = re.search(r"(\d+) tracked-channel reads", run["output"])
    samples = run["xp"]
    print_table("Result", [
        ("/xp p50 / p99", f"{percentile(samples, 0.5):.1f} / {percentile(samples, 0.99):.1f} ms "
                          f"({len(samples):,} calls, {len(run['wrong'])} wrong)"),
        ("XP", f"{'exact' if run['exact'] else 'WRONG'} ({run['what']})"),
        ("XP writes (burst and stream)", f"{trips:,} round trips for {events:,} events"),
        ("tracked-channel reads", f"{int(reads.group(1)):,}" if reads else "(not reported)"),
        ("bot memory", f"RSS at ready {mib(run['ready rss'])}, at end {mib(run['end rss'])}, "
                       f"peak {mib(run['end peak'])}"),
    ], ("what", "measured"))


if __name__ == "__main__":
    asyncio.run(main())
