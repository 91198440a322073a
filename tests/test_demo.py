"""A short `tuneloop demo` in the suite: the whole loop, offline, ends with a valid export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import redis

from bot.demo import PREFIX
from tests.conftest import ROOT, cleanup
from workers.export_check import chat_errors


def test_short_demo_ends_with_a_valid_export(redis_url, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TUNELOOP_", "TELEGRAM_", "TWILIO_"))}
    env.update(REDIS_URL=redis_url, TUNELOOP_DATA_DIR=str(tmp_path), TUNELOOP_SECRET="demo-test-secret")
    try:
        p = subprocess.run([sys.executable, "-m", "bot.cli", "demo", "--limit", "8", "--json"], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr[-3000:]
        out = json.loads(p.stdout)
        assert out["sent"] == 8 * 6
        s = out["stats"]["pipeline"]
        assert s["captured"] == out["sent"] and s["queue_size"] == 0 and s["dropped"] == 0
        assert s["captured"] == s["filtered_out"] + s["analyzed"] + s["queue_size"] + s["discarded"]
        e = out["export"]
        assert e["success"] and e["train_examples"] + e["valid_examples"] == e["total"] >= 10
        lines = Path(e["files"]["train"]).read_text().splitlines()
        for line in lines:
            ex = json.loads(line)
            assert chat_errors(ex) == []   # OpenAI's cookbook checks
            assert ex["messages"][0]["role"] == "system" and ex["messages"][-1]["role"] == "assistant"
        text = Path(e["files"]["train"]).read_text() + Path(e["files"]["valid"]).read_text()
        samples = [json.loads(x) for x in (ROOT / "bot" / "samples" / "conversations.jsonl").read_text().splitlines()[:8]]
        for conv in samples:   # the sample users' names and numbers never reach the export
            assert conv["last_name"] not in text
            assert conv["user"].split(":", 1)[1].lstrip("+") not in text
    finally:
        cleanup(redis.Redis.from_url(redis_url), PREFIX)
