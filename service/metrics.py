"""Prometheus metrics: requests per route, scores and decisions per head, batches, queue depth.

Each app gets its own registry (tests build several apps in one process). With ``--workers N``
each process counts its own requests; a scrape sees the process that answered it.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from service.heads import RISKS
from service.record import ScoreRecord

__all__ = ["CONTENT_TYPE", "Metrics"]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SCORE_BUCKETS = tuple(i / 10 for i in range(1, 11))
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    def __init__(
        self,
        model_version: str,
        policy_version: str,
        *,
        queue_depth: Callable[[], float],
        storage_up: Callable[[], float],
    ) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "qinglang_requests", "HTTP requests", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "qinglang_request_seconds",
            "HTTP request latency",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.scores = Histogram(
            "qinglang_score",
            "Risk scores of newly scored posts",
            ["risk"],
            buckets=SCORE_BUCKETS,
            registry=r,
        )
        self.flags = Counter("qinglang_flags", "Newly scored posts flagged", ["risk"], registry=r)
        self.decisions = Counter(
            "qinglang_decisions", "Decisions on newly scored posts", ["decision"], registry=r
        )
        self.batches = Histogram(
            "qinglang_batch_posts", "Posts per model call", buckets=BATCH_BUCKETS, registry=r
        )
        self.spooled = Counter(
            "qinglang_spooled_records", "Records spooled while storage was down", registry=r
        )
        self.evidence_skipped = Counter(
            "qinglang_evidence_skipped_records",
            "Stored records left evidence_pending because the evidence backlog was full",
            registry=r,
        )
        Gauge("qinglang_queue_depth", "Posts waiting for the model", registry=r).set_function(
            queue_depth
        )
        Gauge("qinglang_storage_up", "1 when storage answers", registry=r).set_function(storage_up)
        Gauge(
            "qinglang_model_info",
            "The model and policy in use",
            ["model_version", "policy_version"],
            registry=r,
        ).labels(model_version, policy_version).set(1)

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def scored(self, record: ScoreRecord) -> None:
        """Count a post scored for the first time (a repeated id is not counted again)."""
        for risk in RISKS:
            self.scores.labels(risk).observe(record.scores[risk])
            if record.flags[risk]:
                self.flags.labels(risk).inc()
        self.decisions.labels(record.decision).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
