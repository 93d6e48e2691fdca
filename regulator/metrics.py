"""Prometheus metrics: one object holding every metric, built on an injected registry.

Names and labels are a contract (DESIGN.md §3). Labels are bounded: MMG id,
platform, route, ground, status, reason, target — never a phone number.

Several workers (``serve --workers N``): the supervisor sets ``PROMETHEUS_MULTIPROC_DIR``
in each worker's environment before ``prometheus_client`` is imported, so every value
lives in a per-process file there and one scrape of any worker returns the sum over
all of them (the client's multiprocess mode). Gauges say how they combine
(``multiprocess_mode``); a gauge read from a function (:meth:`Metrics.track`) is
refreshed every second and at each scrape instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from regulator.core.legs import LegChange, settled

#: Fail-safe reasons (bounded label values of ``regulator_failsafe_total``).
FAILSAFE_REASONS = (
    "unknown_number",
    "bad_request",
    "storage_error",
    "decision_timeout",
    "internal_error",
    "signature_misconfigured",
    "no_protocol",
)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_DECISION_BUCKETS = (0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.005, 0.01, 0.05)


#: Answer delays (s): the SUdF threshold is 60 s, QRAARM's short abandon 15 s.
ANSWER_DELAY_BUCKETS = (5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 90.0, 120.0, 300.0)

#: The environment variable of prometheus_client's multiprocess mode.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The multiprocess directory this process writes its values to, or None."""
    return os.environ.get(MULTIPROC_ENV) or None


class Metrics:
    """Every metric of the service, registered on ``registry`` (not the global one)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.multiprocess_dir = multiprocess_dir()
        self._tracked: list[tuple[Gauge, Callable[[], float]]] = []
        r = self.registry
        self.calls = Counter(
            "regulator_calls", "Calls routed", ["mmg", "platform", "route", "ground"], registry=r
        )
        self.decision_seconds = Histogram(
            "regulator_decision_seconds",
            "Time spent deciding a route",
            buckets=_DECISION_BUCKETS,
            registry=r,
        )
        self.webhook_seconds = Histogram(
            "regulator_webhook_seconds",
            "Webhook handling time",
            ["platform"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.failsafe = Counter(
            "regulator_failsafe",
            "Calls routed to centre 15 by the fail-safe",
            ["reason"],
            registry=r,
        )
        self.referrals = Counter(
            "regulator_referrals", "Referral events", ["mmg", "event"], registry=r
        )
        self.outbox_pending = Gauge(
            "regulator_outbox_pending",
            "Outbox events not yet delivered",
            registry=r,
            multiprocess_mode="livemostrecent",  # the store's figure: any worker's last read
        )
        self.outbox_local_pending = Gauge(
            "regulator_outbox_local_pending",
            "Centre 15 events kept on local disk (journal, spool), not yet in the outbox store",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.outbox_deliveries = Counter(
            "regulator_outbox_deliveries",
            "Outbox delivery attempts",
            ["target", "result"],
            registry=r,
        )
        self.storage_errors = Counter(
            "regulator_storage_errors", "Store operations that failed", ["op"], registry=r
        )
        self.spool_pending = Gauge(
            "regulator_spool_pending",
            "Call records waiting in the local spool",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.protocol_reloads = Counter(
            "regulator_protocol_reloads", "Protocol reloads", ["result"], registry=r
        )
        self.mmg_open = Gauge(
            "regulator_mmg_open",
            "1 if the MMG is open now, else 0",
            ["mmg"],
            registry=r,
            multiprocess_mode="livemax",  # every worker computes the same value
        )
        # Dial legs (core/legs.py), counted once per leg in the write path (LegChange):
        # QS60 = increase(..._bucket{le="60"}) / increase(regulator_legs_offered_total).
        self.answer_delay = Histogram(
            "regulator_answer_delay_seconds",
            "Seconds from a leg being offered to its answer",
            ["mmg", "target"],
            buckets=ANSWER_DELAY_BUCKETS,
            registry=r,
        )
        self.legs_offered = Counter(
            "regulator_legs_offered",
            "Dial legs offered and settled (answered, or ended unanswered; short abandons"
            " excluded)",
            ["mmg", "target"],
            registry=r,
        )
        self.legs_abandoned = Counter(
            "regulator_legs_abandoned",
            "Dial legs the caller hung up on before an answer (short abandons excluded)",
            ["mmg", "target"],
            registry=r,
        )
        # The leg metrics' children per (mmg, target), created on first use: labels()
        # costs a few microseconds, three per settled leg in the write path.
        self.leg_children: dict[tuple[int, str, str], Counter | Histogram] = {}
        for reason in FAILSAFE_REASONS:
            self.failsafe.labels(reason=reason)

    def track(self, gauge: Gauge, read: Callable[[], float]) -> None:
        """Make ``gauge`` report ``read()``: at scrape time in a single process; in
        multiprocess mode (where a function cannot be read from another worker) set
        by :meth:`refresh`, every second and at each scrape."""
        if self.multiprocess_dir is None:
            gauge.set_function(read)
        else:
            self._tracked.append((gauge, read))
            gauge.set(read())

    def refresh(self) -> None:
        """Set every tracked gauge from its reader (multiprocess mode)."""
        for gauge, read in self._tracked:
            gauge.set(read())

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition and its content type, for ``GET /metrics``: this
        registry, or in multiprocess mode the sum over every worker's files."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        self.refresh()
        combined = CollectorRegistry()
        MultiProcessCollector(combined, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(combined), CONTENT_TYPE_LATEST


def count_legs(metrics: Metrics, changes: Sequence[LegChange], short_abandon_s: float) -> None:
    """Count what each settled leg change adds (core/legs.settled): once per leg,
    whichever replica folded the event, however often the platform retried it."""
    for change in changes:
        done = settled(change, short_abandon_s)
        if not (done.offered or done.abandoned or done.answer_delay_s is not None):
            continue
        leg = change.after
        mmg, target = leg.mmg or "unknown", leg.line
        if done.offered:
            _leg_child(metrics, metrics.legs_offered, mmg, target).inc()
        if done.abandoned:
            _leg_child(metrics, metrics.legs_abandoned, mmg, target).inc()
        if done.answer_delay_s is not None:
            _leg_child(metrics, metrics.answer_delay, mmg, target).observe(done.answer_delay_s)


_Family = TypeVar("_Family", Counter, Histogram)


def _leg_child(metrics: Metrics, family: _Family, mmg: str, target: str) -> _Family:
    """``family.labels(mmg=…, target=…)``, looked up once per label set (each child is
    still created only when first counted: no zero series appear that did not before)."""
    key = (id(family), mmg, target)  # the families live as long as ``metrics``
    child = metrics.leg_children.get(key)
    if child is None:
        child = metrics.leg_children[key] = family.labels(mmg=mmg, target=target)
    return cast(_Family, child)
