"""The daemon: wires discovery, the pair plan, the scheduler, the matrix and
the HTTP server together, and stops them cleanly.

Data flows one way: discovery notices a change, the plan is made again, the
matrix and the scheduler adopt it; the scheduler's results go to the matrix;
metrics and the API read snapshots of the matrix.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Mapping

import structlog
from prometheus_client import CollectorRegistry

from netwatch.alerts.rules import Health
from netwatch.alerts.service import AlertService, LifecycleClock, default_external_url
from netwatch.bandwidth import BandwidthResult, BandwidthSampler
from netwatch.config import Config
from netwatch.containers import ContainerInfo
from netwatch.discovery import Discovery, own_container_id
from netwatch.docker_api import DockerClient
from netwatch.errors import ListenError
from netwatch.matrix import MatrixSnapshot, ReachabilityMatrix
from netwatch.metrics import BandwidthCollector, SelfMetrics
from netwatch.netstat import Netstat, read_all
from netwatch.pairs import Tiering, plan_pairs, tier_plan
from netwatch.policy import Policy
from netwatch.probes.engines import (
    choose_engine,
    close_engine,
    exec_engine_of,
    netns_engine_of,
)
from netwatch.probes.outcome import ProbeKind
from netwatch.scheduler import Scheduler
from netwatch.web import WebSources, bound_port, build_app, start_server

log = structlog.get_logger("netwatch.daemon")

# A burst of engine events is folded into one new plan.
_REPLAN_DEBOUNCE_S = 0.2
# Runs under way at shutdown are waited for this long at most: a run never
# takes longer than its tools' deadlines and the watchdog.
_DRAIN_TIMEOUT_S = 6.0


class Daemon:
    def __init__(self, config: Config, policy: Policy | None = None) -> None:
        self.config = config
        self.policy = policy
        self.started_at = time.time()
        self.lifecycle = LifecycleClock()
        self.alerts: AlertService | None = None
        self.netstats: dict[str, Netstat] = {}
        self._salt: int | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.metrics = SelfMetrics(self.registry)
        self.matrix = ReachabilityMatrix(config.matrix)
        self._changed = asyncio.Event()
        self._stop = asyncio.Event()
        self._scheduler: Scheduler | None = None
        self._discovery: Discovery | None = None
        self.bandwidth: BandwidthSampler | None = None
        self.port: int | None = None
        self.started = asyncio.Event()
        self.metrics.ready.set_function(lambda: 1.0 if self.ready() else 0.0)

    def ready(self) -> bool:
        """After the first full round, and while the engine answers."""
        return (
            self._discovery is not None
            and self._discovery.engine_up is True
            and self._scheduler is not None
            and self._scheduler.all_kinds_completed_a_round()
        )

    def stop(self) -> None:
        self._stop.set()

    def _alert_documents(self) -> list[dict[str, object]]:
        return self.alerts.documents() if self.alerts is not None else []

    def _health(self) -> Health:
        scheduler = self._scheduler
        return Health(
            now=time.time(),
            engine_up=self._discovery is not None
            and self._discovery.engine_up is not False,
            engine_down_since=None,
            last_round=scheduler.last_rounds() if scheduler is not None else {},
            started_at=self.started_at,
        )

    async def run(self) -> None:
        """Runs until `stop()` or SIGTERM/SIGINT."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            # Outside the main thread (tests) there are no handlers: stop() works.
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, self.stop)

        config = self.config
        host, port = config.http.host_and_port
        app = build_app(
            WebSources(
                self.matrix.snapshot,
                self.ready,
                self.registry,
                self._alert_documents,
                policy=self.policy.source if self.policy else None,
                netstats=self._netstat_view,
                # A pair measured within two rounds of its slowest probe.
                coverage_window_s=2
                * max(config.probes.ping.interval, config.probes.tcp.interval),
                buckets_max_pairs=config.metrics.latency_buckets_max_pairs,
            )
        )
        try:
            runner = await start_server(app, host, port)
        except OSError as exc:
            raise ListenError(
                f"cannot listen on {config.http.listen}: {exc.strerror or exc}; "
                "choose another address with --listen or http.listen"
            ) from exc
        self.port = bound_port(runner)
        shown_host = f"[{host}]" if host and ":" in host else (host or "*")
        log.info("daemon.listening", address=f"{shown_host}:{self.port}")
        if config.alerts.enabled:
            self.alerts = AlertService(
                config.alerts,
                snapshot=self.matrix.snapshot,
                health=self._health,
                lifecycle=self.lifecycle,
                metrics=self.metrics,
                external_url=config.alerts.external_url
                or default_external_url(self.port),
            )
        try:
            async with DockerClient(
                config.docker.host,
                config.docker.request_timeout,
                exec_start_concurrency=config.docker.exec_concurrency,
            ) as client:
                await self._run_with(client)
        finally:
            await runner.cleanup()
            log.info("daemon.stopped")

    async def _run_with(self, client: DockerClient) -> None:
        config = self.config
        self_id = own_container_id()
        engine, why = choose_engine(config.probes, client, self.metrics)
        if config.probes.bandwidth.enabled:
            self.bandwidth = BandwidthSampler(
                config.probes.bandwidth,
                exec_engine=exec_engine_of(engine),
                netns=netns_engine_of(engine),
            )
            self.registry.register(BandwidthCollector(self._bandwidth_view))
        self._scheduler = Scheduler(
            engine,
            self.matrix,
            config.probes,
            metrics=self.metrics,
            on_round=self._on_round,
        )
        self._discovery = Discovery(
            client,
            config.discovery,
            metrics=self.metrics,
            on_change=self._changed.set,
            self_id=self_id,
        )
        log.info(
            "daemon.starting",
            engine=engine.name,
            engine_reason=why,
            docker=client.address,
            own_container=self_id[:12] if self_id else None,
            probes={
                kind.value: interval for kind, interval in self._scheduler.kinds.items()
            },
            bandwidth_interval=config.probes.bandwidth.interval
            if self.bandwidth is not None
            else None,
        )

        async with asyncio.TaskGroup() as tasks:
            workers = [
                tasks.create_task(self._discovery.run()),
                tasks.create_task(self._scheduler.run()),
                tasks.create_task(self._replan()),
                tasks.create_task(self._read_netstats()),
            ]
            if self.alerts is not None:
                workers.append(tasks.create_task(self.alerts.run()))
            if self.bandwidth is not None:
                workers.append(tasks.create_task(self._sample_bandwidth()))
            self.started.set()
            await self._stop.wait()
            log.info("daemon.stopping")
            await self._scheduler.drain(_DRAIN_TIMEOUT_S)
            for worker in workers:
                worker.cancel()
        await close_engine(engine)

    async def _replan(self) -> None:
        assert self._discovery is not None
        assert self._scheduler is not None
        last_counts: tuple[int, int] | None = None
        while True:
            await self._changed.wait()
            await asyncio.sleep(_REPLAN_DEBOUNCE_S)
            self._changed.clear()
            monitored = self._discovery.monitored()
            plan = plan_pairs(
                monitored.values(),
                max_ports=self.config.probes.tcp.max_ports,
                every=self._discovery.containers.values(),
                policy=self.policy,
                listening={cid: n.listening for cid, n in self.netstats.items()},
                max_names=self.config.probes.dns.max_names,
            )
            plan, left_out = tier_plan(plan, self._tiering())
            if left_out:
                log.debug("daemon.plan_tiered", pairs=plan.count, sampled_out=left_out)
            self.lifecycle.observe(monitored, time.time())
            self.matrix.set_plan(plan, monitored)
            self._scheduler.update(plan, monitored)
            if self.bandwidth is not None:
                self.bandwidth.update(plan, monitored)
            counts = (len(monitored), plan.count)
            if counts != last_counts:
                log.info(
                    "daemon.plan_updated",
                    containers=len(monitored),
                    pairs=plan.count,
                    unaddressable=len(plan.unaddressable),
                    sampled_out=plan.sampled_out,
                )
                last_counts = counts

    def _tiering(self) -> Tiering:
        planner = self.config.planner
        return Tiering(
            max_pairs=planner.max_pairs,
            isolation_sample=planner.isolation_sample,
            salt=int(time.time() // planner.rotate_every),
        )

    async def _read_netstats(self) -> None:
        """Every ping interval: each container's interface counters and
        listening ports, from /proc, where its namespace is visible. New
        listening ports make a new plan (they become TCP targets)."""
        assert self._discovery is not None
        while True:
            read = await asyncio.to_thread(read_all, self._discovery.monitored())
            before = {cid: n.listening for cid, n in self.netstats.items()}
            self.netstats = read
            salt = self._tiering().salt
            # New listening ports are new targets; a new salt, a new sample.
            listening = {cid: n.listening for cid, n in read.items()}
            if listening != before or salt != self._salt:
                self._salt = salt
                self._changed.set()
            await asyncio.sleep(self.config.probes.ping.interval)

    async def _sample_bandwidth(self) -> None:
        """Bandwidth batches, the first one interval after the start."""
        assert self.bandwidth is not None
        await asyncio.sleep(self.config.probes.bandwidth.interval)
        await self.bandwidth.run()

    def _bandwidth_view(
        self,
    ) -> tuple[Mapping[tuple[str, str], BandwidthResult], MatrixSnapshot]:
        results = self.bandwidth.results() if self.bandwidth is not None else {}
        return results, self.matrix.snapshot()

    def _netstat_view(
        self,
    ) -> tuple[Mapping[str, Netstat], Mapping[str, ContainerInfo]]:
        return self.netstats, self.matrix.snapshot().containers

    def _on_round(self, kind: ProbeKind, completed: int) -> None:
        if completed == 1:
            counts = self.matrix.snapshot().verdict_counts()
            log.info(
                "daemon.first_round",
                probe=kind.value,
                **{
                    f"pairs_{verdict.value}": count for verdict, count in counts.items()
                },
            )
