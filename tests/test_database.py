"""The rules (docs/rules.md) as they hold in the database: one test per behaviour, real PostgreSQL."""
from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg
import pytest

import helpers
from database import AmbiguousName, CharacterNotFound, Database, DuplicateName, GuildConfig
from rules import UserError

G, G2 = 1001, 1002            # guilds
RP, HF, OTHER = 11, 22, 33    # channels
ALICE, BOB = 501, 502         # players
UTC = dt.timezone.utc
NOON = dt.datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


async def tracked(db: Database, guild: int = G) -> None:
    await db.add_channel(guild, "rp", RP)
    await db.add_channel(guild, "hf", HF)


async def state(db: Database, guild: int = G) -> list[tuple]:
    rows = await db.pool.fetch(
        "SELECT user_id, name, xp, daily_xp, daily_hf, char_buffer FROM characters "
        "WHERE guild_id = $1 ORDER BY id", guild)
    return [tuple(r) for r in rows]


async def snapshot(db: Database) -> dict[str, list]:
    """Every row of every table, to show a refusal changed nothing."""
    return await helpers.snapshot(db, helpers.TABLES)


# -- Guilds -------------------------------------------------------------------

async def test_guild_without_config_row_gets_the_spec_defaults(db):
    cfg = await db.get_config(G)
    assert cfg == GuildConfig(G, (), (), 240, 10, 1, 5, 10, "message", None)
    assert await db.pool.fetchval("SELECT count(*) FROM config") == 0  # reading writes nothing


async def test_first_change_on_a_fresh_database_creates_the_row_and_keeps_the_change(db):
    cfg = await db.set_rp_rate(G, 100)
    assert cfg.char_per_rp == 100 and cfg.daily_rp_cap == 10
    assert (await db.get_config(G)).char_per_rp == 100


async def test_concurrent_first_changes_to_a_new_guild_are_all_kept(db, second_process):
    other = second_process
    await asyncio.gather(db.set_rp_rate(G, 77), other.set_rp_cap(G, 3),
                         db.add_channel(G, "rp", RP), other.add_channel(G, "hf", HF),
                         db.set_hf(G, attempt_xp=2), other.add_channel(G, "rp", OTHER))
    cfg = await db.get_config(G)
    assert (cfg.char_per_rp, cfg.daily_rp_cap, cfg.hf_attempt_xp) == (77, 3, 2)
    assert sorted(cfg.rp_channels) == [RP, OTHER] and cfg.hf_channels == (HF,)
    assert await db.pool.fetchval("SELECT count(*) FROM config WHERE guild_id = $1", G) == 1


async def test_adding_a_channel_twice_is_harmless_and_reported(db):
    _, changed = await db.add_channel(G, "rp", RP)
    cfg, changed_again = await db.add_channel(G, "rp", RP)
    assert changed and not changed_again and cfg.rp_channels == (RP,)


async def test_removing_a_channel_that_was_not_tracked_changes_nothing(db):
    await db.add_channel(G, "rp", RP)
    cfg, changed = await db.remove_channel(G, "rp", OTHER)
    assert not changed and cfg.rp_channels == (RP,)
    cfg, changed = await db.remove_channel(G, "rp", RP)
    assert changed and cfg.rp_channels == ()


async def test_a_character_in_one_guild_is_invisible_in_another(db):
    await db.create_character(G, ALICE, "Luna")
    assert await db.list_characters(G2, ALICE) == []
    assert await db.get_active_character(G2, ALICE) is None
    with pytest.raises(CharacterNotFound):
        await db.find_character(G2, "Luna")
    # and the same name can be created there independently
    assert (await db.create_character(G2, ALICE, "Luna")).guild_id == G2


@pytest.mark.parametrize("setter, value", [
    ("set_rp_rate", 0), ("set_rp_rate", -5), ("set_rp_cap", 0), ("set_rp_rate", 10**12),
    ("set_rp_cap", "3"), ("set_rp_cap", True)])
async def test_rates_and_caps_below_one_or_absurd_are_refused_and_change_nothing(db, setter, value):
    await db.set_rp_rate(G, 120)
    before = await snapshot(db)
    with pytest.raises(UserError) as err:
        await getattr(db, setter)(G, value)
    assert "must" in str(err.value)
    assert await snapshot(db) == before


async def test_hf_settings_validate_each_value(db):
    cfg = await db.set_hf(G, attempt_xp=0, success_xp=7, daily_cap=3)
    assert (cfg.hf_attempt_xp, cfg.hf_success_xp, cfg.daily_hf_cap) == (0, 7, 3)
    for bad in ({"daily_cap": 0}, {"attempt_xp": -1}, {}):
        with pytest.raises(UserError):
            await db.set_hf(G, **bad)
    assert (await db.get_config(G)).daily_hf_cap == 3


# -- Characters ---------------------------------------------------------------

async def test_creating_a_character_makes_it_active(db):
    await db.create_character(G, ALICE, "Luna")
    bram = await db.create_character(G, ALICE, "Bram", "https://example.com/b.png")
    assert bram.active and bram.image_url == "https://example.com/b.png"
    assert (await db.get_active_character(G, ALICE)).name == "Bram"
    assert [c.active for c in await db.list_characters(G, ALICE)] == [False, True]


async def test_names_are_unique_per_player_ignoring_case(db):
    await db.create_character(G, ALICE, "Luna")
    with pytest.raises(DuplicateName, match="already have"):
        await db.create_character(G, ALICE, "  LUNA ")
    await db.create_character(G, BOB, "luna")  # another player may use it
    assert len(await db.list_characters(G, ALICE)) == 1


async def test_unicode_names_compare_case_insensitively(db):
    await db.create_character(G, ALICE, "Élodie")
    with pytest.raises(DuplicateName):
        await db.create_character(G, ALICE, "éLODIE")


@pytest.mark.parametrize("name", ["", "   ", "x" * 101, "two\nlines", "tab\there", "nul\x00", "bell\x07"])
async def test_bad_names_are_refused_with_a_reason_and_change_nothing(db, name):
    before = await snapshot(db)
    with pytest.raises(UserError) as err:
        await db.create_character(G, ALICE, name)
    assert str(err.value)
    assert await snapshot(db) == before


async def test_names_are_trimmed_and_may_hold_any_printable_unicode(db):
    c = await db.create_character(G, ALICE, "  🐺 Luna **the** <@123> " + "é" * 70 + "  ")
    assert c.name.startswith("🐺 Luna") and not c.name.endswith(" ")
    assert (await db.create_character(G, ALICE, "y" * 100)).name == "y" * 100


@pytest.mark.parametrize("url", ["ftp://x.org/a.png", "javascript:alert(1)", "example.com/a.png",
                                 "https://exa mple.com/a.png", "https://" + "a" * 2100],
                         ids=["ftp", "javascript", "no-scheme", "space", "too-long"])
async def test_image_url_must_be_http_or_https(db, url):
    with pytest.raises(UserError, match="http|too long"):
        await db.create_character(G, ALICE, "Luna", url)
    assert await db.list_characters(G, ALICE) == []


async def test_deleting_the_active_character_activates_the_oldest_remaining(db):
    luna = await db.create_character(G, ALICE, "Luna")
    bram = await db.create_character(G, ALICE, "Bram")
    cara = await db.create_character(G, ALICE, "Cara")  # active
    deleted, active = await db.delete_character(G, ALICE, cara.id)
    assert deleted.name == "Cara" and active.id == luna.id
    deleted, active = await db.delete_character(G, ALICE, luna.id)
    assert active.id == bram.id
    _, active = await db.delete_character(G, ALICE, bram.id)
    assert active is None and await db.get_active_character(G, ALICE) is None


async def test_deleting_another_character_keeps_the_active_one(db):
    luna = await db.create_character(G, ALICE, "Luna")
    bram = await db.create_character(G, ALICE, "Bram")
    _, active = await db.delete_character(G, ALICE, luna.id)
    assert active.id == bram.id


async def test_a_player_cannot_delete_or_activate_someone_elses_character(db):
    luna = await db.create_character(G, ALICE, "Luna")
    await db.create_character(G, BOB, "Bram")
    before = await snapshot(db)
    with pytest.raises(CharacterNotFound):
        await db.delete_character(G, BOB, luna.id)
    with pytest.raises(CharacterNotFound):
        await db.set_active(G, BOB, luna.id)
    with pytest.raises(CharacterNotFound):
        await db.delete_character(G2, ALICE, luna.id)  # right owner, wrong guild
    assert await snapshot(db) == before


async def test_set_active_switches_the_active_character(db):
    luna = await db.create_character(G, ALICE, "Luna")
    await db.create_character(G, ALICE, "Bram")
    assert (await db.set_active(G, ALICE, luna.id)).name == "Luna"
    assert (await db.get_active_character(G, ALICE)).id == luna.id


async def test_find_character_matches_names_ignoring_case(db):
    await db.create_character(G, ALICE, "Luna")
    assert (await db.find_character(G, "  lUNA ", owner_id=ALICE)).name == "Luna"


async def test_find_character_accepts_a_close_misspelling_when_exactly_one_matches(db):
    await db.create_character(G, ALICE, "Seraphina")
    await db.create_character(G, ALICE, "Bram")
    assert (await db.find_character(G, "Serafina", owner_id=ALICE)).name == "Seraphina"
    await db.create_character(G, ALICE, "Brad")
    with pytest.raises(AmbiguousName):  # as close to Bram as to Brad
        await db.find_character(G, "Bra", owner_id=ALICE)
    with pytest.raises(CharacterNotFound, match="No character"):
        await db.find_character(G, "Zed", owner_id=ALICE)


async def test_find_character_is_scoped_to_the_owner_unless_staff_look_guild_wide(db):
    await db.create_character(G, ALICE, "Luna")
    with pytest.raises(CharacterNotFound):
        await db.find_character(G, "Luna", owner_id=BOB)
    assert (await db.find_character(G, "Luna")).user_id == ALICE
    await db.create_character(G, BOB, "Luna")
    with pytest.raises(AmbiguousName):
        await db.find_character(G, "Luna")


async def test_autocomplete_lists_prefix_matches_first_and_treats_wildcards_literally(db):
    for name in ("Bram", "Abram", "Brana", "100% Wolf", "a_b"):
        await db.create_character(G, ALICE, name)
    assert [c.name for c in await db.character_choices(G, "bra", owner_id=ALICE)] == ["Bram", "Brana", "Abram"]
    assert [c.name for c in await db.character_choices(G, "%", owner_id=ALICE)] == ["100% Wolf"]
    assert [c.name for c in await db.character_choices(G, "_", owner_id=ALICE)] == ["a_b"]
    assert await db.character_choices(G, "bra", owner_id=BOB) == []
    assert len(await db.character_choices(G, "", owner_id=ALICE)) == 5


# -- RP XP --------------------------------------------------------------------

async def test_rp_xp_is_one_per_char_per_rp_characters_and_the_remainder_is_buffered(db):
    await tracked(db)
    await db.create_character(G, ALICE, "Luna")
    award = await db.award_rp(G, [RP], ALICE, 500, now=NOON)
    assert (award.status, award.gained, award.xp_before, award.xp_after) == ("awarded", 2, 0, 2)
    assert await state(db) == [(ALICE, "Luna", 2, 2, 0, 20)]
    await db.award_rp(G, [RP], ALICE, 220, now=NOON)  # 20 + 220 = 240 -> one more XP
    assert await state(db) == [(ALICE, "Luna", 3, 3, 0, 0)]


async def test_rp_xp_stops_at_the_daily_cap_keeping_the_remainder(db):
    await tracked(db)
    await db.set_rp_cap(G, 3)
    await db.create_character(G, ALICE, "Luna")
    award = await db.award_rp(G, [RP], ALICE, 240 * 5 + 17, now=NOON)
    assert award.gained == 3
    assert await state(db) == [(ALICE, "Luna", 3, 3, 0, 17)]
    award = await db.award_rp(G, [RP], ALICE, 240 * 2, now=NOON)
    assert award.gained == 0 and await state(db) == [(ALICE, "Luna", 3, 3, 0, 17)]


async def test_rp_uses_the_guilds_rate(db):
    await tracked(db)
    await db.set_rp_rate(G, 10)
    await db.create_character(G, ALICE, "Luna")
    assert (await db.award_rp(G, [RP], ALICE, 35, now=NOON)).gained == 3


async def test_rp_without_an_active_character_records_nothing(db):
    await tracked(db)
    luna = await db.create_character(G, ALICE, "Luna")
    await db.delete_character(G, ALICE, luna.id)
    before = await snapshot(db)
    assert (await db.award_rp(G, [RP], ALICE, 1000, now=NOON)).status == "no_character"
    assert (await db.award_rp(G, [RP], BOB, 1000, now=NOON)).status == "no_character"
    after = await snapshot(db)
    before.pop("processed_messages"), after.pop("processed_messages")
    assert after == before


async def test_rp_in_an_untracked_channel_records_nothing(db):
    await tracked(db)
    await db.create_character(G, ALICE, "Luna")
    assert (await db.award_rp(G, [OTHER], ALICE, 1000, now=NOON)).status == "untracked"
    assert (await db.award_rp(G, [HF], ALICE, 1000, now=NOON)).status == "untracked"
    assert (await db.award_rp(G2, [RP], ALICE, 1000, now=NOON)).status == "untracked"
    assert await state(db) == [(ALICE, "Luna", 0, 0, 0, 0)]


async def test_rp_in_a_thread_counts_when_its_parent_channel_is_tracked(db):
    await tracked(db)
    await db.create_character(G, ALICE, "Luna")
    thread = 4444
    assert (await db.award_rp(G, [thread, RP], ALICE, 240, now=NOON)).gained == 1


async def test_rp_goes_to_the_active_character_only(db):
    await tracked(db)
    await db.create_character(G, ALICE, "Luna")
    await db.create_character(G, ALICE, "Bram")
    await db.award_rp(G, [RP], ALICE, 480, now=NOON)
    assert await state(db) == [(ALICE, "Luna", 0, 0, 0, 0), (ALICE, "Bram", 2, 2, 0, 0)]


async def test_a_message_delivered_twice_is_counted_once(db):
    await tracked(db)
    await db.create_character(G, ALICE, "Luna")
    first = await db.award_rp(G, [RP], ALICE, 480, message_id=123456789, now=NOON)
    again = await db.award_rp(G, [RP], ALICE, 480, message_id=123456789, now=NOON)
    assert (first.status, again.status) == ("awarded", "duplicate")
    assert await state(db) == [(ALICE, "Luna", 2, 2, 0, 0)]


async def test_old_message_keys_are_pruned(db):
    now = dt.datetime(2026, 6, 15, tzinfo=UTC)

    def snowflake(t: dt.datetime) -> int:
        return (int(t.timestamp() * 1000) - 1420070400000) << 22

    await tracked(db)
    await db.create_character(G, ALICE, "Luna")
    old, new = snowflake(now - dt.timedelta(days=2)), snowflake(now - dt.timedelta(hours=1))
    for mid in (old, new):
        await db.award_rp(G, [RP], ALICE, 1, message_id=mid, now=now)
    assert await db.prune_processed_messages(now=now) == 1
    assert [r[0] for r in await db.pool.fetch("SELECT message_id FROM processed_messages")] == [new]


# -- Daily reset ---------------------------------------------------------------

async def test_daily_counters_reset_at_the_players_local_midnight(db):
    await tracked(db)
    await db.set_rp_cap(G, 2)
    await db.set_timezone(G, ALICE, "America/New_York")  # UTC-4 in June
    await db.create_character(G, ALICE, "Luna")
    late = dt.datetime(2026, 6, 16, 3, 30, tzinfo=UTC)    # 23:30 on the 15th in New York
    await db.award_rp(G, [RP], ALICE, 240 * 3 + 5, now=late)
    assert await state(db) == [(ALICE, "Luna", 2, 2, 0, 5)]
    still_today = dt.datetime(2026, 6, 16, 3, 59, tzinfo=UTC)
    assert (await db.award_rp(G, [RP], ALICE, 240, now=still_today)).gained == 0
    after_midnight = dt.datetime(2026, 6, 16, 4, 1, tzinfo=UTC)  # 00:01 on the 16th
    assert (await db.award_rp(G, [RP], ALICE, 240, now=after_midnight)).gained == 1
    # the reset zeroed the buffer (5) first, so 240 gives exactly one XP and no remainder
    assert await state(db) == [(ALICE, "Luna", 3, 1, 0, 0)]


async def test_daily_reset_clears_every_character_of_the_player_in_that_guild_only(db):
    await tracked(db)
    await tracked(db, G2)
    for guild in (G, G2):
        await db.create_character(guild, ALICE, "Luna")
        await db.award_rp(guild, [RP], ALICE, 250, now=NOON)
        await db.award_hf(guild, [HF], "Luna", [], True, now=NOON)
    await db.create_character(G, ALICE, "Bram")  # now active in G
    await db.award_rp(G, [RP], ALICE, 10, now=NOON + dt.timedelta(days=1))
    assert await state(db) == [(ALICE, "Luna", 7, 0, 0, 0), (ALICE, "Bram", 0, 0, 0, 10)]
    assert await state(db, G2) == [(ALICE, "Luna", 7, 1, 6, 10)]


async def test_daily_reset_follows_local_midnight_across_a_dst_change(db):
    """Europe/Berlin springs forward on 2026-03-29 (UTC+1 -> UTC+2)."""
    await tracked(db)
    await db.set_rp_cap(G, 1)
    await db.set_timezone(G, ALICE, "Europe/Berlin")
    await db.create_character(G, ALICE, "Luna")
    steps = [  # (UTC time, Berlin local date, XP expected from one 240-char message)
        (dt.datetime(2026, 3, 28, 22, 59, tzinfo=UTC), 1),   # 23:59 CET on the 28th
        (dt.datetime(2026, 3, 28, 23, 0, tzinfo=UTC), 1),    # 00:00 on the 29th: new day
        (dt.datetime(2026, 3, 29, 21, 59, tzinfo=UTC), 0),   # 23:59 CEST, still the 29th
        (dt.datetime(2026, 3, 29, 22, 0, tzinfo=UTC), 1),    # 00:00 CEST on the 30th
    ]
    for when, expected in steps:
        assert (await db.award_rp(G, [RP], ALICE, 240, now=when)).gained == expected, when
    assert await db.pool.fetchval("SELECT last_xp_reset FROM users") == dt.date(2026, 3, 30)


async def test_fall_back_dst_day_keeps_one_reset(db):
    """America/New_York falls back on 2026-11-01: 25 hours, one local date."""
    await tracked(db)
    await db.set_rp_cap(G, 1)
    await db.set_timezone(G, ALICE, "America/New_York")
    await db.create_character(G, ALICE, "Luna")
    start = dt.datetime(2026, 11, 1, 4, 0, tzinfo=UTC)       # 00:00 EDT on Nov 1
    gains = [(await db.award_rp(G, [RP], ALICE, 240, now=start + dt.timedelta(hours=h))).gained
             for h in (0, 12, 24)]                            # 24h later is 23:00 EST, same date
    assert gains == [1, 0, 0]
    assert (await db.award_rp(G, [RP], ALICE, 240, now=start + dt.timedelta(hours=25))).gained == 1


async def test_time_zones_are_validated_and_normalised(db):
    assert await db.set_timezone(G, ALICE, "europe/berlin") == "Europe/Berlin"
    assert await db.get_timezone(G, ALICE) == "Europe/Berlin"
    assert await db.get_timezone(G, BOB) == "UTC"
    before = await snapshot(db)
    for bad in ("Mars/Olympus", "", "UTC+3", "../etc/passwd", "x" * 500, "EST5EDT; DROP TABLE users"):
        with pytest.raises(UserError, match="time zone"):
            await db.set_timezone(G, ALICE, bad)
    assert await snapshot(db) == before


# -- HF XP --------------------------------------------------------------------

async def test_hf_attempt_and_success_award_their_rates(db):
    await tracked(db)
    await db.create_character(G, ALICE, "Luna")
    attempt = await db.award_hf(G, [HF], "luna", [], False, now=NOON)
    success = await db.award_hf(G, [HF], "LUNA", [], True, now=NOON)
    assert (attempt.gained, success.gained) == (1, 6)
    assert attempt.user_id == ALICE
    assert await state(db) == [(ALICE, "Luna", 7, 0, 7, 0)]


async def test_hf_xp_stops_at_the_daily_hf_cap(db):
    await tracked(db)
    await db.set_hf(G, daily_cap=8)
    await db.create_character(G, ALICE, "Luna")
    gains = [(await db.award_hf(G, [HF], "Luna", [], True, now=NOON)).gained for _ in range(3)]
    assert gains == [6, 2, 0]


async def test_hf_goes_to_the_named_character_not_the_active_one(db):
    await tracked(db)
    await db.create_character(G, ALICE, "Luna")
    await db.create_character(G, ALICE, "Bram")
    await db.award_hf(G, [HF], "Luna", [], False, now=NOON)
    assert await state(db) == [(ALICE, "Luna", 1, 0, 1, 0), (ALICE, "Bram", 0, 0, 0, 0)]


async def test_hf_name_shared_by_two_players_is_resolved_by_mentions(db):
    await tracked(db)
    await db.create_character(G, ALICE, "Luna")
    await db.create_character(G, BOB, "luna")
    assert (await db.award_hf(G, [HF], "Luna", [], True, now=NOON)).status == "ambiguous"
    assert (await db.award_hf(G, [HF], "Luna", [ALICE, BOB], True, now=NOON)).status == "ambiguous"
    award = await db.award_hf(G, [HF], "Luna", [BOB, 999], True, now=NOON)
    assert (award.status, award.user_id, award.gained) == ("awarded", BOB, 6)
    assert await state(db) == [(ALICE, "Luna", 0, 0, 0, 0), (BOB, "luna", 6, 0, 6, 0)]


async def test_hf_for_an_unknown_name_or_untracked_channel_awards_nothing(db):
    await tracked(db)
    await db.create_character(G, ALICE, "Luna")
    assert (await db.award_hf(G, [HF], "Nobody", [], True, now=NOON)).status == "unknown_character"
    assert (await db.award_hf(G, [RP], "Luna", [], True, now=NOON)).status == "untracked"
    assert await state(db) == [(ALICE, "Luna", 0, 0, 0, 0)]


async def test_hf_applies_the_owners_daily_reset(db):
    await tracked(db)
    await db.set_hf(G, daily_cap=6)
    await db.create_character(G, ALICE, "Luna")
    await db.award_hf(G, [HF], "Luna", [], True, now=NOON)
    assert (await db.award_hf(G, [HF], "Luna", [], True, now=NOON)).gained == 0
    assert (await db.award_hf(G, [HF], "Luna", [], True, now=NOON + dt.timedelta(days=1))).gained == 6


# -- Grants and levels ----------------------------------------------------------

async def test_grants_add_and_remove_xp_never_below_zero_and_are_recorded(db):
    luna = await db.create_character(G, ALICE, "Luna")
    up = await db.grant_xp(G, luna.id, 350, granted_by=BOB, reason="quest")
    assert (up.xp_before, up.xp_after, up.level_before, up.level_after, up.leveled_up) == (0, 350, 1, 2, True)
    down = await db.grant_xp(G, luna.id, -1000, granted_by=BOB)
    assert (down.xp_after, down.gained) == (0, -350)
    log = await db.pool.fetch("SELECT granted_by, amount, xp_before, xp_after, reason FROM xp_grants ORDER BY id")
    assert [tuple(r) for r in log] == [(BOB, 350, 0, 350, "quest"), (BOB, -1000, 350, 0, None)]


@pytest.mark.parametrize("amount", [0, 10**9 + 1, -(10**9) - 1, 2**63, "5", 1.5])
async def test_zero_or_absurd_grants_are_refused_and_change_nothing(db, amount):
    luna = await db.create_character(G, ALICE, "Luna")
    before = await snapshot(db)
    with pytest.raises(UserError):
        await db.grant_xp(G, luna.id, amount, granted_by=BOB)
    assert await snapshot(db) == before


async def test_xp_is_capped_so_no_integer_overflows(db):
    luna = await db.create_character(G, ALICE, "Luna")
    for _ in range(3):
        last = await db.grant_xp(G, luna.id, 10**9, granted_by=BOB)
    assert last.xp_after == 3 * 10**9
    await db.pool.execute("UPDATE characters SET xp = 1000000000000 - 1")
    assert (await db.grant_xp(G, luna.id, 10**9, granted_by=BOB)).xp_after == 10**12


async def test_a_grant_cannot_reach_a_character_of_another_guild(db):
    luna = await db.create_character(G, ALICE, "Luna")
    with pytest.raises(CharacterNotFound):
        await db.grant_xp(G2, luna.id, 5, granted_by=BOB)
    assert await state(db) == [(ALICE, "Luna", 0, 0, 0, 0)]


async def test_awards_report_level_before_and_after(db):
    await tracked(db)
    await db.set_rp_rate(G, 1)
    await db.set_rp_cap(G, 1000)
    luna = await db.create_character(G, ALICE, "Luna")
    await db.grant_xp(G, luna.id, 299, granted_by=BOB)
    award = await db.award_rp(G, [RP], ALICE, 2, now=NOON)
    assert (award.xp_before, award.xp_after, award.level_before, award.level_after) == (299, 301, 1, 2)
    assert award.leveled_up


# -- Schema ---------------------------------------------------------------------

async def test_applying_the_schema_again_changes_nothing_and_loses_nothing(db):
    await tracked(db)
    luna = await db.create_character(G, ALICE, "Luna")
    await db.grant_xp(G, luna.id, 42, granted_by=BOB)
    before = await snapshot(db)
    await db.apply_schema()
    await db.apply_schema()
    assert await snapshot(db) == before
    assert await db.pool.fetchval("SELECT max(version) FROM schema_version") >= 1


def test_three_processes_applying_the_schema_at_once_all_succeed(make_database):
    url = make_database()

    async def race():
        dbs = [Database(url, max_size=2) for _ in range(3)]
        await asyncio.gather(*(d.connect() for d in dbs))
        version = await dbs[0].pool.fetchval("SELECT max(version) FROM schema_version")
        await asyncio.gather(*(d.close() for d in dbs))
        return version
    assert asyncio.run(race()) >= 1


async def test_the_database_itself_refuses_impossible_values(db):
    luna = await db.create_character(G, ALICE, "Luna")
    for sql in ("UPDATE characters SET xp = -1", "UPDATE characters SET daily_xp = -1",
                "UPDATE characters SET name = ''", "UPDATE characters SET image_url = 'ftp://x'",
                "INSERT INTO config (guild_id, char_per_rp) VALUES (5, 0)",
                "INSERT INTO config (guild_id, daily_hf_cap) VALUES (5, 0)"):
        with pytest.raises(asyncpg.CheckViolationError):
            await db.pool.execute(sql)
    with pytest.raises(asyncpg.ForeignKeyViolationError):  # active must be the player's own
        await db.pool.execute(
            "INSERT INTO users (guild_id, user_id, active_character_id) VALUES ($1, $2, $3)",
            G, BOB, luna.id)


def test_database_without_a_url_says_what_is_missing(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(RuntimeError, match="DATABASE_URL environment variable not set"):
        Database()


async def test_database_reads_database_url_and_connect_is_a_connection_check(monkeypatch, database_url):
    monkeypatch.setenv("DATABASE_URL", database_url)
    async with Database() as database:
        assert await database.pool.fetchval("SELECT 1") == 1
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nowhere")
    with pytest.raises(OSError):
        await Database().connect()


@pytest.mark.parametrize("indexes, plan_query", [
    ("characters_guild_name_idx", "SELECT * FROM characters WHERE guild_id = 1 AND lower(name) = 'luna'"),
    ("characters_owner_name_key characters_guild_name_idx",
     "SELECT * FROM characters WHERE guild_id = 1 AND user_id = 2 AND lower(name) = 'luna'"),
    ("characters_guild_name_idx", "SELECT * FROM characters WHERE guild_id = 1 AND lower(name) LIKE 'lu%'"),
    ("characters_guild_id_user_id_id_key", "SELECT * FROM characters WHERE guild_id = 1 AND user_id = 2 ORDER BY id"),
    ("characters_leaderboard_idx",
     "SELECT * FROM characters WHERE guild_id = 1 AND retired_at IS NULL ORDER BY -xp, id LIMIT 10"),
    ("users_pkey", "SELECT * FROM users WHERE guild_id = 1 AND user_id = 2"),
    ("config_pkey", "SELECT * FROM config WHERE guild_id = 1"),
])
async def test_lookups_made_per_message_or_command_use_an_index(db, indexes, plan_query):
    await db.pool.execute(  # some rows, so that costs tell the indexes apart
        """INSERT INTO users (guild_id, user_id) SELECT g % 3, g FROM generate_series(1, 3000) g;
           INSERT INTO characters (guild_id, user_id, name) SELECT g % 3, g, 'C' || g FROM generate_series(1, 3000) g;
           ANALYZE""")
    async with db.pool.acquire() as con:
        await con.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in await con.fetch("EXPLAIN " + plan_query))
        await con.execute("RESET enable_seqscan")
    assert any(index in plan for index in indexes.split()), plan


# -- Settings history, level-up settings, leaderboard, tracked-channel cache ----------

async def test_settings_changes_are_recorded_with_who_and_what(db):
    await db.set_rp_rate(G, 100, changed_by=BOB)
    await db.set_rp_rate(G, 100, changed_by=BOB)          # no change, nothing logged
    await db.add_channel(G, "rp", RP, changed_by=ALICE)
    await db.add_channel(G, "rp", RP, changed_by=ALICE)   # already tracked
    await db.set_hf(G, attempt_xp=2, daily_cap=4, changed_by=BOB)
    await db.set_rp_cap(G, 7)                             # no actor given: not logged
    log = [(r["changed_by"], r["setting"], r["old_value"], r["new_value"])
           for r in reversed(await db.settings_history(G))]
    assert log == [(BOB, "char_per_rp", None, 100), (ALICE, "rp_channels", [], [RP]),
                   (BOB, "hf_attempt_xp", 1, 2), (BOB, "daily_hf_cap", 10, 4)]


async def test_levelup_announcements_are_configurable_and_validated(db):
    assert (await db.get_config(G)).levelup_mode == "message"
    cfg = await db.set_levelup(G, "channel", 555, changed_by=BOB)
    assert (cfg.levelup_mode, cfg.levelup_channel) == ("channel", 555)
    cfg = await db.set_levelup(G, "off")
    assert (cfg.levelup_mode, cfg.levelup_channel) == ("off", None)
    for mode, channel in (("channel", None), ("loud", None)):
        with pytest.raises(UserError):
            await db.set_levelup(G, mode, channel)
    assert (await db.get_config(G)).levelup_mode == "off"


async def test_leaderboard_pages_by_xp_with_ties_oldest_first(db):
    ids = []
    for i, xp in enumerate([50, 500, 50, 0, 9000]):
        c = await db.create_character(G, 100 + i, f"C{i}")
        if xp:
            await db.grant_xp(G, c.id, xp, granted_by=BOB)
        ids.append(c.id)
    await db.create_character(G2, ALICE, "Elsewhere")
    first, total = await db.leaderboard(G, per_page=2)
    second, _ = await db.leaderboard(G, page=1, per_page=2)
    third, _ = await db.leaderboard(G, page=2, per_page=2)
    assert total == 5
    assert [c.name for c in first + second + third] == ["C4", "C1", "C0", "C2", "C3"]


async def test_grant_history_lists_a_characters_grants_newest_first(db):
    luna = await db.create_character(G, ALICE, "Luna")
    for amount, reason in ((10, "a"), (-3, None), (5, "c")):
        await db.grant_xp(G, luna.id, amount, granted_by=BOB, reason=reason)
    assert [(r["amount"], r["reason"]) for r in await db.grant_history(G, luna.id)] == [
        (5, "c"), (-3, None), (10, "a")]


async def test_leaderboard_of_10000_characters_is_served_by_an_index_without_sorting(db):
    await db.pool.execute(
        """INSERT INTO users (guild_id, user_id) SELECT $1, g FROM generate_series(1, 10000) g;
           INSERT INTO characters (guild_id, user_id, name, xp)
           SELECT $1, g, 'C' || g, (g * 7919) % 4000 FROM generate_series(1, 10000) g;
           UPDATE characters SET retired_at = now() WHERE user_id % 7 = 0;
           ANALYZE characters;""".replace("$1", str(G)))
    xps = [(r["xp"], r["id"]) for r in await db.pool.fetch(
        "SELECT xp, id FROM characters WHERE guild_id = $1 AND retired_at IS NULL ORDER BY xp DESC, id", G)]
    page, total = await db.leaderboard(G, page=3, per_page=10)
    assert total == len(xps) and [(c.xp, c.id) for c in page] == xps[30:40]
    # Paging from a row, both ways, at any depth (ties in xp included: 10,000 rows, 4,000 values).
    for at in (0, 39, 5000, len(xps) - 11):
        after, _ = await db.leaderboard(G, after=xps[at], per_page=10)
        assert [(c.xp, c.id) for c in after] == xps[at + 1:at + 11]
        before, _ = await db.leaderboard(G, before=xps[at + 10], per_page=10)
        assert [(c.xp, c.id) for c in before] == xps[at:at + 10]
    for query in ("LIMIT 10 OFFSET 30", "AND (-c.xp, c.id) > (-2000, 5000) ORDER BY -c.xp, c.id LIMIT 10",
                  "AND (-c.xp, c.id) < (-2000, 5000) ORDER BY -c.xp DESC, c.id DESC LIMIT 10"):
        if query.startswith("LIMIT"):
            query = "ORDER BY -c.xp, c.id " + query
        plan = "\n".join(r[0] for r in await db.pool.fetch(
            f"EXPLAIN SELECT c.* FROM characters c WHERE c.guild_id = $1 AND c.retired_at IS NULL {query}", G))
        assert "characters_leaderboard_idx" in plan and "Sort" not in plan, plan
