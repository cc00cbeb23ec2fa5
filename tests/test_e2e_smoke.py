"""A first end-to-end pass: the real XPBot through the fake Discord and the real database."""
import asyncio

import pytest

from bot import XPBot
from database import Database
from fake_discord import run_client


@pytest.fixture
async def world(fake_discord, db, database_url):
    fake = fake_discord
    guild = fake.add_guild("RP Server")
    rp = fake.add_channel(guild, "rp")
    alice = fake.add_member(guild, "alice")
    staff = fake.add_member(guild, "mod", permissions=["manage_guild"])
    bot_db = Database(database_url, max_size=5)
    client = XPBot(bot_db, env="dev", guild_id=guild.id)
    async with run_client(client):
        yield fake, guild, rp, alice, staff, client


async def test_create_track_write_and_show(world, db):
    fake, guild, rp, alice, staff, client = world
    r = await fake.slash(guild, rp, alice, "xp_create", {"name": "Luna"})
    assert r.type == 5 and "Created" in (await r.followup()).content
    r = await fake.slash(guild, rp, staff, "xp_add_rp_channel", {"channel": rp})
    reply = await r.followup()
    assert "now tracked" in reply.content
    await fake.send_message(rp, alice, "x" * 500)
    for _ in range(100):
        c = await db.find_character(guild.id, "Luna")
        if c.xp == 2:
            break
        await asyncio.sleep(0.02)
    assert c.xp == 2
    r = await fake.slash(guild, rp, alice, "xp")
    shown = await r.followup()
    assert shown.embeds[0]["title"] == "Luna" and shown.ephemeral
    r = await fake.slash(guild, rp, alice, "xp_add_rp_channel", {"channel": rp})
    assert "Manage Server" in r.content and r.ephemeral
