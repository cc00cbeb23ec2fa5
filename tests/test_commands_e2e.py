"""Every command through discord.py and the fake Discord, on the real database:
a success and a refusal each, checking the answer and what the database holds."""
from __future__ import annotations

import asyncio
import gc
import json

import discord
import pytest

import migrate_to_postgres
from bot import XPBot
from database import Database
from fake_discord import run_client
from helpers import eventually
from world import World


# -- players -------------------------------------------------------------------------------------

async def test_xp_create_makes_an_active_character_and_refuses_a_duplicate(w):
    reply = await w.run(w.alice, "xp_create", {"name": "Luna", "image_url": "https://x.org/l.png"})
    assert "Created **Luna**" in reply.content and reply.ephemeral
    assert (await w.db.get_active_character(w.guild.id, w.alice.id)).name == "Luna"
    await w.refused(w.alice, "xp_create", {"name": "LUNA"}, "already have a character")
    await w.refused(w.alice, "xp_create", {"name": "Bram", "image_url": "ftp://x"}, "http")
    await w.refused(w.alice, "xp_create", {"name": "x" * 4000}, "at most 100")
    await w.refused(w.alice, "xp_create", {"name": "   "}, "can't be empty")


async def test_xp_shows_level_bar_and_image_and_refuses_without_a_character(w):
    await w.refused(w.alice, "xp", {}, "/xp_create")
    luna = await w.db.create_character(w.guild.id, w.alice.id, "Luna", "https://x.org/l.png")
    await w.db.grant_xp(w.guild.id, luna.id, 450, granted_by=w.mod.id)
    embed = (await w.run(w.alice, "xp")).embeds[0]
    assert embed["title"] == "Luna" and embed["thumbnail"]["url"] == "https://x.org/l.png"
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Level"] == "2" and fields["XP"] == "450"
    bar = fields["Progress to level 3"]
    assert bar.count("█") + bar.count("░") == 20 and "150/600" in bar
    await w.db.grant_xp(w.guild.id, luna.id, 400000, granted_by=w.mod.id)
    fields = {f["name"]: f["value"] for f in (await w.run(w.alice, "xp", {"character": "luna"})).embeds[0]["fields"]}
    assert fields["Level"] == "20" and "Progress" in fields and "█" not in fields["Progress"]


async def test_xp_of_someone_elses_character_is_refused(w):
    bram = await w.db.create_character(w.guild.id, w.bob.id, "Bram")
    await w.db.create_character(w.guild.id, w.alice.id, "Luna")
    await w.refused(w.alice, "xp", {"character": f"#{bram.id}"}, "No character")
    await w.refused(w.alice, "xp", {"character": "Bram"}, "No character")


async def test_xp_active_switches_and_refuses_unknown_names(w):
    await w.db.create_character(w.guild.id, w.alice.id, "Luna")
    await w.db.create_character(w.guild.id, w.alice.id, "Bram")
    reply = await w.run(w.alice, "xp_active", {"character": "lunna"})  # a close misspelling
    assert "**Luna** is now your active character" in reply.content
    assert (await w.db.get_active_character(w.guild.id, w.alice.id)).name == "Luna"
    await w.refused(w.alice, "xp_active", {"character": "Zed"}, "No character called **Zed**")


async def test_xp_list_marks_the_active_character(w):
    await w.refused(w.alice, "xp_list", {}, "no characters")
    await w.db.create_character(w.guild.id, w.alice.id, "Luna")
    await w.db.create_character(w.guild.id, w.alice.id, "Bram")
    text = (await w.run(w.alice, "xp_list")).embeds[0]["description"]
    assert "• **Luna**" in text and "⭐ **Bram**" in text


async def test_xp_delete_asks_and_only_the_caller_can_confirm(w):
    luna = await w.db.create_character(w.guild.id, w.alice.id, "Luna")
    await w.db.create_character(w.guild.id, w.alice.id, "Bram")
    ask = await w.run(w.alice, "xp_delete", {"character": f"#{luna.id}"})
    assert "Delete **Luna**" in ask.content
    yes = next(c for c in ask.components if c.startswith("xp:del:yes"))
    no = next(c for c in ask.components if c.startswith("xp:del:no"))
    cancel = await w.fake.click(ask, no, w.alice)
    assert "Nothing was deleted" in cancel.content and len(await w.db.list_characters(w.guild.id, w.alice.id)) == 2
    ask = await w.run(w.alice, "xp_delete", {"character": "Luna"})
    done = await w.fake.click(ask, next(c for c in ask.components if c.startswith("xp:del:yes")), w.alice)
    assert "Deleted **Luna**" in done.content
    assert [c.name for c in await w.db.list_characters(w.guild.id, w.alice.id)] == ["Bram"]
    assert yes  # the first prompt's button named the same character


async def test_xp_delete_of_someone_elses_character_is_refused(w):
    bram = await w.db.create_character(w.guild.id, w.bob.id, "Bram")
    await w.refused(w.alice, "xp_delete", {"character": f"#{bram.id}"}, "No character")


async def test_xp_set_timezone_with_autocomplete_and_refusal(w):
    empty = await w.fake.autocomplete(w.guild, w.rp, w.alice, "xp_set_timezone", {"timezone": ""}, "timezone")
    assert "UTC" in [c["value"] for c in empty.choices] and len(empty.choices) <= 25
    typed = await w.fake.autocomplete(w.guild, w.rp, w.alice, "xp_set_timezone", {"timezone": "berl"}, "timezone")
    assert [c["value"] for c in typed.choices] == ["Europe/Berlin"]
    reply = await w.run(w.alice, "xp_set_timezone", {"timezone": "europe/berlin"})
    assert "**Europe/Berlin**" in reply.content
    assert await w.db.get_timezone(w.guild.id, w.alice.id) == "Europe/Berlin"
    await w.refused(w.alice, "xp_set_timezone", {"timezone": "Mars/Olympus"}, "not a time zone")


async def test_xp_tracking_and_help(w):
    await w.db.add_channel(w.guild.id, "rp", w.rp.id)
    embed = (await w.run(w.alice, "xp_tracking")).embeds[0]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert f"<#{w.rp.id}>" in fields["RP channels"] and "240" in fields["RP XP"] and fields["HF channels"] == "none"
    help_embed = (await w.run(w.alice, "xp_help")).embeds[0]
    text = json.dumps(help_embed)
    for command in w.client.tree.get_commands():  # every command, none cut off by Discord's field limit
        assert f"/{command.name}`" in text, command.name
    assert all(len(field["value"]) <= 1024 for field in help_embed["fields"])


# -- staff ----------------------------------------------------------------------------------------

STAFF_COMMANDS = [
    ("xp_grant", {"character": "Luna", "amount": 5}),
    ("xp_add_rp_channel", {"channel": "RP"}), ("xp_remove_rp_channel", {"channel": "RP"}),
    ("xp_add_hf_channel", {"channel": "RP"}), ("xp_remove_hf_channel", {"channel": "RP"}),
    ("xp_set_cap", {"amount": 3}), ("xp_set_rate", {"characters": 100}),
    ("xp_config_hf", {"attempt_xp": 2}), ("xp_settings", {}), ("xp_sync", {}), ("xp_export", {}),
]


@pytest.mark.parametrize("name, options", STAFF_COMMANDS, ids=[c[0] for c in STAFF_COMMANDS])
async def test_staff_commands_are_refused_to_members_by_the_bot_itself(w, name, options):
    await w.db.create_character(w.guild.id, w.alice.id, "Luna")
    options = {k: (w.rp if v == "RP" else v) for k, v in options.items()}
    await w.refused(w.alice, name, options, "Manage Server")
    syncs = list(w.fake.command_syncs)
    reply = await w.run(w.mod, name, options)
    assert "Manage Server" not in (reply.content or "") and reply.ephemeral
    if name == "xp_sync":
        assert w.fake.command_syncs[len(syncs):] == [(w.guild.id, syncs[-1][1])]  # dev: the guild only


async def test_administrators_count_as_staff(w):
    reply = await w.run(w.admin, "xp_set_cap", {"amount": 7})
    assert "**7**" in reply.content and (await w.db.get_config(w.guild.id)).daily_rp_cap == 7


async def test_xp_grant_adds_removes_records_and_handles_names(w):
    luna = await w.db.create_character(w.guild.id, w.alice.id, "Luna")
    choices = await w.fake.autocomplete(w.guild, w.rp, w.mod, "xp_grant", {"character": "lu", "amount": 1}, "character")
    assert choices.choices[0]["value"] == f"#{luna.id}" and str(w.alice.id) in choices.choices[0]["name"]
    reply = await w.run(w.mod, "xp_grant", {"character": f"#{luna.id}", "amount": 350, "reason": "quest"})
    assert "0 → 350" in reply.content and "level 1 → 2" in reply.content
    reply = await w.run(w.mod, "xp_grant", {"character": "luna", "amount": -1000})
    assert "350 → 0" in reply.content
    assert [(r["amount"], r["reason"]) for r in await w.db.grant_history(w.guild.id, luna.id)] == [
        (-1000, None), (350, "quest")]
    await w.db.create_character(w.guild.id, w.bob.id, "Luna")
    await w.refused(w.mod, "xp_grant", {"character": "Luna", "amount": 5}, "could mean")
    await w.refused(w.mod, "xp_grant", {"character": f"#{luna.id}", "amount": 0}, "can't be 0")
    await w.refused(w.mod, "xp_grant", {"character": f"#{luna.id}", "amount": 10**12}, "between")


async def test_channel_commands_track_untrack_and_say_when_nothing_changed(w):
    reply = await w.run(w.mod, "xp_add_rp_channel", {"channel": w.rp})
    assert "now tracked for RP" in reply.content
    reply = await w.run(w.mod, "xp_add_rp_channel", {"channel": w.rp})
    assert "already tracked" in reply.content
    assert (await w.db.get_config(w.guild.id)).rp_channels == (w.rp.id,)
    reply = await w.run(w.mod, "xp_add_hf_channel", {"channel": w.hf})
    assert "now tracked for HF" in reply.content
    reply = await w.run(w.mod, "xp_remove_rp_channel", {"channel": w.hf})
    assert "wasn't tracked" in reply.content
    reply = await w.run(w.mod, "xp_remove_hf_channel", {"channel": w.hf})
    assert "no longer tracked" in reply.content
    cfg = await w.db.get_config(w.guild.id)
    assert (cfg.rp_channels, cfg.hf_channels) == ((w.rp.id,), ())


async def test_rate_cap_and_hf_settings_validate(w):
    assert "1 XP per 100 characters" in (await w.run(w.mod, "xp_set_rate", {"characters": 100})).content
    assert "**3**" in (await w.run(w.mod, "xp_set_cap", {"amount": 3})).content
    reply = await w.run(w.mod, "xp_config_hf", {"attempt_xp": 2, "success_xp": 0, "daily_cap": 4})
    assert "**2** per attempt" in reply.content
    cfg = await w.db.get_config(w.guild.id)
    assert (cfg.char_per_rp, cfg.daily_rp_cap, cfg.hf_attempt_xp, cfg.hf_success_xp, cfg.daily_hf_cap) == (100, 3, 2, 0, 4)
    await w.refused(w.mod, "xp_set_cap", {"amount": 0}, "between 1")
    await w.refused(w.mod, "xp_set_rate", {"characters": -5}, "between 1")
    await w.refused(w.mod, "xp_config_hf", {}, "at least one")
    await w.refused(w.mod, "xp_config_hf", {"daily_cap": 0}, "between 1")


async def test_settings_panel_modals_and_channel_selects(w):
    panel = await w.run(w.mod, "xp_settings")
    assert panel.embeds[0]["title"] == "XP settings"
    assert {"xp:set:rp", "xp:set:hf", "xp:set:lvl", "xp:chan:rp", "xp:chan:hf"} <= set(panel.components)
    modal = await w.fake.click(panel, "xp:set:rp", w.mod)
    assert modal.type == 9
    saved = await w.fake.submit_modal(modal, {"rate": "120", "cap": "6"}, w.mod)
    assert saved.type == 7 and "RP settings saved" in saved.embeds[0]["description"]
    cfg = await w.db.get_config(w.guild.id)
    assert (cfg.char_per_rp, cfg.daily_rp_cap) == (120, 6)
    modal = await w.fake.click(panel, "xp:set:rp", w.mod)
    before = await w.snapshot()
    bad = await w.fake.submit_modal(modal, {"rate": "lots", "cap": "6"}, w.mod)
    assert "whole number" in bad.content and bad.ephemeral and await w.snapshot() == before
    hf = await w.fake.submit_modal(await w.fake.click(panel, "xp:set:hf", w.mod),
                                   {"attempt": "3", "success": "1,000", "cap": "0"}, w.mod)
    assert "between 1" in hf.content and (await w.db.get_config(w.guild.id)).hf_attempt_xp == 1
    hf = await w.fake.submit_modal(await w.fake.click(panel, "xp:set:hf", w.mod),
                                   {"attempt": "3", "success": "1,000", "cap": "2000"}, w.mod)
    cfg = await w.db.get_config(w.guild.id)
    assert (cfg.hf_attempt_xp, cfg.hf_success_xp, cfg.daily_hf_cap) == (3, 1000, 2000)
    picked = await w.fake.select(panel, "xp:chan:rp", [w.rp, w.hf], w.mod)
    assert picked.type == 7
    assert set((await w.db.get_config(w.guild.id)).rp_channels) == {w.rp.id, w.hf.id}
    cycled = await w.fake.click(panel, "xp:set:lvl", w.mod)
    assert cycled.type == 7 and (await w.db.get_config(w.guild.id)).levelup_mode == "channel"
    history = await w.db.settings_history(w.guild.id)
    assert {r["setting"] for r in history} >= {"char_per_rp", "daily_rp_cap", "rp_channels", "levelup_mode"}
    assert {r["changed_by"] for r in history} == {w.mod.id}


async def test_settings_panel_components_refuse_members_even_when_hand_crafted(w):
    panel = await w.run(w.mod, "xp_settings")
    w.fake._message_owner.pop(panel.id, None)  # a crafted interaction reaches what Discord would hide
    before = await w.snapshot()
    for custom_id in ("xp:set:rp", "xp:set:hf", "xp:set:lvl"):
        answer = await w.fake.click(panel, custom_id, w.alice)
        assert answer.type == 4 and "Manage Server" in answer.content and answer.ephemeral
    answer = await w.fake.select(panel, "xp:chan:rp", [w.rp], w.alice)
    assert "Manage Server" in answer.content
    assert await w.snapshot() == before


async def test_leaderboard_pages_and_history_and_export(w):
    for i in range(12):
        member = w.fake.add_member(w.guild, f"p{i}")
        c = await w.db.create_character(w.guild.id, member.id, f"C{i:02}")
        await w.db.grant_xp(w.guild.id, c.id, 100 * (i + 1), granted_by=w.mod.id)
    board = await w.run(w.alice, "xp_leaderboard")
    assert "**1.** C11" in board.embeds[0]["description"] and "Page 1 of 2" in board.embeds[0]["footer"]["text"]
    nxt = await w.fake.click(board, next(c for c in board.components if ":next" in c), w.alice)
    assert "**11.** C01" in nxt.embeds[0]["description"] and not nxt.pings
    assert "Page 2 of 2" in nxt.embeds[0]["footer"]["text"]
    back = await w.fake.click(nxt, next(c for c in nxt.components if ":prev" in c), w.alice)
    assert back.embeds[0]["description"] == board.embeds[0]["description"]
    from extras import LeaderboardButton  # buttons of messages from before anchors still page
    assert LeaderboardButton.__discord_ui_compiled_template__.fullmatch("xp:lb:1:next")
    luna = await w.db.create_character(w.guild.id, w.alice.id, "Luna")
    await w.db.grant_xp(w.guild.id, luna.id, 5, granted_by=w.mod.id, reason="welcome")
    history = await w.run(w.alice, "xp_history", {"character": "Luna"})
    assert "+5" in history.embeds[0]["description"] and "welcome" in history.embeds[0]["description"]
    await w.refused(w.bob, "xp_history", {"character": f"#{luna.id}"}, "No character")
    assert "+5" in (await w.run(w.mod, "xp_history", {"character": f"#{luna.id}"})).embeds[0]["description"]
    export = await w.run(w.mod, "xp_export")
    [(filename, data)] = export.files.items()
    document = json.loads(data)
    assert filename.endswith(".json") and document[str(w.alice.id)]["characters"]["Luna"]["xp"] == 5
    assert document["char_per_rp"] == 240 and "13 players exported" in export.content
    whole = await migrate_to_postgres.export_document(w.db, w.guild.id)
    assert data == (json.dumps(whole, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


async def test_an_export_too_big_for_the_servers_upload_limit_is_refused_with_the_other_way(w):
    """Characters with 2,000-character links: ~4 KB each, so 3,000 make more than the 10 MiB a
    server without boosts may upload (discord.py's Guild.filesize_limit)."""
    await w.db.pool.execute("INSERT INTO users (guild_id, user_id) SELECT $1, g FROM generate_series(1, 3000) g",
                            w.guild.id)
    await w.db.pool.execute(
        """INSERT INTO characters (guild_id, user_id, name, image_url, sheet_url)
           SELECT $1, g, 'C' || g, 'https://i.example/' || repeat('i', 1980), 'https://s.example/' || repeat('s', 1980)
             FROM generate_series(1, 3000) g""", w.guild.id)
    reply = await w.refused(w.mod, "xp_export", {}, "too big",
                            f"migrate_to_postgres.py --export xp.json --guild-id {w.guild.id}")
    assert not reply.files and "10 MiB" in reply.content


# -- the listener --------------------------------------------------------------------------------------

async def xp_of(w, user, name):
    return (await w.character(user, name)).xp


async def _is(w, user, name, xp):
    return await xp_of(w, user, name) == xp


async def test_rp_messages_in_tracked_channels_and_their_threads_earn_xp(w):
    await w.db.add_channel(w.guild.id, "rp", w.rp.id)
    await w.db.set_rp_rate(w.guild.id, 10)
    await w.db.create_character(w.guild.id, w.alice.id, "Luna")
    thread = w.fake.add_thread(w.rp, "scene")
    await w.fake.guild_create(w.guild)
    await w.fake.send_message(w.rp, w.alice, "🐺" * 25)          # 25 code points: 2 XP, 5 kept
    await w.fake.send_message(thread, w.alice, "y" * 15)          # 20 more: 2 XP
    await eventually(lambda: _is(w, w.alice, "Luna", 4), "4 XP from RP")
    untracked = w.fake.add_channel(w.guild, "ooc")
    await w.fake.guild_create(w.guild)
    await w.fake.send_message(untracked, w.alice, "z" * 500)
    await w.fake.send_message(w.rp, w.alice, "w" * 500, webhook_id=777)
    await w.fake.send_message(w.rp, w.hunter, "v" * 500)
    await w.fake.send_message(w.rp, w.alice, "u" * 500, type=7)
    sent = await w.fake.send_message(w.rp, w.alice, "t" * 10)
    await w.fake.send_message(w.rp, w.alice, "t" * 500, edit=True, message_id=int(sent["id"]))
    await eventually(lambda: _is(w, w.alice, "Luna", 5), "1 XP from the last plain message")
    await asyncio.sleep(0.2)
    assert await xp_of(w, w.alice, "Luna") == 5


async def test_messages_waiting_for_the_database_keep_no_discord_objects_alive(w):
    """While the database is slow to write a burst (thousands of guilds, an outage beginning),
    the listener has handed each award over and returned: only the small event waits, not
    discord.py's Message with its Member and payload."""
    await w.db.add_channel(w.guild.id, "rp", w.rp.id)
    await w.db.set_rp_cap(w.guild.id, 1000)
    await w.db.create_character(w.guild.id, w.alice.id, "Luna")
    write, release = w.client.db.award_rp_many, asyncio.Event()

    async def held(*args, **kwargs):
        await release.wait()
        return await write(*args, **kwargs)
    w.client.db.award_rp_many = held
    for _ in range(50):
        await w.fake.send_message(w.rp, w.alice, "x" * 240)  # 1 XP each
    await eventually(lambda: w.client.queue.events == 50, "50 messages handed to the XP queue")
    gc.collect()
    assert [o for o in gc.get_objects() if isinstance(o, discord.Message) and o.channel.id == w.rp.id] == []
    release.set()
    await eventually(lambda: _is(w, w.alice, "Luna", 50), "50 XP once the database answers")


def hunt(title, description=""):
    return {"title": title, "description": description, "fields": []}


async def test_hf_results_award_the_named_character(w):
    await w.db.add_channel(w.guild.id, "hf", w.hf.id)
    await w.db.create_character(w.guild.id, w.alice.id, "Luna")
    await w.db.create_character(w.guild.id, w.bob.id, "Bram")
    await w.db.create_character(w.guild.id, w.alice.id, "Bram")
    await w.fake.send_message(w.hf, w.hunter, embeds=[hunt("Luna goes hunting", "A deer! Time to gut and harvest.")])
    await eventually(lambda: _is(w, w.alice, "Luna", 6), "6 XP for a successful hunt")
    await w.fake.send_message(w.hf, w.hunter, embeds=[hunt("luna goes foraging", "Nothing today.")])
    await eventually(lambda: _is(w, w.alice, "Luna", 7), "1 XP for an attempt")
    await w.fake.send_message(w.hf, w.hunter, embeds=[hunt("Bram goes hunting", "")], mentions=[w.bob])
    await eventually(lambda: _is(w, w.bob, "Bram", 1), "the mention picks Bob's Bram")
    await w.fake.send_message(w.hf, w.hunter, embeds=[hunt("Bram goes hunting", "")])       # ambiguous
    await w.fake.send_message(w.hf, w.hunter, embeds=[hunt("Zed goes hunting", "")])        # unknown
    await w.fake.send_message(w.rp, w.hunter, embeds=[hunt("Luna goes hunting", "")])       # not an HF channel
    await w.fake.send_message(w.hf, w.alice, embeds=[hunt("Luna goes hunting", "")])        # not a bot
    await asyncio.sleep(0.3)
    assert (await xp_of(w, w.alice, "Luna"), await xp_of(w, w.alice, "Bram"), await xp_of(w, w.bob, "Bram")) == (7, 0, 1)


async def test_level_ups_are_announced_once_without_pings(w):
    await w.db.add_channel(w.guild.id, "rp", w.rp.id)
    await w.db.set_rp_rate(w.guild.id, 1)
    await w.db.set_rp_cap(w.guild.id, 100000)
    luna = await w.db.create_character(w.guild.id, w.alice.id, "@everyone <@&1>")
    await w.db.grant_xp(w.guild.id, luna.id, 290, granted_by=w.mod.id)
    for _ in range(5):
        await w.fake.send_message(w.rp, w.alice, "x" * 5)            # 290 -> 315 crosses 300 once
    await w.fake.wait_for_posts(1, w.rp)
    await asyncio.sleep(0.3)
    posts = w.fake.posts(w.rp)
    assert len(posts) == 1 and "level 2" in posts[0].content and not posts[0].pings
    await w.db.set_levelup(w.guild.id, "channel", w.hf.id)
    await w.run(w.mod, "xp_grant", {"character": f"#{luna.id}", "amount": 600})
    await w.fake.wait_for_posts(1, w.hf)
    await w.db.set_levelup(w.guild.id, "off")
    await w.run(w.mod, "xp_grant", {"character": f"#{luna.id}", "amount": 5000})
    await asyncio.sleep(0.3)
    assert len(w.fake.posts(w.rp)) == 1 and len(w.fake.posts(w.hf)) == 1


async def test_a_message_delivered_twice_by_the_gateway_counts_once(w):
    await w.db.add_channel(w.guild.id, "rp", w.rp.id)
    await w.db.set_rp_rate(w.guild.id, 10)
    await w.db.create_character(w.guild.id, w.alice.id, "Luna")
    sent = await w.fake.send_message(w.rp, w.alice, "x" * 30)
    await w.fake.send_message(w.rp, w.alice, "x" * 30, message_id=int(sent["id"]))
    await eventually(lambda: _is(w, w.alice, "Luna", 3), "3 XP from the first delivery")
    await asyncio.sleep(0.3)
    assert await xp_of(w, w.alice, "Luna") == 3


async def test_xp_sync_in_prod_syncs_globally_only(fake_discord, db, database_url):
    world = World(fake_discord, db)
    owner = fake_discord.add_member(world.guild, fake_discord.owner, permissions=["manage_guild"])
    async with run_client(XPBot(Database(database_url, max_size=3), env="prod")):
        before = len(fake_discord.command_syncs)
        reply = await world.run(owner, "xp_sync")
        assert "global" in reply.content
        assert fake_discord.command_syncs[before:] == [(None, fake_discord.command_syncs[-1][1])]
        assert all(scope is None for scope, _ in fake_discord.command_syncs)


async def test_xp_levelups_chooses_where_announcements_go(w):
    reply = await w.run(w.mod, "xp_levelups", {"where": "channel", "channel": w.hf})
    assert f"<#{w.hf.id}>" in reply.content
    cfg = await w.db.get_config(w.guild.id)
    assert (cfg.levelup_mode, cfg.levelup_channel) == ("channel", w.hf.id)
    await w.refused(w.mod, "xp_levelups", {"where": "channel"}, "Pick the channel")
    await w.refused(w.mod, "xp_levelups", {"where": "loud"}, "one of: message, channel, off")
    await w.refused(w.alice, "xp_levelups", {"where": "off"}, "Manage Server")
    assert "nowhere" in (await w.run(w.mod, "xp_levelups", {"where": "off"})).content
