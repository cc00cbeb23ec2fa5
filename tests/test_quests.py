"""Quests in the database (real PostgreSQL): the CR table, limits the schema repeats, who may
be in a quest, ending it exactly once under races, and what retiring, deleting and purging
a character do to the quests it is in."""
from __future__ import annotations

import asyncio
import datetime as dt
import re
from pathlib import Path

import asyncpg
import pytest

import rules
from database import CharacterNotFound
from rules import UserError

G = 7001
ALICE, BOB, MOD, MOD2, DM = 701, 702, 703, 704, 705
DOCS = Path(__file__).resolve().parent.parent / "docs" / "rules.md"


@pytest.fixture(autouse=True)
async def no_quests(db):
    """The shared fixture empties the character tables; quests are emptied here."""
    await db.pool.execute("TRUNCATE quests RESTART IDENTITY CASCADE")


async def quest(db, name="Dragon Hunt", low=1, high=20, **options):
    return await db.create_quest(G, name, low, high, created_by=options.pop("created_by", MOD), **options)


async def character(db, user, name, xp=0):
    made = await db.create_character(G, user, name, starting_xp=xp, created_by=MOD)
    return made.id


async def xp_of(db, character_id) -> int:
    return (await db.get_character(G, character_id)).xp


async def quest_history(db, character_id) -> list:
    return [g for g in await db.grant_history(G, character_id) if g["source"] == "quest"]


async def pc_names(db, quest_id) -> list[str]:
    return [pc["name"] for pc in (await db.quest_details(G, quest_id))["pcs"]]


# -- the CR table and the limits ---------------------------------------------------------------

THE_5E_TABLE = """0 → 10, 1/8 → 25, 1/4 → 50, 1/2 → 100, 1 → 200, 2 → 450, 3 → 700, 4 → 1,100, 5 → 1,800,
6 → 2,300, 7 → 2,900, 8 → 3,900, 9 → 5,000, 10 → 5,900, 11 → 7,200, 12 → 8,400, 13 → 10,000, 14 → 11,500,
15 → 13,000, 16 → 15,000, 17 → 18,000, 18 → 20,000, 19 → 22,000, 20 → 25,000, 21 → 33,000, 22 → 41,000,
23 → 50,000, 24 → 62,000, 25 → 75,000, 26 → 90,000, 27 → 105,000, 28 → 120,000, 29 → 135,000, 30 → 155,000"""


def parse_table(text: str) -> dict[str, int]:
    return {cr: int(xp.replace(",", "")) for cr, xp in re.findall(r"(\d+(?:/\d+)?) → ([\d,]+)", text)}


def test_the_cr_table_is_the_5e_table_in_rating_order():
    assert rules.CR_XP == parse_table(THE_5E_TABLE)
    assert list(rules.CR_XP) == list(parse_table(THE_5E_TABLE))  # autocomplete offers them in this order
    documented = DOCS.read_text(encoding="utf-8").split("## Quests", 1)[1]
    assert parse_table(documented) == rules.CR_XP  # the rules page says the same


@pytest.mark.parametrize("typed, cr", [("1/4", "1/4"), ("0.25", "1/4"), (".5", "1/2"), ("CR 5", "5"),
                                       ("05", "5"), ("0", "0"), (" 30 ", "30")])
def test_challenge_ratings_are_read_as_the_table_writes_them(typed, cr):
    assert rules.clean_cr(typed) == cr


@pytest.mark.parametrize("typed", ["31", "-1", "1/3", "", "goblin", None, "9" * 30])
def test_anything_else_is_not_a_challenge_rating(typed):
    with pytest.raises(UserError, match="not a challenge rating"):
        rules.clean_cr(typed)


async def test_level_count_and_name_limits_in_rules_are_the_schemas_checks(db):
    made = await quest(db)
    insert_quest = ("INSERT INTO quests (guild_id, name, min_level, max_level, created_by) "
                    "VALUES (1, $3, $1, $2, 1)")
    insert_monster = "INSERT INTO quest_monsters (quest_id, cr, xp_each, count, added_by) VALUES ($1, '1', 200, $2, 1)"
    await db.pool.execute(insert_quest, rules.QUEST_LEVEL_MIN, rules.QUEST_LEVEL_MAX, "x" * rules.NAME_MAX)
    await db.pool.execute(insert_monster, made["id"], rules.MONSTER_COUNT_MAX)
    for sql, args in ((insert_quest, (rules.QUEST_LEVEL_MIN - 1, 5, "a")),
                      (insert_quest, (5, rules.QUEST_LEVEL_MAX + 1, "b")),
                      (insert_quest, (6, 5, "c")), (insert_quest, (1, 2, "y" * (rules.NAME_MAX + 1))),
                      (insert_monster, (made["id"], rules.MONSTER_COUNT_MAX + 1)), (insert_monster, (made["id"], 0))):
        with pytest.raises(asyncpg.CheckViolationError):
            await db.pool.execute(sql, *args)
    insert_status = ("INSERT INTO quests (guild_id, name, min_level, max_level, created_by, status, ended_by, ended_at) "
                     "VALUES (1, $1, 1, 1, 1, $1, $2, $3)")
    for status in rules.QUEST_STATUSES:
        ended = (None, None) if status == "active" else (1, dt.datetime.now(dt.timezone.utc))
        await db.pool.execute(insert_status, status, *ended)
    with pytest.raises(asyncpg.CheckViolationError):
        await db.pool.execute(insert_status, "abandoned", 1, dt.datetime.now(dt.timezone.utc))


# -- starting a quest ----------------------------------------------------------------------------

async def test_a_quest_starts_active_with_its_dm_type_and_dates(db):
    made = await quest(db, "  Dragon Hunt  ", 3, 5, quest_type="One-shot", start_date="2025-03-14", dm_id=DM)
    assert (made["name"], made["status"], made["min_level"], made["max_level"], made["quest_type"]) == (
        "Dragon Hunt", "active", 3, 5, "One-shot")
    assert made["start_date"] == dt.date(2025, 3, 14) and made["dm_ids"] == [DM]
    assert (await quest(db, "Rescue"))["dm_ids"] == [MOD]  # the DM defaults to whoever started it


async def test_active_quest_names_are_unique_ignoring_case_and_free_again_once_ended(db):
    first = await quest(db, "Dragon Hunt")
    with pytest.raises(UserError, match="already an active quest"):
        await quest(db, "DRAGON HUNT")
    await db.end_quest(G, first["id"], by=MOD)
    again = await quest(db, "dragon hunt")
    assert again["id"] != first["id"]
    assert (await db.create_quest(G + 1, "Dragon Hunt", 1, 2, created_by=MOD))["guild_id"] == G + 1  # per guild


async def test_two_quests_started_at_once_with_one_name_give_one(db, second_process):
    results = await asyncio.gather(
        *(pool.create_quest(G, "Dragon Hunt", 1, 5, created_by=MOD) for pool in (db, second_process) * 4),
        return_exceptions=True)
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all("already an active quest" in str(r) for r in results if isinstance(r, Exception))


@pytest.mark.parametrize("name, low, high, options, message", [
    ("", 1, 5, {}, "A quest name can't be empty"),
    ("x" * 101, 1, 5, {}, "at most 100"),
    ("two\nlines", 1, 5, {}, "line breaks"),
    ("Q", 0, 5, {}, "minimum level must be between 1 and 20"),
    ("Q", 1, 21, {}, "maximum level must be between 1 and 20"),
    ("Q", 6, 5, {}, r"minimum level \(6\) is above the maximum level \(5\)"),
    ("Q", 1, 5, {"start_date": "14/03/2025"}, "start_date must be a date written YYYY-MM-DD"),
    ("Q", 1, 5, {"start_date": "2025-02-30"}, "not a day of the calendar"),
    ("Q", 1, 5, {"quest_type": "x" * 101}, "at most 100"),
])
async def test_bad_quests_are_refused_and_nothing_is_stored(db, name, low, high, options, message):
    with pytest.raises(UserError, match=message):
        await quest(db, name, low, high, **options)
    assert await db.pool.fetchval("SELECT count(*) FROM quests") == 0


async def test_earlier_types_are_offered_once_each(db):
    for i, kind in enumerate(("One-shot", "one-shot", "Campaign", "Downtime")):
        await quest(db, f"Q{i}", quest_type=kind)
    assert await db.quest_types(G, "") == ["Campaign", "Downtime", "One-shot"]
    assert await db.quest_types(G, "SHOT") == ["One-shot"]
    assert await db.quest_types(G + 1, "") == []


# -- finding quests ------------------------------------------------------------------------------

async def test_a_quest_is_found_by_name_ignoring_case_or_a_close_misspelling_active_first(db):
    old = await quest(db, "Dragon Hunt")
    await db.end_quest(G, old["id"], by=MOD)
    new = await quest(db, "Dragon Hunt")
    assert (await db.find_quest(G, "dragon hunt"))["id"] == new["id"]
    assert (await db.find_quest(G, "Dragon Hnut"))["id"] == new["id"]
    await db.delete_quest(G, new["id"])
    assert (await db.find_quest(G, "DRAGON HUNT"))["id"] == old["id"]  # then the one that ended last
    for missing in ("Rescue", "", "\x00"):
        with pytest.raises(UserError):
            await db.find_quest(G, missing)
    with pytest.raises(UserError, match="No quest called"):
        await db.find_quest(G + 1, "Dragon Hunt")


async def test_choices_offer_active_quests_first_and_completed_ones_only_when_asked(db):
    done = await quest(db, "Dragon Hunt")
    await db.end_quest(G, done["id"], by=MOD)
    await quest(db, "Rescue the Dragon")
    await quest(db, "Bandits")
    assert [q["name"] for q in await db.quest_choices(G, "drag", active_only=True)] == ["Rescue the Dragon"]
    assert [q["name"] for q in await db.quest_choices(G, "drag", active_only=False)] == [
        "Rescue the Dragon", "Dragon Hunt"]
    assert [q["name"] for q in await db.quest_choices(G, "%", active_only=False)] == []


# -- DMs, PCs and monsters -----------------------------------------------------------------------

async def test_dms_are_a_set(db):
    made = await quest(db)
    assert await db.add_quest_dm(G, made["id"], DM, added_by=MOD)
    assert not await db.add_quest_dm(G, made["id"], DM, added_by=MOD)
    assert (await db.get_quest(G, made["id"]))["dm_ids"] == [MOD, DM]


async def test_joining_needs_your_own_character_in_play_within_the_levels(db):
    made = await quest(db, low=3, high=5)
    low = await character(db, ALICE, "Luna")
    right = await character(db, ALICE, "Bram", xp=900)  # level 3
    bobs = await character(db, BOB, "Cora", xp=900)
    with pytest.raises(UserError, match=r'"Luna" is level 1, and "Dragon Hunt" is for levels 3–5'):
        await db.add_quest_pc(G, made["id"], low, added_by=ALICE, owner_id=ALICE, in_bracket=True)
    with pytest.raises(CharacterNotFound):
        await db.add_quest_pc(G, made["id"], bobs, added_by=ALICE, owner_id=ALICE, in_bracket=True)
    joined = await db.add_quest_pc(G, made["id"], right, added_by=ALICE, owner_id=ALICE, in_bracket=True)
    assert (joined["character_name"], joined["level_at_join"], joined["xp_at_join"]) == ("Bram", 3, 900)
    with pytest.raises(UserError, match="already in"):
        await db.add_quest_pc(G, made["id"], right, added_by=ALICE, owner_id=ALICE, in_bracket=True)
    await db.add_quest_pc(G, made["id"], low, added_by=MOD)  # a DM may add anyone's, outside the levels too
    assert await pc_names(db, made["id"]) == ["Bram", "Luna"]
    await db.retire_character(G, bobs, owner_id=BOB)
    with pytest.raises(UserError, match="retired"):
        await db.add_quest_pc(G, made["id"], bobs, added_by=MOD)
    with pytest.raises(UserError, match="doesn't exist in this server"):
        await db.add_quest_pc(G + 1, made["id"], right, added_by=MOD)  # the quest is not in that guild


async def test_leaving_takes_only_your_own_character_out(db):
    made = await quest(db)
    luna = await character(db, ALICE, "Luna")
    await db.add_quest_pc(G, made["id"], luna, added_by=ALICE)
    with pytest.raises(UserError, match='not in "Dragon Hunt"'):
        await db.remove_quest_pc(G, made["id"], luna, owner_id=BOB)
    assert (await db.remove_quest_pc(G, made["id"], luna, owner_id=ALICE))["name"] == "Luna"
    with pytest.raises(UserError, match="not in"):
        await db.remove_quest_pc(G, made["id"], luna)


async def test_monsters_add_up_to_the_quests_xp_within_the_limits(db):
    made = await quest(db)
    entry, total = await db.add_quest_monster(G, made["id"], "1/4", 3, "  goblin  ", added_by=DM)
    assert (entry["cr"], entry["xp_each"], entry["count"], entry["name"], total) == ("1/4", 50, 3, "goblin", 150)
    _, total = await db.add_quest_monster(G, made["id"], "5", 2, added_by=DM)
    assert total == 150 + 3600 == (await db.quest_details(G, made["id"]))["monsters_xp"]
    for count in (0, 1001, -5, True):
        with pytest.raises(UserError, match="count"):
            await db.add_quest_monster(G, made["id"], "1", count, added_by=DM)
    with pytest.raises(UserError, match="not a challenge rating"):
        await db.add_quest_monster(G, made["id"], "31", 1, added_by=DM)
    assert len((await db.quest_details(G, made["id"]))["monsters"]) == 2


async def test_a_quest_is_worth_at_most_one_grant(db):
    made = await quest(db)
    for _ in range(6):
        await db.add_quest_monster(G, made["id"], "30", 1000, added_by=DM)  # 155,000,000 each
    with pytest.raises(UserError, match="at most 1,000,000,000"):
        await db.add_quest_monster(G, made["id"], "30", 1000, added_by=DM)


async def test_a_completed_or_deleted_quest_cannot_be_changed(db):
    made = await quest(db)
    luna = await character(db, ALICE, "Luna")
    await db.end_quest(G, made["id"], by=MOD)
    before = await db.quest_details(G, made["id"])
    for change in (db.add_quest_dm(G, made["id"], DM, added_by=MOD),
                   db.add_quest_pc(G, made["id"], luna, added_by=MOD),
                   db.remove_quest_pc(G, made["id"], luna),
                   db.add_quest_monster(G, made["id"], "1", 1, added_by=MOD),
                   db.delete_quest(G, made["id"])):
        with pytest.raises(UserError, match="has ended"):
            await change
    assert await db.quest_details(G, made["id"]) == before
    gone = await quest(db, "Rescue")
    await db.delete_quest(G, gone["id"])
    with pytest.raises(UserError, match="doesn't exist"):
        await db.add_quest_monster(G, gone["id"], "1", 1, added_by=MOD)
    assert await db.get_quest(G, gone["id"]) is None


# -- ending a quest ------------------------------------------------------------------------------

async def party(db, *members, monsters=(("1", 3), ("1/2", 1))):
    """A quest with these PCs (user, name, xp) and monsters (cr, count); returns (quest, ids)."""
    made = await quest(db)
    ids = []
    for user, name, xp in members:
        ids.append(await character(db, user, name, xp))
        await db.add_quest_pc(G, made["id"], ids[-1], added_by=MOD)
    for cr, count in monsters:
        await db.add_quest_monster(G, made["id"], cr, count, added_by=MOD)
    return made, ids


async def test_ending_gives_each_pc_an_equal_share_rounded_down_through_the_history(db):
    made, (luna, bram, cora) = await party(db, (ALICE, "Luna", 250), (ALICE, "Bram", 0), (BOB, "Cora", 10))
    ended, awards, already = await db.end_quest(G, made["id"], by=DM, end_date="2025-04-01")
    assert not already and (ended["status"], ended["ended_by"], ended["end_date"]) == (
        "completed", DM, dt.date(2025, 4, 1))
    assert (ended["total_xp"], ended["xp_per_pc"], ended["awarded"]) == (700, 233, True)
    assert [(a.name, a.xp_before, a.xp_after, a.leveled_up) for a in awards] == [
        ("Luna", 250, 483, True), ("Bram", 0, 233, False), ("Cora", 10, 243, False)]
    assert [await xp_of(db, c) for c in (luna, bram, cora)] == [483, 233, 243]
    [entry] = await quest_history(db, luna)
    assert (entry["source"], entry["ref_id"], entry["amount"], entry["granted_by"]) == ("quest", made["id"], 233, DM)
    assert "Dragon Hunt" in entry["reason"]
    pcs = (await db.quest_details(G, made["id"]))["pcs"]
    assert [(p["name"], p["xp_before"], p["xp_after"]) for p in pcs] == [
        ("Luna", 250, 483), ("Bram", 0, 233), ("Cora", 10, 243)]


async def test_ending_without_award_or_without_pcs_gives_nothing(db):
    made, (luna,) = await party(db, (ALICE, "Luna", 50))
    ended, awards, _ = await db.end_quest(G, made["id"], by=MOD, award=False)
    assert (ended["awarded"], ended["xp_per_pc"], ended["total_xp"]) == (False, 0, 700)
    assert [(a.status, a.xp_before, a.xp_after) for a in awards] == [("unchanged", 50, 50)]
    assert await xp_of(db, luna) == 50 and await quest_history(db, luna) == []
    empty = await quest(db, "Empty")
    await db.add_quest_monster(G, empty["id"], "10", 1, added_by=MOD)
    ended, awards, _ = await db.end_quest(G, empty["id"], by=MOD)
    assert (ended["status"], ended["xp_per_pc"], awards) == ("completed", 0, [])


async def test_an_end_date_before_the_start_date_is_refused_and_the_quest_stays_active(db):
    made = await quest(db, start_date="2025-03-14")
    for bad, message in (("2025-03-13", r"end_date \(2025-03-13\) is before the quest's start_date \(2025-03-14\)"),
                         ("yesterday", "YYYY-MM-DD")):
        with pytest.raises(UserError, match=message):
            await db.end_quest(G, made["id"], by=MOD, end_date=bad)
    assert (await db.get_quest(G, made["id"]))["status"] == "active"
    ended, _, _ = await db.end_quest(G, made["id"], by=MOD, end_date="2025-03-14")  # the same day is fine
    assert ended["end_date"] == dt.date(2025, 3, 14)


async def test_a_second_end_is_told_who_ended_it_and_when_and_gives_nothing(db):
    made, (luna,) = await party(db, (ALICE, "Luna", 0))
    first, _, _ = await db.end_quest(G, made["id"], by=DM)
    again, awards, already = await db.end_quest(G, made["id"], by=MOD, award=True)
    assert already and awards == [] and (again["ended_by"], again["ended_at"]) == (DM, first["ended_at"])
    assert await xp_of(db, luna) == 700 and len(await quest_history(db, luna)) == 1


async def test_two_processes_ending_one_quest_at_once_award_once(db, second_process):
    made, ids = await party(db, (ALICE, "Luna", 0), (ALICE, "Bram", 0), (BOB, "Cora", 0))
    results = await asyncio.gather(*(pool.end_quest(G, made["id"], by=by)
                                     for pool, by in ((db, MOD), (second_process, MOD2)) * 5))
    fresh = [r for r in results if not r[2]]
    assert len(fresh) == 1 and len(fresh[0][1]) == 3
    assert all(r[0]["ended_by"] == fresh[0][0]["ended_by"] for r in results)
    assert [await xp_of(db, c) for c in ids] == [233, 233, 233]
    assert await db.pool.fetchval("SELECT count(*) FROM xp_grants WHERE source = 'quest'") == 3


async def test_ending_races_joining_retiring_and_rp_without_failing(db, second_process):
    """Whatever runs at the same moment as the end, the end succeeds once and every PC it
    names got exactly its share."""
    for round_ in range(5):
        await db.pool.execute("TRUNCATE quests, characters, users, xp_grants RESTART IDENTITY CASCADE")
        await db.add_channel(G, "rp", 1)
        made, (luna, bram) = await party(db, (ALICE, "Luna", 0), (ALICE, "Bram", 0), monsters=(("1", 2),))
        cora = await character(db, BOB, "Cora")
        results = await asyncio.gather(
            db.end_quest(G, made["id"], by=MOD),
            second_process.retire_character(G, bram, owner_id=ALICE),
            second_process.add_quest_pc(G, made["id"], cora, added_by=BOB, owner_id=BOB),
            second_process.award_rp(G, [1], ALICE, 2000),
            return_exceptions=True)
        ended, awards, already = results[0]
        assert not already and results[1][0].retired
        assert ended["xp_per_pc"] == 400 // len(awards)
        assert all(a.xp_after - a.xp_before == ended["xp_per_pc"] for a in awards)
        names = {a.name for a in awards}
        assert {p["name"] for p in (await db.quest_details(G, made["id"]))["pcs"]} == names
        assert "Luna" in names and (("Cora" in names) == (not isinstance(results[2], Exception)))
        assert isinstance(results[2], asyncpg.Record) or "has ended" in str(results[2])
        rp = results[3]
        for name, character_id in (("Luna", luna), ("Bram", bram)):
            assert await xp_of(db, character_id) == (ended["xp_per_pc"] if name in names else 0) + (
                rp.gained if rp.character_id == character_id else 0)


# -- characters leaving play ---------------------------------------------------------------------

@pytest.mark.parametrize("leave", ["retire", "delete", "purge"])
async def test_a_character_leaving_play_leaves_its_active_quests_and_completed_ones_keep_its_name(db, leave):
    done, (luna,) = await party(db, (ALICE, "Luna", 0))
    await db.end_quest(G, done["id"], by=MOD)
    running = await quest(db, "Rescue")
    await db.add_quest_pc(G, running["id"], luna, added_by=ALICE)
    await db.edit_character(G, luna, owner_id=ALICE, name="Luna the Bold")
    assert await pc_names(db, running["id"]) == ["Luna the Bold"]  # an active quest shows the name now
    if leave == "retire":
        await db.retire_character(G, luna, owner_id=ALICE)
    elif leave == "delete":
        await db.delete_character(G, ALICE, luna)
    else:
        await db.purge_player(G, ALICE)
    assert await pc_names(db, running["id"]) == []
    [kept] = (await db.quest_details(G, done["id"]))["pcs"]
    assert (kept["name"], kept["xp_after"]) == ("Luna", 700)  # the name it had when the quest ended
    assert (kept["character_id"] is None) == (leave != "retire")
    if leave == "retire":
        await db.unretire_character(G, luna, owner_id=ALICE)
        assert await pc_names(db, running["id"]) == []  # restoring does not rejoin


# -- listing ---------------------------------------------------------------------------------------

async def test_quests_are_listed_a_page_at_a_time_newest_first(db):
    for i in range(12):
        made = await quest(db, f"Q{i:02}")
        if i % 4 == 0:
            await db.add_quest_monster(G, made["id"], "1", 1, added_by=MOD)
            await db.end_quest(G, made["id"], by=MOD)
    first, total, page = await db.list_quests(G, completed=False, per_page=5)
    assert (total, page) == (9, 0) and [q["name"] for q in first] == ["Q11", "Q10", "Q09", "Q07", "Q06"]
    assert first[0]["dm_ids"] == [MOD] and first[0]["pc_count"] == 0
    last, _, page = await db.list_quests(G, completed=False, page=99, per_page=5)
    assert page == 1 and [q["name"] for q in last] == ["Q05", "Q03", "Q02", "Q01"]
    done, total, _ = await db.list_quests(G, completed=True, per_page=5)
    assert total == 3 and [q["name"] for q in done] == ["Q08", "Q04", "Q00"]
    assert done[0]["monsters_xp"] == 200
    assert await db.list_quests(G + 1, completed=False) == ([], 0, 0)


async def test_a_page_of_quests_is_one_query(db, monkeypatch):
    for i in range(15):
        made = await quest(db, f"Q{i:02}")
        await db.add_quest_monster(G, made["id"], "1", 1, added_by=MOD)
        await db.add_quest_dm(G, made["id"], DM, added_by=MOD)
    queries = []

    class CountingPool:
        def __getattr__(self, name):
            queries.append(name)
            return getattr(pool, name)
    pool = db.pool
    monkeypatch.setattr(db, "pool", CountingPool())
    page, total, _ = await db.list_quests(G, completed=False, per_page=10)
    assert (len(page), total, queries) == (10, 15, ["fetch"])
    assert all(q["dm_ids"] == [MOD, DM] and q["monsters_xp"] == 200 for q in page)


async def test_applying_the_schema_again_keeps_every_quest(db):
    made, _ = await party(db, (ALICE, "Luna", 0))
    before = await db.quest_details(G, made["id"])
    await db.apply_schema()
    await db.apply_schema()
    assert await db.quest_details(G, made["id"]) == before
