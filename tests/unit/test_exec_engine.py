"""How an exec's own failures are read: no shell, never started, framing."""

from __future__ import annotations

import asyncio

from aiodocker.stream import _ExecParser

from netwatch.docker_api import ExecOutput
from netwatch.probes.exec_engine import JobBudget, classify_exec_failure
from netwatch.probes.outcome import Reason
from netwatch.probes.ping import parse_ping_output
from tests.conftest import load_cases

CASES = load_cases()


def exec_output(
    stdout: bytes = b"",
    stderr: bytes = b"",
    exit_code: int | None = 0,
    running: bool = False,
    pid: int = 123,
    timed_out: bool = False,
) -> ExecOutput:
    return ExecOutput(
        stdout=stdout,
        stderr=stderr,
        exit_code=exit_code,
        running=running,
        pid=pid,
        timed_out=timed_out,
        truncated=False,
        duration_s=0.1,
    )


def test_case_nw014_exit_code_null_never_started():
    """NW-014: ExitCode null, not running, pid 0: the exec never ran; not success."""
    case = CASES["NW-014-exec-inspect-exitcode-null"]
    body = case["input"]["body"]

    failure = classify_exec_failure(
        exec_output(
            exit_code=body["ExitCode"], running=body["Running"], pid=body["Pid"]
        )
    )

    assert failure is not None
    assert failure[0] is Reason.EXEC_NOT_STARTED
    assert failure[0].value == case["expected"]["error_kind"]


def test_a_normal_exit_is_no_failure():
    """An exec that ran and exited is left to the probe parsers."""
    assert classify_exec_failure(exec_output(stdout=b"@@done", exit_code=0)) is None


def test_case_nw016_tool_missing_with_either_exit_code():
    """NW-016: the runtime's 'executable file not found' is a missing tool,
    with exit code 126 or 127; netwatch only execs `sh`, so it says no shell."""
    case = CASES["NW-016-exec-tool-missing"]
    message = case["input"]["stream_stdout"].encode()

    for inspect in (case["input"]["exec_inspect"], case["input"]["alt_exec_inspect"]):
        failure = classify_exec_failure(
            exec_output(stdout=message, exit_code=inspect["ExitCode"], running=False)
        )
        assert failure is not None
        assert failure[0] is Reason.TOOL_MISSING
        assert failure[0].value == case["expected"]["error_kind"]
        assert "no shell" in failure[1]


def test_case_nw016_absolute_path_form():
    """NW-016 note: the 'no such file or directory' form counts as missing too."""
    message = (
        b"OCI runtime exec failed: exec failed: unable to start container process: "
        b'exec: "/bin/sh": stat /bin/sh: no such file or directory: unknown\r\n'
    )

    failure = classify_exec_failure(exec_output(stdout=message, exit_code=126))

    assert failure is not None
    assert failure[0] is Reason.TOOL_MISSING


class _Collected:
    """Stands in for aiodocker's flow-control queue: keeps what it is fed."""

    def __init__(self) -> None:
        self.messages: list[tuple[int, bytes]] = []

    def feed_data(self, message, size):  # type: ignore[no-untyped-def]
        self.messages.append((message.stream, message.data))

    def feed_eof(self) -> None:
        pass

    def set_exception(self, exc: BaseException) -> None:
        raise exc


def test_case_nw017_frames_split_inside_a_header_are_demultiplexed():
    """NW-017: with Tty off, the demultiplexer netwatch uses (aiodocker's)
    buffers a header cut across chunks and keeps stdout and stderr apart."""
    case = CASES["NW-017-exec-stream-framing"]
    collected = _Collected()
    parser = _ExecParser(collected, tty=False)

    for chunk in case["input"]["chunks_hex"]:
        parser.feed_data(bytes.fromhex(chunk))

    stdout = b"".join(
        data for stream, data in collected.messages if stream == 1
    ).decode()
    stderr = b"".join(
        data for stream, data in collected.messages if stream == 2
    ).decode()
    assert stdout == case["expected"]["stdout"]
    assert stderr == case["expected"]["stderr"]
    assert not any(ord(c) < 9 for c in stdout + stderr)
    assert parse_ping_output(stdout, stderr, 1).reason is Reason.PERMISSION_DENIED


def test_a_tools_own_words_never_pass_for_an_exec_failure():
    """Once the runner's records are there, 'exec failed' printed by a tool is
    that tool's output, not the engine failing to start the exec."""
    stdout = (
        b"\n@@nw-abc j0 60 - -\n"
        b"ping: exec failed: no such file or directory\x1f2\x1f\x1f0"
        b"\n@@end-abc j0\n\n@@done-abc\n"
    )

    assert classify_exec_failure(exec_output(stdout=stdout, exit_code=0)) is None


async def test_the_job_budget_bounds_jobs_running_at_once():
    """Runs wait for room for all their jobs; one larger than the budget
    runs alone; nobody waits forever."""
    budget = JobBudget(10)
    running = 0
    peak = 0
    alone: list[bool] = []

    async def run(jobs: int) -> None:
        nonlocal running, peak
        async with budget.taken(jobs):
            running += jobs
            peak = max(peak, running)
            if jobs > 10:
                alone.append(running == jobs)
            await asyncio.sleep(0.01)
            running -= jobs

    await asyncio.wait_for(
        asyncio.gather(*(run(jobs) for jobs in (4, 4, 4, 25, 3, 7, 1))), 5
    )

    assert peak == 25
    assert alone == [True]
    assert running == 0


async def test_the_job_budget_never_exceeds_its_limit_for_runs_that_fit():
    budget = JobBudget(10)
    running = 0
    peak = 0

    async def run(jobs: int) -> None:
        nonlocal running, peak
        async with budget.taken(jobs):
            running += jobs
            peak = max(peak, running)
            await asyncio.sleep(0.01)
            running -= jobs

    await asyncio.gather(*(run(jobs) for jobs in (6, 5, 3, 9, 2, 2, 8, 1)))

    assert peak <= 10
