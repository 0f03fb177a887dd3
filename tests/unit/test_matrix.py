"""The reachability matrix: states, verdicts, loss windows, plans and snapshots."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

import pytest

from netwatch.config import MatrixSettings
from netwatch.containers import ContainerInfo
from netwatch.matrix import (
    EMPTY_HISTOGRAM,
    LATENCY_BUCKETS_S,
    Histogram,
    PairState,
    ReachabilityMatrix,
    Verdict,
    observe,
    overall_state,
    probe_state,
    verdict_for,
)
from netwatch.pairs import PairPlan, PlannedPair, Target
from netwatch.probes.outcome import Outcome, ProbeKind, ProbeResult, Reason
from tests.factories import container as make_container

REACHABLE = PairState.REACHABLE
DEGRADED = PairState.DEGRADED
UNREACHABLE = PairState.UNREACHABLE
UNKNOWN = PairState.UNKNOWN


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def planned(
    src: str = "a",
    dst: str = "b",
    *,
    expected: bool = True,
    address: str = "10.0.0.2",
    hold: str | None = None,
) -> PlannedPair:
    return PlannedPair(
        src=src,
        dst=dst,
        expected_reachable=expected,
        basis="share net" if expected else "no shared network",
        targets=(Target(address, "net"),),
        ports=(80,),
        hold=hold,
    )


def plan_of(*pairs: PlannedPair, unaddressable: dict | None = None) -> PairPlan:
    by_source: dict[str, list[PlannedPair]] = {}
    for pair in pairs:
        by_source.setdefault(pair.src, []).append(pair)
    return PairPlan(
        pairs=MappingProxyType({(p.src, p.dst): p for p in pairs}),
        by_source=MappingProxyType({k: tuple(v) for k, v in by_source.items()}),
        unaddressable=MappingProxyType(unaddressable or {}),
    )


def ping(
    src: str = "a",
    dst: str = "b",
    *,
    sent: int = 3,
    received: int = 3,
    reason: Reason | None = None,
    outcome: Outcome | None = None,
    rtt: tuple[float, ...] | None = None,
) -> ProbeResult:
    if outcome is None:
        outcome = Outcome.OK if received else Outcome.UNREACHABLE
    if outcome is Outcome.UNREACHABLE and reason is None:
        reason = Reason.NO_REPLY
    return ProbeResult(
        probe=ProbeKind.PING,
        src=src,
        dst=dst,
        address="10.0.0.2",
        network="net",
        outcome=outcome,
        reason=reason,
        detail="" if outcome is Outcome.OK else f"{reason}",
        at=0.0,
        sent=sent,
        received=received,
        rtt_samples_s=rtt if rtt is not None else (0.00004,) * received,
    )


def unmeasured(
    src: str = "a", dst: str = "b", probe: ProbeKind = ProbeKind.PING
) -> ProbeResult:
    return ProbeResult(
        probe=probe,
        src=src,
        dst=dst,
        address="10.0.0.2",
        network="net",
        outcome=Outcome.UNMEASURED,
        reason=Reason.TOOL_MISSING,
        detail="ping: not found",
        at=0.0,
    )


def tcp(
    src: str = "a", dst: str = "b", *, port: int = 80, ok: bool = True
) -> ProbeResult:
    return ProbeResult(
        probe=ProbeKind.TCP,
        src=src,
        dst=dst,
        address="10.0.0.2",
        network="net",
        outcome=Outcome.OK if ok else Outcome.UNREACHABLE,
        reason=None if ok else Reason.REFUSED,
        detail="" if ok else "Connection refused",
        at=0.0,
        port=port,
        connect_s=0.0003 if ok else None,
    )


def info(name: str) -> ContainerInfo:
    return make_container(name, id=name, started_at="")


def matrix_with(
    *pairs: PlannedPair, clock: FakeClock, loss_window: int = 10, degraded: float = 0.05
) -> ReachabilityMatrix:
    settings = MatrixSettings(loss_window=loss_window, degraded_loss_ratio=degraded)
    matrix = ReachabilityMatrix(settings, clock=clock)
    names = {p.src for p in pairs} | {p.dst for p in pairs}
    matrix.set_plan(plan_of(*pairs), {n: info(n) for n in names})
    return matrix


@pytest.mark.parametrize(
    ("probe", "results", "loss", "state"),
    [
        (ProbeKind.PING, [ping()], 0.0, REACHABLE),
        (ProbeKind.PING, [ping(received=2)], 1 / 3, DEGRADED),
        (ProbeKind.PING, [ping()], 0.05, REACHABLE),
        (ProbeKind.PING, [ping()], 0.06, DEGRADED),
        (ProbeKind.PING, [ping(received=0)], 1.0, UNREACHABLE),
        (ProbeKind.PING, [unmeasured()], None, UNKNOWN),
        (ProbeKind.PING, [], None, UNKNOWN),
        (ProbeKind.PING, [unmeasured(), ping()], 0.0, REACHABLE),
        (ProbeKind.PING, [unmeasured(), ping(received=0)], 1.0, UNREACHABLE),
        (ProbeKind.TCP, [tcp(port=80), tcp(port=443)], None, REACHABLE),
        (ProbeKind.TCP, [tcp(port=80), tcp(port=443, ok=False)], None, REACHABLE),
        (ProbeKind.TCP, [tcp(ok=False)], None, UNREACHABLE),
        (ProbeKind.TCP, [tcp(), unmeasured(probe=ProbeKind.TCP)], None, REACHABLE),
        (ProbeKind.TCP, [unmeasured(probe=ProbeKind.TCP)], None, UNKNOWN),
    ],
    ids=[
        "ping-all-replies",
        "ping-loss-above-threshold",
        "ping-loss-at-threshold",
        "ping-loss-just-above",
        "ping-no-reply",
        "ping-unmeasured",
        "no-results",
        "ping-unmeasured-and-ok",
        "ping-unmeasured-and-lost",
        "tcp-all-open",
        "tcp-some-refused",
        "tcp-refused",
        "tcp-unmeasured-and-ok",
        "tcp-unmeasured",
    ],
)
def test_probe_state(probe, results, loss, state):
    """One run's results give reachable, degraded, unreachable or unknown."""
    assert probe_state(probe, results, loss, degraded_loss_ratio=0.05) is state


@pytest.mark.parametrize(
    ("states", "overall"),
    [
        ([REACHABLE, UNREACHABLE], REACHABLE),
        ([REACHABLE, DEGRADED], DEGRADED),
        ([DEGRADED, UNREACHABLE], DEGRADED),
        ([UNREACHABLE, UNKNOWN], UNREACHABLE),
        ([UNREACHABLE, UNREACHABLE], UNREACHABLE),
        ([UNKNOWN, UNKNOWN], UNKNOWN),
        ([REACHABLE, UNKNOWN], REACHABLE),
        ([], UNKNOWN),
    ],
)
def test_overall_state(states, overall):
    """Reached by any probe is reached; unknown probes never make it unreachable."""
    assert overall_state(states) is overall


@pytest.mark.parametrize(
    ("expected", "state", "verdict"),
    [
        (True, REACHABLE, Verdict.OK),
        (True, DEGRADED, Verdict.OK),
        (True, UNREACHABLE, Verdict.BROKEN),
        (True, UNKNOWN, Verdict.UNMEASURED),
        (False, UNREACHABLE, Verdict.OK),
        (False, REACHABLE, Verdict.UNEXPECTED),
        (False, DEGRADED, Verdict.UNEXPECTED),
        (False, UNKNOWN, Verdict.UNMEASURED),
    ],
)
def test_verdict_compares_state_with_expectation(expected, state, verdict):
    """Verdicts: ok when state matches, broken or unexpected when not."""
    assert verdict_for(expected, state) is verdict


def test_histogram_bucket_counts_are_cumulative():
    """A sample counts in its own bucket and every larger one, and in +Inf."""
    samples = [0.00003, 0.0003, 5.0]

    histogram = observe(EMPTY_HISTOGRAM, samples)

    below = [sum(1 for s in samples if s <= bound) for bound in LATENCY_BUCKETS_S]
    expected = (*below, 3)
    assert histogram.bucket_counts == expected
    assert list(histogram.bucket_counts) == sorted(histogram.bucket_counts)
    assert histogram.count == 3
    assert histogram.total == pytest.approx(5.00033)


def test_histogram_sample_on_a_bound_counts_in_that_bucket():
    """Buckets are upper-inclusive: a sample equal to a bound falls in it."""
    histogram = observe(EMPTY_HISTOGRAM, [LATENCY_BUCKETS_S[0]])

    assert histogram.bucket_counts[0] == 1


def test_observe_returns_a_new_histogram():
    """observe leaves the histogram it was given as it was."""
    before = Histogram(EMPTY_HISTOGRAM.bucket_counts, 0.0)

    after = observe(before, [0.001])

    assert before == EMPTY_HISTOGRAM
    assert after.count == 1


def test_new_pair_starts_unknown_and_unmeasured():
    """A freshly planned pair is unknown, with no changes, since the plan."""
    clock = FakeClock(1000.0)

    matrix = matrix_with(planned(), clock=clock)

    view = matrix.snapshot().pairs[("a", "b")]
    assert (view.state, view.verdict) == (UNKNOWN, Verdict.UNMEASURED)
    assert (view.since, view.changes) == (1000.0, 0)
    assert view.probes == {}


@pytest.mark.parametrize(
    ("expected", "received", "state", "verdict"),
    [
        (True, 3, REACHABLE, Verdict.OK),
        (True, 0, UNREACHABLE, Verdict.BROKEN),
        (False, 3, REACHABLE, Verdict.UNEXPECTED),
        (False, 0, UNREACHABLE, Verdict.OK),
    ],
)
def test_recorded_run_sets_state_and_verdict(expected, received, state, verdict):
    """A measured run gives the pair a state and judges it against the plan."""
    clock = FakeClock()
    matrix = matrix_with(planned(expected=expected), clock=clock)

    matrix.record("a", ProbeKind.PING, [ping(received=received)])

    view = matrix.snapshot().pairs[("a", "b")]
    assert (view.state, view.verdict) == (state, verdict)


def test_could_not_measure_never_makes_a_pair_unreachable():
    """Unmeasured results after a good run leave the pair unknown, not unreachable."""
    clock = FakeClock()
    matrix = matrix_with(planned(), clock=clock)
    matrix.record("a", ProbeKind.PING, [ping()])

    matrix.record("a", ProbeKind.PING, [unmeasured()])
    matrix.record("a", ProbeKind.TCP, [unmeasured(probe=ProbeKind.TCP)])

    view = matrix.snapshot().pairs[("a", "b")]
    assert view.state is UNKNOWN
    assert view.verdict is Verdict.UNMEASURED
    assert view.probes[ProbeKind.PING].reason is Reason.TOOL_MISSING


def test_unmeasured_runs_do_not_count_as_loss():
    """An unmeasured run adds nothing to the ping loss window."""
    clock = FakeClock()
    matrix = matrix_with(planned(), clock=clock)
    matrix.record("a", ProbeKind.PING, [ping()])

    matrix.record("a", ProbeKind.PING, [unmeasured()])
    matrix.record("a", ProbeKind.PING, [ping()])

    probe = matrix.snapshot().pairs[("a", "b")].probes[ProbeKind.PING]
    assert (probe.window_sent, probe.window_received) == (6, 6)
    assert probe.loss_ratio == 0.0
    assert probe.state is REACHABLE


def test_loss_over_the_window_above_the_ratio_is_degraded():
    """Replies with loss above degraded_loss_ratio over the window are degraded."""
    clock = FakeClock()
    matrix = matrix_with(planned(), clock=clock, degraded=0.05)
    matrix.record("a", ProbeKind.PING, [ping()])

    matrix.record("a", ProbeKind.PING, [ping(received=2)])

    view = matrix.snapshot().pairs[("a", "b")]
    assert view.probes[ProbeKind.PING].loss_ratio == pytest.approx(1 / 6)
    assert view.state is DEGRADED
    assert view.verdict is Verdict.OK


def test_loss_window_drops_old_runs():
    """Runs older than loss_window no longer weigh on the loss ratio."""
    clock = FakeClock()
    matrix = matrix_with(planned(), clock=clock, loss_window=2)
    matrix.record("a", ProbeKind.PING, [ping(received=1)])
    matrix.record("a", ProbeKind.PING, [ping()])
    degraded = matrix.snapshot().pairs[("a", "b")]

    matrix.record("a", ProbeKind.PING, [ping()])

    recovered = matrix.snapshot().pairs[("a", "b")]
    assert degraded.state is DEGRADED
    assert degraded.probes[ProbeKind.PING].loss_ratio == pytest.approx(2 / 6)
    assert recovered.state is REACHABLE
    assert recovered.probes[ProbeKind.PING].loss_ratio == 0.0
    assert recovered.probes[ProbeKind.PING].window_sent == 6


def test_since_and_changes_move_only_on_change():
    """Repeating a state keeps since and changes; a new state moves both."""
    clock = FakeClock(1000.0)
    matrix = matrix_with(planned(), clock=clock)

    clock.now = 1010.0
    matrix.record("a", ProbeKind.PING, [ping()])
    first = matrix.snapshot().pairs[("a", "b")]
    clock.now = 1020.0
    matrix.record("a", ProbeKind.PING, [ping()])
    same = matrix.snapshot().pairs[("a", "b")]
    clock.now = 1030.0
    matrix.record("a", ProbeKind.PING, [ping(received=0)])
    broken = matrix.snapshot().pairs[("a", "b")]

    assert (first.since, first.changes) == (1010.0, 1)
    assert (same.since, same.changes) == (1010.0, 1)
    assert (broken.since, broken.changes) == (1030.0, 2)
    assert broken.verdict is Verdict.BROKEN
    assert broken.probes[ProbeKind.PING].since == 1030.0
    assert broken.probes[ProbeKind.PING].changes == 1
    assert broken.probes[ProbeKind.PING].last_at == 1030.0


def test_set_plan_drops_gone_pairs_and_adds_new_ones():
    """Pairs missing from the new plan vanish; new ones start unknown."""
    clock = FakeClock()
    matrix = matrix_with(planned("a", "b"), planned("b", "a"), clock=clock)
    matrix.record("a", ProbeKind.PING, [ping("a", "b")])

    matrix.set_plan(plan_of(planned("a", "b"), planned("a", "c")), {})

    pairs = matrix.snapshot().pairs
    assert set(pairs) == {("a", "b"), ("a", "c")}
    assert pairs[("a", "b")].state is REACHABLE
    assert pairs[("a", "c")].state is UNKNOWN


def test_changed_expectation_is_measured_again_before_it_is_judged():
    """A pair whose expectation changes is not judged on results that answered
    the old question: it is unmeasured until the next run, then judged."""
    clock = FakeClock(1000.0)
    matrix = matrix_with(planned(expected=True), clock=clock)
    clock.now = 1010.0
    matrix.record("a", ProbeKind.PING, [ping()])

    clock.now = 1020.0
    matrix.set_plan(plan_of(planned(expected=False)), {})
    between = matrix.snapshot().pairs[("a", "b")]
    clock.now = 1030.0
    matrix.record("a", ProbeKind.PING, [ping()])
    after = matrix.snapshot().pairs[("a", "b")]

    assert between.expected_reachable is False
    assert between.basis == "no shared network"
    assert between.verdict is Verdict.UNMEASURED
    assert between.probes[ProbeKind.PING].state is PairState.UNKNOWN
    assert between.probes[ProbeKind.PING].window_sent == 0
    assert between.probes[ProbeKind.PING].result_counts[Outcome.OK] == 1
    assert after.verdict is Verdict.UNEXPECTED
    assert (after.since, after.changes) == (1030.0, 3)


def test_held_pair_is_unmeasured_whatever_it_last_saw():
    """A pair put on hold (paused container) turns unknown at once and stays so."""
    clock = FakeClock()
    matrix = matrix_with(planned(), clock=clock)
    matrix.record("a", ProbeKind.PING, [ping()])

    matrix.set_plan(plan_of(planned(hold="destination is paused")), {})
    held = matrix.snapshot().pairs[("a", "b")]
    matrix.record("a", ProbeKind.PING, [ping(received=0)])
    still_held = matrix.snapshot().pairs[("a", "b")]

    assert (held.state, held.verdict, held.hold) == (
        UNKNOWN,
        Verdict.UNMEASURED,
        "destination is paused",
    )
    assert (still_held.state, still_held.verdict) == (UNKNOWN, Verdict.UNMEASURED)


def test_changed_targets_restart_the_loss_window():
    """When a pair's addresses change, old loss no longer counts."""
    clock = FakeClock()
    matrix = matrix_with(planned(address="10.0.0.2"), clock=clock)
    matrix.record("a", ProbeKind.PING, [ping(received=0)])

    matrix.set_plan(plan_of(planned(address="10.0.0.9")), {})
    matrix.record("a", ProbeKind.PING, [ping()])

    probe = matrix.snapshot().pairs[("a", "b")].probes[ProbeKind.PING]
    assert probe.loss_ratio == 0.0
    assert probe.state is REACHABLE


def test_record_for_a_pair_outside_the_plan_is_ignored():
    """Results for a pair that left the plan are dropped without error."""
    clock = FakeClock()
    matrix = matrix_with(planned("a", "b"), clock=clock)

    matrix.record("a", ProbeKind.PING, [ping("a", "gone")])
    matrix.record("x", ProbeKind.PING, [ping("x", "b")])

    pairs = matrix.snapshot().pairs
    assert set(pairs) == {("a", "b")}
    assert pairs[("a", "b")].state is UNKNOWN


def test_record_splits_one_sources_results_by_destination():
    """One run from a source updates each of its destinations on its own."""
    clock = FakeClock()
    matrix = matrix_with(planned("a", "b"), planned("a", "c"), clock=clock)

    matrix.record("a", ProbeKind.PING, [ping("a", "b"), ping("a", "c", received=0)])

    pairs = matrix.snapshot().pairs
    assert pairs[("a", "b")].state is REACHABLE
    assert pairs[("a", "c")].state is UNREACHABLE


def test_snapshot_is_unaffected_by_later_writes():
    """A snapshot keeps what it saw after later records and plans."""
    clock = FakeClock()
    matrix = matrix_with(planned(), clock=clock)
    before = matrix.snapshot()

    matrix.record("a", ProbeKind.PING, [ping()])
    matrix.set_plan(plan_of(), {})

    assert before.pairs[("a", "b")].state is UNKNOWN
    assert before.pairs[("a", "b")].probes == {}
    assert set(before.containers) == {"a", "b"}
    assert matrix.snapshot().pairs == {}


def test_snapshot_cannot_be_changed_by_readers():
    """Snapshot mappings are read-only and its views are frozen."""
    clock = FakeClock()
    matrix = matrix_with(planned(), clock=clock)
    matrix.record("a", ProbeKind.PING, [ping()])
    snapshot = matrix.snapshot()
    view = snapshot.pairs[("a", "b")]

    with pytest.raises(TypeError):
        snapshot.pairs[("b", "a")] = view  # type: ignore[index]
    with pytest.raises(TypeError):
        view.probes[ProbeKind.TCP] = view.probes[ProbeKind.PING]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.state = UNREACHABLE  # type: ignore[misc]


def test_snapshot_does_not_share_the_callers_container_dict():
    """Changing the dict given to set_plan afterwards does not reach snapshots."""
    clock = FakeClock()
    matrix = ReachabilityMatrix(MatrixSettings(), clock=clock)
    containers = {"a": info("a"), "b": info("b")}
    matrix.set_plan(plan_of(planned()), containers)

    containers["c"] = info("c")

    assert set(matrix.snapshot().containers) == {"a", "b"}


def test_snapshot_carries_unaddressable_pairs_and_names():
    """The snapshot lists unaddressable pairs and names containers by id."""
    clock = FakeClock()
    matrix = ReachabilityMatrix(MatrixSettings(), clock=clock)
    plan = plan_of(
        planned(), unaddressable={("a", "n"): "destination has no network address"}
    )

    matrix.set_plan(plan, {"a": info("a")})

    snapshot = matrix.snapshot()
    assert snapshot.unaddressable == {("a", "n"): "destination has no network address"}
    assert snapshot.name("a") == "a"
    assert snapshot.name("0123456789abcdef") == "0123456789ab"


def test_ping_view_keeps_round_trips_and_their_histogram():
    """A ping run's round trips give min, avg, max and fill the histogram."""
    clock = FakeClock()
    matrix = matrix_with(planned(), clock=clock)

    matrix.record("a", ProbeKind.PING, [ping(rtt=(0.0001, 0.0002, 0.0003))])
    matrix.record("a", ProbeKind.PING, [ping(rtt=(0.001, 0.001, 0.001))])

    probe = matrix.snapshot().pairs[("a", "b")].probes[ProbeKind.PING]
    assert (probe.rtt_min_s, probe.rtt_max_s) == (0.001, 0.001)
    assert probe.rtt_avg_s == pytest.approx(0.001)
    assert probe.latency.count == 6
    assert probe.result_counts == {Outcome.OK: 2}


def test_tcp_view_counts_outcomes_and_connect_times():
    """TCP runs count results per outcome and time only successful connects;
    one open port makes the pair reachable (closed ports are port findings)."""
    clock = FakeClock()
    matrix = matrix_with(planned(), clock=clock)

    matrix.record("a", ProbeKind.TCP, [tcp(port=80), tcp(port=443, ok=False)])

    probe = matrix.snapshot().pairs[("a", "b")].probes[ProbeKind.TCP]
    assert probe.state is REACHABLE
    assert probe.result_counts == {Outcome.OK: 1, Outcome.UNREACHABLE: 1}
    assert probe.latency.count == 1
    assert probe.reason is Reason.REFUSED
    assert probe.loss_ratio is None


def test_snapshot_verdict_counts():
    """verdict_counts tallies every verdict, zero included."""
    clock = FakeClock()
    matrix = matrix_with(
        planned("a", "b"), planned("b", "a", expected=False), clock=clock
    )
    matrix.record("a", ProbeKind.PING, [ping("a", "b")])

    counts = matrix.snapshot().verdict_counts()

    assert counts == {
        Verdict.OK: 1,
        Verdict.BROKEN: 0,
        Verdict.UNEXPECTED: 0,
        Verdict.UNMEASURED: 1,
    }


def test_a_run_that_started_before_a_topology_change_is_not_recorded():
    """Results of a run begun under the old expectation are dropped for the
    pair whose expectation changed while the run was under way."""
    clock = FakeClock(1000.0)
    matrix = matrix_with(planned(expected=True), clock=clock)
    clock.now = 1010.0
    matrix.set_plan(plan_of(planned(expected=False)), {})

    clock.now = 1012.0
    matrix.record("a", ProbeKind.PING, [ping(received=0)], started_at=1009.0)
    stale = matrix.snapshot().pairs[("a", "b")]
    matrix.record("a", ProbeKind.PING, [ping(received=0)], started_at=1011.0)
    fresh = matrix.snapshot().pairs[("a", "b")]

    assert stale.verdict is Verdict.UNMEASURED
    assert ProbeKind.PING not in stale.probes
    assert fresh.verdict is Verdict.OK


def test_a_path_back_from_an_outage_starts_a_new_loss_record():
    """The echoes lost while a path was dead are the outage's, not packet
    loss: the first run that gets replies again starts the window afresh."""
    clock = FakeClock()
    matrix = matrix_with(planned(), clock=clock, loss_window=10)
    matrix.record("a", ProbeKind.PING, [ping(received=0)])
    matrix.record("a", ProbeKind.PING, [ping(received=0)])

    matrix.record("a", ProbeKind.PING, [ping()])

    ping_view = matrix.snapshot().pairs[("a", "b")].probes[ProbeKind.PING]
    assert ping_view.state is REACHABLE
    assert ping_view.loss_ratio == 0.0
    assert ping_view.window_sent == 3


def test_a_smaller_loss_window_on_reload_keeps_the_newest_runs():
    """replace_settings shrinks each pair's window to its newest runs, and the
    new degraded threshold judges the next result."""
    clock = FakeClock()
    matrix = matrix_with(planned(), clock=clock, loss_window=10, degraded=0.05)
    matrix.record("a", ProbeKind.PING, [ping(received=0)])
    matrix.record("a", ProbeKind.PING, [ping()])
    matrix.record("a", ProbeKind.PING, [ping(received=2)])

    matrix.replace_settings(MatrixSettings(loss_window=2, degraded_loss_ratio=0.5))
    matrix.record("a", ProbeKind.PING, [ping()])

    view = matrix.snapshot().pairs[("a", "b")].probes[ProbeKind.PING]
    assert view.window_sent == 6
    assert view.loss_ratio == pytest.approx(1 / 6)
    assert matrix.snapshot().pairs[("a", "b")].state is REACHABLE
