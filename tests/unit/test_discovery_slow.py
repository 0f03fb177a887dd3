"""Discovery when the engine is slow to describe one container (it holds a
container while starting or stopping it): that is not an engine outage."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from netwatch.config import DiscoverySettings
from netwatch.discovery import Discovery
from netwatch.errors import EngineUnavailableError
from netwatch.metrics import SelfMetrics

IDS = [f"{index:x}" * 64 for index in range(1, 4)]


def inspect_of(container_id: str) -> dict[str, Any]:
    """The parts of GET /containers/{id}/json that discovery reads."""
    return {
        "Id": container_id,
        "Name": f"/c{container_id[0]}",
        "State": {"Running": True, "Pid": 100},
        "HostConfig": {"NetworkMode": "app"},
        "Config": {"Image": "tools", "Labels": {}},
        "NetworkSettings": {
            "Networks": {
                "app": {"NetworkID": "n1", "IPAddress": f"10.0.0.{container_id[0]}"}
            }
        },
    }


class ScriptedEngine:
    """A DockerClient double: answers every call, except that inspecting a
    container in `slow` times out `slow[id]` times; `down` makes every call
    fail as an unreachable engine does."""

    address = "unix:///scripted.sock"

    def __init__(self, slow: dict[str, int] | None = None) -> None:
        self.slow = dict(slow or {})
        self.down = False
        self.inspected: list[str] = []

    def _answer(self) -> None:
        if self.down:
            raise EngineUnavailableError("ConnectionRefusedError: refused")

    async def list_networks(self) -> list[dict[str, Any]]:
        self._answer()
        return [{"Id": "n1", "Name": "app", "Driver": "bridge", "Scope": "local"}]

    async def list_container_ids(self) -> list[str]:
        self._answer()
        return list(IDS)

    async def inspect_container(self, container_id: str) -> dict[str, Any]:
        self._answer()
        self.inspected.append(container_id)
        if self.slow.get(container_id, 0) > 0:
            self.slow[container_id] -= 1
            raise EngineUnavailableError(
                f"container {container_id[:12]}: the engine did not answer in time"
            )
        return inspect_of(container_id)

    async def version(self) -> dict[str, Any]:
        self._answer()
        return {"ApiVersion": "1.41"}


def discovery_on(
    engine: ScriptedEngine, changed: asyncio.Event | None = None
) -> tuple[Discovery, list[int]]:
    """A discovery on the scripted engine; each change is counted, and sets
    `changed` when given."""
    changes: list[int] = []

    def on_change() -> None:
        changes.append(1)
        if changed is not None:
            changed.set()

    discovery = Discovery(
        engine,  # type: ignore[arg-type]
        DiscoverySettings(),
        metrics=SelfMetrics(CollectorRegistry()),
        on_change=on_change,
    )
    return discovery, changes


async def test_a_slow_container_leaves_the_rest_of_the_listing_whole():
    """One container timing out is left out of a first listing, the others
    are listed, and the engine is still up."""
    engine = ScriptedEngine(slow={IDS[1]: 1})
    discovery, _ = discovery_on(engine)

    await discovery.refresh_all()

    assert set(discovery.containers) == {IDS[0], IDS[2]}
    assert discovery.engine_up is True


async def test_a_slow_container_keeps_what_was_known_of_it():
    """A container already known stays, as it was, when a later listing
    times out on it."""
    engine = ScriptedEngine()
    discovery, _ = discovery_on(engine)
    await discovery.refresh_all()
    known = discovery.containers[IDS[1]]
    engine.slow[IDS[1]] = 1

    await discovery.refresh_all()

    assert discovery.containers[IDS[1]] == known
    assert len(discovery.containers) == 3


async def test_a_slow_container_is_asked_again_shortly():
    """The container the engine was slow to describe joins the inventory
    once it answers, without waiting for the next full listing."""
    engine = ScriptedEngine(slow={IDS[1]: 2})
    changed = asyncio.Event()
    discovery, changes = discovery_on(engine, changed)
    await discovery.refresh_all()
    changed.clear()
    running = asyncio.create_task(discovery._retry_slow())

    try:
        async with asyncio.timeout(5):
            await changed.wait()
    finally:
        running.cancel()

    assert IDS[1] in discovery.containers

    assert engine.inspected.count(IDS[1]) == 3
    assert len(changes) == 2


async def test_an_event_for_a_slow_container_does_not_end_the_stream():
    """Handling an event whose container times out returns normally (the
    event stream goes on) and the container is queued to be asked again."""
    engine = ScriptedEngine()
    discovery, _ = discovery_on(engine)
    await discovery.refresh_all()
    engine.slow[IDS[0]] = 1
    event = {"Type": "container", "Action": "start", "Actor": {"ID": IDS[0]}}

    await discovery._handle({**event, "timeNano": 1})

    assert discovery._slow == {IDS[0]}
    assert discovery.engine_up is True


async def test_an_engine_that_stopped_answering_is_still_an_outage():
    """When the engine itself does not answer, the listing fails as before."""
    engine = ScriptedEngine()
    discovery, _ = discovery_on(engine)
    await discovery.refresh_all()
    engine.down = True

    with pytest.raises(EngineUnavailableError):
        await discovery.refresh_all()
