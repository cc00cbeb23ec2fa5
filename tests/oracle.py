"""The oracle: the XP rules (docs/rules.md) applied one event at a time, in plain Python.

Concurrent or batched runs against the database must end exactly where this model does.
Used by the tests (tests/test_race.py, tests/test_scaleout.py) and the benchmarks (bench/,
which put tests/ on sys.path). No daily reset: every event happens on the same day.
"""
from __future__ import annotations

from typing import Hashable, Optional


class OneAtATime:
    """RP, HF and grants for characters identified by any hashable key.

    A key is created (all zero) on its first event, or up front with `add`. An event with a
    `message_id` already seen is a redelivery and changes nothing.
    """

    def __init__(self, rate: int, cap: int, hf_attempt: int = 1, hf_success: int = 5, hf_cap: int = 10):
        self.rate, self.cap = rate, cap
        self.hf_attempt, self.hf_success, self.hf_cap = hf_attempt, hf_success, hf_cap
        self.xp: dict = {}
        self.daily_xp: dict = {}
        self.daily_hf: dict = {}
        self.buffer: dict = {}
        self.seen: set = set()

    def add(self, key: Hashable) -> None:
        for column in (self.xp, self.daily_xp, self.daily_hf, self.buffer):
            column[key] = 0

    def _counts(self, key: Hashable, message_id: Optional[int]) -> bool:
        if message_id is not None:
            if message_id in self.seen:
                return False
            self.seen.add(message_id)
        if key not in self.xp:
            self.add(key)
        return True

    def rp(self, key: Hashable, length: int, message_id: Optional[int] = None) -> None:
        if not self._counts(key, message_id):
            return
        self.buffer[key] += length
        gained = min(self.buffer[key] // self.rate, max(self.cap - self.daily_xp[key], 0))
        self.xp[key] += gained
        self.daily_xp[key] += gained
        self.buffer[key] %= self.rate

    def hf(self, key: Hashable, success: bool, message_id: Optional[int] = None) -> None:
        if not self._counts(key, message_id):
            return
        earned = self.hf_attempt + (self.hf_success if success else 0)
        gained = min(earned, max(self.hf_cap - self.daily_hf[key], 0))
        self.xp[key] += gained
        self.daily_hf[key] += gained

    def grant(self, key: Hashable, amount: int) -> None:
        self._counts(key, None)
        self.xp[key] = max(0, self.xp[key] + amount)

    def rows(self) -> dict:
        """key -> (xp, daily_xp, daily_hf, char_buffer)"""
        return {k: (self.xp[k], self.daily_xp[k], self.daily_hf[k], self.buffer[k]) for k in self.xp}

    def rp_rows(self) -> dict:
        """key -> [xp, daily_xp, char_buffer]: the columns RP changes, as `helpers.rp_rows` reads them."""
        return {k: [self.xp[k], self.daily_xp[k], self.buffer[k]] for k in self.xp}
