"""Pure helpers: level maths, input rules and text formatting. No I/O here."""
from __future__ import annotations

import bisect
import re
import unicodedata
import zoneinfo
from functools import lru_cache

# XP needed to reach levels 1..20 (the D&D 5e table).
LEVEL_THRESHOLDS = (0, 300, 900, 2700, 6500, 14000, 23000, 34000, 48000, 64000, 85000,
                    100000, 120000, 140000, 165000, 195000, 225000, 265000, 305000, 355000)
MAX_LEVEL = len(LEVEL_THRESHOLDS)
BAR_CELLS = 20

NAME_MAX = 100
URL_MAX = 2000
XP_MAX = 1_000_000_000_000        # mirrors the CHECK in schema.sql
GRANT_MAX = 1_000_000_000         # one grant moves at most this much either way
SETTING_MAX = 1_000_000           # rates and caps, mirrors schema.sql


class UserError(Exception):
    """A mistake in what a user or operator gave us; the message is safe to show."""


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


def clean_name(raw: object) -> str:
    """A character name trimmed and checked against SPEC, or UserError saying what to fix."""
    if not isinstance(raw, str):
        raise UserError("A character name must be text.")
    name = raw.strip()
    if not name:
        raise UserError("A character name can't be empty. Give it at least one visible character.")
    if len(name) > NAME_MAX:
        raise UserError(f"That name is {len(name)} characters long; use at most {NAME_MAX}.")
    if any(unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") for ch in name):
        raise UserError("A character name can't contain line breaks or control characters. Use one plain line.")
    return name


_URL = re.compile(r"^https?://[^\s/?#\x00-\x1f\x7f]+[^\s\x00-\x1f\x7f]*$", re.IGNORECASE)


def clean_image_url(raw: object) -> str | None:
    """An http(s) image URL, None for "no image", or UserError."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise UserError("The image URL must be text.")
    url = raw.strip()
    if not url:
        return None
    if len(url) > URL_MAX:
        raise UserError(f"That image URL is too long; use one of at most {URL_MAX} characters.")
    if not _URL.match(url):
        raise UserError("The image URL must start with http:// or https:// and contain no spaces, "
                        "e.g. https://example.com/luna.png")
    return url


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
        shown = escape_text(str(raw)[:60])
        raise UserError(f"`{shown}` is not a time zone I know. Use an IANA name such as "
                        "`Europe/Berlin`, `America/New_York` or `UTC` (pick one from the list).")
    return zone


def clean_int(value: object, what: str, low: int, high: int) -> int:
    """An integer in [low, high], or UserError naming the setting and the range."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{what} must be a whole number.")
    if not low <= value <= high:
        raise UserError(f"{what} must be between {low:,} and {high:,}; you gave {value:,}.")
    return value


_MARKDOWN = re.compile(r"([\\*_~`|>\[\]()#-])")


def searchable(text: object) -> str:
    """What a user typed to look something up, safe to send as a query parameter
    (PostgreSQL text can't hold NUL; no name has control characters anyway)."""
    return "".join(ch for ch in text if ch >= " ") if isinstance(text, str) else ""


def clean_reason(text: object) -> str | None:
    """A free-text reason: control characters become spaces, at most 500 characters."""
    if not isinstance(text, str):
        return None
    cleaned = "".join(ch if unicodedata.category(ch) != "Cc" else " " for ch in text).strip()
    return cleaned[:500] or None


def escape_text(text: str) -> str:
    """Text shown as typed: markdown neutralised, mentions broken with a zero-width space."""
    text = _MARKDOWN.sub(r"\\\1", text)
    return text.replace("@", "@\u200b")


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
