"""Reliability of the XP path when PostgreSQL goes away: nothing lost, nothing counted twice."""
from __future__ import annotations

import asyncio
import datetime as dt
from urllib.parse import urlsplit

import pytest

from database import Database, DatabaseUnavailable, HFResult, RPMessage, is_unavailable
from helpers import setup_guild
from xp_queue import XPQueue

G, RP = 8001, 81
RATE = 10
PLAYERS = [8100 + i for i in range(10)]
NOW = dt.datetime(2026, 6, 15, 12, 0, tzinfo=dt.timezone.utc)


async def prepare(db: Database) -> None:
    """One channel tracked for RP and HF, one XP per RATE characters, no cap to speak of."""
    await setup_guild(db, G, rp=[RP], hf=[RP], rate=RATE, cap=1_000_000,
                      characters=[(p, f"P{p}") for p in PLAYERS])


async def prepared(url: str, max_size: int) -> Database:
    """A connected Database on `url`, prepared."""
    db = Database(url, max_size=max_size)
    await db.connect()
    await prepare(db)
    return db


async def xp_by_player(db: Database) -> dict[int, int]:
    rows = await db.pool.fetch("SELECT user_id, xp FROM characters WHERE guild_id = $1", G)
    return {r["user_id"]: r["xp"] for r in rows}


async def test_postgres_restart_under_a_stream_of_messages_loses_no_xp(own_server):
    db = await prepared(own_server.url, max_size=4)
    pending = XPQueue(db, retry_delay=0.1)
    sent: dict[int, int] = {p: 0 for p in PLAYERS}
    kept = 0

    async def stream():
        nonlocal kept
        for i in range(1500):
            player = PLAYERS[i % len(PLAYERS)]
            sent[player] += 10  # each message is exactly one XP
            award = await pending.rp(RPMessage(G, RP, None, player, 10, i + 1), at=NOW)
            kept += award is None
            await asyncio.sleep(0.001)

    async def outage():
        await asyncio.sleep(0.3)
        await asyncio.to_thread(own_server.stop)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(own_server.start)

    await asyncio.gather(stream(), outage())
    assert await pending.drain(timeout=60)
    assert kept > 0, "the outage should have happened during the stream"
    assert pending.dropped == 0
    assert await xp_by_player(db) == {p: n // RATE for p, n in sent.items()}
    # the pool recovered by itself: ordinary queries work again
    assert (await db.get_config(G)).char_per_rp == RATE
    await db.close()


async def test_commands_during_an_outage_get_a_retryable_error_not_a_crash(own_server):
    db = await prepared(own_server.url, max_size=2)
    await asyncio.to_thread(own_server.stop)
    try:
        with pytest.raises(Exception) as err:
            await db.list_characters(G, PLAYERS[0])
        assert is_unavailable(err.value)
        assert "try again" in str(DatabaseUnavailable())
    finally:
        await asyncio.to_thread(own_server.start)
    assert len(await db.list_characters(G, PLAYERS[0])) == 1
    await db.close()


class CuttingProxy:
    """A TCP proxy to PostgreSQL that can swallow the server's next reply and cut the
    connection: the award commits, but the bot never hears that it did."""

    def __init__(self, port: int):
        self.port = port
        self.cut_next_reply = False
        self.cuts = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _client(self, creader, cwriter):
        sreader, swriter = await asyncio.open_connection("127.0.0.1", self.port)

        async def pump(reader, writer, from_server):
            try:
                while data := await reader.read(65536):
                    if from_server and self.cut_next_reply:
                        self.cut_next_reply = False
                        self.cuts += 1
                        await asyncio.sleep(0.2)  # the server has committed by now
                        break
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                for w in (cwriter, swriter):
                    w.close()

        await asyncio.gather(pump(creader, swriter, False), pump(sreader, cwriter, True))

    async def close(self):
        self.server.close()


async def test_an_award_whose_reply_was_lost_is_retried_and_counted_once(db, database_url):
    await prepare(db)
    proxy = CuttingProxy(urlsplit(database_url).port)
    port = await proxy.start()
    proxied_url = database_url.replace(f":{urlsplit(database_url).port}/", f":{port}/")
    proxied = Database(proxied_url, min_size=1, max_size=1)
    await proxied.connect()
    pending = XPQueue(proxied, retry_delay=0.05)
    try:
        proxy.cut_next_reply = True
        first = await pending.rp(RPMessage(G, RP, None, PLAYERS[0], 30, 777), at=NOW)
        assert first is None and proxy.cuts == 1          # the bot saw a lost connection
        assert await pending.drain(timeout=30)
        assert (await xp_by_player(db))[PLAYERS[0]] == 3  # committed once, not twice
        again = await pending.rp(RPMessage(G, RP, None, PLAYERS[0], 30, 777))
        assert again.status == "duplicate"
    finally:
        await proxied.close()
        await proxy.close()


async def test_pending_events_survive_a_shutdown_in_a_spool_file(own_server, tmp_path):
    db = await prepared(own_server.url, max_size=2)
    spool = tmp_path / "not-yet-created" / "pending.jsonl"
    pending = XPQueue(db, spool=spool, retry_delay=0.05)
    await asyncio.to_thread(own_server.stop)
    for i in range(4):
        await pending.rp(RPMessage(G, RP, None, PLAYERS[0], 10, 900 + i), at=NOW)
    await pending.hf(HFResult(G, (RP,), f"P{PLAYERS[0]}", (), True, 999), at=NOW)
    assert pending.save() == 5 and spool.exists()
    await db.close()

    await asyncio.to_thread(own_server.start)      # the next start of the bot
    db = Database(own_server.url, max_size=2)
    await db.connect()
    restarted = XPQueue(db, spool=spool)
    assert restarted.load() == 5 and not spool.exists()
    assert await restarted.drain(timeout=30)
    assert (await xp_by_player(db))[PLAYERS[0]] == 4 + 6  # four RP XP, one HF success
    await db.close()


async def test_a_full_pending_queue_drops_new_events_and_says_so(own_server, caplog):
    db = await prepared(own_server.url, max_size=2)
    await asyncio.to_thread(own_server.stop)
    pending = XPQueue(db, limit=3, retry_delay=0.05)
    try:
        for i in range(5):
            await pending.rp(RPMessage(G, RP, None, PLAYERS[0], 10, i + 1), at=NOW)
        assert len(pending.pending) == 3 and pending.dropped == 2
        assert "queue full" in caplog.text
    finally:
        await asyncio.to_thread(own_server.start)
    assert await pending.drain(timeout=30)
    await db.close()


async def test_a_process_starting_while_xp_is_written_costs_no_xp(db, database_url):
    """Applying the schema (every process does at start-up) locks tables in its own order:
    an award batch PostgreSQL rolls back as a deadlock victim is written again, not lost."""
    await prepare(db)
    queue = XPQueue(db)
    starting = Database(database_url, max_size=1)
    await starting.connect()

    async def starts() -> None:
        for _ in range(2):
            await starting.apply_schema()

    async def messages() -> list:
        return await asyncio.gather(*(queue.rp(RPMessage(G, RP, None, PLAYERS[i % len(PLAYERS)], RATE, i + 1),
                                               at=NOW) for i in range(3000)))
    try:
        awards, _ = await asyncio.gather(messages(), starts())
    finally:
        await starting.close()
    assert all(a.status == "awarded" for a in awards)
    assert await xp_by_player(db) == {p: 300 for p in PLAYERS}
