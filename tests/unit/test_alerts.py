"""The alert engine: conditions read from the matrix, the pending, firing and
resolved lifecycle with grace, the notification budget, the container
lifecycle clock, and one evaluation of the service."""

from __future__ import annotations

import dataclasses
import datetime
from dataclasses import replace
from types import MappingProxyType

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from netwatch.alerts.lifecycle import AlertBook, AlertState
from netwatch.alerts.rules import ALERT_NAMES, Condition, Health, active_conditions
from netwatch.alerts.service import AlertService, LifecycleClock, NotificationBudget
from netwatch.config import AlertRules, AlertSettings, MatrixSettings
from netwatch.containers import ContainerInfo
from netwatch.matrix import (
    MatrixSnapshot,
    PairState,
    PairView,
    ProbeView,
    ReachabilityMatrix,
    Verdict,
)
from netwatch.metrics import SelfMetrics
from netwatch.pairs import PairPlan, PlannedPair, Target
from netwatch.probes.outcome import Outcome, ProbeKind, ProbeResult
from tests.factories import container as make_container

# The engine's StartedAt, with its nanoseconds, and the moment it names.
STARTED_AT = "2026-12-03T15:48:06.879100123Z"
STARTED = datetime.datetime(
    2026, 12, 3, 15, 48, 6, 879100, tzinfo=datetime.UTC
).timestamp()
NOW = STARTED + 86400.0


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def rfc3339(timestamp: float) -> str:
    """A StartedAt as the engine writes it: UTC, nanoseconds, Z."""
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def info(
    name: str, *, started_at: str = STARTED_AT, paused: bool = False
) -> ContainerInfo:
    return make_container(name, id=f"{name}-id", paused=paused, started_at=started_at)


def ping_view(
    *,
    loss: float = 0.0,
    received: int | None = None,
    rtt_avg_s: float | None = 0.0001,
    state: PairState | None = None,
) -> ProbeView:
    sent = 100
    if received is None:
        received = round(sent * (1 - loss))
    if state is None:
        state = PairState.REACHABLE if received else PairState.UNREACHABLE
    return ProbeView(
        probe=ProbeKind.PING,
        state=state,
        since=0.0,
        changes=1,
        last_at=NOW,
        loss_ratio=loss,
        window_sent=sent,
        window_received=received,
        rtt_min_s=rtt_avg_s,
        rtt_avg_s=rtt_avg_s,
        rtt_max_s=rtt_avg_s,
    )


def pair(
    src: str = "api",
    dst: str = "db",
    *,
    expected: bool = True,
    verdict: Verdict = Verdict.OK,
    ping: ProbeView | None = None,
    hold: str | None = None,
    findings: tuple[str, ...] = (),
) -> PairView:
    ping = ping if ping is not None else ping_view()
    return PairView(
        src=f"{src}-id",
        dst=f"{dst}-id",
        expected_reachable=expected,
        basis="share database" if expected else "no shared network",
        state=ping.state,
        verdict=verdict,
        since=0.0,
        changes=1,
        hold=hold,
        probes=MappingProxyType({ProbeKind.PING: ping}),
        port_findings=findings,
    )


def snapshot(*pairs: PairView) -> MatrixSnapshot:
    ids = {p.src for p in pairs} | {p.dst for p in pairs}
    containers = {i: info(i.removesuffix("-id")) for i in ids}
    return MatrixSnapshot(
        at=NOW,
        containers=MappingProxyType(containers),
        pairs=MappingProxyType({(p.src, p.dst): p for p in pairs}),
        unaddressable=MappingProxyType({}),
    )


def health(
    *,
    now: float = NOW,
    engine_up: bool = True,
    last_round: dict[ProbeKind, tuple[float, float | None]] | None = None,
    started_at: float = NOW - 600,
) -> Health:
    if last_round is None:
        last_round = {ProbeKind.PING: (10.0, now - 5), ProbeKind.TCP: (30.0, now - 5)}
    return Health(
        now=now,
        engine_up=engine_up,
        engine_down_since=None if engine_up else now - 60,
        last_round=last_round,
        started_at=started_at,
    )


def conditions_of(
    snap: MatrixSnapshot, now_health: Health | None = None, **rules: object
) -> dict[str, list[Condition]]:
    """Active conditions grouped by rule name."""
    found = active_conditions(
        snap, now_health or health(), AlertRules.model_validate(rules)
    )
    grouped: dict[str, list[Condition]] = {}
    for condition in found.values():
        grouped.setdefault(condition.rule, []).append(condition)
    return grouped


# Rules: packet loss.


def test_loss_above_warning_is_a_warning_only():
    """10% loss on a pair that should reach raises the warning, not the
    critical alert, labelled by pair and probe."""
    snap = snapshot(pair(ping=ping_view(loss=0.1)))

    found = conditions_of(snap)

    assert set(found) == {"packet_loss_warning"}
    [condition] = found["packet_loss_warning"]
    assert dict(condition.labels) == {
        "alertname": "NetwatchPacketLoss",
        "rule": "packet_loss_warning",
        "severity": "warning",
        "src": "api",
        "dst": "db",
        "probe": "ping",
    }
    assert condition.value == pytest.approx(0.1)
    assert condition.containers == ("api-id", "db-id")
    assert condition.summary == "api -> db loses 10% of echoes (threshold 5%)"


def test_loss_above_critical_raises_both_levels():
    """60% loss is above both thresholds: warning and critical both hold."""
    snap = snapshot(pair(ping=ping_view(loss=0.6)))

    found = conditions_of(snap)

    assert set(found) == {"packet_loss_warning", "packet_loss_critical"}
    [critical] = found["packet_loss_critical"]
    assert critical.labels["alertname"] == "NetwatchPacketLossCritical"
    assert critical.labels["severity"] == "critical"


@pytest.mark.parametrize(
    ("loss", "rules"),
    [
        (0.05, set()),
        (0.051, {"packet_loss_warning"}),
        (0.5, {"packet_loss_warning"}),
        (0.51, {"packet_loss_warning", "packet_loss_critical"}),
        (0.0, set()),
    ],
)
def test_loss_thresholds_are_strict(loss, rules):
    """A loss equal to a threshold does not cross it; just above does."""
    snap = snapshot(pair(ping=ping_view(loss=loss)))

    assert set(conditions_of(snap)) == rules


def test_configured_loss_thresholds_apply():
    """Thresholds from the settings replace the defaults."""
    snap = snapshot(pair(ping=ping_view(loss=0.15)))

    found = conditions_of(
        snap,
        packet_loss_warning={"threshold": 0.2},
        packet_loss_critical={"threshold": 0.1},
    )

    assert set(found) == {"packet_loss_critical"}


def test_dead_path_is_broken_not_lossy():
    """A pair that should reach and got no reply in the whole window is a
    broken path, not 100% packet loss."""
    dead = ping_view(loss=1.0, received=0)
    snap = snapshot(pair(verdict=Verdict.BROKEN, ping=dead))

    found = conditions_of(snap)

    assert set(found) == {"broken_path"}


def test_isolated_pair_losing_everything_is_no_alert():
    """100% loss between containers that should be isolated is the design."""
    snap = snapshot(
        pair(expected=False, ping=ping_view(loss=1.0, received=0), verdict=Verdict.OK)
    )

    assert conditions_of(snap) == {}


def test_isolated_pair_with_some_replies_is_unexpected_not_lossy():
    """An isolated pair that gets replies is unexpected, never packet loss."""
    snap = snapshot(
        pair(expected=False, ping=ping_view(loss=0.4), verdict=Verdict.UNEXPECTED)
    )

    assert set(conditions_of(snap)) == {"unexpected_reachability"}


def test_held_pair_raises_no_loss_or_latency():
    """A pair on hold (a paused container) is not judged for loss or latency."""
    lossy = ping_view(loss=0.6, rtt_avg_s=0.5)
    snap = snapshot(pair(ping=lossy, hold="destination is paused"))

    assert conditions_of(snap) == {}


def test_unknown_ping_raises_no_loss():
    """A ping whose state is unknown (measuring again) raises no loss alert."""
    snap = snapshot(pair(ping=ping_view(loss=0.6, state=PairState.UNKNOWN)))

    assert conditions_of(snap) == {}


# Rules: verdicts and latency.


def test_broken_verdict_is_a_broken_path():
    """A broken pair raises broken_path, saying what was expected and why."""
    snap = snapshot(pair(verdict=Verdict.BROKEN, ping=ping_view(loss=1.0, received=0)))

    [condition] = conditions_of(snap)["broken_path"]

    assert dict(condition.labels) == {
        "alertname": "NetwatchBrokenPath",
        "rule": "broken_path",
        "severity": "critical",
        "src": "api",
        "dst": "db",
        "probe": "any",
    }
    assert condition.summary == (
        "api -> db should be reachable (share database) but is not: "
        "measured unreachable"
    )


def test_a_name_that_resolves_wrongly_is_a_name_resolution_alert():
    """DNS findings alert on their own; the pair's verdict stays ok."""
    found = "db does not resolve: resolver says NXDOMAIN"
    snap = snapshot(replace(pair(), dns_findings=(found,), names_resolve=True))

    conditions = conditions_of(snap)

    [condition] = conditions["name_resolution"]
    assert condition.labels["alertname"] == "NetwatchNameResolution"
    assert condition.labels["probe"] == "dns"
    assert condition.summary == f"api -> db: {found}"
    assert set(conditions) == {"name_resolution"}


def test_dns_findings_of_a_paused_pair_raise_nothing():
    held = replace(pair(hold="source is paused"), dns_findings=("db resolves",))

    assert "name_resolution" not in conditions_of(snapshot(held))


def test_broken_verdict_from_a_port_names_the_port():
    """A pair broken by a must-be-open port says which port."""
    finding = "port 5432 must be open, measured refused"
    snap = snapshot(pair(verdict=Verdict.BROKEN, findings=(finding,)))

    [condition] = conditions_of(snap)["broken_path"]

    assert condition.summary.endswith(f"but is not: {finding}")


def test_unexpected_verdict_is_unexpected_reachability():
    """An unexpected pair raises unexpected_reachability, critical."""
    snap = snapshot(
        pair(expected=False, verdict=Verdict.UNEXPECTED, ping=ping_view(loss=0.0))
    )

    [condition] = conditions_of(snap)["unexpected_reachability"]

    assert condition.labels["alertname"] == "NetwatchUnexpectedReachability"
    assert condition.labels["severity"] == "critical"
    assert condition.summary == (
        "api -> db should be isolated (no shared network) but is not: "
        "measured reachable"
    )


def test_unexpected_verdict_from_a_port_names_the_port():
    """An expected-reachable pair with a must-be-closed port open is
    unexpected, naming the port."""
    finding = "port 9187 must be closed, measured open"
    snap = snapshot(pair(verdict=Verdict.UNEXPECTED, findings=(finding,)))

    [condition] = conditions_of(snap)["unexpected_reachability"]

    assert condition.summary.endswith(f"but is not: {finding}")


@pytest.mark.parametrize(
    ("rtt_avg_s", "expected", "raised"),
    [
        (0.15, True, True),
        (0.1, True, False),
        (0.05, True, False),
        (None, True, False),
        (0.15, False, False),
    ],
    ids=["slow", "at-threshold", "fast", "no-rtt", "slow-but-isolated"],
)
def test_high_latency(rtt_avg_s, expected, raised):
    """A round trip above the threshold on a pair that should reach is high
    latency; nothing else is."""
    verdict = Verdict.OK if expected else Verdict.UNEXPECTED
    snap = snapshot(
        pair(expected=expected, verdict=verdict, ping=ping_view(rtt_avg_s=rtt_avg_s))
    )

    found = conditions_of(snap)

    assert ("high_latency" in found) is raised


def test_high_latency_says_milliseconds():
    """The latency alert gives the round trip and threshold in ms."""
    snap = snapshot(pair(ping=ping_view(rtt_avg_s=0.2345)))

    [condition] = conditions_of(snap)["high_latency"]

    assert condition.summary == "api -> db round trip 234.5 ms (threshold 100 ms)"
    assert condition.value == pytest.approx(0.2345)
    assert condition.labels["alertname"] == "NetwatchHighLatency"


def test_pairs_are_told_apart_by_their_labels():
    """The same rule on two pairs gives two conditions keyed by their labels."""
    snap = snapshot(
        pair("api", "db", verdict=Verdict.BROKEN),
        pair("web", "api", verdict=Verdict.BROKEN),
    )

    found = active_conditions(snap, health(), AlertRules())

    assert sorted((c.labels["src"], c.labels["dst"]) for c in found.values()) == [
        ("api", "db"),
        ("web", "api"),
    ]
    for found_key, condition in found.items():
        assert found_key == tuple(sorted(condition.labels.items()))


# Rules: netwatch itself.


def test_engine_unavailable():
    """An engine that does not answer raises engine_unavailable, and neither
    stalled nor mostly_unmeasured, which it explains."""
    snap = snapshot(pair(verdict=Verdict.UNMEASURED, ping=ping_view(loss=0.0)))
    down = health(engine_up=False, last_round={ProbeKind.PING: (10.0, NOW - 600)})

    found = conditions_of(snap, down)

    assert set(found) == {"engine_unavailable"}
    [condition] = found["engine_unavailable"]
    assert dict(condition.labels) == {
        "alertname": "NetwatchEngineUnavailable",
        "rule": "engine_unavailable",
        "severity": "critical",
    }
    assert condition.containers == ()


@pytest.mark.parametrize(
    ("last", "stalled"),
    [(NOW - 29, False), (NOW - 30, False), (NOW - 31, True), (NOW - 600, True)],
)
def test_stalled_after_threshold_intervals_without_a_round(last, stalled):
    """No full round for more than threshold x interval (3 x 10s) is stalled."""
    now_health = health(last_round={ProbeKind.PING: (10.0, last)})

    found = conditions_of(snapshot(), now_health)

    assert ("stalled" in found) is stalled


def test_stalled_names_the_probe():
    """Each stalled probe kind is its own alert, labelled by the probe."""
    now_health = health(
        last_round={ProbeKind.PING: (10.0, NOW - 100), ProbeKind.TCP: (30.0, NOW - 5)}
    )

    [condition] = conditions_of(snapshot(), now_health)["stalled"]

    assert dict(condition.labels) == {
        "alertname": "NetwatchStalled",
        "rule": "stalled",
        "severity": "critical",
        "probe": "ping",
    }
    assert condition.value == pytest.approx(100.0)
    assert condition.summary == "no full ping round for 100s (interval 10s)"


@pytest.mark.parametrize(
    ("started_ago", "stalled"), [(25.0, False), (31.0, True)], ids=["young", "old"]
)
def test_stalled_counts_from_start_before_the_first_round(started_ago, stalled):
    """With no round completed yet, the wait counts from netwatch's start."""
    now_health = health(
        last_round={ProbeKind.PING: (10.0, None)}, started_at=NOW - started_ago
    )

    found = conditions_of(snapshot(), now_health)

    assert ("stalled" in found) is stalled


def test_stalled_threshold_is_configurable():
    """The stalled threshold counts intervals: 10 x 10s tolerates 60s."""
    now_health = health(last_round={ProbeKind.PING: (10.0, NOW - 60)})

    found = conditions_of(snapshot(), now_health, stalled={"threshold": 10})

    assert "stalled" not in found


@pytest.mark.parametrize(
    ("unmeasured", "measured", "raised"),
    [(2, 1, True), (1, 1, False), (1, 2, False), (3, 0, True)],
)
def test_mostly_unmeasured(unmeasured, measured, raised):
    """More than half the pairs unmeasured raises mostly_unmeasured."""
    pairs = [
        pair(f"src{i}", "dst", verdict=Verdict.UNMEASURED, ping=ping_view(loss=0.0))
        for i in range(unmeasured)
    ] + [pair(f"ok{i}", "dst") for i in range(measured)]

    found = conditions_of(snapshot(*pairs))

    assert ("mostly_unmeasured" in found) is raised


def test_mostly_unmeasured_value_and_words():
    """The unmeasured alert gives the share and the number of pairs."""
    pairs = [pair(f"s{i}", "d", verdict=Verdict.UNMEASURED) for i in range(3)]
    snap = snapshot(*pairs, pair("ok", "d"))

    [condition] = conditions_of(snap)["mostly_unmeasured"]

    assert condition.value == pytest.approx(0.75)
    assert condition.summary == "75% of 4 probed pairs could not be measured"


def test_no_pairs_is_not_mostly_unmeasured():
    """An empty matrix is not a measuring failure."""
    assert "mostly_unmeasured" not in conditions_of(snapshot())


# Rules: each can be turned off.

SCENARIOS: dict[str, tuple[MatrixSnapshot, Health]] = {
    "packet_loss_warning": (snapshot(pair(ping=ping_view(loss=0.1))), health()),
    "packet_loss_critical": (snapshot(pair(ping=ping_view(loss=0.6))), health()),
    "broken_path": (snapshot(pair(verdict=Verdict.BROKEN)), health()),
    "unexpected_reachability": (
        snapshot(pair(expected=False, verdict=Verdict.UNEXPECTED)),
        health(),
    ),
    "high_latency": (snapshot(pair(ping=ping_view(rtt_avg_s=0.5))), health()),
    "stalled": (snapshot(), health(last_round={ProbeKind.PING: (10.0, NOW - 100)})),
    "engine_unavailable": (snapshot(), health(engine_up=False)),
    "mostly_unmeasured": (snapshot(pair(verdict=Verdict.UNMEASURED)), health()),
    "name_resolution": (
        snapshot(replace(pair(), dns_findings=("db does not resolve",))),
        health(),
    ),
}


@pytest.mark.parametrize("rule", sorted(ALERT_NAMES))
def test_each_rule_raises_its_alert_when_enabled(rule):
    """Each rule's scenario raises that rule's condition."""
    snap, now_health = SCENARIOS[rule]

    found = conditions_of(snap, now_health)

    assert rule in found


@pytest.mark.parametrize("rule", sorted(ALERT_NAMES))
def test_disabled_rule_produces_nothing(rule):
    """A rule with `enabled: false` raises nothing, whatever the matrix says."""
    snap, now_health = SCENARIOS[rule]

    found = conditions_of(snap, now_health, **{rule: {"enabled": False}})

    assert rule not in found


def test_conditions_from_a_real_matrix():
    """A matrix whose expected pair got no reply raises broken_path only."""
    clock = FakeClock()
    matrix = ReachabilityMatrix(MatrixSettings(), clock=clock)
    planned = PlannedPair(
        src="api-id",
        dst="db-id",
        expected_reachable=True,
        basis="share database",
        targets=(Target("10.3.0.4", "database"),),
        ports=(),
    )
    plan = PairPlan(
        pairs=MappingProxyType({("api-id", "db-id"): planned}),
        by_source=MappingProxyType({"api-id": (planned,)}),
        unaddressable=MappingProxyType({}),
    )
    matrix.set_plan(plan, {"api-id": info("api"), "db-id": info("db")})
    matrix.record(
        "api-id",
        ProbeKind.PING,
        [
            ProbeResult(
                probe=ProbeKind.PING,
                src="api-id",
                dst="db-id",
                address="10.3.0.4",
                network="database",
                outcome=Outcome.UNREACHABLE,
                reason=None,
                detail="no reply",
                at=NOW,
                sent=3,
                received=0,
            )
        ],
    )

    found = conditions_of(matrix.snapshot())

    assert set(found) == {"broken_path"}
    assert found["broken_path"][0].labels["src"] == "api"


# The lifecycle.


def book_with(**settings: object) -> AlertBook:
    defaults: dict[str, object] = {
        "resolve_after": 30.0,
        "rules": {"broken_path": {"for": 30.0}, "unexpected_reachability": {"for": 0}},
    }
    return AlertBook(AlertSettings.model_validate(defaults | settings))


def condition(
    rule: str = "broken_path",
    src: str = "api",
    dst: str = "db",
    summary: str = "api -> db is broken",
) -> Condition:
    return Condition(
        rule=rule,
        labels={"alertname": ALERT_NAMES[rule], "rule": rule, "src": src, "dst": dst},
        summary=summary,
        containers=(f"{src}-id", f"{dst}-id"),
    )


def holding(*conditions: Condition) -> dict[tuple[tuple[str, str], ...], Condition]:
    return {c.key: c for c in conditions}


def test_condition_is_pending_until_its_for_duration():
    """A condition younger than `for` is a pending alert, not notified."""
    book = book_with()

    first = book.update(holding(condition()), NOW)
    later = book.update(holding(condition()), NOW + 29)

    assert (first, later) == ([], [])
    [alert] = book.active()
    assert (alert.state, alert.active_since, alert.fired_at) == (
        AlertState.PENDING,
        NOW,
        None,
    )


def test_condition_fires_once_after_its_for_duration():
    """After holding for `for`, the alert fires, with one transition only."""
    book = book_with()
    book.update(holding(condition()), NOW)

    fired = book.update(holding(condition()), NOW + 30)
    again = book.update(holding(condition()), NOW + 40)

    [transition] = fired
    assert transition.kind == "fired"
    assert transition.alert.state is AlertState.FIRING
    assert transition.alert.fired_at == NOW + 30
    assert again == []
    assert [a.state for a in book.active()] == [AlertState.FIRING]


def test_for_zero_fires_at_once():
    """A rule with `for: 0` fires on the evaluation that first sees it."""
    book = book_with()

    transitions = book.update(holding(condition("unexpected_reachability")), NOW)

    assert [t.kind for t in transitions] == ["fired"]
    assert transitions[0].alert.fired_at == NOW


def test_pending_alert_is_dropped_silently_when_its_condition_goes():
    """A pending alert whose condition stops holding vanishes without a word,
    and a return starts its wait afresh."""
    book = book_with()
    book.update(holding(condition()), NOW)

    gone = book.update({}, NOW + 10)
    empty = book.active()
    book.update(holding(condition()), NOW + 20)
    at_old_deadline = book.update(holding(condition()), NOW + 30)
    at_new_deadline = book.update(holding(condition()), NOW + 50)

    assert gone == []
    assert empty == []
    assert at_old_deadline == []
    assert [t.kind for t in at_new_deadline] == ["fired"]


def fired_book() -> AlertBook:
    book = book_with()
    book.update(holding(condition()), NOW)
    book.update(holding(condition()), NOW + 30)
    return book


def test_firing_alert_stays_firing_through_a_short_flap():
    """A condition that goes and returns within resolve_after changes nothing,
    and each absence restarts the resolve wait."""
    book = fired_book()

    transitions = [
        book.update({}, NOW + 100),
        book.update(holding(condition()), NOW + 110),
        book.update({}, NOW + 120),
        book.update({}, NOW + 145),
    ]

    assert transitions == [[], [], [], []]
    [alert] = book.active()
    assert alert.state is AlertState.FIRING
    assert alert.fired_at == NOW + 30


def test_firing_alert_resolves_once_after_resolve_after():
    """An alert whose condition stayed false for resolve_after resolves, with
    one transition, and is gone."""
    book = fired_book()
    book.update({}, NOW + 100)

    early = book.update({}, NOW + 129)
    resolved = book.update({}, NOW + 130)
    after = book.update({}, NOW + 140)

    assert early == []
    [transition] = resolved
    assert transition.kind == "resolved"
    assert transition.alert.state is AlertState.RESOLVED
    assert (transition.alert.fired_at, transition.alert.resolved_at) == (
        NOW + 30,
        NOW + 130,
    )
    assert after == []
    assert book.active() == []


def test_firing_alert_keeps_the_latest_words():
    """A firing alert carries the summary and value of the latest evaluation."""
    book = fired_book()

    book.update(holding(condition(summary="api -> db is still broken")), NOW + 40)

    [alert] = book.active()
    assert alert.summary == "api -> db is still broken"


def test_alerts_are_independent():
    """Two conditions have two alerts, each with its own lifecycle."""
    book = book_with()
    book.update(holding(condition("broken_path", "api", "db")), NOW)

    transitions = book.update(
        holding(
            condition("broken_path", "api", "db"), condition("broken_path", "web", "db")
        ),
        NOW + 30,
    )

    assert [t.alert.labels["src"] for t in transitions] == ["api"]
    assert sorted(a.state for a in book.active()) == [
        AlertState.FIRING,
        AlertState.PENDING,
    ]


def test_grace_drops_a_pending_alert():
    """A condition about a container in its grace period raises nothing, even
    past `for`, and a pending alert it had is dropped."""
    book = book_with()
    book.update(holding(condition()), NOW)

    transitions = [
        book.update(holding(condition()), NOW + t, in_grace=lambda _: True)
        for t in (10, 30, 60)
    ]

    assert transitions == [[], [], []]
    assert book.active() == []


def test_grace_does_not_cancel_a_firing_alert():
    """An alert already firing keeps firing when its container enters grace."""
    book = fired_book()

    transitions = book.update(holding(condition()), NOW + 40, in_grace=lambda _: True)
    later = book.update(holding(condition()), NOW + 200, in_grace=lambda _: True)

    assert (transitions, later) == ([], [])
    assert [a.state for a in book.active()] == [AlertState.FIRING]


def test_grace_is_judged_per_condition():
    """Grace ignores the conditions it covers and leaves the others alone."""
    book = book_with()

    def in_grace(candidate: Condition) -> bool:
        return candidate.labels["src"] == "web"

    book.update(
        holding(condition(src="api"), condition(src="web")), NOW, in_grace=in_grace
    )

    assert [a.labels["src"] for a in book.active()] == ["api"]


# The notification budget.


def test_budget_allows_n_per_minute_then_holds():
    """Within one minute only per_minute notifications pass."""
    budget = NotificationBudget(3)

    allowed = [budget.allow(NOW + t) for t in (0, 1, 2, 3, 59.9)]

    assert allowed == [True, True, True, False, False]


def test_budget_window_slides():
    """A notification leaves the budget a full minute after it was sent, one
    by one, and held ones take no room."""
    budget = NotificationBudget(2)
    budget.allow(NOW)
    budget.allow(NOW + 10)
    budget.allow(NOW + 20)

    allowed = [budget.allow(NOW + t) for t in (59.9, 60, 60.5, 70, 71)]

    assert allowed == [False, True, False, True, False]


# The lifecycle clock.


def test_long_running_container_seen_first_is_dated_by_its_start():
    """A container running for a day before netwatch saw it is dated by its
    StartedAt, nanoseconds cut to microseconds."""
    clock = LifecycleClock()

    clock.observe({"db-id": info("db")}, NOW)

    assert clock.changed_at("db-id") == pytest.approx(STARTED, abs=1e-6)


@pytest.mark.parametrize(
    ("started_at", "offset"),
    [
        ("2026-12-03T15:48:06Z", 0.0),
        ("2026-12-03T15:48:06.5Z", 0.5),
        ("2026-12-03T15:48:06.000000001Z", 0.0),
        ("2026-12-03T15:48:06.999999999Z", 0.999999),
    ],
)
def test_started_at_fractions(started_at, offset):
    """StartedAt is read with or without fractions of a second."""
    clock = LifecycleClock()
    whole = STARTED - 0.8791

    clock.observe({"db-id": info("db", started_at=started_at)}, NOW)

    assert clock.changed_at("db-id") == pytest.approx(whole + offset, abs=1e-5)


@pytest.mark.parametrize(
    "started_at", ["", "not a time", "2999-01-01T00:00:00.1Z"], ids=str
)
def test_start_unknown_or_in_the_future_counts_from_now(started_at):
    """A StartedAt that cannot be read, or lies ahead, dates the change now."""
    clock = LifecycleClock()

    clock.observe({"db-id": info("db", started_at=started_at)}, NOW)

    assert clock.changed_at("db-id") == NOW


def test_restart_is_dated_by_the_new_start():
    """A new StartedAt for a known container is a restart, dated by it."""
    clock = LifecycleClock()
    clock.observe({"db-id": info("db")}, NOW)

    restarted = info("db", started_at=rfc3339(NOW + 95.25))
    clock.observe({"db-id": restarted}, NOW + 100)

    assert clock.changed_at("db-id") == pytest.approx(NOW + 95.25, abs=1e-5)


@pytest.mark.parametrize("paused", [True, False], ids=["pause", "unpause"])
def test_pause_and_unpause_are_dated_when_seen(paused):
    """A pause or an unpause keeps StartedAt and is dated when observed."""
    clock = LifecycleClock()
    clock.observe({"db-id": info("db", paused=not paused)}, NOW)

    clock.observe({"db-id": info("db", paused=paused)}, NOW + 100)

    assert clock.changed_at("db-id") == NOW + 100


def test_unchanged_container_keeps_its_date():
    """Seeing a container again as it was changes nothing."""
    clock = LifecycleClock()
    clock.observe({"db-id": info("db")}, NOW)

    clock.observe({"db-id": info("db")}, NOW + 100)

    assert clock.changed_at("db-id") == pytest.approx(STARTED, abs=1e-6)


def test_removal_is_recorded():
    """A container gone from the inventory is dated when it went."""
    clock = LifecycleClock()
    clock.observe({"db-id": info("db"), "api-id": info("api")}, NOW)

    clock.observe({"api-id": info("api")}, NOW + 100)

    assert clock.changed_at("db-id") == NOW + 100
    assert clock.changed_at("api-id") == pytest.approx(STARTED, abs=1e-6)


def test_a_removal_is_forgotten_once_no_grace_period_needs_it():
    """A container gone for keep_gone_s has no date any more, so a host that
    churns containers is not remembered container by container for ever."""
    clock = LifecycleClock(keep_gone_s=60)
    clock.observe({"db-id": info("db"), "api-id": info("api")}, NOW)
    clock.observe({"api-id": info("api")}, NOW + 1)

    clock.observe({"api-id": info("api")}, NOW + 60)
    within_grace = clock.changed_at("db-id")
    clock.observe({"api-id": info("api")}, NOW + 61)

    assert within_grace == NOW + 1
    assert clock.changed_at("db-id") is None
    assert clock.changed_at("api-id") == pytest.approx(STARTED, abs=1e-6)


def test_the_service_keeps_removals_for_its_grace_period():
    """The alert service tells the clock how long a removal matters."""
    harness = Harness({"grace_period": "45s"})

    assert harness.lifecycle.keep_gone_s == 45


def test_never_seen_container_has_no_date():
    """A container never observed has no lifecycle date."""
    assert LifecycleClock().changed_at("db-id") is None


# The service.


class Harness:
    """An AlertService over a settable snapshot, with a fake clock and a
    fresh registry."""

    def __init__(self, settings: dict[str, object] | None = None) -> None:
        self.clock = FakeClock()
        self.registry = CollectorRegistry()
        self.lifecycle = LifecycleClock()
        self.snapshot = snapshot()
        self.engine_up = True
        # These tests were written for an unexpected path firing at once.
        merged: dict[str, object] = {"rules": {"unexpected_reachability": {"for": 0}}}
        merged |= settings or {}
        self.service = AlertService(
            AlertSettings.model_validate(merged),
            snapshot=lambda: self.snapshot,
            health=lambda: health(now=self.clock.now, engine_up=self.engine_up),
            lifecycle=self.lifecycle,
            metrics=SelfMetrics(self.registry),
            external_url="http://netwatch.test:10980/",
            clock=self.clock,
        )

    def at(self, offset: float) -> list[str]:
        """Evaluates at NOW + offset; the kinds of the transitions."""
        self.clock.now = NOW + offset
        return [t.kind for t in self.service.evaluate()]

    def sample(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


def test_service_uses_only_the_log_without_receivers():
    """Without webhooks or Alertmanagers the log is the only notifier."""
    harness = Harness()

    assert [n.name for n in harness.service.notifiers] == ["log"]


def test_service_moves_alerts_along_and_counts_them():
    """evaluate makes a broken pair pending, then firing, then resolved, and
    sets the alert gauges."""
    harness = Harness()
    harness.snapshot = snapshot(pair(verdict=Verdict.BROKEN))

    first = harness.at(0)
    pending = harness.sample("netwatch_alerts", state="pending")
    fired = harness.at(30)
    firing = harness.sample("netwatch_alerts", state="firing")
    harness.snapshot = snapshot(pair())
    harness.at(40)
    resolved = harness.at(70)

    assert (first, pending) == ([], 1.0)
    assert (fired, firing) == (["fired"], 1.0)
    assert resolved == ["resolved"]
    assert harness.sample("netwatch_alerts", state="firing") == 0.0
    assert harness.service.active() == []


def test_service_logs_what_fires_and_resolves():
    """The log notifier writes alert.fired and alert.resolved with the labels."""
    harness = Harness({"resolve_after": 0})
    harness.snapshot = snapshot(pair(expected=False, verdict=Verdict.UNEXPECTED))

    with capture_logs() as logs:
        harness.at(0)
        harness.snapshot = snapshot(pair(expected=False))
        harness.at(5)

    events = [(e["event"], e["log_level"], e["alertname"]) for e in logs]
    assert events == [
        ("alert.fired", "warning", "NetwatchUnexpectedReachability"),
        ("alert.resolved", "info", "NetwatchUnexpectedReachability"),
    ]


def test_service_documents_link_to_its_api():
    """Active alerts are served with a generatorURL on netwatch's alert API."""
    harness = Harness()
    harness.snapshot = snapshot(pair(expected=False, verdict=Verdict.UNEXPECTED))
    harness.at(0)

    [document] = harness.service.documents()

    assert document["generatorURL"] == "http://netwatch.test:10980/api/v1/alerts"
    assert document["state"] == "firing"


def test_service_holds_notifications_beyond_the_budget():
    """Transitions beyond max_notifications_per_minute are not notified and
    are counted in netwatch_alert_notifications_held_total."""
    harness = Harness({"max_notifications_per_minute": 1})
    harness.snapshot = snapshot(
        *(
            pair(f"src{i}", "db", expected=False, verdict=Verdict.UNEXPECTED)
            for i in range(3)
        )
    )

    with capture_logs() as logs:
        transitions = harness.at(0)

    assert transitions == ["fired", "fired", "fired"]
    assert [e["event"] for e in logs] == ["alert.fired"]
    assert harness.sample("netwatch_alert_notifications_held_total") == 2.0


def test_service_budget_frees_up_after_a_minute():
    """A minute after the budget ran out, notifications pass again."""
    harness = Harness({"max_notifications_per_minute": 1, "resolve_after": 0})
    harness.snapshot = snapshot(
        pair("a", "db", expected=False, verdict=Verdict.UNEXPECTED),
        pair("b", "db", expected=False, verdict=Verdict.UNEXPECTED),
    )
    harness.at(0)

    harness.snapshot = snapshot()
    with capture_logs() as logs:
        harness.at(60)

    assert [e["event"] for e in logs] == ["alert.resolved"]
    assert harness.sample("netwatch_alert_notifications_held_total") == 2.0


def test_restarted_container_is_in_grace():
    """A container that restarted within grace_period raises no alert; once
    the grace is over its condition starts pending."""
    harness = Harness()
    harness.lifecycle.observe({"api-id": info("api"), "db-id": info("db")}, NOW)
    restarted = info("db", started_at=rfc3339(NOW - 5))
    harness.lifecycle.observe({"api-id": info("api"), "db-id": restarted}, NOW)
    harness.snapshot = snapshot(pair(verdict=Verdict.BROKEN))

    during = [harness.at(0), harness.at(54)]
    in_grace = harness.service.active()
    harness.at(56)
    after = harness.service.active()
    fired = harness.at(86)

    assert during == [[], []]
    assert in_grace == []
    assert [a.state for a in after] == [AlertState.PENDING]
    assert fired == ["fired"]


def test_paused_container_is_in_grace():
    """A pause seen now puts the container's pairs in grace."""
    harness = Harness()
    harness.lifecycle.observe({"db-id": info("db")}, NOW - 3600)
    harness.lifecycle.observe({"db-id": info("db", paused=True)}, NOW)
    harness.snapshot = snapshot(pair(expected=False, verdict=Verdict.UNEXPECTED))

    transitions = harness.at(0)

    assert transitions == []
    assert harness.service.active() == []


def test_long_running_container_seen_first_is_not_in_grace():
    """A container running long before netwatch first saw it raises alerts at
    once: netwatch's own start is not a container's start."""
    harness = Harness()
    harness.lifecycle.observe({"api-id": info("api"), "db-id": info("db")}, NOW)
    harness.snapshot = snapshot(pair(expected=False, verdict=Verdict.UNEXPECTED))

    transitions = harness.at(0)

    assert transitions == ["fired"]


def test_grace_does_not_cancel_what_already_fires():
    """A firing alert keeps firing when its container restarts."""
    harness = Harness({"resolve_after": 0})
    harness.lifecycle.observe({"api-id": info("api"), "db-id": info("db")}, NOW)
    harness.snapshot = snapshot(pair(expected=False, verdict=Verdict.UNEXPECTED))
    harness.at(0)

    restarted = info("db", started_at=rfc3339(NOW + 9))
    harness.lifecycle.observe({"api-id": info("api"), "db-id": restarted}, NOW + 10)
    transitions = harness.at(10)

    assert transitions == []
    assert [a.state for a in harness.service.active()] == [AlertState.FIRING]


def test_self_alerts_know_no_grace():
    """Alerts about netwatch itself name no container and ignore grace."""
    harness = Harness({"rules": {"engine_unavailable": {"for": 0}}})
    harness.lifecycle.observe({"db-id": info("db", started_at=rfc3339(NOW))}, NOW)
    harness.engine_up = False

    transitions = harness.at(0)

    assert transitions == ["fired"]


def test_pairs_not_probed_yet_are_no_unmeasured_majority():
    """Right after start, pairs with no result yet do not count as failures."""
    fresh = [
        dataclasses.replace(
            pair(f"s{i}", "db", verdict=Verdict.UNMEASURED), probes=MappingProxyType({})
        )
        for i in range(3)
    ]
    tried = pair("api", "db")

    found = conditions_of(snapshot(*fresh, tried))

    assert "mostly_unmeasured" not in found


def test_a_condition_held_back_by_grace_is_shown_as_suppressed():
    """The alerts API says why nothing fires: a suppressed entry with its reason."""
    harness = Harness()
    restarted = info("db", started_at=rfc3339(NOW - 1))
    harness.lifecycle.observe({"api-id": info("api"), "db-id": restarted}, NOW)
    harness.snapshot = snapshot(pair(expected=False, verdict=Verdict.UNEXPECTED))

    transitions = harness.at(0)

    documents = harness.service.documents()
    assert transitions == []
    assert [d["state"] for d in documents] == ["suppressed"]
    assert "started, stopped, restarted or paused" in str(documents[0]["reason"])


def test_a_book_under_new_settings_keeps_its_alerts_and_follows_the_new_rules():
    """A reload hands firing alerts over without notifying them again, and
    the new `resolve_after` decides when they resolve."""
    book = book_with()
    book.update(holding(condition()), NOW)
    fired = book.update(holding(condition()), NOW + 30)

    reloaded = book.with_settings(book_with(resolve_after=5.0)._settings)
    still = reloaded.update(holding(condition()), NOW + 31)
    cleared = reloaded.update({}, NOW + 32)
    resolved = reloaded.update({}, NOW + 37)

    assert [t.kind for t in fired] == ["fired"]
    assert still == []
    assert cleared == []
    assert [t.kind for t in resolved] == ["resolved"]
    assert [a.state for a in book.active()] == [AlertState.FIRING]
