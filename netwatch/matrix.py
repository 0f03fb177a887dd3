"""The reachability matrix: one writer, immutable snapshots for everyone else.

For each planned pair and probe it keeps the last results, the ping loss over
a sliding window of runs, round-trip and connect-time distributions, a state
(reachable, degraded, unreachable, unknown), the expectation from the plan and
the verdict that compares the two, with the time of the last change and how
many changes there were.

Only the daemon's event loop writes (`set_plan`, `record`); readers (metrics,
the web API, the CLI) call `snapshot()` and get frozen objects that later
writes never touch.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType

import structlog

from netwatch.config import MatrixSettings
from netwatch.containers import ContainerInfo
from netwatch.pairs import EMPTY_PLAN, PairKey, PairPlan, PlannedPair
from netwatch.probes.outcome import (
    REACHABILITY_PROBES,
    Outcome,
    ProbeKind,
    ProbeResult,
    Reason,
)

log = structlog.get_logger("netwatch.matrix")

# Buckets for round-trip and connect times, from 10 microseconds (a veth
# pair on one host) to 2.5 seconds.
# Kept short on purpose: every bucket is a series for each of N² pairs.
LATENCY_BUCKETS_S = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
    0.001, 0.0025, 0.01, 0.025, 0.1, 0.5, 2.5,
)  # fmt: skip


class PairState(StrEnum):
    REACHABLE = "reachable"
    DEGRADED = "degraded"
    UNREACHABLE = "unreachable"
    UNKNOWN = "unknown"


class Verdict(StrEnum):
    OK = "ok"
    BROKEN = "broken"
    UNEXPECTED = "unexpected"
    UNMEASURED = "unmeasured"


@dataclass(frozen=True)
class Histogram:
    """Cumulative counts per bucket bound (the last is +Inf), and the sum."""

    bucket_counts: tuple[int, ...]
    total: float

    @property
    def count(self) -> int:
        return self.bucket_counts[-1]


EMPTY_HISTOGRAM = Histogram((0,) * (len(LATENCY_BUCKETS_S) + 1), 0.0)


def observe(histogram: Histogram, samples: Iterable[float]) -> Histogram:
    counts = list(histogram.bucket_counts)
    total = histogram.total
    for sample in samples:
        total += sample
        for index, bound in enumerate(LATENCY_BUCKETS_S):
            if sample <= bound:
                counts[index] += 1
        counts[-1] += 1
    return Histogram(tuple(counts), total)


@dataclass(frozen=True)
class ProbeView:
    """One probe of one pair, as of its last run."""

    probe: ProbeKind
    state: PairState
    since: float
    changes: int
    last_at: float | None = None
    results: tuple[ProbeResult, ...] = ()
    reason: Reason | None = None
    detail: str = ""
    # ping: loss over the window of runs, and the last run's round trips
    loss_ratio: float | None = None
    window_sent: int = 0
    window_received: int = 0
    rtt_min_s: float | None = None
    rtt_avg_s: float | None = None
    rtt_max_s: float | None = None
    # ping round trips, or tcp connect times, since the pair appeared
    latency: Histogram = EMPTY_HISTOGRAM
    result_counts: Mapping[Outcome, int] = field(
        default_factory=lambda: MappingProxyType({})
    )


@dataclass(frozen=True)
class PairView:
    src: str
    dst: str
    expected_reachable: bool
    basis: str
    state: PairState
    verdict: Verdict
    since: float
    changes: int
    hold: str | None
    probes: Mapping[ProbeKind, ProbeView]
    # Policy ports measured against their demand, when they disagree.
    port_findings: tuple[str, ...] = ()
    # Names that resolve where they should not, or do not where they should.
    dns_findings: tuple[str, ...] = ()
    # Whether the destination's names should resolve from the source.
    names_resolve: bool = False
    # Labelled HTTP checks that answered an error status.
    http_findings: tuple[str, ...] = ()


@dataclass(frozen=True)
class MatrixSnapshot:
    # When the matrix last changed: the snapshot is the state as of then.
    at: float
    containers: Mapping[str, ContainerInfo]
    pairs: Mapping[PairKey, PairView]
    unaddressable: Mapping[PairKey, str]
    sampled_out: int = 0

    def name(self, container_id: str) -> str:
        info = self.containers.get(container_id)
        return info.name if info else container_id[:12]

    def verdict_counts(self) -> dict[Verdict, int]:
        counts = dict.fromkeys(Verdict, 0)
        for pair in self.pairs.values():
            counts[pair.verdict] += 1
        return counts


def probe_state(
    probe: ProbeKind,
    results: Sequence[ProbeResult],
    loss_ratio: float | None,
    degraded_loss_ratio: float,
) -> PairState:
    """The state one run's results (one per target) put a probe in."""
    measured = [r for r in results if r.outcome is not Outcome.UNMEASURED]
    if not measured:
        return PairState.UNKNOWN
    reached = [r for r in measured if r.outcome is Outcome.OK]
    if not reached:
        return PairState.UNREACHABLE
    # Degraded means lossy, which only ping measures. Closed ports are the
    # policy's business (port findings), not the pair's state.
    if (
        probe is ProbeKind.PING
        and loss_ratio is not None
        and loss_ratio > degraded_loss_ratio
    ):
        return PairState.DEGRADED
    return PairState.REACHABLE


def overall_state(states: Iterable[PairState]) -> PairState:
    """Reached by any probe is reached; unreachable only if every measured
    probe says so; unknown if nothing was measured."""
    seen = set(states)
    if PairState.REACHABLE in seen:
        return PairState.DEGRADED if PairState.DEGRADED in seen else PairState.REACHABLE
    if PairState.DEGRADED in seen:
        return PairState.DEGRADED
    if PairState.UNREACHABLE in seen:
        return PairState.UNREACHABLE
    return PairState.UNKNOWN


def verdict_for(expected_reachable: bool, state: PairState) -> Verdict:
    if state is PairState.UNKNOWN:
        return Verdict.UNMEASURED
    reached = state in (PairState.REACHABLE, PairState.DEGRADED)
    if reached == expected_reachable:
        return Verdict.OK
    return Verdict.BROKEN if expected_reachable else Verdict.UNEXPECTED


def port_findings(
    expectations: Mapping[int, bool], tcp: ProbeView | None
) -> tuple[str, ...]:
    """Ports measured against what the policy demands of them."""
    if not expectations or tcp is None:
        return ()
    findings = []
    for result in tcp.results:
        want = expectations.get(result.port or 0)
        if want is None or result.outcome is Outcome.UNMEASURED:
            continue
        is_open = result.outcome is Outcome.OK
        if want and not is_open:
            findings.append(
                f"port {result.port} must be open, measured {result.reason}"
            )
        elif is_open and not want:
            findings.append(f"port {result.port} must be closed, measured open")
    return tuple(findings)


def dns_findings(resolves: bool, dns: ProbeView | None) -> tuple[str, ...]:
    """Lookups measured against what the topology says of the names."""
    if dns is None:
        return ()
    findings = []
    for result in dns.results:
        if result.outcome is Outcome.UNMEASURED:
            continue
        resolved = result.outcome is Outcome.OK
        if resolves and not resolved:
            findings.append(f"{result.address} does not resolve: {result.detail}")
        elif resolved and not resolves:
            findings.append(
                f"{result.address} resolves with no user-defined network shared"
            )
    return tuple(findings)


def http_findings(http: ProbeView | None) -> tuple[str, ...]:
    """GETs to a labelled check that answered with an error (4xx, 5xx), no
    answer at all, or not HTTP."""
    if http is None:
        return ()
    findings = []
    for result in http.results:
        if result.status is not None and result.status >= 400:
            findings.append(f"GET {result.target} answered {result.status}")
        elif result.reason in (Reason.NO_ANSWER, Reason.BAD_RESPONSE):
            findings.append(f"GET {result.target}: {result.detail}")
    return tuple(findings)


def combined_verdict(pair_verdict: Verdict, findings: Sequence[str]) -> Verdict:
    """An open port that must be closed is unexpected; a closed port that
    must be open is broken; either outweighs the pair's own verdict."""
    if any("must be closed" in finding for finding in findings):
        return Verdict.UNEXPECTED
    if pair_verdict is Verdict.UNEXPECTED:
        return pair_verdict
    if findings:
        return Verdict.BROKEN
    return pair_verdict


class _PairRecord:
    """The mutable state behind one pair; only the matrix touches it."""

    def __init__(self, plan: PlannedPair, now: float, window: int) -> None:
        self.plan = plan
        # Runs that started before this answered an older question.
        self.valid_from = now
        self.windows: dict[ProbeKind, deque[tuple[int, int]]] = {
            ProbeKind.PING: deque(maxlen=window)
        }
        self.view = PairView(
            src=plan.src,
            dst=plan.dst,
            expected_reachable=plan.expected_reachable,
            basis=plan.basis,
            state=PairState.UNKNOWN,
            verdict=Verdict.UNMEASURED,
            since=now,
            changes=0,
            hold=plan.hold,
            probes=MappingProxyType({}),
        )


class ReachabilityMatrix:
    """Owns every pair's measurements. Single writer: the daemon's loop."""

    def __init__(
        self, settings: MatrixSettings, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._records: dict[PairKey, _PairRecord] = {}
        self._containers: Mapping[str, ContainerInfo] = MappingProxyType({})
        self._plan = EMPTY_PLAN
        self._snapshot: MatrixSnapshot | None = None
        self._changed_at = clock()

    @property
    def plan(self) -> PairPlan:
        return self._plan

    def replace_settings(self, settings: MatrixSettings) -> None:
        """New thresholds apply from the next result on; each pair's loss
        window keeps its newest runs, as many as the new window holds."""
        self._settings = settings
        for record in self._records.values():
            for kind, window in list(record.windows.items()):
                if window.maxlen != settings.loss_window:
                    record.windows[kind] = deque(window, maxlen=settings.loss_window)

    def set_plan(self, plan: PairPlan, containers: Mapping[str, ContainerInfo]) -> None:
        """Adopts a new plan: gone pairs vanish, new ones start unknown, and
        changed expectations are re-judged at once."""
        now = self._clock()
        self._containers = MappingProxyType(dict(containers))
        self._plan = plan
        records: dict[PairKey, _PairRecord] = {}
        for key, planned in plan.pairs.items():
            record = self._records.get(key)
            if record is None:
                record = _PairRecord(planned, now, self._settings.loss_window)
            elif record.plan != planned:
                remeasure = (
                    record.plan.targets != planned.targets
                    or record.plan.expected_reachable != planned.expected_reachable
                )
                record.plan = planned
                probes = record.view.probes
                if remeasure:
                    # Old results answer another question (other addresses, or
                    # another topology): judge nothing until measured again.
                    record.valid_from = now
                    for window in record.windows.values():
                        window.clear()
                    probes = {
                        kind: _remeasuring(view, now) for kind, view in probes.items()
                    }
                self._judge(record, probes, now)
            records[key] = record
        self._records = records
        self._snapshot = None
        self._changed_at = now

    def record(
        self,
        src: str,
        probe: ProbeKind,
        results: Sequence[ProbeResult],
        started_at: float | None = None,
    ) -> None:
        """Takes one run's results of `probe` from `src`, for every pair.

        Results of a run that started before a pair's expectation or
        addresses last changed are dropped for that pair: they measured the
        old topology.
        """
        now = self._clock()
        by_dst: dict[str, list[ProbeResult]] = {}
        for result in results:
            by_dst.setdefault(result.dst, []).append(result)
            log.debug(
                "probe.result",
                src=self._name(src),
                dst=self._name(result.dst),
                probe=str(probe),
                target=result.target,
                outcome=str(result.outcome),
                reason=str(result.reason) if result.reason else None,
                sent=result.sent,
                received=result.received,
                connect_s=result.connect_s,
            )

        for dst, pair_results in by_dst.items():
            record = self._records.get((src, dst))
            if record is None:
                continue  # the pair left the plan while it was being probed
            if started_at is not None and started_at < record.valid_from:
                continue
            probes = dict(record.view.probes)
            probes[probe] = self._probe_view(record, probe, pair_results, now)
            self._judge(record, probes, now)
        self._snapshot = None
        self._changed_at = now

    def snapshot(self) -> MatrixSnapshot:
        if self._snapshot is None:
            self._snapshot = MatrixSnapshot(
                at=self._changed_at,
                containers=self._containers,
                pairs=MappingProxyType({k: r.view for k, r in self._records.items()}),
                unaddressable=self._plan.unaddressable,
                sampled_out=self._plan.sampled_out,
            )
        return self._snapshot

    def _probe_view(
        self,
        record: _PairRecord,
        probe: ProbeKind,
        results: list[ProbeResult],
        now: float,
    ) -> ProbeView:
        previous = record.view.probes.get(probe)
        counts = dict(previous.result_counts) if previous else {}
        for result in results:
            counts[result.outcome] = counts.get(result.outcome, 0) + 1

        latency = previous.latency if previous else EMPTY_HISTOGRAM
        loss_ratio = None
        sent = received = 0
        rtt: list[float] = []
        if probe is ProbeKind.PING:
            measured = [r for r in results if r.outcome is not Outcome.UNMEASURED]
            window = record.windows[ProbeKind.PING]
            came_back = any(r.received for r in measured)
            if (
                came_back
                and previous is not None
                and previous.state is PairState.UNREACHABLE
            ):
                # A path back from an outage starts a new loss record: the
                # outage was a broken path, not packet loss.
                window.clear()
            if measured:
                window.append(
                    (sum(r.sent for r in measured), sum(r.received for r in measured))
                )
            sent = sum(s for s, _ in window)
            received = sum(r for _, r in window)
            loss_ratio = 1.0 - received / sent if sent else None
            rtt = [sample for r in measured for sample in r.rtt_samples_s]
            latency = observe(latency, rtt)
        elif probe is ProbeKind.TCP:
            latency = observe(
                latency, (r.connect_s for r in results if r.connect_s is not None)
            )
        else:
            latency = observe(
                latency, (r.elapsed_s for r in results if r.elapsed_s is not None)
            )

        state = probe_state(
            probe, results, loss_ratio, self._settings.degraded_loss_ratio
        )
        failing = [r for r in results if r.outcome is not Outcome.OK]
        changed = previous is None or previous.state is not state
        return ProbeView(
            probe=probe,
            state=state,
            since=now if changed else previous.since,  # type: ignore[union-attr]
            changes=(previous.changes if previous else 0)
            + (1 if changed and previous else 0),
            last_at=now,
            results=tuple(results),
            reason=failing[0].reason if failing else None,
            detail=failing[0].detail if failing else results[0].detail,
            loss_ratio=loss_ratio,
            window_sent=sent,
            window_received=received,
            rtt_min_s=min(rtt) if rtt else None,
            rtt_avg_s=sum(rtt) / len(rtt) if rtt else None,
            rtt_max_s=max(rtt) if rtt else None,
            latency=latency,
            result_counts=MappingProxyType(counts),
        )

    def _judge(
        self, record: _PairRecord, probes: Mapping[ProbeKind, ProbeView], now: float
    ) -> None:
        planned = record.plan
        old = record.view
        findings: tuple[str, ...] = ()
        if planned.hold is not None:
            state = PairState.UNKNOWN
        else:
            state = overall_state(
                view.state
                for kind, view in probes.items()
                if kind in REACHABILITY_PROBES
            )
            findings = port_findings(
                dict(planned.port_expectations), probes.get(ProbeKind.TCP)
            )
        verdict = combined_verdict(
            verdict_for(planned.expected_reachable, state), findings
        )
        changed = (state, verdict) != (old.state, old.verdict)
        record.view = replace(
            old,
            expected_reachable=planned.expected_reachable,
            basis=planned.basis,
            hold=planned.hold,
            port_findings=findings,
            dns_findings=dns_findings(planned.resolves, probes.get(ProbeKind.DNS)),
            names_resolve=planned.resolves,
            http_findings=http_findings(probes.get(ProbeKind.HTTP)),
            state=state,
            verdict=verdict,
            since=now if changed else old.since,
            changes=old.changes + (1 if changed else 0),
            probes=MappingProxyType(dict(probes)),
        )
        if changed:
            # A pair's first measurement is not news; the round summary says it.
            first = old.state is PairState.UNKNOWN and old.changes == 0
            emit = log.debug if first else log.info
            emit(
                "matrix.pair_changed",
                src=self._name(planned.src),
                dst=self._name(planned.dst),
                state=str(state),
                previous_state=str(old.state),
                verdict=str(verdict),
                previous_verdict=str(old.verdict),
                expected_reachable=planned.expected_reachable,
                reason=_first_reason(probes),
                findings=list(findings) or None,
            )

    def _name(self, container_id: str) -> str:
        info = self._containers.get(container_id)
        return info.name if info else container_id[:12]


def _remeasuring(view: ProbeView, now: float) -> ProbeView:
    """A probe's view emptied of measurements, keeping its counters."""
    return replace(
        view,
        state=PairState.UNKNOWN,
        since=now,
        changes=view.changes + (view.state is not PairState.UNKNOWN),
        results=(),
        reason=None,
        detail="measuring again after a topology change",
        loss_ratio=None,
        window_sent=0,
        window_received=0,
        rtt_min_s=None,
        rtt_avg_s=None,
        rtt_max_s=None,
    )


def _first_reason(probes: Mapping[ProbeKind, ProbeView]) -> str | None:
    for view in probes.values():
        if view.reason is not None:
            return f"{view.probe}: {view.reason} ({view.detail})"
    return None
