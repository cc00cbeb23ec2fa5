"""Quests through discord.py and the fake Discord on the real database: a quest from start to
summary, autocomplete, exactly-once ending (a double click, a redelivered click, a restart
between confirming and clicking, two bot processes, a stale confirmation), paging, who may do
what, and every refusal leaving everything as it was."""
from __future__ import annotations

import asyncio
import logging

import pytest

import quests
import rules
from bot import XPBot
from database import Database
from fake_discord import run_client
from helpers import STATE_TABLES, eventually, snapshot
from world import World

QUEST_TABLES = ("quests", "quest_dms", "quest_pcs", "quest_monsters")
HUGE_ID = "#99999999999999999999"  # beyond a bigint


@pytest.fixture(autouse=True)
async def no_quests(db):
    await db.pool.execute("TRUNCATE quests RESTART IDENTITY CASCADE")


def errors_logged(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def with_gm(w: World):
    """A member who runs quests without being staff."""
    w.gm = w.fake.add_member(w.guild, "gm")
    return w.gm


async def everything(w) -> dict:
    return await snapshot(w.db, STATE_TABLES + QUEST_TABLES)


async def refused(w, user, name, options, *expected):
    """Refused with an ephemeral answer containing `expected`; nothing changed."""
    before = await everything(w)
    answer = await w.run(user, name, options, strict=False)
    assert answer.ephemeral and not answer.pings, answer
    for text in expected:
        assert text in answer.content, answer.content
    assert "Traceback" not in answer.content and "went wrong" not in answer.content
    assert await everything(w) == before
    return answer


async def dragon_hunt(w, **options):
    """The gm's quest for levels 1–5 with Luna (Alice) in it, worth 700 XP."""
    gm = getattr(w, "gm", None) or with_gm(w)
    await w.fake.guild_create(w.guild)
    started = await w.run(w.mod, "quest_start", {"name": "Dragon Hunt", "min_level": 1, "max_level": 5, "dm": gm,
                                                 **options})
    assert "Started **Dragon Hunt**" in started.content, started.content
    if not await w.db.list_characters(w.guild.id, w.alice.id):
        await w.run(w.alice, "xp_create", {"name": "Luna"})
    assert "joined" in (await w.run(w.alice, "quest_join", {"quest": "Dragon Hunt", "character": "Luna"})).content
    await w.run(gm, "quest_add_monster", {"quest": "Dragon Hunt", "cr": "1", "count": 3})
    await w.run(gm, "quest_add_monster", {"quest": "Dragon Hunt", "cr": "1/2", "count": 1, "monster_name": "kobold"})
    return await w.db.find_quest(w.guild.id, "Dragon Hunt")


async def end_prompt(w, user=None, options=None):
    prompt = await w.run(user or w.gm, "quest_end", {"quest": "Dragon Hunt", **(options or {})})
    assert "End **Dragon Hunt**?" in prompt.content, prompt.content
    return prompt


def yes(prompt) -> str:
    return next(c for c in prompt.components if c.startswith("xp:qend:yes:"))


async def answer_to(click):
    """What the bot made of a click: the edited prompt or a follow-up."""
    await eventually(lambda: click.edits or click.followups or click.type in (4, 7), f"an answer to {click.label}")
    return (click.edits or click.followups or [click])[-1]


async def luna_xp(w) -> int:
    return (await w.character(w.alice, "Luna")).xp


async def quest_grants(w) -> int:
    return await w.db.pool.fetchval("SELECT count(*) FROM xp_grants WHERE source = 'quest'")


# -- a quest from start to summary -----------------------------------------------------------------

async def test_a_quest_from_start_to_summary_awards_each_pc_once_and_announces_level_ups(w, caplog):
    log = w.fake.add_channel(w.guild, "xp-log")
    await w.db.set_log_channel(w.guild.id, log.id)
    await dragon_hunt(w, type="One-shot", start_date="2025-03-14")
    await w.run(w.bob, "xp_create", {"name": "Bram"})
    await w.db.grant_xp(w.guild.id, (await w.character(w.bob, "Bram")).id, 6500, w.mod.id)  # level 5
    added = await w.run(w.gm, "quest_add_pc", {"quest": "Dragon Hunt", "character": "Bram"})
    assert "Added **Bram**" in added.content and "level 5" in added.content
    info = await w.run(w.bob, "quest_info", {"quest": "dragon hunt"})
    text = info.text()
    assert "Levels 1–5 · One-shot · 2025-03-14 · active" in text and f"<@{w.gm.id}>" in text
    assert "**Luna**" in text and "**Bram**" in text and "3 × CR 1" in text and "1 × CR 1/2 kobold" in text
    assert "700 XP" in text and "350 XP if it ended now" in text
    prompt = await end_prompt(w, options={"end_date": "2025-03-15"})
    assert "2 PC(s) get 350 XP each (700 XP in all)" in prompt.content
    summary = await answer_to(await w.fake.click(prompt, yes(prompt), w.gm))
    text = summary.text()
    assert "Quest completed: Dragon Hunt" in text and f"ended by <@{w.gm.id}>" in text
    assert "**Luna**" in text and "level 1 → 2 · +350 XP" in text and "level 5 → 5 · +350 XP" in text
    assert "Total\n700 XP" in text and "Per PC\n350 XP" in text and summary.components == []
    assert await luna_xp(w) == 350 and await quest_grants(w) == 2
    history = await w.run(w.alice, "xp_history", {"character": "Luna"})
    assert "(quest)" in history.embeds[0]["description"] and "Dragon Hunt" in history.embeds[0]["description"]
    announced = await eventually(lambda: [p for p in w.fake.posts(w.rp) if "level 2" in p.content], "a level-up")
    assert "Luna" in announced[0].content and not announced[0].pings
    logged = await w.fake.wait_for_posts(1, log)
    assert "Quest completed: Dragon Hunt" in logged[-1].text() and not logged[-1].pings
    done = await w.db.find_quest(w.guild.id, "Dragon Hunt")
    assert done["end_date"].isoformat() == "2025-03-15"
    assert errors_logged(caplog) == []


async def test_ending_without_award_or_without_pcs_awards_nothing(w):
    await dragon_hunt(w)
    prompt = await end_prompt(w, options={"award": False})
    assert "get no XP" in prompt.content
    summary = await answer_to(await w.fake.click(prompt, yes(prompt), w.gm))
    assert "ended without awarding XP" in summary.text() and await luna_xp(w) == 0
    await w.run(w.mod, "quest_start", {"name": "Empty", "min_level": 1, "max_level": 2})
    prompt = await w.run(w.mod, "quest_end", {"quest": "Empty"})
    assert "no PCs" in prompt.content
    summary = await answer_to(await w.fake.click(prompt, yes(prompt), w.mod))
    assert "nothing: no PCs" in summary.text() and await quest_grants(w) == 0


async def test_cancel_ends_nothing(w):
    await dragon_hunt(w)
    prompt = await end_prompt(w)
    before = await everything(w)
    cancel = next(c for c in prompt.components if c.startswith("xp:qend:no:"))
    assert "Nothing was ended" in (await w.fake.click(prompt, cancel, w.gm)).content
    assert await everything(w) == before


async def test_the_largest_quest_fits_in_discords_limits(w):
    """10 DMs, 50 PCs and 50 monster entries, every name 100 characters of markdown: the
    prompt, the summary, the log post, /quest_info and /quest_list all fit."""
    log = w.fake.add_channel(w.guild, "xp-log")
    await w.db.set_log_channel(w.guild.id, log.id)
    name = "*_`" * 33 + "Q"
    quest = await w.db.create_quest(w.guild.id, name, 1, 20, created_by=w.mod.id, quest_type="~|" * 50)
    for i in range(1, rules.QUEST_DMS_MAX):
        await w.db.add_quest_dm(w.guild.id, quest["id"], 10**17 + i, added_by=w.mod.id)
    for i in range(rules.QUEST_PCS_MAX):
        made = await w.db.create_character(w.guild.id, 10**17 + i, f"{i:02}" + "_" * 98)
        await w.db.add_quest_pc(w.guild.id, quest["id"], made.id, added_by=w.mod.id)
    for i in range(rules.QUEST_MONSTERS_MAX):
        await w.db.add_quest_monster(w.guild.id, quest["id"], "30", 1, f"{i:02}" + "*" * 98, added_by=w.mod.id)
    info = await w.run(w.alice, "quest_info", {"quest": f"#{quest['id']}"})
    assert "… and" in info.text() and "PCs (50)" in info.text()
    prompt = await w.run(w.mod, "quest_end", {"quest": f"#{quest['id']}"})
    summary = await answer_to(await w.fake.click(prompt, yes(prompt), w.mod))
    assert "Quest completed" in summary.text() and "Per PC\n155,000 XP" in summary.text()
    assert "Quest completed" in (await w.fake.wait_for_posts(1, log))[-1].text()
    listed = await w.run(w.alice, "quest_list", {"completed": True})
    assert "155,000 XP each" in listed.text()
    assert w.fake.rejected == []


# -- exactly once ----------------------------------------------------------------------------------

async def test_a_double_click_ends_once_and_the_second_click_is_told_by_whom_and_when(w):
    await dragon_hunt(w)
    prompt = await end_prompt(w)
    clicks = await asyncio.gather(*(w.fake.click(prompt, yes(prompt), w.gm) for _ in range(2)))
    answers = sorted([await answer_to(c) for c in clicks], key=lambda a: "already" in a.text())
    assert "Quest completed" in answers[0].text()
    assert f"was already ended by <@{w.gm.id}> <t:" in answers[1].content and answers[1].ephemeral
    assert await luna_xp(w) == 700 and await quest_grants(w) == 1


def answered_elsewhere(caplog) -> int:
    return sum("already answered elsewhere" in r.getMessage() for r in caplog.records)


async def test_the_same_click_delivered_twice_ends_once(w, caplog):
    caplog.set_level(logging.INFO, logger="xpbot")
    await dragon_hunt(w)
    prompt = await end_prompt(w)
    click = await w.fake.click(prompt, yes(prompt), w.gm)
    await answer_to(click)
    await w.fake.dispatch("INTERACTION_CREATE", click.payload, w.guild.id)  # a redelivery
    await eventually(lambda: answered_elsewhere(caplog), "the redelivery recognised")
    assert await luna_xp(w) == 700 and await quest_grants(w) == 1
    assert errors_logged(caplog) == []


async def test_a_later_click_on_the_same_confirmation_is_told_who_ended_it(w):
    quest = await dragon_hunt(w)
    prompt = await end_prompt(w)
    await answer_to(await w.fake.click(prompt, yes(prompt), w.gm))
    # The same button on a message Discord still shows somewhere (a stale client): it can be clicked.
    stale = await w.client.get_partial_messageable(w.rp.id).send(
        "stale", view=quests.end_view(w.gm.id, quest["id"], True, None))
    late = await answer_to(await w.fake.click(stale.id, yes(w.fake.message(stale.id)), w.gm))
    assert f"already ended by <@{w.gm.id}>" in late.content and not late.pings
    again = await refused(w, w.gm, "quest_end", {"quest": "Dragon Hunt"}, "has ended", "`/quest_info`")
    assert "ended by" in again.content
    assert await luna_xp(w) == 700 and await quest_grants(w) == 1


async def test_a_restart_between_confirming_and_clicking_ends_once(fake_discord, db, database_url):
    w = World(fake_discord, db)
    async with run_client(XPBot(Database(database_url, max_size=3), env="dev", guild_id=w.guild.id)) as w.client:
        await dragon_hunt(w)
        prompt = await end_prompt(w)
    async with run_client(XPBot(Database(database_url, max_size=3), env="dev", guild_id=w.guild.id)) as w.client:
        summary = await answer_to(await fake_discord.click(prompt, yes(prompt), w.gm))
        assert "Quest completed" in summary.text()
        assert await luna_xp(w) == 700 and await quest_grants(w) == 1


async def test_two_bot_processes_receiving_the_same_clicks_end_once(fake_discord, db, database_url, caplog):
    caplog.set_level(logging.INFO, logger="xpbot")
    w = World(fake_discord, db)
    first = XPBot(Database(database_url, max_size=3), env="dev", guild_id=w.guild.id)
    second = XPBot(Database(database_url, max_size=3), env="dev", guild_id=w.guild.id, sync_commands=False)
    async with run_client(first) as w.client:
        await dragon_hunt(w)
        prompt = await end_prompt(w)
        async with run_client(second):
            await fake_discord.wait_for_sessions(2)
            # each of two clicks reaches both processes: four handlers, one end
            clicks = await asyncio.gather(*(fake_discord.click(prompt, yes(prompt), w.gm) for _ in range(2)))
            answers = [await answer_to(c) for c in clicks]
            await eventually(lambda: answered_elsewhere(caplog) == 2, "each click answered by one process only")
            assert sum("Quest completed" in a.text() for a in answers) == 1
            assert await luna_xp(w) == 700 and await quest_grants(w) == 1
    assert errors_logged(caplog) == []


# -- autocomplete --------------------------------------------------------------------------------

async def offered(w, user, command, options, focused) -> list[str]:
    result = await w.fake.autocomplete(w.guild, w.rp, user, command, options, focused)
    return [c["name"].split(" · ")[0] for c in result.choices]


async def test_autocomplete_offers_quests_types_ratings_and_the_quests_pcs(w):
    quest = await dragon_hunt(w, type="One-shot")
    await w.run(w.alice, "xp_create", {"name": "Bram"})
    await w.run(w.bob, "xp_create", {"name": "Cora"})
    await w.run(w.gm, "quest_add_pc", {"quest": "Dragon Hunt", "character": "Cora"})
    await w.run(w.mod, "quest_start", {"name": "Old War", "min_level": 1, "max_level": 2})
    prompt = await w.run(w.mod, "quest_end", {"quest": "Old War"})
    await answer_to(await w.fake.click(prompt, yes(prompt), w.mod))
    assert await offered(w, w.alice, "quest_join", {"quest": ""}, "quest") == ["Dragon Hunt"]
    assert await offered(w, w.alice, "quest_info", {"quest": ""}, "quest") == ["Dragon Hunt", "Old War"]
    assert await offered(w, w.mod, "quest_start", {"name": "x", "min_level": 1, "max_level": 2, "type": "one"},
                         "type") == ["One-shot"]
    ratings = await w.fake.autocomplete(w.guild, w.rp, w.gm, "quest_add_monster",
                                        {"quest": f"#{quest['id']}", "cr": "1/", "count": 1}, "cr")
    assert [c["value"] for c in ratings.choices] == ["1/8", "1/4", "1/2"]
    assert ratings.choices[0]["name"] == "CR 1/8 · 25 XP each"
    mine = await offered(w, w.alice, "quest_leave", {"quest": f"#{quest['id']}", "character": ""}, "character")
    assert mine == ["Luna"]  # her PC in this quest, not Bram, not Bob's Cora
    assert await offered(w, w.gm, "quest_remove_pc", {"quest": f"#{quest['id']}", "character": ""},
                         "character") == ["Luna", "Cora"]
    assert "left **Dragon Hunt**" in (await w.run(w.alice, "quest_leave", {"quest": f"#{quest['id']}",
                                                                           "character": "Luna"})).content


# -- paging ----------------------------------------------------------------------------------------

async def test_quest_list_pages_with_buttons_that_survive_a_restart(fake_discord, db, database_url):
    w = World(fake_discord, db)
    for i in range(12):
        await db.create_quest(w.guild.id, f"Quest {i:02}", 1, 5, created_by=w.mod.id)
    async with run_client(XPBot(Database(database_url, max_size=3), env="dev", guild_id=w.guild.id)) as w.client:
        first = await w.run(w.alice, "quest_list")
        assert "Page 1 of 2 · 12 quests" in first.text() and "Quest 11" in first.text()
        assert "Quest 01" not in first.text() and not first.pings
    async with run_client(XPBot(Database(database_url, max_size=3), env="dev", guild_id=w.guild.id)) as w.client:
        nxt = next(c for c in first.components if c.endswith(":next"))
        second = await fake_discord.click(first, nxt, w.alice)
        assert second.type == 7 and "Page 2 of 2" in second.text() and "Quest 01" in second.text()
        crafted = await w.client.get_partial_messageable(w.rp.id).send(
            "crafted", view=quest_page_view(999999))
        last = await fake_discord.click(crafted.id, "xp:quests:active:999999:next", w.alice)
        assert "Page 2 of 2" in last.text()  # a page beyond the end shows the last one
        done = await w.run(w.alice, "quest_list", {"completed": True})
        assert "No completed quests yet" in done.text()


def quest_page_view(page: int):
    import discord
    view = discord.ui.View(timeout=None)
    view.add_item(quests.QuestPageButton(False, page, "next"))
    return view


# -- who may do what -------------------------------------------------------------------------------

async def test_only_the_quests_dms_and_staff_manage_it(w):
    quest = await dragon_hunt(w)
    await w.run(w.bob, "xp_create", {"name": "Bram"})
    for name, options in (("quest_add_dm", {"member": w.bob}), ("quest_add_pc", {"character": "Bram"}),
                          ("quest_remove_pc", {"character": "Luna"}),
                          ("quest_add_monster", {"cr": "1", "count": 1}), ("quest_end", {}), ("quest_delete", {})):
        await refused(w, w.bob, name, {"quest": "Dragon Hunt", **options}, "Only the DMs of **Dragon Hunt**",
                      f"<@{w.gm.id}>", "Nothing was changed")
    await refused(w, w.alice, "quest_start", {"name": "Mine", "min_level": 1, "max_level": 2}, "Only staff")
    assert "is now a DM" in (await w.run(w.mod, "quest_add_dm", {"quest": "Dragon Hunt", "member": w.bob})).content
    assert "Added **Bram**" in (await w.run(w.bob, "quest_add_pc", {"quest": "Dragon Hunt",
                                                                     "character": "Bram"})).content
    assert (await w.db.get_quest(w.guild.id, quest["id"]))["dm_ids"] == [w.gm.id, w.bob.id]
    prompt = await w.run(w.mod, "quest_delete", {"quest": "Dragon Hunt"})  # staff need not be DMs
    deleted = await w.fake.click(prompt, next(c for c in prompt.components if ":yes:" in c), w.mod)
    assert "Deleted the quest **Dragon Hunt**" in deleted.content
    assert await w.db.get_quest(w.guild.id, quest["id"]) is None and await luna_xp(w) == 0


async def test_a_dm_who_lost_the_quest_cannot_confirm_an_old_prompt(w):
    await dragon_hunt(w)
    prompt = await w.run(w.mod, "quest_end", {"quest": "Dragon Hunt"})
    w.fake.member(w.guild, w.mod).role_ids.clear()  # no longer staff, and never a DM of it
    before = await everything(w)
    answer = await answer_to(await w.fake.click(prompt, yes(prompt), w.mod))
    assert "Only the DMs of **Dragon Hunt**" in answer.content
    assert await everything(w) == before


# -- refusals --------------------------------------------------------------------------------------

async def test_bad_input_gets_a_clear_answer_and_changes_nothing(w, caplog):
    await dragon_hunt(w, start_date="2025-03-14")
    await w.run(w.bob, "xp_create", {"name": "Bram"})
    start = {"name": "Rescue", "min_level": 1, "max_level": 5}
    cases = [
        (w.alice, "quest_info", {"quest": "Nope"}, ["No quest called", "Nope"]),
        (w.alice, "quest_info", {"quest": HUGE_ID}, ["No quest called"]),
        (w.mod, "quest_start", {**start, "min_level": 0}, ["minimum level must be between 1 and 20"]),
        (w.mod, "quest_start", {**start, "max_level": 21}, ["maximum level must be between 1 and 20"]),
        (w.mod, "quest_start", {**start, "min_level": 10**20}, ["minimum level must be"]),
        (w.mod, "quest_start", {**start, "min_level": 6}, ["minimum level (6) is above the maximum level (5)"]),
        (w.mod, "quest_start", {**start, "start_date": "14.03.2025"}, ["YYYY-MM-DD"]),
        (w.mod, "quest_start", {**start, "start_date": "2025-02-30"}, ["not a day of the calendar"]),
        (w.mod, "quest_start", {**start, "name": "DRAGON HUNT"}, ["already an active quest", "DRAGON HUNT"]),
        (w.mod, "quest_start", {**start, "dm": w.hunter}, ["Bots can't be DMs"]),
        (w.gm, "quest_end", {"quest": "Dragon Hunt", "end_date": "2025-03-13"}, ["before the quest's start_date"]),
        (w.gm, "quest_end", {"quest": "Dragon Hunt", "end_date": "soon"}, ["YYYY-MM-DD"]),
        (w.gm, "quest_add_monster", {"quest": "Dragon Hunt", "cr": "1", "count": 0},
         ["count must be between 1 and 1,000"]),
        (w.gm, "quest_add_monster", {"quest": "Dragon Hunt", "cr": "1", "count": 1001}, ["1,000"]),
        (w.gm, "quest_add_monster", {"quest": "Dragon Hunt", "cr": "31", "count": 1}, ["not a challenge rating"]),
        (w.gm, "quest_add_pc", {"quest": "Dragon Hunt", "character": HUGE_ID}, ["No character"]),
        (w.alice, "quest_join", {"quest": "Dragon Hunt", "character": "Bram"}, ["No character called **Bram**",
                                                                               "your characters"]),
        (w.alice, "quest_join", {"quest": "Dragon Hunt", "character": "Luna"}, ["already in"]),
        (w.bob, "quest_leave", {"quest": "Dragon Hunt", "character": "Luna"}, ["No character called **Luna**"]),
        (w.bob, "quest_leave", {"quest": "Dragon Hunt", "character": "Bram"}, ["not in", "Dragon Hunt"]),
    ]
    for user, name, options, expected in cases:
        await refused(w, user, name, options, *expected)
    await w.run(w.mod, "quest_start", {"name": "Veterans", "min_level": 3, "max_level": 5})
    await refused(w, w.bob, "quest_join", {"quest": "Veterans", "character": "Bram"},
                  '"Bram" is level 1, and "Veterans" is for levels 3–5', "DMs")
    prompt = await end_prompt(w)
    await answer_to(await w.fake.click(prompt, yes(prompt), w.gm))
    for name, options in (("quest_join", {"character": "Luna"}), ("quest_add_monster", {"cr": "1", "count": 1}),
                          ("quest_delete", {}), ("quest_add_pc", {"character": "Bram"})):
        user = w.alice if name == "quest_join" else w.gm
        await refused(w, user, name, {"quest": "Dragon Hunt", **options}, "**Dragon Hunt** has ended")
    assert errors_logged(caplog) == []


@pytest.mark.parametrize("custom_id, expected", [
    ("xp:qend:yes:{gm}:99999999999999999999:1:-", "That quest doesn't exist"),
    ("xp:qend:yes:{gm}:12345:1:-", "no longer exists"),
    ("xp:qend:yes:{gm}:{quest}:1:20259999", "not a day of the calendar"),
    ("xp:qend:yes:{gm}:{quest}:1:20250101", "(2025-01-01) is before the quest's start"),
])
async def test_crafted_confirmations_get_clear_answers_and_change_nothing(w, caplog, custom_id, expected):
    quest = await dragon_hunt(w, start_date="2025-03-14")
    custom_id = custom_id.format(gm=w.gm.id, quest=quest["id"])
    *_, asker, quest_id, award, day = custom_id.split(":")
    button = quests.QuestEndButton("yes", int(asker), int(quest_id), award == "1", day)
    import discord
    view = discord.ui.View(timeout=None)
    view.add_item(button)
    message = await w.client.get_partial_messageable(w.rp.id).send("crafted", view=view)
    before = await everything(w)
    answer = await answer_to(await w.fake.click(message.id, custom_id, w.gm))
    assert expected in answer.content and answer.ephemeral
    assert await everything(w) == before
    assert errors_logged(caplog) == []
