"""One full round, outside the daemon: what `netwatch matrix` runs."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from netwatch.config import Config
from netwatch.discovery import Discovery, own_container_id
from netwatch.docker_api import DockerClient
from netwatch.matrix import MatrixSnapshot, ReachabilityMatrix
from netwatch.metrics import SelfMetrics
from netwatch.pairs import plan_pairs
from netwatch.probes.exec_engine import ExecEngine
from netwatch.scheduler import enabled_kinds, probe_once


async def one_round(config: Config) -> MatrixSnapshot:
    """Discovers the containers, probes every pair once, returns the matrix.

    Raises DockerError when the engine cannot be used.
    """
    metrics = SelfMetrics(CollectorRegistry(auto_describe=False))
    async with DockerClient(
        config.docker.host,
        config.docker.request_timeout,
        exec_start_concurrency=config.docker.exec_concurrency,
    ) as client:
        await client.version()
        discovery = Discovery(
            client,
            config.discovery,
            metrics=metrics,
            on_change=lambda: None,
            self_id=own_container_id(),
        )
        await discovery.refresh_all()
        monitored = discovery.monitored()
        plan = plan_pairs(
            monitored.values(),
            max_ports=config.probes.tcp.max_ports,
            every=discovery.containers.values(),
        )
        matrix = ReachabilityMatrix(config.matrix)
        matrix.set_plan(plan, monitored)
        engine = ExecEngine(
            client,
            config.probes,
            metrics=metrics,
        )
        await probe_once(engine, matrix, plan, monitored, enabled_kinds(config.probes))
        return matrix.snapshot()
