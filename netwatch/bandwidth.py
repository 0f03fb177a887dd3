"""Bandwidth between a rotating sample of pairs.

Each batch takes the next few pairs that should reach each other, in a
stable order, so every pair is measured in turn. A destination serves one
test at a time (an iperf3 server handles one client), and a global cap
bounds the tests running at once: bandwidth tests load the network they
measure, so they stay rare and small.

Two methods, labelled in every result:
- iperf3, run by exec in both containers: a one-off server (`-s -1`) under
  the probe runner's watchdog, so it is gone after the test or at its
  deadline, whatever the client does; the client's JSON is read
  defensively (see probes/iperf3.py).
- socket, where a container has no iperf3 and the namespace engine runs: a
  listening socket made in the destination's namespace, a connecting one in
  the source's, and bytes pushed between them for the test's duration. It
  measures the path as netwatch's own event loop can drive it, which is
  below what the path can carry on fast links.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass

import structlog

from netwatch.config import BandwidthSettings
from netwatch.containers import ContainerInfo
from netwatch.pairs import EMPTY_PLAN, PairKey, PairPlan, PlannedPair
from netwatch.probes.exec_engine import ExecEngine
from netwatch.probes.iperf3 import (
    NETWORK_FAILURES,
    BandwidthReading,
    FailureKind,
    classify_error,
    client_argv,
    parse_client_output,
    server_argv,
)
from netwatch.probes.netns_engine import NetnsEngine
from netwatch.probes.outcome import Outcome, Reason, first_line

log = structlog.get_logger("netwatch.bandwidth")

# How long a container found without iperf3 is not asked again.
_NO_IPERF3_RECHECK_S = 600.0
# The one-off server needs a moment to listen before the client connects.
_SERVER_START_S = 0.3
_CLIENT_ATTEMPTS = 5
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class BandwidthResult:
    src: str
    dst: str
    method: str  # "iperf3" or "socket"
    outcome: Outcome
    # Why it failed: a FailureKind value, or None.
    reason: str | None
    detail: str
    at: float
    bits_per_second: float | None = None
    retransmits: int | None = None


def _result(
    src: ContainerInfo, dst: ContainerInfo, method: str, reading: BandwidthReading
) -> BandwidthResult:
    if reading.failure is None:
        outcome = Outcome.OK
    elif reading.failure in NETWORK_FAILURES:
        outcome = Outcome.UNREACHABLE
    else:
        outcome = Outcome.UNMEASURED
    return BandwidthResult(
        src=src.id,
        dst=dst.id,
        method=method,
        outcome=outcome,
        reason=reading.failure.value if reading.failure else None,
        detail=reading.detail,
        at=time.time(),
        bits_per_second=reading.bits_per_second,
        retransmits=reading.retransmits,
    )


def _failed(kind: FailureKind, detail: str, reached: bool = False) -> BandwidthReading:
    return BandwidthReading(None, None, kind, first_line(detail), reached)


def _exec_failure(failure: tuple[Reason, str], where: str) -> BandwidthReading:
    """Why an exec of iperf3 could not run: no shell is no iperf3."""
    reason, detail = failure
    if reason is Reason.TOOL_MISSING:
        return _failed(FailureKind.TOOL_MISSING, where + detail)
    return _failed(FailureKind.TOOL_FAILED, where + detail)


def _server_failed(output: object) -> BandwidthReading | None:
    """Why the one-off server did not serve, from its ending; None if it
    did (it exits 0 after its one test)."""
    if isinstance(output, tuple):
        return _exec_failure(output, "server: ")
    exit_code = getattr(output, "exit_code", 0)
    if exit_code == 0:
        return None
    said = first_line(getattr(output, "stderr", "")) or first_line(
        getattr(output, "stdout", "")
    )
    kind, _ = classify_error(said)
    if kind is FailureKind.TOOL_FAILED and exit_code in (143, 137):
        return None  # ended by the watchdog after serving: the test stands
    return _failed(kind, f"server: {said or f'exit {exit_code}'}")


def candidates(plan: PairPlan) -> list[PlannedPair]:
    """Pairs worth a bandwidth test, in a stable order: those expected to
    reach each other, probeable now."""
    return [
        plan.pairs[key]
        for key in sorted(plan.pairs)
        if plan.pairs[key].expected_reachable
        and plan.pairs[key].targets
        and plan.pairs[key].hold is None
    ]


def next_batch(
    pairs: list[PlannedPair], cursor: int, size: int
) -> tuple[list[PlannedPair], int]:
    """Up to `size` pairs from `cursor` on, at most one per destination
    (and per source), and the cursor for the next batch."""
    if not pairs:
        return [], 0
    batch: list[PlannedPair] = []
    busy: set[str] = set()
    start = cursor % len(pairs)
    taken = 0
    for step in range(len(pairs)):
        pair = pairs[(start + step) % len(pairs)]
        taken = step + 1
        if pair.dst in busy or pair.src in busy:
            taken = step
            break
        batch.append(pair)
        busy.update((pair.src, pair.dst))
        if len(batch) == size:
            break
    return batch, (start + taken) % len(pairs)


class BandwidthSampler:
    """Runs the bandwidth batches and keeps each pair's last result."""

    def __init__(
        self,
        settings: BandwidthSettings,
        *,
        exec_engine: ExecEngine | None,
        netns: NetnsEngine | None,
    ) -> None:
        self._settings = settings
        self._exec = exec_engine
        self._netns = netns
        self._plan = EMPTY_PLAN
        self._containers: Mapping[str, ContainerInfo] = {}
        self._results: dict[PairKey, BandwidthResult] = {}
        self._cursor = 0
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._testing: set[str] = set()
        self._no_iperf3: dict[str, float] = {}
        self.tests = 0

    def results(self) -> Mapping[PairKey, BandwidthResult]:
        return dict(self._results)

    def update(self, plan: PairPlan, containers: Mapping[str, ContainerInfo]) -> None:
        self._plan = plan
        self._containers = containers
        for key in [k for k in self._results if k not in plan.pairs]:
            del self._results[key]
        for gone in [c for c in self._no_iperf3 if c not in containers]:
            del self._no_iperf3[gone]

    async def run(self) -> None:
        """Measures a batch every interval until cancelled."""
        while True:
            started = time.monotonic()
            try:
                await self.run_batch()
            except Exception:
                log.exception("bandwidth.batch_failed")
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(1.0, self._settings.interval - elapsed))

    async def run_batch(self) -> list[BandwidthResult]:
        pairs = candidates(self._plan)
        batch, self._cursor = next_batch(
            pairs, self._cursor, self._settings.pairs_per_round
        )
        async with asyncio.TaskGroup() as tasks:
            running = [tasks.create_task(self._test(pair)) for pair in batch]
        return [result for task in running if (result := task.result()) is not None]

    async def measure(self, src: ContainerInfo, dst: ContainerInfo) -> BandwidthResult:
        """One test from `src` to `dst` (on their first shared address)."""
        pair = self._plan.pairs.get((src.id, dst.id))
        why = self._plan.unaddressable.get((src.id, dst.id), "the pair has no address")
        if pair is not None and pair.hold is not None:
            why = pair.hold
        if pair is None or not pair.targets or pair.hold is not None:
            reading = _failed(FailureKind.NOT_PROBEABLE, why)
            return _result(src, dst, "none", reading)
        result = await self._test(pair)
        if result is None:
            reading = _failed(FailureKind.SERVER_BUSY, "a test to it is under way")
            return _result(src, dst, "none", reading)
        return result

    async def _test(self, pair: PlannedPair) -> BandwidthResult | None:
        src = self._containers.get(pair.src)
        dst = self._containers.get(pair.dst)
        if src is None or dst is None or pair.dst in self._testing:
            return None
        self._testing.add(pair.dst)
        try:
            async with self._slots:
                result = await self._measure(src, dst, pair.targets[0].address)
        except Exception as exc:
            # A bug, or output nobody foresaw: this test is lost, not the
            # sampler (nor the daemon).
            log.exception("bandwidth.test_failed", src=src.name, dst=dst.name)
            detail = f"netwatch failed to test: {type(exc).__name__}: {exc}"
            result = _result(src, dst, "none", _failed(FailureKind.TOOL_FAILED, detail))
        finally:
            self._testing.discard(pair.dst)
        self.tests += 1
        key = (pair.src, pair.dst)
        if key in self._plan.pairs:
            self._results[key] = result
        log.info(
            "bandwidth.measured",
            src=src.name,
            dst=dst.name,
            method=result.method,
            outcome=str(result.outcome),
            bits_per_second=result.bits_per_second,
            reason=result.reason,
            detail=result.detail,
        )
        return result

    def _note_no_iperf3(self, container_id: str) -> None:
        """Remembers a container without iperf3, unless it went while its
        test ran: nothing would ever forget it."""
        if container_id in self._containers:
            self._no_iperf3[container_id] = time.monotonic()

    def _has_iperf3(self, container_id: str) -> bool:
        seen = self._no_iperf3.get(container_id)
        return seen is None or time.monotonic() - seen > _NO_IPERF3_RECHECK_S

    def _namespaces_visible(self, *containers: ContainerInfo) -> bool:
        return self._netns is not None and all(
            self._netns.reachable(c) for c in containers
        )

    async def _measure(
        self, src: ContainerInfo, dst: ContainerInfo, address: str
    ) -> BandwidthResult:
        method = self._settings.method
        sockets_ok = self._namespaces_visible(src, dst)
        use_iperf3 = self._exec is not None and (
            method == "iperf3"
            or (
                method == "auto"
                and self._has_iperf3(src.id)
                and self._has_iperf3(dst.id)
            )
        )
        if use_iperf3:
            reading = await self._iperf3(src, dst, address)
            missing = reading.failure is FailureKind.TOOL_MISSING
            if missing and reading.detail.startswith("server: "):
                self._note_no_iperf3(dst.id)
            if not (missing and method == "auto" and sockets_ok):
                return _result(src, dst, "iperf3", reading)
        if method != "iperf3" and sockets_ok:
            return _result(src, dst, "socket", await self._sockets(src, dst, address))
        detail = (
            "no iperf3 in the containers and their namespaces are not visible"
            if method != "socket"
            else "socket tests need the namespace engine"
        )
        return _result(src, dst, "none", _failed(FailureKind.TOOL_MISSING, detail))

    async def _iperf3(
        self, src: ContainerInfo, dst: ContainerInfo, address: str
    ) -> BandwidthReading:
        assert self._exec is not None
        settings = self._settings
        deadline = settings.server_deadline
        server: asyncio.Task[object] = asyncio.create_task(
            self._exec.run_tool(
                dst,
                server_argv(settings.port, max(1, int(deadline) - 1)),
                deadline,
            )
        )
        try:
            reading = await self._client_runs(src, address, server)
            if reading.failure is not None:
                return reading
            # The one-off server ends once its test is done. If it never
            # served (the port was taken), the figure came from another
            # server: not netwatch's test.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline + 10):
                    await asyncio.shield(server)
            if server.done():
                failed = _server_failed(server.result())
                if failed is not None:
                    return failed
            return reading
        except asyncio.CancelledError:
            # netwatch is stopping: the server's watchdog still ends it.
            server.cancel()
            raise
        finally:
            if not server.done():
                # The server ends after its one test or at its watchdog;
                # wait, so that no server outlives the test netwatch knows.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(deadline + 10):
                        await asyncio.shield(server)
                server.cancel()

    async def _client_runs(
        self, src: ContainerInfo, address: str, server: asyncio.Task[object]
    ) -> BandwidthReading:
        assert self._exec is not None
        settings = self._settings
        await asyncio.sleep(_SERVER_START_S)
        reading = _failed(FailureKind.TOOL_FAILED, "no client run")
        for attempt in range(_CLIENT_ATTEMPTS):
            if server.done():
                return self._server_failure(server.result())
            client = await self._exec.run_tool(
                src,
                client_argv(address, settings.port, settings.duration),
                settings.duration + 5,
            )
            if isinstance(client, tuple):
                reading = _exec_failure(client, "client: ")
                if reading.failure is FailureKind.TOOL_MISSING:
                    self._note_no_iperf3(src.id)
                return reading
            reading = parse_client_output(
                client.stdout, client.stderr, client.exit_code
            )
            if reading.failure is FailureKind.TOOL_MISSING:
                self._note_no_iperf3(src.id)
            retry = reading.failure is FailureKind.CONNECTION_REFUSED
            if not retry or attempt == _CLIENT_ATTEMPTS - 1:
                break
            # The server may not listen yet: try again shortly.
            await asyncio.sleep(0.5)
        return reading

    def _server_failure(self, output: object) -> BandwidthReading:
        """Why the one-off server ended before any client came."""
        if isinstance(output, tuple):
            return _exec_failure(output, "server: ")
        stdout = getattr(output, "stdout", "")
        stderr = getattr(output, "stderr", "")
        said = first_line(stderr) or first_line(stdout) or "the server ended at once"
        reading = parse_client_output("", said, getattr(output, "exit_code", 1))
        if reading.failure in NETWORK_FAILURES or reading.failure is None:
            # Nothing about the network: the server could not run.
            return _failed(FailureKind.TOOL_FAILED, f"server: {said}")
        return _failed(reading.failure, f"server: {said}")

    async def _sockets(
        self, src: ContainerInfo, dst: ContainerInfo, address: str
    ) -> BandwidthReading:
        assert self._netns is not None
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        spec = (family, socket.SOCK_STREAM, 0)
        listening = await self._netns.sockets_in(dst, [spec])
        sending = await self._netns.sockets_in(src, [spec])
        try:
            listener, sender = listening.all_made(), sending.all_made()
            if isinstance(listener, str) or isinstance(sender, str):
                problem = listener if isinstance(listener, str) else sender
                return _failed(FailureKind.TOOL_FAILED, str(problem))
            return await _push(listener[0], sender[0], address, self._settings.duration)
        finally:
            listening.close()
            sending.close()


async def _push(
    listener: socket.socket, sender: socket.socket, address: str, duration_s: float
) -> BandwidthReading:
    """Pushes bytes from `sender` to `listener`'s peer for `duration_s`."""
    loop = asyncio.get_running_loop()
    try:
        listener.bind((address, 0))
        listener.listen(1)
    except OSError as exc:
        return _failed(FailureKind.TOOL_FAILED, f"listen: {exc.strerror or exc}")
    port = listener.getsockname()[1]
    try:
        async with asyncio.timeout(2.0):
            accepting = asyncio.ensure_future(loop.sock_accept(listener))
            try:
                await loop.sock_connect(sender, (address, port))
                receiver, _ = await accepting
            finally:
                accepting.cancel()
    except TimeoutError:
        return _failed(FailureKind.TIMEOUT, "connect timed out")
    except ConnectionRefusedError:
        return _failed(FailureKind.CONNECTION_REFUSED, "connection refused")
    except OSError as exc:
        return _failed(FailureKind.NO_ROUTE, f"connect: {exc.strerror or exc}")

    receiver.setblocking(False)
    received = 0
    started = time.perf_counter()
    chunk = bytes(_CHUNK)

    async def send() -> None:
        try:
            while time.perf_counter() - started < duration_s:
                await loop.sock_sendall(sender, chunk)
        finally:
            sender.shutdown(socket.SHUT_WR)

    async def receive() -> None:
        nonlocal received
        while data := await loop.sock_recv(receiver, 1 << 20):
            received += len(data)

    try:
        async with asyncio.timeout(duration_s + 5):
            await asyncio.gather(send(), receive())
    except TimeoutError:
        return _failed(FailureKind.TIMEOUT, "the transfer stalled", reached=True)
    except OSError as exc:
        detail = f"transfer: {exc.strerror or exc}"
        return _failed(FailureKind.TOOL_FAILED, detail, reached=True)
    finally:
        receiver.close()
    elapsed = time.perf_counter() - started
    bps = received * 8 / elapsed
    return BandwidthReading(bps, None, None, f"{bps / 1e6:.1f} Mbit/s", True)
