"""`tuneloop demo`: the whole loop, offline, on bundled sample conversations.

It starts Redis (embedded unless REDIS_URL is set), the app with the reference bot, and a local
Bot API stand-in; replays the samples through the real Telegram webhook and the real Twilio
webhook (signed); processes them with the offline analyzer; exports; and prints what happened.
Everything lives under the key prefix `tuneloop-demo:` and TUNELOOP_DATA_DIR/demo.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from middleware.config import load_config, load_env
from middleware.redis_conn import connect

PREFIX = "tuneloop-demo:"
SAMPLES = Path(__file__).with_name("samples") / "conversations.jsonl"


def _clean(client: Any, prefix: str, queue: str) -> None:
    for pattern in (f"{prefix}*", f"rq:*{queue}*"):
        keys = list(client.scan_iter(match=pattern, count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i:i + 1000])


async def _replay(base: str, env: Any, conversations: list[dict[str, Any]]) -> int:
    from twilio.request_validator import RequestValidator

    from bot.standins.botapi import message_update

    validator = RequestValidator(env.twilio_auth_token)
    sent = 0
    async with aiohttp.ClientSession() as http:
        async def telegram(conv: dict[str, Any], text: str) -> None:
            uid = int(conv["user"].split(":")[1])
            upd = message_update(uid, text, first_name=conv["first_name"], last_name=conv["last_name"],
                                 lang=conv["lang"])
            async with http.post(f"{base}/telegram/webhook", json=upd,
                                 headers={"X-Telegram-Bot-Api-Secret-Token": env.telegram_webhook_secret}) as r:
                if r.status != 200:
                    raise RuntimeError(f"telegram webhook answered {r.status}")

        async def whatsapp(conv: dict[str, Any], text: str) -> None:
            number = conv["user"].split(":", 1)[1]
            form = {"From": f"whatsapp:{number}", "To": "whatsapp:+14155238886", "WaId": number.lstrip("+"),
                    "ProfileName": f"{conv['first_name']} {conv['last_name']}", "Body": text, "NumMedia": "0",
                    "MessageSid": "SM" + uuid.uuid4().hex, "AccountSid": "AC" + "0" * 32}
            url = f"{env.public_url}/whatsapp/webhook"
            sig = validator.compute_signature(url, form)
            async with http.post(f"{base}/whatsapp/webhook", data=form, headers={"X-Twilio-Signature": sig}) as r:
                if r.status != 200:
                    raise RuntimeError(f"whatsapp webhook answered {r.status}")

        async def one(conv: dict[str, Any]) -> int:
            send = telegram if conv["channel"] == "telegram" else whatsapp
            await send(conv, "/consent yes" if conv["channel"] == "telegram" else
                       ("ACEPTO" if conv["lang"] == "es" else "I AGREE"))
            for text in conv["messages"]:
                await send(conv, text)
                await asyncio.sleep(0.01)   # users type one message at a time
            return len(conv["messages"])

        for n in await asyncio.gather(*(one(c) for c in conversations)):
            sent += n
    return sent


async def run_demo(limit: int | None = None, quiet: bool = False) -> dict[str, Any]:
    from bot.serve import build
    from bot.standins.botapi import BotAPIStub
    from workers.export import export
    from workers.runtime import Runtime
    from workers.stats import snapshot
    from workers.tasks import Processor

    t0 = time.monotonic()
    env = load_env()
    env = env.model_copy(update={"data_dir": env.data_dir / "demo"})
    config = load_config(None)
    config.redis.prefix = PREFIX
    config.redis.queue = "tuneloop-demo"
    config.workers.mode = "on_demand"     # the demo processes in one go, below
    config.consent.ask_on_first_message = False
    async with BotAPIStub() as botapi:
        env = env.model_copy(update={
            "secret": env.secret or None, "admin_token": secrets.token_hex(16),
            "telegram_bot_token": "123456:DEMO-token", "telegram_webhook_secret": secrets.token_hex(16),
            "telegram_api_server": botapi.base_url, "twilio_auth_token": secrets.token_hex(16),
            "openai_api_key": None})
        handle = connect(env)
        _clean(handle.sync, PREFIX, config.redis.queue)
        rt = Runtime(config, env, handle)
        rt.check()
        runner: web.AppRunner | None = None
        try:
            # the public URL Twilio signs is only known once the port is: bind first, then build
            probe = web.Application()
            runner = web.AppRunner(probe)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            await runner.cleanup()
            env = env.model_copy(update={"public_url": f"http://127.0.0.1:{port}"})
            rt = Runtime(config, env, handle)
            app, capture, dp, bot = build(rt)
            await capture.start()
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            convs = [json.loads(line) for line in SAMPLES.read_text(encoding="utf-8").splitlines() if line.strip()]
            convs = convs[:limit] if limit else convs
            sent = await _replay(f"http://127.0.0.1:{port}", env, convs)
            # Telegram updates are handled in the background: wait until every message is buffered
            for _ in range(200):
                await asyncio.sleep(0.05)
                await capture.flush()
                if snapshot(handle.sync, rt.keys)["pipeline"]["captured"] >= sent:
                    break
            results = await asyncio.to_thread(Processor(rt).process_pending, 100_000)
            exported = await asyncio.to_thread(export, rt, min_confidence=0.6, source="both")
            stats = snapshot(handle.sync, rt.keys)
            await capture.close()
            await bot.session.close()
        finally:
            if runner is not None:
                await runner.cleanup()
            if handle.embedded is not None:   # the demo's own server (its own data dir): stop it
                handle.sync.connection_pool.disconnect()
                with contextlib.suppress(Exception):
                    handle.embedded.shutdown(save=True, now=True, force=True)
    return {"sent": sent, "conversations": len(convs), "results": results.public(), "export": exported,
            "stats": stats, "seconds": time.monotonic() - t0, "data_dir": str(env.data_dir)}


def _print(out: dict[str, Any]) -> None:
    from rich.console import Console

    from .cli import stats_table

    c = Console()
    c.print(stats_table(out["stats"], f"tuneloop demo: {out['conversations']} conversations, "
                                      f"{out['sent']} messages"))
    e = out["export"]
    if e.get("success"):
        c.print(f"[bold]export[/bold]: {e['train_examples']} train + {e['valid_examples']} valid examples")
        c.print(f"  train: {e['files']['train']}\n  valid: {e['files']['valid']}")
        lines = Path(e["files"]["train"]).read_text(encoding="utf-8").splitlines()[:3]
        c.print("[bold]first exported lines[/bold]:")
        for line in lines:
            c.print(line, markup=False, highlight=False)
    else:
        c.print(f"[red]export failed[/red]: {e.get('error')}")
    for w in e.get("warnings", []):
        c.print(f"[yellow]warning[/yellow]: {w}")
    c.print(f"done in {out['seconds']:.1f} s; data in {out['data_dir']}")


def cmd_demo(a: argparse.Namespace) -> int:
    out = asyncio.run(run_demo(limit=getattr(a, "limit", None)))
    if getattr(a, "json", False):
        print(json.dumps(out, ensure_ascii=False, indent=2, default=str))
    else:
        _print(out)
    return 0 if out["export"].get("success") else 1
