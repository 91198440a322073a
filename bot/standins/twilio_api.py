"""A local stand-in for Twilio's Messages API: twilio's real REST client talks HTTP to it.

It accepts ``POST /2010-04-01/Accounts/{sid}/Messages.json`` (form-encoded, Basic auth with the
account SID and token) and answers 201 with a message resource shaped like Twilio's, recording
every message, so tests assert on what the bot really sent.

Twilio's client always builds ``https://api.twilio.com/...`` URLs (region and edge only change the
host's name), so :func:`local_http_client` returns an http_client of the given class that sends
them to the stand-in instead::

    async with TwilioAPIStub() as stub:
        client = Client(stub.account_sid, stub.auth_token,
                        http_client=local_http_client(CapturingTwilioHttpClient, stub.base_url))
"""

from __future__ import annotations

import itertools
from email.utils import formatdate
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aiohttp import BasicAuth, web

ACCOUNT_SID = "AC" + "0" * 30 + "01"
AUTH_TOKEN = "stand-in-auth-token"


class TwilioAPIStub:
    def __init__(self, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.messages: list[dict[str, str]] = []
        self.fail_status: int | None = None      # answer every send with this error status
        self._n = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def __aenter__(self) -> TwilioAPIStub:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._create)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _create(self, request: web.Request) -> web.Response:
        sid = request.match_info["sid"]
        try:
            auth = BasicAuth.decode(request.headers.get("Authorization", ""))
        except ValueError:
            auth = None
        if auth is None or (auth.login, auth.password) != (self.account_sid, self.auth_token) \
                or sid != self.account_sid:
            return _error(401, 20003, "Authenticate")
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        if not form.get("To") or not (form.get("From") or form.get("MessagingServiceSid")):
            return _error(400, 21604, "A 'To' and a 'From' or 'MessagingServiceSid' are required.")
        if not form.get("Body") and not form.get("MediaUrl") and not form.get("ContentSid"):
            return _error(400, 21602, "Message body is required.")
        if self.fail_status is not None:
            return _error(self.fail_status, 20500, "stand-in failure")
        self.messages.append(form)
        msid = f"SM{next(self._n):032x}"
        now = formatdate(usegmt=True)
        uri = f"/2010-04-01/Accounts/{sid}/Messages/{msid}.json"
        return web.json_response({
            "account_sid": sid, "api_version": "2010-04-01", "body": form.get("Body", ""),
            "date_created": now, "date_sent": None, "date_updated": now,
            "direction": "outbound-api", "error_code": None, "error_message": None,
            "from": form.get("From"), "messaging_service_sid": form.get("MessagingServiceSid"),
            "num_media": "0", "num_segments": "1", "price": None, "price_unit": "USD",
            "sid": msid, "status": "queued", "to": form["To"], "uri": uri,
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
        }, status=201)


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message, "status": status,
                              "more_info": f"https://www.twilio.com/docs/errors/{code}"}, status=status)


def local_http_client(cls: type[Any], base_url: str, **kwargs: Any) -> Any:
    """An instance of ``cls`` (a Twilio http client class) that sends to ``base_url`` instead."""
    target = urlsplit(base_url)

    class Local(cls):  # type: ignore[misc, valid-type]
        def request(self, method: str, url: str, *args: Any, **kw: Any) -> Any:
            u = urlsplit(url)
            # the sync or async parent's result (a Response or a coroutine) goes back as it is
            return super().request(method, urlunsplit((target.scheme, target.netloc, u.path, u.query, "")),
                                   *args, **kw)

    Local.__name__ = f"Local{cls.__name__}"
    return Local(**kwargs)
