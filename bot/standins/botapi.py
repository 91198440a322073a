"""A local stand-in for the Telegram Bot API: aiogram's real session talks HTTP to it.

It answers the methods tuneloop and the reference bot use with well-formed results and records
every call, so tests assert on what the bot really sent.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiohttp import web

TOKEN = "123456:TEST-token-for-local-stand-in"
BOT_USER = {"id": 123456, "is_bot": True, "first_name": "Camaron Bot", "username": "camaron_bot"}


class BotAPIStub:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._ids = itertools.count(1000)
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self.delay = 0.0
        self.record = True
        self.port = 0
        self._bots: list[Bot] = []

    async def __aenter__(self) -> BotAPIStub:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("POST", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: Any) -> None:
        # the bots made here close with the stand-in: an unclosed aiohttp session is reported by
        # whichever later garbage collection frees it, in somebody else's logs
        for b in self._bots:
            await b.session.close()
        self._bots.clear()
        if self._runner is not None:
            await self._runner.cleanup()

    def bot(self) -> Bot:
        session = AiohttpSession(api=TelegramAPIServer.from_base(self.base_url))
        b = Bot(TOKEN, session=session)
        self._bots.append(b)
        return b

    def sent(self, method: str = "sendMessage") -> list[dict[str, Any]]:
        return [p for m, p in self.calls if m.lower() == method.lower()]

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.content_type == "application/json":
            params = await request.json()
        else:
            params = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        if self.record:
            self.calls.append((method, params))
        if self.delay:
            import asyncio

            await asyncio.sleep(self.delay)
        return web.json_response({"ok": True, "result": self._result(method, params)})

    def _result(self, method: str, p: dict[str, Any]) -> Any:
        m = method.lower()
        if m == "getme":
            return BOT_USER
        if m in ("sendmessage", "sendphoto", "senddocument", "editmessagetext"):
            chat_id = int(p.get("chat_id", 0))
            msg: dict[str, Any] = {"message_id": next(self._ids), "date": int(time.time()),
                                   "chat": {"id": chat_id, "type": "private"}, "from": BOT_USER}
            if "text" in p:
                msg["text"] = p["text"]
            if "caption" in p:
                msg["caption"] = p["caption"]
            if m == "senddocument":
                msg["document"] = {"file_id": "f1", "file_unique_id": "u1"}
            return msg
        if m in ("setwebhook", "deletewebhook", "answercallbackquery", "setmycommands"):
            return True
        if m == "getupdates":
            return []
        return True


_update_ids = itertools.count(1)


def message_update(user_id: int, text: str | None, first_name: str = "Ana", last_name: str | None = None,
                   username: str | None = None, lang: str = "es", chat_id: int | None = None,
                   **extra: Any) -> dict[str, Any]:
    user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name,
                            "language_code": lang}
    if last_name:
        user["last_name"] = last_name
    if username:
        user["username"] = username
    msg: dict[str, Any] = {"message_id": next(_update_ids), "date": int(time.time()),
                           "chat": {"id": chat_id or user_id, "type": "private", "first_name": first_name},
                           "from": user}
    if text is not None:
        msg["text"] = text
    msg.update(extra)
    return {"update_id": next(_update_ids), "message": msg}


def callback_update(user_id: int, data: str, chat_id: int | None = None) -> dict[str, Any]:
    user = {"id": user_id, "is_bot": False, "first_name": "Ana", "language_code": "es"}
    return {"update_id": next(_update_ids), "callback_query": {
        "id": str(next(_update_ids)), "from": user, "chat_instance": "1", "data": data,
        "message": {"message_id": 1, "date": int(time.time()), "chat": {"id": chat_id or user_id,
                                                                          "type": "private"},
                    "from": BOT_USER, "text": "consent?"}}}


def dumps(obj: Any) -> str:
    return json.dumps(obj)


def main() -> None:
    """Run the stand-in on its own (a separate process, so its work is not the bot's):
    prints its base URL on the first line of stdout."""
    import argparse
    import asyncio
    ap = argparse.ArgumentParser(description="local Telegram Bot API stand-in")
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()

    async def run() -> None:
        stub = BotAPIStub()
        stub.record = False
        stub.port = a.port
        async with stub:
            print(stub.base_url, flush=True)
            await asyncio.Event().wait()

    asyncio.run(run())


if __name__ == "__main__":
    main()
