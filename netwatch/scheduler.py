"""The scheduler: when each source container runs its probes.

One task per source container, all owned by one TaskGroup. Each probe kind
has its own interval; a kind's round r starts at `epoch + r * interval`, and a
source runs at a fixed offset into the round (derived from its id, so a batch
of new containers spreads out) plus a little jitter. Kinds due together share
one exec. Every run finishes before its interval ends (the config checks the
deadlines). A removed container's task is cancelled at once, and a source
whose targets changed runs early, so the matrix follows the topology within
seconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from netwatch.config import ProbeSettings
from netwatch.containers import ContainerInfo
from netwatch.matrix import ReachabilityMatrix
from netwatch.metrics import SelfMetrics
from netwatch.pairs import PairPlan, PlannedPair
from netwatch.probes.outcome import (
    ProbeKind,
    ProbeRequest,
    ProbeResult,
    Reason,
    first_line,
    unmeasured,
)

log = structlog.get_logger("netwatch.scheduler")

# Sources start within the first half of a round, leaving the second half
# for their runs to finish.
_SPREAD = 0.5
# Kinds due within this many seconds of each other share one exec.
_COALESCE_S = 0.5
# A change of targets waits this long for more changes before the early run.
_NUDGE_DEBOUNCE_S = 0.5
# Rounds still incomplete after this many intervals are given up.
_ROUND_EXPIRY = 3


class ProbeEngine(Protocol):
    """What the scheduler needs of an engine (exec, or netns with exec as
    its fallback)."""

    name: str

    async def probe_source(
        self, src: ContainerInfo, requests: Sequence[ProbeRequest]
    ) -> list[ProbeResult]:
        """One result per request, whatever happens; never raises for a
        probe that could not measure."""

    def forget(self, container_id: str) -> None:
        """Drops what the engine remembers of a container."""


def enabled_kinds(
    settings: ProbeSettings, engine: str = "exec"
) -> dict[ProbeKind, float]:
    """Each enabled probe kind with its interval. DNS and HTTP run from
    namespace sockets only: with the exec engine they are left out."""
    kinds: dict[ProbeKind, float] = {}
    if settings.ping.enabled:
        kinds[ProbeKind.PING] = settings.ping.interval
    if settings.tcp.enabled:
        kinds[ProbeKind.TCP] = settings.tcp.interval
    if engine == "netns":
        if settings.dns.enabled:
            kinds[ProbeKind.DNS] = settings.dns.interval
        if settings.http.enabled:
            kinds[ProbeKind.HTTP] = settings.http.interval
    return kinds


def requests_for(
    pairs: Iterable[PlannedPair], kinds: Iterable[ProbeKind]
) -> list[ProbeRequest]:
    """What one run measures: every target of every pair, per kind."""
    wanted = set(kinds)
    requests: list[ProbeRequest] = []
    for pair in pairs:
        if pair.hold is not None:
            continue
        for target in pair.targets:
            if ProbeKind.PING in wanted:
                requests.append(
                    ProbeRequest(
                        ProbeKind.PING, pair.dst, target.address, target.network
                    )
                )
            if ProbeKind.TCP in wanted:
                requests.extend(
                    ProbeRequest(
                        ProbeKind.TCP, pair.dst, target.address, target.network, port
                    )
                    for port in pair.ports
                )
        if ProbeKind.DNS in wanted:
            requests.extend(
                ProbeRequest(ProbeKind.DNS, pair.dst, name, None) for name in pair.names
            )
        if ProbeKind.HTTP in wanted and pair.http is not None and pair.targets:
            target = pair.targets[0]
            port, path = pair.http
            requests.append(
                ProbeRequest(
                    ProbeKind.HTTP, pair.dst, target.address, target.network, port, path
                )
            )
    return requests


def record_results(
    matrix: ReachabilityMatrix,
    src: str,
    kinds: Iterable[ProbeKind],
    results: Sequence[ProbeResult],
    started_at: float,
) -> None:
    """Hands one run's results to the matrix, kind by kind."""
    for kind in kinds:
        matrix.record(src, kind, [r for r in results if r.probe is kind], started_at)


async def measure(
    engine: ProbeEngine, src: ContainerInfo, requests: list[ProbeRequest]
) -> list[ProbeResult]:
    """The engine's results, or, should the engine itself fail (a bug),
    every request marked as not measured with the reason: never nothing."""
    try:
        return await engine.probe_source(src, requests)
    except Exception as exc:
        log.exception("scheduler.run_failed", src=src.name)
        detail = first_line(f"netwatch failed to probe: {type(exc).__name__}: {exc}")
        return [unmeasured(src.id, r, Reason.EXEC_FAILED, detail) for r in requests]


async def probe_once(
    engine: ProbeEngine,
    matrix: ReachabilityMatrix,
    plan: PairPlan,
    containers: Mapping[str, ContainerInfo],
    kinds: Iterable[ProbeKind],
) -> None:
    """One full round of every kind from every source, as `netwatch matrix`
    runs it; the engine's semaphore bounds the execs."""
    kinds = list(kinds)

    async def one(src_id: str, pairs: tuple[PlannedPair, ...]) -> None:
        started_at = time.time()
        results = await measure(engine, containers[src_id], requests_for(pairs, kinds))
        record_results(matrix, src_id, kinds, results, started_at)

    async with asyncio.TaskGroup() as tasks:
        for src_id, pairs in plan.by_source.items():
            tasks.create_task(one(src_id, pairs))


def changed_sources(previous: PairPlan, plan: PairPlan) -> set[str]:
    """Sources with a pair in both plans whose targets or expectation differ."""
    changed = set()
    for key, pair in plan.pairs.items():
        before = previous.pairs.get(key)
        if before is None:
            continue
        if (before.targets, before.expected_reachable, before.hold) != (
            pair.targets,
            pair.expected_reachable,
            pair.hold,
        ):
            changed.add(pair.src)
    return changed


def _offset_fraction(container_id: str) -> float:
    digest = hashlib.sha256(container_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass
class _Round:
    started: float
    pending: set[str]


@dataclass
class _RoundTracker:
    """Notices when every source asked in a round has reported."""

    kind: ProbeKind
    interval: float
    rounds: dict[int, _Round] = field(default_factory=dict)
    completed: int = 0
    last_completed_at: float | None = None


class Scheduler:
    """Runs every source's probes on time and feeds the matrix."""

    def __init__(
        self,
        engine: ProbeEngine,
        matrix: ReachabilityMatrix,
        settings: ProbeSettings,
        *,
        metrics: SelfMetrics,
        on_round: Callable[[ProbeKind, int], None] | None = None,
    ) -> None:
        self._engine = engine
        self._matrix = matrix
        self._settings = settings
        self._metrics = metrics
        self._on_round = on_round
        self._kinds = enabled_kinds(settings, engine.name)
        # Round 0 of every kind starts with the first plan.
        self._epoch = 0.0
        self._planned = asyncio.Event()
        self._draining = False
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._plan: PairPlan | None = None
        self._containers: Mapping[str, ContainerInfo] = {}
        # Every container the engine may remember something of.
        self._known: set[str] = set()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._nudges: dict[str, asyncio.Event] = {}
        self._trackers = {
            kind: _RoundTracker(kind, interval)
            for kind, interval in self._kinds.items()
        }
        self._group: asyncio.TaskGroup | None = None
        self._started = asyncio.Event()

    @property
    def kinds(self) -> Mapping[ProbeKind, float]:
        return self._kinds

    def rounds_completed(self, kind: ProbeKind) -> int:
        return self._trackers[kind].completed

    def last_rounds(self) -> dict[ProbeKind, tuple[float, float | None]]:
        """Per kind: its interval, and when its last full round completed."""
        return {
            kind: (tracker.interval, tracker.last_completed_at)
            for kind, tracker in self._trackers.items()
        }

    def all_kinds_completed_a_round(self) -> bool:
        return all(tracker.completed > 0 for tracker in self._trackers.values())

    async def run(self) -> None:
        """Runs until cancelled; sources come and go through `update`."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            self._started.set()
            if self._plan is not None:
                self._reconcile()
            for tracker in self._trackers.values():
                group.create_task(self._tick(tracker))
            await asyncio.Future()  # until cancelled

    def update(self, plan: PairPlan, containers: Mapping[str, ContainerInfo]) -> None:
        """Adopts a new plan: stops gone sources, starts new ones, and runs
        early the sources whose existing pairs changed (a network connected
        or disconnected). New destinations wait for the next round: a batch
        of new containers must not make every source probe again at once."""
        previous = self._plan
        self._plan = plan
        self._containers = containers
        if not self._planned.is_set():
            self._epoch = time.time()
            self._planned.set()
        if self._group is None or self._draining:
            return
        self._reconcile()
        if previous is not None:
            for src in changed_sources(previous, plan):
                if src in self._nudges:
                    self._nudges[src].set()

    def _reconcile(self) -> None:
        assert self._plan is not None
        assert self._group is not None
        wanted = {
            src
            for src, info in self._containers.items()
            if src in self._plan.by_source and not info.paused
        }
        for src in list(self._tasks):
            if src not in wanted:
                self._tasks.pop(src).cancel()
                self._nudges.pop(src, None)
                for tracker in self._trackers.values():
                    self._discard(tracker, src)
        # Also a container that went while paused: it had no task by then.
        for gone in self._known - set(self._containers):
            self._engine.forget(gone)
        self._known = set(self._containers)
        for src in sorted(wanted - set(self._tasks)):
            self._nudges[src] = asyncio.Event()
            self._tasks[src] = self._group.create_task(self._source_loop(src))
        self._metrics.sources.set(len(self._tasks))

    async def drain(self, within_s: float) -> None:
        """Starts no more runs, and waits for the runs under way to end, so
        that no exec outlives netwatch."""
        self._draining = True
        try:
            async with asyncio.timeout(within_s):
                await self._idle.wait()
        except TimeoutError:
            log.warning("scheduler.drain_timeout", runs=self._inflight)

    async def _tick(self, tracker: _RoundTracker) -> None:
        """Opens each round of one kind, listing the sources it expects."""
        await self._planned.wait()
        interval = tracker.interval
        index = 0
        while True:
            await asyncio.sleep(max(0.0, self._epoch + index * interval - time.time()))
            tracker.rounds[index] = _Round(
                started=self._epoch + index * interval, pending=set(self._tasks)
            )
            for old in [r for r in tracker.rounds if r <= index - _ROUND_EXPIRY]:
                del tracker.rounds[old]
                self._metrics.errors.labels(kind="round_incomplete").inc()
            self._check_round(tracker, index)
            index += 1

    def _discard(self, tracker: _RoundTracker, src: str) -> None:
        for index in list(tracker.rounds):
            tracker.rounds[index].pending.discard(src)
            self._check_round(tracker, index)

    def _report(self, tracker: _RoundTracker, index: int, src: str) -> None:
        for earlier in [r for r in tracker.rounds if r <= index]:
            tracker.rounds[earlier].pending.discard(src)
            self._check_round(tracker, earlier)

    def _check_round(self, tracker: _RoundTracker, index: int) -> None:
        current = tracker.rounds.get(index)
        if current is None or current.pending:
            return
        del tracker.rounds[index]
        tracker.completed += 1
        tracker.last_completed_at = time.time()
        kind = tracker.kind.value
        self._metrics.rounds.labels(probe=kind).inc()
        self._metrics.round_duration.labels(probe=kind).observe(
            time.time() - current.started
        )
        self._metrics.last_round.labels(probe=kind).set(time.time())
        if self._on_round is not None:
            self._on_round(tracker.kind, tracker.completed)

    def _slot(self, kind: ProbeKind, index: int, offset: float) -> float:
        return self._epoch + index * self._kinds[kind] + offset

    async def _source_loop(self, src: str) -> None:
        shortest = min(self._kinds.values())
        offset = _offset_fraction(src) * shortest * _SPREAD
        now = time.time()
        # Start with the next round whose slot for this source is ahead.
        next_index = {
            kind: int((now - offset - self._epoch) // interval) + 1
            for kind, interval in self._kinds.items()
        }
        nudge = self._nudges[src]
        while True:
            slots = {
                kind: self._slot(kind, i, offset) for kind, i in next_index.items()
            }
            wake = min(slots.values())
            jitter = random.uniform(0, self._settings.jitter * shortest * _SPREAD)
            try:
                async with asyncio.timeout(max(0.0, wake + jitter - time.time())):
                    await nudge.wait()
            except TimeoutError:
                pass

            if self._draining:
                return
            nudged = nudge.is_set()
            if nudged:
                await asyncio.sleep(_NUDGE_DEBOUNCE_S)
                nudge.clear()
            started = time.time()
            due = [
                kind for kind, slot in slots.items() if slot <= started + _COALESCE_S
            ]
            if nudged:
                # The early run measures every kind, and stands for the rounds
                # already due: a source nudged run after run (on a host whose
                # containers change all the time) still completes its rounds.
                await self._run(src, list(self._kinds))
            else:
                self._metrics.lag.observe(
                    max(0.0, started - min(slots[k] for k in due))
                )
                await self._run(src, due)
            for kind in due:
                self._report(self._trackers[kind], next_index[kind], src)
                # Skip the rounds a slow run overlapped, if any.
                interval = self._kinds[kind]
                behind = int((time.time() - offset - self._epoch) // interval) + 1
                next_index[kind] = max(next_index[kind] + 1, behind)

    async def _run(self, src: str, kinds: list[ProbeKind]) -> None:
        plan = self._plan
        info = self._containers.get(src)
        if plan is None or info is None:
            return
        pairs = plan.by_source.get(src, ())
        if self._draining:
            return
        self._inflight += 1
        self._idle.clear()
        started_at = time.time()
        try:
            results = await measure(self._engine, info, requests_for(pairs, kinds))
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()
        record_results(self._matrix, src, kinds, results, started_at)
