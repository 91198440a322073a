"""RQ job functions over batches of record ids (records live in the store; jobs carry only ids).

Each record is handled on its own inside the job, so one bad record never fails the others, and
each verdict is applied by the store's route script, which skips a record that is gone (erased
meanwhile: the eraser counted it) or no longer pending (a retried or duplicated job).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from middleware.capture import detector_version
from middleware.record import Record, capture_fields, iso_z, result_field

from .analyzers.base import Analyzer, Outcome, make_analyzer
from .qa import REJECT, REVIEW, StrictScan, Verdict, judge, normalized_hash, residue
from .runtime import Runtime

log = logging.getLogger("tuneloop.worker")

PROCESS_JOB = "workers.tasks.process_records"


@dataclass
class Results:
    """The seed's `results` object."""

    processed: int = 0
    passed_qa: int = 0
    failed_qa: int = 0
    needs_review: int = 0
    errors: int = 0
    retry_later: list[str] = field(default_factory=list)

    def add(self, status: str) -> None:
        self.processed += 1
        if status == "approved":
            self.passed_qa += 1
        elif status == "rejected":
            self.failed_qa += 1
        elif status == "needs_review":
            self.needs_review += 1

    def public(self) -> dict[str, int]:
        return {"processed": self.processed, "passed_qa": self.passed_qa, "failed_qa": self.failed_qa,
                "needs_review": self.needs_review, "errors": self.errors}


class Processor:
    """Analysis, QA and routing for one process (a worker, the CLI, the app)."""

    def __init__(self, rt: Runtime, analyzer: Analyzer | None = None) -> None:
        self.rt = rt
        self.analyzer = analyzer or make_analyzer(rt.config, rt.env)
        self.anonymizer = rt.anonymizer
        self.scan = StrictScan(self.anonymizer)
        self._loop: asyncio.AbstractEventLoop | None = None

    def _run(self, coro: Any) -> Any:
        # One loop per process, reused: the OpenAI client's connections live on it.
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            if self._loop is None or self._loop.is_closed():
                self._loop = asyncio.new_event_loop()
            return self._loop.run_until_complete(coro)
        coro.close()
        raise RuntimeError("Processor.process is synchronous; call it from a thread")

    def load_pending(self, ids: list[str]) -> list[Record]:
        """The records still pending (gone or already routed ones are skipped, counted by nobody)."""
        return [r for r in self.rt.store.get_many(ids) if r is not None and r.status == "pending"]

    def process(self, ids: list[str]) -> Results:
        recs = self.load_pending(ids)
        if not recs:
            return Results()
        if self.batch_mode:
            from .batches import submit

            self._run(submit(self, recs))
            return Results()
        outcomes: list[Outcome] = self._run(self.analyzer.analyze_batch([r.content for r in recs]))
        return self.apply(recs, outcomes)

    @property
    def batch_mode(self) -> bool:
        return self.rt.config.analysis.openai.batch_api and self.analyzer.name == "openai"

    def apply(self, recs: list[Record], outcomes: list[Outcome]) -> Results:
        """QA and routing of analyzed records, one pipeline; transient ones are listed for later."""
        res = Results()
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        now = iso_z(time.time())
        verdicts: list[tuple[str, str, str, str, str, str, str]] = []
        for rec, out in zip(recs, outcomes, strict=True):
            try:
                if out.kind == "transient":
                    res.retry_later.append(rec.id)
                    continue
                verdicts.append(self._verdict(rec, out, now))
            except Exception as e:   # one bad record: to review with the reason, never lost
                log.error("QA failed on record %s: %s", rec.id, type(e).__name__)
                verdicts.append(self._error_verdict(rec, f"qa_error:{type(e).__name__}", now))
        for s in self.rt.store.route(day, verdicts):
            if s in ("approved", "rejected", "needs_review"):
                res.add(s)
        res.errors += len(res.retry_later)
        return res

    def _verdict(self, rec: Record, out: Outcome, now: str) -> tuple[str, str, str, str, str, str, str]:
        cfg = self.rt.config
        version = detector_version(self.anonymizer)
        if out.kind == "ok" and out.analysis is not None:
            analysis = dict(out.analysis)
            analysis.pop("multi", None)
            v, dup = judge(rec, analysis, cfg, self.scan)
        else:
            analysis = None
            content, replies = residue(rec, self.scan)
            v = Verdict(REVIEW, [out.reason or "analyzer_review"])
            if content is not None or replies is not None:
                v.errors.append("pii_residue")
                v.masked_content = content if content is not None else rec.content
                v.masked_reply = replies if replies is not None else rec.reply
            dup = v
        rec.analysis = analysis
        rec.analyzer = self.analyzer.name
        rec.processed_at = now
        capture = ""   # the capture field is rewritten only when QA changed it
        if v.masked_content is not None or rec.detector_version != version:
            if v.masked_content is not None:
                rec.content = v.masked_content
                rec.reply = v.masked_reply or []
            rec.detector_version = version   # the version this record was last scanned with
            capture = capture_fields(rec)["c"]
        rec.status = v.status  # type: ignore[assignment]
        rec.qa_passed = v.status == "approved"
        rec.qa_errors = v.errors
        first = result_field(rec)
        # the duplicate verdict differs only in its QA fields: patch the JSON, not the model
        second = result_field(rec, qa_passed=False, qa_errors=dup.errors) if dup is not v else first
        results = [first, second]
        dedupe = normalized_hash(rec.content) if cfg.qa.near_duplicate and analysis is not None else ""
        return (rec.id, v.status, results[0], dup.status, results[1], capture, dedupe)

    def _error_verdict(self, rec: Record, reason: str, now: str) -> tuple[str, str, str, str, str, str, str]:
        rec.analysis, rec.analyzer, rec.processed_at = None, self.analyzer.name, now
        rec.status, rec.qa_passed, rec.qa_errors = "needs_review", False, [reason]  # type: ignore[assignment]
        r = result_field(rec)
        return (rec.id, "needs_review", r, "needs_review", r, "", "")

    # ------------------------------------------------------------------------------ batches
    def process_pending(self, max_items: int = 100, batch: int = 200) -> Results:
        """On-demand processing (`tuneloop process`, /process, the scheduled run)."""
        total = Results()
        seen: set[str] = set()
        cursor = 0
        while total.processed + total.errors < max_items:
            cursor, ids = self.rt.store.status_ids("pending", cursor, count=batch)
            ids = [i for i in ids if i not in seen][: max_items - total.processed - total.errors]
            seen.update(ids)
            if ids:
                r = self.process(ids)
                for k in ("processed", "passed_qa", "failed_qa", "needs_review", "errors"):
                    setattr(total, k, getattr(total, k) + getattr(r, k))
                total.retry_later += r.retry_later
            if cursor == 0:
                break
        return total


# ---------------------------------------------------------------------------------- RQ jobs

_PROCESSOR: Processor | None = None


def processor() -> Processor:
    """The process-wide processor (preloaded by `tuneloop worker` before RQ forks)."""
    global _PROCESSOR
    if _PROCESSOR is None:
        _PROCESSOR = Processor(Runtime.load())
    return _PROCESSOR


def set_processor(p: Processor | None) -> None:
    global _PROCESSOR
    _PROCESSOR = p


def process_records(ids: list[str], attempt: int = 0) -> dict[str, int]:
    """The job capture enqueues. Transient analyzer failures come back later, with growing delays."""
    p = processor()
    res = p.process(list(ids))
    if res.retry_later:
        intervals = p.rt.config.workers.retry_intervals_s or [60]
        delay = intervals[min(attempt, len(intervals) - 1)]
        q = p.rt.queue()
        pipe = p.rt.handle.sync.pipeline()
        pipe.hincrby(p.rt.keys.stats, "retried", len(res.retry_later))
        pipe.execute()
        q.enqueue_in(timedelta(seconds=delay), PROCESS_JOB, res.retry_later, attempt + 1,
                     job_timeout=p.rt.config.workers.job_timeout_s, result_ttl=0)
        log.warning("%d records back on the queue in %ds (attempt %d)", len(res.retry_later), delay,
                    attempt + 1)
    return res.public()


def process_pending_job(max_items: int = 100_000) -> dict[str, int]:
    """The scheduled run (workers.mode = scheduled), and the sweep after a crash."""
    return processor().process_pending(max_items).public()


__all__ = ["Processor", "REJECT", "Results", "process_pending_job", "process_records"]
