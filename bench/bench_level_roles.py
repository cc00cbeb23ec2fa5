"""Level roles against the fake Discord's rate limits and a real PostgreSQL.

    python bench/bench_level_roles.py [--members 5000] [--limit 50] [--window 1] [--messages 4000]

Prints, in one run:
- a `/xp_level_roles_sync` of `--members` members who each need one role, while the fake
  Discord limits the member-role route to `--limit` requests per `--window` seconds per
  member (as Discord does per resource) and the member read route likewise: role changes
  per second, the 429s answered (discord.py paces itself by the rate-limit headers), and
  whether every member ends with the right role;
- RP messages per second through the real bot with level roles off and on (same run, same
  messages; with them on, every player crosses a level threshold once).
"""
from __future__ import annotations

import argparse
import asyncio
import time

import discord
from common import fresh_database, postgres_server, print_table

from bot import XPBot
from database import Database
from fake_discord import FakeDiscord, run_client
from helpers import drop_database, eventually

ROLE_ROUTE = "/guilds/{guild_id}/members/{user_id}/roles/{role_id}"
MEMBER_ROUTE = "/guilds/{guild_id}/members/{user_id}"


def world(fake: FakeDiscord, members: int):
    guild = fake.add_guild("Bench", bot_permissions=["manage_roles", "view_channel", "send_messages",
                                                    "embed_links"])
    channel = fake.add_channel(guild, "rp")
    mod = fake.add_member(guild, "mod", permissions=["manage_guild"])
    role = fake.add_role(guild, "Level 2")
    players = [fake.add_member(guild, f"p{i}") for i in range(members)]
    return guild, channel, mod, role, players


async def sync(server: str, args) -> tuple:
    url = await fresh_database(server)
    try:
        async with FakeDiscord(timeout=600) as fake:
            guild, channel, mod, role, players = world(fake, args.members)
            async with Database(url, max_size=2) as db:
                await db.set_level_role(guild.id, 2, role.id)
                await db.pool.executemany(
                    "INSERT INTO users (guild_id, user_id) VALUES ($1, $2)", [(guild.id, p.id) for p in players])
                await db.pool.executemany(
                    "INSERT INTO characters (guild_id, user_id, name, xp) VALUES ($1, $2, 'C', 300)",
                    [(guild.id, p.id) for p in players])
            fake.rate_limit(ROLE_ROUTE, limit=args.limit, window=args.window)
            fake.rate_limit(MEMBER_ROUTE, limit=args.limit, window=args.window, method="GET")
            bot = XPBot(Database(url, max_size=4), env="dev", guild_id=guild.id)
            async with run_client(bot):
                start = time.perf_counter()
                result = await fake.slash(guild, channel, mod, "xp_level_roles_sync", {})
                await eventually(lambda: "synced" in result.message.content, "the sync", timeout=3600)
                elapsed = time.perf_counter() - start
            right = all(role.id in fake.member(guild, p).role_ids for p in players)
            return (f"sync of {args.members:,} members", f"{bot.level_roles.calls / elapsed:,.0f}",
                    f"{elapsed:,.1f} s", len(fake.rate_limited), "exact" if right else "WRONG")
    finally:
        await drop_database(server, url)


async def messages_per_second(server: str, args, roles_on: bool) -> tuple:
    url = await fresh_database(server)
    players = 200
    try:
        async with FakeDiscord(timeout=600) as fake:
            guild, channel, mod, role, members = world(fake, players)
            async with Database(url, max_size=2) as db:
                await db.add_channel(guild.id, "rp", channel.id)
                await db.set_rp_rate(guild.id, 10)
                await db.set_rp_cap(guild.id, 1_000_000)
                if roles_on:
                    await db.set_level_role(guild.id, 2, role.id)
                for p in members:
                    await db.create_character(guild.id, p.id, "C", starting_xp=295)
            bot = XPBot(Database(url, max_size=8), env="dev", guild_id=guild.id)
            async with run_client(bot):
                start = time.perf_counter()
                for i in range(args.messages):
                    await fake.send_message(channel, members[i % players], "x" * 50)

                async def counted():
                    return await bot.db.pool.fetchval("SELECT count(*) FROM processed_messages") >= args.messages
                await eventually(counted, "every message counted", timeout=600)
                elapsed = time.perf_counter() - start
                if roles_on:
                    await eventually(lambda: all(role.id in fake.member(guild, p).role_ids for p in members),
                                     "every role given", timeout=120)
            return (f"{args.messages:,} RP messages, level roles {'on' if roles_on else 'off'}",
                    f"{args.messages / elapsed:,.0f}", f"{elapsed:,.1f} s",
                    bot.level_roles.calls, "")
    finally:
        await drop_database(server, url)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=5000)
    parser.add_argument("--limit", type=int, default=50, help="requests per window per route and resource")
    parser.add_argument("--window", type=float, default=1.0)
    parser.add_argument("--messages", type=int, default=4000)
    args = parser.parse_args()
    discord.utils.setup_logging(level=40)
    with postgres_server() as server:
        rows = [await sync(server, args),
                await messages_per_second(server, args, roles_on=False),
                await messages_per_second(server, args, roles_on=True)]
    print_table("Level roles", rows, ("what", "per second", "took", "429s / role calls", "result"))


if __name__ == "__main__":
    asyncio.run(main())
