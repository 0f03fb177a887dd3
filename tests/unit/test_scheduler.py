"""Which sources a new plan makes probe again at once, and what the
scheduler lets go of when a container goes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

from prometheus_client import CollectorRegistry

from netwatch.config import MatrixSettings, ProbeSettings
from netwatch.containers import ContainerInfo
from netwatch.matrix import ReachabilityMatrix
from netwatch.metrics import SelfMetrics
from netwatch.pairs import Tiering, plan_pairs, tier_plan
from netwatch.probes.outcome import ProbeRequest, ProbeResult
from netwatch.scheduler import Scheduler, changed_sources
from tests.factories import attachment, container

WEB = container("web", attachment("front", "10.0.0.2"), attachment("back", "10.1.0.2"))
API = container("api", attachment("back", "10.1.0.3"))
DB = container("db", attachment("data", "10.2.0.4"))


def test_a_new_container_makes_no_source_probe_early():
    """Adding a destination changes no existing pair: nobody is nudged."""
    before = plan_pairs([WEB, API], max_ports=8)

    after = plan_pairs([WEB, API, DB], max_ports=8)

    assert changed_sources(before, after) == set()


def test_a_network_change_makes_the_affected_sources_probe_early():
    """Disconnecting web from back changes web<->api both ways."""
    before = plan_pairs([WEB, API, DB], max_ports=8)
    web_alone = container("web", attachment("front", "10.0.0.2"))

    after = plan_pairs([web_alone, API, DB], max_ports=8)

    assert changed_sources(before, after) == {WEB.id, API.id}


def lab(containers_per_network: int, networks: int) -> list:  # type: ignore[type-arg]
    return [
        container(f"c{n}-{i}", attachment(f"net{n}", f"10.{n}.0.{i + 2}"))
        for n in range(networks)
        for i in range(containers_per_network)
    ]


def test_a_plan_within_budget_is_left_whole():
    """Below max_pairs, tiering changes nothing."""
    plan = plan_pairs(lab(3, 2), max_ports=8)

    tiered, left_out = tier_plan(plan, Tiering(max_pairs=100, isolation_sample=1))

    assert tiered == plan
    assert left_out == 0


def test_tiering_keeps_the_mesh_and_a_few_isolation_checks_per_source():
    """Every pair sharing a network is kept; each source keeps the sample of
    isolation checks asked for."""
    plan = plan_pairs(lab(4, 3), max_ports=8)  # 12 containers, 132 pairs

    tiered, left_out = tier_plan(plan, Tiering(max_pairs=60, isolation_sample=2))

    mesh = [p for p in plan.pairs.values() if p.expected_reachable]
    assert all((p.src, p.dst) in tiered.pairs for p in mesh)
    for pairs in tiered.by_source.values():
        assert sum(1 for p in pairs if not p.expected_reachable) == 2
    assert left_out == plan.count - tiered.count == tiered.sampled_out
    assert tiered.count == len(mesh) + 2 * 12


def test_the_sample_is_stable_and_moves_with_the_salt():
    """Same containers and salt, same sample; another salt, another one."""
    containers = lab(4, 3)
    plan = plan_pairs(containers, max_ports=8)

    first, _ = tier_plan(plan, Tiering(max_pairs=60, isolation_sample=2, salt=1))
    again, _ = tier_plan(
        plan_pairs(list(reversed(containers)), max_ports=8),
        Tiering(max_pairs=60, isolation_sample=2, salt=1),
    )
    rotated, _ = tier_plan(plan, Tiering(max_pairs=60, isolation_sample=2, salt=2))

    assert set(first.pairs) == set(again.pairs)
    assert set(first.pairs) != set(rotated.pairs)


def test_a_mesh_over_budget_is_shared_out_per_source():
    """When even the mesh exceeds the budget, each source keeps its share."""
    plan = plan_pairs(lab(10, 1), max_ports=8)  # 90 pairs, all in one network

    tiered, left_out = tier_plan(plan, Tiering(max_pairs=30, isolation_sample=2))

    assert all(len(pairs) == 3 for pairs in tiered.by_source.values())
    assert left_out == 60


class ForgetfulEngine:
    """An engine that measures nothing, taking `run_s` to do so, and notes
    what it is told to forget."""

    name = "exec"

    def __init__(self, run_s: float = 0.0) -> None:
        self.forgotten: list[str] = []
        self._run_s = run_s

    async def probe_source(
        self, src: ContainerInfo, requests: Sequence[ProbeRequest]
    ) -> list[ProbeResult]:
        await asyncio.sleep(self._run_s)
        return []

    def forget(self, container_id: str) -> None:
        self.forgotten.append(container_id)


async def adopt(scheduler: Scheduler, *containers: ContainerInfo) -> None:
    scheduler.update(plan_pairs(containers, max_ports=8), {c.id: c for c in containers})
    await asyncio.sleep(0)


async def test_a_container_removed_while_paused_is_forgotten():
    """A paused source has no loop; once removed, the engine still forgets
    it, and the source gauge counts the loops running."""
    engine = ForgetfulEngine()
    registry = CollectorRegistry()
    scheduler = Scheduler(
        engine,
        ReachabilityMatrix(MatrixSettings()),
        ProbeSettings(),
        metrics=SelfMetrics(registry),
    )
    running = asyncio.create_task(scheduler.run())
    await asyncio.sleep(0)

    await adopt(scheduler, WEB, API, DB)
    await adopt(scheduler, WEB, API, replace(DB, paused=True))
    paused_sources = registry.get_sample_value("netwatch_scheduler_sources")
    await adopt(scheduler, WEB, API)
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)

    assert engine.forgotten == [DB.id]
    assert paused_sources == 2
    assert registry.get_sample_value("netwatch_scheduler_sources") == 2


def quick_settings(interval: float) -> ProbeSettings:
    """Default probe settings with every kind's interval shortened (unchecked:
    nothing is measured here, so no tool's timing must fit in it)."""
    settings = ProbeSettings()
    return settings.model_copy(
        update={
            kind: getattr(settings, kind).model_copy(update={"interval": interval})
            for kind in ("ping", "tcp")
        }
    )


async def test_rounds_complete_while_changes_nudge_the_sources_all_the_time():
    """A host whose containers change faster than a run takes nudges its
    sources run after run; the early runs stand for the rounds due, so full
    rounds still complete (the stalled alert stays quiet)."""
    registry = CollectorRegistry()
    scheduler = Scheduler(
        # Each run outlasts the changes' spacing: a nudge always waits.
        ForgetfulEngine(run_s=0.3),
        ReachabilityMatrix(MatrixSettings()),
        quick_settings(0.4),
        metrics=SelfMetrics(registry),
    )
    running = asyncio.create_task(scheduler.run())
    await asyncio.sleep(0)

    for flip in range(30):
        # DB paused, then not: WEB's and API's pairs to it change each time.
        await adopt(scheduler, WEB, API, replace(DB, paused=flip % 2 == 1))
        await asyncio.sleep(0.15)
    rounds = {kind: scheduler.rounds_completed(kind) for kind in scheduler.kinds}
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)

    # Without the early runs standing for their rounds, none completes at all;
    # how many do depends on how busy the machine is.
    assert all(completed >= 1 for completed in rounds.values()), rounds
