"""Prometheus metrics of the whole hub, read from SQL when they are scraped.

The hub runs as several processes (web apps, schedulers, prefork worker
children, on several machines), so no process can count for the others.
Nothing here is counted in memory: each scrape of ``GET /metrics``
(:mod:`hub.web.metrics`) asks the database, the source of truth, with a few
grouped queries that each read an index range or a small table, and, when
the broker is Redis, asks Redis for the length of each queue. Any web process
answers the same numbers for the whole hub.

What a scrape returns (``flow``, ``step``, ``queue``, ``hook`` label values are
the hub's own names)::

    hub_runs_started_total{flow}                  counter  runs created
    hub_runs_finished_total{flow,status}          counter  runs ended: succeeded, failed, cancelled
    hub_runs_active{flow,status}                  gauge    runs queued, running, needs_review
    hub_step_duration_seconds{flow,step,status}   gauge histogram of attempt durations
                                                           (succeeded, failed) of the last hour
    hub_queue_ready_steps{queue}                  gauge    steps due and waiting for a worker
    hub_queue_delayed_steps{queue}                gauge    steps waiting for a retry time
    hub_queue_running_steps{queue}                gauge    steps a worker holds the lease of
    hub_broker_queue_messages{queue}              gauge    messages in the Redis list of a queue
    hub_broker_up                                 gauge    1 when Redis answered this scrape
    hub_review_items_open{flow}                   gauge    review items waiting for a person
    hub_review_items_overdue{flow}                gauge    of those, past their due time
    hub_webhook_deliveries_total{hook,result}     counter  accepted, replayed, duplicate
    hub_webhook_rejections_total{hook,reason}     counter  refused requests by reason
    hub_metrics_scrape_duration_seconds           gauge    how long this scrape took

The counters are counts of rows, so they only grow while rows are kept;
deleting old rows reads to Prometheus as a counter reset, which ``rate()``
handles. Flows, queues and hooks the loaded flows declare are reported with 0
before their first row, so a rate has a start.

Step durations are a *gauge histogram*: bucket counts of the attempts that
finished within :data:`WINDOW` (at most the newest :data:`WINDOW_ATTEMPTS`
of them), not an ever-growing histogram. Read a quantile directly, without
``rate()``: ``histogram_quantile(0.95, sum by (le, flow)
(hub_step_duration_seconds_bucket))``. Durations are an attempt's start to its
end as stored (whole milliseconds); containers (for-each, branch, parallel,
sub-flow) are left out.
"""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from itertools import accumulate
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy import Float, Numeric, case, cast, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from hub import models as m
from hub.models import Attempt, ReviewItem, Run, WebhookDelivery, WebhookRejection, utcnow
from hub.settings import Settings
from hub.store import Store

log = logging.getLogger("hub.metrics")

#: How far back step durations look.
WINDOW = timedelta(hours=1)
#: The most attempts one scrape reads for step durations (the newest ones of the window).
WINDOW_ATTEMPTS = 2_000
#: Upper bounds (seconds) of the step duration buckets; ``+Inf`` is added.
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
#: Queues every hub has, reported even when no flow names them.
BASE_QUEUES = ("default", "browser", "desktop")
#: How long a scrape waits for Redis before it reports ``hub_broker_up 0``.
REDIS_TIMEOUT = 0.5
#: kombu's Redis transport keeps a message with a priority in ``queue + SEP + step``.
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = ("3", "6", "9")


class HubCollector(Collector):
    """Yields the hub's metric families, computed from SQL (and Redis) on every collect.

    ``registry`` (the loaded flows) names the flows, queues and hooks reported
    with 0 before their first row; ``clock`` gives naive UTC "now" (the web
    app's clock). Safe to call from several threads at once.
    """

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        registry: Iterable[Any] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.flows, self.queues, self.hooks = _declared(registry)
        self._redis: Any = None
        self._redis_lock = threading.Lock()

    def describe(self) -> list[Metric]:
        """Nothing: the families are only known by collecting (the registry must not collect
        at registration time, which would query the database)."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Query the database (one read transaction) and the broker; yield every family.

        A database error propagates (the route answers 503, Prometheus records
        the target down); a Redis error is ``hub_broker_up 0``.
        """
        started = time.perf_counter()
        now = self.clock()
        with self.store.read() as s:
            dialect = s.get_bind().dialect.name
            families = [
                *self._runs(s),
                self._durations(s, now, dialect),
                *self._steps(s, now),
                *self._reviews(s, now),
                *self._webhooks(s),
            ]
        families.extend(self._broker())
        yield from families
        yield GaugeMetricFamily(
            "hub_metrics_scrape_duration_seconds",
            "Seconds this scrape of the hub's metrics took (database and broker).",
            value=time.perf_counter() - started,
        )

    # ------------------------------------------------------------------ runs
    def _runs(self, s: Session) -> list[Metric]:
        rows = s.execute(
            select(Run.flow, Run.status, func.count()).group_by(Run.flow, Run.status)
        ).all()
        started: dict[str, int] = dict.fromkeys(self.flows, 0)
        finished: dict[tuple[str, str], int] = {
            (f, st): 0 for f in self.flows for st in m.RUN_TERMINAL
        }
        active: dict[tuple[str, str], int] = {(f, st): 0 for f in self.flows for st in m.RUN_ACTIVE}
        for flow, status, count in rows:
            started[flow] = started.get(flow, 0) + count
            if status in m.RUN_TERMINAL:
                finished[(flow, status)] = count
            else:
                active[(flow, status)] = count
        started_f = CounterMetricFamily(
            "hub_runs_started", "Runs created, by flow.", labels=["flow"]
        )
        for flow, count in sorted(started.items()):
            started_f.add_metric([flow], count)
        finished_f = CounterMetricFamily(
            "hub_runs_finished",
            "Runs that ended, by flow and status (succeeded, failed, cancelled).",
            labels=["flow", "status"],
        )
        for (flow, status), count in sorted(finished.items()):
            finished_f.add_metric([flow, status], count)
        active_f = GaugeMetricFamily(
            "hub_runs_active",
            "Runs not ended, by flow and status (queued, running, needs_review).",
            labels=["flow", "status"],
        )
        for (flow, status), count in sorted(active.items()):
            active_f.add_metric([flow, status], count)
        return [started_f, finished_f, active_f]

    # ------------------------------------------------------------- durations
    def _durations(self, s: Session, now: datetime, dialect: str) -> Metric:
        recent = (
            select(
                Attempt.step_id,
                Attempt.run_id,
                Attempt.status,
                _attempt_seconds(dialect).label("seconds"),
            )
            .where(
                Attempt.finished_at >= now - WINDOW,
                Attempt.status.in_((m.STEP_SUCCEEDED, m.STEP_FAILED)),
            )
            .order_by(Attempt.finished_at.desc())
            .limit(WINDOW_ATTEMPTS)
            .subquery()
        )
        # one primary-key lookup each: a join would let PostgreSQL scan all of steps
        node = (
            select(m.Step.node)
            .where(m.Step.id == recent.c.step_id, m.Step.kind == "step")
            .scalar_subquery()
        )
        flow = select(Run.flow).where(Run.id == recent.c.run_id).scalar_subquery()
        rows = s.execute(select(flow, node, recent.c.status, recent.c.seconds)).all()
        counts: dict[tuple[str, str, str], list[int]] = {}
        sums: dict[tuple[str, str, str], float] = {}
        for flow_name, step, status, seconds in rows:
            if step is None or flow_name is None:  # a container, or a row deleted meanwhile
                continue
            key = (flow_name, step, status)
            if key not in counts:
                counts[key], sums[key] = [0] * (len(BUCKETS) + 1), 0.0
            counts[key][bisect_left(BUCKETS, seconds)] += 1
            sums[key] += seconds
        family = GaugeHistogramMetricFamily(
            "hub_step_duration_seconds",
            f"Durations of step attempts that finished in the last {_span(WINDOW)} (the newest "
            f"{WINDOW_ATTEMPTS} at most), by flow, step and status (succeeded, failed). "
            "Bucket counts are gauges: take quantiles without rate().",
            labels=["flow", "step", "status"],
        )
        for key in sorted(counts):
            cumulative = list(accumulate(counts[key]))
            buckets = [(_bound(b), float(n)) for b, n in zip(BUCKETS, cumulative, strict=False)]
            buckets.append(("+Inf", float(cumulative[-1])))
            family.add_metric(list(key), buckets, round(sums[key], 3))
        return family

    # ----------------------------------------------------------------- steps
    def _steps(self, s: Session, now: datetime) -> list[Metric]:
        due = case(
            (or_(m.Step.not_before.is_(None), m.Step.not_before <= now), 1),
            else_=0,
        )
        rows = s.execute(
            select(m.Step.queue, m.Step.status, due.label("due"), func.count())
            .where(m.Step.status.in_((m.STEP_READY, m.STEP_RUNNING)))
            .group_by(m.Step.queue, m.Step.status, due)
        ).all()
        ready: dict[str, int] = dict.fromkeys(self.queues, 0)
        delayed: dict[str, int] = dict.fromkeys(self.queues, 0)
        running: dict[str, int] = dict.fromkeys(self.queues, 0)
        for queue, status, is_due, count in rows:
            for counts in (ready, delayed, running):
                counts.setdefault(queue, 0)
            if status == m.STEP_RUNNING:
                running[queue] += count
            elif is_due:
                ready[queue] += count
            else:
                delayed[queue] += count
        self.queues = tuple(sorted(set(self.queues) | set(ready)))
        out: list[Metric] = []
        for name, help_text, counts in (
            ("hub_queue_ready_steps", "Steps due and not yet taken by a worker, by queue.", ready),
            (
                "hub_queue_delayed_steps",
                "Ready steps waiting for their retry time (not_before), by queue.",
                delayed,
            ),
            (
                "hub_queue_running_steps",
                "Steps running now (a worker holds their lease), by queue.",
                running,
            ),
        ):
            family = GaugeMetricFamily(name, help_text, labels=["queue"])
            for queue, count in sorted(counts.items()):
                family.add_metric([queue], count)
            out.append(family)
        return out

    # --------------------------------------------------------------- reviews
    def _reviews(self, s: Session, now: datetime) -> list[Metric]:
        overdue = func.sum(case((ReviewItem.due_at < now, 1), else_=0))
        rows = s.execute(
            select(ReviewItem.flow, func.count(), overdue)
            .where(ReviewItem.status == "open")
            .group_by(ReviewItem.flow)
        ).all()
        open_f = GaugeMetricFamily(
            "hub_review_items_open", "Review items waiting for a person, by flow.", labels=["flow"]
        )
        overdue_f = GaugeMetricFamily(
            "hub_review_items_overdue",
            "Open review items past their due time, by flow.",
            labels=["flow"],
        )
        counts = {f: (0, 0) for f in self.flows}
        counts.update({flow: (n, late or 0) for flow, n, late in rows})
        for flow, (n, late) in sorted(counts.items()):
            open_f.add_metric([flow], n)
            overdue_f.add_metric([flow], late)
        return [open_f, overdue_f]

    # -------------------------------------------------------------- webhooks
    def _webhooks(self, s: Session) -> list[Metric]:
        deliveries = s.execute(
            select(
                WebhookDelivery.hook,
                WebhookDelivery.status,
                func.count(),
                func.coalesce(func.sum(WebhookDelivery.duplicates), 0),
            ).group_by(WebhookDelivery.hook, WebhookDelivery.status)
        ).all()
        results: dict[tuple[str, str], int] = {
            (h, r): 0 for h in self.hooks for r in ("accepted", "duplicate")
        }
        for hook, status, count, duplicates in deliveries:
            results[(hook, status)] = results.get((hook, status), 0) + count
            results[(hook, "duplicate")] = results.get((hook, "duplicate"), 0) + int(duplicates)
        delivered = CounterMetricFamily(
            "hub_webhook_deliveries",
            "Verified webhook requests, by hook and result: accepted (started a run), "
            "replayed (started again by an operator), duplicate (answered with the run "
            "of an earlier delivery).",
            labels=["hook", "result"],
        )
        for (hook, result), count in sorted(results.items()):
            delivered.add_metric([hook, result], count)
        rejections = s.execute(
            select(
                WebhookRejection.hook, WebhookRejection.reason, func.sum(WebhookRejection.count)
            ).group_by(WebhookRejection.hook, WebhookRejection.reason)
        ).all()
        refused = CounterMetricFamily(
            "hub_webhook_rejections",
            "Refused webhook requests, by hook and reason (signature, timestamp, too_large, "
            "content_type, malformed, invalid_input, secret_config).",
            labels=["hook", "reason"],
        )
        for hook, reason, count in sorted(rejections):
            refused.add_metric([hook, reason], int(count or 0))
        return [delivered, refused]

    # ---------------------------------------------------------------- broker
    def _broker(self) -> list[Metric]:
        url = self.settings.broker.split(";")[0].strip()
        if not url.startswith(("redis://", "rediss://")):
            return []
        up = GaugeMetricFamily(
            "hub_broker_up", "1 when the Redis broker answered this scrape, else 0."
        )
        try:
            lengths = self._queue_lengths(url)
        except Exception as exc:  # Redis away or refusing us: say so, keep the SQL numbers
            log.warning("metrics: Redis did not answer: %s: %s", type(exc).__name__, exc)
            with self._redis_lock:
                self._redis = None
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        family = GaugeMetricFamily(
            "hub_broker_queue_messages",
            "Messages waiting in the broker's list of each queue (Redis LLEN).",
            labels=["queue"],
        )
        for queue, length in sorted(lengths.items()):
            family.add_metric([queue], length)
        return [up, family]

    def _queue_lengths(self, url: str) -> dict[str, int]:
        client = self._client(url)
        pipe = client.pipeline(transaction=False)
        queues = sorted(self.queues)
        for queue in queues:
            pipe.llen(queue)
            for step in _PRIORITY_STEPS:
                pipe.llen(f"{queue}{_PRIORITY_SEP}{step}")
        replies = pipe.execute()
        per = 1 + len(_PRIORITY_STEPS)
        return {
            q: sum(int(n) for n in replies[i * per : (i + 1) * per]) for i, q in enumerate(queues)
        }

    def _client(self, url: str) -> Any:
        with self._redis_lock:
            if self._redis is None:
                import redis

                self._redis = redis.Redis.from_url(
                    url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
                )
            return self._redis

    def close(self) -> None:
        """Close the Redis connection pool, if one was opened."""
        with self._redis_lock:
            if self._redis is not None:
                self._redis.close()
                self._redis = None


def registry_for(
    store: Store,
    settings: Settings,
    *,
    flows: Iterable[Any] | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> CollectorRegistry:
    """A Prometheus registry holding only a :class:`HubCollector` (no process metrics:
    they would describe one web process, not the hub)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(store, settings, registry=flows, clock=clock))
    return registry


def _declared(
    registry: Iterable[Any] | None,
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """The flow names, queues and webhook names the loaded flows declare."""
    from hub.flow import ForEach
    from hub.triggers import Webhook

    flows: set[str] = set()
    queues: set[str] = set(BASE_QUEUES)
    hooks: set[str] = set()
    for flow in registry or ():
        flows.add(flow.name)
        for node in flow.nodes.values():
            queues.add(node.item_queue() if isinstance(node, ForEach) else node.queue)
        hooks.update(t.name for t in flow.triggers if isinstance(t, Webhook))
    return tuple(sorted(flows)), tuple(sorted(queues)), tuple(sorted(hooks))


def _attempt_seconds(dialect: str) -> ColumnElement[float]:
    """An attempt's duration in seconds, to the millisecond, in the database's own arithmetic."""
    start, end = Attempt.started_at, Attempt.finished_at
    if dialect == "postgresql":
        seconds: ColumnElement[Any] = func.extract("epoch", end - start)
    else:  # SQLite keeps times as text; julianday reads them (to the millisecond)
        seconds = (func.julianday(end) - func.julianday(start)) * 86400.0
    return cast(func.round(cast(seconds, Numeric(18, 6)), 3), Float)


def _bound(value: float) -> str:
    return repr(float(value))


def _span(window: timedelta) -> str:
    minutes = int(window.total_seconds() // 60)
    if minutes % 60 == 0:
        hours = minutes // 60
        return "hour" if hours == 1 else f"{hours} hours"
    return f"{minutes} minutes"
