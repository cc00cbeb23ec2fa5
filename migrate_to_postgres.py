"""Move an old bot's xp.json into PostgreSQL (and back out, with --export).

    python migrate_to_postgres.py xp.json --guild-id 123456789012345678 --dry-run
    python migrate_to_postgres.py xp.json --guild-id 123456789012345678
    python migrate_to_postgres.py --export backup.json --guild-id 123456789012345678

The file holds one guild; --guild-id (or GUILD_ID) names it. Every era of the file is
read: settings missing (the old bot's defaults 240, 5, 1, 5, 5 apply), the second
version's xp_channels / char_per_xp / daily_xp_cap, the newest keys, or both (newest win).

What changes to fit the rules, and is always reported: names are trimmed, control
characters removed, cut to 100 characters, "Unnamed" when empty, and a player's names
that differ only in case get " (2)", " (3)"; XP that is negative, fractional or junk
becomes a whole number >= 0; image URLs that aren't http(s) are dropped; an invalid time
zone becomes UTC; an invalid last reset date is cleared; an `active` naming no character
leaves the player without an active one; settings outside the allowed ranges are clamped;
per-player counters left by an older version are ignored.

Safe: one transaction (all or nothing); running it again makes the guild's rows for the
file's players equal to the file again (XP is set, not added; no duplicates); players and
characters in the database but not in the file are left alone; other guilds are never
touched. A malformed file changes nothing. After writing, the database is read back and
its totals are checked against the file.

Exit codes: 0 success, 1 bad file or failed check, 2 usage or configuration, 3 database.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import itertools
import json
import math
import operator
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator

import asyncpg
import orjson

import rules
from database import EXPORT_CHUNK, Database, is_unavailable

OLD_DEFAULTS = {"char_per_rp": 240, "daily_rp_cap": 5, "hf_attempt_xp": 1, "hf_success_xp": 5,
                "daily_hf_cap": 5}
OLDER_KEYS = {"rp_channels": "xp_channels", "char_per_rp": "char_per_xp", "daily_rp_cap": "daily_xp_cap"}
# Keys the old bot never had (it ignores them): written by --export and /xp_export, read back here.
EXTRA_KEYS = ("levelup_mode", "levelup_channel", "staff_roles", "log_channel", "level_role_mode", "level_roles")
SETTING_KEYS = ("rp_channels", "hf_channels", *OLD_DEFAULTS)
KNOWN_TOP = set(SETTING_KEYS) | set(OLDER_KEYS.values()) | set(EXTRA_KEYS)
# Inside a player and a character, the extra keys (which the old bot ignores) are
# "retired_characters" (a list: names of retired characters may repeat) and "sheet_url".
PLAYER_KEYS = {"active", "characters", "char_buffer", "daily_xp", "daily_hf", "last_xp_reset", "timezone",
               "retired_characters"}
CHARACTER_KEYS = {"xp", "image_url", "daily_xp", "char_buffer", "daily_hf", "sheet_url"}
COUNTER_MAX = 2_000_000_000
PER_PLAYER_LINES = 100  # above this many players, a progress bar instead of lines


class BadFile(Exception):
    """The file can't be migrated as it is; the message names where and why."""


@dataclass
class CharacterRow:
    name: str
    xp: int
    daily_xp: int = 0
    daily_hf: int = 0
    char_buffer: int = 0
    image_url: str | None = None
    sheet_url: str | None = None
    retired: bool = False


@dataclass
class PlayerRow:
    user_id: int
    timezone: str = "UTC"
    last_xp_reset: dt.date | None = None
    active: str | None = None
    characters: list[CharacterRow] = field(default_factory=list)


@dataclass
class Plan:
    settings: dict[str, Any]
    players: list[PlayerRow]
    notes: list[str]

    @property
    def character_count(self) -> int:
        return sum(len(p.characters) for p in self.players)

    @property
    def xp_total(self) -> int:
        return sum(c.xp for p in self.players for c in p.characters)


# -- reading the file -------------------------------------------------------------------------

def whole_number(value: Any, where: str, notes: list[str], *, low: int = 0, high: int,
                 default: int = 0, missing_ok: bool = True) -> int:
    """An int within [low, high]; anything else is converted or replaced, and reported."""
    if value is None:
        if not missing_ok:
            notes.append(f"{where}: missing, set to {default}")
        return default
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and math.isfinite(value):
        number = round(value)
        if number != value:
            notes.append(f"{where}: {value!r} is not a whole number, rounded to {number}")
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        number = int(value.strip())
        notes.append(f"{where}: text {value!r} read as the number {number}")
    if number is None:
        notes.append(f"{where}: {json.dumps(value)[:40]} is not a number, set to {default}")
        return default
    if not low <= number <= high:
        clamped = min(max(number, low), high)
        notes.append(f"{where}: {number} is out of range, set to {clamped}")
        return clamped
    return number


def unique_name(name: str, taken: set[str]) -> str:
    if name.casefold() not in taken and name.lower() not in taken:
        return name
    n = 2
    while True:
        suffix = f" ({n})"
        candidate = name[:rules.NAME_MAX - len(suffix)].rstrip() + suffix
        if candidate.casefold() not in taken and candidate.lower() not in taken:
            return candidate
        n += 1


def channel_list(value: Any, key: str, notes: list[str]) -> list[int]:
    if value is None:
        return []
    if not isinstance(value, list):
        notes.append(f"{key}: not a list, ignored")
        return []
    out: list[int] = []
    for item in value:
        if isinstance(item, int) and not isinstance(item, bool) and item > 0:
            out.append(item)
        elif isinstance(item, str) and item.strip().isdigit():
            out.append(int(item.strip()))
        else:
            notes.append(f"{key}: {json.dumps(item)[:40]} is not a channel id, dropped")
    return list(dict.fromkeys(out))


def plan_migration(document: Any, progress: Any = None) -> Plan:
    """Everything the file says, fitted to the rules; what had to change is in `notes`.
    `progress`, if given, wraps the iteration over the file's entries (a progress bar)."""
    if not isinstance(document, dict):
        raise BadFile(f"the file must hold one JSON object (a guild), not a {type(document).__name__}")
    notes: list[str] = []
    settings: dict[str, Any] = {}
    for key in ("rp_channels", "hf_channels"):
        source = key if key in document else OLDER_KEYS.get(key)
        settings[key] = channel_list(document.get(source) if source else None, source or key, notes)
    for key, default in OLD_DEFAULTS.items():
        source = key if key in document else OLDER_KEYS.get(key, key)
        low, high = rules.SETTINGS[key].low, rules.SETTINGS[key].high
        settings[key] = whole_number(document.get(source), source, notes, low=low, high=high, default=default)
    settings.update(levelup_settings(document, notes))
    settings.update(guild_extras(document, notes))
    for key in OLDER_KEYS.values():
        newer = next(k for k, v in OLDER_KEYS.items() if v == key)
        if key in document and newer in document:
            notes.append(f"{key}: ignored, the newer {newer} is in the file too")

    players: list[PlayerRow] = []
    entries = document.items()
    for key, entry in (progress(entries, total=len(document)) if progress else entries):
        if key in KNOWN_TOP:
            continue
        if not key.isdigit():
            notes.append(f"top-level key {key!r}: neither a setting nor a user id, ignored")
            continue
        players.append(plan_player(int(key), entry, notes))
    players.sort(key=lambda p: p.user_id)
    return Plan(settings, players, notes)


def levelup_settings(document: dict, notes: list[str]) -> dict[str, Any]:
    """Where level-ups are announced, when the file says (an export of ours); else nothing,
    and the guild keeps its setting."""
    if "levelup_mode" not in document:
        return {}
    mode, channel = document.get("levelup_mode"), document.get("levelup_channel")
    if mode not in rules.LEVELUP_MODES:
        notes.append(f"levelup_mode: {json.dumps(mode)[:40]} is not one of {', '.join(rules.LEVELUP_MODES)}, "
                     f"set to {rules.DEFAULT_LEVELUP_MODE}")
        mode = rules.DEFAULT_LEVELUP_MODE
    channels = channel_list([channel], "levelup_channel", notes) if channel is not None else []
    if mode == "channel" and not channels:
        notes.append(f"levelup_mode: \"channel\" without a levelup_channel, set to {rules.DEFAULT_LEVELUP_MODE}")
        mode = rules.DEFAULT_LEVELUP_MODE
    return {"levelup_mode": mode, "levelup_channel": channels[0] if mode == "channel" else None}


def guild_extras(document: dict, notes: list[str]) -> dict[str, Any]:
    """Staff roles, log channel and level roles, when the file says (an export of ours)."""
    out: dict[str, Any] = {}
    if "staff_roles" in document:
        out["staff_roles"] = channel_list(document["staff_roles"], "staff_roles", notes)[:rules.STAFF_ROLES_MAX]
    if "log_channel" in document:
        log_channel = document["log_channel"]
        found = channel_list([log_channel], "log_channel", notes) if log_channel is not None else []
        out["log_channel"] = found[0] if found else None
    if "level_role_mode" in document:
        mode = document["level_role_mode"]
        if mode not in rules.LEVEL_ROLE_MODES:
            notes.append(f"level_role_mode: {json.dumps(mode)[:40]} is not one of "
                         f"{', '.join(rules.LEVEL_ROLE_MODES)}, set to {rules.DEFAULT_LEVEL_ROLE_MODE}")
            mode = rules.DEFAULT_LEVEL_ROLE_MODE
        out["level_role_mode"] = mode
    if "level_roles" in document:
        raw = document["level_roles"] if isinstance(document["level_roles"], dict) else {}
        roles: dict[int, int] = {}
        for level, role in raw.items():
            ids = channel_list([role], f"level_roles {level}", notes)
            if str(level).isdigit() and 1 <= int(level) <= rules.MAX_LEVEL and ids and ids[0] not in roles.values():
                roles[int(level)] = ids[0]
            else:
                notes.append(f"level_roles: level {str(level)[:10]!r} → {json.dumps(role)[:30]} is not valid, dropped")
        out["level_roles"] = roles
    return out


def plan_character(name: str, data: Any, where: str, notes: list[str]) -> CharacterRow:
    if not isinstance(data, dict):
        raise BadFile(f"{where}: expected an object like {{\"xp\": 10}}, found {type(data).__name__}")
    for extra in sorted(set(data) - CHARACTER_KEYS):
        notes.append(f"{where}: unknown key {extra!r} ignored")
    links = {}
    for key, clean in (("image_url", rules.clean_image_url), ("sheet_url", rules.clean_sheet_url)):
        try:
            links[key] = clean(data.get(key))
        except rules.UserError:
            notes.append(f"{where}: {key} {json.dumps(data.get(key))[:60]} is not an http(s) link, dropped")
            links[key] = None
    return CharacterRow(
        name=name,
        xp=whole_number(data.get("xp"), f"{where} xp", notes, high=rules.XP_MAX, missing_ok=False),
        daily_xp=whole_number(data.get("daily_xp"), f"{where} daily_xp", notes, high=COUNTER_MAX),
        daily_hf=whole_number(data.get("daily_hf"), f"{where} daily_hf", notes, high=COUNTER_MAX),
        char_buffer=whole_number(data.get("char_buffer"), f"{where} char_buffer", notes, high=COUNTER_MAX),
        **links)


def plan_player(user_id: int, entry: Any, notes: list[str]) -> PlayerRow:
    where = f"user {user_id}"
    if not isinstance(entry, dict):
        raise BadFile(f"{where}: expected an object with \"characters\", found {type(entry).__name__}")
    characters = entry.get("characters", {})
    if characters is None:
        characters = {}
    if not isinstance(characters, dict):
        raise BadFile(f"{where}.characters: expected an object of name → character, "
                      f"found {type(characters).__name__}")
    for extra in sorted(set(entry) - PLAYER_KEYS):
        notes.append(f"{where}: unknown key {extra!r} ignored")
    for leftover in ("char_buffer", "daily_xp", "daily_hf"):
        if entry.get(leftover):
            notes.append(f"{where}: per-player {leftover} {json.dumps(entry[leftover])[:20]} is a "
                         "leftover of an older version, ignored")
    player = PlayerRow(user_id)
    zone = entry.get("timezone")
    if zone not in (None, ""):
        try:
            player.timezone = rules.clean_timezone(zone)
        except rules.UserError:
            notes.append(f"{where}: time zone {json.dumps(zone)[:40]} is not valid, set to UTC")
    reset = entry.get("last_xp_reset")
    if reset not in (None, ""):
        try:
            player.last_xp_reset = dt.date.fromisoformat(str(reset))
        except ValueError:
            notes.append(f"{where}: last_xp_reset {json.dumps(reset)[:30]} is not a date, cleared")

    renamed: dict[str, str] = {}
    taken: set[str] = set()
    for raw_name, data in characters.items():
        name = unique_name(rules.fit_name(raw_name), taken)
        if name != raw_name:
            notes.append(f"{where}: character {raw_name!r} renamed to {name!r}")
        taken.add(name.casefold())
        taken.add(name.lower())
        renamed[raw_name] = name
        player.characters.append(plan_character(name, data, f"{where} character {raw_name!r}", notes))
    retired = entry.get("retired_characters") or []
    if not isinstance(retired, list):
        raise BadFile(f"{where}.retired_characters: expected a list of characters, found {type(retired).__name__}")
    for i, data in enumerate(retired):
        cwhere = f"{where} retired character {i + 1}"
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise BadFile(f"{cwhere}: expected an object with a \"name\", like {{\"name\": \"Luna\", \"xp\": 10}}")
        fields = {k: v for k, v in data.items() if k != "name"}
        player.characters.append(replace(plan_character(rules.fit_name(data["name"]), fields, cwhere, notes),
                                         retired=True))

    active = entry.get("active")
    if active is not None:
        target = renamed.get(active) if isinstance(active, str) else None
        if target is None and isinstance(active, str):
            target = next((new for old, new in renamed.items() if old.casefold() == active.casefold()), None)
        if target is None:
            notes.append(f"{where}: active {json.dumps(active)[:40]} names no character; no active character")
        player.active = target
    return player


# -- the command line ----------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="migrate_to_postgres.py", description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", nargs="?", default="xp.json", help="the old bot's file (default: xp.json)")
    parser.add_argument("--guild-id", type=int, default=None,
                        help="the Discord server the file belongs to (default: $GUILD_ID)")
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL (default: $DATABASE_URL)")
    parser.add_argument("--dry-run", action="store_true",
                        help="read and check the file, report what would be written, write nothing")
    parser.add_argument("--export", metavar="FILE",
                        help="write the guild's data from the database to FILE as xp.json, and stop")
    return parser.parse_args(argv)


def progress_bar(items: Any, total: int) -> Any:
    from tqdm import tqdm
    return tqdm(items, total=total, desc="Reading players", unit=" entries", file=sys.stdout,
                mininterval=0.5)


def say(text: str = "") -> None:
    print(text, flush=True)


def show_plan(plan: Plan, dry_run: bool) -> None:
    if len(plan.players) <= PER_PLAYER_LINES:
        for player in plan.players:
            say(f"👤 Migrating user {player.user_id}...")
            for character in player.characters:
                say(f"  📦 Creating character: {character.name}")
            done = "would be migrated" if dry_run else "migrated"
            say(f"✅ User {player.user_id} {done} with {len(player.characters)} characters")
    else:  # the progress bar ran while the file was read
        say(f"✅ {len(plan.players):,} users {'would be ' if dry_run else ''}migrated with "
            f"{plan.character_count:,} characters")


def show_summary(plan: Plan, guild_id: int) -> None:
    s = plan.settings
    say("")
    say(f"Summary for guild {guild_id}:")
    say(f"  players:    {len(plan.players):,}")
    say(f"  characters: {plan.character_count:,}")
    say(f"  XP total:   {plan.xp_total:,}")
    say(f"  active:     {sum(p.active is not None for p in plan.players):,} players have an active character")
    say(f"  settings:   char_per_rp={s['char_per_rp']} daily_rp_cap={s['daily_rp_cap']} "
        f"hf_attempt_xp={s['hf_attempt_xp']} hf_success_xp={s['hf_success_xp']} "
        f"daily_hf_cap={s['daily_hf_cap']}")
    say(f"  channels:   rp={s['rp_channels']} hf={s['hf_channels']}")
    if "levelup_mode" in s:
        say(f"  level-ups:  {s['levelup_mode']}" + (f" in {s['levelup_channel']}" if s["levelup_channel"] else ""))
    if plan.notes:
        say(f"\n⚠️  {len(plan.notes)} change(s) to fit the rules:")
        for note in plan.notes:
            say(f"  - {note}")
    else:
        say("\nNothing had to change to fit the rules.")


async def run(args: argparse.Namespace) -> int:
    guild_id = args.guild_id
    if guild_id is None and os.environ.get("GUILD_ID", "").strip().isdigit():
        guild_id = int(os.environ["GUILD_ID"])
    if guild_id is None:
        say("❌ Which server is this file for? Give --guild-id 123456789012345678 (or set GUILD_ID).")
        return 2

    if args.export:
        return await export(args, guild_id)

    path = Path(args.file)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        large = isinstance(document, dict) and len(document) > PER_PLAYER_LINES
        plan = plan_migration(document, progress_bar if large else None)
    except FileNotFoundError:
        say(f"❌ {path} does not exist. Give the path of the old bot's xp.json.")
        return 1
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        say(f"❌ {path} is not valid JSON ({e}). Nothing was written. Check it with: python -m json.tool {path}")
        return 1
    except BadFile as e:
        say(f"❌ {path} can't be migrated: {e}. Nothing was written.")
        return 1

    show_plan(plan, args.dry_run)
    show_summary(plan, guild_id)
    if args.dry_run:
        say(f"\nDry run: nothing was written. Without --dry-run, guild {guild_id} would get 1 settings row, "
            f"{len(plan.players):,} players and {plan.character_count:,} characters.")
        return 0

    database = connect_to(args)
    if database is None:
        return 2
    try:
        async with database:
            say("\n💾 Writing in one transaction...")
            await write_plan(database, guild_id, plan)
            problems = await verify(database, guild_id, plan)
    except Exception as e:  # the transaction rolled back: nothing was written
        if is_unavailable(e) or isinstance(e, asyncpg.PostgresError):
            say(f"❌ Database error, nothing was written: {type(e).__name__}: {e}")
            return 3
        raise
    if problems:
        say("❌ Check against the file FAILED:")
        for problem in problems:
            say(f"  - {problem}")
        return 1
    say("✅ Migration complete; the database was read back and matches the file's totals.")
    return 0


async def write_plan(database: Database, guild_id: int, plan: Plan) -> None:
    """The plan into the database, in one transaction."""
    users = [(p.user_id, p.timezone, p.last_xp_reset, p.active) for p in plan.players]
    characters = [(p.user_id, i, c.name, c.xp, c.daily_xp, c.daily_hf, c.char_buffer, c.image_url, c.sheet_url,
                   c.retired) for p in plan.players for i, c in enumerate(p.characters)]
    await database.import_guild(guild_id, plan.settings, users, characters)


# -- writing the file (--export and /xp_export) -------------------------------------------------
# One definition of the format: export_settings and export_player. export_document builds the
# whole document as a dict; write_export streams the same document, byte for byte what
# json.dumps(document, indent=2, ensure_ascii=False) + "\n" gives, reading players in chunks.

async def export_settings(database: Database, guild_id: int) -> dict[str, Any]:
    """The document's settings keys: the old bot's newest format, in a stable order, plus
    EXTRA_KEYS (which the old bot ignores) so an import restores everything."""
    cfg = await database.get_config(guild_id)
    document: dict[str, Any] = {"rp_channels": list(cfg.rp_channels), "hf_channels": list(cfg.hf_channels)}
    document.update({key: getattr(cfg, key) for key in OLD_DEFAULTS})
    document.update({key: getattr(cfg, key) for key in EXTRA_KEYS if key != "level_roles"})
    document["staff_roles"] = list(cfg.staff_roles)
    document["level_roles"] = {str(level): role for level, role in (await database.level_roles(guild_id)).items()}
    return document


def export_player(rows: Iterable[asyncpg.Record]) -> tuple[str, dict[str, Any]]:
    """One player's key and entry, from their rows of Database.export_players (in order)."""
    player: dict[str, Any] = {}
    for r in rows:
        if not player:
            key = str(r["user_id"])
            player = {"active": None, "characters": {},
                      "last_xp_reset": r["last_xp_reset"].isoformat() if r["last_xp_reset"] else "",
                      "timezone": r["timezone"]}
        if r["id"] is None:
            continue
        character = {"xp": r["xp"], "image_url": r["image_url"], "daily_xp": r["daily_xp"],
                     "char_buffer": r["char_buffer"], "daily_hf": r["daily_hf"]}
        if r["sheet_url"]:
            character["sheet_url"] = r["sheet_url"]
        if r["retired_at"] is not None:
            player.setdefault("retired_characters", []).append({"name": r["name"], **character})
            continue
        player["characters"][r["name"]] = character
        if r["id"] == r["active_character_id"]:
            player["active"] = r["name"]
    return key, player


def by_player(rows: list[asyncpg.Record]) -> Iterator[tuple[str, dict[str, Any]]]:
    return (export_player(group) for _, group in itertools.groupby(rows, key=operator.itemgetter("user_id")))


async def export_document(database: Database, guild_id: int) -> dict[str, Any]:
    """The guild as an xp.json document, whole, in memory (write_export streams it)."""
    document = await export_settings(database, guild_id)
    document.update(by_player(await database.export_players(guild_id)))
    return document


def encode_players(rows: list[asyncpg.Record]) -> tuple[bytes, int]:
    """Whole players' rows as the document's entries (each led by ","), and how many players."""
    parts = [orjson.dumps(dict([entry]), option=orjson.OPT_INDENT_2)[1:-2] for entry in by_player(rows)]
    return b"".join(b"," + part for part in parts), len(parts)


async def write_export(database: Database, guild_id: int, out: BinaryIO, chunk: int = EXPORT_CHUNK) -> int:
    """Write the guild's xp.json document to `out`, reading `chunk` rows at a time; memory
    stays bounded by the chunk (and the largest player). Each chunk is encoded on the event
    loop (orjson: ~2 ms for 1,000 rows; a thread measured no shorter a block, and slower
    overall), which is let go between chunks. Returns the number of players."""
    head = orjson.dumps(await export_settings(database, guild_id), option=orjson.OPT_INDENT_2)
    out.write(head[:-2])  # the entries go before its closing "\n}"
    players, held = 0, []
    async with contextlib.aclosing(database.export_player_rows(guild_id, chunk=chunk)) as chunks:
        async for rows in chunks:
            rows = held + rows
            cut = len(rows)  # the last player may go on in the next chunk: held back until then
            while cut and rows[cut - 1]["user_id"] == rows[-1]["user_id"]:
                cut -= 1
            held = rows[cut:]
            if cut:
                data, count = encode_players(rows[:cut])
                out.write(data)
                players += count
            await asyncio.sleep(0)
    data, count = encode_players(held)
    out.write(data + b"\n}\n")
    return players + count


def connect_to(args: argparse.Namespace) -> Database | None:
    url = args.database_url or os.environ.get("DATABASE_URL")
    if not url:
        say("❌ DATABASE_URL environment variable not set (or give --database-url).")
        return None
    return Database(url, max_size=2)


async def verify(database: Database, guild_id: int, plan: Plan) -> list[str]:
    got = await database.migration_totals(guild_id, [p.user_id for p in plan.players])
    want = {"players": len(plan.players), "characters": plan.character_count, "xp": plan.xp_total,
            "active": sum(p.active is not None for p in plan.players)}
    problems = [f"{k}: file {want[k]:,}, database {got[k]:,}" for k in want if got[k] != want[k]]
    cfg = await database.get_config(guild_id)
    for key, value in plan.settings.items():
        if key == "level_roles":
            have = await database.level_roles(guild_id)
        else:
            have = list(getattr(cfg, key)) if isinstance(getattr(cfg, key), tuple) else getattr(cfg, key)
        if have != value:
            problems.append(f"setting {key}: file {value}, database {have}")
    return problems


async def export(args: argparse.Namespace, guild_id: int) -> int:
    database = connect_to(args)
    if database is None:
        return 2
    target = Path(args.export)
    partial = target.with_name(target.name + ".partial")  # the file appears whole or not at all
    try:
        async with database:
            with partial.open("wb") as out:
                players = await write_export(database, guild_id, out)
        partial.replace(target)
    except Exception as e:
        partial.unlink(missing_ok=True)
        if is_unavailable(e) or isinstance(e, asyncpg.PostgresError):
            say(f"❌ Database error: {type(e).__name__}: {e}")
            return 3
        raise
    say(f"✅ Exported guild {guild_id}: {players:,} players to {args.export}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        from dotenv import load_dotenv
        load_dotenv()
    except ImportError:
        pass
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
