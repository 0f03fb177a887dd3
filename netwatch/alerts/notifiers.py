"""Where alerts go: the log (always), webhooks, and Alertmanager's v2 API.

Every notifier takes transitions without waiting (`submit`) and delivers
them from its own task, so a slow or failing receiver never holds up the
evaluation, let alone probing. HTTP goes through aiohttp with a timeout per
request and a bounded number of retries with backoff.
"""

from __future__ import annotations

import asyncio
import datetime
import random
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import aiohttp
import structlog

from netwatch import __version__
from netwatch.alerts.lifecycle import Alert, AlertState, Transition
from netwatch.config import AlertmanagerSettings, WebhookSettings
from netwatch.metrics import SelfMetrics

log = structlog.get_logger("netwatch.alerts")

_QUEUE_LIMIT = 1000
_BACKOFF_START_S = 0.5


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat()


def alert_document(alert: Alert, generator_url: str) -> dict[str, Any]:
    """The alert as the webhook and the API show it."""
    return {
        "labels": dict(alert.labels),
        "annotations": {"summary": alert.summary},
        "state": alert.state.value,
        "value": alert.value,
        "activeAt": _iso(alert.active_since),
        "startsAt": _iso(alert.fired_at),
        "endsAt": _iso(alert.resolved_at),
        "generatorURL": generator_url,
    }


class Notifier(Protocol):
    name: str

    def submit(
        self, transitions: Sequence[Transition], active: Sequence[Alert]
    ) -> None:
        """Takes news without waiting; delivery happens in `run`."""

    async def run(self) -> None:
        """Delivers until cancelled."""


class LogNotifier:
    """`alert.fired` and `alert.resolved` lines in netwatch's own log."""

    name = "log"

    def submit(
        self, transitions: Sequence[Transition], active: Sequence[Alert]
    ) -> None:
        for transition in transitions:
            alert = transition.alert
            fields = {**alert.labels, "summary": alert.summary, "value": alert.value}
            if transition.kind == "fired":
                log.warning("alert.fired", **fields)
            else:
                log.info("alert.resolved", **fields)

    async def run(self) -> None:
        await asyncio.Future()


async def _post_with_retries(
    session: aiohttp.ClientSession,
    url: str,
    body: Any,
    *,
    timeout_s: float,
    retries: int,
) -> str:
    """POSTs `body` as JSON; the result word for metrics: ok, or why not."""
    delay = _BACKOFF_START_S
    problem = "error"
    for attempt in range(retries + 1):
        if attempt:
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay *= 2
        try:
            async with session.post(
                url, json=body, timeout=aiohttp.ClientTimeout(total=timeout_s)
            ) as response:
                if response.status < 300:
                    return "ok"
                problem = f"http_{response.status}"
        except TimeoutError:
            problem = "timeout"
        except aiohttp.ClientError:
            problem = "error"
    return problem


class WebhookNotifier:
    """POSTs each firing and each resolution as one JSON document."""

    def __init__(
        self,
        settings: WebhookSettings,
        session: Callable[[], aiohttp.ClientSession],
        metrics: SelfMetrics,
        generator_url: str,
    ) -> None:
        self.name = f"webhook {settings.url}"
        self._settings = settings
        self._session = session
        self._metrics = metrics
        self._generator_url = generator_url
        self._queue: deque[dict[str, Any]] = deque()
        self._wake = asyncio.Event()

    def submit(
        self, transitions: Sequence[Transition], active: Sequence[Alert]
    ) -> None:
        for transition in transitions:
            if len(self._queue) >= _QUEUE_LIMIT:
                self._queue.popleft()
                self._metrics.notifications.labels(
                    notifier="webhook", result="dropped"
                ).inc()
            self._queue.append(
                {
                    "version": "1",
                    "sender": f"netwatch {__version__}",
                    "status": "firing" if transition.kind == "fired" else "resolved",
                    "alert": alert_document(transition.alert, self._generator_url),
                }
            )
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                body = self._queue.popleft()
                result = await _post_with_retries(
                    self._session(),
                    self._settings.url,
                    body,
                    timeout_s=self._settings.timeout,
                    retries=self._settings.retries,
                )
                self._metrics.notifications.labels(
                    notifier="webhook", result=result
                ).inc()
                if result != "ok":
                    log.warning(
                        "alert.delivery_failed",
                        notifier=self.name,
                        reason=result,
                        alertname=body["alert"]["labels"].get("alertname"),
                    )


class AlertmanagerNotifier:
    """Keeps an Alertmanager told of every firing alert (POST /api/v2/alerts).

    Firing alerts are sent at once and again every `resend_interval`, each
    with an `endsAt` four intervals ahead, so Alertmanager resolves them by
    itself should netwatch vanish. A resolution is sent with its real
    `endsAt` until Alertmanager has taken it.
    """

    def __init__(
        self,
        settings: AlertmanagerSettings,
        session: Callable[[], aiohttp.ClientSession],
        metrics: SelfMetrics,
        generator_url: str,
        clock: Callable[[], float],
    ) -> None:
        self.name = f"alertmanager {settings.url}"
        self._settings = settings
        self._url = settings.url.rstrip("/") + "/api/v2/alerts"
        self._session = session
        self._metrics = metrics
        self._generator_url = generator_url
        self._clock = clock
        self._firing: list[Alert] = []
        self._resolved: dict[tuple[tuple[str, str], ...], Alert] = {}
        self._wake = asyncio.Event()

    def submit(
        self, transitions: Sequence[Transition], active: Sequence[Alert]
    ) -> None:
        self._firing = [alert for alert in active if alert.state is AlertState.FIRING]
        for transition in transitions:
            if transition.kind == "resolved":
                self._resolved[transition.alert.key] = transition.alert
        for alert in self._firing:
            # Firing again: a resolution not yet delivered must not end it.
            self._resolved.pop(alert.key, None)
        if transitions:
            self._wake.set()

    def _postable(self, alert: Alert, ends_at: float) -> dict[str, Any]:
        return {
            "labels": dict(alert.labels),
            "annotations": {"summary": alert.summary},
            "startsAt": _iso(alert.fired_at or alert.active_since),
            "endsAt": _iso(ends_at),
            "generatorURL": self._generator_url,
        }

    async def run(self) -> None:
        interval = self._settings.resend_interval
        while True:
            try:
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            now = self._clock()
            resolved = list(self._resolved.values())
            body = [self._postable(a, now + 4 * interval) for a in self._firing]
            body += [self._postable(a, a.resolved_at or now) for a in resolved]
            if not body:
                continue
            result = await _post_with_retries(
                self._session(),
                self._url,
                body,
                timeout_s=self._settings.timeout,
                retries=2,
            )
            self._metrics.notifications.labels(
                notifier="alertmanager", result=result
            ).inc()
            if result == "ok":
                for alert in resolved:
                    self._resolved.pop(alert.key, None)
            else:
                log.warning("alert.delivery_failed", notifier=self.name, reason=result)
