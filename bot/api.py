"""The REST admin API: the seed's /webhook/training/* endpoints, behind a bearer token.

Every error is `{"success": false, "error": "what is wrong"}` with a 4xx status (503 when the
admin token is not configured). Blocking work (Redis scans, processing, export) runs in threads.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from middleware.pseudonym import resolve_user
from workers import gdpr
from workers.runtime import Runtime
from workers.stats import snapshot
from workers.tasks import Processor

log = logging.getLogger("tuneloop.api")

PREFIX = "/webhook/training"
RT_KEY: web.AppKey[Runtime] = web.AppKey("tuneloop_runtime", Runtime)
CAPTURE_KEY: web.AppKey[Any] = web.AppKey("tuneloop_capture", object)
PROCESSOR_KEY: web.AppKey[Any] = web.AppKey("tuneloop_processor", object)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class APIError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error(status: int, message: str) -> web.Response:
    return web.json_response({"success": False, "error": message}, status=status)


@web.middleware
async def admin_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer token for every admin path; JSON errors for everything under it."""
    if not request.path.startswith(PREFIX + "/"):
        return await handler(request)
    token = request.app[RT_KEY].env.admin_token
    if not token:
        return error(503, "the admin API is disabled: set TUNELOOP_ADMIN_TOKEN")
    given = request.headers.get("Authorization", "")
    if not given.startswith("Bearer "):
        return error(401, "missing bearer token (Authorization: Bearer <TUNELOOP_ADMIN_TOKEN>)")
    if not hmac.compare_digest(given[7:].strip().encode(), token.encode()):
        return error(403, "wrong admin token")
    try:
        return await handler(request)
    except APIError as e:
        return error(e.status, e.message)
    except web.HTTPException as e:
        if e.status >= 400:
            return error(e.status, e.reason or "request refused")
        raise


async def _body(request: web.Request) -> dict[str, Any]:
    if request.content_length == 0 or not request.can_read_body:
        return {}
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise APIError(400, "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise APIError(400, "the body must be a JSON object")
    return data


def _number(data: dict[str, Any], key: str, lo: float, hi: float, integer: bool = False,
            default: Any = None) -> Any:
    if key not in data or data[key] is None:
        return default
    v = data[key]
    if isinstance(v, bool) or not isinstance(v, int | float) or (integer and not isinstance(v, int)):
        raise APIError(400, f"{key} must be {'a whole number' if integer else 'a number'}")
    if not lo <= v <= hi:
        raise APIError(400, f"{key} must be between {lo:g} and {hi:g}")
    return v


def _unknown(data: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        raise APIError(400, f"unknown field(s): {', '.join(extra)} (allowed: {', '.join(sorted(allowed))})")


def _user(request: web.Request) -> str:
    uid = request.match_info["user_id"]
    try:
        resolve_user(uid, request.app[RT_KEY].pseudonymizer)
    except ValueError as e:
        raise APIError(400, f"user_id: {e}") from None
    return uid


async def _thread(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args, **kw))


# ------------------------------------------------------------------------------------ handlers

async def get_stats(request: web.Request) -> web.Response:
    rt = request.app[RT_KEY]
    return web.json_response(await _thread(snapshot, rt.handle.sync, rt.keys))


async def post_process(request: web.Request) -> web.Response:
    data = await _body(request)
    _unknown(data, {"max_items"})
    n = _number(data, "max_items", 1, 1_000_000, integer=True, default=100)
    proc = request.app.get(PROCESSOR_KEY) or Processor(request.app[RT_KEY])
    res = await _thread(proc.process_pending, n)
    return web.json_response({"success": True, "results": res.public()})


async def post_export(request: web.Request) -> web.Response:
    from workers.export import export

    data = await _body(request)
    _unknown(data, {"min_confidence", "train_split", "format", "source", "seed", "max_examples",
                    "since", "until"})
    kw: dict[str, Any] = {
        "min_confidence": _number(data, "min_confidence", 0, 1),
        "train_split": _number(data, "train_split", 0, 1),
        "seed": _number(data, "seed", -(2**31), 2**31, integer=True, default=0),
        "max_examples": _number(data, "max_examples", 1, 10**9, integer=True),
    }
    fmt = data.get("format", "chat")
    if fmt not in ("chat", "prompt-completion", "nlu"):
        raise APIError(400, "format must be chat, prompt-completion or nlu")
    source = data.get("source", "processed")
    if source not in ("processed", "reviewed", "both"):
        raise APIError(400, "source must be processed, reviewed or both")
    for k in ("since", "until"):
        if data.get(k) is not None and not isinstance(data[k], str):
            raise APIError(400, f"{k} must be a date string (YYYY-MM-DD)")
    try:
        res = await _thread(export, request.app[RT_KEY], fmt=fmt, source=source, since=data.get("since"),
                            until=data.get("until"), **kw)
    except ValueError as e:
        raise APIError(400, str(e)) from None
    return web.json_response(res, status=200)


async def get_consent(request: web.Request) -> web.Response:
    uid = _user(request)
    return web.json_response(await _thread(gdpr.consent_get, request.app[RT_KEY], uid))


async def post_consent(request: web.Request) -> web.Response:
    uid = _user(request)
    data = await _body(request)
    _unknown(data, {"consent", "lang"})
    if not isinstance(data.get("consent"), bool):
        raise APIError(400, "consent must be true or false")
    lang = data.get("lang")
    if lang is not None and not isinstance(lang, str):
        raise APIError(400, "lang must be a language code such as es or en")
    rt = request.app[RT_KEY]
    cap = request.app.get(CAPTURE_KEY)
    local = None
    if not data["consent"] and cap is not None:
        local = await cap.core.erase_user_local(rt.resolve(uid))
    out = await _thread(gdpr.consent_set, rt, uid, data["consent"], "api", lang)
    if "erased" in out and local is not None:
        for k, v in local.items():
            out["erased"][k] = out["erased"].get(k, 0) + v
    return web.json_response(out)


async def delete_user(request: web.Request) -> web.Response:
    uid = _user(request)
    rt = request.app[RT_KEY]
    cap = request.app.get(CAPTURE_KEY)
    local = await cap.core.erase_user_local(rt.resolve(uid)) if cap is not None else None
    return web.json_response(await _thread(gdpr.forget, rt, uid, "api", local))


async def get_records(request: web.Request) -> web.Response:
    rt = request.app[RT_KEY]
    status = request.query.get("status", "")
    if status not in ("approved", "needs_review", "rejected", "pending"):
        raise APIError(400, "status must be approved, needs_review, rejected or pending")
    try:
        limit = int(request.query.get("limit", "50"))
        cursor = int(request.query.get("cursor", "0"))
    except ValueError:
        raise APIError(400, "limit and cursor must be whole numbers") from None
    if not 1 <= limit <= 1000 or cursor < 0:
        raise APIError(400, "limit must be between 1 and 1000, cursor 0 or more")

    def page() -> tuple[list[dict[str, Any]], int]:
        out: list[dict[str, Any]] = []
        cur = cursor
        while True:
            cur, ids = rt.store.status_ids(status, cur, count=max(limit, 100))
            out += [r.public() for r in rt.store.get_many(ids) if r is not None]
            if cur == 0 or len(out) >= limit:
                return out, cur

    records, nxt = await _thread(page)
    return web.json_response({"success": True, "records": records, "next_cursor": nxt or None})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{PREFIX}/stats", get_stats)
    r.add_post(f"{PREFIX}/process", post_process)
    r.add_post(f"{PREFIX}/export", post_export)
    r.add_get(f"{PREFIX}/consent/{{user_id}}", get_consent)
    r.add_post(f"{PREFIX}/consent/{{user_id}}", post_consent)
    r.add_delete(f"{PREFIX}/users/{{user_id}}", delete_user)
    r.add_get(f"{PREFIX}/records", get_records)
