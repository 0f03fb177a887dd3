"""The webhook and Alertmanager notifiers, delivering to a real HTTP receiver
on 127.0.0.1: what they post, how they retry, time out and resend."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from netwatch.alerts import notifiers
from netwatch.alerts.lifecycle import Alert, AlertState, Transition
from netwatch.alerts.notifiers import AlertmanagerNotifier, WebhookNotifier
from netwatch.config import AlertmanagerSettings, WebhookSettings
from netwatch.metrics import SelfMetrics

GENERATOR_URL = "http://netwatch.test:10980/api/v1/alerts"
NOW = 1_796_312_886.0


def iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat()


def parse(text: str) -> float:
    return datetime.datetime.fromisoformat(text).timestamp()


def firing(src: str = "api", *, fired_at: float = NOW) -> Alert:
    return Alert(
        rule="broken_path",
        labels={
            "alertname": "NetwatchBrokenPath",
            "rule": "broken_path",
            "severity": "critical",
            "src": src,
            "dst": "db",
            "probe": "any",
        },
        summary=f"{src} -> db should be reachable (share database) but is not",
        value=None,
        state=AlertState.FIRING,
        active_since=fired_at - 30,
        fired_at=fired_at,
    )


def resolved(alert: Alert, at: float) -> Alert:
    return replace(alert, state=AlertState.RESOLVED, resolved_at=at)


@dataclass(frozen=True)
class Received:
    path: str
    body: Any
    at: float


class Receiver:
    """A real HTTP endpoint that records each POST and answers as told:
    `statuses` in turn, then `status`; while `hang` is set it answers only
    once `release` is set."""

    def __init__(self) -> None:
        self.url = ""
        self.requests: list[Received] = []
        self.statuses: list[int] = []
        self.status = 200
        self.hang = False
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(Received(request.path, await request.json(), time.time()))
        if self.hang:
            await self.release.wait()
        status = self.statuses.pop(0) if self.statuses else self.status
        return web.Response(status=status)

    async def wait_for(self, count: int, within_s: float = 3.0) -> None:
        await eventually(lambda: len(self.requests) >= count, within_s)


async def eventually(check: Callable[[], bool], within_s: float = 3.0) -> None:
    """Waits until `check()` holds, failing the test after `within_s`."""
    async with asyncio.timeout(within_s):
        # Polling: the counters and lists checked here signal nothing.
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A receiver listening on 127.0.0.1 on a free port, shut down after."""
    receiving = Receiver()
    app = web.Application()
    app.router.add_post("/{path:.*}", receiving.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    receiving.url = f"http://{host}:{port}"

    yield receiving

    receiving.release.set()
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> SelfMetrics:
    return SelfMetrics(registry)


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries start 10 ms apart instead of 500 ms, to keep tests short."""
    monkeypatch.setattr(notifiers, "_BACKOFF_START_S", 0.01)


@contextlib.asynccontextmanager
async def running(
    notifier: WebhookNotifier | AlertmanagerNotifier,
) -> AsyncIterator[None]:
    task = asyncio.create_task(notifier.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def count(registry: CollectorRegistry, notifier: str, result: str) -> float:
    value = registry.get_sample_value(
        "netwatch_alert_notifications_total",
        {"notifier": notifier, "result": result},
    )
    return value or 0.0


def webhook(
    receiver: Receiver,
    session: aiohttp.ClientSession,
    metrics: SelfMetrics,
    *,
    timeout: float = 1.0,
    retries: int = 0,
) -> WebhookNotifier:
    settings = WebhookSettings(
        url=f"{receiver.url}/hook", timeout=timeout, retries=retries
    )
    return WebhookNotifier(settings, lambda: session, metrics, GENERATOR_URL)


def alertmanager(
    receiver: Receiver,
    session: aiohttp.ClientSession,
    metrics: SelfMetrics,
    *,
    resend_interval: float = 0.3,
    url: str | None = None,
) -> AlertmanagerNotifier:
    settings = AlertmanagerSettings(
        url=url or receiver.url, timeout=1.0, resend_interval=resend_interval
    )
    return AlertmanagerNotifier(
        settings, lambda: session, metrics, GENERATOR_URL, time.time
    )


# The webhook.


async def test_webhook_posts_one_document_per_transition(
    receiver, session, metrics, registry
):
    """A firing and a resolution are two POSTs, each one JSON document with
    the status, the alert's labels and its times."""
    notifier = webhook(receiver, session, metrics)
    alert = firing()
    gone = resolved(alert, NOW + 100)

    async with running(notifier):
        notifier.submit([Transition(alert)], [alert])
        notifier.submit([Transition(gone)], [])
        await receiver.wait_for(2)
        await eventually(lambda: count(registry, "webhook", "ok") == 2)

    fired_doc, resolved_doc = (r.body for r in receiver.requests)
    assert [r.path for r in receiver.requests] == ["/hook", "/hook"]
    assert fired_doc["status"] == "firing"
    assert fired_doc["alert"]["labels"] == dict(alert.labels)
    assert fired_doc["alert"]["annotations"] == {"summary": alert.summary}
    assert fired_doc["alert"]["startsAt"] == iso(NOW)
    assert fired_doc["alert"]["activeAt"] == iso(NOW - 30)
    assert fired_doc["alert"]["endsAt"] is None
    assert fired_doc["alert"]["generatorURL"] == GENERATOR_URL
    assert resolved_doc["status"] == "resolved"
    assert resolved_doc["alert"]["state"] == "resolved"
    assert resolved_doc["alert"]["startsAt"] == iso(NOW)
    assert resolved_doc["alert"]["endsAt"] == iso(NOW + 100)


async def test_webhook_delivers_several_transitions_in_order(
    receiver, session, metrics
):
    """Transitions submitted together are posted one by one, in order."""
    notifier = webhook(receiver, session, metrics)
    alerts = [firing(src) for src in ("a", "b", "c")]

    async with running(notifier):
        notifier.submit([Transition(a) for a in alerts], alerts)
        await receiver.wait_for(3)

    assert [r.body["alert"]["labels"]["src"] for r in receiver.requests] == [
        "a",
        "b",
        "c",
    ]


@pytest.mark.parametrize("retries", [0, 1, 3])
@pytest.mark.usefixtures("fast_backoff")
async def test_webhook_retries_a_failing_receiver_then_gives_up(
    receiver, session, metrics, registry, retries
):
    """A receiver answering 500 gets the document 1 + retries times, no more,
    and the failure is counted once as http_500."""
    receiver.status = 500
    notifier = webhook(receiver, session, metrics, retries=retries)
    alert = firing()

    async with running(notifier):
        notifier.submit([Transition(alert)], [alert])
        await eventually(lambda: count(registry, "webhook", "http_500") == 1)
        await asyncio.sleep(0.15)

    assert len(receiver.requests) == retries + 1
    assert count(registry, "webhook", "http_500") == 1
    assert count(registry, "webhook", "ok") == 0


@pytest.mark.usefixtures("fast_backoff")
async def test_webhook_retry_that_succeeds_counts_as_delivered(
    receiver, session, metrics, registry
):
    """Failures followed by an accepted retry count as one delivery."""
    receiver.statuses = [500, 503]
    notifier = webhook(receiver, session, metrics, retries=3)
    alert = firing()

    async with running(notifier):
        notifier.submit([Transition(alert)], [alert])
        await eventually(lambda: count(registry, "webhook", "ok") == 1)
        await asyncio.sleep(0.1)

    assert len(receiver.requests) == 3
    assert count(registry, "webhook", "http_500") == 0
    assert count(registry, "webhook", "http_503") == 0


async def test_webhook_cuts_a_receiver_that_never_answers(
    receiver, session, metrics, registry
):
    """A receiver that never answers is given up on after `timeout`."""
    receiver.hang = True
    notifier = webhook(receiver, session, metrics, timeout=0.2)
    alert = firing()

    async with running(notifier):
        started = time.monotonic()
        notifier.submit([Transition(alert)], [alert])
        await eventually(lambda: count(registry, "webhook", "timeout") == 1)
        elapsed = time.monotonic() - started

    assert 0.15 <= elapsed < 1.0
    assert len(receiver.requests) == 1


async def test_slow_receiver_never_blocks_submit(receiver, session, metrics):
    """While a delivery hangs, submit returns at once; what was queued is
    delivered in order once the receiver answers."""
    receiver.hang = True
    notifier = webhook(receiver, session, metrics, timeout=5.0)
    alerts = [firing(f"src{i}") for i in range(6)]

    async with running(notifier):
        notifier.submit([Transition(alerts[0])], alerts[:1])
        await receiver.wait_for(1)
        started = time.perf_counter()
        for alert in alerts[1:]:
            notifier.submit([Transition(alert)], alerts)
        submit_s = time.perf_counter() - started
        receiver.hang = False
        receiver.release.set()
        await receiver.wait_for(6)

    assert submit_s < 0.05
    assert [r.body["alert"]["labels"]["src"] for r in receiver.requests] == [
        f"src{i}" for i in range(6)
    ]


async def test_webhook_queue_drops_the_oldest_when_full(
    receiver, session, metrics, registry, monkeypatch
):
    """Beyond the queue limit the oldest waiting document is dropped, counted."""
    monkeypatch.setattr(notifiers, "_QUEUE_LIMIT", 2)
    receiver.hang = True
    notifier = webhook(receiver, session, metrics, timeout=5.0)
    alerts = [firing(src) for src in ("a", "b", "c", "d")]

    async with running(notifier):
        notifier.submit([Transition(alerts[0])], alerts)
        await receiver.wait_for(1)
        notifier.submit([Transition(a) for a in alerts[1:]], alerts)
        receiver.hang = False
        receiver.release.set()
        await receiver.wait_for(3)
        await asyncio.sleep(0.1)

    assert [r.body["alert"]["labels"]["src"] for r in receiver.requests] == [
        "a",
        "c",
        "d",
    ]
    assert count(registry, "webhook", "dropped") == 1


# Alertmanager.


@pytest.mark.parametrize("suffix", ["", "/"], ids=["bare", "trailing-slash"])
async def test_alertmanager_posts_firing_alerts_at_once(
    receiver, session, metrics, registry, suffix
):
    """A firing alert is POSTed at once to /api/v2/alerts as a list of
    postable alerts, ending four resend intervals ahead."""
    notifier = alertmanager(
        receiver, session, metrics, resend_interval=2.0, url=receiver.url + suffix
    )
    alert = firing()

    async with running(notifier):
        submitted = time.time()
        notifier.submit([Transition(alert)], [alert])
        await receiver.wait_for(1)
        await eventually(lambda: count(registry, "alertmanager", "ok") == 1)

    [request] = receiver.requests
    [posted] = request.body
    assert request.path == "/api/v2/alerts"
    assert request.at - submitted < 0.5
    assert set(posted) == {
        "labels",
        "annotations",
        "startsAt",
        "endsAt",
        "generatorURL",
    }
    assert posted["labels"] == dict(alert.labels)
    assert posted["annotations"] == {"summary": alert.summary}
    assert posted["startsAt"] == iso(NOW)
    assert parse(posted["endsAt"]) == pytest.approx(request.at + 8.0, abs=0.3)
    assert posted["generatorURL"] == GENERATOR_URL


async def test_alertmanager_resends_firing_alerts_every_interval(
    receiver, session, metrics
):
    """Firing alerts are sent again every resend_interval, each time ending
    further ahead."""
    notifier = alertmanager(receiver, session, metrics, resend_interval=0.3)
    alerts = [firing("a"), firing("b")]

    async with running(notifier):
        notifier.submit([Transition(a) for a in alerts], alerts)
        await receiver.wait_for(3)

    first, second, third = receiver.requests[:3]
    for request in (first, second, third):
        assert [a["labels"]["src"] for a in request.body] == ["a", "b"]
        assert parse(request.body[0]["endsAt"]) == pytest.approx(
            request.at + 1.2, abs=0.2
        )
    assert 0.25 <= second.at - first.at < 0.6
    assert 0.25 <= third.at - second.at < 0.6


async def test_alertmanager_sends_a_resolution_with_its_end_then_stops(
    receiver, session, metrics
):
    """A resolution is sent with the time it resolved as endsAt; once taken
    and with nothing firing, nothing more is sent."""
    notifier = alertmanager(receiver, session, metrics, resend_interval=0.3)
    alert = firing()

    async with running(notifier):
        notifier.submit([Transition(alert)], [alert])
        await receiver.wait_for(1)
        notifier.submit([Transition(resolved(alert, NOW + 100))], [])
        await receiver.wait_for(2)
        await asyncio.sleep(0.7)

    assert len(receiver.requests) == 2
    [posted] = receiver.requests[1].body
    assert posted["labels"] == dict(alert.labels)
    assert posted["startsAt"] == iso(NOW)
    assert posted["endsAt"] == iso(NOW + 100)


@pytest.mark.usefixtures("fast_backoff")
async def test_alertmanager_keeps_a_resolution_until_it_is_accepted(
    receiver, session, metrics, registry
):
    """A resolution the receiver refused is sent again on the next round,
    and dropped once accepted."""
    receiver.statuses = [500, 500, 500]
    notifier = alertmanager(receiver, session, metrics, resend_interval=0.3)
    gone = resolved(firing(), NOW + 100)

    async with running(notifier):
        notifier.submit([Transition(gone)], [])
        await receiver.wait_for(4)
        await eventually(lambda: count(registry, "alertmanager", "ok") == 1)
        await asyncio.sleep(0.7)

    assert len(receiver.requests) == 4
    for request in receiver.requests:
        assert [a["endsAt"] for a in request.body] == [iso(NOW + 100)]
    assert count(registry, "alertmanager", "http_500") == 1


async def test_alertmanager_sends_nothing_when_nothing_fires(
    receiver, session, metrics
):
    """With no firing alert and no resolution, nothing is posted."""
    notifier = alertmanager(receiver, session, metrics, resend_interval=0.1)

    async with running(notifier):
        notifier.submit([], [])
        await asyncio.sleep(0.4)

    assert receiver.requests == []


@pytest.mark.usefixtures("fast_backoff")
async def test_alertmanager_drops_a_stale_resolution_when_the_alert_fires_again(
    receiver, session, metrics, registry
):
    """An alert that resolves while Alertmanager is failing and then fires
    again is sent as firing only, not together with its old resolution."""
    receiver.status = 500
    notifier = alertmanager(receiver, session, metrics, resend_interval=10.0)
    first = firing(fired_at=NOW)
    again = firing(fired_at=NOW + 120)

    async with running(notifier):
        notifier.submit([Transition(first)], [first])
        await eventually(lambda: count(registry, "alertmanager", "http_500") == 1)
        notifier.submit([Transition(resolved(first, NOW + 60))], [])
        await eventually(lambda: count(registry, "alertmanager", "http_500") == 2)
        receiver.status = 200
        notifier.submit([Transition(again)], [again])
        await eventually(lambda: count(registry, "alertmanager", "ok") == 1)

    sent = receiver.requests[-1].body
    same = [a for a in sent if a["labels"] == dict(again.labels)]
    assert [a["startsAt"] for a in same] == [iso(NOW + 120)]
