"""Looking up a misspelt name through the bigram index: the candidates never miss a name
difflib would accept, the index is used, and names stay indexed through every change."""
from __future__ import annotations

import difflib
import random

import rules

G = 8801


def random_name(rng: random.Random, alphabet: str) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))


def misspelt(rng: random.Random, name: str, alphabet: str) -> str:
    chars = list(name)
    for _ in range(rng.randint(1, 2)):
        where = rng.randrange(len(chars) + 1)
        edit = rng.choice("insert delete replace swap")
        if edit == "insert" or not chars:
            chars.insert(where, rng.choice(alphabet))
        elif edit == "delete":
            del chars[min(where, len(chars) - 1)]
        elif edit == "replace":
            chars[min(where, len(chars) - 1)] = rng.choice(alphabet)
        elif len(chars) > 1:
            i = min(where, len(chars) - 2)
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
    return "".join(chars) or rng.choice(alphabet)


async def test_the_candidates_include_every_name_difflib_accepts(db):
    """Small alphabets make many near names: every one difflib finds at the cutoff must be
    among the candidates the index gives (the bound in database._close_matches)."""
    rng = random.Random(20261125)
    names: set[str] = set()
    for alphabet in ("ab", "abc", "abcde", "Luna Bram"):
        goal = len(names) + 150
        while len(names) < goal:
            names.add(random_name(rng, alphabet).strip() or "x")
    names = sorted(names)
    await db.pool.execute("INSERT INTO users (guild_id, user_id) SELECT $1, g FROM generate_series(1, $2) g",
                          G, len(names))
    await db.pool.executemany("INSERT INTO characters (guild_id, user_id, name) VALUES ($1, $2, $3)",
                              [(G, i + 1, n) for i, n in enumerate(names)])
    checked = found_some = 0
    for _ in range(300):
        text = misspelt(rng, rng.choice(names), "abcde")
        candidates = {r["name"] for r in await db.close_match_candidates(G, text, None, None)}
        accepted = {n for n in names
                    if difflib.SequenceMatcher(None, text.casefold(), n.casefold()).ratio() >= rules.CLOSE_MATCH_CUTOFF}
        assert accepted <= candidates, (text, accepted - candidates)
        checked += 1
        found_some += bool(accepted)
    assert checked == 300 and found_some > 100  # the check had matches to miss


async def test_the_candidates_are_few_among_many_names(db):
    rng = random.Random(7)
    names = sorted({"".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(5, 12)))
                    for _ in range(3000)})
    await db.pool.execute("INSERT INTO users (guild_id, user_id) VALUES ($1, 1)", G)
    await db.pool.executemany("INSERT INTO characters (guild_id, user_id, name) VALUES ($1, 1, $2)",
                              [(G, n) for n in names])
    target = names[1234]
    typo = target[:2] + target[3:]  # one letter dropped
    candidates = await db.close_match_candidates(G, typo, None, None)
    assert target in {r["name"] for r in candidates} and len(candidates) < 100
    assert (await db.find_character(G, typo)).name == target


async def test_names_stay_indexed_through_create_rename_import_and_delete(db):
    luna = await db.create_character(G, 1, "Luna")
    await db.edit_character(G, luna.id, owner_id=1, name="Selene")
    assert (await db.find_character(G, "Selen")).id == luna.id
    grams = await db.pool.fetch("SELECT gram FROM character_grams WHERE character_id = $1 ORDER BY gram", luna.id)
    assert [g["gram"] for g in grams] == ["el", "en", "le", "ne", "se"]
    await db.delete_character(G, 1, luna.id)
    assert await db.pool.fetchval("SELECT count(*) FROM character_grams") == 0


async def test_the_candidate_query_uses_the_bigram_index(db):
    async with db.pool.acquire() as con:
        await con.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in await con.fetch(
            """EXPLAIN SELECT g.character_id, count(*) FROM character_grams g
               JOIN name_bigrams('serafina') t ON g.guild_id = 1 AND g.gram = t.gram AND g.occ = t.occ
               GROUP BY g.character_id"""))
    assert "character_grams_pkey" in plan, plan


def shared_bigrams(a: str, b: str) -> int:
    from collections import Counter
    grams = lambda s: Counter(s[i:i + 2] for i in range(len(s) - 1))  # noqa: E731
    return sum((grams(a.lower()) & grams(b.lower())).values())


def test_the_bigram_bound_holds_and_is_tight():
    """The bound the candidate query uses, checked on many random pairs in plain Python: every
    pair difflib accepts shares at least 0.2(a+b) - 1 bigrams (or is too short to need any),
    and some share barely more, so a stricter bound would lose matches."""
    rng = random.Random(42)
    closest_to_the_bound = 99.0
    for _ in range(60_000):
        alphabet = rng.choice(("ab", "abc", "abcdef"))
        a = random_name(rng, alphabet)
        b = misspelt(rng, a, alphabet) if rng.random() < 0.7 else random_name(rng, alphabet)
        if difflib.SequenceMatcher(None, a, b).ratio() < rules.CLOSE_MATCH_CUTOFF or len(a) + len(b) <= 5:
            continue
        n = shared_bigrams(a, b)
        assert n >= 0.2 * (len(a) + len(b)) - 1, (a, b, n)
        closest_to_the_bound = min(closest_to_the_bound, n / (len(a) + len(b)))
    assert closest_to_the_bound < 0.3
