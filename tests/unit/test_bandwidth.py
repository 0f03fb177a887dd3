"""What the bandwidth sampler remembers of containers, and when it lets go."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from netwatch.bandwidth import BandwidthSampler
from netwatch.config import BandwidthSettings
from netwatch.containers import ContainerInfo
from netwatch.pairs import plan_pairs
from netwatch.probes.outcome import Reason
from tests.factories import attachment, container

WEB = container("web", attachment("back", "10.1.0.2"))
API = container("api", attachment("back", "10.1.0.3"))


class ShelllessEngine:
    """An exec engine for containers without a shell, whose answer to the
    server waits until the test lets it go."""

    def __init__(self) -> None:
        self.asked = asyncio.Event()
        self.answer = asyncio.Event()

    async def run_tool(
        self, src: ContainerInfo, argv: Sequence[str], deadline_s: float
    ) -> tuple[Reason, str]:
        self.asked.set()
        await self.answer.wait()
        return Reason.TOOL_MISSING, "no shell in the container"


async def test_a_destination_removed_during_its_test_is_not_remembered():
    """The server's container goes while its test runs: the sampler's note
    that it has no iperf3 is not kept for a container nothing will forget."""
    engine = ShelllessEngine()
    sampler = BandwidthSampler(
        BandwidthSettings(),
        exec_engine=engine,  # type: ignore[arg-type]
        netns=None,
    )
    sampler.update(plan_pairs([WEB, API], max_ports=8), {c.id: c for c in (WEB, API)})
    test = asyncio.create_task(sampler.measure(WEB, API))
    await engine.asked.wait()

    sampler.update(plan_pairs([WEB], max_ports=8), {WEB.id: WEB})
    engine.answer.set()
    result = await test

    assert result.reason == "tool_missing"
    assert API.id not in sampler._no_iperf3
