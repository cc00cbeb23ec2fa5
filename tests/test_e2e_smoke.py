"""A first end-to-end pass: the real XPBot through the fake Discord and the real database."""
from helpers import eventually


async def test_create_track_write_and_show(w):
    fake, guild, rp, alice, staff, db = w.fake, w.guild, w.rp, w.alice, w.mod, w.db
    r = await fake.slash(guild, rp, alice, "xp_create", {"name": "Luna"})
    assert r.type == 5 and "Created" in (await r.followup()).content
    r = await fake.slash(guild, rp, staff, "xp_add_rp_channel", {"channel": rp})
    reply = await r.followup()
    assert "now tracked" in reply.content
    await fake.send_message(rp, alice, "x" * 500)

    async def luna_has_2_xp():
        return (await db.find_character(guild.id, "Luna")).xp == 2
    await eventually(luna_has_2_xp, "Luna with 2 XP from 500 characters")
    r = await fake.slash(guild, rp, alice, "xp")
    shown = await r.followup()
    assert shown.embeds[0]["title"] == "Luna" and shown.ephemeral
    r = await fake.slash(guild, rp, alice, "xp_add_rp_channel", {"channel": rp})
    assert "Manage Server" in r.content and r.ephemeral
