"""The product's rules, limits, defaults and modes: each written once, here.

Pure functions and constants, no I/O. `schema.sql` repeats only what the database must
enforce (CHECKs, column defaults), and tests/test_rules.py checks that the two agree.
The rules in words: docs/rules.md.
"""
from __future__ import annotations

import bisect
import datetime as dt
import difflib
import re
import unicodedata
import zoneinfo
from dataclasses import dataclass
from functools import lru_cache

# -- levels ---------------------------------------------------------------------------------

# XP needed to reach levels 1..20 (the D&D 5e table).
LEVEL_THRESHOLDS = (0, 300, 900, 2700, 6500, 14000, 23000, 34000, 48000, 64000, 85000,
                    100000, 120000, 140000, 165000, 195000, 225000, 265000, 305000, 355000)
MAX_LEVEL = len(LEVEL_THRESHOLDS)
BAR_CELLS = 20

# -- limits -----------------------------------------------------------------------------------

NAME_MAX = 100                    # characters in a character name, after trimming
URL_MAX = 2000                    # characters in an image URL
XP_MAX = 1_000_000_000_000        # no character holds more XP (schema: CHECK and xp_max())
GRANT_MAX = 1_000_000_000         # one grant moves at most this much either way
REASON_MAX = 500                  # characters kept of a grant's reason
STARTING_XP_MAX = 355_000         # staff may create a character with up to this much XP (level 20)
CHANNELS_MAX = 100                # tracked channels of each kind per guild
AUTOCOMPLETE_LIMIT = 25           # Discord shows at most 25 choices
CLOSE_MATCH_CUTOFF = 0.8          # how alike a misspelt name must be (difflib ratio)


@dataclass(frozen=True, slots=True)
class Setting:
    """A guild's numeric setting: its column, what staff call it, default and range."""
    key: str
    label: str
    default: int
    low: int
    high: int = 1_000_000


SETTINGS = {s.key: s for s in (
    Setting("char_per_rp", "Characters per XP", 240, 1),
    Setting("daily_rp_cap", "The daily RP XP cap", 10, 1),
    Setting("hf_attempt_xp", "XP per HF attempt", 1, 0),
    Setting("hf_success_xp", "Extra XP per HF success", 5, 0),
    Setting("daily_hf_cap", "The daily HF XP cap", 10, 1),
)}
DEFAULTS = {key: s.default for key, s in SETTINGS.items()}

# XP requests: what a player may ask for, and how many may wait at once.
REQUEST_AMOUNT_MAX = 25_000
REQUEST_REASON_MAX = 300
REQUESTS_PENDING_MAX = 5
REQUEST_STATUSES = ("pending", "approved", "denied", "cancelled", "closed")
STAFF_ROLES_MAX = 25

# Cooldowns: (uses, per seconds), per player or per guild as named.
COOLDOWNS = {"xp_request": (5, 300), "xp_export": (1, 60), "xp_level_roles_sync": (1, 600)}

# Level roles: how the roles of the levels a member reached combine. The first is the default.
LEVEL_ROLE_MODES = {"stack": "every role up to the member's level",
                    "replace": "only the role of the highest level reached"}
DEFAULT_LEVEL_ROLE_MODE = next(iter(LEVEL_ROLE_MODES))


def level_roles_for(level: int | None, roles: dict[int, int], mode: str) -> set[int]:
    """The level roles a member of `level` (None: no character in play) should hold, given the
    guild's {level: role id}."""
    reached = [lvl for lvl in roles if level is not None and lvl <= level]
    if not reached:
        return set()
    return {roles[lvl] for lvl in reached} if mode == "stack" else {roles[max(reached)]}


# What an entry of a character's XP history came from (schema: xp_grants.source CHECK).
HISTORY_SOURCES = {"grant": "grant", "start": "starting XP", "request": "approved request", "quest": "quest"}

# The kinds of tracked channel and the config column holding each.
CHANNEL_KINDS = {"rp": "rp_channels", "hf": "hf_channels"}

# Where level-ups are announced: mode -> how staff see it. The first is the default.
LEVELUP_MODES = {"message": "in the channel where it happens",
                 "channel": "in a fixed channel",
                 "off": "nowhere (off)"}
DEFAULT_LEVELUP_MODE = next(iter(LEVELUP_MODES))


def next_levelup_mode(mode: str) -> str:
    """The settings panel's cycle: off -> message -> channel -> off."""
    return {"off": "message", "message": "channel", "channel": "off"}[mode]


class UserError(Exception):
    """A mistake in what a user or operator gave; the message is plain text, safe to show."""


# -- levels -----------------------------------------------------------------------------------

def level_for(xp: int) -> int:
    """The number of thresholds at or below `xp` (negative XP counts as level 1)."""
    return max(1, bisect.bisect_right(LEVEL_THRESHOLDS, xp))


def progress(xp: int) -> tuple[int, int] | None:
    """(progress inside the current level, XP the level spans); None at the top level."""
    level = level_for(xp)
    if level >= MAX_LEVEL:
        return None
    start, end = LEVEL_THRESHOLDS[level - 1], LEVEL_THRESHOLDS[level]
    return max(0, xp - start), end - start


def progress_bar(xp: int, cells: int = BAR_CELLS) -> str | None:
    """A `cells`-wide bar of the progress inside the current level; None at the top level."""
    step = progress(xp)
    if step is None:
        return None
    done, span = step
    filled = min(cells, done * cells // span)
    return "█" * filled + "░" * (cells - filled)


# -- input ------------------------------------------------------------------------------------

_NOT_IN_NAMES = ("Cc", "Cs", "Zl", "Zp")  # control characters, surrogates, line breaks


def clean_name(raw: object, what: str = "A character name") -> str:
    """A name (`what`: a character's by default) trimmed and checked, or UserError saying what to fix."""
    if not isinstance(raw, str):
        raise UserError(f"{what} must be text.")
    name = raw.strip()
    if not name:
        raise UserError(f"{what} can't be empty. Give it at least one visible character.")
    if len(name) > NAME_MAX:
        raise UserError(f"That name is {len(name)} characters long; use at most {NAME_MAX}.")
    if any(unicodedata.category(ch) in _NOT_IN_NAMES for ch in name):
        raise UserError(f"{what} can't contain line breaks or control characters. Use one plain line.")
    return name


def fit_name(raw: str) -> str:
    """Any text made into a valid name (for imported data): line breaks and control
    characters become spaces, runs of spaces one, cut to NAME_MAX; "Unnamed" if nothing is left."""
    if raw.isprintable() and raw == raw.strip() and 0 < len(raw) <= NAME_MAX and "  " not in raw:
        return raw  # the usual case, without looking at every character
    name = "".join(" " if unicodedata.category(ch) in _NOT_IN_NAMES else ch for ch in raw)
    return re.sub(r" {2,}", " ", name).strip()[:NAME_MAX].strip() or "Unnamed"


_URL = re.compile(r"^https?://[^\s/?#\x00-\x1f\x7f]+[^\s\x00-\x1f\x7f]*$", re.IGNORECASE)


def clean_url(raw: object, what: str = "The image URL", example: str = "https://example.com/luna.png") -> str | None:
    """An http(s) link, None for "none", or UserError."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise UserError(f"{what} must be text.")
    url = raw.strip()
    if not url:
        return None
    if len(url) > URL_MAX:
        raise UserError(f"{what} is too long; use one of at most {URL_MAX} characters.")
    if not _URL.match(url):
        raise UserError(f"{what} must start with http:// or https:// and contain no spaces, e.g. {example}")
    return url


def clean_image_url(raw: object) -> str | None:
    return clean_url(raw)


def clean_sheet_url(raw: object) -> str | None:
    return clean_url(raw, "The sheet URL", "https://docs.google.com/document/d/…")


@lru_cache(maxsize=1)
def _zones() -> dict[str, str]:
    return {z.lower(): z for z in zoneinfo.available_timezones()}


def all_timezones() -> list[str]:
    return sorted(_zones().values())


def clean_timezone(raw: object) -> str:
    """The canonical IANA name (case-insensitive input), or UserError."""
    key = raw.strip().lower() if isinstance(raw, str) else ""
    zone = _zones().get(key)
    if zone is None:
        raise UserError(f'"{searchable(str(raw))[:60]}" is not a time zone I know. Use an IANA name '
                        "such as Europe/Berlin, America/New_York or UTC (pick one from the list).")
    return zone


def clean_int(value: object, what: str, low: int, high: int) -> int:
    """An integer in [low, high], or UserError naming the value and the range."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{what} must be a whole number.")
    if not low <= value <= high:
        raise UserError(f"{what} must be between {low:,} and {high:,}; you gave {value:,}.")
    return value


def clean_setting(key: str, value: object) -> int:
    """A value for the guild setting `key`, within its range, or UserError."""
    setting = SETTINGS[key]
    return clean_int(value, setting.label, setting.low, setting.high)


def parse_whole_number(text: str, what: str) -> int:
    """A number typed into a form ("1,200" and "1_200" too), or UserError."""
    try:
        return int(text.strip().replace(",", "").replace("_", ""))
    except ValueError:
        raise UserError(f'{what} must be a whole number like 240; you typed "{searchable(text).strip()[:20]}".') from None


def searchable(text: object) -> str:
    """What a user typed to look something up, safe to send as a query parameter
    (PostgreSQL text can't hold NUL; no name has control characters anyway)."""
    return "".join(ch for ch in text if ch >= " ") if isinstance(text, str) else ""


def clean_reason(text: object) -> str | None:
    """A free-text reason: control characters become spaces, at most REASON_MAX characters."""
    if not isinstance(text, str):
        return None
    cleaned = "".join(ch if unicodedata.category(ch) != "Cc" else " " for ch in text).strip()
    return cleaned[:REASON_MAX] or None


# -- close misspellings -----------------------------------------------------------------------

def close_match_lengths(length: int) -> tuple[int, int]:
    """The name lengths that can reach CLOSE_MATCH_CUTOFF against a `length`-long text:
    difflib's ratio is 2*matches/(a+b) and matches <= min(a, b)."""
    c = CLOSE_MATCH_CUTOFF
    return int(length * c / (2 - c)), int(length * (2 - c) / c) + 1


def close_matches(text: str, names: list[str]) -> list[str]:
    """The names (casefolded) `text` could be a misspelling of: one when exactly one is close."""
    return difflib.get_close_matches(text.casefold(), names, n=2, cutoff=CLOSE_MATCH_CUTOFF)


# A name's letter signature lets the database drop, without reading the name, every name
# that cannot be close: difflib only compares names whose characters, counted as a
# multiset, overlap the text's in at least CLOSE_MATCH_CUTOFF * (a + b) / 2 (its
# quick_ratio). Bit 4*s + k is set when symbol s occurs more than k times in the casefolded
# name (k < LETTER_REPEATS); the symbols are LETTER_SYMBOLS, then LETTER_BUCKETS shared by
# every other character (by code point). Sharing and the cap only ever over-count a
# name's overlap or are made up for (`slack`): no close name is ever dropped.
LETTER_SYMBOLS = "abcdefghijklmnopqrstuvwxyz "
LETTER_BUCKETS = 5
LETTER_REPEATS = 4
LETTER_BITS = (len(LETTER_SYMBOLS) + LETTER_BUCKETS) * LETTER_REPEATS  # 128: schema.sql's bit(128)


def _letter_counts(folded: str) -> list[int]:
    counts = [0] * (len(LETTER_SYMBOLS) + LETTER_BUCKETS)
    for ch in folded:
        at = LETTER_SYMBOLS.find(ch)
        counts[at if at >= 0 else len(LETTER_SYMBOLS) + ord(ch) % LETTER_BUCKETS] += 1
    return counts


_REPEATS = [("1" * n).ljust(LETTER_REPEATS, "0") for n in range(LETTER_REPEATS + 1)]


def _bits(counts: list[int]) -> str:
    return "".join([_REPEATS[n] if n < LETTER_REPEATS else _REPEATS[-1] for n in counts])


def letter_signature(name: str) -> tuple[str, int]:
    """A name's signature as '0'/'1' text (bit 0 first) and its casefolded length."""
    folded = name.casefold()
    return _bits(_letter_counts(folded)), len(folded)


@dataclass(frozen=True)
class CloseMatchFilter:
    """What a name of each length must share with `text` to be worth comparing: names of
    `lengths` (casefolded) whose signature has at least needs[length - lengths[0]] of
    `signature`'s bits. Necessary, never sufficient: close_matches decides."""
    signature: str
    lengths: tuple[int, int]
    needs: tuple[int, ...]


def close_match_filter(text: str) -> CloseMatchFilter:
    folded = text.casefold()
    a = len(folded)
    counts = _letter_counts(folded)
    signature = _bits(counts)
    # Bits count at most LETTER_REPEATS occurrences of a symbol: the overlap they show can
    # fall short of the real one by what the text has beyond that.
    slack = sum(max(0, n - LETTER_REPEATS) for n in counts)
    low, high = close_match_lengths(a)
    needs = []
    for b in range(low, high + 1):
        if 2.0 * min(a, b) / (a + b) < CLOSE_MATCH_CUTOFF:  # difflib's first test: the lengths alone
            needs.append(LETTER_BITS + 1)
            continue
        # The fewest matching characters difflib's quick_ratio accepts, in its own arithmetic.
        least = next(m for m in range(min(a, b) + 1) if 2.0 * m / (a + b) >= CLOSE_MATCH_CUTOFF)
        needs.append(max(0, least - slack))
    return CloseMatchFilter(signature, (low, high), tuple(needs))


# -- hunting and foraging results -------------------------------------------------------------

HF_EVENTS = ("goes hunting", "goes foraging")
HF_SUCCESSES = ("time to harvest", "time to gut and harvest")
_GOES = re.compile(r"\s+goes\s+", re.IGNORECASE)


def parse_hf(title: str | None, description: str | None,
             fields: list[tuple[str | None, str | None]]) -> tuple[str, bool] | None:
    """(character name, success) from a hunting/foraging bot's first embed; None if it isn't one.

    The text is the title, description and field names and values, lower-cased and joined;
    the name is the title before " goes ".
    """
    parts = [title, description] + [x for pair in fields for x in pair]
    text = "\n".join(p for p in parts if p).lower()
    if not any(event in text for event in HF_EVENTS):
        return None
    name = _GOES.split(f" {title or ''} ", maxsplit=1)[0].strip() if title else ""
    if not name or _GOES.search(f" {title} ") is None:
        return None
    return name, any(success in text for success in HF_SUCCESSES)


# -- quests -----------------------------------------------------------------------------------

# XP of one monster by challenge rating (the D&D 5e table), in rating order; a quest is worth
# the sum of its monsters' XP times their count.
CR_XP = {"0": 10, "1/8": 25, "1/4": 50, "1/2": 100, "1": 200, "2": 450, "3": 700, "4": 1100, "5": 1800,
         "6": 2300, "7": 2900, "8": 3900, "9": 5000, "10": 5900, "11": 7200, "12": 8400, "13": 10000,
         "14": 11500, "15": 13000, "16": 15000, "17": 18000, "18": 20000, "19": 22000, "20": 25000,
         "21": 33000, "22": 41000, "23": 50000, "24": 62000, "25": 75000, "26": 90000, "27": 105000,
         "28": 120000, "29": 135000, "30": 155000}
QUEST_STATUSES = ("active", "completed")
QUEST_LEVEL_MIN, QUEST_LEVEL_MAX = 1, MAX_LEVEL  # a quest's level bracket lies within these
MONSTER_COUNT_MAX = 1_000         # monsters of one entry of /quest_add_monster
QUEST_DMS_MAX = 10                # DMs of one quest
QUEST_PCS_MAX = 50                # PCs of one quest at once
QUEST_MONSTERS_MAX = 50           # monster entries of one quest
QUEST_XP_MAX = GRANT_MAX          # a quest's monsters are worth at most this: one PC's share is one grant
QUESTS_PER_PAGE = 10              # /quest_list

_CR_DECIMALS = {"0.125": "1/8", ".125": "1/8", "0.25": "1/4", ".25": "1/4", "0.5": "1/2", ".5": "1/2"}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def clean_cr(raw: object) -> str:
    """A challenge rating as CR_XP names it ("1/4", "0.25" and "CR 5" are understood), or UserError."""
    text = searchable(raw).strip().lower().removeprefix("cr").strip()
    text = _CR_DECIMALS.get(text, text.lstrip("0") or "0" if text.isdigit() else text)
    if text not in CR_XP:
        raise UserError(f'"{searchable(raw).strip()[:20]}" is not a challenge rating. Use 0, 1/8, 1/4, 1/2 '
                        "or a whole number from 1 to 30 (pick one from the list).")
    return text


def parse_date(raw: object, what: str) -> dt.date | None:
    """A date typed as YYYY-MM-DD (None when nothing was typed), or UserError naming `what`."""
    text = searchable(raw).strip()
    if not text:
        return None
    if not _DATE.match(text):
        raise UserError(f'{what} must be a date written YYYY-MM-DD, e.g. 2025-03-14; you gave "{text[:20]}".')
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise UserError(f"{what}: {text} is not a day of the calendar; check the month and the day.") from None


def clean_bracket(min_level: object, max_level: object) -> tuple[int, int]:
    """A quest's level bracket: both levels within 1..20, the minimum not above the maximum."""
    low = clean_int(min_level, "The minimum level", QUEST_LEVEL_MIN, QUEST_LEVEL_MAX)
    high = clean_int(max_level, "The maximum level", QUEST_LEVEL_MIN, QUEST_LEVEL_MAX)
    if low > high:
        raise UserError(f"The minimum level ({low}) is above the maximum level ({high}); "
                        "give the lower one as min_level.")
    return low, high


def quest_share(total: int, pcs: int) -> int:
    """What each of `pcs` PCs gets of a quest worth `total` XP (nothing without PCs)."""
    return total // pcs if pcs > 0 else 0
