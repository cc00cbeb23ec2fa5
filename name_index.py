"""A large guild's names in memory, for misspelt-name lookups that cost the same at any size.

difflib only accepts a name whose characters overlap the text's enough (rules.close_match_filter
says how many of the text's signature bits a name of each length must have). Here each
guild's signatures are kept *bit-sliced*: for every casefolded name length, plane k is one
big integer whose bit p says whether the name at position p has signature bit k. Counting
for every name at once how many of the text's bits it has is then a bit-sliced addition of
the text's planes: a few dozen big-integer operations per length, each a C loop over a few
kilobytes, instead of a Python loop over every name. Only the few names that pass are read
from the database and compared by difflib, so an index that lags behind only ever costs a
candidate, never a match; Database keeps each index current (it re-reads the names written
since its last read) and decides which guilds have one.

Pure data structure, no I/O.
"""
from __future__ import annotations

from array import array

import rules

_BITS = rules.LETTER_BITS
_LOW = (1 << 64) - 1


def signature_bits(signature: str) -> int:
    """A '0'/'1' signature (rules.letter_signature) as an integer: its first bit is the highest,
    as in the database's bit(128) read as 16 big-endian bytes."""
    return int(signature, 2)


def _positions(bits: int) -> list[int]:
    """The positions of the set bits of `bits`, lowest first (one C pass over a string)."""
    text = bin(bits)[:1:-1]  # lowest bit first
    found, at = [], text.find("1")
    while at >= 0:
        found.append(at)
        at = text.find("1", at + 1)
    return found


def _at_least(planes: list[int], need: int, everyone: int) -> int:
    """Positions (as bits) set in at least `need` of `planes`: bit-sliced counting, then a
    bit-sliced comparison of every position's count with `need`."""
    counter: list[int] = []  # counter[i]: bit i of every position's count
    for plane in planes:
        carry, i = plane, 0
        while carry:
            if i == len(counter):
                counter.append(carry)
                break
            counter[i], carry = counter[i] ^ carry, counter[i] & carry
            i += 1
    if need >= 1 << len(counter):
        return 0
    above, equal = 0, everyone
    for i in reversed(range(len(counter))):
        if need >> i & 1:
            equal &= counter[i]
        else:
            above |= equal & counter[i]
            equal &= ~counter[i]
    return above | equal


class _Length:
    """The names of one casefolded length: position -> character id (0: a slot left by a
    rename) and signature (high and low 64 bits), and one plane per signature bit."""
    __slots__ = ("ids", "high", "low", "planes", "dead")

    def __init__(self) -> None:
        self.ids, self.high, self.low = array("q"), array("Q"), array("Q")
        self.planes = [0] * _BITS
        self.dead = 0


class GuildNames:
    """One guild's name signatures. `put` what the database holds (again, after any change);
    `candidates` gives the ids worth comparing with a text."""

    def __init__(self) -> None:
        self.lengths: dict[int, _Length] = {}
        self.where: dict[int, int] = {}  # character id -> length << 32 | position
        self.watermark = 0  # Database's: names written from this transaction id on are read again

    def __len__(self) -> int:
        return len(self.where)

    def put(self, rows: list[tuple[int, int, int]]) -> None:
        """(character id, casefolded length, signature_bits) of names as they are now; a
        character seen before moves to its new place."""
        added: dict[int, dict[int, list[int]]] = {}
        for character_id, length, bits in rows:
            old = self.where.get(character_id)
            if old is not None:
                group, position = self.lengths[old >> 32], old & 0xFFFFFFFF
                if old >> 32 == length and group.high[position] << 64 | group.low[position] == bits:
                    continue  # read again, unchanged (a long transaction elsewhere holds the watermark back)
                group.ids[position] = 0
                group.dead += 1
            group = self.lengths.get(length)
            if group is None:
                group = self.lengths[length] = _Length()
            position = len(group.ids)
            group.ids.append(character_id)
            group.high.append(bits >> 64)
            group.low.append(bits & _LOW)
            self.where[character_id] = length << 32 | position
            by_bit = added.setdefault(length, {})
            for k in _positions(bits):
                by_bit.setdefault(k, []).append(position)
        for length, by_bit in added.items():
            planes = self.lengths[length].planes
            for k, positions in by_bit.items():
                planes[k] |= _from_positions(positions)
        for length in [n for n, g in self.lengths.items() if g.dead > 64 and 2 * g.dead > len(g.ids)]:
            self._compact(length)

    def candidates(self, wanted: rules.CloseMatchFilter) -> list[int]:
        """Ids of the names with at least as many of the text's bits as their length needs."""
        low, _ = wanted.lengths
        text_bits = _positions(signature_bits(wanted.signature))
        found: list[int] = []
        for offset, need in enumerate(wanted.needs):
            group = self.lengths.get(low + offset)
            if group is None or need > len(text_bits):
                continue
            everyone = (1 << len(group.ids)) - 1
            hits = everyone if need <= 0 else _at_least([group.planes[k] for k in text_bits], need, everyone)
            found += (i for i in map(group.ids.__getitem__, _positions(hits)) if i)
        return found

    def _compact(self, length: int) -> None:
        """Rebuild one length without the slots renames left behind."""
        old = self.lengths.pop(length)
        rows = [(i, length, high << 64 | low) for i, high, low in zip(old.ids, old.high, old.low) if i]
        for character_id, _, _ in rows:
            del self.where[character_id]
        self.put(rows)


def _from_positions(positions: list[int]) -> int:
    """An integer with exactly these bits set."""
    buffer = bytearray(max(positions) // 8 + 1)
    for p in positions:
        buffer[p >> 3] |= 1 << (p & 7)
    return int.from_bytes(buffer, "little")
