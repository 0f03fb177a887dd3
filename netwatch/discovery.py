"""Discovery: the inventory of containers, kept in step with the engine.

It lists every running or paused container and inspects each, then follows
the engine's event stream so that starts, stops, renames, pauses and network
changes reach the matrix within seconds. When the stream is cut or the engine
restarts it reconnects with backoff, asks for events `since` the last one it
saw, drops duplicates, and lists everything again, because events can still
be missed. A periodic resync covers engines that send no rename events.

One container the engine is slow to describe is not an engine outage: the
engine holds a container while it starts or stops it, and a busy host can
take longer than a request's timeout to start one. When the engine still
answers, that container keeps what was known of it and is asked again
shortly; the event stream and the rest of the listing go on.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import structlog

from netwatch.config import DiscoverySettings
from netwatch.containers import (
    ContainerInfo,
    NetworkInfo,
    container_from_inspect,
    monitoring_decision,
    network_from_list_entry,
    remote_tasks,
)
from netwatch.docker_api import DockerClient
from netwatch.errors import ContainerGoneError, DockerError, EngineUnavailableError
from netwatch.metrics import SelfMetrics

log = structlog.get_logger("netwatch.discovery")

_CONTAINER_ID = re.compile(r"/containers/([0-9a-f]{64})/")
_CGROUP_ID = re.compile(r"(?:/docker/|docker-)([0-9a-f]{64})(?:\.scope)?$")
_CONTAINER_FILES = {"/etc/hostname", "/etc/hosts", "/etc/resolv.conf"}
_SEEN_EVENTS = 4096
_BACKOFF_START_S = 0.5
# Losing the engine again this soon after a warning is the same outage.
_OUTAGE_WINDOW_S = 60.0
# Containers inspected at once by a full listing.
_INSPECT_CONCURRENCY = 8
# A container the engine was slow to describe is asked again this soon.
_SLOW_RETRY_S = 1.0


class _SlowContainer(Exception):
    """The engine answers, but not yet about this container."""


# In a listing: the container whose inspect was too slow.
_SLOW: Any = object()


def own_container_id(proc: Path = Path("/proc/self")) -> str | None:
    """The id of the container netwatch runs in, or None on a plain host.

    The engine bind-mounts /etc/hostname (and hosts, resolv.conf) from the
    container's own folder, whose path holds its id. Only those mount points
    count: on a Docker host, the mount table also lists other containers'
    folders. The cgroup path is the fallback (cgroup v1).
    """
    try:
        mountinfo = (proc / "mountinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        mountinfo = ""
    for line in mountinfo.splitlines():
        fields = line.split()
        mount_point = fields[4] if len(fields) > 4 else ""
        if mount_point in _CONTAINER_FILES and (
            match := _CONTAINER_ID.search(fields[3])
        ):
            return match.group(1)

    try:
        cgroup = (proc / "cgroup").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in cgroup.splitlines():
        if match := _CGROUP_ID.search(line):
            return match.group(1)
    return None


def event_key(event: Mapping[str, Any]) -> tuple[str, str, int]:
    actor = event.get("Actor") or {}
    return (
        str(actor.get("ID") or event.get("id") or ""),
        str(event.get("Action") or event.get("status") or ""),
        int(event.get("timeNano") or 0),
    )


def event_since(time_nano: int) -> str:
    """The `since` value that replays events from `time_nano` on."""
    return f"{time_nano // 1_000_000_000}.{time_nano % 1_000_000_000:09d}"


class Discovery:
    """Owns the inventory; calls `on_change` whenever it changed."""

    def __init__(
        self,
        client: DockerClient,
        settings: DiscoverySettings,
        *,
        metrics: SelfMetrics,
        on_change: Callable[[], None],
        self_id: str | None = None,
    ) -> None:
        self._client = client
        self._settings = settings
        self._metrics = metrics
        self._on_change = on_change
        self._self_id = self_id
        self._all: dict[str, ContainerInfo] = {}
        self._networks: dict[str, NetworkInfo] = {}
        self._seen: OrderedDict[tuple[str, str, int], None] = OrderedDict()
        self._last_event_nano: int | None = None
        self._lock = asyncio.Lock()
        # None until the first contact, so the first failure is reported too.
        self.engine_up: bool | None = None
        self._warned_at: float | None = None
        self.synced = asyncio.Event()
        # Containers to inspect again: the engine was slow to describe them.
        self._slow: set[str] = set()
        self._retry = asyncio.Event()

    @property
    def metrics(self) -> SelfMetrics:
        return self._metrics

    @property
    def settings(self) -> DiscoverySettings:
        return self._settings

    def replace_settings(self, settings: DiscoverySettings) -> None:
        self._settings = settings
        self._on_change()

    @property
    def containers(self) -> Mapping[str, ContainerInfo]:
        """Every running or paused container, monitored or not."""
        return MappingProxyType(self._all)

    def decisions(self) -> dict[str, tuple[bool, str]]:
        return {
            container_id: monitoring_decision(
                info,
                opt_in=self._settings.opt_in,
                self_id=self._self_id,
                include_self=self._settings.include_self,
                match_labels=self._settings.match_labels,
            )
            for container_id, info in self._all.items()
        }

    def monitored(self) -> dict[str, ContainerInfo]:
        decisions = self.decisions()
        return {cid: info for cid, info in self._all.items() if decisions[cid][0]}

    async def refresh_all(self) -> None:
        """Lists networks and containers again and replaces the inventory."""
        async with self._lock:
            self._networks = {
                n.id: n
                for n in map(
                    network_from_list_entry, await self._client.list_networks()
                )
            }
            ids = await self._client.list_container_ids()
            inspected = await self._inspect_all(ids)
            fresh: dict[str, ContainerInfo] = {}
            for container_id in ids:
                inspect = inspected.get(container_id)
                if inspect is _SLOW:
                    # Slow to describe: what was known of it still holds.
                    if (known := self._all.get(container_id)) is not None:
                        fresh[container_id] = known
                elif inspect is not None and (inspect.get("State") or {}).get(
                    "Running"
                ):
                    fresh[container_id] = container_from_inspect(
                        inspect, self._networks
                    )
            for remote in await self._remote_tasks(fresh):
                fresh[remote.id] = remote
            # The first listing is news even when it finds nothing.
            changed = fresh != self._all or not self.synced.is_set()
            before, self._all = self._all, fresh
        self._mark_engine(up=True)
        self.synced.set()
        if changed:
            # One line per container that came, went or changed, as for events.
            for container_id in before.keys() | fresh.keys():
                if before.get(container_id) != fresh.get(container_id):
                    self._log_change(before.get(container_id), fresh.get(container_id))
            self._on_change()

    async def _inspect_all(self, ids: list[str]) -> dict[str, Any]:
        """Each container's inspect data, a few at a time (one slow
        container does not hold up the others): None for the ones gone,
        _SLOW for the ones the engine was slow to describe."""
        room = asyncio.Semaphore(_INSPECT_CONCURRENCY)
        found: dict[str, Any] = {}
        failures: list[DockerError] = []

        async def one(container_id: str) -> None:
            async with room:
                if failures:
                    return  # the engine went: the listing fails anyway
                try:
                    found[container_id] = await self._inspect(container_id)
                except _SlowContainer:
                    found[container_id] = _SLOW
                except DockerError as exc:
                    failures.append(exc)

        await asyncio.gather(*(one(container_id) for container_id in ids))
        if failures:
            raise failures[0]
        return found

    async def _inspect(self, container_id: str) -> dict[str, Any] | None:
        """The container's inspect data, or None once it is gone.

        Raises _SlowContainer when the inspect failed but the engine still
        answers (it holds a container it is starting or stopping): the
        container is asked again shortly. Raises EngineUnavailableError when
        the engine itself does not answer.
        """
        try:
            return await self._client.inspect_container(container_id)
        except ContainerGoneError:
            return None
        except EngineUnavailableError as exc:
            await self._client.version()  # raises if the engine is gone
            log.debug("discovery.inspect_slow", id=container_id[:12], reason=str(exc))
            self._metrics.errors.labels(kind="inspect_slow").inc()
            self._slow.add(container_id)
            self._retry.set()
            raise _SlowContainer(container_id) from exc

    async def _remote_tasks(
        self, local: Mapping[str, ContainerInfo]
    ) -> list[ContainerInfo]:
        """Containers on other swarm nodes that share an overlay network with
        a container here. Engine events do not cover other nodes: they are
        found again at every full listing (`resync_interval`)."""
        swarm_networks = {
            attachment.network_id
            for info in local.values()
            for attachment in info.networks
            if (known := self._networks.get(attachment.network_id))
            and known.scope == "swarm"
        }
        found: list[ContainerInfo] = []
        for network_id in sorted(swarm_networks):
            try:
                verbose = await self._client.inspect_network_verbose(network_id)
            except EngineUnavailableError:
                raise
            except DockerError as exc:
                log.debug(
                    "discovery.network_unreadable",
                    network=network_id[:12],
                    reason=str(exc),
                )
                continue
            found += remote_tasks(verbose, self._networks[network_id])
        return found

    async def run(self) -> None:
        """Follows the engine for as long as netwatch runs."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._follow())
            tasks.create_task(self._resync_periodically())
            tasks.create_task(self._retry_slow())

    async def _retry_slow(self) -> None:
        """Asks again about the containers the engine was slow to describe."""
        while True:
            await self._retry.wait()
            await asyncio.sleep(_SLOW_RETRY_S)
            self._retry.clear()
            slow, self._slow = self._slow, set()
            for container_id in sorted(slow):
                try:
                    await self._refresh_container(container_id)
                except DockerError as exc:
                    # The engine went: the reconnect lists everything again.
                    log.debug("discovery.retry_failed", reason=str(exc))
                    break

    async def _follow(self) -> None:
        backoff = _BACKOFF_START_S
        while True:
            since = event_since(
                self._last_event_nano
                if self._last_event_nano is not None
                else int((time.time() - 1) * 1e9)
            )
            follower = asyncio.create_task(
                self._client.follow_events(since, self._handle)
            )
            try:
                # Listing after subscribing: nothing slips between the two.
                await asyncio.sleep(0.05)
                await self.refresh_all()
                backoff = _BACKOFF_START_S
                await follower
                log.warning(
                    "discovery.events_ended", reason="the engine closed the stream"
                )
                self._metrics.errors.labels(kind="events_stream_ended").inc()
            except DockerError as exc:
                self._mark_engine(up=False, reason=str(exc))
            finally:
                follower.cancel()
                await asyncio.wait([follower])
            delay = backoff * random.uniform(0.8, 1.2)
            backoff = min(backoff * 2, self._settings.reconnect_backoff_max)
            await asyncio.sleep(delay)

    async def _resync_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._settings.resync_interval)
            # Also while the engine is marked down: the event stream may be
            # fine while a listing timed out, and only a listing says so.
            try:
                await self.refresh_all()
            except DockerError as exc:
                self._mark_engine(up=False, reason=str(exc))

    async def _handle(self, event: dict[str, Any]) -> None:
        key = event_key(event)
        if key in self._seen:
            return
        self._seen[key] = None
        while len(self._seen) > _SEEN_EVENTS:
            self._seen.popitem(last=False)
        if key[2]:
            self._last_event_nano = max(key[2], self._last_event_nano or 0)

        kind = str(event.get("Type") or "")
        self._metrics.events.labels(type=kind or "unknown").inc()
        actor = event.get("Actor") or {}
        attributes = actor.get("Attributes") or {}
        log.debug("discovery.event", type=kind, action=key[1], actor=key[0][:12])
        if kind == "network":
            action = key[1]
            if action in ("create", "destroy"):
                await self._refresh_networks()
            container_id = attributes.get("container")
            if container_id:
                await self._refresh_container(str(container_id))
        elif kind == "container":
            await self._refresh_container(key[0])

    async def _refresh_networks(self) -> None:
        entries = await self._client.list_networks()
        async with self._lock:
            self._networks = {n.id: n for n in map(network_from_list_entry, entries)}

    async def _refresh_container(self, container_id: str) -> None:
        if not container_id:
            return
        try:
            inspect = await self._inspect(container_id)
        except _SlowContainer:
            return  # asked again shortly; what was known of it holds
        self._mark_engine(up=True)
        async with self._lock:
            before = self._all.get(container_id)
            running = inspect is not None and (inspect.get("State") or {}).get(
                "Running"
            )
            if inspect is not None and running:
                after: ContainerInfo | None = container_from_inspect(
                    inspect, self._networks
                )
            else:
                after = None
            if before == after:
                return
            if after is None:
                self._all.pop(container_id, None)
            else:
                self._all[container_id] = after
        self._log_change(before, after)
        self._on_change()

    def _watched(self, info: ContainerInfo) -> bool:
        return monitoring_decision(
            info,
            opt_in=self._settings.opt_in,
            self_id=self._self_id,
            include_self=self._settings.include_self,
            match_labels=self._settings.match_labels,
        )[0]

    def _log_change(
        self, before: ContainerInfo | None, after: ContainerInfo | None
    ) -> None:
        """One INFO line per change of a monitored container; DEBUG for the
        containers netwatch leaves alone."""
        subject = after or before
        if subject is None:
            return
        watched = self._watched(subject)
        emit = log.info if watched else log.debug
        if before is None and after is not None:
            emit("discovery.container_added", container=after.name, id=after.short_id)
            if watched:
                for problem in after.label_problems:
                    log.warning(
                        "discovery.label_ignored", container=after.name, reason=problem
                    )
        elif after is None and before is not None:
            emit(
                "discovery.container_removed", container=before.name, id=before.short_id
            )
        elif before is not None and after is not None:
            if before.name != after.name:
                emit(
                    "discovery.container_renamed",
                    container=after.name,
                    previous=before.name,
                )
            if before.paused != after.paused:
                event = (
                    "discovery.container_paused"
                    if after.paused
                    else "discovery.container_unpaused"
                )
                emit(event, container=after.name)
            if before.networks != after.networks:
                emit(
                    "discovery.networks_changed",
                    container=after.name,
                    networks=[a.network for a in after.networks],
                )

    def _mark_engine(self, *, up: bool, reason: str | None = None) -> None:
        """Logs the engine coming and going once per change, not per retry;
        an engine that flaps within a minute of a warning is the same outage,
        logged at INFO."""
        if up and self.engine_up is not True:
            log.info("discovery.engine_connected", address=self._client.address)
        elif not up and self.engine_up is not False:
            now = time.monotonic()
            repeated = (
                self._warned_at is not None and now - self._warned_at < _OUTAGE_WINDOW_S
            )
            if repeated:
                log.info("docker.engine_unavailable", reason=reason, repeated=True)
            else:
                log.warning("docker.engine_unavailable", reason=reason)
                self._warned_at = now
            self._metrics.errors.labels(kind="engine_unavailable").inc()
        self.engine_up = up
        self._metrics.docker_up.set(1 if up else 0)
