"""Character profiles, retiring, restoring and purging through discord.py and the fake Discord,
on the real database: what players and staff see, and what each refusal leaves unchanged."""
from __future__ import annotations

import asyncio

from bot import XPBot
from database import Database
from fake_discord import run_client
from helpers import eventually


def yes(prompt) -> str:
    return next(c for c in prompt.components if ":yes:" in c)


def no(prompt) -> str:
    return next(c for c in prompt.components if ":no:" in c)


async def names_offered(w, user, command: str, options: dict) -> list[str]:
    result = await w.fake.autocomplete(w.guild, w.rp, user, command, options, "character")
    return [c["name"].split(" · ")[0] for c in result.choices]


# -- /xp_edit ----------------------------------------------------------------------------------

async def test_xp_edit_renames_sets_and_clears_links(w):
    await w.run(w.alice, "xp_create", {"name": "Luna", "image_url": "https://img.example/l.png"})
    reply = await w.run(w.alice, "xp_edit", {"character": "Luna", "name": "Selene",
                                             "sheet_url": "https://sheets.example/selene", "image_url": "none"})
    assert "name, picture, sheet link changed" in reply.content
    selene = await w.character(w.alice, "Selene")
    assert (selene.image_url, selene.sheet_url) == (None, "https://sheets.example/selene")
    shown = await w.run(w.alice, "xp")
    assert shown.embeds[0]["url"] == "https://sheets.example/selene"  # the name links to the sheet


async def test_xp_edit_refusals_change_nothing(w):
    await w.run(w.alice, "xp_create", {"name": "Luna"})
    await w.run(w.alice, "xp_create", {"name": "Bram"})
    await w.refused(w.alice, "xp_edit", {"character": "Luna"}, "at least one of name")
    await w.refused(w.alice, "xp_edit", {"character": "Luna", "name": "bram"}, "already have a character")
    await w.refused(w.alice, "xp_edit", {"character": "Luna", "sheet_url": "ftp://x"}, "sheet URL must start")
    await w.refused(w.bob, "xp_edit", {"character": "Luna", "name": "Stolen"}, "No character")
    await w.refused(w.alice, "xp_edit", {"character": "Luna", "name": "two\nlines"}, "line breaks")
    staff = await w.run(w.mod, "xp_edit", {"character": "Luna", "name": "Luna Prime"})
    assert "name changed" in staff.content and (await w.character(w.alice, "Luna Prime"))


# -- /xp player ---------------------------------------------------------------------------------

async def test_xp_with_a_player_pages_through_their_characters_active_first(w):
    for name in ("Luna", "Bram", "Cora"):
        await w.run(w.alice, "xp_create", {"name": name})  # Cora ends up active
    first = await w.run(w.bob, "xp", {"player": w.alice})
    assert first.embeds[0]["title"] == "Cora" and "1 of 3" in first.embeds[0]["author"]["name"]
    nxt = next(c for c in first.components if c.endswith(":next"))
    w.fake._message_owner.pop(first.id, None)  # a crafted interaction reaches what Discord would hide
    refused = await w.fake.click(first, nxt, w.alice)
    assert refused.ephemeral and "Only the member who asked" in refused.content
    second = await w.fake.click(first, nxt, w.bob)
    assert second.type == 7 and second.embeds[0]["title"] == "Luna"
    named = await w.run(w.bob, "xp", {"player": w.alice, "character": "Bram"})
    assert named.embeds[0]["title"] == "Bram" and "3 of 3" in named.embeds[0]["author"]["name"]
    await w.refused(w.bob, "xp", {"player": w.alice, "character": "Zed"}, "No character")


async def test_xp_pages_keep_working_after_a_restart(fake_discord, db, database_url):
    from world import World
    w = World(fake_discord, db)
    for name in ("Luna", "Bram"):
        await db.create_character(w.guild.id, w.alice.id, name)
    async with run_client(XPBot(Database(database_url, max_size=3), env="dev", guild_id=w.guild.id)):
        first = await w.run(w.bob, "xp", {"player": w.alice})
        assert first.embeds[0]["title"] == "Bram"  # the active one first
    async with run_client(XPBot(Database(database_url, max_size=3), env="dev", guild_id=w.guild.id)):
        second = await fake_discord.click(first, next(c for c in first.components if c.endswith(":next")), w.bob)
        assert second.type == 7 and second.embeds[0]["title"] == "Luna"


# -- /xp_create for someone else, with starting XP ---------------------------------------------

async def test_staff_create_a_character_for_a_member_with_starting_xp_in_its_history(w):
    reply = await w.run(w.mod, "xp_create", {"name": "Luna", "player": w.alice, "starting_xp": 6500})
    assert "active character" in reply.content and not reply.pings
    luna = await w.character(w.alice, "Luna")
    assert (luna.xp, luna.level, luna.active) == (6500, 5, True)
    history = await w.run(w.alice, "xp_history", {"character": "Luna"})
    assert "+6,500" in history.embeds[0]["description"] and "starting XP" in history.embeds[0]["description"]


async def test_a_member_passing_staff_only_options_is_refused_and_nothing_is_created(w):
    await w.refused(w.alice, "xp_create", {"name": "Luna", "player": w.bob}, "Only staff", "Nothing was created")
    await w.refused(w.alice, "xp_create", {"name": "Luna", "starting_xp": 100}, "Only staff")
    await w.refused(w.alice, "xp_create", {"name": "Luna", "starting_xp": 0}, "Only staff")
    await w.refused(w.mod, "xp_create", {"name": "Luna", "starting_xp": 355_001}, "between 0 and 355,000")
    await w.refused(w.mod, "xp_create", {"name": "Luna", "player": w.hunter}, "Bots can't")


# -- retiring and restoring ---------------------------------------------------------------------

async def test_retire_asks_only_the_asker_confirms_and_the_character_leaves_play(w):
    await w.db.add_channel(w.guild.id, "rp", w.rp.id)
    await w.run(w.alice, "xp_create", {"name": "Bram"})
    await w.run(w.alice, "xp_create", {"name": "Luna"})
    prompt = await w.run(w.alice, "xp_retire", {"character": "Luna"})
    assert "keeps its XP" in prompt.content
    before = await w.snapshot()
    w.fake._message_owner.pop(prompt.id, None)  # a crafted interaction reaches what Discord would hide
    assert "Only the member who asked" in (await w.fake.click(prompt, yes(prompt), w.bob)).content
    assert "Nothing was retired" in (await w.fake.click(prompt, no(prompt), w.alice)).content
    assert await w.snapshot() == before
    prompt = await w.run(w.alice, "xp_retire", {"character": "Luna"})
    clicks = await asyncio.gather(*(w.fake.click(prompt, yes(prompt), w.alice) for _ in range(2)))  # a double click
    done, again = sorted(clicks, key=lambda c: "Retired" not in c.content)
    assert "Retired **Luna**" in done.content and "active character is now **Bram**" in done.content
    assert "not among your characters" in again.content  # the second click does nothing more
    listed = await w.run(w.alice, "xp_list", {"retired": True})
    assert "Luna" in listed.embeds[0]["description"] and "Bram" not in listed.embeds[0]["description"]
    assert "Luna" not in (await w.run(w.alice, "xp_list")).embeds[0]["description"]
    assert await names_offered(w, w.alice, "xp_active", {"character": ""}) == ["Bram"]
    assert await names_offered(w, w.alice, "xp_unretire", {"character": ""}) == ["Luna"]
    assert "Luna" not in (await w.run(w.alice, "xp_leaderboard")).embeds[0]["description"]
    await w.refused(w.mod, "xp_grant", {"character": "Luna", "amount": 5}, "retired", "/xp_unretire")
    await w.refused(w.alice, "xp_active", {"character": "Luna"}, "No character")


async def test_unretire_restores_and_refuses_a_name_clash_with_what_to_do(w):
    await w.run(w.alice, "xp_create", {"name": "Luna"})
    luna = await w.character(w.alice, "Luna")
    await w.db.retire_character(w.guild.id, luna.id, owner_id=w.alice.id)
    await w.run(w.alice, "xp_create", {"name": "LUNA"})
    await w.refused(w.alice, "xp_unretire", {"character": "Luna"}, "`/xp_edit`", "`/xp_retire`")
    await w.run(w.alice, "xp_edit", {"character": "LUNA", "name": "Luna II"})
    back = await w.run(w.alice, "xp_unretire", {"character": f"#{luna.id}"})
    assert "back in play" in back.content
    assert (await w.character(w.alice, "Luna II")).active  # restoring doesn't take the active slot


async def test_staff_retire_and_restore_anyones_characters_members_cannot(w):
    await w.run(w.alice, "xp_create", {"name": "Luna"})
    await w.refused(w.bob, "xp_retire", {"character": "Luna"}, "No character")
    prompt = await w.run(w.mod, "xp_retire", {"character": "Luna"})
    assert "Retired **Luna**" in (await w.fake.click(prompt, yes(prompt), w.mod)).content
    await w.refused(w.bob, "xp_unretire", {"character": "Luna"}, "No character")
    assert "back in play" in (await w.run(w.mod, "xp_unretire", {"character": "Luna"})).content


async def test_a_retired_active_character_earns_no_rp_xp_from_messages(w):
    await w.db.add_channel(w.guild.id, "rp", w.rp.id)
    await w.db.set_rp_rate(w.guild.id, 10)
    await w.run(w.alice, "xp_create", {"name": "Luna"})
    luna = await w.character(w.alice, "Luna")
    await w.fake.send_message(w.rp, w.alice, "x" * 30)
    await eventually(lambda: _xp(w, luna.id, 3), "3 XP before retiring")
    prompt = await w.run(w.alice, "xp_retire", {"character": "Luna"})
    await w.fake.click(prompt, yes(prompt), w.alice)
    await w.fake.send_message(w.rp, w.alice, "x" * 50)
    await w.fake.send_message(w.rp, w.bob, "x" * 10)  # a later message proves the first was handled
    await eventually(lambda: w.db.pool.fetchval("SELECT count(*) FROM processed_messages") , "messages seen")
    assert (await w.db.get_character(w.guild.id, luna.id)).xp == 3


async def _xp(w, character_id: int, expected: int) -> bool:
    return (await w.db.get_character(w.guild.id, character_id)).xp == expected


# -- purging ------------------------------------------------------------------------------------

async def test_purge_counts_what_will_go_and_accepts_the_id_of_someone_who_left(w):
    gone = w.fake.add_user("left-the-server")  # not a member of the guild
    await w.db.create_character(w.guild.id, gone.id, "Ghost", starting_xp=300, created_by=w.mod.id)
    await w.db.create_character(w.guild.id, w.alice.id, "Luna")
    prompt = await w.run(w.mod, "xp_purge", {"player": str(gone.id)})
    assert "1 character(s)" in prompt.content and "300 XP" in prompt.content and not prompt.pings
    assert "Nothing was purged" in (await w.fake.click(prompt, no(prompt), w.mod)).content
    prompt = await w.run(w.mod, "xp_purge", {"player": gone})
    done = await w.fake.click(prompt, yes(prompt), w.mod)
    assert "Purged" in done.content and "300 XP" in done.content
    assert await w.db.list_characters(w.guild.id, gone.id) == []
    assert [c.name for c in await w.db.list_characters(w.guild.id, w.alice.id)] == ["Luna"]


async def test_purge_refusals_change_nothing(w):
    await w.db.create_character(w.guild.id, w.alice.id, "Luna")
    await w.refused(w.mod, "xp_purge", {"player": w.bob}, "nothing to purge")
    await w.refused(w.alice, "xp_purge", {"player": w.alice}, "Manage Server")
    prompt = await w.run(w.mod, "xp_purge", {"player": w.alice})
    before = await w.snapshot()
    w.fake._message_owner.pop(prompt.id, None)
    assert "Only the member who asked" in (await w.fake.click(prompt, yes(prompt), w.admin)).content
    assert await w.snapshot() == before
