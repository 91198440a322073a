"""Redis misbehaving: stopped, evicting, written with another secret. The bot never notices;
capture degrades and catches up. Each test runs a redis-server of its own."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from middleware.config import Env
from bot.standins.botapi import message_update
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
        server.stop()
        for i in range(20):   # a steady rate while Redis is away
            await feed(dp, bot, message_update(11, f"¿y la talla 21/25? intento {i}"))
            sent += 1
            await asyncio.sleep(0.05)
        answers = [s for s in botapi.sent() if s["text"].startswith("¡Perfecto!")]
        assert len(answers) == sent   # every message answered while Redis was down
        assert cap.core.buffered > 0
        server.start()
        import redis

        r = redis.Redis.from_url(server.url)
        assert await wait_until(lambda: r.zcard("tl:idx:time") == sent, 20)
        stats = {k.decode(): int(v) for k, v in r.hgetall("tl:stats").items()}
        assert stats["captured"] == sent and stats.get("dropped", 0) == 0
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
