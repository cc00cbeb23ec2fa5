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
    try:
        results = await asyncio.gather(*(cache.get(G) for _ in range(200)))
    finally:
        await cache.close()
    assert cache.reads == 1 and set(results) == {(frozenset({RP}), frozenset())}


async def test_messages_from_many_guilds_on_a_cold_cache_share_reads(db):
    guilds = range(5000, 7500)  # every third one has settings (the others track nothing)
    await db.pool.executemany("INSERT INTO config (guild_id, rp_channels, hf_channels) VALUES ($1, $2, $3)",
                              [(g, [g * 10], [g * 10 + 1]) for g in guilds if g % 3 == 0])
    cache = TrackedChannels(db)
    await cache.start()
    try:
        results = await asyncio.gather(*(cache.get(g) for g in [*guilds, *guilds]))
        assert cache.reads == 3  # 2,500 guilds, TrackedChannels.READ_BATCH (1,000) at a time
        assert await cache.get(guilds[0]) == results[0] and cache.reads == 3  # cached
    finally:
        await cache.close()
    expected = [(frozenset({g * 10}), frozenset({g * 10 + 1})) if g % 3 == 0 else (frozenset(), frozenset())
                for g in guilds]
    assert results == expected * 2


async def test_a_change_while_its_guild_is_being_read_is_not_hidden_by_that_read(db):
    cache = TrackedChannels(db)
    await cache.start()
    read, answered, release = db.tracked_channels, asyncio.Event(), asyncio.Event()

    async def slow_read(guild_ids):
        found = await read(guild_ids)
        answered.set()
        await release.wait()
        return found
    db.tracked_channels = slow_read
    try:
        before = asyncio.ensure_future(cache.get(G))
        await answered.wait()                       # this read saw no channel tracked
        db.tracked_channels = read
        await db.add_channel(G, "rp", RP)           # this process: the cache forgets G at once
        assert await cache.get(G) == (frozenset({RP}), frozenset())  # a read of its own, not held up
        release.set()
        assert await before == (frozenset(), frozenset())  # the old read answers its own waiters...
        assert await cache.get(G) == (frozenset({RP}), frozenset())  # ...and is not cached
        assert cache.reads == 2
    finally:
        release.set()
        await cache.close()


async def test_a_failed_read_fails_its_waiters_and_the_next_message_reads_again(db):
    await db.add_channel(G, "rp", RP)
    cache = TrackedChannels(db)
    await cache.start()
    read = db.tracked_channels

    async def failing(guild_ids):
        raise ConnectionResetError("lost")
    db.tracked_channels = failing
    try:
        results = await asyncio.gather(cache.get(G), cache.get(G + 1), return_exceptions=True)
        assert [type(r) for r in results] == [ConnectionResetError] * 2 and cache.reads == 1
        db.tracked_channels = read
        assert await cache.get(G) == (frozenset({RP}), frozenset()) and cache.reads == 2
    finally:
        await cache.close()


async def test_without_a_listener_the_cache_is_not_trusted(db):
    cache = TrackedChannels(db)                    # never started: no NOTIFY would reach it
    assert await cache.get(G) == (frozenset(), frozenset())
    await db.pool.execute("INSERT INTO config (guild_id, rp_channels) VALUES ($1, ARRAY[$2::bigint])", G, RP)
    assert await cache.get(G) == (frozenset({RP}), frozenset())
