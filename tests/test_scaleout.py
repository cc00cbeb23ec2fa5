"""Scale-out and restarts: real bot.py processes (shards) on one database, through the fake Discord."""
from __future__ import annotations

import asyncio
import random
import re
from pathlib import Path

from database import Database
from fake_discord import bot_process
from helpers import eventually, messages_counted, rp_rows
from oracle import OneAtATime
from world import sharded_guilds, track_rp

RATE, CAP = 50, 1_000_000


def env_for(url: str, tmp_path: Path, shard: tuple[int, int] | None = None, **extra: str) -> dict:
    env = {"DISCORD_BOT_TOKEN": "test-token", "DATABASE_URL": url, "ENV": "prod", "LOG_LEVEL": "INFO",
           "XPBOT_SPOOL": str(tmp_path / f"spool-{shard[0] if shard else 'x'}.jsonl"), **extra}
    if shard:
        env.update(SHARD_COUNT=str(shard[1]), SHARD_IDS=str(shard[0]))
    return env


async def world(fake, db: Database, guilds: int, players: int):
    """Guilds alternating between shard 0 and 1 of 2, each with a tracked RP channel."""
    made = sharded_guilds(fake, guilds, players, first_id=2000)
    await track_rp(db, made, RATE, CAP)
    return made


async def until_counted(db: Database, n: int, timeout: float = 60) -> None:
    await eventually(lambda: messages_counted(db, n), f"{n} messages counted", timeout, interval=0.05)


async def test_two_shard_processes_split_the_guilds_share_one_database_and_stay_exact(
        fake_discord, db, database_url, tmp_path):
    fake = fake_discord
    guilds = await world(fake, db, guilds=4, players=5)
    async with bot_process(fake, env=env_for(database_url, tmp_path, (0, 2)), ready_timeout=60) as first, \
               bot_process(fake, env=env_for(database_url, tmp_path, (1, 2)), ready_timeout=60) as second:
        assert {first.session.shard, second.session.shard} == {(0, 2), (1, 2)}
        rnd, model, sent = random.Random(5), OneAtATime(RATE, CAP), 0
        for _ in range(400):
            guild, channel, members = rnd.choice(guilds)
            member, length = rnd.choice(members), rnd.randint(1, 200)
            await fake.send_message(channel, member, "x" * length)
            model.rp(member.id, length)
            sent += 1
        await until_counted(db, sent)
        expected = model.rp_rows()
        assert await rp_rows(db) == expected | {u: [0, 0, 0] for u in await rp_rows(db) if u not in expected}
    # only the process holding shard 0 synced the commands, and only globally (ENV=prod)
    assert [scope for scope, _ in fake.command_syncs] == [None]


async def test_sigterm_during_traffic_keeps_every_award(fake_discord, db, database_url, tmp_path):
    fake = fake_discord
    [(guild, channel, members)] = await world(fake, db, guilds=1, players=4)
    async with bot_process(fake, env=env_for(database_url, tmp_path), ready_timeout=60) as bot:
        async def traffic():
            for i in range(3000):
                await fake.send_message(channel, members[i % 4], "y" * 37)
                await asyncio.sleep(0)
        sender = asyncio.create_task(traffic())
        await until_counted(db, 100)
        code = await bot.stop()  # SIGTERM in the middle of the stream
        sender.cancel()
    assert code == 0, bot.output
    found = re.search(r"XP events this run: (\d+)", bot.output)
    assert found, bot.output
    received = int(found.group(1))
    counted = await db.pool.fetchval("SELECT count(*) FROM processed_messages")
    assert counted == received >= 100  # every message the bot had received was awarded
    xp = await db.pool.fetchval(f"SELECT sum(xp * {RATE} + char_buffer) FROM characters")
    assert xp == 37 * received  # and awarded exactly once


async def test_a_restart_keeps_the_settings_panel_and_delete_buttons_working(
        fake_discord, db, database_url, tmp_path):
    fake = fake_discord
    [(guild, channel, members)] = await world(fake, db, guilds=1, players=1)
    staff = fake.add_member(guild, "mod", permissions=["manage_guild"])
    await fake.guild_create(guild)
    owner = members[0]
    async with bot_process(fake, env=env_for(database_url, tmp_path), ready_timeout=60):
        panel = await fake.slash(guild, channel, staff, "xp_settings", timeout=15)
        panel = await panel.followup()
        confirm = await fake.slash(guild, channel, owner, "xp_delete", {"character": f"C{owner.id}"},
                                   timeout=15)
        confirm = await confirm.followup()
    async with bot_process(fake, env=env_for(database_url, tmp_path), ready_timeout=60):  # a new process
        cycled = await fake.click(panel, "xp:set:lvl", staff, timeout=15)
        assert cycled.type == 7 and "Level-up" in cycled.embeds[0]["description"]
        deleted = await fake.click(confirm, next(c for c in confirm.components if c.startswith("xp:del:yes")),
                                   owner, timeout=15)
        assert "Deleted" in deleted.content
    assert (await db.get_config(guild.id)).levelup_mode == "channel"
    assert await db.list_characters(guild.id, owner.id) == []
