"""Request counts and latencies of the megaservice and of every node, in bounded memory.

Counts are totals since start; latency percentiles are over the last `WINDOW`
calls. For a streaming node the latency is the time to its first byte.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Any

WINDOW = 1024


class Counter:
    """Calls, failures and recent latencies of one thing (a node, or the megaservice's endpoint)."""

    def __init__(self) -> None:
        self.calls = 0
        self.failures = 0
        self.rejected = 0
        self.total_seconds = 0.0
        self.latencies: deque[float] = deque(maxlen=WINDOW)

    def record(self, seconds: float, *, failed: bool = False, rejected: bool = False) -> None:
        self.calls += 1
        self.failures += failed
        self.rejected += rejected
        self.total_seconds += seconds
        self.latencies.append(seconds)

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


def _percentile(ordered: list[float], percent: float) -> float | None:
    if not ordered:
        return None
    rank = max(0, math.ceil(percent / 100 * len(ordered)) - 1)
    return ordered[rank]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
