"""migrate_to_postgres.py on real files of each era and each messy case, on real PostgreSQL."""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import helpers
from database import Database
import migrate_to_postgres
from migrate_to_postgres import plan_migration

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
SCRIPT = ROOT / "migrate_to_postgres.py"
G, OTHER_GUILD = 4242, 4343


def migrate(*args: str, url: str | None = None, **env: str) -> subprocess.CompletedProcess:
    child = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "GUILD_ID")}
    if url:
        child["DATABASE_URL"] = url
    child.update(env)
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=child, capture_output=True,
                          text=True, timeout=300, cwd=ROOT)


async def snapshot(db: Database) -> dict:
    return await helpers.snapshot(db, helpers.STATE_TABLES, ignore=("created_at", "updated_at"))


async def guild_rows(db: Database, guild: int = G) -> list[tuple]:
    rows = await db.pool.fetch(
        """SELECT u.user_id, u.timezone, u.last_xp_reset, c.name, c.xp, c.daily_xp, c.daily_hf,
                  c.char_buffer, c.image_url, c.id = u.active_character_id AS active
             FROM users u LEFT JOIN characters c USING (guild_id, user_id)
            WHERE u.guild_id = $1 ORDER BY u.user_id, c.id""", guild)
    return [tuple(r) for r in rows]


# -- the command line ------------------------------------------------------------------------

def test_help_describes_the_options_and_changes_nothing():
    done = migrate("--help")
    assert done.returncode == 0
    for option in ("--guild-id", "--database-url", "--dry-run", "--export"):
        assert option in done.stdout


def test_missing_guild_and_missing_database_url_are_usage_errors():
    done = migrate(str(DATA / "xp_v3_spec_example.json"))
    assert done.returncode == 2 and "--guild-id" in done.stdout
    done = migrate(str(DATA / "xp_v3_spec_example.json"), "--guild-id", str(G))
    assert done.returncode == 2 and "DATABASE_URL environment variable not set" in done.stdout


async def test_spec_example_migrates_with_the_progress_lines_and_a_checked_summary(db, database_url):
    done = migrate(str(DATA / "xp_v3_spec_example.json"), "--guild-id", str(G), url=database_url)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[:4] == ["👤 Migrating user 123456789012345678...", "  📦 Creating character: Luna",
                         "  📦 Creating character: Bram",
                         "✅ User 123456789012345678 migrated with 2 characters"]
    assert "  XP total:   1,470" in lines and "matches the file's totals" in done.stdout
    assert await guild_rows(db) == [
        (123456789012345678, "America/New_York", dt.date(2025, 10, 28), "Luna", 1450, 3, 0,
         120, "https://example.com/luna.png", True),
        (123456789012345678, "America/New_York", dt.date(2025, 10, 28), "Bram", 20, 0, 0,
         0, None, False)]
    cfg = await db.get_config(G)
    assert (cfg.rp_channels, cfg.hf_channels, cfg.char_per_rp, cfg.daily_rp_cap, cfg.hf_attempt_xp,
            cfg.hf_success_xp, cfg.daily_hf_cap) == ((111111111111111111,), (222222222222222222,),
                                                     240, 5, 1, 5, 5)


async def test_dry_run_reports_everything_and_writes_nothing(db, database_url):
    before = await snapshot(db)
    done = migrate(str(DATA / "xp_mixed_messy.json"), "--guild-id", str(G), "--dry-run", url=database_url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Dry run: nothing was written" in done.stdout and "would be migrated" in done.stdout
    assert await snapshot(db) == before


async def test_running_twice_leaves_the_same_database(db, database_url):
    for _ in range(2):
        done = migrate(str(DATA / "xp_mixed_messy.json"), "--guild-id", str(G), url=database_url)
        assert done.returncode == 0, done.stdout + done.stderr
        if _ == 0:
            first = await snapshot(db)
    assert await snapshot(db) == first
    assert await db.pool.fetchval("SELECT count(*) FROM characters WHERE guild_id = $1", G) == 6


@pytest.mark.parametrize("content, problem", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "one JSON object"),
    ('{"123": "Luna"}', "user 123: expected an object"),
    ('{"123": {"characters": ["Luna"]}}', "user 123.characters"),
    ('{"123": {"characters": {"Luna": 50}}}', "character 'Luna'"),
])
async def test_a_malformed_file_is_refused_clearly_and_changes_nothing(db, database_url, tmp_path,
                                                                     content, problem):
    await db.create_character(G, 1, "Existing")
    before = await snapshot(db)
    bad = tmp_path / "xp.json"
    bad.write_text(content)
    done = migrate(str(bad), "--guild-id", str(G), url=database_url)
    assert done.returncode == 1 and problem in done.stdout and "Nothing was written" in done.stdout
    assert "Traceback" not in done.stderr
    assert await snapshot(db) == before


def test_an_unreachable_database_is_exit_code_3_and_hides_the_password():
    done = migrate(str(DATA / "xp_v3_spec_example.json"), "--guild-id", str(G),
                   "--database-url", "postgresql://xpbot:hunter2secret@127.0.0.1:1/xpbot")
    assert done.returncode == 3 and "nothing was written" in done.stdout
    assert "hunter2secret" not in done.stdout + done.stderr


# -- every era and every messy case -------------------------------------------------------------

def test_first_era_file_without_settings_gets_the_old_bots_defaults():
    plan = plan_migration(json.loads((DATA / "xp_v1_no_settings.json").read_text()))
    assert plan.settings == {"rp_channels": [], "hf_channels": [], "char_per_rp": 240, "daily_rp_cap": 5,
                             "hf_attempt_xp": 1, "hf_success_xp": 5, "daily_hf_cap": 5}
    aria, nobody = plan.players
    assert (aria.timezone, aria.last_xp_reset, aria.active) == ("UTC", None, "Aria")
    assert (aria.characters[0].xp, aria.characters[0].daily_xp, aria.characters[0].char_buffer) == (300, 2, 17)
    assert nobody.active is None and nobody.characters[0].xp == 0
    assert "user 100000000000000002 character 'Nobody' xp: missing, set to 0" in plan.notes


def test_second_era_keys_are_read_and_leftovers_reported():
    plan = plan_migration(json.loads((DATA / "xp_v2_old_keys.json").read_text()))
    assert plan.settings["rp_channels"] == [333333333333333333, 444444444444444444]
    assert (plan.settings["char_per_rp"], plan.settings["daily_rp_cap"]) == (300, 8)
    [kael] = plan.players
    assert kael.timezone == "Europe/Berlin" and kael.characters[0].image_url is None
    assert any("per-player char_buffer 55" in n for n in plan.notes)
    assert not any("image_url" in n for n in plan.notes)  # "" simply means no image


def test_newer_keys_win_and_every_change_is_reported():
    plan = plan_migration(json.loads((DATA / "xp_mixed_messy.json").read_text()))
    s = plan.settings
    assert (s["rp_channels"], s["char_per_rp"], s["daily_rp_cap"]) == ([555555555555555555], 1, 3)
    assert (s["hf_channels"], s["hf_attempt_xp"], s["daily_hf_cap"]) == ([666666666666666666], 2, 1)
    messy, ghost, empty = plan.players
    names = [c.name for c in messy.characters]
    assert names[:3] == ["Luna", "LUNA (2)", "Wolf of the North"]
    assert len(names[3]) <= 100 and names[3].endswith("Range of") and names[3].startswith("Ωμέγα 🐺") and names[4] == "Unnamed"
    assert [c.xp for c in messy.characters] == [0, 10, 42, 10**12, 0]
    assert messy.characters[0].image_url is None
    assert (messy.timezone, messy.last_xp_reset, messy.active) == ("UTC", None, "Luna")
    assert (ghost.timezone, ghost.active) == ("Asia/Tokyo", None) and empty.characters == []
    text = "\n".join(plan.notes)
    for expected in ("renamed to 'LUNA (2)'", "ftp://example.com/x.png", "Mars/Olympus", "not a date",
                     "-25 is out of range", "rounded to 10", "'notes'", "\"Ghost\" names no character",
                     "not-a-channel", "char_per_rp: 0 is out of range", "unknown key 'mood'",
                     "xp_channels: ignored", "per-player char_buffer 12"):
        assert expected in text, expected


async def test_import_export_import_gives_an_identical_database(db, database_url, tmp_path):
    exported = tmp_path / "export.json"
    assert migrate(str(DATA / "xp_mixed_messy.json"), "--guild-id", str(G), url=database_url).returncode == 0
    first = await guild_rows(db)
    assert migrate("--export", str(exported), "--guild-id", str(G), url=database_url).returncode == 0
    await db.pool.execute("DELETE FROM users WHERE guild_id = $1; ", G)
    await db.pool.execute("DELETE FROM config WHERE guild_id = $1", G)
    assert migrate(str(exported), "--guild-id", str(G), url=database_url).returncode == 0
    assert await guild_rows(db) == first


async def test_export_import_export_gives_an_identical_document(db, database_url, tmp_path):
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    for name in ("xp_v1_no_settings.json", "xp_v2_old_keys.json", "xp_mixed_messy.json"):
        assert migrate(str(DATA / name), "--guild-id", str(G), url=database_url).returncode == 0
    assert migrate("--export", str(one), "--guild-id", str(G), url=database_url).returncode == 0
    assert migrate(str(one), "--guild-id", str(OTHER_GUILD), url=database_url).returncode == 0
    assert migrate("--export", str(two), "--guild-id", str(OTHER_GUILD), url=database_url).returncode == 0
    assert one.read_bytes() == two.read_bytes()
    document = json.loads(one.read_text())
    assert len([k for k in document if k.isdigit()]) == 6



# -- the streamed export: the same document as export_document, read in chunks -----------------------

def export_source() -> dict:
    """A guild with a bit of everything an export carries: settings, level roles, staff roles, a
    log channel, players without characters, retired characters (two of one name), links, names
    JSON must escape, and one player with more characters than a small chunk."""
    document = {"rp_channels": [11, 12], "hf_channels": [13], "daily_rp_cap": 7, "levelup_mode": "channel",
                "levelup_channel": 14, "staff_roles": [15, 16], "log_channel": 17, "level_role_mode": "replace",
                "level_roles": {"2": 222, "5": 555}}
    for i in range(40):
        document[str(1000 + i)] = {
            "timezone": "Europe/Berlin" if i % 3 else "UTC", "last_xp_reset": f"2026-01-0{1 + i % 9}" if i % 2 else "",
            "active": f"C{i}-0" if i % 4 > 1 else None,
            "characters": {f"C{i}-{j}": {"xp": 100 * i + j, "daily_xp": j, "char_buffer": i,
                                         "image_url": f"https://img.example/{i}/{j}.png" if j else None,
                                         "sheet_url": f"https://s.example/{i}" if j == 1 else None}
                           for j in range(i % 4)},
            "retired_characters": [{"name": "Old", "xp": i}, {"name": "Old", "xp": i + 1}] if i % 5 == 0 else []}
    document["2000"] = {"characters": {f"Many {j}": {"xp": j} for j in range(23)}, "active": "Many 3"}
    document["3000"] = {"characters": {'Quote " and back\\slash': {"xp": 1}, "Ünïcødé 🐉 dragon": {"xp": 2},
                                       "<@1> **bold** \u2028": {"xp": 3}}}
    return document


async def exported_guild(db: Database) -> dict:
    await migrate_to_postgres.write_plan(db, G, plan_migration(export_source()))
    await db.create_character(OTHER_GUILD, 1000, "Elsewhere")  # another guild's: never exported
    document = await migrate_to_postgres.export_document(db, G)
    players = {k: v for k, v in document.items() if k.isdigit()}
    assert len(players) == 42 and players["1004"]["characters"] == {} and "retired_characters" not in players["1004"]
    assert players["1000"]["characters"] == {} and [c["xp"] for c in players["1000"]["retired_characters"]] == [0, 1]
    assert players["1001"]["characters"]["C1-0"]["image_url"] is None
    assert players["1002"]["characters"]["C2-1"]["sheet_url"] == "https://s.example/2"
    assert players["1002"]["active"] == "C2-0" and len(players["2000"]["characters"]) == 23
    assert (document["level_roles"], document["staff_roles"], document["log_channel"]) == ({"2": 222, "5": 555},
                                                                                           [15, 16], 17)
    return document


async def streamed(db: Database, guild: int, chunk: int) -> tuple[bytes, int]:
    out = io.BytesIO()
    players = await migrate_to_postgres.write_export(db, guild, out, chunk=chunk)
    return out.getvalue(), players


@pytest.mark.parametrize("chunk", [1, 7, 10_000])
async def test_the_streamed_export_is_export_documents_document_byte_for_byte(db, chunk):
    document = await exported_guild(db)
    data, players = await streamed(db, G, chunk)
    assert data == (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    assert list(json.loads(data).items()) == list(document.items())  # the same keys in the same order
    assert players == 42


async def test_a_guild_without_players_streams_its_settings_alone(db):
    await db.set_rp_cap(G, 3)
    data, players = await streamed(db, G, 7)
    document = await migrate_to_postgres.export_document(db, G)
    assert data == (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    assert players == 0 and json.loads(data)["daily_rp_cap"] == 3


async def test_export_rows_are_read_in_chunks_of_the_size_asked(db):
    await exported_guild(db)
    whole = await db.export_players(G)
    assert len(whole) > 100
    for chunk in (1, 7, len(whole) + 1):
        chunks = [rows async for rows in db.export_player_rows(G, chunk=chunk)]
        assert [len(rows) for rows in chunks[:-1]] == [chunk] * (len(chunks) - 1) and 0 < len(chunks[-1]) <= chunk
        assert [row for rows in chunks for row in rows] == whole


async def test_an_export_left_unfinished_gives_its_connection_back(db):
    await exported_guild(db)
    for _ in range(db.pool.get_max_size() + 1):  # more than the pool holds: each must have been released
        async with contextlib.aclosing(db.export_player_rows(G, chunk=5)) as chunks:
            async for _rows in chunks:
                break
    assert db.pool.get_idle_size() == db.pool.get_size()


async def test_an_export_that_fails_leaves_no_file(db, database_url, tmp_path):
    target = tmp_path / "out.json"
    for guild, url in ((G, "postgresql://postgres@127.0.0.1:1/x"),  # no database: fails before writing
                       (2**64, database_url)):  # not a guild id PostgreSQL can hold: fails while writing
        done = migrate("--export", str(target), "--guild-id", str(guild), url=url)
        assert done.returncode == 3 and "Database error" in done.stdout and list(tmp_path.iterdir()) == []

async def test_other_guilds_and_players_outside_the_file_are_untouched(db, database_url):
    await db.create_character(OTHER_GUILD, 123456789012345678, "Luna")
    await db.create_character(G, 999, "Local")
    assert migrate(str(DATA / "xp_v3_spec_example.json"), "--guild-id", str(G), url=database_url).returncode == 0
    assert [c.xp for c in await db.list_characters(OTHER_GUILD, 123456789012345678)] == [0]
    assert [c.name for c in await db.list_characters(G, 999)] == ["Local"]


async def test_an_interrupted_run_leaves_nothing_behind(db, database_url, tmp_path):
    """Kill the migration while its transaction is open: the database is as before."""
    big = {str(10**17 + i): {"characters": {f"C{j}": {"xp": j} for j in range(3)}} for i in range(30000)}
    path = tmp_path / "big.json"
    path.write_text(json.dumps(big))
    before = await snapshot(db)
    blocker = await db.pool.acquire()  # hold the config row so the migration waits inside its transaction
    tx = blocker.transaction()
    await tx.start()
    await blocker.execute("INSERT INTO config (guild_id) VALUES ($1)", G)
    child = subprocess.Popen([sys.executable, str(SCRIPT), str(path), "--guild-id", str(G),
                              "--database-url", database_url], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        async def waiting_on_our_lock():
            return await db.pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()")
        await helpers.eventually(waiting_on_our_lock, "the migration waiting inside its transaction",
                                 timeout=30, interval=0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        await tx.rollback()
        await db.pool.release(blocker)
    await asyncio.sleep(0.2)
    assert await snapshot(db) == before


def test_a_large_file_shows_a_progress_bar_instead_of_a_line_per_player(tmp_path):
    big = {str(10**17 + i): {"characters": {"A": {"xp": 1}}} for i in range(150)}
    path = tmp_path / "xp.json"
    path.write_text(json.dumps(big))
    done = migrate(str(path), "--guild-id", str(G), "--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Reading players" in done.stdout and "👤 Migrating user" not in done.stdout
    assert "150 users would be migrated with 150 characters" in done.stdout
