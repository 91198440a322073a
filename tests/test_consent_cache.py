"""The consent cache of a bot process, against a real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

from middleware.consent import ConsentCache
from middleware.keys import Keys
from middleware.store import Store


class GatedReads:
    """The real asyncio client whose HGETALL waits for a gate: a read that is slow to come back,
    so that a consent change lands while it is in flight."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self.gate = asyncio.Event()
        self.reading = asyncio.Event()

    async def hgetall(self, key: str) -> Any:
        h = await self.client.hgetall(key)
        self.reading.set()
        await self.gate.wait()
        return h

    def pubsub(self) -> Any:
        return self.client.pubsub()


async def test_a_read_that_spans_a_change_is_not_cached(redis_url, rconn, prefix):
    keys = Keys(prefix)
    client = aioredis.Redis.from_url(redis_url)
    gated = GatedReads(client)
    cache = ConsentCache(keys, lambda: gated)   # type: ignore[arg-type, return-value]
    cache.start()
    try:
        assert await cache.wait_subscribed()
        user = "u_" + "ab" * 16
        lookup = asyncio.ensure_future(cache.get(user))        # the user's next message
        await gated.reading.wait()                               # read: no consent yet
        Store(rconn, keys).grant(user, "es:test", "es", "command")   # "/consent yes", meanwhile
        cache.invalidate(user, "grant")
        gated.gate.set()
        assert not (await lookup).active                         # what the read saw
        assert cache.peek(user) is None                          # ... is not kept as the truth
        assert (await cache.get(user)).active
        assert cache.peek(user) is not None and cache.peek(user).active   # a clean read is kept
    finally:
        await cache.stop()
        await client.aclose()
