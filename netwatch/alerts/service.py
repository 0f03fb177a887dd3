"""The alert service inside the daemon: evaluates the rules on a timer and
hands what fired or resolved to the notifiers, within a global budget.
"""

from __future__ import annotations

import asyncio
import datetime
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping

import aiohttp
import structlog

from netwatch.alerts.lifecycle import Alert, AlertBook, AlertState, Transition
from netwatch.alerts.notifiers import (
    AlertmanagerNotifier,
    LogNotifier,
    Notifier,
    WebhookNotifier,
    alert_document,
)
from netwatch.alerts.rules import Condition, Health, active_conditions
from netwatch.config import AlertSettings
from netwatch.containers import ContainerInfo
from netwatch.matrix import MatrixSnapshot
from netwatch.metrics import SelfMetrics

log = structlog.get_logger("netwatch.alerts")

_BUDGET_WINDOW_S = 60.0
# The longest grace period the configuration allows.
_DAY_S = 86400.0


class NotificationBudget:
    """At most `per_minute` notifications in any sliding minute."""

    def __init__(self, per_minute: int) -> None:
        self._per_minute = per_minute
        self._sent: deque[float] = deque()

    def allow(self, now: float) -> bool:
        while self._sent and now - self._sent[0] >= _BUDGET_WINDOW_S:
            self._sent.popleft()
        if len(self._sent) >= self._per_minute:
            return False
        self._sent.append(now)
        return True


def _started(info: ContainerInfo) -> float | None:
    """The container's start time from the engine (RFC 3339, nanoseconds)."""
    text = info.started_at.strip()
    if not text:
        return None
    seconds, _, fraction = text.removesuffix("Z").partition(".")
    try:
        moment = datetime.datetime.fromisoformat(seconds).replace(tzinfo=datetime.UTC)
    except ValueError:
        return None
    digits = "".join(c for c in fraction if c.isdigit())[:6]
    return moment.timestamp() + (int(digits) / 10 ** len(digits) if digits else 0.0)


class LifecycleClock:
    """When each container last started, stopped, restarted, paused or
    unpaused, learned by comparing successive inventories. A start is dated
    by the engine's own StartedAt, so containers that were already running
    when netwatch started are not mistaken for new ones."""

    def __init__(self, keep_gone_s: float = _DAY_S) -> None:
        self._known: dict[str, ContainerInfo] = {}
        self._changed_at: dict[str, float] = {}
        # How long a removal is remembered: only a grace period reads it.
        self.keep_gone_s = keep_gone_s

    def observe(self, containers: Mapping[str, ContainerInfo], now: float) -> None:
        for container_id, info in containers.items():
            before = self._known.get(container_id)
            if before is None or before.started_at != info.started_at:
                started = _started(info)
                self._changed_at[container_id] = min(now, started) if started else now
            elif before.paused != info.paused:
                self._changed_at[container_id] = now
        for container_id in set(self._known) - set(containers):
            self._changed_at[container_id] = now
        self._known = dict(containers)

        expired = [
            container_id
            for container_id, changed in self._changed_at.items()
            if container_id not in self._known and now - changed >= self.keep_gone_s
        ]
        for container_id in expired:
            del self._changed_at[container_id]

    def changed_at(self, container_id: str) -> float | None:
        return self._changed_at.get(container_id)


def default_external_url(port: int | None, *, https: bool = False) -> str:
    scheme = "https" if https else "http"
    return f"{scheme}://{socket.gethostname()}:{port or 0}"


class AlertService:
    def __init__(
        self,
        settings: AlertSettings,
        *,
        snapshot: Callable[[], MatrixSnapshot],
        health: Callable[[], Health],
        lifecycle: LifecycleClock,
        metrics: SelfMetrics,
        external_url: str,
        clock: Callable[[], float] = time.time,
        book: AlertBook | None = None,
    ) -> None:
        self._settings = settings
        self._snapshot = snapshot
        self._health = health
        self._lifecycle = lifecycle
        lifecycle.keep_gone_s = settings.grace_period
        self._metrics = metrics
        self._clock = clock
        # A reload hands over the running service's book.
        self._book = book.with_settings(settings) if book else AlertBook(settings)
        self._budget = NotificationBudget(settings.max_notifications_per_minute)
        self._held_since_report = 0
        self._suppressed: list[Condition] = []
        self._generator_url = external_url.rstrip("/") + "/api/v1/alerts"
        self._session: aiohttp.ClientSession | None = None
        self.notifiers: list[Notifier] = [LogNotifier()]
        for webhook in settings.webhooks:
            self.notifiers.append(
                WebhookNotifier(webhook, self._http, metrics, self._generator_url)
            )
        for alertmanager in settings.alertmanagers:
            self.notifiers.append(
                AlertmanagerNotifier(
                    alertmanager, self._http, metrics, self._generator_url, clock
                )
            )

    @property
    def book(self) -> AlertBook:
        return self._book

    def active(self) -> list[Alert]:
        return self._book.active()

    def documents(self) -> list[dict[str, object]]:
        """Pending and firing alerts, then conditions held back by the grace
        period (state "suppressed"), so that a silence can be explained."""
        documents = [
            alert_document(alert, self._generator_url) for alert in self.active()
        ]
        for condition in self._suppressed:
            documents.append(
                {
                    "labels": dict(condition.labels),
                    "annotations": {"summary": condition.summary},
                    "state": "suppressed",
                    "reason": "a container in the pair started, stopped, restarted or "
                    f"paused less than {self._settings.grace_period:g}s ago",
                    "value": condition.value,
                }
            )
        return documents

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    def _in_grace(self, condition: Condition) -> bool:
        now = self._clock()
        for container_id in condition.containers:
            changed = self._lifecycle.changed_at(container_id)
            if changed is not None and now - changed < self._settings.grace_period:
                return True
        return False

    def evaluate(self) -> list[Transition]:
        """One evaluation: conditions now, the lifecycle moved, news sent."""
        now = self._clock()
        conditions = active_conditions(
            self._snapshot(), self._health(), self._settings.rules
        )
        transitions = self._book.update(conditions, now, self._in_grace)
        active = self._book.active()
        active_keys = {alert.key for alert in active}
        self._suppressed = [
            condition
            for key, condition in conditions.items()
            if key not in active_keys and self._in_grace(condition)
        ]
        for state in (AlertState.PENDING, AlertState.FIRING):
            self._metrics.alerts.labels(state=state.value).set(
                sum(1 for alert in active if alert.state is state)
            )

        allowed = [t for t in transitions if self._budget.allow(now)]
        held = len(transitions) - len(allowed)
        if held:
            self._metrics.notifications_held.inc(held)
            self._held_since_report += held
        for notifier in self.notifiers:
            notifier.submit(allowed, active)
        return transitions

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tasks:
                for notifier in self.notifiers:
                    tasks.create_task(notifier.run())
                tasks.create_task(self._evaluate_periodically())
        finally:
            if self._session is not None:
                await self._session.close()

    async def _evaluate_periodically(self) -> None:
        last_report = self._clock()
        while True:
            await asyncio.sleep(self._settings.evaluation_interval)
            try:
                self.evaluate()
            except Exception:
                log.exception("alert.evaluation_failed")
                self._metrics.errors.labels(kind="alert_evaluation").inc()
            if (
                self._held_since_report
                and self._clock() - last_report >= _BUDGET_WINDOW_S
            ):
                log.warning(
                    "alert.notifications_held",
                    held=self._held_since_report,
                    limit_per_minute=self._settings.max_notifications_per_minute,
                )
                self._held_since_report = 0
                last_report = self._clock()
