"""Prometheus metrics of one serving process, scraped at `GET /metrics` (prometheus_client).

One registry per process (per `Runtime`), not prometheus_client's global one, so that several
bots in one test process never collide. Counters and histograms are fed by observers that
`wiring` hands to the Slack and Cloudflare clients and the budget; the gauges (work-queue depth,
requests by state) are read when scraped, so nothing is counted twice or drifts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from bot.access.services import Services
from storage.models import AccessRequest
from storage.states import RequestStatus

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "endpoint_of", "kind_of"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SWEEP_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# A path segment that names one object: Cloudflare ids are 32 hex digits; tags and zone ids too.
_ID = re.compile(r"^[0-9a-f]{16,}$|^raw-\d+$", re.IGNORECASE)
_COLLECTIONS = {"accounts", "members", "roles", "zones", "permission_groups", "resource_groups", "tokens"}
_STATES = {status.value for status in RequestStatus}
_KINDS = {"block_actions", "view_submission", "view_closed", "block_suggestion", "shortcut", "message_action"}


def endpoint_of(path: str) -> str:
    """`/accounts/abc…/members/def…` -> `/accounts/{id}/members/{id}`: a label of bounded cardinality."""
    segments = path.split("?", 1)[0].strip("/").split("/")
    shown: list[str] = []
    for position, segment in enumerate(segments):
        after_collection = position > 0 and segments[position - 1] in _COLLECTIONS and segment != "verify"
        shown.append("{id}" if _ID.match(segment) or after_collection else segment)
    return "/" + "/".join(shown)


def kind_of(body: Any) -> str:
    """What Slack sent, as a label: `command`, `event`, or the interaction's type."""
    if not isinstance(body, dict):
        return "other"
    if "command" in body:
        return "command"
    kind = body.get("type")
    if kind == "event_callback":
        return "event"
    return kind if kind in _KINDS or kind == "url_verification" else "other"


class _Gauges(Collector):
    """Read at scrape time: the work pools' depth and the stored requests by state."""

    def __init__(self, services: Services) -> None:
        self._services = services

    def collect(self) -> Iterable[Metric]:
        services = self._services
        depth = GaugeMetricFamily(
            "cf_access_work_queue_depth",
            "Tasks submitted to a worker pool and not finished (queued or running)",
            labels=["pool"],
        )
        for pool, executor in (
            ("listener", services.listener_executor),
            ("work", services.executor),
            ("cloudflare", services.cloudflare_executor),
        ):
            depth.add_metric([pool], executor.unfinished)
        yield depth
        states = GaugeMetricFamily("cf_access_requests", "Stored access requests by state", labels=["state"])
        with services.db.session() as session:
            rows = session.execute(select(AccessRequest.status, func.count()).group_by(AccessRequest.status)).all()
        counts = {str(state): count for state, count in rows}
        for state in [*(status.value for status in RequestStatus), *sorted(counts.keys() - _STATES)]:
            states.add_metric([state], counts.get(state, 0))
        yield states
        pause = services.cloudflare.pause
        paused = GaugeMetricFamily(
            "cf_access_cloudflare_paused_seconds", "Seconds left of the process-wide pause after a Cloudflare 429"
        )
        paused.add_metric([], pause.remaining() if pause is not None else 0.0)
        yield paused


class Metrics:
    """The process's instruments; its `observe_*` methods are the callbacks `wiring` hands out."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.ack_seconds = Histogram(
            "cf_access_ack_seconds",
            "Time from receiving a Slack request to answering it (the ack), by kind",
            ["kind"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.slack_calls = Counter(
            "cf_access_slack_calls",
            "Slack Web API calls (and response_url posts) by method and HTTP status (0: no answer)",
            ["method", "status"],
            registry=self.registry,
        )
        self.slack_seconds = Histogram(
            "cf_access_slack_call_seconds",
            "Slack call latency by method",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.cloudflare_calls = Counter(
            "cf_access_cloudflare_calls",
            "Cloudflare API calls by HTTP method, endpoint and status (0: no answer; 429s included)",
            ["method", "endpoint", "status"],
            registry=self.registry,
        )
        self.cloudflare_seconds = Histogram(
            "cf_access_cloudflare_call_seconds",
            "Cloudflare call latency by HTTP method and endpoint",
            ["method", "endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.pauses = Counter(
            "cf_access_cloudflare_rate_limit_pauses",
            "429s from Cloudflare, each pausing every Cloudflare call of the process",
            registry=self.registry,
        )
        self.budget_waits = Histogram(
            "cf_access_cloudflare_budget_wait_seconds",
            "How long calls waited for their turn under CLOUDFLARE_RATE_LIMIT (only calls that waited)",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )
        self.budget_refusals = Counter(
            "cf_access_cloudflare_budget_refusals",
            "Calls refused without being sent because the CLOUDFLARE_RATE_LIMIT budget was spent",
            registry=self.registry,
        )
        self.sweep_seconds = Histogram(
            "cf_access_sweep_seconds",
            "Duration of the scheduled sweep",
            buckets=_SWEEP_BUCKETS,
            registry=self.registry,
        )

    def watch(self, services: Services) -> None:
        """Add the gauges read from `services` at scrape time."""
        self.registry.register(_Gauges(services))

    def observe_ack(self, kind: str, seconds: float) -> None:
        self.ack_seconds.labels(kind).observe(seconds)

    def observe_slack(self, method: str, status: int, seconds: float) -> None:
        self.slack_calls.labels(method, str(status)).inc()
        self.slack_seconds.labels(method).observe(seconds)

    def observe_cloudflare(self, method: str, path: str, status: int, seconds: float) -> None:
        endpoint = endpoint_of(path)
        self.cloudflare_calls.labels(method, endpoint, str(status)).inc()
        self.cloudflare_seconds.labels(method, endpoint).observe(seconds)
        if status == 429:
            self.pauses.inc()

    def observe_budget_wait(self, seconds: float) -> None:
        self.budget_waits.observe(seconds)

    def observe_budget_refusal(self, _retry_after: float) -> None:
        self.budget_refusals.inc()

    def observe_sweep(self, seconds: float) -> None:
        self.sweep_seconds.observe(seconds)

    def render(self) -> bytes:
        """The text exposition format (runs the scrape-time queries: call it off the event loop)."""
        return generate_latest(self.registry)

    def samples(self) -> Iterator[tuple[str, dict[str, str], float]]:
        """Every sample as (name, labels, value): for tests and the benchmark."""
        for metric in self.registry.collect():
            for sample in metric.samples:
                yield sample.name, dict(sample.labels), sample.value
