"""Level roles: given and taken exactly as configured, once per level change, through
discord.py and the fake Discord's member-role routes on the real database."""
from __future__ import annotations

import asyncio

import discord
import pytest

import migrate_to_postgres
import rules
from bot import XPBot
from database import Database
from fake_discord import run_client
from helpers import eventually

ROLE_ROUTE = "/guilds/{guild_id}/members/{user_id}/roles/{role_id}"


# -- the rule ------------------------------------------------------------------------------------

@pytest.mark.parametrize("level, mode, expected", [
    (None, "stack", set()), (1, "stack", set()), (2, "stack", {20}), (5, "stack", {20, 30, 50}),
    (5, "replace", {50}), (4, "replace", {30}), (1, "replace", set()), (20, "replace", {50}),
])
def test_which_level_roles_a_member_holds(level, mode, expected):
    assert rules.level_roles_for(level, {2: 20, 3: 30, 5: 50}, mode) == expected


async def test_one_level_change_is_claimed_once_across_processes(db, second_process):
    claims = await asyncio.gather(*(pool.claim_level_change(1, 7, 3) for pool in (db, second_process) * 10))
    assert claims.count(True) == 1
    assert not await db.claim_level_change(1, 7, 3)
    assert await db.claim_level_change(1, 7, 2)          # the level dropped: a new change
    assert await db.claim_level_change(1, 7, None)       # no character left
    assert not await db.claim_level_change(1, 7, None)


async def test_a_players_level_is_their_best_character_in_play(db):
    assert await db.player_level(1, 7) is None
    luna = await db.create_character(1, 7, "Luna", starting_xp=6500, created_by=9)
    await db.create_character(1, 7, "Bram", starting_xp=300, created_by=9)
    assert await db.player_level(1, 7) == 5
    await db.retire_character(1, luna.id, owner_id=7)
    assert await db.player_level(1, 7) == 2


# -- end to end ----------------------------------------------------------------------------------

async def roles_world(w, *levels: int):
    """Manage Roles for the bot, a role per level (below the bot's), known to the bot."""
    await w.fake.update_role(w.fake.bot_role(w.guild),
                             permissions=discord.Permissions(manage_roles=True, view_channel=True,
                                                             send_messages=True, embed_links=True))
    made = {level: w.fake.add_role(w.guild, f"Level {level}") for level in levels}
    await w.fake.guild_create(w.guild)
    for level, role in made.items():
        reply = await w.run(w.mod, "xp_level_role", {"level": level, "role": role})
        assert f"reaching level {level}" in reply.content, reply.content
    return made


def holds(w, user, role) -> bool:
    return role.id in w.fake.member(w.guild, user).role_ids


def role_calls(w, method: str = "PUT") -> list:
    return [r for r in w.fake.requests if r.method == method and r.route == ROLE_ROUTE]


async def test_a_burst_of_60_messages_crossing_one_threshold_gives_one_role_change(w):
    roles = await roles_world(w, 2)
    await w.db.add_channel(w.guild.id, "rp", w.rp.id)
    await w.db.set_rp_rate(w.guild.id, 10)
    await w.db.set_rp_cap(w.guild.id, 1000)
    await w.db.create_character(w.guild.id, w.alice.id, "Luna", starting_xp=270, created_by=w.mod.id)
    await asyncio.gather(*(w.fake.send_message(w.rp, w.alice, "x" * 10) for _ in range(60)))

    async def all_counted():
        return (await w.character(w.alice, "Luna")).xp == 330
    await eventually(all_counted, "60 messages counted")
    await eventually(lambda: holds(w, w.alice, roles[2]), "the level 2 role")
    await asyncio.sleep(0.3)
    assert len(role_calls(w)) == 1 and role_calls(w, "DELETE") == []


async def test_stack_and_replace_and_a_level_drop(w):
    roles = await roles_world(w, 2, 3)
    await w.run(w.alice, "xp_create", {"name": "Luna"})
    await w.run(w.mod, "xp_grant", {"character": "Luna", "amount": 900})     # level 3
    await eventually(lambda: holds(w, w.alice, roles[2]) and holds(w, w.alice, roles[3]), "stacked roles")
    reply = await w.run(w.mod, "xp_level_roles", {"mode": "replace"})
    assert "replace" in reply.content
    await w.run(w.mod, "xp_grant", {"character": "Luna", "amount": -1})      # level 2
    await eventually(lambda: holds(w, w.alice, roles[2]) and not holds(w, w.alice, roles[3]), "level 2 only")
    await w.run(w.mod, "xp_grant", {"character": "Luna", "amount": 2000})   # level 4: replace keeps the highest
    await eventually(lambda: holds(w, w.alice, roles[3]) and not holds(w, w.alice, roles[2]), "level 3's only")
    other = w.fake.add_role(w.guild, "Artist")
    w.fake.member(w.guild, w.alice).role_ids.append(other.id)
    await w.run(w.mod, "xp_grant", {"character": "Luna", "amount": -3000})  # level 1: no level role
    await eventually(lambda: not holds(w, w.alice, roles[3]), "level roles taken")
    assert holds(w, w.alice, other)  # roles that are no level roles stay


async def test_roles_follow_retire_restore_and_purge(w):
    roles = await roles_world(w, 2)
    await w.run(w.alice, "xp_create", {"name": "Luna"})
    luna = await w.character(w.alice, "Luna")
    await w.run(w.mod, "xp_grant", {"character": "Luna", "amount": 300})
    await eventually(lambda: holds(w, w.alice, roles[2]), "the role")
    prompt = await w.run(w.alice, "xp_retire", {"character": "Luna"})
    await w.fake.click(prompt, next(c for c in prompt.components if ":yes:" in c), w.alice)
    await eventually(lambda: not holds(w, w.alice, roles[2]), "taken on retiring")
    await w.run(w.alice, "xp_unretire", {"character": f"#{luna.id}"})
    await eventually(lambda: holds(w, w.alice, roles[2]), "given back on restoring")
    prompt = await w.run(w.mod, "xp_purge", {"player": w.alice})
    await w.fake.click(prompt, next(c for c in prompt.components if ":yes:" in c), w.mod)
    await eventually(lambda: not holds(w, w.alice, roles[2]), "taken on purging")


async def test_a_role_the_bot_cannot_give_is_reported_once_and_heals(w):
    log = w.fake.add_channel(w.guild, "xp-log")
    roles = await roles_world(w, 2)
    await w.run(w.mod, "xp_log_channel", {"channel": log})
    await w.fake.update_role(w.fake.bot_role(w.guild),
                             permissions=discord.Permissions(view_channel=True, send_messages=True, embed_links=True))
    for player, name in ((w.alice, "Luna"), (w.bob, "Bram")):
        await w.run(player, "xp_create", {"name": name})
        reply = await w.run(w.mod, "xp_grant", {"character": name, "amount": 300})
        assert "→" in reply.content  # the grant never fails for a role
    await eventually(lambda: [p for p in w.fake.posts(log) if "Level role not applied" in p.text()], "the report")
    await asyncio.sleep(0.3)
    reports = [p for p in w.fake.posts(log) if "Level role not applied" in p.text()]
    assert len(reports) == 1 and "Manage Roles" in reports[0].text() and not reports[0].pings
    panel = await w.run(w.mod, "xp_settings")
    assert any("can't give" in f["name"] and "Manage Roles" in f["value"] for f in panel.embeds[0]["fields"])
    await roles_world(w)  # Manage Roles given back
    await w.run(w.mod, "xp_grant", {"character": "Luna", "amount": 600})  # level 3: a new change
    await eventually(lambda: holds(w, w.alice, roles[2]), "healed")
    failures = await w.db.pool.fetchval("SELECT count(*) FROM level_role_failures")
    assert failures == 0


async def test_level_role_refusals_store_nothing(w):
    await roles_world(w)
    booster = w.fake.add_role(w.guild, "Booster", managed=True)
    above = w.fake.add_role(w.guild, "Admins", position=len(w.guild.roles))
    await w.fake.guild_create(w.guild)
    everyone = w.guild.roles[w.guild.id]
    await w.refused(w.mod, "xp_level_role", {"level": 2, "role": everyone}, "@everyone")
    await w.refused(w.mod, "xp_level_role", {"level": 2, "role": booster}, "managed")
    await w.refused(w.mod, "xp_level_role", {"level": 2, "role": above}, "drag my role above it")
    for level in (0, 21):
        await w.refused(w.mod, "xp_level_role", {"level": level, "role": booster}, "")
    await w.refused(w.alice, "xp_level_roles", {"mode": "replace"}, "Only staff")
    assert await w.db.level_roles(w.guild.id) == {}


async def test_sync_gives_every_member_their_roles_within_rate_limits(w):
    roles = await roles_world(w, 2)
    members = [w.fake.add_member(w.guild, f"p{i}") for i in range(12)]
    for i, member in enumerate(members):
        await w.db.create_character(w.guild.id, member.id, f"C{i}", starting_xp=300 * (i % 2), created_by=w.mod.id)
    w.fake.rate_limit(ROLE_ROUTE, limit=4, window=0.5)
    result = await w.fake.slash(w.guild, w.rp, w.mod, "xp_level_roles_sync", {})
    final = await eventually(lambda: "synced" in result.message.content and result.message, "the sync's end",
                             timeout=30)
    assert "12 members checked, 6 role changes" in final.content
    assert [holds(w, m, roles[2]) for m in members] == [bool(i % 2) for i in range(12)]
    assert len(w.fake.rate_limited) <= 1  # discord.py paced itself by the rate-limit headers
    again = await w.run(w.mod, "xp_level_roles_sync")
    assert "try again" in again.content  # once per 10 minutes


async def test_two_bot_processes_seeing_the_same_messages_make_one_role_change(fake_discord, db, database_url):
    from world import World
    w = World(fake_discord, db)
    first = XPBot(Database(database_url, max_size=3), env="dev", guild_id=w.guild.id)
    second = XPBot(Database(database_url, max_size=3), env="dev", guild_id=w.guild.id, sync_commands=False)
    async with run_client(first), run_client(second):
        await fake_discord.wait_for_sessions(2)
        w.client = first
        roles = await roles_world(w, 2)
        await db.add_channel(w.guild.id, "rp", w.rp.id)
        await db.set_rp_rate(w.guild.id, 10)
        await db.create_character(w.guild.id, w.alice.id, "Luna", starting_xp=290, created_by=w.mod.id)
        for _ in range(5):
            await fake_discord.send_message(w.rp, w.alice, "x" * 100)  # both processes get each
        await eventually(lambda: holds(w, w.alice, roles[2]), "the role")
        await asyncio.sleep(0.5)
        assert len(role_calls(w)) == 1


async def test_export_and_import_carry_level_roles_staff_roles_and_the_log_channel(db):
    await db.set_level_role(1, 2, 222)
    await db.set_level_role(1, 5, 555)
    await db.set_level_role_mode(1, "replace")
    await db.add_staff_role(1, 77)
    await db.set_log_channel(1, 88)
    document = await migrate_to_postgres.export_document(db, 1)
    assert document["level_roles"] == {"2": 222, "5": 555}
    await migrate_to_postgres.write_plan(db, 2, migrate_to_postgres.plan_migration(document))
    cfg = await db.get_config(2)
    assert (cfg.level_role_mode, cfg.staff_roles, cfg.log_channel) == ("replace", (77,), 88)
    assert await db.level_roles(2) == {2: 222, 5: 555}
