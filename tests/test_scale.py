"""Lookups that stay fast as a guild grows, and find exactly what the slow way finds.

A misspelt name is matched by difflib (rules.close_matches) against only the names whose
letter signature could be close (rules.close_match_filter): these tests compare that with
difflib over every name of the guild, for names of every kind, signed or not."""
from __future__ import annotations

import asyncio
import random
import string

import asyncpg
import pytest

import database
import rules
from database import AmbiguousName, CharacterNotFound, Database

G, G2 = 3001, 3002

ODD_NAMES = ["Ærwyn", "Zoë Straße", "ſtephen", "KELVIN", "Ǆemal", "İlkay", "Ольга", "Мирослав",
             "李小龍", "O'Brien", "Jean-Luc", "Aaaaaaaaa", "Eeeeeeeeeeeeee", "Mississippi", "Bob",
             "A", "Xy", "Sir Reginald Worthington III", "x" * 100, "Ana-María de la Peña"]


def fantasy_names(count: int, rng: random.Random) -> list[str]:
    onsets = ["", "b", "br", "d", "dr", "f", "g", "h", "k", "l", "m", "n", "r", "s", "sh", "t", "th", "v", "z"]
    vowels = ["a", "e", "i", "o", "u", "ae", "ia", "y"]
    codas = ["", "", "n", "r", "l", "s", "th", "nd", "x"]
    made: set[str] = set()
    while len(made) < count:
        word = "".join(rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas)
                       for _ in range(rng.randint(1, 3))).capitalize()
        made.add(word + (" " + rng.choice(onsets).upper() + rng.choice(vowels) if rng.random() < 0.3 else ""))
    return sorted(made)


def typo(name: str, rng: random.Random) -> str:
    """One to three random edits: drop, double, swap, replace, change case."""
    chars = list(name)
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(chars))
        edit = rng.choice("ddsrcx")
        if edit == "d" and len(chars) > 1:
            del chars[i]
        elif edit == "s" and i + 1 < len(chars):
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        elif edit == "r":
            chars[i] = rng.choice(string.ascii_letters + "äöü -'")
        elif edit == "c":
            chars[i] = chars[i].swapcase()
        else:
            chars.insert(i, chars[i])
    return "".join(chars).strip() or name


async def fill(db: Database, guild: int, names: list[str]) -> dict[int, str]:
    async with db.pool.acquire() as con:
        await con.copy_records_to_table("users", records=[(guild, i + 1) for i in range(len(names))],
                                        columns=["guild_id", "user_id"])
        await con.copy_records_to_table("characters", records=[(guild, i + 1, n) for i, n in enumerate(names)],
                                        columns=["guild_id", "user_id", "name"])
    return {r["id"]: r["name"] for r in await db.pool.fetch(
        "SELECT id, name FROM characters WHERE guild_id = $1", guild)}


def difflib_over_everything(text: str, by_id: dict[int, str]) -> tuple:
    """What find_character must answer when no name equals `text`: difflib over every name."""
    ids = sorted(i for key in rules.close_matches(text, sorted({n.casefold() for n in by_id.values()}))
                 for i, n in by_id.items() if n.casefold() == key)
    return ("found", ids[0]) if len(ids) == 1 else ("ambiguous", ids) if ids else ("none",)


async def outcome(db: Database, guild: int, text: str) -> tuple:
    try:
        return "found", (await db.find_character(guild, text)).id
    except AmbiguousName as e:
        return "ambiguous", sorted(c.id for c in e.candidates)
    except CharacterNotFound:
        return ("none",)


async def in_memory(db: Database, guild: int) -> None:
    """Make the guild's lookups go through its in-memory index (name_index.py), built now."""
    database.NAME_INDEX_MIN = 1
    assert await db._name_index(guild) is None  # the first lookup starts the build...
    await asyncio.gather(*db._name_index_loads.values())
    assert await db._name_index(guild) is not None  # ...and later ones use it


@pytest.fixture(autouse=True)
def restore_limits(monkeypatch):
    monkeypatch.setattr(database, "NAME_INDEX_MIN", database.NAME_INDEX_MIN)


@pytest.mark.parametrize("where", ["database", "memory"])
@pytest.mark.parametrize("signed", ["all signed", "half signed", "none signed"])
async def test_a_misspelt_name_finds_exactly_what_difflib_over_every_name_finds(db, signed, where):
    rng = random.Random(17)
    by_id = await fill(db, G, fantasy_names(600, rng) + ODD_NAMES)
    await fill(db, G2, ["Thalia", "Brannoc"])  # another guild's names are never offered
    if signed != "none signed":
        assert await db.sign_names() == len(by_id) + 2
    if signed == "half signed":  # e.g. written by an earlier release, or renamed by hand
        await db.pool.execute("UPDATE characters SET name_letters = NULL, name_length = NULL "
                              "WHERE guild_id = $1 AND id % 2 = 0", G)
        assert await db.pool.fetchval("SELECT count(*) FROM characters WHERE name_letters IS NULL") > 250
    if where == "memory":
        await in_memory(db, G)
    lowered = {n.lower() for n in by_id.values()} | {n.casefold() for n in by_id.values()}
    texts = [typo(rng.choice(list(by_id.values())), rng) for _ in range(400)]
    texts += ["Thalia", "Brannoc", "zzzz", "q", "Straße", "Zoe Strasse", "Stephen", "Ольгa", "李小", "aaaaaaaaaa",
              "Eeeeeeeeeeeee", "Misisippi", "Sir Reginald Worthington", "x" * 99, "Ana Maria de la Pena"]
    compared = found = 0
    for text in texts:
        if text.casefold() in lowered or text.lower() in lowered:
            continue  # an exact name: not the misspelling path
        want = difflib_over_everything(text, by_id)
        assert await outcome(db, G, text) == want, text
        compared += 1
        found += want[0] == "found"
    assert compared > 300 and found > 100  # the typos were mostly still recognisable


async def test_owner_and_retired_filters_apply_to_misspellings_too(db):
    await fill(db, G, ["Seraphina", "Seraphine", "Bramwell"])
    await db.sign_names(G)
    await db.pool.execute("UPDATE characters SET retired_at = now() WHERE name = 'Seraphine'")
    assert (await db.find_character(G, "Serafina")).name == "Seraphina"  # the retired one doesn't count
    assert (await db.find_character(G, "Serafine", retired=True)).name == "Seraphine"
    with pytest.raises(CharacterNotFound):
        await db.find_character(G, "Bramwel", owner_id=1)  # Bramwell is player 3's
    assert (await db.find_character(G, "Bramwel", owner_id=3)).name == "Bramwell"


async def test_every_name_the_bot_writes_is_signed_and_a_rename_by_hand_unsigns_it(db):
    luna = await db.create_character(G, 1, "Luna")
    await db.edit_character(G, luna.id, owner_id=1, name="Lunaria")
    await db.import_guild(G, {"char_per_rp": 240}, [(2, "UTC", None, "Ærwyn")],
                          [(2, 0, "Ærwyn", 10, 0, 0, 0, None, None, False),
                           (2, 1, "Old Tom", 5, 0, 0, 0, None, None, True)])
    rows = await db.pool.fetch("SELECT name, name_letters::text AS bits, name_length FROM characters ORDER BY id")
    assert [r["name"] for r in rows] == ["Lunaria", "Ærwyn", "Old Tom"]
    for r in rows:
        assert (r["bits"], r["name_length"]) == rules.letter_signature(r["name"]), r["name"]
    await db.pool.execute("UPDATE characters SET name = 'Selene' WHERE name = 'Lunaria'")
    assert await db.pool.fetchval("SELECT name_letters FROM characters WHERE name = 'Selene'") is None
    assert (await db.find_character(G, "Selen")).name == "Selene"  # unsigned: still found
    assert await db.sign_names() == 1
    assert await db.pool.fetchval("SELECT name_length FROM characters WHERE name = 'Selene'") == 6


async def test_a_misspelt_lookup_reads_one_index_of_the_guild_and_not_the_table(db):
    rng = random.Random(5)
    await fill(db, G, fantasy_names(10_000, rng))
    await db.sign_names()
    await db.pool.execute("VACUUM ANALYZE characters")
    wanted = rules.close_match_filter("Thalindrel")
    async with db.pool.acquire() as con:
        await con.execute("SET enable_seqscan = off")  # a small table: the planner may prefer reading it whole
        plan = "\n".join(r[0] for r in await con.fetch(
            "EXPLAIN " + database._CLOSE_CANDIDATES, G, None, False, *wanted.lengths,
            asyncpg.BitString(wanted.signature), list(wanted.needs)))
    assert "characters_guild_letters_idx" in plan and "Seq Scan" not in plan and "Sort" not in plan, plan


async def test_the_signature_column_holds_exactly_the_bits_rules_makes(db):
    width = await db.pool.fetchval(
        "SELECT atttypmod FROM pg_attribute WHERE attrelid = 'characters'::regclass AND attname = 'name_letters'")
    assert width == rules.LETTER_BITS
    assert all(len(rules.letter_signature(n)[0]) == rules.LETTER_BITS for n in ODD_NAMES)


def test_the_filter_never_drops_a_name_difflib_would_accept():
    """Straight from the definitions, no database: for random pairs that difflib calls close,
    the signature overlap reaches what the filter asks for at that length."""
    rng = random.Random(3)
    names = fantasy_names(300, rng) + ODD_NAMES
    checked = 0
    for _ in range(3000):
        name = rng.choice(names)
        text = typo(name, rng)
        if not rules.close_matches(text, [name.casefold()]):
            continue
        wanted = rules.close_match_filter(text)
        bits, length = rules.letter_signature(name)
        low, high = wanted.lengths
        assert low <= length <= high
        shared = sum(a == b == "1" for a, b in zip(bits, wanted.signature))
        assert shared >= wanted.needs[length - low], (text, name)
        checked += 1
    assert checked > 1000


async def test_the_in_memory_index_sees_every_name_written_since_and_in_whatever_order_they_commit(db, database_url):
    await fill(db, G, ["Seraphina", "Bramwell", "Corwin"])
    await in_memory(db, G)
    async with Database(database_url, max_size=2) as other:  # another process
        luna = await other.create_character(G, 50, "Lunaria")
        assert (await db.find_character(G, "Lunarai")).id == luna.id
        await other.edit_character(G, luna.id, owner_id=50, name="Selenia")
        assert (await db.find_character(G, "Selenai")).id == luna.id
        with pytest.raises(CharacterNotFound):
            await db.find_character(G, "Lunarai")  # the old name is gone
        slow = await other.pool.acquire()  # a rename that commits after a later one
        try:
            transaction = slow.transaction()
            await transaction.start()
            await slow.execute("UPDATE characters SET name = 'Morgause' WHERE name = 'Corwin'")
            await other.create_character(G, 51, "Tristane")
            assert (await db.find_character(G, "Tristan")).name == "Tristane"  # read past the slow one
            await transaction.commit()
        finally:
            await other.pool.release(slow)
        assert (await db.find_character(G, "Morguase")).name == "Morgause"
        await other.delete_character(G, 51, (await other.find_character(G, "Tristane")).id)
        with pytest.raises(CharacterNotFound):
            await db.find_character(G, "Tristan")


async def test_the_leaderboard_total_kept_by_the_database_equals_a_count_through_everything(db, database_url):
    async def agree() -> None:
        kept = {r["guild_id"]: r["in_play"] for r in await db.pool.fetch(
            "SELECT guild_id, in_play FROM guild_character_counts WHERE in_play > 0")}
        counted = {r["guild_id"]: r["n"] for r in await db.pool.fetch(
            "SELECT guild_id, count(*) AS n FROM characters WHERE retired_at IS NULL GROUP BY guild_id")}
        assert kept == counted
        for guild in (G, G2):
            assert (await db.leaderboard(guild))[1] == counted.get(guild, 0)

    rng = random.Random(8)
    await fill(db, G, fantasy_names(300, rng))
    made = [await db.create_character(G2, 900 + i, f"Hero {i}") for i in range(6)]
    await agree()
    await db.retire_character(G2, made[0].id, owner_id=None)
    await db.retire_character(G2, made[1].id, owner_id=None)
    await db.unretire_character(G2, made[1].id, owner_id=None)
    await db.delete_character(G2, 902, made[2].id)
    await db.retire_character(G2, made[3].id, owner_id=None)
    await db.delete_character(G2, 903, made[3].id)  # a retired one: the total doesn't move
    await agree()
    await db.purge_player(G, 5)
    await db.import_guild(G2, {"char_per_rp": 240}, [(950, "UTC", None, "Imported")],
                          [(950, 0, "Imported", 10, 0, 0, 0, None, None, False),
                           (950, 1, "Gone", 5, 0, 0, 0, None, None, True)])
    await agree()
    async with Database(database_url, max_size=4) as other:  # two processes creating and retiring at once
        await asyncio.gather(*(d.create_character(G2, 1000 + i, f"Twin {i}") for i, d in
                               enumerate([db, other] * 10)))
        twins = [c for c in await db.pool.fetch("SELECT id FROM characters WHERE name LIKE 'Twin %'")]
        await asyncio.gather(*(d.retire_character(G2, t["id"], owner_id=None)
                               for d, t in zip([other, db] * 5, twins[:10])))
    await agree()
    await db.pool.execute("TRUNCATE characters CASCADE")
    await agree()


async def test_an_older_database_gets_its_totals_counted_and_its_names_signed_in_place(db):
    rng = random.Random(9)
    await fill(db, G, fantasy_names(50, rng))
    await db.pool.execute("UPDATE characters SET retired_at = now() WHERE id % 5 = 0")
    await db.pool.execute("DROP TABLE guild_character_counts")  # as before version 6
    await db.apply_schema()
    assert (await db.leaderboard(G))[1] == 40
    assert await db.sign_names() == 50  # what the bot does at start-up
    assert await db.pool.fetchval("SELECT count(*) FROM characters WHERE name_letters IS NULL") == 0


async def test_autocomplete_in_a_large_guild_finds_through_the_trigram_index_what_reading_every_name_finds(
        db, monkeypatch):
    rng = random.Random(11)
    names = fantasy_names(800, rng) + ODD_NAMES
    await fill(db, G, names)
    await db.sign_names()
    await db.pool.execute("UPDATE characters SET name_letters = NULL, name_trigrams = NULL WHERE id % 9 = 0")
    typed = [n[i:i + k] for n in rng.sample(names, 120) for k in (3, 4, 6) for i in (1, 2)
             if len(n[i:i + k].strip()) >= 3] + ["aer", "Straß", "льг", "zzz", "on t"]
    for text in typed:  # every name containing it, as reading all names finds them (limit: all)
        monkeypatch.setattr(database, "CONTAINS_SCAN_MAX", 10 ** 9)
        read_all = [c.id for c in await db.character_choices(G, text, limit=10 ** 4)]
        monkeypatch.setattr(database, "CONTAINS_SCAN_MAX", 1)
        through_index = [c.id for c in await db.character_choices(G, text, limit=10 ** 4)]
        assert sorted(through_index) == sorted(read_all), text  # (in the order of the database's collation
        # when read, of Python's when found through the index: the same names)
        some = await db.character_choices(G, text)  # the usual 25: some of them, by name after those starting so
        assert len(some) == min(25, len(read_all)) and {c.id for c in some} <= set(read_all)
    short = await db.character_choices(G, "qx")  # a large guild: two letters give what starts with them
    assert all(c.name.lower().startswith("qx") for c in short)
    await db.pool.execute("VACUUM ANALYZE characters")
    async with db.pool.acquire() as con:
        await con.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in await con.fetch(
            "EXPLAIN SELECT id FROM characters c WHERE c.guild_id = $1 AND lower(c.name) LIKE '%ael%' "
            "AND (c.name_trigrams @> $2::int[] OR c.name_letters IS NULL)", G, database._trigram_keys(G, "ael")))
    assert "characters_name_trigrams_idx" in plan and "characters_unsigned_idx" in plan, plan


async def test_name_indexes_stay_within_their_memory_bound_least_recently_used_first(db, monkeypatch):
    rng = random.Random(12)
    for guild in (G, G2, G + 10):
        await fill(db, guild, fantasy_names(30, rng))
    monkeypatch.setattr(database, "NAME_INDEX_MAX", 70)  # names: room for two guilds of 30
    for guild in (G, G2):
        await in_memory(db, guild)
    assert await outcome(db, G, "nobody at all") == ("none",)  # G used after G2
    await in_memory(db, G + 10)
    assert list(db._name_indexes) == [G, G + 10]
    assert (await outcome(db, G2, "qqqq")) == ("none",)  # an evicted guild is looked up in the database


async def test_bringing_a_name_index_up_to_date_reads_only_what_was_written_since(db):
    rng = random.Random(13)
    await fill(db, G, fantasy_names(5_000, rng))
    await db.pool.execute("VACUUM ANALYZE characters")
    watermark = 2 ** 62  # past every transaction (the server's oldest running one may be anyone's)
    plan = "\n".join(r[0] for r in await db.pool.fetch("EXPLAIN " + database._NAMES_SINCE, G, str(watermark)))
    assert "characters_guild_name_xid_idx" in plan and "Seq Scan on characters" not in plan, plan
    assert [r["id"] for r in await db.pool.fetch(database._NAMES_SINCE, G, str(watermark))] == [None]
