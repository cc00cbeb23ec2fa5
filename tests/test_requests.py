"""XP requests, staff roles and the log channel setting in the database (real PostgreSQL):
limits, exactly-once decisions under races, and what retiring, deleting and purging do."""
from __future__ import annotations

import asyncio

import pytest

from database import CharacterNotFound
from rules import REQUESTS_PENDING_MAX, UserError

G = 6001
ALICE, BOB, MOD, MOD2 = 601, 602, 603, 604


async def test_a_request_is_kept_pending_with_the_characters_name(db):
    luna = await db.create_character(G, ALICE, "Luna")
    request = await db.create_request(G, ALICE, luna.id, 250, "  slew the dragon  ")
    assert (request["status"], request["amount"], request["reason"], request["character_name"]) == (
        "pending", 250, "slew the dragon", "Luna")
    assert [r["id"] for r in await db.list_requests(G)] == [request["id"]]
    assert [r["id"] for r in await db.list_requests(G, user_id=ALICE)] == [request["id"]]


@pytest.mark.parametrize("amount, reason, message", [
    (0, "x", "between 1 and 25,000"), (25_001, "x", "between 1 and 25,000"), (-5, "x", "between 1"),
    (10, "", "Say why"), (10, "   ", "Say why"), (10, "x" * 301, "at most 300"),
])
async def test_bad_amounts_and_reasons_are_refused_and_nothing_is_stored(db, amount, reason, message):
    luna = await db.create_character(G, ALICE, "Luna")
    with pytest.raises(UserError, match=message):
        await db.create_request(G, ALICE, luna.id, amount, reason)
    assert await db.list_requests(G) == []


async def test_only_own_characters_in_play_and_at_most_five_waiting(db):
    luna = await db.create_character(G, ALICE, "Luna")
    with pytest.raises(CharacterNotFound):
        await db.create_request(G, BOB, luna.id, 10, "not mine")
    results = await asyncio.gather(*(db.create_request(G, ALICE, luna.id, 10, f"r{i}") for i in range(8)),
                                   return_exceptions=True)
    assert sum(not isinstance(r, Exception) for r in results) == REQUESTS_PENDING_MAX
    assert all("5 requests waiting" in str(r) for r in results if isinstance(r, Exception))
    old = await db.create_character(G, BOB, "Old")
    await db.retire_character(G, old.id, owner_id=BOB)
    with pytest.raises(CharacterNotFound):
        await db.create_request(G, BOB, old.id, 10, "retired")


async def test_two_staff_approving_at_once_grant_once(db, second_process):
    luna = await db.create_character(G, ALICE, "Luna")
    request = await db.create_request(G, ALICE, luna.id, 300, "quest")
    results = await asyncio.gather(*(pool.decide_request(G, request["id"], approve=True, by=by)
                                     for pool, by in ((db, MOD), (second_process, MOD2)) * 5))
    fresh = [r for r in results if not r[2]]
    assert len(fresh) == 1 and fresh[0][1].xp_after == 300
    assert all(r[0]["status"] == "approved" and r[0]["decided_by"] == fresh[0][0]["decided_by"] for r in results)
    assert (await db.get_character(G, luna.id)).xp == 300
    [entry] = await db.grant_history(G, luna.id)
    assert (entry["source"], entry["ref_id"], entry["amount"]) == ("request", request["id"], 300)


async def test_approve_and_deny_racing_decide_once(db, second_process):
    luna = await db.create_character(G, ALICE, "Luna")
    request = await db.create_request(G, ALICE, luna.id, 300, "quest")
    results = await asyncio.gather(db.decide_request(G, request["id"], approve=True, by=MOD),
                                   second_process.decide_request(G, request["id"], approve=False, by=MOD2))
    [(final, award, _)] = [r for r in results if not r[2]]
    assert (await db.get_character(G, luna.id)).xp == (300 if final["status"] == "approved" else 0)
    assert (award is not None) == (final["status"] == "approved")


@pytest.mark.parametrize("leave, reason", [("retire", "retired"), ("delete", "deleted")])
async def test_a_request_whose_character_left_play_is_closed_not_granted(db, leave, reason):
    luna = await db.create_character(G, ALICE, "Luna")
    request = await db.create_request(G, ALICE, luna.id, 300, "quest")
    if leave == "retire":
        await db.retire_character(G, luna.id, owner_id=ALICE)
    else:
        await db.delete_character(G, ALICE, luna.id)
    final, award, already = await db.decide_request(G, request["id"], approve=True, by=MOD)
    assert (final["status"], final["note"], award, already) == ("closed", f"the character was {reason}", None, False)
    assert final["character_name"] == "Luna"


async def test_purge_takes_the_players_requests_with_it(db):
    luna = await db.create_character(G, ALICE, "Luna")
    await db.create_request(G, ALICE, luna.id, 10, "a")
    await db.create_request(G, ALICE, luna.id, 20, "b")
    assert (await db.player_summary(G, ALICE))["pending_requests"] == 2
    gone = await db.purge_player(G, ALICE)
    assert gone["pending_requests"] == 2 and await db.list_requests(G) == []


async def test_only_the_requester_cancels_and_only_while_waiting(db):
    luna = await db.create_character(G, ALICE, "Luna")
    request = await db.create_request(G, ALICE, luna.id, 10, "a")
    with pytest.raises(UserError, match="isn't one of yours"):
        await db.cancel_request(G, request["id"], BOB)
    assert (await db.cancel_request(G, request["id"], ALICE))["status"] == "cancelled"
    final, award, already = await db.decide_request(G, request["id"], approve=True, by=MOD)
    assert already and award is None and final["status"] == "cancelled"


async def test_requests_are_guild_scoped(db):
    luna = await db.create_character(G, ALICE, "Luna")
    request = await db.create_request(G, ALICE, luna.id, 10, "a")
    with pytest.raises(UserError, match="doesn't exist in this server"):
        await db.decide_request(G + 1, request["id"], approve=True, by=MOD)
    assert (await db.get_request(G, request["id"]))["status"] == "pending"


async def test_staff_roles_are_a_set_with_a_limit(db):
    cfg, added = await db.add_staff_role(G, 11, changed_by=MOD)
    assert added and cfg.staff_roles == (11,)
    _, again = await db.add_staff_role(G, 11, changed_by=MOD)
    assert not again
    for role in range(12, 12 + 24):
        await db.add_staff_role(G, role)
    with pytest.raises(UserError, match="at most 25"):
        await db.add_staff_role(G, 999)
    cfg, removed = await db.remove_staff_role(G, 11, changed_by=MOD)
    assert removed and 11 not in cfg.staff_roles
    assert {r["setting"] for r in await db.settings_history(G)} == {"staff_roles"}


async def test_a_log_failure_is_news_once_and_cleared_by_a_new_log_channel(db):
    await db.set_log_channel(G, 77, changed_by=MOD)
    assert await db.set_log_failure(G, "403 Missing Permissions")
    assert not await db.set_log_failure(G, "403 Missing Permissions")
    assert (await db.get_config(G)).log_failure == "403 Missing Permissions"
    await db.set_log_channel(G, 78, changed_by=MOD)
    assert (await db.get_config(G)).log_failure is None
