"""Building blocks for the Telegram tests: a real Dispatcher, real Update JSON, tuneloop attached."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import redis
from aiogram import Bot, Dispatcher, Router
from aiogram.methods import SendMessage
from aiogram.types import Message, Update
from faker import Faker

from middleware import TrainingCapture
from middleware.config import Config, Env

fake = Faker(["es_ES", "en_US"])
Faker.seed(1234)


def shop_router(reply: Callable[[str], str] | None = None, returned: bool = False) -> Router:
    """The bot's own handler: answers every text message (awaited, or returned as a method)."""
    router = Router()

    @router.message()
    async def answer(message: Message) -> Any:
        text = reply(message.text or "") if reply else f"¡Perfecto! Recibido: {len(message.text or '')} caracteres"
        if returned:
            return SendMessage(chat_id=message.chat.id, text=text)
        await message.answer(text)
        return None

    return router


async def make_bot(botapi: Any, config: Config, env: Env, router: Router | None = None,
                   capture: bool = True, **kw: Any) -> tuple[Dispatcher, Bot, TrainingCapture | None]:
    dp = Dispatcher()
    dp.include_router(router or shop_router())
    cap = None
    if capture:
        cap = TrainingCapture(config, env, **kw)
        cap.setup(dp)
        await cap.start()
        await wait_until(lambda: cap.core.ready, 10)
        await cap.core.cache.wait_subscribed()
    return dp, botapi.bot(), cap


async def feed(dp: Dispatcher, bot: Bot, update: dict[str, Any]) -> Any:
    return await dp.feed_update(bot, Update.model_validate(update, context={"bot": bot}))


async def wait_until(pred: Callable[[], Any], timeout: float = 5.0, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(step)
    return bool(pred())


def all_values(c: redis.Redis, prefix: str, queue: str) -> bytes:
    """Every byte stored under tuneloop's prefix and RQ's keys for its queue (for leak scans)."""
    out = []
    keys = list(c.scan_iter(match=f"{prefix}*")) + list(c.scan_iter(match="rq:*"))
    for k in keys:
        out.append(k)
        t = c.type(k)
        if t == b"string":
            v = c.get(k)
            out.append(v or b"")
        elif t == b"hash":
            for f, v in c.hgetall(k).items():
                out.extend((f, v))
        elif t == b"list":
            out.extend(c.lrange(k, 0, -1))
        elif t == b"set":
            out.extend(c.smembers(k))
        elif t == b"zset":
            out.extend(m for m, _ in c.zrange(k, 0, -1, withscores=True))
    return b"\n".join(out)


def counters(c: redis.Redis, prefix: str) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in c.hgetall(f"{prefix}stats").items()}


def sums_hold(rt: Any) -> dict[str, int]:
    """ARCHITECTURE.md's two sums, asserted on one atomic snapshot; the pipeline figures back."""
    from workers.stats import snapshot

    s = snapshot(rt.handle.sync, rt.keys)["pipeline"]
    assert s["captured"] == s["filtered_out"] + s["analyzed"] + s["queue_size"] + s["discarded"], s
    assert s["analyzed"] == s["qa_passed"] + s["qa_failed"] + s["needs_review"], s
    return s
