"""The exec engine: probes run by `docker exec` inside the source container.

One exec per source and round runs every probe of that source at once (see
runner.sh); a global semaphore caps how many execs run together, since an exec
is the engine's most expensive call. What tools each container has is learned
once (the toolbox check) and remembered, so a container without tools is not
asked again every round.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace

import structlog

from netwatch.config import ProbeSettings
from netwatch.containers import ContainerInfo
from netwatch.docker_api import DockerClient, ExecOutput
from netwatch.errors import (
    ContainerGoneError,
    ContainerNotRunningError,
    DockerError,
    EngineUnavailableError,
)
from netwatch.metrics import SelfMetrics
from netwatch.probes.outcome import (
    ProbeKind,
    ProbeRequest,
    ProbeResult,
    Reason,
    first_line,
    outcome_for,
    unmeasured,
)
from netwatch.probes.ping import parse_ping_output, ping_argv
from netwatch.probes.script import (
    NO_SHELL,
    TOOLBOX_DONE,
    Job,
    JobOutput,
    RunnerOutput,
    Toolbox,
    done_marker,
    new_nonce,
    parse_runner_output,
    parse_toolbox,
    runner_argv,
    toolbox_argv,
    unanswered,
)
from netwatch.probes.tcp import NcVariant, parse_nc_output, tcp_argv

OUTPUT_CAP_BYTES = 1 << 20
# Exit codes of a tool ended by TERM or KILL (128 + signal).
_KILLED = (143, 137)
TOOLBOX_DEADLINE_S = 5.0
_TOOLBOX_JOBS = 8
# The probe runner's watchdog fires this long after the slowest tool's own
# deadline; netwatch stops waiting this long after that.
WATCHDOG_MARGIN_S = 1
CLIENT_MARGIN_S = 0.5

log = structlog.get_logger("netwatch.exec")


def classify_exec_failure(output: ExecOutput) -> tuple[Reason, str] | None:
    """Says why an exec produced nothing usable, or None if it ran.

    Covers the engine failing to start the command (`sh` missing in a
    distroless image: exit 126 or 127 with the runtime's message) and an exec
    that never started at all (no exit code, not running, no pid).
    """
    if b"\n@@" in output.stdout:
        return None  # the command ran: any words below are a tool's own
    text = (output.stdout + output.stderr).decode("utf-8", errors="replace")
    lowered = text.lower()
    if "oci runtime exec failed" in lowered or "exec failed" in lowered:
        if (
            "executable file not found" in lowered
            or "no such file or directory" in lowered
        ):
            return Reason.TOOL_MISSING, f"no shell in the container: {first_line(text)}"
        return Reason.EXEC_FAILED, first_line(text)
    never_ran = output.exit_code is None and not output.running and output.pid == 0
    if never_ran and not output.timed_out:
        return Reason.EXEC_NOT_STARTED, "the engine never started the exec"
    return None


class JobBudget:
    """Bounds the probe processes running at once inside containers,
    host-wide. Every probe job is a process (and its shells) that the host
    must start within the probe's deadline: a round that starts thousands
    at once on a small machine starts them late, and they are cut off as
    timeouts. A run waits for room for all its jobs; a run larger than the
    whole budget waits until nothing else runs."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._used = 0
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def taken(self, jobs: int) -> AsyncIterator[None]:
        async with self._changed:
            await self._changed.wait_for(
                lambda: self._used == 0 or self._used + jobs <= self._limit
            )
            self._used += jobs
        try:
            yield
        finally:
            async with self._changed:
                self._used -= jobs
                self._changed.notify_all()


@dataclass(frozen=True)
class _Known:
    toolbox: Toolbox
    learned_at: float


class ExecEngine:
    """Runs probe requests inside source containers through docker exec."""

    name = "exec"

    def __init__(
        self,
        client: DockerClient,
        settings: ProbeSettings,
        *,
        max_in_flight: int = 64,
        metrics: SelfMetrics,
    ) -> None:
        self._client = client
        self._settings = settings
        self._slots = asyncio.Semaphore(max_in_flight)
        self._budget = JobBudget(settings.parallel_jobs)
        self._metrics = metrics
        self._toolboxes: dict[str, _Known] = {}

    def forget(self, container_id: str) -> None:
        """Drops what is known of a container (removed, or restarted)."""
        self._toolboxes.pop(container_id, None)

    def toolbox_of(self, container_id: str) -> Toolbox | None:
        known = self._toolboxes.get(container_id)
        return known.toolbox if known else None

    async def probe_source(
        self, src: ContainerInfo, requests: Sequence[ProbeRequest]
    ) -> list[ProbeResult]:
        """Measures every request from `src`; always one result per request."""
        if not requests:
            return []
        try:
            toolbox = await self._toolbox(src)
        except _ExecUnusable as unusable:
            return [
                unmeasured(src.id, r, unusable.reason, unusable.detail)
                for r in requests
            ]
        if not toolbox.shell:
            return [
                unmeasured(src.id, r, Reason.TOOL_MISSING, toolbox.notes[0])
                for r in requests
            ]

        jobs: dict[str, tuple[ProbeRequest, Job]] = {}
        results: list[ProbeResult] = []
        for index, request in enumerate(requests):
            argv = self._argv(toolbox, request)
            if isinstance(argv, ProbeResult):
                results.append(replace(argv, src=src.id))
                continue
            job_id = f"j{index}"
            jobs[job_id] = (request, Job(job_id, tuple(argv)))
        if not jobs:
            return results

        deadline = max(self._deadline(request.probe) for request, _ in jobs.values())
        watchdog = math.ceil(deadline) + WATCHDOG_MARGIN_S if toolbox.sleep else 0
        nonce = new_nonce()
        argv = runner_argv(
            [job for _, job in jobs.values()],
            watchdog_s=watchdog,
            clock=toolbox.clock,
            nonce=nonce,
        )
        try:
            async with self._budget.taken(len(jobs)):
                output = await self._exec(
                    src,
                    argv,
                    deadline + WATCHDOG_MARGIN_S + CLIENT_MARGIN_S,
                    done=done_marker(nonce),
                )
        except _ExecUnusable as unusable:
            return results + [
                unmeasured(src.id, request, unusable.reason, unusable.detail)
                for request, _ in jobs.values()
            ]

        failure = classify_exec_failure(output)
        if failure is not None:
            if failure[0] is Reason.TOOL_MISSING:
                self._remember(src.id, NO_SHELL)
            return results + [
                unmeasured(src.id, request, *failure) for request, _ in jobs.values()
            ]

        runner = parse_runner_output(output.stdout, output.stderr, nonce)
        now = time.time()
        for job_id, (request, _) in jobs.items():
            try:
                result = self._interpret(src, request, job_id, runner, output, now)
            except (ValueError, OverflowError) as exc:
                # A parser met something it did not foresee: this job only.
                detail = f"unreadable tool output: {type(exc).__name__}: {exc}"
                result = unmeasured(
                    src.id, request, Reason.PARSE_ERROR, first_line(detail)
                )
            if result.reason is Reason.TOOL_UNSUPPORTED_OPTION:
                self._downgrade(src.id, toolbox, result)
            results.append(result)
        return results

    async def run_tool(
        self, src: ContainerInfo, argv: Sequence[str], deadline_s: float
    ) -> JobOutput | tuple[Reason, str]:
        """Runs one tool in `src` under the probe runner's watchdog, which
        ends it (TERM, then KILL) `deadline_s` after it starts, whatever the
        tool does: its output, or why it could not run."""
        try:
            toolbox = await self._toolbox(src)
        except _ExecUnusable as unusable:
            return unusable.reason, unusable.detail
        if not toolbox.shell:
            return Reason.TOOL_MISSING, toolbox.notes[0]
        nonce = new_nonce()
        watchdog = max(1, math.ceil(deadline_s)) if toolbox.sleep else 0
        runner = runner_argv(
            [Job("t", tuple(argv))], watchdog_s=watchdog, clock=False, nonce=nonce
        )
        try:
            output = await self._exec(
                src,
                runner,
                deadline_s + WATCHDOG_MARGIN_S + 2 + CLIENT_MARGIN_S,
                done=done_marker(nonce),
            )
        except _ExecUnusable as unusable:
            return unusable.reason, unusable.detail
        failure = classify_exec_failure(output)
        if failure is not None:
            return failure
        parsed = parse_runner_output(output.stdout, output.stderr, nonce)
        record = parsed.records.get("t")
        if record is None:
            return _missing_record("t", parsed, output)
        return record

    def _deadline(self, probe: ProbeKind) -> float:
        if probe is ProbeKind.PING:
            return self._settings.ping.deadline
        return self._settings.tcp.deadline

    def _argv(self, toolbox: Toolbox, request: ProbeRequest) -> list[str] | ProbeResult:
        if request.probe is ProbeKind.PING and toolbox.ping is not None:
            return ping_argv(toolbox.ping, self._settings.ping, request.address)
        if request.probe is ProbeKind.TCP and toolbox.nc is not None:
            assert request.port is not None
            return tcp_argv(
                toolbox.nc, self._settings.tcp, request.address, request.port
            )

        if request.probe in (ProbeKind.DNS, ProbeKind.HTTP):
            detail = f"{request.probe} probes run from namespace sockets only"
            return unmeasured("", request, Reason.ENGINE_UNSUPPORTED, detail)
        tool = "ping" if request.probe is ProbeKind.PING else "nc"
        notes = [note for note in toolbox.notes if note.startswith(f"{tool}:")]
        detail = notes[-1] if notes else f"no {tool} in the container"
        return unmeasured("", request, Reason.TOOL_MISSING, detail)

    def _interpret(
        self,
        src: ContainerInfo,
        request: ProbeRequest,
        job_id: str,
        runner: RunnerOutput,
        output: ExecOutput,
        now: float,
    ) -> ProbeResult:
        record = runner.records.get(job_id)
        if record is None:
            reason, detail = _missing_record(job_id, runner, output)
            return unmeasured(src.id, request, reason, detail)
        if runner.watchdog_fired and record.exit_code in _KILLED:
            detail = (
                "the tool overran its deadline; the probe runner's watchdog ended it"
            )
            return unmeasured(src.id, request, Reason.EXEC_TIMEOUT, detail)
        if request.probe is ProbeKind.PING:
            return _ping_result(src.id, request, record, now)
        return _tcp_result(src.id, request, record, now)

    async def _toolbox(self, src: ContainerInfo) -> Toolbox:
        known = self._toolboxes.get(src.id)
        fresh_for = self._settings.tool_recheck_interval
        if known is not None and (
            known.toolbox.ping is not None
            or known.toolbox.nc is not None
            or time.monotonic() - known.learned_at < fresh_for
        ):
            return known.toolbox

        # The check runs a handful of processes: it counts against the budget.
        async with self._budget.taken(_TOOLBOX_JOBS):
            output = await self._exec(
                src,
                toolbox_argv(int(TOOLBOX_DEADLINE_S) - 1),
                TOOLBOX_DEADLINE_S,
                done=TOOLBOX_DONE,
            )
        failure = classify_exec_failure(output)
        if failure is not None and failure[0] is Reason.TOOL_MISSING:
            toolbox = NO_SHELL
        elif failure is not None:
            raise _ExecUnusable(*failure)
        else:
            parsed = parse_toolbox(output.stdout.decode("utf-8", errors="replace"))
            if parsed is None:
                seen = first_line(output.stderr.decode("utf-8", errors="replace"))
                # Remembered, so a hanging tool is not asked again every round.
                toolbox = unanswered(seen or "its tools did not answer in time")
            else:
                toolbox = parsed
        self._remember(src.id, toolbox)
        log.debug(
            "exec.toolbox_learned",
            src=src.name,
            ping=toolbox.ping,
            nc=toolbox.nc,
            clock=toolbox.clock,
            notes=list(toolbox.notes),
        )
        return toolbox

    def _remember(self, container_id: str, toolbox: Toolbox) -> None:
        self._toolboxes[container_id] = _Known(toolbox, time.monotonic())

    def _downgrade(
        self, container_id: str, toolbox: Toolbox, result: ProbeResult
    ) -> None:
        """A tool rejected its options: use the fallback, or stop using it."""
        if result.probe is ProbeKind.TCP:
            fallback = (
                NcVariant.NCAT_SEND_ONLY if toolbox.nc is NcVariant.NCAT else None
            )
            note = f"nc: rejected netwatch's options: {result.detail}"
            toolbox = replace(toolbox, nc=fallback, notes=(*toolbox.notes, note))
        else:
            note = f"ping: rejected netwatch's options: {result.detail}"
            toolbox = replace(toolbox, ping=None, notes=(*toolbox.notes, note))
        self._remember(container_id, toolbox)

    async def _exec(
        self, src: ContainerInfo, argv: list[str], deadline: float, *, done: bytes
    ) -> ExecOutput:
        async with self._slots:
            try:
                output = await self._client.exec(
                    src.id,
                    argv,
                    deadline_s=deadline,
                    output_cap=OUTPUT_CAP_BYTES,
                    done_marker=done,
                )
            except ContainerNotRunningError as exc:
                self._metrics.execs.labels(result="refused").inc()
                paused = "paused" in str(exc).lower()
                reason = Reason.SOURCE_PAUSED if paused else Reason.SOURCE_GONE
                raise _ExecUnusable(reason, str(exc)) from exc
            except ContainerGoneError as exc:
                self._metrics.execs.labels(result="refused").inc()
                raise _ExecUnusable(Reason.SOURCE_GONE, str(exc)) from exc
            except EngineUnavailableError as exc:
                self._metrics.execs.labels(result="error").inc()
                raise _ExecUnusable(Reason.ENGINE_UNAVAILABLE, str(exc)) from exc
            except DockerError as exc:
                self._metrics.execs.labels(result="error").inc()
                raise _ExecUnusable(Reason.EXEC_FAILED, str(exc)) from exc
        self._metrics.execs.labels(result="timeout" if output.timed_out else "ok").inc()
        self._metrics.exec_duration.observe(output.duration_s)
        return output


class _ExecUnusable(Exception):
    """An exec could not run; every request it carried is unmeasured."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _missing_record(
    job_id: str, runner: RunnerOutput, output: ExecOutput
) -> tuple[Reason, str]:
    if output.truncated:
        return Reason.OUTPUT_TOO_LARGE, f"output passed {OUTPUT_CAP_BYTES} bytes"
    if job_id in runner.damaged:
        return Reason.PARSE_ERROR, f"damaged output: {runner.damaged[job_id]}"
    if runner.watchdog_fired:
        return Reason.EXEC_TIMEOUT, "killed by the probe runner's watchdog"
    if output.timed_out:
        return Reason.EXEC_TIMEOUT, f"no answer within {output.duration_s:.1f}s"
    stderr = first_line(output.stderr.decode("utf-8", errors="replace"))
    return (
        Reason.EXEC_FAILED,
        f"no result (exit {output.exit_code}): {stderr or 'no output'}",
    )


def _ping_result(
    src: str, request: ProbeRequest, record: JobOutput, now: float
) -> ProbeResult:
    parsed = parse_ping_output(record.stdout, record.stderr, record.exit_code)
    return ProbeResult(
        probe=request.probe,
        src=src,
        dst=request.dst,
        address=request.address,
        network=request.network,
        outcome=outcome_for(parsed.reason),
        reason=parsed.reason,
        detail=parsed.detail,
        at=now,
        sent=parsed.transmitted or 0,
        received=parsed.received or 0,
        rtt_samples_s=tuple(sample / 1000 for sample in parsed.rtt_samples_ms),
    )


def _tcp_result(
    src: str, request: ProbeRequest, record: JobOutput, now: float
) -> ProbeResult:
    reason, detail = parse_nc_output(record.stdout, record.stderr, record.exit_code)
    return ProbeResult(
        probe=request.probe,
        src=src,
        dst=request.dst,
        address=request.address,
        network=request.network,
        port=request.port,
        outcome=outcome_for(reason),
        reason=reason,
        detail=detail,
        at=now,
        connect_s=record.elapsed_s if reason is None else None,
    )
