"""The daemon: wires discovery, the pair plan, the scheduler, the matrix and
the HTTP server together, reloads its configuration, and stops them cleanly.

Data flows one way: discovery notices a change, the plan is made again, the
matrix and the scheduler adopt it; the scheduler's results go to the matrix;
metrics and the API read snapshots of the matrix.

A reload (SIGHUP or `POST /-/reload`) keeps the matrix, the inventory, the
HTTP server and the alerts that are firing; what the new settings change is
made again (the probing, with its engine and scheduler, when `probes`
changed; the alert service, keeping its alerts, when `alerts` changed).
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
from netwatch.errors import ConfigError, ListenError
from netwatch.logs import configure_logging
from netwatch.matrix import MatrixSnapshot, ReachabilityMatrix
from netwatch.metrics import BandwidthCollector, SelfMetrics
from netwatch.netstat import Netstat, read_all
from netwatch.pairs import Tiering, plan_pairs, tier_plan
from netwatch.policy import Policy
from netwatch.probes.engines import (
    ProbingEngine,
    choose_engine,
    close_engine,
    exec_engine_of,
    netns_engine_of,
)
from netwatch.probes.outcome import ProbeKind
from netwatch.reload import ConfigSource, ReloadOutcome, merge_reloaded
from netwatch.scheduler import Scheduler
from netwatch.web import (
    ExpositionSettings,
    WebSources,
    bound_port,
    build_app,
    start_server,
)
from netwatch.webconfig import WebGuard, load_web_config

log = structlog.get_logger("netwatch.daemon")

# A burst of engine events is folded into one new plan.
_REPLAN_DEBOUNCE_S = 0.2
# Runs under way at shutdown are waited for this long at most: a run never
# takes longer than its tools' deadlines and the watchdog.
_DRAIN_TIMEOUT_S = 6.0


class Daemon:
    def __init__(
        self,
        config: Config,
        policy: Policy | None = None,
        *,
        reload_from: ConfigSource | None = None,
    ) -> None:
        self.config = config
        self.policy = policy
        self._reload_from = reload_from
        self._reload_lock = asyncio.Lock()
        self._reload_asked = asyncio.Event()
        self.started_at = time.time()
        # When the running scheduler started: a reload's new one has no
        # rounds yet, and is not stalled for that.
        self._probing_since = self.started_at
        self._full_round = False
        self._first_rounds: set[ProbeKind] = set()
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
        self._engine: ProbingEngine | None = None
        self._probing: list[asyncio.Task[None]] = []
        self._alerting: asyncio.Task[None] | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._client: DockerClient | None = None
        self._discovery: Discovery | None = None
        self.bandwidth: BandwidthSampler | None = None
        self._bandwidth_exported = False
        self.port: int | None = None
        self.web_guard: WebGuard | None = None
        self.started = asyncio.Event()
        self.metrics.ready.set_function(lambda: 1.0 if self.ready() else 0.0)

    def ready(self) -> bool:
        """After the first full round, and while the engine answers."""
        return (
            self._discovery is not None
            and self._discovery.engine_up is True
            and self._full_round
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
            started_at=self._probing_since,
        )

    def _exposition(self) -> ExpositionSettings:
        probes = self.config.probes
        return ExpositionSettings(
            # A pair measured within two rounds of its slowest probe.
            coverage_window_s=2 * max(probes.ping.interval, probes.tcp.interval),
            buckets_max_pairs=self.config.metrics.latency_buckets_max_pairs,
        )

    def _policy_source(self) -> str | None:
        return self.policy.source if self.policy is not None else None

    async def run(self) -> None:
        """Runs until `stop()` or SIGTERM/SIGINT."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            # Outside the main thread (tests) there are no handlers: stop() works.
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, self.stop)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, self._reload_asked.set)

        config = self.config
        host, port = config.http.host_and_port
        # A broken web configuration stops the start here, before anything runs.
        if config.http.web_config_file is not None:
            self.web_guard = WebGuard(load_web_config(config.http.web_config_file))
        app = build_app(
            WebSources(
                self.matrix.snapshot,
                self.ready,
                self.registry,
                self._alert_documents,
                policy=self._policy_source,
                netstats=self._netstat_view,
                exposition=self._exposition,
                reload=self.reload if self._reload_from is not None else None,
            ),
            guard=self.web_guard,
        )
        try:
            tls = self.web_guard.ssl_context if self.web_guard else None
            runner = await start_server(app, host, port, ssl_context=tls)
        except OSError as exc:
            raise ListenError(
                f"cannot listen on {config.http.listen}: {exc.strerror or exc}; "
                "choose another address with --listen or http.listen"
            ) from exc
        self.port = bound_port(runner)
        shown_host = f"[{host}]" if host and ":" in host else (host or "*")
        log.info("daemon.listening", address=f"{shown_host}:{self.port}")
        try:
            async with DockerClient(
                config.docker.host,
                config.docker.request_timeout,
                exec_start_concurrency=config.docker.exec_concurrency,
            ) as client:
                self._client = client
                await self._run_with(client)
        finally:
            await runner.cleanup()
            log.info("daemon.stopped")

    async def _run_with(self, client: DockerClient) -> None:
        config = self.config
        self_id = own_container_id()
        why = self._make_probing()
        assert self._engine is not None
        assert self._scheduler is not None
        self._discovery = Discovery(
            client,
            config.discovery,
            metrics=self.metrics,
            on_change=self._changed.set,
            self_id=self_id,
        )
        log.info(
            "daemon.starting",
            engine=self._engine.name,
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
            self._tasks = tasks
            workers = [
                tasks.create_task(self._discovery.run()),
                tasks.create_task(self._replan()),
                tasks.create_task(self._read_netstats()),
                tasks.create_task(self._reload_on_signal()),
            ]
            self._start_probing()
            self._start_alerts()
            self.started.set()
            await self._stop.wait()
            log.info("daemon.stopping")
            # A reload under way finishes first: it may be starting probes.
            async with self._reload_lock:
                await self._stop_probing()
                self._stop_alerts()
            for worker in workers:
                worker.cancel()

    def _make_probing(self) -> str:
        """The probe engine, the scheduler and the bandwidth sampler for the
        current settings; returns why this engine runs."""
        assert self._client is not None
        probes = self.config.probes
        engine, why = choose_engine(probes, self._client, self.metrics)
        self._engine = engine
        self.bandwidth = None
        if probes.bandwidth.enabled:
            self.bandwidth = BandwidthSampler(
                probes.bandwidth,
                exec_engine=exec_engine_of(engine),
                netns=netns_engine_of(engine),
            )
            if not self._bandwidth_exported:
                self.registry.register(BandwidthCollector(self._bandwidth_view))
                self._bandwidth_exported = True
        self._scheduler = Scheduler(
            engine,
            self.matrix,
            probes,
            metrics=self.metrics,
            on_round=self._on_round,
        )
        return why

    def _start_probing(self) -> None:
        assert self._tasks is not None
        assert self._scheduler is not None
        self._probing_since = time.time()
        self._probing = [self._tasks.create_task(self._scheduler.run())]
        if self.bandwidth is not None:
            self._probing.append(
                self._tasks.create_task(self._sample_bandwidth(self.bandwidth))
            )

    async def _stop_probing(self) -> None:
        """Lets the runs under way end (no exec outlives its scheduler), then
        stops the scheduler and the engine's threads."""
        if self._scheduler is not None:
            await self._scheduler.drain(_DRAIN_TIMEOUT_S)
        for task in self._probing:
            task.cancel()
        if self._probing:
            await asyncio.wait(self._probing)
        self._probing = []
        if self._engine is not None:
            await close_engine(self._engine)

    def _start_alerts(self) -> None:
        assert self._tasks is not None
        settings = self.config.alerts
        previous = self.alerts
        self.alerts = None
        if not settings.enabled:
            return
        self.alerts = AlertService(
            settings,
            snapshot=self.matrix.snapshot,
            health=self._health,
            lifecycle=self.lifecycle,
            metrics=self.metrics,
            external_url=settings.external_url
            or default_external_url(
                self.port,
                https=self.web_guard is not None
                and self.web_guard.ssl_context is not None,
            ),
            book=previous.book if previous is not None else None,
        )
        self._alerting = self._tasks.create_task(self.alerts.run())

    def _stop_alerts(self) -> None:
        if self._alerting is not None:
            self._alerting.cancel()
            self._alerting = None

    async def _reload_on_signal(self) -> None:
        while True:
            await self._reload_asked.wait()
            self._reload_asked.clear()
            await self.reload()

    def _reload_failed(self, problems: list[str]) -> ReloadOutcome:
        self.metrics.reloads.labels(result="failed").inc()
        self.metrics.reload_ok.set(0)
        log.error("config.reload_failed", problems=list(problems))
        return ReloadOutcome.failed(problems)

    async def reload(self) -> ReloadOutcome:
        """Reads the configuration and the policy again and applies them; a
        configuration that fails validation changes nothing."""
        if self._reload_from is None:
            return ReloadOutcome.failed(["netwatch was started with no file to read"])
        async with self._reload_lock:
            if self._stop.is_set():
                return ReloadOutcome.failed(["netwatch is stopping"])
            guard = self.web_guard
            try:
                loaded, policy = await asyncio.to_thread(self._reload_from)
                # The web configuration is read again too; if it fails, so
                # does the reload, and nothing changes.
                web = (
                    await asyncio.to_thread(load_web_config, guard.loaded.path)
                    if guard is not None
                    else None
                )
            except ConfigError as exc:
                return self._reload_failed(exc.problems)
            except Exception as exc:  # a reader's fault must not end the daemon
                log.exception("config.reload_error")
                return self._reload_failed([f"cannot read the files: {exc!r}"])

            merged = merge_reloaded(self.config, loaded)
            needs_restart = merged.needs_restart
            if guard is not None and web is not None:
                waiting = guard.adopt(web)
                needs_restart += tuple(f"web_config.{key}" for key in waiting)
            if needs_restart:
                log.warning("config.restart_needed", keys=list(needs_restart))
            policy_changed = policy != self.policy
            await self._apply(merged.config, merged.changed, policy)

            self.metrics.reloads.labels(result="ok").inc()
            self.metrics.reload_ok.set(1)
            self.metrics.reloaded_at.set_to_current_time()
            changed = sorted(merged.changed | ({"policy"} if policy_changed else set()))
            log.info("config.reloaded", changed=changed)
            return ReloadOutcome(
                ok=True, changed=tuple(changed), needs_restart=needs_restart
            )

    async def _apply(
        self, config: Config, changed: frozenset[str], policy: Policy | None
    ) -> None:
        self.config = config
        self.policy = policy
        if "log" in changed:
            configure_logging(config.log)
        if "matrix" in changed:
            self.matrix.replace_settings(config.matrix)
        if "probes" in changed and self._tasks is not None:
            await self._stop_probing()
            self._make_probing()
            self._start_probing()
            assert self._scheduler is not None
            log.info(
                "daemon.probing_restarted",
                probes={kind.value: i for kind, i in self._scheduler.kinds.items()},
            )
        if "alerts" in changed and self._tasks is not None:
            self._stop_alerts()
            self._start_alerts()
        if "discovery" in changed and self._discovery is not None:
            self._discovery.replace_settings(config.discovery)
        # A new plan for the new policy, planner or probes.
        self._changed.set()

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

    async def _sample_bandwidth(self, sampler: BandwidthSampler) -> None:
        """Bandwidth batches, the first one interval after the start."""
        await asyncio.sleep(self.config.probes.bandwidth.interval)
        await sampler.run()

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
        scheduler = self._scheduler
        if scheduler is not None and scheduler.all_kinds_completed_a_round():
            self._full_round = True
        if kind not in self._first_rounds:
            self._first_rounds.add(kind)
            counts = self.matrix.snapshot().verdict_counts()
            log.info(
                "daemon.first_round",
                probe=kind.value,
                **{
                    f"pairs_{verdict.value}": count for verdict, count in counts.items()
                },
            )
