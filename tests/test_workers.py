"""Workers: analysis, QA and routing against a real Redis; OpenAI through the official client
talking to a local stand-in; RQ jobs run by real workers."""

from __future__ import annotations

import json

import pytest
from rq import Queue
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer

from bot.standins.openai_api import OpenAIStub
from middleware.config import Env
from middleware.redis_conn import connect
from tests.conftest import SECRET
from tests.harness import sums_hold
from tests.records import seed
from workers.analyzers.base import make_analyzer
from workers.runtime import Runtime
from workers.stats import snapshot
from workers.tasks import Processor, process_records, set_processor


@pytest.fixture
def rt(config, env) -> Runtime:
    return Runtime(config, env, connect(env))


@pytest.fixture
def openai_env(env, tmp_path):
    stub = OpenAIStub()
    base_url, stop = stub.start_in_thread()
    e = Env(config_path=env.config_path, redis_url=env.redis_url, data_dir=env.data_dir, secret=SECRET,
            openai_api_key="sk-test", openai_base_url=base_url)
    yield stub, e
    stop()


def openai_rt(config, e: Env) -> Runtime:
    config.analysis.openai.max_retries = 0
    config.analysis.openai.timeout_s = 2
    return Runtime(config, e, connect(e))


def users(rt: Runtime, n: int) -> list[str]:
    return [rt.pseudonymizer(f"telegram:{1000 + i}") for i in range(n)]


def test_offline_routing_counts_and_idempotence(rt):
    ids = seed(rt.store, users(rt, 3), 21)
    p = Processor(rt)
    res = p.process(ids)
    assert res.processed == 21 and res.errors == 0
    s = sums_hold(rt)
    assert s["analyzed"] == 21 and s["queue_size"] == 0
    # a retried or duplicated job never routes or counts a record twice
    again = p.process(ids)
    assert again.processed == 0
    assert sums_hold(rt) == s
    rec = rt.store.get(ids[0])
    assert rec.analysis["intent"] == "proforma" and rec.analysis["product"] == "HLSO"
    assert rec.analyzer == "rules" and rec.processed_at and rec.detector_version
    assert rec.status in ("approved", "needs_review", "rejected")
    assert rec.qa_passed == (rec.status == "approved")


def test_record_erased_in_flight_is_skipped_and_counted_once(rt):
    u = users(rt, 2)
    ids = seed(rt.store, u, 6)
    d, e, _ = rt.store.withdraw(u[0], "cli")   # erases u[0]'s 3 pending records: discarded by the eraser
    assert (d, e) == (3, 0)
    res = Processor(rt).process(ids)
    assert res.processed == 3
    s = sums_hold(rt)
    assert s["discarded"] == 3 and s["analyzed"] == 3


def test_consent_gone_without_erasure_discards_at_routing(rt):
    u = users(rt, 1)
    ids = seed(rt.store, u, 2)
    rt.store.withdraw(u[0], "cli", erase=False)   # e.g. a ledger edited by hand
    res = Processor(rt).process(ids)
    assert res.processed == 0
    assert rt.store.get(ids[0]) is None
    assert sums_hold(rt)["discarded"] == 2


def test_openai_analysis_and_faults_lose_nothing(config, openai_env):
    stub, e = openai_env
    rt = openai_rt(config, e)
    ids = seed(rt.store, users(rt, 4), 12)
    stub.add_faults("500", "refusal", "malformed", "429")
    p = Processor(rt, make_analyzer(rt.config, e))
    assert p.analyzer.name == "openai"
    res = p.process(ids)
    # 500 and 429 (no client retries here) go back on the queue; refusal and malformed to review
    assert len(res.retry_later) == 2
    assert res.processed == 10
    reviews = [rt.store.get(i) for i in ids]
    reasons = [r.qa_errors for r in reviews if r and r.status == "needs_review"]
    assert any("refusal" in r for r in reasons) and any("malformed_output" in r for r in reasons)
    s = sums_hold(rt)
    assert s["queue_size"] == 2
    # the retry finds the server healthy again
    res2 = p.process(res.retry_later)
    assert res2.processed == 2
    assert sums_hold(rt)["queue_size"] == 0


def test_transient_failures_come_back_later_with_growing_delays(config, openai_env):
    stub, e = openai_env
    rt = openai_rt(config, e)
    ids = seed(rt.store, users(rt, 1), 2)
    stub.add_faults("500", "500")
    set_processor(Processor(rt, make_analyzer(rt.config, e)))
    try:
        out = process_records(ids)
    finally:
        set_processor(None)
    assert out["errors"] == 2
    reg = ScheduledJobRegistry(rt.config.redis.queue, connection=rt.handle.sync, serializer=JSONSerializer)
    [job_id] = reg.get_job_ids()
    q = Queue(rt.config.redis.queue, connection=rt.handle.sync, serializer=JSONSerializer)
    job = q.fetch_job(job_id)
    assert job.args[0] == ids and job.args[1] == 1
    assert sums_hold(rt)["queue_size"] == 2
    assert snapshot(rt.handle.sync, rt.keys)["operations"]["retried"] == 2


def test_rq_worker_processes_capture_jobs(rt, env, monkeypatch):
    """A real RQ worker (no fork here, same code path) runs the job capture enqueues."""
    from rq import SimpleWorker

    ids = seed(rt.store, users(rt, 2), 5)
    q = rt.queue()
    q.enqueue("workers.tasks.process_records", ids)
    set_processor(Processor(rt))
    try:
        w = SimpleWorker([q], connection=rt.handle.sync, serializer=JSONSerializer)
        assert w.work(burst=True)
    finally:
        set_processor(None)
    s = sums_hold(rt)
    assert s["analyzed"] == 5 and s["queue_size"] == 0


def test_process_pending_returns_seed_results(rt):
    seed(rt.store, users(rt, 2), 9)
    res = Processor(rt).process_pending(max_items=4)
    pub = res.public()
    assert set(pub) == {"processed", "passed_qa", "failed_qa", "needs_review", "errors"}
    assert pub["processed"] == 4
    assert pub["passed_qa"] + pub["failed_qa"] + pub["needs_review"] == 4
    rest = Processor(rt).process_pending(max_items=100)
    assert rest.processed == 5
    sums_hold(rt)


def test_records_keep_qa_reasons_and_json_roundtrip(rt):
    ids = seed(rt.store, users(rt, 1), 3, texts=[("ok", "vale"), ("precio HLSO 16/20?", "USD 5"),
                                                  ("precio HLSO 16/20?", "USD 5")])
    Processor(rt).process(ids)
    recs = [rt.store.get(i) for i in ids]
    assert "too_short" not in recs[1].qa_errors
    assert recs[2].status == "rejected" and "duplicate" in recs[2].qa_errors
    for r in recs:
        json.dumps(r.public())


def test_batch_api_mode_submits_polls_and_resubmits_expired(config, openai_env):
    from workers.batches import poll_all

    stub, e = openai_env
    config.analysis.openai.batch_api = True
    rt = openai_rt(config, e)
    ids = seed(rt.store, users(rt, 2), 6)
    stub.batch_item_faults = {ids[0]: "expired"}
    p = Processor(rt, make_analyzer(rt.config, e))
    assert p.process(ids).processed == 0          # submitted, not analyzed yet
    assert rt.handle.sync.hlen(rt.keys.batches) == 1
    out = p._run(poll_all(p))
    assert out["processed"] == 5
    assert rt.handle.sync.hlen(rt.keys.batches) == 1   # the expired request went out again
    stub.batch_item_faults = {}
    out = p._run(poll_all(p))
    assert out["processed"] == 1 and rt.handle.sync.hlen(rt.keys.batches) == 0
    s = sums_hold(rt)
    assert s["analyzed"] == 6 and s["queue_size"] == 0
