"""/metrics: the counters of ARCHITECTURE.md from Redis, plus this process's capture figures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from workers.runtime import Runtime
from workers.stats import snapshot

NOW = ("queue_size", "processed_size", "rejected_size", "review_size")


class RedisCollector(Collector):
    """Reads the stats snapshot at scrape time: every bot process and worker counts into Redis."""

    def __init__(self, rt: Runtime, capture: Any = None) -> None:
        self.rt = rt
        self.capture = capture

    def collect(self) -> Iterator[Metric]:
        s = snapshot(self.rt.handle.sync, self.rt.keys)
        for k, v in s["pipeline"].items():
            if k in NOW:
                yield GaugeMetricFamily(f"tuneloop_{k}", f"records {k.replace('_size', '')} now", value=v)
            else:
                yield CounterMetricFamily(f"tuneloop_{k}", f"records {k}", value=v)
        for k, v in s["operations"].items():
            yield CounterMetricFamily(f"tuneloop_{k}", f"{k} events", value=v)
        for k, v in s["anonymization"].items():
            yield CounterMetricFamily(f"tuneloop_anonymizer_{k}", f"anonymizer {k}", value=v)
        yield GaugeMetricFamily("tuneloop_sessions_total_users", "distinct users seen (estimate)",
                                value=s["sessions"]["total"])
        yield GaugeMetricFamily("tuneloop_sessions_with_consent", "users whose consent is active",
                                value=s["sessions"]["with_consent"])
        if self.capture is not None:
            core = self.capture.core
            yield GaugeMetricFamily("tuneloop_buffer_depth", "records waiting in this process's buffer",
                                    value=core.buffered)
            yield CounterMetricFamily("tuneloop_buffer_dropped", "records this process dropped (full buffer)",
                                      value=core.stats_local["dropped"])
            yield GaugeMetricFamily("tuneloop_capture_ready", "1 when the start-up checks pass",
                                    value=1 if core.ready else 0)


def render(rt: Runtime, capture: Any = None) -> bytes:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(RedisCollector(rt, capture))
    out = generate_latest(reg)
    if capture is not None:
        out += generate_latest(capture.core.registry)
    return out
