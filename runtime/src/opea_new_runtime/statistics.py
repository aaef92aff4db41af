"""Request counts and latencies of the megaservice and of every node, in bounded memory.

`/v1/statistics` shows counts since start and latency percentiles over the last
`WINDOW` calls; `/metrics` shows the same counts and a latency histogram per node
in Prometheus' text format (prometheus_client). For a streaming node the latency is the time to its
first byte. Memory does not grow with traffic: one fixed-size window and one
fixed set of histogram buckets per node.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import deque
from typing import Any

WINDOW = 1024
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
PREFIX = "opea_megaservice"


class Counter:
    """Calls, failures and recent latencies of one thing (a node, or the megaservice's endpoint)."""

    def __init__(self) -> None:
        self.calls = 0
        self.failures = 0
        self.rejected = 0
        self.total_seconds = 0.0
        self.latencies: deque[float] = deque(maxlen=WINDOW)
        self.buckets = [0] * (len(BUCKETS) + 1)  # per bucket, not cumulative; the last is +Inf

    def record(self, seconds: float, *, failed: bool = False, rejected: bool = False) -> None:
        self.calls += 1
        self.failures += failed
        self.rejected += rejected
        self.total_seconds += seconds
        self.latencies.append(seconds)
        self.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1

    def snapshot(self) -> dict[str, Any]:
        recent = sorted(self.latencies)
        return {
            "requests": self.calls,
            "failures": self.failures,
            "rejected": self.rejected,
            "latency_ms": {
                "mean": _ms(self.total_seconds / self.calls) if self.calls else None,
                "p50": _ms(_percentile(recent, 50)),
                "p95": _ms(_percentile(recent, 95)),
                "p99": _ms(_percentile(recent, 99)),
                "max": _ms(recent[-1]) if recent else None,
            },
        }


class Statistics:
    """The megaservice's counters: one for its endpoint, one per node (a fixed set: memory stays bounded)."""

    def __init__(self, nodes: list[str] | tuple[str, ...] = ()) -> None:
        self.started = time.time()
        self.megaservice = Counter()
        self.nodes: dict[str, Counter] = {node: Counter() for node in nodes}
        self._registry = None  # prometheus_client's, made on the first scrape

    def node(self, name: str) -> Counter:
        counter = self.nodes.get(name)
        if counter is None:
            counter = self.nodes[name] = Counter()
        return counter

    def snapshot(self) -> dict[str, Any]:
        return {
            "uptime_seconds": round(time.time() - self.started, 3),
            "window": WINDOW,
            "megaservice": self.megaservice.snapshot(),
            "nodes": {name: counter.snapshot() for name, counter in self.nodes.items()},
        }

    def prometheus(self) -> str:
        """Every counter in Prometheus' text exposition format (prometheus_client, read at scrape time)."""
        from prometheus_client import CollectorRegistry, generate_latest

        if self._registry is None:
            self._registry = CollectorRegistry(auto_describe=False)
            self._registry.register(_Collector(self))
        return generate_latest(self._registry).decode()


class _Collector:
    """prometheus_client's view of a Statistics: families built from the counters on every scrape."""

    def __init__(self, statistics: Statistics) -> None:
        self.statistics = statistics

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        statistics = self.statistics
        uptime = GaugeMetricFamily(f"{PREFIX}_uptime_seconds", "Seconds since the megaservice started.")
        uptime.add_metric([], time.time() - statistics.started)
        yield uptime
        families = (
            ("requests", "request_duration_seconds", "Requests to the pipeline endpoint, by outcome.",
             "Time until the pipeline's answer started.", [], [((), statistics.megaservice)]),
            ("node_requests", "node_duration_seconds", "Calls of each node, by outcome.",
             "Time until each node's answer (its first byte for a stream).", ["node"],
             [((name,), counter) for name, counter in statistics.nodes.items()]),
        )
        for count_name, duration_name, count_help, duration_help, labels, counters in families:
            calls = CounterMetricFamily(f"{PREFIX}_{count_name}", count_help, labels=[*labels, "outcome"])
            durations = HistogramMetricFamily(f"{PREFIX}_{duration_name}", duration_help, labels=labels)
            for values, counter in counters:
                succeeded = counter.calls - counter.failures - counter.rejected
                for outcome, value in (("ok", succeeded), ("failed", counter.failures), ("rejected", counter.rejected)):
                    calls.add_metric([*values, outcome], value)
                cumulative, buckets = 0, []
                for bound, count in zip((*BUCKETS, math.inf), counter.buckets, strict=True):
                    cumulative += count
                    buckets.append(("+Inf" if bound == math.inf else repr(bound), cumulative))
                durations.add_metric(list(values), buckets, counter.total_seconds)
            yield calls
            yield durations


def _percentile(ordered: list[float], percent: float) -> float | None:
    if not ordered:
        return None
    rank = max(0, math.ceil(percent / 100 * len(ordered)) - 1)
    return ordered[rank]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
