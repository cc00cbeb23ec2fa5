"""The road from a Discord message to an XP award: which channels are tracked (cached),
batching under load, keeping events through a database outage, the spool file."""
from __future__ import annotations

import asyncio
import collections
import datetime as dt
import itertools
import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Awaitable, Callable, Union

import asyncpg

from database import Award, Database, HFResult, RPMessage, again_if_rolled_back, is_unavailable

log = logging.getLogger("xpbot.queue")

XPEvent = Union[RPMessage, HFResult]
Kept = tuple[XPEvent, "dt.datetime | None"]  # an event and the time it counts at
CONFIG_TTL = 60.0  # seconds a cached tracked-channel set may live without a NOTIFY
NOTIFY_CHANNEL = "xpbot_config"  # schema.sql's config trigger notifies here
NOTHING_TRACKED: tuple[frozenset[int], frozenset[int]] = (frozenset(), frozenset())


class TrackedChannels:
    """Each guild's tracked RP and HF channels, cached so that messages in untracked
    channels cost no round trip (the XP functions check tracking again themselves).

    Guilds missing from the cache are read together: every guild asked for while earlier
    reads are in flight goes into the next read (one query for up to READ_BATCH guilds),
    so a process in thousands of guilds does not pay a round trip per guild when messages
    come from all of them at once (at start-up, after a reconnect, when entries expire).

    Every process LISTENs for config changes on a connection of its own; entries also
    expire after CONFIG_TTL in case a notification is missed, and are not trusted at all
    while the listener is down.
    """

    READ_BATCH = 1000       # guilds per read
    READS_IN_FLIGHT = 4     # reads at once (a slow one does not hold up the others)

    def __init__(self, db: Database):
        self.db = db
        self._tracked: dict[int, tuple[float, frozenset[int], frozenset[int]]] = {}
        self._loading: dict[int, asyncio.Future] = {}  # guild -> the read it waits for
        self._wanted: dict[int, asyncio.Future] = {}   # guilds waiting for the next read
        self._readers: set[asyncio.Task] = set()
        self._reading = 0  # readers started and not finished
        self._generation: dict[int, int] = {}  # bumped on every change: a read in flight is stale
        self._listener: asyncpg.Connection | None = None
        self._listening = False
        self._relisten: asyncio.Task | None = None
        self._closed = False
        self.reads = 0  # database reads made to fill the cache
        db.config_changed.append(self.forget)

    async def get(self, guild_id: int) -> tuple[frozenset[int], frozenset[int]]:
        """(RP channel ids, HF channel ids) of the guild."""
        entry = self._tracked.get(guild_id)
        if entry is not None and entry[0] > time.monotonic() and self._listening:
            return entry[1], entry[2]
        loading = self._loading.get(guild_id)
        if loading is None:  # one read per guild, however many messages wait for it
            loop = asyncio.get_running_loop()
            loading = loop.create_future()
            loading.add_done_callback(lambda done: done.cancelled() or done.exception())  # awaited below
            first = not self._wanted
            self._loading[guild_id] = self._wanted[guild_id] = loading
            if first and self._reading < self.READS_IN_FLIGHT:  # else a reader takes it when done
                self._reading += 1
                reader = loop.create_task(self._read())
                self._readers.add(reader)
                reader.add_done_callback(self._readers.discard)
        return await asyncio.shield(loading)

    async def _read(self) -> None:
        """Read the wanted guilds, READ_BATCH at a time, until none is left."""
        try:
            while self._wanted:
                await self._read_batch(dict(itertools.islice(self._wanted.items(), self.READ_BATCH)))
        finally:
            self._reading -= 1  # with the check above, at once: a guild wanted from now starts a reader

    async def _read_batch(self, batch: dict[int, asyncio.Future]) -> None:
        for guild_id in batch:
            del self._wanted[guild_id]
        generations = {guild_id: self._generation.get(guild_id, 0) for guild_id in batch}
        self.reads += 1
        try:
            found = await self.db.tracked_channels(list(batch))
        except Exception as e:
            for guild_id, loading in batch.items():
                self._settled(guild_id, loading)
                loading.set_exception(e)
            return
        expires = time.monotonic() + CONFIG_TTL
        for guild_id, loading in batch.items():
            value = found.get(guild_id, NOTHING_TRACKED)
            if self._generation.get(guild_id, 0) == generations[guild_id]:  # not changed while we read
                self._tracked[guild_id] = (expires, *value)
            self._settled(guild_id, loading)
            loading.set_result(value)

    def _settled(self, guild_id: int, loading: asyncio.Future) -> None:
        if self._loading.get(guild_id) is loading:
            del self._loading[guild_id]

    def forget(self, guild_id: int) -> None:
        self._generation[guild_id] = self._generation.get(guild_id, 0) + 1
        self._tracked.pop(guild_id, None)
        if guild_id not in self._wanted:  # a read in flight may predate the change: the next get reads again
            self._loading.pop(guild_id, None)

    async def start(self) -> None:
        """Open the listening connection (not from the pool)."""
        try:
            con = await asyncpg.connect(self.db.dsn)
            await con.add_listener(NOTIFY_CHANNEL, self._on_notify)
            con.add_termination_listener(self._on_lost)
        except (OSError, asyncpg.PostgresError) as e:
            log.warning("Config change listener unavailable (%s); caching disabled", type(e).__name__)
            return
        self._listener, self._listening = con, True
        self._tracked.clear()  # anything cached before now may have missed a notification

    async def close(self) -> None:
        self._closed = True
        if self._relisten is not None:
            self._relisten.cancel()
        if self._listener is not None:
            listener, self._listener, self._listening = self._listener, None, False
            listener.remove_termination_listener(self._on_lost)
            await listener.close()

    def _on_notify(self, _con: object, _pid: int, _channel: str, payload: str) -> None:
        self.forget(int(payload))

    def _on_lost(self, _con: object) -> None:
        self._listening, self._listener = False, None
        self._tracked.clear()
        if not self._closed:
            log.warning("Config change listener lost; reconnecting")
            self._relisten = asyncio.get_running_loop().create_task(self._relisten_loop())

    async def _relisten_loop(self) -> None:
        delay = 0.5
        while not self._closed and not self._listening:
            await self.start()
            if not self._listening:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)


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
                 on_award: Callable[[XPEvent, Award], Awaitable[None]] | None = None,
                 retry_delay: float = 0.5, max_batch: int = 100, max_inflight: int = 4):
        self.db = db
        self.limit = limit
        self.spool = Path(spool) if spool else None
        self.on_award = on_award          # called once per award that changed XP (level-up posts)
        self.retry_delay = retry_delay
        self.max_batch = max_batch
        self.max_inflight = max_inflight
        self.pending: collections.deque[Kept] = collections.deque()  # kept in an outage
        self.dropped = 0
        self.events = 0           # RP and HF events submitted
        self.round_trips = 0      # database calls made for them
        self._buffer: list[tuple[Kept, asyncio.Future]] = []
        self._flushers: set[asyncio.Task] = set()
        self._replayer: asyncio.Task | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    # -- submitting ------------------------------------------------------------

    async def rp(self, message: RPMessage, *, at: dt.datetime | None = None) -> Award | None:
        """Award RP XP for one message; None when kept for later (database unavailable).
        `at` (the message's time) is the day a kept message counts on."""
        future = self.submit_rp(message, at=at)
        return None if future is None else await future

    def submit_rp(self, message: RPMessage, *, at: dt.datetime | None = None) -> asyncio.Future | None:
        """`rp` without waiting: the future of the award, or None when kept for later. What
        waits for the database is then this small event, not the caller (and what it holds)."""
        self.events += 1
        if self.pending:
            self._keep((message, at))
            return None
        future = asyncio.get_running_loop().create_future()
        self._buffer.append(((message, at), future))
        self._idle.clear()
        if len(self._flushers) < self.max_inflight:
            task = asyncio.get_running_loop().create_task(self._flush())
            self._flushers.add(task)
            task.add_done_callback(self._flusher_done)
        return future

    async def hf(self, result: HFResult, *, at: dt.datetime | None = None) -> Award | None:
        """Award HF XP for one hunting/foraging result now, or keep it; None when kept."""
        self.events += 1
        if not self.pending:
            try:
                return await self._apply_hf(result, None)
            except Exception as e:
                if not is_unavailable(e):
                    raise
                self._unavailable(e)
        self._keep((result, at))
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
                    self._keep(item)
                # everything still buffered arrived after this batch: keep it behind it
                rest, self._buffer = self._buffer, []
                for item, future in rest:
                    self._keep(item)
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

    async def _apply_rp(self, items: list[Kept], live: bool) -> list[Award]:
        messages = [m for m, _ in items]
        # live messages count at the database's clock; replayed ones at their own time
        now = None if live else [at for _, at in items]
        awards = await self._write(lambda: self.db.award_rp_many(messages, now=now))
        for message, award in zip(messages, awards):
            await self._announce(message, award)
        return awards

    async def _apply_hf(self, result: HFResult, at: dt.datetime | None) -> Award:
        award = await self._write(lambda: self.db.award_hf(
            result.guild_id, result.channel_ids, result.name, result.mentions, result.success,
            message_id=result.message_id, now=at))
        await self._announce(result, award)
        return award

    async def _write(self, call: Callable[[], Awaitable]) -> Any:
        """One database call for XP; made again if PostgreSQL rolled it back (it counts each
        message once anyway)."""
        def counted() -> Awaitable:
            self.round_trips += 1
            return call()
        return await again_if_rolled_back(counted, "XP write")

    async def _announce(self, event: XPEvent, award: Award) -> None:
        """Tell `on_award`; its failures are logged, never undo or repeat the award."""
        if self.on_award is not None and award.status == "awarded":
            try:
                await self.on_award(event, award)
            except Exception:
                log.exception("on_award callback failed for award %r", award)

    # -- keeping and replaying -------------------------------------------------------

    def _unavailable(self, exc: BaseException) -> None:
        if not self.pending:
            log.warning("Database unavailable (%s): keeping XP events until it returns",
                        type(exc).__name__)

    def _keep(self, item: Kept) -> None:
        if len(self.pending) >= self.limit:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("Pending XP queue full (%d events): %d event(s) dropped so far",
                          self.limit, self.dropped)
            return
        self.pending.append(item)
        self._idle.clear()
        if self._replayer is None or self._replayer.done():
            self._replayer = asyncio.get_running_loop().create_task(self._replay())

    async def _replay(self) -> None:
        delay = self.retry_delay
        while self.pending:
            await asyncio.sleep(0)  # let a failing batch finish moving its events here
            event, at = self.pending[0]
            count = 1
            if isinstance(event, RPMessage):  # replay consecutive RP events together
                while (count < len(self.pending) and count < self.max_batch
                       and isinstance(self.pending[count][0], RPMessage)):
                    count += 1
            try:
                if isinstance(event, RPMessage):
                    await self._apply_rp([self.pending[i] for i in range(count)], live=False)
                else:
                    await self._apply_hf(event, at)
            except Exception as e:
                if is_unavailable(e):
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
                    continue
                log.exception("Kept XP event(s) could not be applied; skipped: %r", event)
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
            for event, at in self.pending:
                kind = "rp" if isinstance(event, RPMessage) else "hf"
                record = {"kind": kind, **asdict(event), "now": at.isoformat() if at else None}
                f.write(json.dumps(record) + "\n")
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
                at = dt.datetime.fromisoformat(record.pop("now")) if record.get("now") else None
                record.pop("now", None)
                event = RPMessage(**record) if kind == "rp" else HFResult(**record)
                self._keep((event, at))
                count += 1
        self.spool.unlink()
        return count
