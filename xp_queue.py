"""The road from a Discord message to an XP award: batching, outages, the spool file."""
from __future__ import annotations

import asyncio
import collections
import datetime as dt
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from database import Award, Database, RPMessage, is_unavailable

log = logging.getLogger("xpbot.queue")


class XPQueue:
    """The road from a Discord message to an XP award, built for bursts and outages.

    RP messages that arrive while earlier ones are being written go to the database
    together, in one round trip (`award_rp_many`): under load that is far fewer than
    one round trip per message, at no cost in latency when quiet.

    When the database is unreachable, events are kept in arrival order (up to `limit`)
    and replayed when it returns; while anything is kept, new events queue behind it.
    Awards are idempotent by message id, so an award whose commit was lost with the
    connection, then retried, still counts once. `save()`/`load()` carry what is still
    kept across a restart in a JSON-lines `spool` file.
    """

    def __init__(self, db: Database, *, limit: int = 100_000, spool: str | os.PathLike | None = None,
                 on_award: Any = None, retry_delay: float = 0.5, max_batch: int = 100,
                 max_inflight: int = 4):
        self.db = db
        self.limit = limit
        self.spool = Path(spool) if spool else None
        self.on_award = on_award          # async callback(kind, event, Award), e.g. level-up posts
        self.retry_delay = retry_delay
        self.max_batch = max_batch
        self.max_inflight = max_inflight
        self.pending: collections.deque[tuple[str, Any]] = collections.deque()  # kept in an outage
        self.dropped = 0
        self.events = 0           # RP and HF events submitted
        self.round_trips = 0      # database calls made for them
        self._buffer: list[tuple[RPMessage, asyncio.Future]] = []
        self._flushers: set[asyncio.Task] = set()
        self._replayer: asyncio.Task | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    # -- submitting ------------------------------------------------------------

    async def rp(self, message: RPMessage, *, at: dt.datetime | None = None) -> Award | None:
        """Award RP XP for one message; None when kept for later (database unavailable).
        `at` (the message's time) is the day a kept message counts on."""
        self.events += 1
        if self.pending:
            self._keep("rp", (message, at))
            return None
        future = asyncio.get_running_loop().create_future()
        self._buffer.append(((message, at), future))
        self._idle.clear()
        if len(self._flushers) < self.max_inflight:
            task = asyncio.get_running_loop().create_task(self._flush())
            self._flushers.add(task)
            task.add_done_callback(self._flusher_done)
        return await future

    async def hf(self, *, at: dt.datetime | None = None, **event: Any) -> Award | None:
        """award_hf (same arguments) now, or kept for later; None when kept."""
        self.events += 1
        if not self.pending:
            try:
                award = await self._apply_hf(event)
            except Exception as e:
                if not is_unavailable(e):
                    raise
                self._unavailable(e)
            else:
                return award
        self._keep("hf", {**event, "now": event.get("now") or at})
        return None

    # -- writing -----------------------------------------------------------------

    async def _flush(self) -> None:
        while self._buffer:
            batch, self._buffer = self._buffer[:self.max_batch], self._buffer[self.max_batch:]
            items = [item for item, _ in batch]
            try:
                awards = await self._apply_rp(items, live=True)
            except Exception as e:
                if not is_unavailable(e):
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(e)
                    continue
                self._unavailable(e)
                for item, _ in batch:
                    self._keep("rp", item)
                # everything still buffered arrived after this batch: keep it behind it
                rest, self._buffer = self._buffer, []
                for item, future in rest:
                    self._keep("rp", item)
                    future.set_result(None)
                for _, future in batch:
                    future.set_result(None)
                return
            for (_, future), award in zip(batch, awards):
                if not future.done():
                    future.set_result(award)

    def _flusher_done(self, task: asyncio.Task) -> None:
        self._flushers.discard(task)
        if not task.cancelled() and task.exception():
            log.error("XP writer failed", exc_info=task.exception())
        self._check_idle()

    def _check_idle(self) -> None:
        if not self._buffer and not self._flushers and not self.pending:
            self._idle.set()

    async def _apply_rp(self, items: list[tuple[RPMessage, dt.datetime | None]], live: bool) -> list[Award]:
        messages = [m for m, _ in items]
        # live messages count at the database's clock; replayed ones at their own time
        now = None if live else [at for _, at in items]
        self.round_trips += 1
        awards = await self.db.award_rp_many(messages, now=now)
        for message, award in zip(messages, awards):
            await self._announce("rp", message, award)
        return awards

    async def _apply_hf(self, event: dict) -> Award:
        self.round_trips += 1
        award = await self.db.award_hf(**event)
        await self._announce("hf", event, award)
        return award

    async def _announce(self, kind: str, event: Any, award: Award) -> None:
        """Tell `on_award`; its failures are logged, never undo or repeat the award."""
        if self.on_award is not None and award.status == "awarded":
            try:
                await self.on_award(kind, event, award)
            except Exception:
                log.exception("on_award callback failed for %s award %r", kind, award)

    # -- keeping and replaying -------------------------------------------------------

    def _unavailable(self, exc: BaseException) -> None:
        if not self.pending:
            log.warning("Database unavailable (%s): keeping XP events until it returns",
                        type(exc).__name__)

    def _keep(self, kind: str, item: Any) -> None:
        if len(self.pending) >= self.limit:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("Pending XP queue full (%d events): %d event(s) dropped so far",
                          self.limit, self.dropped)
            return
        self.pending.append((kind, item))
        self._idle.clear()
        if self._replayer is None or self._replayer.done():
            self._replayer = asyncio.get_running_loop().create_task(self._replay())

    async def _replay(self) -> None:
        delay = self.retry_delay
        while self.pending:
            await asyncio.sleep(0)  # let a failing batch finish moving its events here
            kind, item = self.pending[0]
            count = 1
            if kind == "rp":  # replay consecutive RP events together
                while (count < len(self.pending) and count < self.max_batch
                       and self.pending[count][0] == "rp"):
                    count += 1
            try:
                if kind == "rp":
                    await self._apply_rp([self.pending[i][1] for i in range(count)], live=False)
                else:
                    await self._apply_hf(item)
            except Exception as e:
                if is_unavailable(e):
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
                    continue
                log.exception("Kept XP event(s) could not be applied; skipped: %r", item)
            for _ in range(count):
                self.pending.popleft()
            delay = self.retry_delay
            if not self.pending:
                log.info("Database back: all kept XP events applied")
        self._check_idle()

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until nothing is buffered, being written or kept; False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    def save(self) -> int:
        """Stop replaying and write what is still kept to the spool file; returns how many."""
        if self._replayer is not None:
            self._replayer.cancel()
        if not self.spool:
            return len(self.pending)
        if not self.pending:
            self.spool.unlink(missing_ok=True)
            return 0
        self.spool.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.spool.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            for kind, item in self.pending:
                if kind == "rp":
                    message, at = item
                    record = {"kind": kind, **asdict(message), "now": at}
                else:
                    record = {"kind": kind, **item}
                f.write(json.dumps(_jsonable(record)) + "\n")
        os.replace(tmp, self.spool)
        log.warning("%d XP event(s) kept in %s until the next start", len(self.pending), self.spool)
        return len(self.pending)

    def load(self) -> int:
        """Queue what a previous run saved; it replays in order (call after connect)."""
        if not self.spool or not self.spool.exists():
            return 0
        count = 0
        for line in self.spool.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                kind = record.pop("kind")
                now = dt.datetime.fromisoformat(record.pop("now")) if record.get("now") else None
                if kind == "rp":
                    self._keep(kind, (RPMessage(**record), now))
                else:
                    self._keep(kind, {**record, "now": now})
                count += 1
        self.spool.unlink()
        return count


def _jsonable(event: dict) -> dict:
    return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in event.items()}
