"""OpenAI Batch API mode (config `analysis.openai.batch_api`): half the price, results within 24 h.

A job's pending records are submitted as one batch (`custom_id` = record id; the text travels
to OpenAI as it would in a chat request, never to disk here). The scheduler's poll job applies
finished batches through the same QA and routing as live analysis, and resubmits what expired
or failed transiently. The batch id -> record ids map lives in Redis (`keys.batches`).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from middleware.record import Record

from .analyzers.base import Outcome

if TYPE_CHECKING:
    from .tasks import Processor, Results

log = logging.getLogger("tuneloop.batches")

MAX_RESUBMITS = 5


async def submit(p: Processor, recs: list[Record], attempt: int = 0) -> str:
    from .analyzers.openai_analyzer import submit_batch

    batch_id = await submit_batch(p.analyzer, [(r.id, r.content) for r in recs])  # type: ignore[arg-type]
    p.rt.handle.sync.hset(p.rt.keys.batches, batch_id,
                          json.dumps({"ids": [r.id for r in recs], "attempt": attempt}))
    log.info("submitted batch %s with %d records", batch_id, len(recs))
    return batch_id


async def poll_all(p: Processor) -> dict[str, Any]:
    from .analyzers.openai_analyzer import poll_batch
    from .tasks import Results

    total = Results()
    pending = 0
    for raw_id, raw in p.rt.handle.sync.hgetall(p.rt.keys.batches).items():
        batch_id = raw_id.decode()
        info = json.loads(raw)
        poll = await poll_batch(p.analyzer, batch_id)  # type: ignore[arg-type]
        if not poll.done:
            pending += 1
            continue
        recs = p.load_pending(list(poll.outcomes))
        res: Results = p.apply(recs, [poll.outcomes[r.id] for r in recs])
        for k in ("processed", "passed_qa", "failed_qa", "needs_review", "errors"):
            setattr(total, k, getattr(total, k) + getattr(res, k))
        again = p.load_pending(poll.resubmit + res.retry_later)
        if again:
            attempt = int(info.get("attempt", 0)) + 1
            if attempt <= MAX_RESUBMITS:
                await submit(p, again, attempt)
            else:   # give up on the batch route: live analysis takes them, nothing is lost
                res2 = p.apply(again, await p.analyzer.analyze_batch([r.content for r in again]))
                total.retry_later += res2.retry_later
        p.rt.handle.sync.hdel(p.rt.keys.batches, batch_id)
    return {**total.public(), "batches_pending": pending}


def poll_batches_job() -> dict[str, Any]:
    from .tasks import processor

    p = processor()
    return p._run(poll_all(p))


__all__ = ["Outcome", "poll_all", "poll_batches_job", "submit"]
