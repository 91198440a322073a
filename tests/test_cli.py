"""The `tuneloop` command: stdin filters, consent and stats, bad options; the scheduler loop."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from middleware.redis_conn import connect
from tests.conftest import ROOT, SECRET
from tests.records import seed
from tests.test_processes import write_config
from workers.runtime import Runtime
from workers.schedule import Periodic, plan, run
from workers.stats import snapshot


def cli(args, env, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], env=env, cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=120)


def environ(config, env, tmp_path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TUNELOOP_"))}
    e.update(REDIS_URL=env.redis_url, TUNELOOP_SECRET=SECRET, TUNELOOP_DATA_DIR=str(tmp_path),
             TUNELOOP_CONFIG=str(write_config(config, tmp_path / "c.yaml")))
    return e


def test_anonymize_and_analyze_filters(config, env, tmp_path):
    e = environ(config, env, tmp_path)
    p = cli(["anonymize"], e, "mi cel 0991234567, HLSO 16/20\n")
    assert p.returncode == 0 and "0991234567" not in p.stdout and "HLSO 16/20" in p.stdout
    lines = [json.dumps({"id": 1, "text": "escríbeme a ana.lopez@example.com"}), json.dumps({"id": 2, "text": "ok"})]
    p = cli(["anonymize", "--jsonl"], e, "\n".join(lines) + "\n")
    out = [json.loads(x) for x in p.stdout.splitlines()]
    assert out[0] == {"id": 1, "text": "escríbeme a [EMAIL]"} and out[1]["id"] == 2
    p = cli(["anonymize", "--jsonl"], e, "{not json}\n")
    assert p.returncode == 2 and "line 1" in p.stderr and "Traceback" not in p.stderr
    p = cli(["analyze", "--jsonl"], e, json.dumps({"text": "proforma HLSO 16/20 20% glaseo FOB Guayaquil"}) + "\n")
    a = json.loads(p.stdout)["analysis"]
    assert a["intent"] == "proforma" and a["product"] == "HLSO" and a["glaseo_percentage"] == 20
    assert 0 <= a["confidence"] <= 1


def test_consent_stats_records_process(config, env, tmp_path):
    e = environ(config, env, tmp_path)
    p = cli(["consent", "telegram:77", "--set", "yes"], e)
    assert p.returncode == 0 and json.loads(p.stdout)["consent"] is True
    p = cli(["consent", "telegram:77"], e)
    assert json.loads(p.stdout)["consent"] is True
    p = cli(["consent", "telegram:abc"], e)
    assert p.returncode == 2 and "USER_ID" in p.stderr
    rt = Runtime(config, env, connect(env))
    seed(rt.store, [rt.pseudonymizer("telegram:77")], 4)
    p = cli(["process", "--max-items", "10"], e)
    assert json.loads(p.stdout)["results"]["processed"] == 4
    p = cli(["stats", "--json"], e)
    s = json.loads(p.stdout)
    assert s["pipeline"]["analyzed"] == 4 and s["sessions"]["with_consent"] == 1
    p = cli(["stats"], e)
    assert p.returncode == 0 and "captured" in p.stdout
    p = cli(["records", "--status", "approved"], e)
    assert all("qa_errors" in json.loads(x) for x in p.stdout.splitlines())
    p = cli(["forget", "u_" + "0" * 32], e)
    assert p.returncode == 0 and json.loads(p.stdout)["erased"]["store"] == 0
    p = cli(["process", "--max-items", "0"], e)
    assert p.returncode == 2 and "--max-items" in p.stderr


def test_bench_refuses_a_bad_corpus(config, env, tmp_path):
    e = environ(config, env, tmp_path)
    p = cli(["bench", "--pii-corpus", str(tmp_path / "missing.jsonl")], e)
    assert p.returncode == 2 and "--pii-corpus" in p.stderr and "Traceback" not in p.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"id": 2}\n')
    p = cli(["bench", "--pii-corpus", str(bad)], e)
    assert p.returncode == 2 and "line 2" in p.stderr and "Traceback" not in p.stderr


def test_scheduler_enqueues_due_jobs_once_per_period(config, env):
    config.workers.mode = "scheduled"
    rt = Runtime(config, env, connect(env))
    assert {j.name for j in plan(rt)} == {"process", "retention"}
    ticks = iter(range(3))
    times = iter([0.0, 10**12])   # due at once, then far away
    job = Periodic("process", "workers.tasks.process_pending_job", lambda now: next(times), {})
    run(rt, stop=lambda: next(ticks, None) is None, tick=0.01, jobs=[job])
    assert rt.queue().count == 1
    assert snapshot(rt.handle.sync, rt.keys)["pipeline"]["captured"] == 0
