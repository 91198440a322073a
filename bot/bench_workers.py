"""Worker and export figures for `tuneloop bench`: records/s through one process (offline analyzer, and a
local OpenAI-compatible server answering in 300 ms), and Redis bytes per stored record."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from middleware.capture import detector_version
from middleware.config import Config, Env
from middleware.record import PII_TYPES, Record, capture_fields, iso_z, new_record_id
from middleware.redis_conn import RedisHandle
from middleware.store import Store
from workers.runtime import Runtime
from workers.tasks import Processor


def _messages(config: Config, n: int) -> list[tuple[str, str]]:
    """Synthetic messages and the reference bot's replies to them (templated, as bots' are)."""
    from bot.bench import synthetic_messages
    from bot.shop import ShopAssistant

    shop = ShopAssistant(config)
    return [(m, shop.reply(m)) for m in synthetic_messages(n, seed=5)]


def _seed(rt: Runtime, n: int, anonymize: bool = True) -> list[str]:
    """n pending records written the way capture writes them (anonymized first)."""
    store: Store = rt.store
    users = [rt.pseudonymizer(f"telegram:{900_000 + i}") for i in range(max(1, n // 20))]
    for u in users:
        store.grant(u, "es:bench", "es", "api")
    anon = rt.anonymizer if anonymize else None
    t0 = int(time.time() * 1000) + 10
    items: list[dict[str, Any]] = []
    ids: list[str] = []
    for i, (text, reply) in enumerate(_messages(rt.config, n)):
        content = anon.anonymize(text).text if anon is not None else text
        ms = t0 + i
        rec = Record(id=new_record_id(ms), user_id=users[i % len(users)], channel="telegram", content=content,
                     original_length=len(text), reply=[reply], pii=dict.fromkeys(PII_TYPES, 0),
                     metadata={"state": "idle", "lang": "es"}, consent_version="es:bench",
                     captured_at=iso_z(ms / 1000), detector_version=detector_version(rt.anonymizer))
        ids.append(rec.id)
        items.append({"k": "r", "u": rec.user_id, "t": ms, "id": rec.id, "c": capture_fields(rec)["c"], "a": {}})
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    for i in range(0, n, 500):
        pipe = rt.handle.sync.pipeline(transaction=True)
        store.flush(pipe, day, items[i:i + 500])
        pipe.execute()
    return ids


def _throughput(p: Processor, ids: list[str], batch: int = 200) -> float:
    t0 = time.perf_counter()
    done = 0
    for i in range(0, len(ids), batch):
        done += p.process(ids[i:i + batch]).processed
    return done / (time.perf_counter() - t0)


def _bytes_per_record(rt: Runtime, ids: list[str]) -> tuple[float, float]:
    """Redis memory per routed record (hash + its index and set entries) vs its JSON size."""
    r = rt.handle.sync
    sample = ids[: min(len(ids), 2000)]
    per_hash = sum(int(r.memory_usage(rt.keys.record(i), samples=0) or 0) for i in sample) / len(sample)
    # index entries: the time index, the user index and the status set, measured as a whole
    extra = (int(r.memory_usage(rt.keys.time_index, samples=0) or 0)
             + sum(int(r.memory_usage(rt.keys.status(s), samples=0) or 0)
                   for s in ("approved", "needs_review", "rejected", "pending"))) / len(ids)
    json_size = sum(len(json.dumps(rec.public(), ensure_ascii=False).encode())
                    for rec in rt.store.get_many(sample) if rec) / len(sample)
    return per_hash + extra, json_size


def worker_figures(config: Config, env: Env, handle: RedisHandle, quick: bool) -> dict[str, Any]:
    rt = Runtime(config, env, handle)
    n = 2000 if quick else 20_000
    ids = _seed(rt, n)
    p = Processor(rt)
    p.process(ids[:200])     # warm-up
    offline = _throughput(p, ids[200:])
    per_record, json_size = _bytes_per_record(rt, ids)
    out = {"worker_offline_records_per_s": offline, "redis_bytes_per_record": per_record,
           "record_json_bytes": json_size}
    out.update(_openai_figure(config, env, handle, 300 if quick else 1000))
    return out


def _openai_figure(config: Config, env: Env, handle: RedisHandle, n: int) -> dict[str, Any]:
    from bot.standins.openai_api import OpenAIStub

    stub = OpenAIStub()
    stub.latency = 0.3
    base_url, stop = stub.start_in_thread()
    try:
        e = env.model_copy(update={"openai_api_key": "sk-bench", "openai_base_url": base_url})
        rt = Runtime(config, e, handle)
        from workers.analyzers.base import make_analyzer

        ids = _seed(rt, n)
        p = Processor(rt, make_analyzer(config, e))
        rate = _throughput(p, ids, batch=200)
        return {"worker_openai_records_per_s": rate, "openai_concurrency": config.analysis.openai.concurrency}
    finally:
        stop()


def export_figures(config: Config, env: Env, handle: RedisHandle, quick: bool) -> dict[str, Any]:
    from workers.bench_export import export_figures as figures

    # a prefix of its own: the worker figures' records must not ride along
    own = config.model_copy(deep=True)
    own.redis.prefix = config.redis.prefix.rstrip(":") + "-export:"
    return figures(own, env, handle, quick)
