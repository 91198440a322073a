"""The aiohttp app: webhooks, the REST admin API, /metrics and /healthz."""

from __future__ import annotations

import json
import logging
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.types import Update
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from pydantic import ValidationError

from workers.runtime import Runtime

from . import api
from .metrics import render

log = logging.getLogger("tuneloop.app")
access_log = logging.getLogger("tuneloop.access")

MAX_BODY = 1024 * 1024            # Telegram updates and Twilio forms are far smaller
TELEGRAM_PATH = "/telegram/webhook"
WHATSAPP_PATH = "/whatsapp/webhook"


MAX_JSON_DEPTH = 64               # a real Update nests far less; deeper JSON breaks serializers


def too_deep(obj: Any, limit: int) -> bool:
    """Iterative (no recursion of its own): True when JSON nests deeper than ``limit``."""
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, dict | list):
            if d > limit:
                return True
            stack.extend((v, d + 1) for v in (o.values() if isinstance(o, dict) else o))
    return False


class SafeTelegramHandler(SimpleRequestHandler):
    """aiogram's webhook handler, refusing what it would answer with a 500 (malformed JSON, not
    an Update) with a 4xx, and refusing everything when no secret token is configured."""

    async def handle(self, request: web.Request) -> web.Response:
        if not self.secret_token:
            return web.Response(status=403, text="webhook secret not configured (TELEGRAM_WEBHOOK_SECRET)")
        if not self.verify_secret(request.headers.get("X-Telegram-Bot-Api-Secret-Token", ""), self.bot):
            return web.Response(status=401, text="wrong secret token")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return web.Response(status=413, text="body too large")
        except Exception:   # cut short, badly framed, badly compressed: the sender's error
            return web.Response(status=400, text="unreadable body")
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return web.Response(status=400, text="body is not valid JSON")
        if not isinstance(data, dict):
            return web.Response(status=400, text="body is not a Telegram Update object")
        if too_deep(data, MAX_JSON_DEPTH):
            return web.Response(status=400, text="body nests too deep for a Telegram Update")
        try:
            Update.model_validate(data, context={"bot": self.bot})
        except ValidationError:
            return web.Response(status=400, text="body is not a Telegram Update")
        return await super().handle(request)


class PseudonymAccessLogger(AbstractAccessLogger):
    """Access logs with `{user_id}` path segments shown as pseudonyms, and no query strings."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        path = request.path
        match = getattr(request, "match_info", None)
        uid = match.get("user_id") if match is not None else None
        if uid:
            try:
                rt = request.app[api.RT_KEY]   # type: ignore[attr-defined]
                pseudo = rt.resolve(uid)
            except Exception:
                pseudo = "<invalid-user-id>"
            path = path.replace(uid, pseudo)
        self.logger.info('%s "%s %s" %d %.1fms', request.remote, request.method, path, response.status,
                         time * 1000)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


def create_app(rt: Runtime, capture: Any = None, dp: Dispatcher | None = None, bot: Bot | None = None,
               whatsapp_handler: Any = None, processor: Any = None) -> web.Application:
    middlewares: list[Any] = [api.admin_auth]
    if capture is not None and whatsapp_handler is not None:
        middlewares.append(capture.twilio_middleware(paths=[WHATSAPP_PATH]))
    # handler_args: whatever runner serves the app, its access log shows pseudonyms only
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY,
                          handler_args={"access_log_class": PseudonymAccessLogger, "access_log": access_log})
    app[api.RT_KEY] = rt
    if capture is not None:
        app[api.CAPTURE_KEY] = capture
    if processor is not None:
        app[api.PROCESSOR_KEY] = processor
    api.add_routes(app)
    if dp is not None and bot is not None:
        handler = SafeTelegramHandler(dp, bot, secret_token=rt.env.telegram_webhook_secret)
        app.router.add_post(TELEGRAM_PATH, handler.handle)
    if whatsapp_handler is not None:
        app.router.add_post(WHATSAPP_PATH, whatsapp_handler)

    async def metrics(request: web.Request) -> web.Response:
        body = await api._thread(render, rt, capture)
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def healthz(request: web.Request) -> web.Response:
        def probe() -> dict[str, Any]:
            from rq import Worker

            try:
                rt.handle.sync.ping()
                workers = Worker.count(queue=rt.queue())
                return {"status": "ok", "redis": True, "workers": workers}
            except Exception as e:
                return {"status": "down", "redis": False, "workers": None, "error": type(e).__name__}

        out = await api._thread(probe)
        if capture is not None:
            out["capture_ready"] = capture.core.ready
            out["buffered"] = capture.core.buffered
        return web.json_response(out, status=200 if out["redis"] else 503)

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app
