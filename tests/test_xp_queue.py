"""The XP listener's cache of tracked channels (xp_queue.TrackedChannels), on real PostgreSQL."""
from __future__ import annotations

import asyncio

from database import Database
from xp_queue import TrackedChannels

G, RP = 1001, 11


async def test_tracked_channel_cache_is_invalidated_across_processes(db, database_url):
    other = Database(database_url, max_size=2)
    await other.connect()
    cache = TrackedChannels(other)
    await cache.start()
    try:
        assert await cache.get(G) == (frozenset(), frozenset())
        await db.add_channel(G, "rp", RP)          # another process changes the config
        for _ in range(100):                       # the NOTIFY arrives asynchronously
            if await cache.get(G) == (frozenset({RP}), frozenset()):
                break
            await asyncio.sleep(0.02)
        assert await cache.get(G) == (frozenset({RP}), frozenset())
        await other.remove_channel(G, "rp", RP)    # this process: forgotten at once
        assert await cache.get(G) == (frozenset(), frozenset())
    finally:
        await cache.close()
        await other.close()


async def test_a_burst_of_messages_on_a_cold_cache_reads_the_config_once(db):
    await db.add_channel(G, "rp", RP)
    cache = TrackedChannels(db)
    await cache.start()
    reads = 0
    original = db.get_config

    async def counting_get_config(guild_id):
        nonlocal reads
        reads += 1
        return await original(guild_id)

    db.get_config = counting_get_config
    try:
        results = await asyncio.gather(*(cache.get(G) for _ in range(200)))
    finally:
        await cache.close()
    assert reads == cache.reads == 1 and set(results) == {(frozenset({RP}), frozenset())}


async def test_without_a_listener_the_cache_is_not_trusted(db):
    cache = TrackedChannels(db)                    # never started: no NOTIFY would reach it
    assert await cache.get(G) == (frozenset(), frozenset())
    await db.pool.execute("INSERT INTO config (guild_id, rp_channels) VALUES ($1, ARRAY[$2::bigint])", G, RP)
    assert await cache.get(G) == (frozenset({RP}), frozenset())
