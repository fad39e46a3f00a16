"""Wiring for one process: settings -> store, registry, engine and the Celery app.

Celery is only the transport. Its one task, ``hub.step``, carries a step id
and calls :meth:`hub.engine.Engine.execute`; results are ignored and status is
read from SQL. No canvas (chain/chord/group) is used for flow control.
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import Any

from celery import Celery
from celery.signals import (
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_shutdown,
)

from hub.engine import Engine
from hub.registry import Registry
from hub.settings import Settings
from hub.store import Store

log = logging.getLogger("hub")

QUEUES = ("default", "browser", "desktop")


class Hub:
    """Everything a hub process needs, built lazily from one ``Settings``."""

    def __init__(self, settings: Settings | None = None, registry: Registry | None = None) -> None:
        self.settings = broker_safe(settings or Settings())
        self._registry = registry

    @cached_property
    def store(self) -> Store:
        return Store(self.settings.database, pool_size=self.settings.database_pool_size)

    @cached_property
    def registry(self) -> Registry:
        return self._registry or Registry.load(self.settings.flow_modules)

    @cached_property
    def engine(self) -> Engine:
        return Engine(self.store, self.registry, self.publish, self.settings)

    @cached_property
    def celery(self) -> Celery:
        return make_celery(self)

    def close(self) -> None:
        """Close the database pool and let go of the Celery app.

        Broker connections stay in kombu's process-wide pools, which every
        hub with the same broker URL shares; ``kombu.pools.reset()`` closes them.
        """
        if "celery" in self.__dict__:
            self.celery.close()
        if "store" in self.__dict__:
            self.store.engine.dispose()

    def publish(self, step_id: str, queue: str, countdown: float | None = None) -> None:
        """Send ``hub.step(step_id)`` to ``queue``; a short ``countdown`` delays it."""
        options: dict[str, Any] = {"queue": queue}
        if countdown:
            # a little late rather than early: the step is not claimable before its time
            options["countdown"] = countdown + 0.05
        self.celery.send_task("hub.step", args=[step_id], **options)


def broker_safe(settings: Settings) -> Settings:
    """``settings`` with ``countdown_max`` well inside the broker's visibility timeout.

    A countdown is an ETA message the worker holds unacked until it is due;
    past the visibility timeout Redis hands it out again, and again, until
    then. Longer waits stay in SQL (``not_before``), and the reconciler
    publishes the step when it is due.
    """
    limit = settings.visibility_timeout / 2
    if settings.embedded_broker or settings.countdown_max <= limit:
        return settings
    return settings.model_copy(update={"countdown_max": limit})


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings the hub runs with; docs/operations.md says why."""
    conf: dict[str, Any] = {
        "broker_url": settings.broker,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "result_backend": None,
        "task_ignore_result": True,  # status lives in SQL
        "task_acks_late": True,  # a message is acked after the step is stored
        "task_reject_on_worker_lost": True,  # a killed child's message goes back
        "worker_prefetch_multiplier": 1,  # short steps never wait behind a long one
        "task_default_queue": "default",
        "task_create_missing_queues": True,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,  # keep trying while the broker restarts
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        # a killed pool child's message goes back after this (Celery waits 10 s for a
        # result the hub never uses); a duplicate delivery is harmless, the lease decides
        "worker_lost_wait": 1.0,
    }
    if settings.embedded_broker:
        import hub.brokerfs  # noqa: F401 - registers the hubfs:// transport

        conf["broker_url"] = "hubfs://"
        folder = settings.broker_folder
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        conf["broker_transport_options"] = {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            # exchange tables; kombu's default is ./control, in whatever folder the process runs
            "control_folder": str(folder / "control"),
            "store_processed": False,
            "polling_interval": settings.broker_poll_seconds,
        }
    else:
        vt = settings.visibility_timeout
        # kombu looks for unacked messages past the timeout every 10 x 10 s; with a short
        # timeout, look a few times per timeout so a message is never stranded that long
        every = min(10.0, max(1.0, vt / 3))
        conf["broker_transport_options"] = {
            "visibility_timeout": vt,
            "unacked_restore_interval": every,
            "unacked_restore_throttle": max(1, min(10, int(vt / (3 * every)))),
            "socket_timeout": 10,
            "socket_connect_timeout": 5,
            "health_check_interval": 10,
            "retry_on_timeout": True,
        }
        conf["broker_pool_limit"] = 10
    return conf


def make_celery(hub: Hub) -> Celery:
    app = Celery("hub", set_as_current=False)
    app.conf.update(celery_config(hub.settings))

    # shared=False: the task belongs to this app (and this Hub) only
    @app.task(name="hub.step", bind=True, ignore_result=True, shared=False)
    def step_task(self: Any, step_id: str) -> None:
        hub.engine.execute(step_id)

    def _after_fork(**_: Any) -> None:
        # connections opened by the parent must not be shared with a forked child
        if "store" in hub.__dict__:
            hub.store.dispose()

    def _lend_services(sender: Any = None, **_: Any) -> None:
        # before the pool forks: children inherit the services; each child launches its own
        # browser and, on a server without a screen, starts its own Xvfb on its first step
        if getattr(sender, "app", None) is not app:
            return
        if consumes(app, "browser"):
            from bots.browser import BrowserService

            hub.engine.services.setdefault("browser", BrowserService(hub.settings))
        if consumes(app, "desktop"):
            from bots.desktop import DesktopService

            hub.engine.services.setdefault("desktop", DesktopService(hub.settings))

    def _close_services(**_: Any) -> None:
        if "engine" in hub.__dict__:
            close_services(hub.engine)

    worker_process_init.connect(_after_fork, weak=False)
    worker_init.connect(_lend_services, weak=False)
    worker_process_shutdown.connect(_close_services, weak=False)  # a prefork child stops
    worker_shutdown.connect(_close_services, weak=False)  # the solo pool stops
    return app


def consumes(app: Celery, queue: str) -> bool:
    """Whether a worker of ``app`` takes messages from ``queue`` (its ``--queues``)."""
    chosen = app.amqp.queues.consume_from
    return queue in chosen if chosen else queue == app.conf.task_default_queue


def close_services(engine: Engine) -> None:
    """Shut down what this process lent to steps (its browser, its Xvfb); errors are logged."""
    for name, service in list(engine.services.items()):
        shutdown = getattr(service, "shutdown", None)
        if shutdown is None:
            continue
        try:
            shutdown()
        except Exception:
            log.exception("shutting down the %s service failed", name)
