"""Replies a bot sends through Twilio's REST client while a webhook is being handled.

Twilio's `Client` does all its HTTP through one `http_client` object, so a bot opts in by passing
ours; nothing global is patched:

    from twilio.rest import Client
    from middleware.twilio_rest import twilio_http_client

    client = Client(sid, token, http_client=twilio_http_client())             # sync
    aclient = Client(sid, token, http_client=twilio_http_client(asynchronous=True))
    await aclient.messages.create_async(to=..., from_=..., body=...)

A sent message (`POST .../Accounts/{sid}/Messages.json`, answered 2xx) is added to the exchange in
`current_exchange` when its `To` is the user who wrote. The contextvar reaches the sync client
inside `asyncio.to_thread` (it copies the context); a bare `loop.run_in_executor` does not copy
it, so such calls are not captured.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from twilio.http import HttpClient
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response

from .config import normalize_user_id
from .exchange import current_exchange

log = logging.getLogger("tuneloop.twilio")

_MESSAGES = re.compile(r"/Accounts/[^/]+/Messages\.json$")
MAX_TO_CHARS = 64


def whatsapp_id(raw: object) -> str | None:
    """`whatsapp:+<E.164>` for a WhatsApp address, else None (SMS numbers, garbage)."""
    if not isinstance(raw, str) or len(raw) > MAX_TO_CHARS or not raw.lower().startswith("whatsapp:"):
        return None
    try:
        return normalize_user_id(raw)
    except ValueError:
        return None


def _field(data: object, name: str) -> str | None:
    if not isinstance(data, Mapping):
        return None
    v = data.get(name)
    if isinstance(v, list | tuple):
        v = v[0] if v else None
    return v if isinstance(v, str) else None


def observe(method: str, url: str, data: object, status: int) -> None:
    """Add a message the bot sent to the open exchange, if it is one. Never raises."""
    ex = current_exchange.get()
    if ex is None or ex.sealed:
        return
    try:
        if method.upper() != "POST" or not 200 <= status < 300 or not _MESSAGES.search(urlsplit(url).path):
            return
        to = whatsapp_id(_field(data, "To"))
        if to is not None:
            ex.add_reply(to, _field(data, "Body"))
    except Exception as e:   # the type only: a message could carry the number or the text
        log.warning("REST reply capture failed (%s; ignored)", type(e).__name__)


class CapturingTwilioHttpClient(TwilioHttpClient):
    """Twilio's sync HTTP client, noting messages sent while an exchange is open."""

    def request(self, method: str, url: str, params: dict[str, object] | None = None,
                data: dict[str, object] | None = None, headers: dict[str, str] | None = None,
                auth: tuple[str, str] | None = None, timeout: float | None = None,
                allow_redirects: bool = False) -> Response:
        resp = super().request(method, url, params, data, headers, auth, timeout, allow_redirects)
        observe(method, url, data, resp.status_code)
        return resp


class AsyncCapturingTwilioHttpClient(AsyncTwilioHttpClient):
    """Twilio's async HTTP client (for `create_async`), noting messages sent likewise."""

    async def request(self, method: str, url: str, params: dict[str, object] | None = None,
                      data: dict[str, object] | None = None, headers: dict[str, str] | None = None,
                      auth: tuple[str, str] | None = None, timeout: float | None = None,
                      allow_redirects: bool = False) -> Response:
        resp = await super().request(method, url, params, data, headers, auth, timeout, allow_redirects)
        observe(method, url, data, resp.status_code)
        return resp


def twilio_http_client(asynchronous: bool = False, **kwargs: Any) -> HttpClient:
    """An http_client for `twilio.rest.Client(..., http_client=...)`; kwargs go to Twilio's own.

    The async one opens an aiohttp session: create it inside the running event loop.
    """
    if asynchronous:
        return AsyncCapturingTwilioHttpClient(**kwargs)
    return CapturingTwilioHttpClient(**kwargs)
