"""XP requests, the log channel and staff roles through discord.py and the fake Discord on the
real database: the request in the log channel, exactly-once approval (two staff at once, a
redelivered click, a restart, two bot processes), denial with a reason, DMs, refusals."""
from __future__ import annotations

import asyncio

import xp_requests
from bot import XPBot
from database import Database
from fake_discord import run_client
from helpers import eventually


async def with_log(w):
    log = w.fake.add_channel(w.guild, "xp-log")
    await w.fake.guild_create(w.guild)
    await w.run(w.mod, "xp_log_channel", {"channel": log})
    return log


async def luna_request(w, amount=250, reason="slew the dragon"):
    if not await w.db.list_characters(w.guild.id, w.alice.id):
        await w.run(w.alice, "xp_create", {"name": "Luna"})
    return await w.run(w.alice, "xp_request", {"character": "Luna", "amount": amount, "reason": reason})


async def request_post(w, log):
    await w.fake.wait_for_posts(1, log)
    return next(p for p in reversed(w.fake.posts(log)) if any(c.startswith("xp:req:") for c in p.components))


def button(post, what: str) -> str:
    return next(c for c in post.components if c.startswith(f"xp:req:{what}:"))


async def luna_xp(w) -> int:
    return (await w.character(w.alice, "Luna")).xp


async def test_a_request_goes_to_the_log_channel_and_one_approval_grants_it(w):
    log = await with_log(w)
    sent = await luna_request(w)
    assert "Request #" in sent.content and f"<#{log.id}>" in sent.content
    post = await request_post(w, log)
    assert "slew the dragon" in post.text() and not post.pings
    approved = await w.fake.click(post, button(post, "approve"), w.mod)
    assert approved.type == 7 and "approved" in approved.embeds[0]["fields"][3]["value"]
    assert w.fake.message(post.id).components == []  # the buttons are gone
    assert await luna_xp(w) == 250
    history = await w.run(w.alice, "xp_history", {"character": "Luna"})
    assert "approved request" in history.embeds[0]["description"]
    [dm] = await w.fake.wait_for_dms(w.alice)
    assert "approved" in dm.text()


async def test_two_staff_clicking_approve_at_the_same_instant_grant_once(w):
    log = await with_log(w)
    await luna_request(w)
    post = await request_post(w, log)
    clicks = await asyncio.gather(w.fake.click(post, button(post, "approve"), w.mod),
                                  w.fake.click(post, button(post, "approve"), w.admin))
    assert await luna_xp(w) == 250
    late = [c for c in clicks if c.type != 7]
    if late:  # the second click is told who decided and when
        follow = await late[0].followup() if late[0].type != 4 else late[0]
        assert "already decided" in follow.content
    assert len(await w.db.grant_history(w.guild.id, (await w.character(w.alice, "Luna")).id)) == 1


async def test_the_same_click_delivered_twice_grants_once(w):
    log = await with_log(w)
    await luna_request(w)
    post = await request_post(w, log)
    click = await w.fake.click(post, button(post, "approve"), w.mod)
    await w.fake.dispatch("INTERACTION_CREATE", click.payload, w.guild.id)  # a redelivery
    await asyncio.sleep(0.3)
    assert await luna_xp(w) == 250


async def test_approve_works_after_a_restart_of_the_bot(fake_discord, db, database_url):
    from world import World
    w = World(fake_discord, db)
    log = fake_discord.add_channel(w.guild, "xp-log")
    await db.set_log_channel(w.guild.id, log.id)
    async with run_client(XPBot(Database(database_url, max_size=3), env="dev", guild_id=w.guild.id)):
        await luna_request(w)
        post = await request_post(w, log)
    async with run_client(XPBot(Database(database_url, max_size=3), env="dev", guild_id=w.guild.id)):
        approved = await fake_discord.click(post, button(post, "approve"), w.mod)
        assert approved.type == 7 and await luna_xp(w) == 250


async def test_two_bot_processes_receiving_the_same_click_grant_once(fake_discord, db, database_url):
    from world import World
    w = World(fake_discord, db)
    log = fake_discord.add_channel(w.guild, "xp-log")
    await db.set_log_channel(w.guild.id, log.id)
    first = XPBot(Database(database_url, max_size=3), env="dev", guild_id=w.guild.id)
    second = XPBot(Database(database_url, max_size=3), env="dev", guild_id=w.guild.id, sync_commands=False)
    async with run_client(first), run_client(second):
        await fake_discord.wait_for_sessions(2)
        await luna_request(w)
        post = await request_post(w, log)
        await fake_discord.click(post, button(post, "approve"), w.mod)  # both processes get it
        await asyncio.sleep(0.5)
        assert await luna_xp(w) == 250
        luna = await w.character(w.alice, "Luna")
        assert len(await db.grant_history(w.guild.id, luna.id)) == 1


async def test_deny_asks_for_a_reason_and_the_player_sees_it_even_with_dms_closed(w):
    log = await with_log(w)
    w.fake.close_dms(w.alice)
    await luna_request(w)
    post = await request_post(w, log)
    form = await w.fake.click(post, button(post, "deny"), w.mod)
    assert form.type == 9
    denied = await w.fake.submit_modal(form, {"why": "no dragon that day"}, w.mod)
    assert denied.type == 7 and "no dragon that day" in denied.text()
    assert await luna_xp(w) == 0
    mine = await w.run(w.alice, "xp_requests")
    assert "denied" in mine.embeds[0]["description"] and "no dragon that day" in mine.embeds[0]["description"]


async def test_a_request_for_a_character_retired_meanwhile_is_closed_with_that_reason(w):
    log = await with_log(w)
    await luna_request(w)
    post = await request_post(w, log)
    luna = await w.character(w.alice, "Luna")
    await w.db.retire_character(w.guild.id, luna.id, owner_id=w.alice.id)
    closed = await w.fake.click(post, button(post, "approve"), w.mod)
    assert "closed" in closed.text() and "retired" in closed.text()
    assert (await w.db.get_character(w.guild.id, luna.id)).xp == 0


async def test_players_cancel_their_own_waiting_request(w):
    log = await with_log(w)
    await luna_request(w)
    mine = await w.run(w.alice, "xp_requests")
    cancel = next(c for c in mine.components if c.startswith("xp:reqcancel:"))
    done = await w.fake.click(mine, cancel, w.alice)
    assert "cancelled" in done.content
    post = await request_post(w, log)
    await eventually(lambda: w.fake.message(post.id).components == [], "the log message without buttons")
    late = await w.fake.click(post, button(post, "approve"), w.mod) if w.fake.message(post.id).components else None
    assert late is None and await luna_xp(w) == 0


async def test_staff_see_every_waiting_request_oldest_first_with_buttons(w):
    await with_log(w)
    await luna_request(w, 10, "first")
    await w.run(w.bob, "xp_create", {"name": "Bram"})
    await w.run(w.bob, "xp_request", {"character": "Bram", "amount": 20, "reason": "second"})
    listing = await w.run(w.mod, "xp_requests")
    text = listing.embeds[0]["description"]
    assert text.index("first") < text.index("second") and len(listing.components) == 4
    approve = next(c for c in listing.components if c.startswith("xp:req:approve:"))
    answer = await w.fake.click(listing, approve, w.mod)
    assert "approved" in (answer.content or (await answer.followup()).content)
    assert await luna_xp(w) == 10


async def test_request_refusals_change_nothing(w):
    await w.run(w.alice, "xp_create", {"name": "Luna"})
    await w.refused(w.alice, "xp_request", {"character": "Luna", "amount": 5, "reason": "x"},
                    "`/xp_log_channel`", "Nothing was requested")
    await with_log(w)
    for amount in (0, 25_001):
        await w.refused(w.alice, "xp_request", {"character": "Luna", "amount": amount, "reason": "x"}, "25,000")
    await w.refused(w.alice, "xp_request", {"character": "Luna", "amount": 5, "reason": "x" * 301}, "at most 300")
    await w.refused(w.bob, "xp_request", {"character": "Luna", "amount": 5, "reason": "x"}, "No character")


async def test_a_sixth_waiting_request_and_a_sixth_in_five_minutes_are_refused(w):
    await with_log(w)
    for i in range(5):
        await luna_request(w, 10, f"r{i}")
    await w.refused(w.alice, "xp_request", {"character": "Luna", "amount": 5, "reason": "six"}, "try again <t:")


async def buttons_for(w, guild, request_id: int):
    """A message in `guild`'s log channel with Approve/Deny for `request_id`, as a hand-crafted
    or stale message would carry (Discord only delivers clicks on buttons a message has)."""
    message = await w.client.post_log(guild.id, w.fake_embed, view=xp_requests.decision_view(request_id))
    return w.fake.message(message.id)


async def test_members_cannot_decide_and_crafted_ids_get_clear_answers(w):
    log = await with_log(w)
    await luna_request(w)
    post = await request_post(w, log)
    before = await w.snapshot()
    for what in ("approve", "deny"):
        refused = await w.fake.click(post, button(post, what), w.bob)
        assert refused.ephemeral and "Only staff" in refused.content
    w.fake_embed = xp_requests.discord.Embed(title="crafted")
    for request_id in (99999999999999999999, 0, 12345):
        crafted = await buttons_for(w, w.guild, request_id)
        for who in (w.bob, w.mod):
            answer = await w.fake.click(crafted, f"xp:req:approve:{request_id}", who)
            assert answer.ephemeral and ("Only staff" in answer.content if who is w.bob
                                         else "doesn't exist" in answer.content), answer
    assert await w.snapshot() == before


async def test_staff_of_another_guild_cannot_decide_this_guilds_request(w):
    log = await with_log(w)
    await luna_request(w)
    post = await request_post(w, log)
    ours = int(button(post, "approve").rsplit(":", 1)[1])
    other = w.fake.add_guild("Elsewhere")
    other_log = w.fake.add_channel(other, "log")
    visitor = w.fake.add_member(other, "visitor-mod", permissions=["manage_guild"])
    await w.fake.guild_create(other)
    await w.db.set_log_channel(other.id, other_log.id)
    w.fake_embed = xp_requests.discord.Embed(title="crafted")
    crafted = await buttons_for(w, other, ours)
    before = await w.snapshot()
    answer = await w.fake.click(crafted, f"xp:req:approve:{ours}", visitor)
    text = answer.content or (await answer.followup()).content
    assert "doesn't exist in this server" in text
    assert await w.snapshot() == before and await luna_xp(w) == 0


async def test_a_failing_log_channel_never_fails_the_action_and_settings_warn_once(w, caplog):
    log = await with_log(w)
    await w.fake.deny_bot(log, "send_messages")
    await w.run(w.alice, "xp_create", {"name": "Luna"})
    for amount in (1, 2, 3):
        reply = await w.run(w.mod, "xp_grant", {"character": "Luna", "amount": amount})
        assert "→" in reply.content
    assert await luna_xp(w) == 6
    warnings = [r for r in caplog.records if "Log channel of guild" in r.getMessage()]
    assert len(warnings) == 1
    panel = await w.run(w.mod, "xp_settings")
    assert any("isn't working" in f["name"] for f in panel.embeds[0]["fields"])
    request = await w.run(w.alice, "xp_request", {"character": "Luna", "amount": 5, "reason": "x"})
    assert "/xp_requests" in request.content  # staff can still decide it there


async def test_staff_role_members_use_staff_commands_and_lose_them_with_the_role(w):
    gm_role = w.fake.add_role(w.guild, "Game masters")
    gm = w.fake.add_member(w.guild, "gm", roles=[gm_role])
    await w.fake.guild_create(w.guild)
    await w.run(w.alice, "xp_create", {"name": "Luna"})
    await w.refused(gm, "xp_grant", {"character": "Luna", "amount": 5}, "Only staff")
    added = await w.run(w.mod, "xp_add_staff_role", {"role": gm_role})
    assert "Integrations" in added.content and not added.pings
    await w.refused(gm, "xp_add_staff_role", {"role": gm_role}, "Manage Server")
    assert "→" in (await w.run(gm, "xp_grant", {"character": "Luna", "amount": 5})).content
    await w.run(w.mod, "xp_remove_staff_role", {"role": gm_role})
    await w.refused(gm, "xp_grant", {"character": "Luna", "amount": 5}, "Only staff")
    tracking = await w.run(w.alice, "xp_tracking")
    assert any(f["name"] == "Staff roles" for f in tracking.embeds[0]["fields"])


async def test_grants_creations_retirements_and_settings_are_logged_without_pings(w):
    log = await with_log(w)
    await w.run(w.mod, "xp_create", {"name": "Luna", "player": w.alice, "starting_xp": 900})
    await w.run(w.mod, "xp_grant", {"character": "Luna", "amount": 5, "reason": "@everyone party"})
    await w.run(w.mod, "xp_set_cap", {"amount": 7})
    posts = await w.fake.wait_for_posts(4, log)
    text = "\n".join(p.text() for p in w.fake.posts(log))
    assert "Character created" in text and "Starting XP: 900" in text
    assert "XP granted" in text and "900 → 905" in text and "Daily RP XP cap" in text
    assert all(not p.pings for p in posts)
