"""Redis misbehaving: stopped, evicting, written with another secret. The bot never notices;
capture degrades and catches up. Each test runs a redis-server of its own."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from bot.standins.botapi import message_update
from middleware.config import Env
from tests.conftest import ROOT, SECRET, OwnRedis, make_config
from tests.harness import feed, make_bot, wait_until


def own_env(tmp_path, url: str, secret: str = SECRET) -> Env:
    return Env(config_path=ROOT / "config.yaml", redis_url=url, data_dir=tmp_path / "data", secret=secret)


async def test_redis_stopped_mid_test_bot_answers_and_nothing_is_lost(botapi, tmp_path):
    server = OwnRedis("--appendonly", "yes", "--appendfsync", "always").start()
    try:
        config = make_config("tl:")
        env = own_env(tmp_path, server.url)
        dp, bot, cap = await make_bot(botapi, config, env)
        await feed(dp, bot, message_update(11, "/consent yes"))
        sent = 0
        for i in range(10):
            await feed(dp, bot, message_update(11, f"precio HLSO 16/20 número {i}"))
            sent += 1
        await cap.flush()
        assert await consent_cached(cap, "telegram:11")
        server.stop()
        for i in range(20):   # a steady rate while Redis is away
            await feed(dp, bot, message_update(11, f"¿y la talla 21/25? intento {i}"))
            sent += 1
            await asyncio.sleep(0.05)
        answers = [s for s in botapi.sent() if s["text"].startswith("¡Perfecto!")]
        assert len(answers) == sent   # every message answered while Redis was down
        await cap.flush(2)
        assert cap.core.journal.pending()   # spilled to disk, anonymized
        import json

        lines = [json.loads(ln) for p in (tmp_path / "data" / "spill").glob("*.jsonl")
                 for ln in p.read_text().splitlines()]
        assert len(lines) == 20 and all(ln["u"].startswith("u_") for ln in lines)
        assert any("intento 3" in json.loads(ln["c"])["content"] for ln in lines)
        server.start()
        import redis

        r = redis.Redis.from_url(server.url)
        assert await wait_until(lambda: r.zcard("tl:idx:time") == sent, 20)
        stats = {k.decode(): int(v) for k, v in r.hgetall("tl:stats").items()}
        assert stats["captured"] == sent and stats.get("dropped", 0) == 0
        assert await wait_until(lambda: int(r.hget("tl:stats", "replayed") or 0) == 20, 5)
        assert int(r.hget("tl:stats", "spilled")) == 20
        await cap.close()
    finally:
        server.close()


async def test_evicting_redis_keeps_capture_off_and_worker_refuses(botapi, tmp_path):
    server = OwnRedis("--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru").start()
    try:
        config = make_config("tl:")
        env = own_env(tmp_path, server.url)
        from aiogram import Dispatcher

        from middleware import TrainingCapture
        from tests.harness import shop_router

        dp = Dispatcher()
        dp.include_router(shop_router())
        cap = TrainingCapture(config, env)
        cap.setup(dp)
        await cap.start()
        bot = botapi.bot()
        await wait_until(lambda: cap.core.last_check_error is not None, 5)
        assert "maxmemory-policy" in cap.core.last_check_error and not cap.core.ready
        await feed(dp, bot, message_update(12, "/consent yes"))
        await feed(dp, bot, message_update(12, "precio?"))
        assert botapi.sent()[-1]["text"].startswith("¡Perfecto!")
        await cap.close()
        import redis

        assert redis.Redis.from_url(server.url).hlen("tl:stats") == 0
        environ = dict(os.environ, REDIS_URL=server.url, TUNELOOP_SECRET=SECRET,
                       TUNELOOP_CONFIG=str(ROOT / "config.yaml"))
        p = subprocess.run([sys.executable, "-m", "bot.cli", "worker", "--burst"], env=environ, cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 1 and "maxmemory-policy" in p.stderr and "Traceback" not in p.stderr
    finally:
        server.close()


async def test_another_secret_keeps_capture_off(botapi, tmp_path, own_redis):
    config = make_config("tl:")
    dp, bot, cap = await make_bot(botapi, config, own_env(tmp_path, own_redis.url, "first-secret"))
    await cap.close()
    from middleware import TrainingCapture

    cap2 = TrainingCapture(config, own_env(tmp_path, own_redis.url, "second-secret"))
    await cap2.start()
    await wait_until(lambda: cap2.core.last_check_error is not None, 5)
    assert "TUNELOOP_SECRET" in cap2.core.last_check_error and not cap2.core.ready
    await cap2.close()


async def consent_cached(cap, user_id: str) -> bool:
    """Look consent up until this process keeps it in its cache."""
    p = cap.core.pseudonymize(user_id)
    for _ in range(50):
        if cap.core.cache.peek(p) is not None:
            return True
        await cap.core.cache.get(p)
        await asyncio.sleep(0.01)
    return False


async def test_journal_of_a_crashed_process_is_replayed_and_erasure_reaches_it(botapi, tmp_path):
    server = OwnRedis("--appendonly", "yes", "--appendfsync", "always").start()
    try:
        import redis

        config = make_config("tl:")
        env = own_env(tmp_path, server.url)
        dp, bot, cap = await make_bot(botapi, config, env)
        for uid in (21, 22):
            await feed(dp, bot, message_update(uid, "/consent yes"))
            await feed(dp, bot, message_update(uid, "hola"))
        # consent cached in this process (a read that met the grant's own pub/sub echo is not kept)
        for uid in (21, 22):
            assert await consent_cached(cap, f"telegram:{uid}")
        await cap.flush()
        server.stop()
        for i in range(6):
            await feed(dp, bot, message_update(21 + i % 2, f"HOSO 30/40 pedido {i}"))
        await cap.flush(2)
        await cap.close()           # the process goes away with its records on disk only
        assert list((tmp_path / "data" / "spill").glob("*.jsonl"))
        server.start()
        # user 22 is erased through the CLI path while the records sit in the journal
        from middleware.redis_conn import connect
        from workers import gdpr
        from workers.runtime import Runtime

        rt = Runtime(config, env, connect(env))
        out = gdpr.forget(rt, "telegram:22", "cli")
        assert out["erased"]["journal"] == 3
        dp2, bot2, cap2 = await make_bot(botapi, config, env)   # a new process replays the journal
        r = redis.Redis.from_url(server.url)
        assert await wait_until(lambda: r.zcard("tl:idx:time") == 4, 10)   # 1 + 3 of user 21
        assert rt.store.user_record_ids(rt.pseudonymizer("telegram:22")) == []
        assert not any(p.stat().st_size for p in (tmp_path / "data" / "spill").glob("*.jsonl"))
        await cap2.close()
    finally:
        server.close()
