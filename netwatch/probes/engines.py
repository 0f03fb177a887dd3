"""Which probe engine runs: namespaces where netwatch may enter them, exec
elsewhere. `choose_engine` decides once at startup and says why."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

from netwatch.config import ProbeSettings
from netwatch.containers import ContainerInfo
from netwatch.docker_api import DockerClient
from netwatch.errors import ConfigError
from netwatch.metrics import SelfMetrics
from netwatch.probes.exec_engine import ExecEngine
from netwatch.probes.netns_engine import NetnsEngine, can_enter_namespaces
from netwatch.probes.outcome import Outcome, ProbeRequest, ProbeResult


class NamespaceFirstEngine:
    """The namespace engine for every source whose namespace netwatch can
    see, the exec engine for the others (a sidecar without `pid: host`)."""

    name = "netns"

    def __init__(self, netns: NetnsEngine, fallback: ExecEngine) -> None:
        self._netns = netns
        self._fallback = fallback

    async def probe_source(
        self, src: ContainerInfo, requests: Sequence[ProbeRequest]
    ) -> list[ProbeResult]:
        if not self._netns.reachable(src):
            return await self._fallback.probe_source(src, requests)
        results, refused = await self._netns.probe(src, requests)
        if not refused:
            return results
        # The namespace refused a kind of socket (ICMP in the host's own
        # namespace, whose ping_group_range leaves netwatch out): the
        # container's own tools may measure what netwatch's sockets cannot.
        retried = {
            _key(result): result
            for result in await self._fallback.probe_source(
                src, [request for request, _ in refused]
            )
        }
        for _, refusal in refused:
            result = retried.get(_key(refusal))
            if result is None or result.outcome is Outcome.UNMEASURED:
                said = result.detail if result is not None else "no result"
                result = replace(refusal, detail=f"{refusal.detail}; by exec: {said}")
            results.append(result)
        return results

    def forget(self, container_id: str) -> None:
        self._fallback.forget(container_id)


def _key(result: ProbeResult) -> tuple[object, ...]:
    """What a result answers: one request of a source's run."""
    return (result.probe, result.dst, result.address, result.network, result.port)


ProbingEngine = ExecEngine | NamespaceFirstEngine


def choose_engine(
    settings: ProbeSettings, client: DockerClient, metrics: SelfMetrics
) -> tuple[ProbingEngine, str]:
    """The engine `probes.engine` asks for, and a sentence saying why.

    Raises ConfigError when `netns` is asked for and cannot work here.
    """
    exec_engine = ExecEngine(client, settings, metrics=metrics)
    if settings.engine == "exec":
        return exec_engine, "probes.engine is exec"
    allowed, why = can_enter_namespaces()
    if not allowed:
        if settings.engine == "netns":
            raise ConfigError([f"probes.engine: netns cannot run here: {why}"])
        return exec_engine, f"namespaces cannot be entered ({why}): exec"
    netns = NetnsEngine(settings, metrics=metrics)
    return (
        NamespaceFirstEngine(netns, exec_engine),
        "setns allowed: probes run from sockets in each container's namespace "
        "(exec only where its namespace is not visible)",
    )


async def close_engine(engine: object) -> None:
    """Stops an engine's worker threads, if it has any."""
    netns = netns_engine_of(engine)
    if netns is not None:
        await asyncio.to_thread(netns.close)


def exec_engine_of(engine: object) -> ExecEngine | None:
    """The exec engine inside `engine` (itself, or a namespace engine's
    fallback)."""
    if isinstance(engine, ExecEngine):
        return engine
    if isinstance(engine, NamespaceFirstEngine):
        return engine._fallback
    return None


def netns_engine_of(engine: object) -> NetnsEngine | None:
    if isinstance(engine, NamespaceFirstEngine):
        return engine._netns
    return None
