"""Prometheus metrics of one app (one worker process): requests, latency per endpoint, time per
ranking stage."""

from __future__ import annotations

import os

from fastapi.responses import Response


class Metrics:
    """Prometheus counters and histograms in a registry of this app (no process globals)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "shoprank_requests", "HTTP requests", ["endpoint", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "shoprank_request_seconds",
            "HTTP request latency",
            ["endpoint"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2.5, 5, 10),
            registry=self.registry,
        )
        self.stages = Histogram(
            "shoprank_stage_seconds",
            "time per ranking stage",
            ["stage"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        # Each worker process (``serve --workers N``) keeps its own figures: the label says
        # which one a scrape reached.
        Gauge("shoprank_worker", "the worker process that answered", ["pid"], registry=self.registry).labels(
            str(os.getpid())
        ).set(1)

    def observe_stages(self, timings_ms: dict[str, float]) -> None:
        for stage, ms in timings_ms.items():
            self.stages.labels(stage).observe(ms / 1000.0)

    def render(self) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
