"""tuneloop's processes for real: supervisor's own config parser and supervisord running the
programs, and a worker killed with SIGKILL mid-batch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from rq import Retry
from rq.serializers import JSONSerializer

from bot.standins.openai_api import OpenAIStub
from middleware.config import Config, Env
from middleware.redis_conn import connect
from tests.conftest import ROOT, SECRET, free_port
from tests.records import seed
from workers.runtime import Runtime
from workers.stats import snapshot

CONF = ROOT / "workers" / "supervisord.conf"
TUNELOOP = ROOT / ".venv" / "bin" / "tuneloop"


def write_config(config: Config, path: Path) -> Path:
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), allow_unicode=True))
    return path


def proc_env(config: Config, env: Env, tmp: Path, **extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TUNELOOP_"))}
    e.update(TUNELOOP_HOME=str(ROOT), TUNELOOP_DATA_DIR=str(tmp), TUNELOOP_PORT=str(free_port()),
             REDIS_URL=env.redis_url or "", TUNELOOP_SECRET=SECRET,
             TUNELOOP_CONFIG=str(write_config(config, tmp / "config.yaml")))
    e.update(extra)
    return e


def test_supervisord_conf_parses_with_supervisors_own_parser(monkeypatch, tmp_path):
    from supervisor.options import ServerOptions

    monkeypatch.setenv("TUNELOOP_HOME", str(ROOT))
    monkeypatch.setenv("TUNELOOP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TUNELOOP_PORT", "8080")
    opts = ServerOptions()
    opts.realize(args=["-c", str(CONF)])
    groups = {g.name: g for g in opts.process_group_configs}
    assert set(groups) == {"tuneloop-app", "tuneloop-worker", "tuneloop-scheduler"}
    workers = groups["tuneloop-worker"].process_configs
    assert len(workers) == 2 and all(p.stopsignal == signal.SIGTERM for p in workers)
    assert workers[0].command.endswith("tuneloop worker")


@pytest.mark.skipif(not TUNELOOP.exists(), reason="needs the .venv made by `make test`")
def test_supervisord_runs_worker_and_scheduler(config, env, tmp_path):
    rt = Runtime(config, env, connect(env))
    ids = seed(rt.store, [rt.pseudonymizer("telegram:1")], 6)
    rt.queue().enqueue_call("workers.tasks.process_records", args=(ids,), result_ttl=0)
    e = proc_env(config, env, tmp_path)
    sup = subprocess.Popen([sys.executable, "-m", "supervisor.supervisord", "-c", str(CONF)], env=e,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and snapshot(rt.handle.sync, rt.keys)["pipeline"]["analyzed"] < 6:
            time.sleep(0.2)
        s = snapshot(rt.handle.sync, rt.keys)["pipeline"]
        assert s["analyzed"] == 6 and s["queue_size"] == 0
        # supervisor reports STARTING until a program has lived `startsecs`: the job may be done sooner
        while True:
            ctl = subprocess.run([sys.executable, "-m", "supervisor.supervisorctl", "-c", str(CONF), "status"],
                                 env=e, capture_output=True, text=True, timeout=30)
            if "STARTING" not in ctl.stdout or time.time() > deadline:
                break
            time.sleep(0.5)
        assert "tuneloop-scheduler" in ctl.stdout and "STARTING" not in ctl.stdout
        assert ctl.stdout.count("RUNNING") == 4, ctl.stdout
        assert ctl.stdout.count("tuneloop-worker:tuneloop-worker_0") == 2
    finally:
        sup.send_signal(signal.SIGTERM)
        try:
            sup.wait(120)   # (each program stops in about 2 s; a loaded machine takes longer)
        except subprocess.TimeoutExpired:
            sup.kill()
            sup.wait()
            log = tmp_path / "supervisord.log"
            pytest.fail("supervisord did not stop within 120 s:\n" + (log.read_text()[-3000:] if log.exists() else ""))


@pytest.mark.skipif(not TUNELOOP.exists(), reason="needs the .venv made by `make test`")
def test_worker_killed_mid_batch_every_record_ends_once(config, env, tmp_path):
    stub = OpenAIStub()
    stub.latency = 0.25
    base_url, stop = stub.start_in_thread()
    try:
        config.analysis.openai.concurrency = 2
        rt = Runtime(config, env, connect(env))
        users = [rt.pseudonymizer(f"telegram:{i}") for i in range(5)]
        ids = seed(rt.store, users, 30)
        q = rt.queue()
        q.enqueue_call("workers.tasks.process_records", args=(ids,), result_ttl=0, retry=Retry(max=3))
        e = proc_env(config, env, tmp_path, OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=base_url)
        w = subprocess.Popen([str(TUNELOOP), "worker"], env=e, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while stub.chat_count < 6 and time.time() < deadline:
            time.sleep(0.05)
        assert stub.chat_count >= 6, "the worker never started the batch"
        os.killpg(w.pid, signal.SIGKILL)   # the worker and its work horse, mid-batch
        w.wait(10)
        mid = snapshot(rt.handle.sync, rt.keys)["pipeline"]
        assert mid["analyzed"] + mid["queue_size"] == 30
        # RQ retries the abandoned job; run that retry now, and `tuneloop process` sweeps too
        q.enqueue_call("workers.tasks.process_records", args=(ids,), result_ttl=0)
        subprocess.run([str(TUNELOOP), "worker", "--burst"], env=e, timeout=120, check=True,
                       capture_output=True)
        subprocess.run([str(TUNELOOP), "process", "--max-items", "1000"], env=e, timeout=120, check=True,
                       capture_output=True)
        s = snapshot(rt.handle.sync, rt.keys)["pipeline"]
        assert s["analyzed"] == 30 and s["queue_size"] == 0
        assert s["analyzed"] == s["qa_passed"] + s["qa_failed"] + s["needs_review"]
        statuses = [r.status for r in rt.store.get_many(ids)]
        assert "pending" not in statuses and len(statuses) == 30
        assert JSONSerializer  # jobs are JSON: the worker would refuse anything else
    finally:
        stop()
