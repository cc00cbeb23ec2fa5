"""Start-up, hostile input and secrets: what must hold whatever users and operators do."""
from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bot import XPBot
from database import Database
from fake_discord import bot_process, run_client
from helpers import setup_guild

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "SECRET.token-abc123XYZ"
PASSWORD = "pw-Sup3rSecret"

HOSTILE_TEXT = ["", " ", "\u200b", "x" * 4000, "🐺" * 120, "**bold** __u__ `code` ||spoiler||", "@everyone",
                "@here", "<@123456789012345678>", "<@&1>", "<#1>", "line\nbreak", "nul\x00byte", "\u202eRTL",
                "'; DROP TABLE characters; --", "%_\\", "#1", "#99999999999999999999", "../../etc/passwd"]
HOSTILE_INTS = [0, -1, -(2**31), 2**31, 2**53, 10**15, -(10**15)]


PASSWORD_ROLE = "xpbot_with_password"


async def with_password(url: str) -> str:
    """`url` for a login role with PASSWORD, created on the server (the query string is kept)."""
    import asyncpg
    con = await asyncpg.connect(url)
    try:
        await con.execute(f"DO $$ BEGIN CREATE ROLE {PASSWORD_ROLE} LOGIN SUPERUSER; "
                          "EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        await con.execute(f"ALTER ROLE {PASSWORD_ROLE} PASSWORD '{PASSWORD}'")
    finally:
        await con.close()
    parts = urlsplit(url)
    host = f"{parts.hostname}:{parts.port}" if parts.hostname else ""
    return urlunsplit(parts._replace(netloc=f"{PASSWORD_ROLE}:{PASSWORD}@{host}"))


async def test_startup_logs_the_three_lines_in_order_and_syncs_per_env(fake_discord, database_url, caplog):
    caplog.set_level(logging.INFO)
    fake = fake_discord
    guild = fake.add_guild("Dev Server")
    other = fake.add_guild("Another")
    async with run_client(XPBot(Database(database_url, max_size=3), env="dev", guild_id=guild.id)):
        pass
    messages = [r.getMessage() for r in caplog.records]
    lines = [m for m in messages if m.startswith("✅")]
    assert lines == ["✅ Database connected", "✅ Database schema initialized", "✅ XP Bot is online"]
    assert [scope for scope, _ in fake.command_syncs] == [guild.id]
    async with run_client(XPBot(Database(database_url, max_size=3), env="prod")):
        pass
    assert [scope for scope, _ in fake.command_syncs] == [guild.id, None]
    assert other.id not in [scope for scope, _ in fake.command_syncs]
    shard_one = XPBot(Database(database_url, max_size=3), env="prod", shard_count=2, shard_ids=[1])
    task = asyncio.create_task(shard_one.start("token"))
    try:
        await fake.wait_until(lambda: any(s.shard == (1, 2) and s.ready for s in fake.sessions),
                              "shard 1 connected", 30)
    finally:
        await shard_one.close()
        await task
    assert len(fake.command_syncs) == 2  # a process without shard 0 never syncs


async def test_hostile_values_in_every_option_get_clear_private_answers(w, caplog):
    caplog.set_level(logging.WARNING)
    luna = await w.db.create_character(w.guild.id, w.alice.id, "Luna")
    await w.db.create_character(w.guild.id, w.bob.id, "Bram")
    calls = []
    for text in HOSTILE_TEXT:
        calls += [(w.alice, "xp_create", {"name": text}), (w.alice, "xp_create", {"name": "Ok", "image_url": text}),
                  (w.alice, "xp", {"character": text}), (w.alice, "xp_active", {"character": text}),
                  (w.alice, "xp_delete", {"character": text}), (w.alice, "xp_set_timezone", {"timezone": text}),
                  (w.alice, "xp_history", {"character": text}),
                  (w.mod, "xp_grant", {"character": text, "amount": 1}),
                  (w.mod, "xp_grant", {"character": f"#{luna.id}", "amount": 1, "reason": text})]
    for number in HOSTILE_INTS:
        calls += [(w.mod, "xp_grant", {"character": f"#{luna.id}", "amount": number}),
                  (w.mod, "xp_set_cap", {"amount": number}), (w.mod, "xp_set_rate", {"characters": number}),
                  (w.mod, "xp_config_hf", {"attempt_xp": number, "success_xp": number, "daily_cap": number})]
    for user, name, options in calls:
        await w.db.pool.execute("DELETE FROM characters WHERE name = 'Ok'")
        reply = await w.run(user, name, options, strict=False)
        shown = reply.text() if hasattr(reply, "text") else reply.content
        assert reply.ephemeral, (name, options)
        assert "Traceback" not in shown and "Something went wrong" not in shown, (name, options, shown)
        assert not reply.pings, (name, options)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert await w.db.pool.fetchval("SELECT count(*) FROM characters") >= 2  # nothing was dropped


async def test_a_player_cannot_reach_another_guilds_characters(w, fake_discord):
    other = fake_discord.add_guild("Elsewhere")
    fake_discord.add_channel(other, "rp")
    stranger = await w.db.create_character(other.id, w.alice.id, "Stranger")
    for name in ("xp", "xp_active", "xp_delete", "xp_history"):
        await w.refused(w.alice, name, {"character": f"#{stranger.id}"}, "No character")
    await w.refused(w.mod, "xp_grant", {"character": f"#{stranger.id}", "amount": 5}, "No character")
    assert (await w.db.get_character(other.id, stranger.id)).xp == 0


def test_the_token_and_the_database_password_never_reach_the_output(database_url, tmp_path):
    env = {**{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TEST_DATABASE_URL")},
           "DISCORD_BOT_TOKEN": TOKEN, "ENV": "prod", "LOG_LEVEL": "DEBUG",
           "DATABASE_URL": f"postgresql://xpbot:{PASSWORD}@127.0.0.1:1/xpbot"}
    failed = subprocess.run([sys.executable, str(ROOT / "bot.py")], env=env, capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    out = failed.stdout + failed.stderr
    assert failed.returncode != 0 and "database" in out.lower()
    assert TOKEN not in out and PASSWORD not in out and "Traceback" not in out


async def test_a_running_bot_logs_neither_secret(fake_discord, database_url, tmp_path):
    env = {"DISCORD_BOT_TOKEN": TOKEN, "ENV": "prod", "LOG_LEVEL": "DEBUG",
           "DATABASE_URL": await with_password(database_url), "XPBOT_SPOOL": str(tmp_path / "spool.jsonl")}
    guild = fake_discord.add_guild("G")
    channel = fake_discord.add_channel(guild, "rp")
    member = fake_discord.add_member(guild, "m")
    async with bot_process(fake_discord, env=env, ready_timeout=60) as bot:
        reply = await fake_discord.slash(guild, channel, member, "xp_create", {"name": "Luna"}, timeout=15)
        assert reply.type == 5
        await fake_discord.send_message(channel, member, "hello")
        code = await bot.stop()
    assert code == 0
    assert TOKEN not in bot.output and PASSWORD not in bot.output


async def test_a_database_outage_gets_a_retry_answer_and_loses_no_xp(fake_discord, own_server, tmp_path):
    """PostgreSQL stops under the running bot: commands say so, RP written meanwhile lands later."""
    server, url = own_server, own_server.url
    fake = fake_discord
    guild = fake.add_guild("G")
    channel = fake.add_channel(guild, "rp")
    alice = fake.add_member(guild, "alice")
    async with Database(url, max_size=2) as db:
        await setup_guild(db, guild.id, rp=[channel.id], rate=10, characters=[(alice.id, "Luna")])
    client = XPBot(Database(url, max_size=3), env="prod", spool=tmp_path / "spool.jsonl")
    async with run_client(client):
        await fake.send_message(channel, alice, "a" * 10)
        await asyncio.to_thread(server.stop)
        for _ in range(5):
            await fake.send_message(channel, alice, "b" * 10)
        reply = await fake.slash(guild, channel, alice, "xp")
        answer = (await reply.followup()) if reply.type == 5 else reply
        assert "database is unavailable" in answer.content and answer.ephemeral
        await asyncio.to_thread(server.start)
        assert await client.queue.drain(timeout=30)
        reply = await fake.slash(guild, channel, alice, "xp")
        shown = (await reply.followup()).embeds[0]
        assert {f["name"]: f["value"] for f in shown["fields"]}["XP"] == "6"
