"""rules.py and schema.sql say the same: every limit, default and mode the database
enforces is checked here against the one in Python, on a real PostgreSQL."""
from __future__ import annotations

import asyncpg
import pytest

import rules
from database import GuildConfig

G = 4242


async def config_accepts(db, column: str, value) -> bool:
    try:
        async with db.pool.acquire() as con, con.transaction():
            await con.execute(f"INSERT INTO config (guild_id, {column}) VALUES ($1, $2)", G, value)
            raise _Rollback
    except _Rollback:
        return True
    except asyncpg.CheckViolationError:
        return False


class _Rollback(Exception):
    pass


@pytest.mark.parametrize("key", list(rules.SETTINGS))
async def test_setting_ranges_in_python_are_the_schemas_checks(db, key):
    setting = rules.SETTINGS[key]
    assert await config_accepts(db, key, setting.low)
    assert await config_accepts(db, key, setting.high)
    assert not await config_accepts(db, key, setting.low - 1)
    assert not await config_accepts(db, key, setting.high + 1)


async def test_setting_defaults_in_python_are_the_schemas_column_defaults(db):
    await db.pool.execute("INSERT INTO config (guild_id) VALUES ($1)", G)
    row = await db.pool.fetchrow("SELECT * FROM config WHERE guild_id = $1", G)
    assert {key: row[key] for key in rules.DEFAULTS} == rules.DEFAULTS
    assert row["levelup_mode"] == rules.DEFAULT_LEVELUP_MODE
    assert GuildConfig.from_row(row) == GuildConfig(G)  # a config never saved reads the same


async def test_levelup_modes_in_python_are_the_schemas(db):
    for mode in rules.LEVELUP_MODES:
        channel = 1 if mode == "channel" else None
        await db.pool.execute(
            """INSERT INTO config (guild_id, levelup_mode, levelup_channel) VALUES ($1, $2, $3)
               ON CONFLICT (guild_id) DO UPDATE SET levelup_mode = $2, levelup_channel = $3""", G, mode, channel)
    assert not await config_accepts(db, "levelup_mode", "loud")
    assert set(rules.LEVELUP_MODES) == {rules.next_levelup_mode(m) for m in rules.LEVELUP_MODES}


async def insert_character(db, **values) -> None:
    await db.pool.execute("INSERT INTO users (guild_id, user_id) VALUES ($1, 1) ON CONFLICT DO NOTHING", G)
    columns = ", ".join(values)
    params = ", ".join(f"${i + 2}" for i in range(len(values)))
    await db.pool.execute(f"INSERT INTO characters (guild_id, user_id, {columns}) VALUES ($1, 1, {params})",
                          G, *values.values())


async def test_xp_ceiling_in_python_is_the_schemas_check_and_xp_max(db):
    assert await db.pool.fetchval("SELECT xp_max()") == rules.XP_MAX
    await insert_character(db, name="Top", xp=rules.XP_MAX)
    with pytest.raises(asyncpg.CheckViolationError):
        await insert_character(db, name="Over", xp=rules.XP_MAX + 1)


async def test_name_length_in_python_is_the_schemas_check(db):
    await insert_character(db, name="x" * rules.NAME_MAX)
    with pytest.raises(asyncpg.CheckViolationError):
        await insert_character(db, name="y" * (rules.NAME_MAX + 1))
    with pytest.raises(asyncpg.CheckViolationError):
        await insert_character(db, name=" padded ")  # names are stored trimmed, as clean_name leaves them
    assert rules.clean_name(" padded ") == "padded"


async def test_every_url_clean_image_url_accepts_passes_the_schemas_check(db):
    for i, url in enumerate(("https://example.com/a.png", "HTTP://x.y/ä?q=1#f", "https://a/" + "b" * 1900)):
        await insert_character(db, name=f"C{i}", image_url=rules.clean_image_url(url))
    for bad in ("ftp://x", "https://a b", "javascript:alert(1)"):
        with pytest.raises(rules.UserError):
            rules.clean_image_url(bad)


def test_close_match_length_bounds_never_exclude_a_difflib_match():
    import difflib
    for length in range(1, 60):
        low, high = rules.close_match_lengths(length)
        for other in range(1, 120):
            best = 2 * min(length, other) / (length + other)  # difflib's best possible ratio
            if best >= rules.CLOSE_MATCH_CUTOFF:
                assert low <= other <= high, (length, other)
    assert difflib.SequenceMatcher(None, "serafina", "seraphina").ratio() >= rules.CLOSE_MATCH_CUTOFF
