"""Defects found by a hostile-input sweep and a security review, each proven fixed through the
fake Discord, real discord.py and real PostgreSQL; and the staff access matrix."""
from __future__ import annotations

import logging

import discord
import pytest
from discord import app_commands

import migrate_to_postgres
from bot import XPBot, register_commands
from database import Database
from fake_discord import run_client
from helpers import eventually

HUGE_ID = "#9999999999999999999"  # 19 digits, beyond a bigint


def errors_logged(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@pytest.mark.parametrize("name, options", [
    ("xp", {"character": HUGE_ID}),
    ("xp_active", {"character": HUGE_ID}),
    ("xp_delete", {"character": HUGE_ID}),
    ("xp_history", {"character": HUGE_ID}),
    ("xp_grant", {"character": HUGE_ID, "amount": 5}),
])
async def test_an_id_beyond_int64_in_a_character_option_gets_a_clear_answer(w, caplog, name, options):
    await w.db.create_character(w.guild.id, w.alice.id, "Luna")
    user = w.mod if name == "xp_grant" else w.alice
    reply = await w.refused(user, name, options, "No character")
    assert "went wrong" not in reply.content
    assert errors_logged(caplog) == []


async def hunting_result(w, title: str):
    return await w.fake.send_message(w.hf, w.hunter, embeds=[{"title": title, "description": "time to harvest"}])


async def test_an_hf_title_with_a_nul_is_read_as_typed_without_it(w, caplog):
    await w.db.add_channel(w.guild.id, "hf", w.hf.id)
    luna = await w.db.create_character(w.guild.id, w.alice.id, "Luna")
    await hunting_result(w, "Lu\x00na goes hunting")
    await eventually(lambda: w.db.get_character(w.guild.id, luna.id), "Luna exists")

    async def awarded():
        return (await w.db.get_character(w.guild.id, luna.id)).xp == 6
    await eventually(awarded, "HF XP for Luna")
    assert errors_logged(caplog) == []


async def test_an_hf_result_naming_no_one_logs_one_short_plain_line(w, caplog):
    caplog.set_level(logging.INFO, logger="xpbot")
    await w.db.add_channel(w.guild.id, "hf", w.hf.id)
    await hunting_result(w, "Z\x00ed" + "x" * 4000 + " goes hunting")

    def said():
        return [r for r in caplog.records if "awarded nothing" in r.getMessage()]
    await eventually(lambda: said(), "the log line")
    [line] = said()
    assert len(line.getMessage()) < 400 and "\x00" not in line.getMessage()
    assert errors_logged(caplog) == []


async def test_the_settings_panel_refuses_channels_of_another_guild(w):
    other = w.fake.add_guild("Elsewhere")
    foreign = w.fake.add_channel(other, "their-rp")
    panel = await w.run(w.mod, "xp_settings")
    before = await w.snapshot()
    answer = await w.fake.select(panel, "xp:chan:rp", [w.rp, foreign], w.mod)
    assert answer.ephemeral and "this server" in answer.content
    assert await w.snapshot() == before
    picked = await w.fake.select(panel, "xp:chan:rp", [w.rp], w.mod)
    assert picked.type == 7 and (await w.db.get_config(w.guild.id)).rp_channels == (w.rp.id,)


async def test_a_settings_form_opened_before_a_restart_works_after_it(fake_discord, db, database_url):
    from world import World
    w = World(fake_discord, db)
    first = XPBot(Database(database_url, max_size=3), env="dev", guild_id=w.guild.id)
    async with run_client(first):
        panel = await w.run(w.mod, "xp_settings")
        form = await fake_discord.click(panel, "xp:set:rp", w.mod)
        assert form.type == 9
    second = XPBot(Database(database_url, max_size=3), env="dev", guild_id=w.guild.id)
    async with run_client(second):
        saved = await fake_discord.submit_modal(form, {"rate": "120", "cap": "6"}, w.mod)
        assert saved.type == 7 and "RP settings saved" in saved.embeds[0]["description"]
        cfg = await db.get_config(w.guild.id)
        assert (cfg.char_per_rp, cfg.daily_rp_cap) == (120, 6)
        form = await fake_discord.click(panel, "xp:set:rp", w.mod)
        fake_discord.member(w.guild, w.mod).role_ids.clear()  # no longer staff when submitting
        refused = await fake_discord.submit_modal(form, {"rate": "1", "cap": "1"}, w.mod)
        assert "Manage Server" in refused.content
        assert (await db.get_config(w.guild.id)).char_per_rp == 120


async def test_a_form_submitted_once_is_handled_once(w):
    panel = await w.run(w.mod, "xp_settings")
    form = await w.fake.click(panel, "xp:set:rp", w.mod)
    await w.fake.submit_modal(form, {"rate": "120", "cap": "6"}, w.mod)
    changes = [r for r in await w.db.settings_history(w.guild.id) if r["setting"] == "char_per_rp"]
    assert len(changes) == 1


async def test_global_sync_in_prod_is_for_the_applications_owner_only(fake_discord, db, database_url):
    from world import World
    w = World(fake_discord, db)
    async with run_client(XPBot(Database(database_url, max_size=3), env="prod")):
        syncs = len(fake_discord.command_syncs)
        for staff in (w.mod, w.admin, w.guild.members[w.guild.owner_id]):
            reply = await w.run(staff, "xp_sync")
            assert reply.ephemeral and "owner" in reply.content
        assert len(fake_discord.command_syncs) == syncs
        owner = fake_discord.add_member(w.guild, fake_discord.owner, permissions=["manage_guild"])
        assert "global" in (await w.run(owner, "xp_sync")).content
        assert len(fake_discord.command_syncs) == syncs + 1


@pytest.mark.parametrize("mode, channel", [("off", None), ("channel", 4242), ("message", None)])
async def test_export_then_import_keeps_the_level_up_setting(db, mode, channel):
    await db.set_levelup(1, mode, channel)
    await db.set_rp_cap(1, 7)
    document = await migrate_to_postgres.export_document(db, 1)
    await migrate_to_postgres.write_plan(db, 2, migrate_to_postgres.plan_migration(document))
    again = await db.get_config(2)
    assert (again.levelup_mode, again.levelup_channel, again.daily_rp_cap) == (mode, channel, 7)


async def test_an_old_file_without_level_up_keys_leaves_the_setting_alone(db):
    await db.set_levelup(3, "off")
    plan = migrate_to_postgres.plan_migration({"daily_rp_cap": 5})
    await migrate_to_postgres.write_plan(db, 3, plan)
    assert (await db.get_config(3)).levelup_mode == "off"


# -- the access matrix: every staff command and component, everyone who might try -----------------

STAFF_OPTIONS = {
    "xp_grant": lambda w: {"character": "Luna", "amount": 1},
    "xp_add_rp_channel": lambda w: {"channel": w.rp}, "xp_remove_rp_channel": lambda w: {"channel": w.rp},
    "xp_add_hf_channel": lambda w: {"channel": w.hf}, "xp_remove_hf_channel": lambda w: {"channel": w.hf},
    "xp_set_cap": lambda w: {"amount": 3}, "xp_set_rate": lambda w: {"characters": 100},
    "xp_config_hf": lambda w: {"attempt_xp": 2}, "xp_levelups": lambda w: {"where": "off"},
    "xp_settings": lambda w: {}, "xp_sync": lambda w: {}, "xp_export": lambda w: {},
    "xp_purge": lambda w: {"player": w.bob},
    "xp_log_channel": lambda w: {"channel": w.hf},
    "xp_add_staff_role": lambda w: {"role": w.helpers}, "xp_remove_staff_role": lambda w: {"role": w.helpers},
    "xp_level_role": lambda w: {"level": 3}, "xp_level_roles_sync": lambda w: {},
    "quest_start": lambda w: {"name": "Matrix quest", "min_level": 1, "max_level": 5},
}
MANAGERS_ONLY = {"xp_add_staff_role", "xp_remove_staff_role"}  # a staff role is not enough
COMPONENTS = [("click", "xp:set:rp"), ("click", "xp:set:hf"), ("click", "xp:set:lvl"),
              ("select", "xp:chan:rp"), ("select", "xp:chan:hf")]
WHO = ["member", "manage_server", "administrator", "guild_owner", "staff_of_another_guild", "staff_role",
       "staff_role_just_removed"]


async def who(w, role: str):
    w.helpers = w.fake.add_role(w.guild, "Helpers")  # a role that is no staff role
    if role.startswith("staff_role"):
        mods = w.fake.add_role(w.guild, "Game masters")
        member = w.fake.add_member(w.guild, "gm", roles=[mods])
        await w.fake.guild_create(w.guild)  # the bot learns the new roles
        await w.db.add_staff_role(w.guild.id, mods.id)
        if role == "staff_role_just_removed":
            await w.db.remove_staff_role(w.guild.id, mods.id)
        return member
    await w.fake.guild_create(w.guild)
    if role == "guild_owner":
        return w.guild.members[w.guild.owner_id]
    if role == "staff_of_another_guild":
        other = w.fake.add_guild("Other")
        user = w.fake.add_member(other, "visitor", permissions=["manage_guild"]).user
        return w.fake.add_member(w.guild, user)
    return {"member": w.alice, "manage_server": w.mod, "administrator": w.admin}[role]


def test_the_matrix_names_every_staff_command():
    tree = app_commands.CommandTree(discord.Client(intents=discord.Intents.none()))
    register_commands(tree)
    staff = {c.name for c in tree.get_commands() if c.default_permissions}
    assert staff == set(STAFF_OPTIONS), "add new staff commands to STAFF_OPTIONS"


@pytest.mark.parametrize("role", WHO)
async def test_access_matrix_over_every_staff_command_and_component(w, role):
    await w.db.create_character(w.guild.id, w.alice.id, "Luna")
    user = await who(w, role)
    managers = role in ("manage_server", "administrator", "guild_owner")
    staff = managers or role == "staff_role"
    panel = await w.run(w.mod, "xp_settings")
    w.fake._message_owner.pop(panel.id, None)  # a crafted interaction reaches what Discord would hide
    for name, options in STAFF_OPTIONS.items():
        before = await w.snapshot()
        reply = await w.run(user, name, options(w), strict=False)
        refused = (reply.content or "").startswith("Only") and "can do that" in reply.content
        allowed = managers if name in MANAGERS_ONLY else staff
        assert refused != allowed, (role, name, reply.content)
        if not allowed:
            assert reply.ephemeral and await w.snapshot() == before
    allowed = staff
    for kind, custom_id in COMPONENTS:
        before = await w.snapshot()
        if kind == "click":
            answer = await w.fake.click(panel, custom_id, user)
        else:
            answer = await w.fake.select(panel, custom_id, [w.rp], user)
        refused = answer.type == 4 and answer.content.startswith("Only") and "can do that" in answer.content
        assert refused != allowed, (role, custom_id, answer)
        if not allowed:
            assert await w.snapshot() == before
