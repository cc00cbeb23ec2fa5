"""Character profiles, retiring, restoring, purging and starting XP, in the database (real
PostgreSQL): one behaviour per test; races between them and XP awards."""
from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import asyncpg
import pytest

import migrate_to_postgres
from database import (KEEP, CharacterNotFound, CharacterRetired, Database, DuplicateName, HFResult,
                      RestoreClash, RPMessage)
from helpers import create_database, drop_database, setup_guild
from rules import UserError

G = 9001
RP, HF = 91, 92
ALICE, BOB, MOD = 901, 902, 903
NOON = dt.datetime(2026, 6, 15, 12, 0, tzinfo=dt.timezone.utc)
V1_SCHEMA = Path(__file__).with_name("data") / "schema_v1.sql"


# -- upgrading a database of the previous release in place --------------------------------------

async def test_a_database_of_the_previous_release_upgrades_in_place_with_nothing_lost(server_url):
    url = await create_database(server_url)
    try:
        con = await asyncpg.connect(url)
        try:
            await con.execute(V1_SCHEMA.read_text(encoding="utf-8"))
            await con.execute(
                """INSERT INTO users (guild_id, user_id, timezone) VALUES (1, 10, 'Europe/Berlin');
                   INSERT INTO characters (guild_id, user_id, name, xp, image_url)
                        VALUES (1, 10, 'Luna', 1450, 'https://example.com/luna.png'), (1, 10, 'Bram', 20, NULL);
                   UPDATE users SET active_character_id = (SELECT id FROM characters WHERE name = 'Luna');
                   INSERT INTO xp_grants (guild_id, character_id, granted_by, amount, xp_before, xp_after, reason)
                        SELECT 1, id, 99, 50, 1400, 1450, 'old grant' FROM characters WHERE name = 'Luna';""")
        finally:
            await con.close()
        async with Database(url, max_size=2) as db:   # start-up applies schema.sql over version 1
            luna = await db.find_character(1, "luna", owner_id=10)
            assert (luna.xp, luna.image_url, luna.active, luna.sheet_url, luna.retired) == (
                1450, "https://example.com/luna.png", True, None, False)
            [old] = await db.grant_history(1, luna.id)
            assert (old["amount"], old["reason"], old["source"]) == (50, "old grant", "grant")
            assert await db.pool.fetchval("SELECT max(version) FROM schema_version") >= 2
            assert "text_pattern_ops" in await db.pool.fetchval(  # rebuilt for prefix lookups
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'characters_guild_name_idx'")
            await db.retire_character(1, luna.id, owner_id=10)
            again = await db.create_character(1, 10, "LUNA")  # unique among characters in play only
            assert again.name == "LUNA"
        async with Database(url, max_size=2) as db:   # applying it again changes nothing
            assert len(await db.list_characters(1, 10)) == 2
            assert len(await db.list_characters(1, 10, retired=True)) == 1
    finally:
        await drop_database(server_url, url)


# -- profiles ----------------------------------------------------------------------------------

async def test_a_sheet_link_is_kept_and_checked_like_an_image_link(db):
    luna = await db.create_character(G, ALICE, "Luna", sheet_url="https://docs.example/luna")
    assert luna.sheet_url == "https://docs.example/luna"
    with pytest.raises(UserError, match="sheet URL must start with http"):
        await db.create_character(G, ALICE, "Bram", sheet_url="javascript:alert(1)")
    assert [c.name for c in await db.list_characters(G, ALICE)] == ["Luna"]


async def test_edit_renames_and_changes_or_clears_links(db):
    luna = await db.create_character(G, ALICE, "Luna", "https://img.example/l.png")
    before, after = await db.edit_character(G, luna.id, owner_id=ALICE, name=" Selene ",
                                            image_url=None, sheet_url="https://s.example/1")
    assert (before.name, before.image_url) == ("Luna", "https://img.example/l.png")
    assert (after.name, after.image_url, after.sheet_url) == ("Selene", None, "https://s.example/1")
    _, kept = await db.edit_character(G, luna.id, owner_id=ALICE, name="Selene")
    assert kept.sheet_url == "https://s.example/1"  # links not given are kept


async def test_edit_refuses_what_it_must_and_changes_nothing(db):
    luna = await db.create_character(G, ALICE, "Luna")
    await db.create_character(G, ALICE, "Bram")
    with pytest.raises(DuplicateName):
        await db.edit_character(G, luna.id, owner_id=ALICE, name="BRAM")
    with pytest.raises(CharacterNotFound):
        await db.edit_character(G, luna.id, owner_id=BOB, name="Mine now")
    with pytest.raises(UserError, match="at least one"):
        await db.edit_character(G, luna.id, owner_id=ALICE)
    with pytest.raises(UserError, match="line breaks"):
        await db.edit_character(G, luna.id, owner_id=ALICE, name="a\nb")
    assert (await db.get_character(G, luna.id)).name == "Luna"
    _, staff_edit = await db.edit_character(G, luna.id, owner_id=None, sheet_url="https://s.example/x")
    assert staff_edit.sheet_url == "https://s.example/x" and KEEP is not None


async def test_starting_xp_is_given_and_recorded_in_the_history(db):
    luna = await db.create_character(G, ALICE, "Luna", starting_xp=6500, created_by=MOD)
    assert (luna.xp, luna.level) == (6500, 5)
    [entry] = await db.grant_history(G, luna.id)
    assert (entry["amount"], entry["source"], entry["granted_by"], entry["xp_after"]) == (6500, "start", MOD, 6500)
    for bad in (-1, 355_001):
        with pytest.raises(UserError, match="Starting XP must be between 0 and 355,000"):
            await db.create_character(G, BOB, "Bram", starting_xp=bad, created_by=MOD)
    assert await db.list_characters(G, BOB) == []


# -- retiring and restoring --------------------------------------------------------------------

async def test_retiring_the_active_character_hands_over_to_the_oldest_in_play(db):
    luna = await db.create_character(G, ALICE, "Luna")
    bram = await db.create_character(G, ALICE, "Bram")
    cora = await db.create_character(G, ALICE, "Cora")
    await db.retire_character(G, luna.id, owner_id=ALICE)
    retired, active = await db.retire_character(G, cora.id, owner_id=ALICE)
    assert retired.retired and active.id == bram.id
    _, none_left = await db.retire_character(G, bram.id, owner_id=None)  # staff
    assert none_left is None and await db.get_active_character(G, ALICE) is None


async def test_a_retired_character_keeps_its_xp_and_history_and_earns_nothing(db):
    await setup_guild(db, G, rp=[RP], hf=[HF], rate=10, cap=100)
    luna = await db.create_character(G, ALICE, "Luna")
    await db.grant_xp(G, luna.id, 500, granted_by=MOD)
    await db.retire_character(G, luna.id, owner_id=ALICE)
    rp = await db.award_rp(G, [RP], ALICE, 100, message_id=1)
    hf = await db.award_hf(G, [HF], "Luna", [], True, message_id=2)
    assert (rp.status, hf.status) == ("no_character", "unknown_character")
    with pytest.raises(CharacterRetired):
        await db.grant_xp(G, luna.id, 5, granted_by=MOD)
    kept = await db.get_character(G, luna.id)
    assert kept.xp == 500 and len(await db.grant_history(G, luna.id)) == 1


async def test_retired_characters_leave_the_leaderboard_lookups_and_autocomplete(db):
    luna = await db.create_character(G, ALICE, "Luna")
    await db.create_character(G, BOB, "Lunaria")
    await db.retire_character(G, luna.id, owner_id=ALICE)
    board, total = await db.leaderboard(G)
    assert [c.name for c in board] == ["Lunaria"] and total == 1
    assert [c.name for c in await db.character_choices(G, "lun")] == ["Lunaria"]
    assert [c.name for c in await db.character_choices(G, "lun", retired=True)] == ["Luna"]
    assert len(await db.character_choices(G, "lun", retired=None)) == 2
    with pytest.raises(CharacterNotFound):
        await db.find_character(G, "Luna", owner_id=ALICE)
    assert (await db.find_character(G, "Luna", owner_id=ALICE, retired=True)).id == luna.id
    assert [c.name for c in await db.list_characters(G, ALICE, retired=True)] == ["Luna"]
    assert await db.list_characters(G, ALICE) == []


async def test_names_are_unique_among_characters_in_play_and_a_clashing_restore_is_refused(db):
    luna = await db.create_character(G, ALICE, "Luna")
    await db.retire_character(G, luna.id, owner_id=ALICE)
    second = await db.create_character(G, ALICE, "luna")
    with pytest.raises(RestoreClash, match="Rename or retire that one first"):
        await db.unretire_character(G, luna.id, owner_id=ALICE)
    assert (await db.get_character(G, luna.id)).retired
    await db.edit_character(G, second.id, owner_id=ALICE, name="Luna the Second")
    restored = await db.unretire_character(G, luna.id, owner_id=ALICE)
    assert not restored.retired and (await db.get_active_character(G, ALICE)).id == second.id


async def test_only_the_owner_or_staff_retire_or_restore(db):
    luna = await db.create_character(G, ALICE, "Luna")
    with pytest.raises(CharacterNotFound):
        await db.retire_character(G, luna.id, owner_id=BOB)
    await db.retire_character(G, luna.id, owner_id=ALICE)
    with pytest.raises(CharacterNotFound):
        await db.retire_character(G, luna.id, owner_id=ALICE)  # already retired
    with pytest.raises(CharacterNotFound):
        await db.unretire_character(G, luna.id, owner_id=BOB)
    await db.unretire_character(G, luna.id, owner_id=None)


async def test_deleting_the_active_character_skips_retired_ones(db):
    luna = await db.create_character(G, ALICE, "Luna")
    bram = await db.create_character(G, ALICE, "Bram")
    cora = await db.create_character(G, ALICE, "Cora")
    await db.retire_character(G, luna.id, owner_id=ALICE)
    await db.set_active(G, ALICE, cora.id)
    _, active = await db.delete_character(G, ALICE, cora.id)
    assert active.id == bram.id


# -- purging -----------------------------------------------------------------------------------

async def test_purge_removes_everything_of_one_player_in_one_guild_only(db):
    luna = await db.create_character(G, ALICE, "Luna", starting_xp=100, created_by=MOD)
    old = await db.create_character(G, ALICE, "Old")
    await db.retire_character(G, old.id, owner_id=ALICE)
    await db.grant_xp(G, luna.id, 5, granted_by=MOD)
    elsewhere = await db.create_character(G + 1, ALICE, "Luna")
    await db.create_character(G, BOB, "Bram")
    summary = await db.player_summary(G, ALICE)
    assert (summary["characters"], summary["retired"], summary["xp"], summary["history"]) == (2, 1, 105, 2)
    gone = await db.purge_player(G, ALICE)
    assert (gone["characters"], gone["xp"], gone["history"]) == (2, 105, 2)
    assert await db.pool.fetchval("SELECT count(*) FROM characters WHERE guild_id = $1 AND user_id = $2",
                                  G, ALICE) == 0
    assert await db.pool.fetchval("SELECT count(*) FROM users WHERE guild_id = $1 AND user_id = $2", G, ALICE) == 0
    assert (await db.get_character(G + 1, elsewhere.id)).xp == 0
    assert [c.name for c in await db.list_characters(G, BOB)] == ["Bram"]
    with pytest.raises(UserError, match="nothing was purged"):
        await db.purge_player(G, ALICE)


# -- races between awards and retire, delete, purge ---------------------------------------------

@pytest.mark.parametrize("change", ["retire", "delete", "purge"])
async def test_awards_racing_a_retire_delete_or_purge_never_reach_a_gone_character_nor_get_lost(
        db, second_process, change):
    """Alice's Luna leaves play while RP and HF awards for Luna, and for Bob's Bram, race
    against it through two pools: Luna gains nothing after leaving, Bram loses nothing."""
    await setup_guild(db, G, rp=[RP], hf=[HF], rate=10, cap=10_000,
                      hf_settings={"attempt_xp": 1, "success_xp": 0, "daily_cap": 10_000})
    luna = await db.create_character(G, ALICE, "Luna")
    bram = await db.create_character(G, BOB, "Bram")
    pools = (db, second_process)

    async def awards(user: int, name: str, base: int) -> list:
        results = []
        for i in range(60):
            pool = pools[i % 2]
            if i % 3:
                results.append(await pool.award_rp(G, [RP], user, 10, message_id=base + i, now=NOON))
            else:
                results.append(await pool.award_hf(G, [HF], name, [], False, message_id=base + i, now=NOON))
        return results

    async def leave_play():
        await asyncio.sleep(0.01)
        if change == "retire":
            return (await second_process.retire_character(G, luna.id, owner_id=ALICE))[0].xp
        if change == "delete":
            return (await second_process.delete_character(G, ALICE, luna.id))[0].xp
        return (await second_process.purge_player(G, ALICE))["xp"]

    luna_awards, bram_awards, xp_when_gone = await asyncio.gather(
        awards(ALICE, "Luna", 10_000), awards(BOB, "Bram", 20_000), leave_play())
    assert sum(a.gained for a in bram_awards) == 60
    assert (await db.get_character(G, bram.id)).xp == 60
    # every award Luna got happened before she left play, and none after
    assert sum(a.gained for a in luna_awards if a.status == "awarded") == xp_when_gone
    assert 0 < xp_when_gone < 60 or change != "retire"
    luna_now = await db.pool.fetchval("SELECT xp FROM characters WHERE id = $1", luna.id)
    assert luna_now == (xp_when_gone if change == "retire" else None)


async def test_a_queued_hf_event_for_a_character_retired_meanwhile_awards_nothing(db):
    await setup_guild(db, G, hf=[HF])
    luna = await db.create_character(G, ALICE, "Luna")
    await db.retire_character(G, luna.id, owner_id=ALICE)
    from xp_queue import XPQueue
    award = await XPQueue(db).hf(HFResult(G, (HF,), "Luna", (), True, 5))
    assert award.status == "unknown_character" and (await db.get_character(G, luna.id)).xp == 0
    rp = await XPQueue(db).rp(RPMessage(G, RP, None, ALICE, 500, 6))
    assert rp.status in ("untracked", "no_character")


# -- export and import ---------------------------------------------------------------------------

async def test_export_and_import_carry_sheet_links_and_retired_characters(db):
    luna = await db.create_character(G, ALICE, "Luna", sheet_url="https://s.example/luna")
    for xp in (10, 20):  # two retired characters of one name
        old = await db.create_character(G, ALICE, "Old")
        await db.grant_xp(G, old.id, xp, granted_by=MOD)
        await db.retire_character(G, old.id, owner_id=ALICE)
    await db.set_active(G, ALICE, luna.id)
    document = await migrate_to_postgres.export_document(db, G)
    player = document[str(ALICE)]
    assert list(player["characters"]) == ["Luna"] and player["characters"]["Luna"]["sheet_url"].endswith("luna")
    assert [(c["name"], c["xp"]) for c in player["retired_characters"]] == [("Old", 10), ("Old", 20)]
    for _ in range(2):  # importing twice duplicates nothing
        await migrate_to_postgres.write_plan(db, G + 5, migrate_to_postgres.plan_migration(document))
        assert [(c.name, c.sheet_url, c.active) for c in await db.list_characters(G + 5, ALICE)] == [
            ("Luna", "https://s.example/luna", True)]
        assert [(c.name, c.xp) for c in await db.list_characters(G + 5, ALICE, retired=True)] == [
            ("Old", 10), ("Old", 20)]
    again = await migrate_to_postgres.export_document(db, G + 5)
    assert again[str(ALICE)] == player


async def test_a_malformed_retired_list_is_refused_with_where_it_is(db):
    with pytest.raises(migrate_to_postgres.BadFile, match="retired_characters"):
        migrate_to_postgres.plan_migration({"1": {"characters": {}, "retired_characters": {"x": 1}}})
    with pytest.raises(migrate_to_postgres.BadFile, match="retired character 1"):
        migrate_to_postgres.plan_migration({"1": {"characters": {}, "retired_characters": [{"xp": 1}]}})
