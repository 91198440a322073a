"""Retention: records older than `gdpr.retention_days` are purged by a scheduled job."""

from __future__ import annotations

import time

from .runtime import Runtime

CHUNK = 1000


def purge_expired(rt: Runtime, now: float | None = None) -> dict[str, int]:
    days = rt.config.gdpr.retention_days
    if days <= 0:
        return {"discarded": 0, "erased": 0}
    cutoff_ms = int(((now or time.time()) - days * 86400) * 1000)
    total_d = total_e = 0
    while True:
        ids = [i.decode() for i in rt.handle.sync.zrangebyscore(rt.keys.time_index, "-inf", cutoff_ms,
                                                                  start=0, num=CHUNK)]
        if not ids:
            break
        d, e = rt.store.erase_records(ids)
        total_d += d
        total_e += e
    return {"discarded": total_d, "erased": total_e}


def purge_expired_job() -> dict[str, int]:
    from .tasks import processor

    return purge_expired(processor().rt)
