"""One look, outside the daemon: what `netwatch matrix` and `netwatch policy
show` run."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from prometheus_client import CollectorRegistry

from netwatch.bandwidth import BandwidthResult, BandwidthSampler
from netwatch.config import Config
from netwatch.containers import ContainerInfo
from netwatch.discovery import Discovery, own_container_id
from netwatch.docker_api import DockerClient
from netwatch.matrix import MatrixSnapshot, ReachabilityMatrix
from netwatch.metrics import SelfMetrics
from netwatch.netstat import read_all
from netwatch.pairs import PairPlan, hold_pairs, plan_pairs
from netwatch.policy import Policy
from netwatch.probes.engines import (
    choose_engine,
    close_engine,
    exec_engine_of,
    netns_engine_of,
)
from netwatch.scheduler import enabled_kinds, probe_once


def _client(config: Config) -> DockerClient:
    return DockerClient(
        config.docker.host,
        config.docker.request_timeout,
        exec_start_concurrency=config.docker.exec_concurrency,
    )


async def _plan(
    discovery: Discovery, config: Config, policy: Policy | None
) -> tuple[PairPlan, Mapping[str, ContainerInfo]]:
    await discovery.refresh_all()
    monitored = discovery.monitored()
    # Listening ports are TCP targets, as in the daemon.
    netstats = await asyncio.to_thread(read_all, monitored)
    plan = plan_pairs(
        monitored.values(),
        max_ports=config.probes.tcp.max_ports,
        every=discovery.containers.values(),
        policy=policy,
        listening={cid: stat.listening for cid, stat in netstats.items()},
        max_names=config.probes.dns.max_names,
    )
    return plan, monitored


async def expectations(
    config: Config, policy: Policy | None
) -> tuple[PairPlan, Mapping[str, ContainerInfo]]:
    """The plan, with the policy applied, without probing anything.

    Raises DockerError when the engine cannot be used.
    """
    async with _client(config) as client:
        return await _plan(_discovery(client, config), config, policy)


async def one_round(
    config: Config, policy: Policy | None = None
) -> tuple[MatrixSnapshot, str, str]:
    """Discovers the containers, probes every pair once; the matrix, the
    probe engine that ran, and why that one.

    Raises DockerError when the engine cannot be used.
    """
    async with _client(config) as client:
        discovery = _discovery(client, config)
        plan, monitored = await _plan(discovery, config, policy)
        matrix = ReachabilityMatrix(config.matrix)
        matrix.set_plan(plan, monitored)
        engine, why = choose_engine(config.probes, client, discovery.metrics)
        try:
            kinds = enabled_kinds(config.probes, engine.name)
            await probe_once(engine, matrix, plan, monitored, kinds)
        finally:
            await close_engine(engine)

        # A container that stopped during the round is not a network fault:
        # its pairs are shown as not measured, whatever the probes saw.
        await discovery.refresh_all()
        now = discovery.containers
        changed = {
            container_id
            for container_id, info in monitored.items()
            if container_id not in now
            or now[container_id].paused != info.paused
            or now[container_id].started_at != info.started_at
        }
        if changed:
            reason = "a container stopped, restarted or paused during the round"
            plan = hold_pairs(plan, changed, reason)
        matrix.set_plan(plan, monitored)
        return matrix.snapshot(), engine.name, why


def _discovery(client: DockerClient, config: Config) -> Discovery:
    return Discovery(
        client,
        config.discovery,
        metrics=SelfMetrics(CollectorRegistry(auto_describe=False)),
        on_change=lambda: None,
        self_id=own_container_id(),
    )


def find_container(
    containers: Mapping[str, ContainerInfo], ref: str
) -> ContainerInfo | None:
    """A monitored container by name, full id or id prefix (12+ characters)."""
    for info in containers.values():
        if ref in (info.name, info.id) or (len(ref) >= 12 and info.id.startswith(ref)):
            return info
    return None


async def one_bandwidth_test(
    config: Config, src_ref: str, dst_ref: str
) -> BandwidthResult:
    """One bandwidth test from `src_ref` to `dst_ref`, as the daemon runs it.

    Raises DockerError when the engine cannot be used, LookupError when
    either container is not monitored.
    """
    async with _client(config) as client:
        discovery = _discovery(client, config)
        plan, monitored = await _plan(discovery, config, None)
        src = find_container(monitored, src_ref)
        dst = find_container(monitored, dst_ref)
        for ref, found in ((src_ref, src), (dst_ref, dst)):
            if found is None:
                raise LookupError(f"no monitored container is called {ref!r}")
        assert src is not None
        assert dst is not None
        if src.id == dst.id:
            raise LookupError(f"{src_ref!r} and {dst_ref!r} are the same container")
        engine, _ = choose_engine(config.probes, client, discovery.metrics)
        try:
            sampler = BandwidthSampler(
                config.probes.bandwidth,
                exec_engine=exec_engine_of(engine),
                netns=netns_engine_of(engine),
            )
            sampler.update(plan, monitored)
            return await sampler.measure(src, dst)
        finally:
            await close_engine(engine)
