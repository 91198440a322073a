"""`tuneloop serve`: the reference bot with tuneloop attached, on one aiohttp app.

Telegram by webhook (`POST /telegram/webhook`, checked against TELEGRAM_WEBHOOK_SECRET) or long
polling (`--polling`); WhatsApp by Twilio webhook (`POST /whatsapp/webhook`); the admin API,
/metrics and /healthz. `--worker` runs a worker beside it (the default with embedded Redis, so a
fresh machine processes records with no supervisor).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiohttp import web

from middleware import TrainingCapture
from workers.runtime import Runtime

from .admin import setup_admin
from .app import TELEGRAM_PATH, create_app
from .shop import ShopAssistant, telegram_router, whatsapp_handler

log = logging.getLogger("tuneloop.serve")


def make_bot(rt: Runtime) -> Bot | None:
    token = rt.env.telegram_bot_token
    if not token:
        return None
    if rt.env.telegram_api_server:
        session = AiohttpSession(api=TelegramAPIServer.from_base(rt.env.telegram_api_server))
        return Bot(token, session=session)
    return Bot(token)


def build(rt: Runtime) -> tuple[web.Application, TrainingCapture, Dispatcher, Bot | None]:
    capture = TrainingCapture(rt.config, rt.env, handle=rt.handle)
    assistant = ShopAssistant(rt.config)
    dp = Dispatcher()
    capture.setup(dp)
    setup_admin(dp, capture)
    dp.include_router(telegram_router(assistant))
    bot = make_bot(rt)
    app = create_app(rt, capture, dp, bot, whatsapp_handler(assistant, capture))
    return app, capture, dp, bot


def start_worker_process() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "bot.cli", "worker"], env=dict(os.environ))


async def serve(rt: Runtime, host: str, port: int, polling: bool, with_worker: bool,
                ready: asyncio.Event | None = None) -> None:
    app, capture, dp, bot = build(rt)
    await capture.start()
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.warning("tuneloop serving on http://%s:%d", host, port)
    worker = start_worker_process() if with_worker else None
    tasks: list[asyncio.Task[Any]] = []
    if bot is not None:
        if polling:
            tasks.append(asyncio.create_task(dp.start_polling(bot, handle_signals=False)))
        elif rt.env.public_url and rt.env.telegram_webhook_secret:
            try:
                await bot.set_webhook(rt.env.public_url + TELEGRAM_PATH,
                                      secret_token=rt.env.telegram_webhook_secret)
            except Exception as e:   # Telegram unreachable: the app still serves everything else
                log.warning("could not set the Telegram webhook: %s", type(e).__name__)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    print(f"tuneloop serving on http://{host}:{port}", flush=True)
    try:
        await stop.wait()
    finally:
        if polling and bot is not None:
            with contextlib.suppress(Exception):
                await dp.stop_polling()
        for t in tasks:
            t.cancel()
        await runner.cleanup()
        await capture.close()
        if bot is not None:
            await bot.session.close()
        if worker is not None:
            worker.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.wait(30)


def cmd_serve(a: argparse.Namespace) -> int:
    rt = Runtime.load(check=True)
    with_worker = a.worker if a.worker is not None else rt.env.embedded_redis
    if not a.verbose:
        logging.getLogger("tuneloop").setLevel(logging.INFO)
    asyncio.run(serve(rt, a.host, a.port, a.polling, with_worker))
    return 0
