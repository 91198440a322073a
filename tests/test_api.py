"""The aiohttp app: the REST admin API, webhooks, /metrics, /healthz, access logs; and
`tuneloop serve` started as a process and driven over HTTP."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer

from bot.app import create_app
from bot.serve import build
from bot.standins.botapi import message_update
from middleware.config import Env
from middleware.redis_conn import connect
from tests.conftest import ROOT, SECRET, free_port
from tests.records import seed
from tests.test_processes import write_config
from workers.runtime import Runtime
from workers.tasks import Processor

TOKEN = "admin-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def env_with(env: Env, **kw) -> Env:
    return env.model_copy(update=kw)


@pytest.fixture
async def client(config, env):
    e = env_with(env, admin_token=TOKEN, telegram_webhook_secret="tg-secret", telegram_bot_token="1:x",
                 telegram_api_server="http://127.0.0.1:9")
    rt = Runtime(config, e, connect(e))
    app, capture, dp, bot = build(rt)
    await capture.start()
    async with TestClient(TestServer(app)) as c:
        c.rt = rt
        c.capture = capture
        yield c
    await capture.close()
    await bot.session.close()


PATHS = [("GET", "/webhook/training/stats", None), ("POST", "/webhook/training/process", {"max_items": 5}),
         ("POST", "/webhook/training/export", {}), ("GET", "/webhook/training/consent/telegram:5", None),
         ("POST", "/webhook/training/consent/telegram:5", {"consent": True}),
         ("DELETE", "/webhook/training/users/telegram:5", None),
         ("GET", "/webhook/training/records?status=approved", None)]


@pytest.mark.parametrize("method,path,body", PATHS)
async def test_every_admin_endpoint_refuses_without_or_with_a_wrong_token(client, method, path, body):
    r = await client.request(method, path, json=body)
    assert r.status == 401 and (await r.json())["success"] is False
    r = await client.request(method, path, json=body, headers={"Authorization": "Bearer nope"})
    assert r.status == 403 and "wrong admin token" in (await r.json())["error"]


async def test_admin_api_disabled_without_token(config, env):
    rt = Runtime(config, env, connect(env))
    async with TestClient(TestServer(create_app(rt))) as c:
        r = await c.get("/webhook/training/stats", headers=AUTH)
        assert r.status == 503 and "TUNELOOP_ADMIN_TOKEN" in (await r.json())["error"]


async def test_stats_process_and_records(client):
    rt = client.rt
    ids = seed(rt.store, [rt.pseudonymizer("telegram:1"), rt.pseudonymizer("telegram:2")], 8)
    r = await client.get("/webhook/training/stats", headers=AUTH)
    body = await r.json()
    assert body["success"] and body["pipeline"]["queue_size"] == 8
    assert set(body) >= {"pipeline", "anonymization", "sessions"}
    assert set(body["sessions"]) == {"total", "with_consent", "consent_rate"}
    r = await client.post("/webhook/training/process", json={"max_items": 5}, headers=AUTH)
    res = (await r.json())["results"]
    assert res["processed"] == 5 and set(res) == {"processed", "passed_qa", "failed_qa", "needs_review", "errors"}
    await asyncio.to_thread(Processor(rt).process, ids)
    r = await client.get("/webhook/training/records?status=approved&limit=100", headers=AUTH)
    body = await r.json()
    assert body["success"] and body["records"] and body["next_cursor"] is None
    assert all("qa_errors" in rec and "analysis" in rec for rec in body["records"])


@pytest.mark.parametrize("method,path,body,expect", [
    ("POST", "/webhook/training/process", {"max_items": "lots"}, "max_items"),
    ("POST", "/webhook/training/process", {"max_items": 0}, "max_items"),
    ("POST", "/webhook/training/process", {"maxitems": 5}, "unknown field"),
    ("POST", "/webhook/training/process", [1, 2], "JSON object"),
    ("POST", "/webhook/training/export", {"min_confidence": 3}, "min_confidence"),
    ("POST", "/webhook/training/export", {"format": "csv"}, "format"),
    ("POST", "/webhook/training/consent/telegram:5", {"consent": "yes"}, "consent must be"),
    ("POST", "/webhook/training/consent/not-a-user", {"consent": True}, "user_id"),
    ("GET", "/webhook/training/consent/whatsapp:12", None, "user_id"),
    ("DELETE", "/webhook/training/users/fax:1", None, "user_id"),
    ("GET", "/webhook/training/records?status=lost", None, "status"),
    ("GET", "/webhook/training/records?status=approved&limit=x", None, "limit"),
])
async def test_bad_requests_get_4xx_saying_what_is_wrong(client, method, path, body, expect):
    r = await client.request(method, path, json=body, headers=AUTH)
    assert 400 <= r.status < 500
    data = await r.json()
    assert data["success"] is False and expect in data["error"]


async def test_malformed_json_body(client):
    r = await client.post("/webhook/training/process", data=b"{nope", headers={**AUTH, "Content-Type": "application/json"})
    assert r.status == 400 and "not valid JSON" in (await r.json())["error"]


async def test_consent_endpoints_and_erasure(client):
    rt = client.rt
    r = await client.get("/webhook/training/consent/whatsapp:+593991234567", headers=AUTH)
    assert await r.json() == {"success": True, "user_id": "whatsapp:+593991234567", "consent": False,
                              "consent_timestamp": None}
    r = await client.post("/webhook/training/consent/whatsapp:+593991234567", json={"consent": True}, headers=AUTH)
    body = await r.json()
    assert body["consent"] is True and isinstance(body["consent_timestamp"], float)
    pseudo = rt.pseudonymizer("whatsapp:+593991234567")
    seed(rt.store, [pseudo], 3)
    # the pseudonym works wherever a user id does
    r = await client.get(f"/webhook/training/consent/{pseudo}", headers=AUTH)
    assert (await r.json())["consent"] is True
    r = await client.delete("/webhook/training/users/whatsapp:+593991234567", headers=AUTH)
    body = await r.json()
    assert body["success"] and body["erased"] == {"store": 3, "buffer": 0, "journal": 0}
    assert "exports" in body
    assert rt.store.user_record_ids(pseudo) == []
    r = await client.post(f"/webhook/training/consent/{pseudo}", json={"consent": False}, headers=AUTH)
    assert (await r.json())["erased"]["store"] == 0


async def test_access_log_shows_pseudonyms_only(client, caplog):
    caplog.set_level(logging.INFO, logger="tuneloop.access")
    await client.get("/webhook/training/consent/telegram:424242", headers=AUTH)
    await client.delete("/webhook/training/users/whatsapp:+593991234567", headers=AUTH)
    text = caplog.text
    assert "424242" not in text and "593991234567" not in text
    assert client.rt.pseudonymizer("telegram:424242") in text


async def test_telegram_webhook_refuses_forged_and_malformed(client):
    upd = message_update(5, "hola")
    r = await client.post("/telegram/webhook", json=upd)
    assert r.status == 401
    r = await client.post("/telegram/webhook", json=upd, headers={"X-Telegram-Bot-Api-Secret-Token": "x"})
    assert r.status == 401
    h = {"X-Telegram-Bot-Api-Secret-Token": "tg-secret", "Content-Type": "application/json"}
    for body in (b"{not json", b"[1,2]", b'{"update_id": "x"}', b"\xff\xfe"):
        r = await client.post("/telegram/webhook", data=body, headers=h)
        assert r.status == 400, body
    r = await client.post("/telegram/webhook", data=b"x" * (2 * 1024 * 1024), headers=h)
    assert r.status == 413
    r = await client.post("/telegram/webhook", json=upd, headers={"X-Telegram-Bot-Api-Secret-Token": "tg-secret"})
    assert r.status == 200


async def test_metrics_and_healthz(client):
    seed(client.rt.store, [client.rt.pseudonymizer("telegram:1")], 2)
    r = await client.get("/metrics")
    text = await r.text()
    assert r.status == 200
    for name in ("tuneloop_captured_total 2.0", "tuneloop_queue_size 2.0", "tuneloop_dropped_total",
                 "tuneloop_capture_seconds_bucket", "tuneloop_buffer_depth"):
        assert name in text, name
    r = await client.get("/healthz")
    body = await r.json()
    assert r.status == 200 and body["redis"] is True and "workers" in body


def test_serve_as_a_process_driven_over_http(config, env, tmp_path, rconn):
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TUNELOOP_", "TELEGRAM_"))}
    environ.update(REDIS_URL=env.redis_url, TUNELOOP_SECRET=SECRET, TUNELOOP_ADMIN_TOKEN=TOKEN,
                   TUNELOOP_DATA_DIR=str(tmp_path), TUNELOOP_CONFIG=str(write_config(config, tmp_path / "c.yaml")))
    p = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
                         env=environ, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        import urllib.request

        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                    assert json.loads(resp.read())["redis"] is True
                    break
            except OSError:
                time.sleep(0.2)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/webhook/training/stats", headers=AUTH)
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert json.loads(resp.read())["success"] is True
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err[-2000:]
    assert "Traceback" not in err
    assert redis.Redis.from_url(env.redis_url).ping()
