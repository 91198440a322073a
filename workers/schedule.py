"""`tuneloop scheduler`: the periodic work, enqueued as ordinary RQ jobs (JSON-serialized).

RQ's own `rq cron` enqueues with RQ's default pickle serializer, which tuneloop's workers refuse
(queues hold JSON only), so this small loop does the enqueueing. Any number may run: a lock in
Redis lets one act at a time.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from croniter import croniter

from .runtime import Runtime

log = logging.getLogger("tuneloop.scheduler")


@dataclass
class Periodic:
    name: str
    func: str                 # the job, by dotted path
    next_at: Callable[[float], float]
    kwargs: dict[str, Any]


def _cron(expr: str) -> Callable[[float], float]:
    return lambda now: croniter(expr, datetime.fromtimestamp(now, UTC)).get_next(float)


def _every(seconds: float) -> Callable[[float], float]:
    return lambda now: now + seconds


def plan(rt: Runtime) -> list[Periodic]:
    cfg = rt.config
    jobs = []
    if cfg.workers.mode == "scheduled":
        jobs.append(Periodic("process", "workers.tasks.process_pending_job", _cron(cfg.workers.schedule_cron),
                             {}))
    if cfg.gdpr.retention_days > 0:
        jobs.append(Periodic("retention", "workers.retention.purge_expired_job", _cron("17 3 * * *"), {}))
    if cfg.analysis.openai.batch_api and rt.env.openai_api_key:
        jobs.append(Periodic("openai-batches", "workers.batches.poll_batches_job",
                             _every(cfg.analysis.openai.batch_poll_minutes * 60), {}))
    return jobs


def run(rt: Runtime, stop: Callable[[], bool] = lambda: False, tick: float = 1.0,
        jobs: list[Periodic] | None = None) -> None:
    q = rt.queue()
    me = f"{socket.gethostname()}:{os.getpid()}"
    lock = rt.keys.scheduler_lock
    jobs = plan(rt) if jobs is None else jobs
    now = time.time()
    due = {j.name: j.next_at(now) for j in jobs}
    log.info("scheduler %s: %s", me, ", ".join(j.name for j in jobs) or "nothing to schedule")
    while not stop():
        r = rt.handle.sync
        holder = r.set(lock, me, nx=True, ex=30) or r.get(lock) == me.encode()
        if holder:
            r.expire(lock, 30)
            now = time.time()
            for j in jobs:
                if now >= due[j.name]:
                    q.enqueue_call(j.func, kwargs=j.kwargs, timeout=rt.config.workers.job_timeout_s,
                                   result_ttl=0)
                    due[j.name] = j.next_at(now)
                    log.info("enqueued %s", j.name)
        time.sleep(tick)


def cmd_scheduler(a: argparse.Namespace) -> int:
    rt = Runtime.load(check=True)
    stopping = False

    def on_term(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    run(rt, lambda: stopping)
    return 0
