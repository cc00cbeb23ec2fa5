"""The data layer: one asyncpg pool, `schema.sql` at start-up, one method per query.

Every XP change is one round trip: a single statement, or one of the PL/pgSQL
functions in schema.sql that locks the player's row. Python never reads a value,
changes it and writes it back. Errors raised here are plain words (no Discord
formatting): the bot decides how to show them.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import random
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Sequence, TypeVar

import asyncpg

from name_index import GuildNames, signature_bits
from rules import (AUTOCOMPLETE_LIMIT, CHANNEL_KINDS, CHANNELS_MAX, DEFAULT_LEVEL_ROLE_MODE, DEFAULT_LEVELUP_MODE,
                   DEFAULTS, GRANT_MAX, HISTORY_SOURCES, LEVEL_ROLE_MODES, LEVELUP_MODES, MAX_LEVEL, NAME_MAX,
                   REQUEST_AMOUNT_MAX, REQUEST_REASON_MAX, REQUESTS_PENDING_MAX, STAFF_ROLES_MAX, STARTING_XP_MAX,
                   UserError, clean_image_url, clean_int, clean_name, clean_reason, clean_setting, clean_sheet_url,
                   clean_timezone, close_match_filter, close_matches, letter_signature, level_for,
                   searchable)
from rules import (CR_XP, MONSTER_COUNT_MAX, QUEST_DMS_MAX, QUEST_MONSTERS_MAX, QUEST_PCS_MAX, QUEST_XP_MAX,
                   clean_bracket, clean_cr, parse_date, quest_share)

log = logging.getLogger("xpbot.database")
T = TypeVar("T")

DEFAULT_POOL_SIZE = 10

SCHEMA_PATH = Path(__file__).with_name("schema.sql")
SCHEMA_LOCK = 0x5850_424F_54  # "XPBOT": serialises schema application across processes


class DatabaseUnavailable(UserError):
    def __init__(self, message: str = "The database is unavailable right now; try again in a "
                                      "few seconds. No XP is lost meanwhile."):
        super().__init__(message)


# What a lost or refused connection looks like: worth retrying, not a bug.
# (InternalClientError: asyncpg's protocol state after the server dropped the connection.)
UNAVAILABLE_ERRORS = (OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError,
                      asyncpg.InterfaceError, asyncpg.exceptions.OperatorInterventionError,
                      asyncpg.InternalClientError)


def is_unavailable(exc: BaseException) -> bool:
    return isinstance(exc, UNAVAILABLE_ERRORS) and not isinstance(exc, UserError)


# PostgreSQL rolled the whole transaction back (a deadlock victim, a serialization failure):
# nothing of it was applied, so it may simply run again. Every process applies the schema at
# start-up, locking tables in the file's order: beside XP being written, one of the two can be
# chosen as a deadlock victim.
ROLLED_BACK = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)


async def again_if_rolled_back(call: Callable[[], Awaitable[T]], what: str, attempts: int = 8) -> T:
    """`await call()`, up to `attempts` times while PostgreSQL rolls it back (ROLLED_BACK),
    waiting a little longer (and a random part of it) each time: ~2.5 s in all at most."""
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except ROLLED_BACK as e:
            if attempt == attempts:
                raise
            log.info("%s rolled back (%s); running it again", what, type(e).__name__)
            await asyncio.sleep(0.01 * 2 ** (attempt - 1) * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")


class CharacterNotFound(UserError):
    """No character answers to `query` (None: the one asked for by id) among the owner's
    characters (`own`) or the guild's."""

    def __init__(self, query: str | None = None, *, own: bool = True):
        self.query, self.own = query, own
        whose = "your characters" if own else "this server's characters"
        super().__init__(f'No character called "{query}" among {whose}.' if query is not None
                         else f"That character is not among {whose} (it may have been deleted).")


class DuplicateName(UserError):
    def __init__(self, name: str):
        self.name = name
        super().__init__(f'You already have a character called "{name}" (names ignore letter case). '
                         "Pick another name.")


class RestoreClash(UserError):
    """Restoring would give the player two characters in play with one name."""

    def __init__(self, name: str):
        self.name = name
        super().__init__(f'You already have a character called "{name}" in play. Rename or retire that '
                         "one first, then restore this one.")


class CharacterRetired(UserError):
    def __init__(self, name: str):
        self.name = name
        super().__init__(f'"{name}" is retired: restore it first to change its XP.')


class AmbiguousName(UserError):
    def __init__(self, query: str, candidates: list["Character"]):
        self.query, self.candidates = query, candidates
        super().__init__(f'"{query}" could mean any of {len(candidates)} characters. Pick one from the list.')


@dataclass(frozen=True, slots=True)
class GuildConfig:
    guild_id: int
    rp_channels: tuple[int, ...] = ()
    hf_channels: tuple[int, ...] = ()
    char_per_rp: int = DEFAULTS["char_per_rp"]
    daily_rp_cap: int = DEFAULTS["daily_rp_cap"]
    hf_attempt_xp: int = DEFAULTS["hf_attempt_xp"]
    hf_success_xp: int = DEFAULTS["hf_success_xp"]
    daily_hf_cap: int = DEFAULTS["daily_hf_cap"]
    levelup_mode: str = DEFAULT_LEVELUP_MODE
    levelup_channel: int | None = None
    staff_roles: tuple[int, ...] = ()
    log_channel: int | None = None
    log_failure: str | None = None  # why the last post to the log channel failed
    level_role_mode: str = DEFAULT_LEVEL_ROLE_MODE

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> "GuildConfig":
        return cls(guild_id=row["guild_id"], rp_channels=tuple(row["rp_channels"]),
                   hf_channels=tuple(row["hf_channels"]), levelup_mode=row["levelup_mode"],
                   levelup_channel=row["levelup_channel"], staff_roles=tuple(row["staff_roles"]),
                   log_channel=row["log_channel"], log_failure=row["log_failure"],
                   level_role_mode=row["level_role_mode"],
                   **{k: row[k] for k in DEFAULTS})


@dataclass(frozen=True, slots=True)
class Character:
    id: int
    guild_id: int
    user_id: int
    name: str
    xp: int
    daily_xp: int
    daily_hf: int
    char_buffer: int
    image_url: str | None
    active: bool = False
    sheet_url: str | None = None
    retired_at: dt.datetime | None = None

    @property
    def level(self) -> int:
        return level_for(self.xp)

    @property
    def retired(self) -> bool:
        return self.retired_at is not None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> "Character":
        return cls(**{k: row[k] for k in cls.__slots__ if k in row.keys()})


@dataclass(frozen=True, slots=True)
class RPMessage:
    """One message to award RP XP for (see award_rp_many)."""
    guild_id: int
    channel_id: int
    parent_id: int | None
    user_id: int
    length: int
    message_id: int | None = None


@dataclass(frozen=True, slots=True)
class HFResult:
    """One hunting/foraging result to award HF XP for (see award_hf)."""
    guild_id: int
    channel_ids: tuple[int, ...]  # the channel and, in a thread, its parent
    name: str                     # the character it names
    mentions: tuple[int, ...]     # users it mentions: they pick among same-named characters
    success: bool
    message_id: int | None = None


@dataclass(frozen=True, slots=True)
class Award:
    """What one XP change did. `status` is `awarded` or why nothing was awarded."""
    status: str
    character_id: int | None = None
    name: str | None = None
    user_id: int | None = None
    gained: int = 0
    xp_before: int | None = None
    xp_after: int | None = None

    @property
    def level_before(self) -> int | None:
        return None if self.xp_before is None else level_for(self.xp_before)

    @property
    def level_after(self) -> int | None:
        return None if self.xp_after is None else level_for(self.xp_after)

    @property
    def leveled_up(self) -> bool:
        return self.status == "awarded" and self.level_after > self.level_before


_CHARACTER_COLUMNS = ("c.id, c.guild_id, c.user_id, c.name, c.xp, c.daily_xp, c.daily_hf, "
                      "c.char_buffer, c.image_url, c.sheet_url, c.retired_at, "
                      "(c.id IS NOT DISTINCT FROM u.active_character_id) AS active")
_CHARACTER_FROM = "characters c JOIN users u USING (guild_id, user_id)"
# $n: True, only retired characters; False, only those in play; NULL, both.
_RETIRED_FILTER = "(${0}::boolean IS NULL OR (c.retired_at IS NOT NULL) = ${0})"
SIGN_CHUNK = 2000  # names signed per round trip (sign_names)
# Guilds with at least NAME_INDEX_MIN characters in play keep their names' signatures in memory for
# misspelt-name lookups (name_index.py), NAME_INDEX_MAX names at most over all guilds (the
# least recently used go first); smaller guilds are asked again after NAME_INDEX_RECHECK s.
NAME_INDEX_MIN, NAME_INDEX_MAX, NAME_INDEX_RECHECK = 2_000, 500_000, 600  # 500,000 names: ~75 MiB
NAME_INDEX_CHUNK = 100  # names read and indexed per step: the event loop runs in between
CONTAINS_SCAN_MAX = 2_000  # autocomplete reads a guild's names for "contains" below this many
EXPORT_CHUNK = 1000  # export rows (one per character) read per round trip
KEEP: Any = object()  # edit_character: leave this value as it is
# The ids of the names a misspelling could be of ($1 guild, $2 owner or NULL, $3 retired
# filter): those of a length from $4 to $5 whose letter signature shares enough bits with $6
# ($7: how many, by length), then every unsigned one (rules.close_match_filter, sign_names).
_CLOSE_CANDIDATES = f"""
    SELECT c.id FROM characters c
     WHERE c.guild_id = $1 AND ($2::bigint IS NULL OR c.user_id = $2) AND {_RETIRED_FILTER.format(3)}
       AND c.name_length BETWEEN $4 AND $5
       AND bit_count(c.name_letters & $6) >= ($7::int[])[c.name_length - $4 + 1]
    UNION ALL
    SELECT c.id FROM characters c
     WHERE c.guild_id = $1 AND ($2::bigint IS NULL OR c.user_id = $2) AND {_RETIRED_FILTER.format(3)}
       AND c.name_length IS NULL AND char_length(c.name) BETWEEN $4 / 3 AND $5"""


# A guild's names written by a transaction from $2 on, each row with the oldest transaction
# still running when they were read (Database._read_names).
_NAMES_SINCE = """
    WITH horizon AS MATERIALIZED (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin)
    SELECT h.xmin, c.id, c.name, c.name_length, c.name_letters
      FROM horizon h LEFT JOIN characters c ON c.guild_id = $1 AND c.name_xid >= $2::text::xid8"""


async def _init_connection(con: asyncpg.Connection) -> None:
    await con.set_type_codec("jsonb", schema="pg_catalog", encoder=json.dumps, decoder=json.loads)


def _trigram_keys(guild_id: int, lowered: str) -> list[int]:
    """The index keys of a lower-cased name's (or typed text's) three-letter runs in this guild:
    a name containing the text has every one of the text's keys (different runs may share a
    key: that costs a candidate, never a match)."""
    runs = {lowered[i:i + 3] for i in range(len(lowered) - 2)}
    return sorted({zlib.crc32(f"{guild_id}:{run}".encode()) - 2 ** 31 for run in runs})


def _signatures(names: list[tuple[int, str]]) -> list[tuple[str, int, list[int]]]:
    """For each (guild id, name): its letter signature, casefolded length and trigram keys."""
    return [(*letter_signature(name), _trigram_keys(guild_id, name.lower())) for guild_id, name in names]


async def _matched(text: str, rows: list) -> list[int]:
    """_close_ids, in a thread when there are enough names to hold the event loop."""
    return await asyncio.to_thread(_close_ids, text, rows) if len(rows) > 100 else _close_ids(text, rows)


async def _iterate(rows: list) -> Any:
    for row in rows:
        yield row


def _close_ids(text: str, rows: list) -> list[int]:
    """The ids of the rows (id, name) whose name `text` is a close misspelling of."""
    by_key: dict[str, list[int]] = {}
    for r in rows:
        by_key.setdefault(r["name"].casefold(), []).append(r["id"])
    return [i for key in close_matches(text, list(by_key)) for i in by_key[key]]


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class Database:
    """The pool and every query. `Database()` reads DATABASE_URL."""

    def __init__(self, dsn: str | None = None, *, min_size: int | None = None,
                 max_size: int | None = None, **pool_options: Any):
        dsn = dsn or os.environ.get("DATABASE_URL")
        if not dsn:
            raise RuntimeError("DATABASE_URL environment variable not set")
        self.dsn = dsn
        max_size = max_size or DEFAULT_POOL_SIZE
        self.pool_options = {"min_size": min(min_size or 1, max_size), "max_size": max_size,
                             "timeout": 10, "command_timeout": 30, **pool_options}
        self.pool: asyncpg.Pool | None = None
        # Called with the guild id after this process changed that guild's config.
        self.config_changed: list[Callable[[int], None]] = []
        self._name_indexes: OrderedDict[int, GuildNames] = OrderedDict()  # most recently used last
        self._name_index_small: dict[int, float] = {}  # guild -> when to count its characters again
        self._name_index_loads: dict[int, asyncio.Task] = {}
        self._name_index_locks: dict[int, asyncio.Lock] = {}

    # -- lifecycle -------------------------------------------------------

    async def connect(self) -> "Database":
        """Open the pool and apply schema.sql (a connection check as well)."""
        if self.pool is None:
            self.pool = await asyncpg.create_pool(self.dsn, init=_init_connection, **self.pool_options)
            log.info("✅ Database connected")
            await self.apply_schema()
            log.info("✅ Database schema initialized")
        return self

    async def apply_schema(self) -> None:
        sql = SCHEMA_PATH.read_text(encoding="utf-8")

        async def apply() -> None:
            async with self.pool.acquire() as con, con.transaction():
                await con.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
                await con.execute(sql)
        await again_if_rolled_back(apply, "Applying the schema")

    async def close(self) -> None:
        for task in list(self._name_index_loads.values()):  # name indexes being built: not needed now
            task.cancel()
        await asyncio.gather(*self._name_index_loads.values(), return_exceptions=True)
        if self.pool is not None:
            pool, self.pool = self.pool, None
            await pool.close()

    async def __aenter__(self) -> "Database":
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- guild configuration ---------------------------------------------

    async def get_config(self, guild_id: int) -> GuildConfig:
        """The guild's settings; the defaults when it has never changed any."""
        row = await self.pool.fetchrow("SELECT * FROM config WHERE guild_id = $1", guild_id)
        return GuildConfig.from_row(row) if row else GuildConfig(guild_id)

    async def tracked_channels(self, guild_ids: Sequence[int]) -> dict[int, tuple[frozenset[int], frozenset[int]]]:
        """(RP channel ids, HF channel ids) of each of these guilds that has settings, in one
        query (a guild without settings tracks nothing)."""
        rows = await self.pool.fetch("SELECT guild_id, rp_channels, hf_channels FROM config "
                                     "WHERE guild_id = ANY($1::bigint[])", list(guild_ids))
        return {r["guild_id"]: (frozenset(r["rp_channels"]), frozenset(r["hf_channels"])) for r in rows}

    async def _change_config(self, guild_id: int, changed_by: int | None, columns: list[str],
                             upsert: str, *args: Any) -> tuple[GuildConfig, dict]:
        """Run one config upsert (`upsert` uses $1 = guild and $4.. = args) and, when
        `changed_by` is given, log each changed column in the same statement.
        Returns the new config and the row as it was before (empty when there was none)."""
        row = await self.pool.fetchrow(
            f"""WITH before AS (SELECT to_jsonb(c) AS j FROM config c WHERE guild_id = $1),
                     upd AS ({upsert} RETURNING *),
                     logged AS (
                        INSERT INTO settings_log (guild_id, changed_by, setting, old_value, new_value)
                        SELECT $1, $2, k, (SELECT j FROM before) -> k, to_jsonb(upd) -> k
                          FROM upd, unnest($3::text[]) AS k
                         WHERE $2::bigint IS NOT NULL
                           AND (SELECT j FROM before) -> k IS DISTINCT FROM to_jsonb(upd) -> k)
                SELECT upd.*, (SELECT j FROM before) AS before FROM upd""",
            guild_id, changed_by, columns, *args)
        self._config_changed(guild_id)
        return GuildConfig.from_row(row), row["before"] or {}

    def _config_changed(self, guild_id: int) -> None:
        for callback in self.config_changed:
            callback(guild_id)

    async def _set_config(self, guild_id: int, values: dict[str, Any],
                          changed_by: int | None) -> GuildConfig:
        # Column names come from constants only; values are parameters.
        assert values and set(values) <= set(DEFAULTS) | {"levelup_mode", "levelup_channel", "level_role_mode"}
        cols = list(values)
        params = ", ".join(f"${i + 4}" for i in range(len(cols)))
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols)
        cfg, _ = await self._change_config(
            guild_id, changed_by, cols,
            f"INSERT INTO config AS cfg (guild_id, {', '.join(cols)}) VALUES ($1, {params}) "
            f"ON CONFLICT (guild_id) DO UPDATE SET {updates}, updated_at = now()",
            *values.values())
        return cfg

    async def set_rp_rate(self, guild_id: int, characters: int, *,
                          changed_by: int | None = None) -> GuildConfig:
        return await self._set_config(guild_id, {"char_per_rp": clean_setting("char_per_rp", characters)},
                                      changed_by)

    async def set_rp_cap(self, guild_id: int, amount: int, *,
                         changed_by: int | None = None) -> GuildConfig:
        return await self._set_config(guild_id, {"daily_rp_cap": clean_setting("daily_rp_cap", amount)},
                                      changed_by)

    async def set_hf(self, guild_id: int, *, attempt_xp: int | None = None,
                     success_xp: int | None = None, daily_cap: int | None = None,
                     changed_by: int | None = None) -> GuildConfig:
        given = {"hf_attempt_xp": attempt_xp, "hf_success_xp": success_xp, "daily_hf_cap": daily_cap}
        values = {key: clean_setting(key, value) for key, value in given.items() if value is not None}
        if not values:
            raise UserError("Give at least one of attempt_xp, success_xp or daily_cap.")
        return await self._set_config(guild_id, values, changed_by)

    async def set_levelup(self, guild_id: int, mode: str, channel_id: int | None = None, *,
                          changed_by: int | None = None) -> GuildConfig:
        """Where level-ups are announced: 'message' (where it happened), 'channel' (a fixed one) or 'off'."""
        if mode not in LEVELUP_MODES:
            raise UserError(f"Level-up announcements are one of: {', '.join(LEVELUP_MODES)}.")
        if mode == "channel" and channel_id is None:
            raise UserError("Pick the channel level-ups should be announced in.")
        return await self._set_config(guild_id, {"levelup_mode": mode, "levelup_channel":
                                                 channel_id if mode == "channel" else None}, changed_by)

    async def _add_to(self, guild_id: int, column: str, value: int, changed_by: int | None,
                      limit: int) -> tuple[GuildConfig, bool]:
        """Add `value` to the array setting `column` (a constant) unless it is there or full."""
        cfg, before = await self._change_config(
            guild_id, changed_by, [column],
            f"""INSERT INTO config AS cfg (guild_id, {column}) VALUES ($1, ARRAY[$4]::bigint[])
                ON CONFLICT (guild_id) DO UPDATE
                   SET {column} = CASE WHEN $4 = ANY(cfg.{column}) OR cardinality(cfg.{column}) >= $5
                                       THEN cfg.{column} ELSE array_append(cfg.{column}, $4) END,
                       updated_at = now()""", value, limit)
        added = value in getattr(cfg, column) and value not in before.get(column, ())
        if not added and value not in getattr(cfg, column):
            raise UserError(f"There can be at most {limit} of these; remove one first.")
        return cfg, added

    async def _remove_from(self, guild_id: int, column: str, value: int,
                           changed_by: int | None) -> tuple[GuildConfig, bool]:
        cfg, before = await self._change_config(
            guild_id, changed_by, [column],
            f"""INSERT INTO config AS cfg (guild_id) VALUES ($1)
                ON CONFLICT (guild_id) DO UPDATE
                   SET {column} = array_remove(cfg.{column}, $4::bigint), updated_at = now()""", value)
        return cfg, value in before.get(column, ())

    async def add_channel(self, guild_id: int, kind: str, channel_id: int, *,
                          changed_by: int | None = None) -> tuple[GuildConfig, bool]:
        """Track `channel_id` for `kind` ('rp' or 'hf'); returns (config, whether it changed)."""
        return await self._add_to(guild_id, CHANNEL_KINDS[kind], channel_id, changed_by, CHANNELS_MAX)

    async def remove_channel(self, guild_id: int, kind: str, channel_id: int, *,
                             changed_by: int | None = None) -> tuple[GuildConfig, bool]:
        """Stop tracking `channel_id` for `kind`; returns (config, whether it changed)."""
        return await self._remove_from(guild_id, CHANNEL_KINDS[kind], channel_id, changed_by)

    async def add_staff_role(self, guild_id: int, role_id: int, *,
                             changed_by: int | None = None) -> tuple[GuildConfig, bool]:
        return await self._add_to(guild_id, "staff_roles", role_id, changed_by, STAFF_ROLES_MAX)

    async def remove_staff_role(self, guild_id: int, role_id: int, *,
                                changed_by: int | None = None) -> tuple[GuildConfig, bool]:
        return await self._remove_from(guild_id, "staff_roles", role_id, changed_by)

    async def set_log_channel(self, guild_id: int, channel_id: int | None, *,
                              changed_by: int | None = None) -> GuildConfig:
        """Where the bot logs what staff and players do (None: nowhere); clears a past failure."""
        cfg, _ = await self._change_config(
            guild_id, changed_by, ["log_channel"],
            """INSERT INTO config AS cfg (guild_id, log_channel) VALUES ($1, $4)
               ON CONFLICT (guild_id) DO UPDATE SET log_channel = EXCLUDED.log_channel, log_failure = NULL,
                                                    updated_at = now()""", channel_id)
        return cfg

    async def set_log_failure(self, guild_id: int, failure: str | None) -> bool:
        """Record why posting to the log channel failed (None: it works again); True when
        that is news (so it is reported once, not once per post)."""
        status = await self.pool.execute(
            """UPDATE config SET log_failure = $2
               WHERE guild_id = $1 AND log_failure IS DISTINCT FROM $2""", guild_id, failure)
        return status.endswith(" 1")

    async def set_channels(self, guild_id: int, kind: str, channel_ids: Iterable[int], *,
                           changed_by: int | None = None) -> GuildConfig:
        """Make `channel_ids` exactly the channels tracked for `kind` (the settings panel's select)."""
        col = CHANNEL_KINDS[kind]
        ids = list(dict.fromkeys(int(c) for c in channel_ids))
        if len(ids) > CHANNELS_MAX:
            raise UserError(f"Track at most {CHANNELS_MAX} channels of each kind.")
        cfg, _ = await self._change_config(
            guild_id, changed_by, [col],
            f"""INSERT INTO config AS cfg (guild_id, {col}) VALUES ($1, $4::bigint[])
                ON CONFLICT (guild_id) DO UPDATE SET {col} = EXCLUDED.{col}, updated_at = now()""", ids)
        return cfg

    async def settings_history(self, guild_id: int, limit: int = 20) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            """SELECT changed_by, setting, old_value, new_value, created_at FROM settings_log
               WHERE guild_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2""", guild_id, limit)

    # -- players -----------------------------------------------------------

    async def set_timezone(self, guild_id: int, user_id: int, timezone: str) -> str:
        """Store the player's IANA time zone (validated here and by PostgreSQL)."""
        zone = clean_timezone(timezone)
        try:
            await self.pool.execute(
                """INSERT INTO users (guild_id, user_id, timezone)
                   SELECT $1, $2, $3 WHERE xp_local_date($3, now()) IS NOT NULL
                   ON CONFLICT (guild_id, user_id) DO UPDATE SET timezone = EXCLUDED.timezone""",
                guild_id, user_id, zone)
        except asyncpg.InvalidParameterValueError:
            raise UserError(f'The database doesn\'t know the time zone "{zone}"; pick another '
                            "one from the list (e.g. a nearby city).") from None
        return zone

    async def get_timezone(self, guild_id: int, user_id: int) -> str:
        tz = await self.pool.fetchval(
            "SELECT timezone FROM users WHERE guild_id = $1 AND user_id = $2", guild_id, user_id)
        return tz or "UTC"

    # -- characters --------------------------------------------------------

    async def create_character(self, guild_id: int, user_id: int, name: str, image_url: str | None = None,
                               sheet_url: str | None = None, *, starting_xp: int = 0,
                               created_by: int | None = None) -> Character:
        """Create a character and make it the player's active one. Starting XP (staff) is
        recorded in the character's history as given by `created_by`."""
        name, image_url, sheet_url = clean_name(name), clean_image_url(image_url), clean_sheet_url(sheet_url)
        starting_xp = clean_int(starting_xp, "Starting XP", 0, STARTING_XP_MAX)
        async with self.pool.acquire() as con, con.transaction():
            # Lock the player's row first (same order as the XP functions).
            await con.execute(
                """INSERT INTO users (guild_id, user_id) VALUES ($1, $2)
                   ON CONFLICT (guild_id, user_id) DO UPDATE SET user_id = EXCLUDED.user_id""",
                guild_id, user_id)
            try:
                row = await con.fetchrow(
                    """INSERT INTO characters (guild_id, user_id, name, image_url, sheet_url, xp,
                                               name_letters, name_length, name_trigrams)
                       VALUES ($1, $2, $3, $4, $5, $6, $7::text::bit(128), $8, $9) RETURNING *""",
                    guild_id, user_id, name, image_url, sheet_url, starting_xp, *_signatures([(guild_id, name)])[0])
            except asyncpg.UniqueViolationError:
                raise DuplicateName(name) from None
            await con.execute(
                "UPDATE users SET active_character_id = $3 WHERE guild_id = $1 AND user_id = $2",
                guild_id, user_id, row["id"])
            if starting_xp:
                await con.execute(
                    """INSERT INTO xp_grants (guild_id, character_id, granted_by, amount, xp_before, xp_after,
                                              reason, source)
                       VALUES ($1, $2, $3, $4, 0, $4, 'Starting XP', 'start')""",
                    guild_id, row["id"], created_by if created_by is not None else user_id, starting_xp)
        return replace(Character.from_row(row), active=True)

    async def list_characters(self, guild_id: int, user_id: int, *, retired: bool = False) -> list[Character]:
        """The player's characters in play (or, with `retired`, the retired ones), oldest first."""
        rows = await self.pool.fetch(
            f"SELECT {_CHARACTER_COLUMNS} FROM {_CHARACTER_FROM} "
            "WHERE c.guild_id = $1 AND c.user_id = $2 AND (c.retired_at IS NOT NULL) = $3 ORDER BY c.id",
            guild_id, user_id, retired)
        return [Character.from_row(r) for r in rows]

    async def get_character(self, guild_id: int, character_id: int) -> Character | None:
        row = await self.pool.fetchrow(
            f"SELECT {_CHARACTER_COLUMNS} FROM {_CHARACTER_FROM} "
            "WHERE c.guild_id = $1 AND c.id = $2", guild_id, character_id)
        return Character.from_row(row) if row else None

    async def get_active_character(self, guild_id: int, user_id: int, *,
                                   con: asyncpg.Connection | None = None) -> Character | None:
        row = await (con or self.pool).fetchrow(
            f"SELECT {_CHARACTER_COLUMNS} FROM {_CHARACTER_FROM} "
            "WHERE u.guild_id = $1 AND u.user_id = $2 AND c.id = u.active_character_id",
            guild_id, user_id)
        return Character.from_row(row) if row else None

    async def find_character(self, guild_id: int, query: str, owner_id: int | None = None, *,
                             retired: bool | None = False) -> Character:
        """The character a user meant: exact name (ignoring case), else the one close match.

        With `owner_id` only that player's characters count; without it, the whole guild's.
        `retired`: False, characters in play; True, retired ones; None, both.
        """
        text = searchable(query).strip()
        if not text:
            raise UserError("Give the name of a character (start typing to see the choices).")
        rows = await self.pool.fetch(
            f"""SELECT {_CHARACTER_COLUMNS} FROM {_CHARACTER_FROM}
                WHERE c.guild_id = $1 AND lower(c.name) = lower($2)
                  AND ($3::bigint IS NULL OR c.user_id = $3) AND {_RETIRED_FILTER.format(4)}
                ORDER BY c.id""", guild_id, text, owner_id, retired)
        if not rows and len(text) <= NAME_MAX:
            rows = await self._close_matches(guild_id, text, owner_id, retired)
        if len(rows) == 1:
            return Character.from_row(rows[0])
        if not rows:
            raise CharacterNotFound(text[:NAME_MAX], own=owner_id is not None)
        raise AmbiguousName(text[:NAME_MAX], [Character.from_row(r) for r in rows[:5]])

    async def _close_matches(self, guild_id: int, text: str, owner_id: int | None,
                             retired: bool | None) -> list[asyncpg.Record]:
        """The characters whose name `text` is a close misspelling of (rules.close_matches).
        Only names whose letter signature could be close are compared (rules.close_match_filter):
        a large guild picks them from its in-memory index (name_index.py), any other guild, or
        one whose index is still being built, from the database's signature index."""
        wanted = close_match_filter(text)
        index = await self._name_index(guild_id)
        if index is not None:
            candidates = index.candidates(wanted)
        else:
            low, high = wanted.lengths
            candidates = [r["id"] for r in await self.pool.fetch(
                _CLOSE_CANDIDATES, guild_id, owner_id, retired, low, high,
                asyncpg.BitString(wanted.signature), list(wanted.needs))]
        rows = await self.pool.fetch(  # as they are now: renamed, retired or gone since the index saw them
            f"""SELECT {_CHARACTER_COLUMNS} FROM {_CHARACTER_FROM}
                 WHERE c.guild_id = $1 AND c.id = ANY($2) AND ($3::bigint IS NULL OR c.user_id = $3)
                   AND {_RETIRED_FILTER.format(4)} ORDER BY c.id""",
            guild_id, candidates, owner_id, retired)
        matched = set(await _matched(text, rows))
        return [r for r in rows if r["id"] in matched]

    async def _name_index(self, guild_id: int) -> GuildNames | None:
        """The guild's in-memory name index, brought up to date; None when the guild is small
        or its index is being built (in the background: this lookup doesn't wait)."""
        index = self._name_indexes.get(guild_id)
        if index is None:
            if self._name_index_small.get(guild_id, 0.0) <= time.monotonic() and guild_id not in self._name_index_loads:
                task = asyncio.get_running_loop().create_task(self._build_name_index(guild_id))
                self._name_index_loads[guild_id] = task
                task.add_done_callback(lambda _: self._name_index_loads.pop(guild_id, None))
            return None
        self._name_indexes.move_to_end(guild_id)
        async with self._name_index_locks.setdefault(guild_id, asyncio.Lock()):
            async with self.pool.acquire() as con:
                await self._read_names(con, guild_id, index)
        return index

    async def _build_name_index(self, guild_id: int) -> None:
        try:
            if await self._in_play(guild_id) < NAME_INDEX_MIN:
                self._name_index_small[guild_id] = time.monotonic() + NAME_INDEX_RECHECK
                return
            index = GuildNames()
            async with self.pool.acquire() as con, con.transaction():
                await self._read_names(con, guild_id, index)
            self._name_index_small.pop(guild_id, None)
            self._name_indexes[guild_id] = index
            while sum(map(len, self._name_indexes.values())) > NAME_INDEX_MAX and len(self._name_indexes) > 1:
                self._name_indexes.popitem(last=False)
        except Exception as e:  # lookups go on through the database; the next one tries again
            log.warning("Building the name index of guild %d failed: %s", guild_id, type(e).__name__)

    @staticmethod
    async def _read_names(con: asyncpg.Connection, guild_id: int, index: GuildNames) -> None:
        """Put into `index` every name of the guild written by a transaction from its
        watermark on, and move the watermark to the oldest transaction still running when
        they were read: whatever commits later has an id at least that, so it is read next
        time. Read in chunks through a cursor (in a transaction) when there are many."""
        query = _NAMES_SINCE
        rows = (con.cursor(query, guild_id, str(index.watermark), prefetch=NAME_INDEX_CHUNK)
                if con.is_in_transaction() else _iterate(await con.fetch(query, guild_id, str(index.watermark))))
        batch: list[tuple[int, int, int]] = []
        xmin = index.watermark
        async for r in rows:
            xmin = r["xmin"]
            if r["id"] is None:
                continue
            if r["name_letters"] is None:
                signature, length = letter_signature(r["name"])
                batch.append((r["id"], length, signature_bits(signature)))
            else:
                batch.append((r["id"], r["name_length"], int.from_bytes(r["name_letters"].bytes, "big")))
            if len(batch) >= NAME_INDEX_CHUNK:
                index.put(batch)
                batch = []
                await asyncio.sleep(0)
        index.put(batch)
        index.watermark = xmin

    async def sign_names(self, guild_id: int | None = None) -> int:
        """Give every unsigned name (of the guild, or all guilds) its letter signature and
        trigram keys; a name renamed meanwhile, or whose row another transaction holds (an
        award, another process signing), is left for the next call: this never waits for a
        lock, so it can't deadlock with them. Returns how many names it read."""
        signed, after = 0, (0, 0)
        while rows := await self.pool.fetch(
                """SELECT guild_id, id, name FROM characters
                    WHERE name_letters IS NULL AND ($1::bigint IS NULL OR guild_id = $1) AND (guild_id, id) > ($2, $3)
                    ORDER BY guild_id, id LIMIT $4""", guild_id, *after, SIGN_CHUNK):
            computed = await asyncio.to_thread(_signatures, [(r["guild_id"], r["name"]) for r in rows])  # CPU
            async with self.pool.acquire() as con, con.transaction():
                # Planned for these ids each time: a plan made once for any ids reads the whole table.
                await con.execute("SET LOCAL plan_cache_mode = force_custom_plan")
                await con.execute(
                    """WITH free AS (SELECT id FROM characters WHERE id = ANY($1::bigint[]) ORDER BY id
                                       FOR UPDATE SKIP LOCKED)
                       UPDATE characters c SET name_letters = s.bits::bit(128), name_length = s.length,
                                              name_trigrams = string_to_array(s.grams, ',')::int[]
                         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::smallint[], $5::text[])
                              AS s (id, name, bits, length, grams)
                        WHERE c.id = s.id AND c.name = s.name AND c.id IN (SELECT id FROM free)""",
                    [r["id"] for r in rows], [r["name"] for r in rows], [b for b, _, _ in computed],
                    [n for _, n, _ in computed], [",".join(map(str, g)) for _, _, g in computed])
            signed += len(rows)
            after = (rows[-1]["guild_id"], rows[-1]["id"])
            await asyncio.sleep(0)
        return signed

    async def character_choices(self, guild_id: int, query: str, owner_id: int | None = None, *,
                                retired: bool | None = False, limit: int = AUTOCOMPLETE_LIMIT) -> list[Character]:
        """Autocomplete: names starting with, then containing, what was typed. The names that
        start with it come through the name index. Those containing it are looked for only
        when those don't fill the list: among the player's own characters, or a small guild's,
        by reading them (the first by name); in a large guild, through the index of name
        trigrams (three letters typed or more: with fewer, the names starting with them are
        the choices), the first found."""
        typed = searchable(query).strip().lower()[:NAME_MAX]
        owner = "c.user_id = $4" if owner_id is not None else "$4::bigint IS NULL"
        where = f"c.guild_id = $1 AND {owner} AND {_RETIRED_FILTER.format(5)}"
        rows = await self.pool.fetch(
            f"""SELECT {_CHARACTER_COLUMNS} FROM {_CHARACTER_FROM}
                WHERE {where} AND lower(c.name) LIKE $2 || '%'
                ORDER BY lower(c.name), c.id LIMIT $3""", guild_id, _like_escape(typed), limit, owner_id, retired)
        if len(rows) >= limit or not typed:
            return [Character.from_row(r) for r in rows]
        contains = f"""SELECT {_CHARACTER_COLUMNS} FROM {_CHARACTER_FROM}
                       WHERE {where} AND lower(c.name) LIKE '%' || $2 || '%' AND NOT starts_with(lower(c.name), $6)"""
        arguments = [guild_id, _like_escape(typed), limit - len(rows), owner_id, retired, typed]
        if owner_id is None and await self._in_play(guild_id) >= CONTAINS_SCAN_MAX:
            grams = _trigram_keys(guild_id, typed)
            if not grams:
                return [Character.from_row(r) for r in rows]
            # Any of them will do (a large guild may have thousands): the first found, by name.
            more = await self.pool.fetch(f"{contains} AND (c.name_trigrams @> $7::int[] OR c.name_letters IS NULL) "
                                         "LIMIT $3", *arguments, grams)
            rows += sorted(more, key=lambda r: (r["name"].lower(), r["id"]))
        else:
            rows += await self.pool.fetch(f"{contains} ORDER BY lower(c.name), c.id LIMIT $3", *arguments)
        return [Character.from_row(r) for r in rows]

    async def _in_play(self, guild_id: int) -> int:
        """How many characters the guild has in play (kept by the database)."""
        return await self.pool.fetchval(
            "SELECT COALESCE((SELECT in_play FROM guild_character_counts WHERE guild_id = $1), 0)", guild_id)

    async def set_active(self, guild_id: int, user_id: int, character_id: int) -> Character:
        row = await self.pool.fetchrow(
            """UPDATE users u SET active_character_id = c.id FROM characters c
               WHERE u.guild_id = $1 AND u.user_id = $2 AND c.retired_at IS NULL
                 AND c.id = $3 AND c.guild_id = u.guild_id AND c.user_id = u.user_id
               RETURNING c.*, true AS active""", guild_id, user_id, character_id)
        if row is None:
            raise CharacterNotFound()
        return Character.from_row(row)

    async def edit_character(self, guild_id: int, character_id: int, *, owner_id: int | None,
                             name: str | None = None, image_url: Any = KEEP,
                             sheet_url: Any = KEEP) -> tuple[Character, Character]:
        """Rename a character in play or change its links (None clears one; KEEP leaves it).
        `owner_id`: only that player's character (None: staff, any). Returns (before, after)."""
        changes: dict[str, Any] = {}
        if name is not None:
            changes["name"] = clean_name(name)
        if image_url is not KEEP:
            changes["image_url"] = clean_image_url(image_url)
        if sheet_url is not KEEP:
            changes["sheet_url"] = clean_sheet_url(sheet_url)
        if not changes:
            raise UserError("Give at least one of name, image_url or sheet_url to change.")
        sets = ", ".join(f"{column} = ${i + 4}" for i, column in enumerate(changes))  # columns: constants
        try:
            row = await self.pool.fetchrow(
                f"""WITH old AS (SELECT * FROM characters WHERE guild_id = $1 AND id = $2 AND retired_at IS NULL
                                   AND ($3::bigint IS NULL OR user_id = $3) FOR UPDATE)
                    UPDATE characters c SET {sets} FROM old WHERE c.id = old.id
                    RETURNING c.*, to_jsonb(old) AS before""", guild_id, character_id, owner_id, *changes.values())
        except asyncpg.UniqueViolationError:
            raise DuplicateName(changes["name"]) from None
        if row is None:
            raise CharacterNotFound(own=owner_id is not None)
        if "name" in changes:  # the rename took the old name's signature off: the new one's
            await self.pool.execute(
                """UPDATE characters SET name_letters = $3::text::bit(128), name_length = $4, name_trigrams = $5
                    WHERE id = $1 AND name = $2""", row["id"], row["name"], *_signatures([(guild_id, row["name"])])[0])
        before = dict(row["before"])
        before["retired_at"] = None
        return Character.from_row(before), Character.from_row(row)

    async def _hand_over_active(self, con: asyncpg.Connection, guild_id: int, user_id: int) -> Character | None:
        """Make the player's oldest character in play active (or none); returns it."""
        row = await con.fetchrow(
            f"""WITH next AS (SELECT id FROM characters WHERE guild_id = $1 AND user_id = $2 AND retired_at IS NULL
                              ORDER BY created_at, id LIMIT 1),
                     upd AS (UPDATE users SET active_character_id = (SELECT id FROM next)
                             WHERE guild_id = $1 AND user_id = $2)
                SELECT {_CHARACTER_COLUMNS.replace('(c.id IS NOT DISTINCT FROM u.active_character_id)', 'true')}
                  FROM characters c WHERE c.id = (SELECT id FROM next)""", guild_id, user_id)
        return Character.from_row(row) if row else None

    async def _lock_owner(self, con: asyncpg.Connection, guild_id: int, character_id: int,
                          owner_id: int | None) -> tuple[int, int | None]:
        """Lock the row of the character's player (the XP functions' lock order) and return
        (player, their active character); CharacterNotFound when it isn't theirs or is gone."""
        row = await con.fetchrow(
            """SELECT u.user_id, u.active_character_id FROM users u
                WHERE u.guild_id = $1 AND u.user_id = (SELECT user_id FROM characters WHERE guild_id = $1 AND id = $2)
                  AND ($3::bigint IS NULL OR u.user_id = $3)
                FOR UPDATE""", guild_id, character_id, owner_id)
        if row is None:
            raise CharacterNotFound(own=owner_id is not None)
        return row["user_id"], row["active_character_id"]

    async def delete_character(self, guild_id: int, user_id: int,
                               character_id: int) -> tuple[Character, Character | None]:
        """Delete one of the player's characters. Returns (deleted, active afterwards)."""
        async with self.pool.acquire() as con, con.transaction():
            _, active_id = await self._lock_owner(con, guild_id, character_id, user_id)
            row = await con.fetchrow(
                "DELETE FROM characters WHERE guild_id = $1 AND user_id = $2 AND id = $3 RETURNING *",
                guild_id, user_id, character_id)
            if row is None:
                raise CharacterNotFound()
            active = await self._hand_over_active(con, guild_id, user_id) if active_id == character_id \
                else await self.get_active_character(guild_id, user_id, con=con)
        return replace(Character.from_row(row), active=False), active

    async def retire_character(self, guild_id: int, character_id: int, *,
                               owner_id: int | None) -> tuple[Character, Character | None]:
        """Retire a character in play (`owner_id`: only theirs; None: staff, any). It keeps its
        XP and history. Returns (retired, the player's active character afterwards)."""
        async with self.pool.acquire() as con, con.transaction():
            user_id, active_id = await self._lock_owner(con, guild_id, character_id, owner_id)
            row = await con.fetchrow(
                """UPDATE characters SET retired_at = now()
                   WHERE guild_id = $1 AND id = $2 AND retired_at IS NULL RETURNING *""", guild_id, character_id)
            if row is None:
                raise CharacterNotFound(own=owner_id is not None)
            active = await self._hand_over_active(con, guild_id, user_id) if active_id == character_id \
                else await self.get_active_character(guild_id, user_id, con=con)
        return Character.from_row(row), active

    async def unretire_character(self, guild_id: int, character_id: int, *, owner_id: int | None) -> Character:
        """Bring a retired character back into play (not made active)."""
        async with self.pool.acquire() as con, con.transaction():
            user_id, _ = await self._lock_owner(con, guild_id, character_id, owner_id)
            name, retired = await con.fetchrow(
                "SELECT name, retired_at IS NOT NULL FROM characters WHERE id = $1", character_id)
            if not retired:
                raise CharacterNotFound(own=owner_id is not None)
            try:
                row = await con.fetchrow(
                    """UPDATE characters c SET retired_at = NULL
                       WHERE c.guild_id = $1 AND c.id = $2
                         AND NOT EXISTS (SELECT 1 FROM characters o WHERE o.guild_id = $1 AND o.user_id = $3
                                           AND o.retired_at IS NULL AND lower(o.name) = lower(c.name))
                       RETURNING *""", guild_id, character_id, user_id)
            except asyncpg.UniqueViolationError:  # renamed to that name meanwhile
                raise RestoreClash(name) from None
            if row is None:  # a character in play has its name
                raise RestoreClash(name)
        return Character.from_row(row)

    async def player_summary(self, guild_id: int, user_id: int) -> dict[str, int]:
        """What the player has in this guild: characters (retired too), XP, history entries."""
        row = await self.pool.fetchrow(
            """SELECT count(c.id) AS characters, count(c.retired_at) AS retired,
                      COALESCE(sum(c.xp), 0)::bigint AS xp,
                      (SELECT count(*) FROM xp_grants g JOIN characters gc ON gc.id = g.character_id
                        WHERE gc.guild_id = $1 AND gc.user_id = $2) AS history,
                      (SELECT count(*) FROM xp_requests r
                        WHERE r.guild_id = $1 AND r.user_id = $2 AND r.status = 'pending') AS pending_requests,
                      EXISTS (SELECT 1 FROM users WHERE guild_id = $1 AND user_id = $2) AS known
                 FROM characters c WHERE c.guild_id = $1 AND c.user_id = $2""", guild_id, user_id)
        return dict(row)

    async def purge_player(self, guild_id: int, user_id: int) -> dict[str, int]:
        """Delete everything the player has in this guild, in one transaction; returns what went."""
        async with self.pool.acquire() as con, con.transaction():
            await con.execute("SELECT 1 FROM users WHERE guild_id = $1 AND user_id = $2 FOR UPDATE",
                              guild_id, user_id)
            row = await con.fetchrow(
                """WITH gone_history AS (
                        DELETE FROM xp_grants g USING characters c
                         WHERE g.character_id = c.id AND c.guild_id = $1 AND c.user_id = $2 RETURNING g.id),
                        gone_requests AS (
                        DELETE FROM xp_requests WHERE guild_id = $1 AND user_id = $2 RETURNING id, status),
                        gone_characters AS (
                        DELETE FROM characters WHERE guild_id = $1 AND user_id = $2 RETURNING id, xp),
                        gone_player AS (
                        DELETE FROM users WHERE guild_id = $1 AND user_id = $2 RETURNING user_id)
                   SELECT (SELECT count(*) FROM gone_characters) AS characters,
                          (SELECT COALESCE(sum(xp), 0) FROM gone_characters)::bigint AS xp,
                          (SELECT count(*) FROM gone_history) AS history,
                          (SELECT count(*) FROM gone_requests WHERE status = 'pending') AS pending_requests,
                          (SELECT count(*) FROM gone_player) AS players""", guild_id, user_id)
        if not row["players"]:
            raise UserError("That player has nothing in this server: nothing was purged.")
        return dict(row)

    # -- XP ----------------------------------------------------------------

    async def award_rp(self, guild_id: int, channel_ids: Sequence[int], user_id: int, length: int,
                       *, message_id: int | None = None, now: dt.datetime | None = None) -> Award:
        """RP XP for one message of `length` code points (docs/rules.md, "RP XP"), in one round trip."""
        row = await self.pool.fetchrow(
            "SELECT * FROM xp_award_rp($1, $2, $3, $4, $5, $6)",
            guild_id, list(channel_ids), user_id, length, now, message_id)
        return Award(row["status"], row["character_id"], row["name"], user_id, row["gained"],
                     row["xp_before"], row["xp_after"])

    async def award_rp_many(self, messages: Sequence["RPMessage"], *,
                            now: dt.datetime | Sequence[dt.datetime | None] | None = None) -> list[Award]:
        """award_rp for many messages in one round trip; results in the same order.
        `now`: one time for all, one per message, or None for the database's clock."""
        if not messages:
            return []
        cols = list(zip(*((m.guild_id, m.channel_id, m.parent_id, m.user_id, m.length, m.message_id)
                          for m in messages)))
        times = list(now) if isinstance(now, (list, tuple)) else [now] * len(messages)
        rows = await self.pool.fetch(
            "SELECT * FROM xp_award_rp_many($1, $2, $3, $4, $5, $6, $7)", *map(list, cols), times)
        awards: list[Award | None] = [None] * len(messages)
        for r in rows:
            m = messages[r["ord"] - 1]
            awards[r["ord"] - 1] = Award(r["status"], r["character_id"], r["name"], m.user_id,
                                         r["gained"], r["xp_before"], r["xp_after"])
        return awards

    async def award_hf(self, guild_id: int, channel_ids: Sequence[int], name: str,
                       mentions: Iterable[int], success: bool, *, message_id: int | None = None,
                       now: dt.datetime | None = None) -> Award:
        """HF XP for one hunting/foraging result naming a character (docs/rules.md, "HF XP")."""
        row = await self.pool.fetchrow(
            "SELECT * FROM xp_award_hf($1, $2, $3, $4, $5, $6, $7)",
            guild_id, list(channel_ids), name, list(mentions), success, now, message_id)
        return Award(row["status"], row["character_id"], row["name"], row["user_id"],
                     row["gained"], row["xp_before"], row["xp_after"])

    async def grant_xp(self, guild_id: int, character_id: int, amount: int, granted_by: int,
                       reason: str | None = None, *, source: str = "grant", ref_id: int | None = None,
                       con: asyncpg.Connection | None = None) -> Award:
        """Add (or remove) XP for a character in play; XP stays within 0..XP_MAX. Recorded in
        its history with who, why and where from (`source`: rules.HISTORY_SOURCES)."""
        amount = clean_int(amount, "The amount", -GRANT_MAX, GRANT_MAX)
        if amount == 0:
            raise UserError("The amount can't be 0: use a positive number to add XP, negative to remove.")
        assert source in HISTORY_SOURCES
        reason = clean_reason(reason)
        row = await (con or self.pool).fetchrow(
            """WITH old AS (SELECT id, xp, retired_at FROM characters WHERE guild_id = $1 AND id = $2 FOR UPDATE),
                    upd AS (UPDATE characters c SET xp = LEAST(GREATEST(c.xp + $3, 0), xp_max())
                            FROM old WHERE c.id = old.id AND old.retired_at IS NULL
                            RETURNING c.id, c.name, c.user_id, old.xp AS xp_before, c.xp AS xp_after),
                    logged AS (INSERT INTO xp_grants (guild_id, character_id, granted_by, amount,
                                                      xp_before, xp_after, reason, source, ref_id)
                               SELECT $1, id, $4, $3, xp_before, xp_after, $5, $6, $7 FROM upd)
               SELECT upd.*, (SELECT name FROM characters WHERE id = (SELECT id FROM old)) AS retired_name
                 FROM (SELECT 1) one LEFT JOIN upd ON true""",
            guild_id, character_id, amount, granted_by, reason, source, ref_id)
        if row["id"] is None:
            if row["retired_name"] is not None:
                raise CharacterRetired(row["retired_name"])
            raise CharacterNotFound(own=False)
        return Award("awarded", row["id"], row["name"], row["user_id"],
                     row["xp_after"] - row["xp_before"], row["xp_before"], row["xp_after"])

    async def grant_history(self, guild_id: int, character_id: int,
                            limit: int = 10) -> list[asyncpg.Record]:
        """The character's most recent XP history (grants, starting XP, requests, quests), newest first."""
        return await self.pool.fetch(
            """SELECT granted_by, amount, xp_before, xp_after, reason, source, ref_id, created_at FROM xp_grants
               WHERE guild_id = $1 AND character_id = $2
               ORDER BY created_at DESC, id DESC LIMIT $3""", guild_id, character_id, limit)

    # -- XP requests -------------------------------------------------------------------

    async def create_request(self, guild_id: int, user_id: int, character_id: int, amount: int,
                             reason: str) -> asyncpg.Record:
        """A player's request for XP for their own character in play; at most
        REQUESTS_PENDING_MAX wait at once (counted under the player's lock)."""
        amount = clean_int(amount, "The amount", 1, REQUEST_AMOUNT_MAX)
        reason = clean_reason(reason)
        if not reason:
            raise UserError("Say why in the reason (1 to 300 characters).")
        if len(reason) > REQUEST_REASON_MAX:
            raise UserError(f"The reason is {len(reason)} characters long; use at most {REQUEST_REASON_MAX}.")
        async with self.pool.acquire() as con, con.transaction():
            await self._lock_owner(con, guild_id, character_id, user_id)
            pending = await con.fetchval(
                "SELECT count(*) FROM xp_requests WHERE guild_id = $1 AND user_id = $2 AND status = 'pending'",
                guild_id, user_id)
            if pending >= REQUESTS_PENDING_MAX:
                raise UserError(f"You already have {pending} requests waiting; that is the most at once. "
                                "Wait for a decision or cancel one.")
            row = await con.fetchrow(
                """INSERT INTO xp_requests (guild_id, user_id, character_id, character_name, amount, reason)
                   SELECT $1, $2, c.id, c.name, $4, $5 FROM characters c
                    WHERE c.guild_id = $1 AND c.id = $3 AND c.user_id = $2 AND c.retired_at IS NULL
                   RETURNING *""", guild_id, user_id, character_id, amount, reason)
            if row is None:
                raise CharacterNotFound()
        return row

    async def set_request_message(self, request_id: int, channel_id: int, message_id: int) -> None:
        await self.pool.execute("UPDATE xp_requests SET log_channel_id = $2, log_message_id = $3 WHERE id = $1",
                                request_id, channel_id, message_id)

    async def get_request(self, guild_id: int, request_id: int) -> asyncpg.Record | None:
        return await self.pool.fetchrow("SELECT * FROM xp_requests WHERE guild_id = $1 AND id = $2",
                                        guild_id, request_id)

    async def decide_request(self, guild_id: int, request_id: int, *, approve: bool, by: int,
                             note: str | None = None) -> tuple[asyncpg.Record, Award | None, bool]:
        """Approve (grant the XP) or deny a pending request, in one transaction that takes it
        out of 'pending': however often this is called, it acts once. Returns (the request
        now, the grant if one was made, whether it had been decided before). A request whose
        character left play is closed instead, saying so."""
        async with self.pool.acquire() as con, con.transaction():
            request = await con.fetchrow(
                "SELECT * FROM xp_requests WHERE guild_id = $1 AND id = $2 FOR UPDATE", guild_id, request_id)
            if request is None:
                raise UserError("That request doesn't exist in this server.")
            if request["status"] != "pending":
                return request, None, True
            award = None
            status, note = ("approved" if approve else "denied"), clean_reason(note)
            if approve:
                character = await con.fetchrow("SELECT retired_at FROM characters WHERE id = $1",
                                                request["character_id"]) if request["character_id"] else None
                if character is None or character["retired_at"] is not None:
                    status = "closed"
                    note = "the character was " + ("retired" if character is not None else "deleted")
                else:
                    award = await self.grant_xp(guild_id, request["character_id"], request["amount"], by,
                                                f"Request #{request_id}: {request['reason']}", source="request",
                                                ref_id=request_id, con=con)
            request = await con.fetchrow(
                """UPDATE xp_requests SET status = $3, decided_by = $4, decided_at = now(), note = $5
                   WHERE guild_id = $1 AND id = $2 RETURNING *""", guild_id, request_id, status, by, note)
        return request, award, False

    async def cancel_request(self, guild_id: int, request_id: int, user_id: int) -> asyncpg.Record:
        """The requester withdraws a pending request."""
        row = await self.pool.fetchrow(
            """UPDATE xp_requests SET status = 'cancelled', decided_by = $3, decided_at = now()
               WHERE guild_id = $1 AND id = $2 AND user_id = $3 AND status = 'pending' RETURNING *""",
            guild_id, request_id, user_id)
        if row is None:
            raise UserError("That request isn't one of yours waiting for a decision (it may have been decided).")
        return row

    async def list_requests(self, guild_id: int, *, user_id: int | None = None,
                            limit: int = 25) -> list[asyncpg.Record]:
        """A player's requests, newest first; without `user_id`, every pending one, oldest first."""
        if user_id is not None:
            return await self.pool.fetch(
                """SELECT * FROM xp_requests WHERE guild_id = $1 AND user_id = $2
                   ORDER BY created_at DESC, id DESC LIMIT $3""", guild_id, user_id, limit)
        return await self.pool.fetch(
            """SELECT * FROM xp_requests WHERE guild_id = $1 AND status = 'pending'
               ORDER BY created_at, id LIMIT $2""", guild_id, limit)

    async def leaderboard(self, guild_id: int, *, page: int = 0, per_page: int = 10,
                          after: tuple[int, int] | None = None,
                          before: tuple[int, int] | None = None) -> tuple[list[Character], int]:
        """One page of the guild's characters in play by XP (ties: oldest first), and how
        many there are. `after` / `before` (xp, id) of a row: the page right after or before
        it, read from the index at any depth; otherwise page number `page`."""
        ranked = "SELECT c.*, false AS active FROM characters c WHERE c.guild_id = $1 AND c.retired_at IS NULL"
        async with self.pool.acquire() as con:
            if after is not None:
                rows = await con.fetch(f"{ranked} AND (-c.xp, c.id) > (-$2::bigint, $3::bigint) "
                                       "ORDER BY -c.xp, c.id LIMIT $4", guild_id, *after, per_page)
            elif before is not None:
                rows = await con.fetch(f"{ranked} AND (-c.xp, c.id) < (-$2::bigint, $3::bigint) "
                                       "ORDER BY -c.xp DESC, c.id DESC LIMIT $4", guild_id, *before, per_page)
                rows = rows[::-1]
            else:
                rows = await con.fetch(f"{ranked} ORDER BY -c.xp, c.id LIMIT $2 OFFSET $3",
                                       guild_id, per_page, max(page, 0) * per_page)
        return [Character.from_row(r) for r in rows], await self._in_play(guild_id)

    # -- level roles -------------------------------------------------------------------

    async def level_roles(self, guild_id: int) -> dict[int, int]:
        """{level: role id} of the guild."""
        rows = await self.pool.fetch("SELECT level, role_id FROM level_roles WHERE guild_id = $1 ORDER BY level",
                                     guild_id)
        return {r["level"]: r["role_id"] for r in rows}

    async def set_level_role(self, guild_id: int, level: int, role_id: int | None, *,
                             changed_by: int | None = None) -> int | None:
        """The role for reaching `level` (None removes it); returns the role it had before."""
        level = clean_int(level, "The level", 1, MAX_LEVEL)
        async with self.pool.acquire() as con, con.transaction():
            before = await con.fetchval(
                "SELECT role_id FROM level_roles WHERE guild_id = $1 AND level = $2 FOR UPDATE", guild_id, level)
            if role_id is None:
                await con.execute("DELETE FROM level_roles WHERE guild_id = $1 AND level = $2", guild_id, level)
            else:
                other = await con.fetchval(
                    "SELECT level FROM level_roles WHERE guild_id = $1 AND role_id = $2 AND level <> $3",
                    guild_id, role_id, level)
                if other is not None:
                    raise UserError(f"That role is already the role of level {other}; one role per level.")
                await con.execute(
                    """INSERT INTO level_roles (guild_id, level, role_id) VALUES ($1, $2, $3)
                       ON CONFLICT (guild_id, level) DO UPDATE SET role_id = EXCLUDED.role_id""",
                    guild_id, level, role_id)
            if changed_by is not None and before != role_id:
                await con.execute(
                    """INSERT INTO settings_log (guild_id, changed_by, setting, old_value, new_value)
                       VALUES ($1, $2, $3, to_jsonb($4::bigint), to_jsonb($5::bigint))""",
                    guild_id, changed_by, f"level_role_{level}", before, role_id)
        return before

    async def set_level_role_mode(self, guild_id: int, mode: str, *, changed_by: int | None = None) -> GuildConfig:
        if mode not in LEVEL_ROLE_MODES:
            raise UserError(f"Level roles combine as one of: {', '.join(LEVEL_ROLE_MODES)}.")
        return await self._set_config(guild_id, {"level_role_mode": mode}, changed_by)

    async def player_level(self, guild_id: int, user_id: int) -> int | None:
        """The player's level for level roles: the highest among their characters in play (None:
        they have none)."""
        xp = await self.pool.fetchval(
            "SELECT max(xp) FROM characters WHERE guild_id = $1 AND user_id = $2 AND retired_at IS NULL",
            guild_id, user_id)
        return None if xp is None else level_for(xp)

    async def claim_level_change(self, guild_id: int, user_id: int, level: int | None) -> bool:
        """Record that the member's level roles now follow `level` (None: no character); True
        only for the one caller that moved it, who then makes the role calls."""
        if level is None:
            status = await self.pool.execute(
                "DELETE FROM level_role_members WHERE guild_id = $1 AND user_id = $2", guild_id, user_id)
            return status != "DELETE 0"
        row = await self.pool.fetchrow(
            """INSERT INTO level_role_members AS m (guild_id, user_id, applied_level) VALUES ($1, $2, $3)
               ON CONFLICT (guild_id, user_id) DO UPDATE SET applied_level = EXCLUDED.applied_level
               WHERE m.applied_level IS DISTINCT FROM EXCLUDED.applied_level
               RETURNING 1""", guild_id, user_id, level)
        return row is not None

    async def level_role_players(self, guild_id: int) -> list[asyncpg.Record]:
        """Every player of the guild who has a character (retired too), with the XP of their
        best character in play (NULL: none): what /xp_level_roles_sync reconciles."""
        return await self.pool.fetch(
            """SELECT user_id, max(xp) FILTER (WHERE retired_at IS NULL) AS xp FROM characters
               WHERE guild_id = $1 GROUP BY user_id ORDER BY user_id""", guild_id)

    async def set_applied_level(self, guild_id: int, user_id: int, level: int | None) -> None:
        """What a sync applied, recorded without claiming."""
        if level is None:
            await self.pool.execute("DELETE FROM level_role_members WHERE guild_id = $1 AND user_id = $2",
                                    guild_id, user_id)
        else:
            await self.pool.execute(
                """INSERT INTO level_role_members (guild_id, user_id, applied_level) VALUES ($1, $2, $3)
                   ON CONFLICT (guild_id, user_id) DO UPDATE SET applied_level = EXCLUDED.applied_level""",
                guild_id, user_id, level)

    async def report_level_role_failure(self, guild_id: int, role_id: int, cause: str) -> bool:
        """Record that `role_id` failed for `cause`; True the first time (report it then)."""
        row = await self.pool.fetchrow(
            """INSERT INTO level_role_failures (guild_id, role_id, cause) VALUES ($1, $2, $3)
               ON CONFLICT DO NOTHING RETURNING 1""", guild_id, role_id, cause)
        return row is not None

    async def level_role_failures(self, guild_id: int) -> list[asyncpg.Record]:
        """The level roles the bot could not give or take, and why (until a change succeeds)."""
        return await self.pool.fetch(
            "SELECT role_id, cause FROM level_role_failures WHERE guild_id = $1 ORDER BY reported_at", guild_id)

    async def level_role_succeeded(self, guild_id: int, role_ids: Iterable[int]) -> None:
        """These roles were given or taken: their reported failures are healed."""
        await self.pool.execute("DELETE FROM level_role_failures WHERE guild_id = $1 AND role_id = ANY($2)",
                                guild_id, list(role_ids))

    async def prune_processed_messages(self, older_than: dt.timedelta = dt.timedelta(days=1),
                                       now: dt.datetime | None = None) -> int:
        """Forget counted message ids older than `older_than` (snowflakes carry their time)."""
        now = now or dt.datetime.now(dt.timezone.utc)
        cutoff_ms = int((now - older_than).timestamp() * 1000) - 1420070400000  # Discord epoch
        status = await self.pool.execute(
            "DELETE FROM processed_messages WHERE message_id < $1", max(cutoff_ms, 0) << 22)
        return int(status.split()[-1])



    # -- bulk import and export (the xp.json format lives in migrate_to_postgres.py) ----------

    async def import_guild(self, guild_id: int, settings: dict[str, Any], users: list[tuple],
                           characters: list[tuple]) -> None:
        """Make the guild's settings and these players equal to what is given, in one
        transaction, by COPY into temporary tables and set-based upserts.

        `settings`: config columns to set (the rest keep their values), and "level_roles"
        ({level: role id}) to replace the guild's; `users`: (user_id, timezone,
        last_xp_reset, active character's name); `characters`: (user_id, order, name, xp,
        daily_xp, daily_hf, char_buffer, image_url, sheet_url, retired). A character in play is
        matched by name; a retired one by name and order among the player's retired ones of
        that name (names of retired characters may repeat).
        """
        settings = dict(settings)
        level_roles = settings.pop("level_roles", None)
        columns = list(settings)  # names from the caller's constants only; values are parameters
        assert set(columns) <= {*CHANNEL_KINDS.values(), *DEFAULTS, "levelup_mode", "levelup_channel",
                                "staff_roles", "log_channel", "level_role_mode"}
        # The names' signatures go in with them (not signed after: a second write of every row).
        signed = await asyncio.to_thread(_signatures, [(guild_id, c[2]) for c in characters])
        characters = [(*c, *computed) for c, computed in zip(characters, signed)]
        async with self.pool.acquire() as con, con.transaction():
            await con.execute(
                f"""INSERT INTO config AS cfg (guild_id, {', '.join(columns)})
                    VALUES ($1, {', '.join(f'${i + 2}' for i in range(len(columns)))})
                    ON CONFLICT (guild_id) DO UPDATE SET
                        {', '.join(f'{c} = EXCLUDED.{c}' for c in columns)}, updated_at = now()""",
                guild_id, *(settings[c] for c in columns))
            if level_roles is not None:
                await con.execute("DELETE FROM level_roles WHERE guild_id = $1", guild_id)
                await con.executemany("INSERT INTO level_roles (guild_id, level, role_id) VALUES ($1, $2, $3)",
                                      [(guild_id, level, role) for level, role in level_roles.items()])
            await con.execute(
                """CREATE TEMP TABLE mig_users (user_id bigint, timezone text, last_xp_reset date,
                                                active text) ON COMMIT DROP;
                   CREATE TEMP TABLE mig_characters (user_id bigint, ord int, name text, xp bigint,
                                                     daily_xp int, daily_hf int, char_buffer int,
                                                     image_url text, sheet_url text, retired boolean,
                                                     name_letters text, name_length smallint,
                                                     name_trigrams int[]) ON COMMIT DROP;""")
            await con.copy_records_to_table("mig_users", records=users)
            await con.copy_records_to_table("mig_characters", records=characters)
            await con.execute(
                """INSERT INTO users (guild_id, user_id, timezone, last_xp_reset)
                   SELECT $1, user_id, timezone, last_xp_reset FROM mig_users
                   ON CONFLICT (guild_id, user_id) DO UPDATE
                      SET timezone = EXCLUDED.timezone, last_xp_reset = EXCLUDED.last_xp_reset""", guild_id)
            await con.execute(
                """INSERT INTO characters (guild_id, user_id, name, xp, daily_xp, daily_hf, char_buffer, image_url,
                                           sheet_url, name_letters, name_length, name_trigrams)
                   SELECT $1, user_id, name, xp, daily_xp, daily_hf, char_buffer, image_url, sheet_url,
                          name_letters::bit(128), name_length, name_trigrams
                     FROM mig_characters WHERE NOT retired ORDER BY user_id, ord
                   ON CONFLICT (guild_id, user_id, lower(name)) WHERE retired_at IS NULL DO UPDATE
                      SET name = EXCLUDED.name, xp = EXCLUDED.xp, daily_xp = EXCLUDED.daily_xp,
                          daily_hf = EXCLUDED.daily_hf, char_buffer = EXCLUDED.char_buffer,
                          image_url = EXCLUDED.image_url, sheet_url = EXCLUDED.sheet_url,
                          name_letters = EXCLUDED.name_letters, name_length = EXCLUDED.name_length,
                          name_trigrams = EXCLUDED.name_trigrams""", guild_id)
            await con.execute(
                """WITH wanted AS (SELECT m.*, row_number() OVER (PARTITION BY user_id, lower(name) ORDER BY ord) AS k
                                     FROM mig_characters m WHERE retired),
                        existing AS (SELECT c.id, c.user_id, lower(c.name) AS lname,
                                            row_number() OVER (PARTITION BY c.user_id, lower(c.name) ORDER BY c.id) AS k
                                       FROM characters c
                                      WHERE c.guild_id = $1 AND c.retired_at IS NOT NULL
                                        AND c.user_id IN (SELECT user_id FROM mig_users)),
                        updated AS (UPDATE characters c
                                       SET name = w.name, xp = w.xp, daily_xp = w.daily_xp, daily_hf = w.daily_hf,
                                           char_buffer = w.char_buffer, image_url = w.image_url, sheet_url = w.sheet_url,
                                           name_letters = w.name_letters::bit(128), name_length = w.name_length,
                                           name_trigrams = w.name_trigrams
                                      FROM wanted w JOIN existing e
                                           ON (e.user_id, e.lname, e.k) = (w.user_id, lower(w.name), w.k)
                                     WHERE c.id = e.id RETURNING e.id)
                   INSERT INTO characters (guild_id, user_id, name, xp, daily_xp, daily_hf, char_buffer, image_url,
                                           sheet_url, retired_at, name_letters, name_length, name_trigrams)
                   SELECT $1, w.user_id, w.name, w.xp, w.daily_xp, w.daily_hf, w.char_buffer, w.image_url,
                          w.sheet_url, now(), w.name_letters::bit(128), w.name_length, w.name_trigrams
                     FROM wanted w
                    WHERE NOT EXISTS (SELECT 1 FROM existing e
                                       WHERE (e.user_id, e.lname, e.k) = (w.user_id, lower(w.name), w.k))
                    ORDER BY w.user_id, w.ord""", guild_id)
            await con.execute(
                """UPDATE users u SET active_character_id = c.id
                     FROM mig_users m LEFT JOIN characters c
                          ON c.guild_id = $1 AND c.user_id = m.user_id AND lower(c.name) = lower(m.active)
                             AND c.retired_at IS NULL
                    WHERE u.guild_id = $1 AND u.user_id = m.user_id
                      AND u.active_character_id IS DISTINCT FROM c.id""", guild_id)
        await self.sign_names(guild_id)  # those renamed in place (their signature was taken off)
        self._config_changed(guild_id)

    async def migration_totals(self, guild_id: int, user_ids: list[int]) -> dict[str, int]:
        """Players, characters, XP and active characters of these players, read back."""
        row = await self.pool.fetchrow(
            """SELECT (SELECT count(*) FROM users WHERE guild_id = $1 AND user_id = ANY($2)) AS players,
                      count(c.id) AS characters, COALESCE(sum(c.xp), 0)::bigint AS xp,
                      (SELECT count(*) FROM users WHERE guild_id = $1 AND user_id = ANY($2)
                          AND active_character_id IS NOT NULL) AS active
                 FROM characters c WHERE c.guild_id = $1 AND c.user_id = ANY($2)""", guild_id, user_ids)
        return dict(row)

    # Every player of the guild with each of their characters (one row each; a player without
    # characters once, with id NULL), by player then age.
    _EXPORT_ROWS = """SELECT u.user_id, u.timezone, u.last_xp_reset, u.active_character_id,
                             c.id, c.name, c.xp, c.daily_xp, c.daily_hf, c.char_buffer, c.image_url,
                             c.sheet_url, c.retired_at
                        FROM users u LEFT JOIN characters c USING (guild_id, user_id)
                       WHERE u.guild_id = $1 ORDER BY u.user_id, c.id"""

    async def export_players(self, guild_id: int) -> list[asyncpg.Record]:
        """All of the guild's export rows at once (_EXPORT_ROWS)."""
        return await self.pool.fetch(self._EXPORT_ROWS, guild_id)

    async def export_player_rows(self, guild_id: int,
                                 chunk: int = EXPORT_CHUNK) -> AsyncIterator[list[asyncpg.Record]]:
        """The same rows as export_players, `chunk` at a time through a server-side cursor
        (one snapshot): memory is bounded by the chunk, not by the guild. Close it (aclosing)
        when not read to the end: it holds a connection until then."""
        async with self.pool.acquire() as con, con.transaction(isolation="repeatable_read", readonly=True):
            cursor = await con.cursor(self._EXPORT_ROWS, guild_id)
            while rows := await cursor.fetch(chunk):
                yield rows

    # -- quests --------------------------------------------------------------------------------
    # A quest is changed only while it is active, under a lock on its row (_lock_active_quest),
    # so ending it (one UPDATE ... WHERE status = 'active') and every change exclude each other.

    # The quest's columns and its DMs (in the order they were added).
    _QUEST = """q.*, ARRAY(SELECT d.user_id FROM quest_dms d WHERE d.quest_id = q.id
                           ORDER BY d.added_at, d.user_id) AS dm_ids"""
    _QUEST_XP = "(SELECT COALESCE(sum(m.xp_each::bigint * m.count), 0) FROM quest_monsters m WHERE m.quest_id = q.id)"

    @staticmethod
    def _quest_date(value: dt.date | str | None, what: str) -> dt.date | None:
        return parse_date(value, what) if isinstance(value, str) or value is None else value

    async def create_quest(self, guild_id: int, name: str, min_level: int, max_level: int, *, created_by: int,
                           dm_id: int | None = None, quest_type: str | None = None,
                           start_date: dt.date | str | None = None) -> asyncpg.Record:
        """Start a quest with its first DM (`dm_id`, by default its creator). The name is unique
        among the guild's active quests, ignoring case (a unique index: the database's job)."""
        name = clean_name(name, "A quest name")
        quest_type = clean_name(quest_type, "A quest type") if quest_type and quest_type.strip() else None
        min_level, max_level = clean_bracket(min_level, max_level)
        start_date = self._quest_date(start_date, "start_date")
        async with self.pool.acquire() as con, con.transaction():
            try:
                quest_id = await con.fetchval(
                    """INSERT INTO quests (guild_id, name, quest_type, min_level, max_level, start_date, created_by)
                       VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id""",
                    guild_id, name, quest_type, min_level, max_level, start_date, created_by)
            except asyncpg.UniqueViolationError:
                raise UserError(f'There is already an active quest called "{name}" (names ignore letter case). '
                                "Pick another name, or end that quest first.") from None
            await con.execute("INSERT INTO quest_dms (quest_id, user_id, added_by) VALUES ($1, $2, $3)",
                              quest_id, created_by if dm_id is None else dm_id, created_by)
            return await self.get_quest(guild_id, quest_id, con=con)

    async def get_quest(self, guild_id: int, quest_id: int, *,
                        con: asyncpg.Connection | None = None) -> asyncpg.Record | None:
        """The quest (with `dm_ids`), or None when the guild has no quest with that id."""
        return await (con or self.pool).fetchrow(
            f"SELECT {self._QUEST} FROM quests q WHERE q.guild_id = $1 AND q.id = $2", guild_id, quest_id)

    async def find_quest(self, guild_id: int, query: str) -> asyncpg.Record:
        """The quest a user meant by name (ignoring case; else the one close misspelling): an
        active one first, else the one that ended last."""
        text = searchable(query).strip()
        if not text:
            raise UserError("Give the name of a quest (start typing to see the choices).")
        order = "ORDER BY q.status = 'active' DESC, q.ended_at DESC NULLS FIRST, q.id DESC"
        row = await self.pool.fetchrow(
            f"SELECT {self._QUEST} FROM quests q WHERE q.guild_id = $1 AND lower(q.name) = lower($2) {order} LIMIT 1",
            guild_id, text)
        if row is None and len(text) <= NAME_MAX:
            names = await self.pool.fetch(
                "SELECT DISTINCT ON (lower(q.name)) q.name FROM quests q WHERE q.guild_id = $1 "
                "ORDER BY lower(q.name), q.status = 'active' DESC, q.id DESC LIMIT 1000", guild_id)
            close = close_matches(text, [r["name"].casefold() for r in names])
            if len(close) == 1:
                row = await self.pool.fetchrow(
                    f"SELECT {self._QUEST} FROM quests q WHERE q.guild_id = $1 AND lower(q.name) = lower($2) "
                    f"{order} LIMIT 1", guild_id, next(r["name"] for r in names if r["name"].casefold() == close[0]))
        if row is None:
            raise UserError(f'No quest called "{text[:NAME_MAX]}" in this server. Check the spelling or pick one '
                            "from the list.")
        return row

    async def quest_choices(self, guild_id: int, query: str, *, active_only: bool,
                            limit: int = AUTOCOMPLETE_LIMIT) -> list[asyncpg.Record]:
        """Autocomplete: active quests (and, unless `active_only`, completed ones, latest first)
        whose name starts with, then contains, what was typed."""
        typed = searchable(query).strip().lower()[:NAME_MAX]
        return await self.pool.fetch(
            """SELECT q.id, q.name, q.status, q.min_level, q.max_level, q.ended_at FROM quests q
               WHERE q.guild_id = $1 AND (q.status = 'active' OR NOT $4) AND lower(q.name) LIKE '%' || $2 || '%'
               ORDER BY q.status = 'active' DESC, NOT starts_with(lower(q.name), $3), q.ended_at DESC NULLS FIRST,
                        lower(q.name), q.id
               LIMIT $5""", guild_id, _like_escape(typed), typed, active_only, limit)

    async def quest_types(self, guild_id: int, query: str, limit: int = AUTOCOMPLETE_LIMIT) -> list[str]:
        """The guild's earlier quest types containing what was typed (each once, ignoring case)."""
        typed = searchable(query).strip().lower()[:NAME_MAX]
        rows = await self.pool.fetch(
            """SELECT min(quest_type) AS quest_type FROM quests
               WHERE guild_id = $1 AND lower(quest_type) LIKE '%' || $2 || '%'
               GROUP BY lower(quest_type) ORDER BY NOT starts_with(lower(quest_type), $3), lower(quest_type)
               LIMIT $4""", guild_id, _like_escape(typed), typed, limit)
        return [r["quest_type"] for r in rows]

    async def quest_details(self, guild_id: int, quest_id: int) -> asyncpg.Record | None:
        """The quest with `dm_ids`, `pcs` (a list of dicts, in joining order: character_id,
        user_id, name (the current one while active, the one it had at the end after), xp (now;
        None once deleted), level_at_join, xp_at_join, xp_before, xp_after), `monsters` and
        `monsters_xp`, in one query."""
        return await self.pool.fetchrow(
            f"""SELECT {self._QUEST}, {self._QUEST_XP}::bigint AS monsters_xp,
                       COALESCE((SELECT jsonb_agg(jsonb_build_object(
                                    'character_id', p.character_id, 'user_id', p.user_id,
                                    'name', CASE WHEN q.status = 'active' THEN COALESCE(c.name, p.character_name)
                                                 ELSE p.character_name END,
                                    'xp', c.xp, 'level_at_join', p.level_at_join, 'xp_at_join', p.xp_at_join,
                                    'xp_before', p.xp_before, 'xp_after', p.xp_after) ORDER BY p.id)
                                   FROM quest_pcs p LEFT JOIN characters c ON c.id = p.character_id
                                  WHERE p.quest_id = q.id), '[]') AS pcs,
                       COALESCE((SELECT jsonb_agg(jsonb_build_object('cr', m.cr, 'xp_each', m.xp_each, 'count', m.count,
                                                                     'name', m.name) ORDER BY m.id)
                                   FROM quest_monsters m WHERE m.quest_id = q.id), '[]') AS monsters
                FROM quests q WHERE q.guild_id = $1 AND q.id = $2""", guild_id, quest_id)

    async def list_quests(self, guild_id: int, *, completed: bool, page: int = 0,
                          per_page: int = 10) -> tuple[list[asyncpg.Record], int, int]:
        """One page of the guild's active quests (newest first) or completed ones (latest ended
        first), with their DMs, PC count and monsters' XP, in one query. Returns (quests, how
        many there are, the page shown: `page`, or the last one when `page` is beyond it)."""
        rows = await self.pool.fetch(
            f"""WITH n AS (SELECT count(*) AS total FROM quests WHERE guild_id = $1 AND status = $2),
                     p AS (SELECT n.total, LEAST(GREATEST($3, 0), GREATEST((n.total - 1) / $4, 0))::integer AS page
                             FROM n)
                SELECT p.total, p.page, page_quests.* FROM p LEFT JOIN LATERAL (
                    SELECT {self._QUEST}, {self._QUEST_XP}::bigint AS monsters_xp,
                           (SELECT count(*) FROM quest_pcs pc WHERE pc.quest_id = q.id) AS pc_count
                      FROM quests q WHERE q.guild_id = $1 AND q.status = $2
                     ORDER BY q.ended_at DESC NULLS LAST, q.created_at DESC, q.id DESC
                     LIMIT $4 OFFSET p.page * $4) page_quests ON true""",
            guild_id, "completed" if completed else "active", page, per_page)
        return [r for r in rows if r["id"] is not None], rows[0]["total"], rows[0]["page"]

    async def _lock_active_quest(self, con: asyncpg.Connection, guild_id: int, quest_id: int) -> asyncpg.Record:
        """Lock an active quest's row for a change; UserError when it is gone or has ended."""
        quest = await con.fetchrow(
            "SELECT * FROM quests WHERE guild_id = $1 AND id = $2 FOR NO KEY UPDATE", guild_id, quest_id)
        if quest is None:
            raise UserError("That quest doesn't exist in this server (it may have been deleted).")
        if quest["status"] != "active":
            raise UserError(f'The quest "{quest["name"]}" has ended; a completed quest can\'t be changed.')
        return quest

    async def add_quest_dm(self, guild_id: int, quest_id: int, user_id: int, *, added_by: int) -> bool:
        """Make a member a DM of an active quest; False when they already were one."""
        async with self.pool.acquire() as con, con.transaction():
            await self._lock_active_quest(con, guild_id, quest_id)
            dms = await con.fetch("SELECT user_id FROM quest_dms WHERE quest_id = $1", quest_id)
            if any(dm["user_id"] == user_id for dm in dms):
                return False
            if len(dms) >= QUEST_DMS_MAX:
                raise UserError(f"A quest has at most {QUEST_DMS_MAX} DMs.")
            await con.execute("INSERT INTO quest_dms (quest_id, user_id, added_by) VALUES ($1, $2, $3)",
                              quest_id, user_id, added_by)
        return True

    async def add_quest_pc(self, guild_id: int, quest_id: int, character_id: int, *, added_by: int,
                           owner_id: int | None = None, in_bracket: bool = False) -> asyncpg.Record:
        """Add a character in play to an active quest, with its level and XP now. `owner_id`:
        only that player's character (None: any of the guild's); `in_bracket`: its level must
        be within the quest's levels. Returns the PC row with the quest's `quest_name`."""
        async with self.pool.acquire() as con, con.transaction():
            quest = await self._lock_active_quest(con, guild_id, quest_id)
            # FOR SHARE: a retire or delete of this character waits for us (and its trigger then
            # sees this row), or we wait for it and find it gone.
            character = await con.fetchrow(
                """SELECT id, user_id, name, xp, retired_at FROM characters
                   WHERE guild_id = $1 AND id = $2 AND ($3::bigint IS NULL OR user_id = $3) FOR SHARE""",
                guild_id, character_id, owner_id)
            if character is None:
                raise CharacterNotFound(own=owner_id is not None)
            if character["retired_at"] is not None:
                raise UserError(f'"{character["name"]}" is retired: only characters in play can be in a quest.')
            level = level_for(character["xp"])
            if in_bracket and not quest["min_level"] <= level <= quest["max_level"]:
                raise UserError(f'"{character["name"]}" is level {level}, and "{quest["name"]}" is for levels '
                                f'{quest["min_level"]}–{quest["max_level"]}. Pick a character within those levels, '
                                "or ask one of the quest's DMs to add it.")
            if await con.fetchval("SELECT count(*) FROM quest_pcs WHERE quest_id = $1", quest_id) >= QUEST_PCS_MAX:
                raise UserError(f'"{quest["name"]}" already has {QUEST_PCS_MAX} PCs, the most a quest can have.')
            row = await con.fetchrow(
                """INSERT INTO quest_pcs (quest_id, character_id, user_id, character_name, level_at_join, xp_at_join,
                                          added_by)
                   VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (quest_id, character_id) DO NOTHING
                   RETURNING *, $8::text AS quest_name""",
                quest_id, character_id, character["user_id"], character["name"], level, character["xp"], added_by,
                quest["name"])
            if row is None:
                raise UserError(f'"{character["name"]}" is already in "{quest["name"]}".')
        return row

    async def remove_quest_pc(self, guild_id: int, quest_id: int, character_id: int, *,
                              owner_id: int | None = None) -> asyncpg.Record:
        """Take a character out of an active quest (`owner_id`: only that player's). Returns
        the PC row with the quest's `quest_name`."""
        async with self.pool.acquire() as con, con.transaction():
            quest = await self._lock_active_quest(con, guild_id, quest_id)
            row = await con.fetchrow(
                """DELETE FROM quest_pcs p WHERE p.quest_id = $1 AND p.character_id = $2
                     AND ($3::bigint IS NULL OR p.user_id = $3)
                   RETURNING p.*, (SELECT name FROM characters WHERE id = p.character_id) AS name,
                             $4::text AS quest_name""", quest_id, character_id, owner_id, quest["name"])
            if row is None:
                raise UserError(f'That character is not in "{quest["name"]}"; nothing was changed.')
        return row

    async def add_quest_monster(self, guild_id: int, quest_id: int, cr: str, count: int, name: str | None = None,
                                *, added_by: int) -> tuple[asyncpg.Record, int]:
        """Add `count` monsters of challenge rating `cr` to an active quest. Returns (the entry,
        the quest's monsters' XP now); a quest is worth at most QUEST_XP_MAX."""
        cr = clean_cr(cr)
        count = clean_int(count, "The count", 1, MONSTER_COUNT_MAX)
        name = clean_name(name, "A monster name") if name and name.strip() else None
        async with self.pool.acquire() as con, con.transaction():
            quest = await self._lock_active_quest(con, guild_id, quest_id)
            entries, total = await con.fetchrow(
                """SELECT count(*), COALESCE(sum(xp_each::bigint * count), 0)::bigint FROM quest_monsters
                   WHERE quest_id = $1""", quest_id)
            if entries >= QUEST_MONSTERS_MAX:
                raise UserError(f'"{quest["name"]}" already has {QUEST_MONSTERS_MAX} monster entries, the most a '
                                "quest can have; give a larger count instead.")
            total += CR_XP[cr] * count
            if total > QUEST_XP_MAX:
                raise UserError(f"That would make the quest worth {total:,} XP; a quest is worth at most "
                                f"{QUEST_XP_MAX:,}.")
            row = await con.fetchrow(
                """INSERT INTO quest_monsters (quest_id, cr, xp_each, count, name, added_by)
                   VALUES ($1, $2, $3, $4, $5, $6) RETURNING *, $7::text AS quest_name""",
                quest_id, cr, CR_XP[cr], count, name, added_by, quest["name"])
        return row, total

    async def delete_quest(self, guild_id: int, quest_id: int) -> asyncpg.Record:
        """Delete an active quest with its DMs, PCs and monsters (nothing is awarded)."""
        row = await self.pool.fetchrow(
            "DELETE FROM quests WHERE guild_id = $1 AND id = $2 AND status = 'active' RETURNING *", guild_id, quest_id)
        if row is None:
            async with self.pool.acquire() as con, con.transaction():
                await self._lock_active_quest(con, guild_id, quest_id)  # says why
        return row

    async def end_quest(self, guild_id: int, quest_id: int, *, by: int, end_date: dt.date | str | None = None,
                        award: bool = True) -> tuple[asyncpg.Record, list[Award], bool]:
        """End an active quest, in one transaction: mark it completed and, with `award`, give
        each PC an equal share (rules.quest_share) of its monsters' XP through the XP history.
        However often this is called, at once or later, from any process, one call ends it.
        Returns (the quest now, what each PC got: awarded, or `unchanged` without XP, whether
        it had been ended before, by `ended_by` at `ended_at`)."""
        end_date = self._quest_date(end_date, "end_date")
        async with self.pool.acquire() as con, con.transaction():
            quest = await con.fetchrow(
                f"""UPDATE quests q SET status = 'completed', ended_by = $3, ended_at = now(), end_date = $4,
                                        awarded = $5, total_xp = {self._QUEST_XP}
                    WHERE q.guild_id = $1 AND q.id = $2 AND q.status = 'active'
                      AND ($4::date IS NULL OR q.start_date IS NULL OR $4 >= q.start_date)
                    RETURNING q.*""", guild_id, quest_id, by, end_date, award)
            if quest is None:
                current = await self.get_quest(guild_id, quest_id, con=con)
                if current is not None and current["status"] == "completed":
                    return current, [], True
                if current is None:
                    raise UserError("That quest doesn't exist in this server (it may have been deleted).")
                raise UserError(f'end_date ({end_date}) is before the quest\'s start_date ({current["start_date"]}); '
                                "give a day on or after it.")
            # The PCs' players first, in order (the XP functions' lock order), then their characters.
            players = await con.fetchval(
                "SELECT array_agg(DISTINCT user_id ORDER BY user_id) FROM quest_pcs WHERE quest_id = $1", quest_id)
            await con.execute("SELECT 1 FROM users WHERE guild_id = $1 AND user_id = ANY($2) ORDER BY user_id "
                              "FOR NO KEY UPDATE", guild_id, players or [])
            pcs = await con.fetch(
                """SELECT c.id, c.user_id, c.name, c.xp FROM quest_pcs p JOIN characters c ON c.id = p.character_id
                   WHERE p.quest_id = $1 AND c.retired_at IS NULL ORDER BY c.id FOR UPDATE OF c""", quest_id)
            share = quest_share(quest["total_xp"], len(pcs)) if award else 0
            awards = []
            for pc in pcs:
                if share > 0:
                    awards.append(await self.grant_xp(guild_id, pc["id"], share, by,
                                                      f'Quest #{quest_id}: {quest["name"]}', source="quest",
                                                      ref_id=quest_id, con=con))
                else:
                    awards.append(Award("unchanged", pc["id"], pc["name"], pc["user_id"], 0, pc["xp"], pc["xp"]))
            await con.execute(
                """UPDATE quest_pcs p SET character_name = a.name, xp_before = a.xp_before, xp_after = a.xp_after
                   FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::bigint[]) AS a(id, name, xp_before, xp_after)
                   WHERE p.quest_id = $1 AND p.character_id = a.id""",
                quest_id, [a.character_id for a in awards], [a.name for a in awards],
                [a.xp_before for a in awards], [a.xp_after for a in awards])
            quest = await con.fetchrow(
                f"UPDATE quests q SET xp_per_pc = $2 WHERE q.id = $1 RETURNING {self._QUEST}", quest_id, share)
        return quest, awards, False
