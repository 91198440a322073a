"""The seed's stats object, read as one atomic snapshot so its sums hold whenever it is read."""

from __future__ import annotations

from typing import Any

import redis

from middleware.keys import ANON_COUNTERS, EXTRA_COUNTERS, PIPELINE_COUNTERS, Keys


def snapshot(client: redis.Redis, keys: Keys) -> dict[str, Any]:
    pipe = client.pipeline(transaction=True)   # MULTI: counters and set sizes from one instant
    pipe.hgetall(keys.stats)
    pipe.hgetall(keys.anon_stats)
    for s in ("pending", "approved", "rejected", "needs_review"):
        pipe.scard(keys.status(s))
    pipe.pfcount(keys.users_seen)
    pipe.scard(keys.consent_active)
    stats, anon, pending, approved, rejected, review, seen, active = pipe.execute()
    c = {k.decode(): int(v) for k, v in stats.items()}
    a = {k.decode(): int(v) for k, v in anon.items()}
    pipeline = {k: c.get(k, 0) for k in PIPELINE_COUNTERS}
    pipeline.update(queue_size=int(pending), processed_size=int(approved),
                    rejected_size=int(rejected), review_size=int(review))
    total = max(int(seen), int(active))   # the HyperLogLog estimates; never fewer than consented users
    return {
        "success": True,
        "pipeline": pipeline,
        "anonymization": {k: a.get(k, 0) for k in ANON_COUNTERS},
        "sessions": {"total": total, "with_consent": int(active),
                     "consent_rate": f"{(100.0 * int(active) / total) if total else 0.0:.1f}%"},
        "operations": {k: c.get(k, 0) for k in EXTRA_COUNTERS},
    }


def daily(client: redis.Redis, keys: Keys, days: list[str]) -> dict[str, dict[str, int]]:
    pipe = client.pipeline(transaction=False)
    for d in days:
        pipe.hgetall(keys.daily(d))
    return {d: {k.decode(): int(v) for k, v in h.items()} for d, h in zip(days, pipe.execute(), strict=True)}
