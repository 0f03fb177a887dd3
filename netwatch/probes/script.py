"""The exec payloads: the probe runner script, and the toolbox check.

One exec per source container per round runs `runner.sh`, which starts every
probe job of that source at once and prints one framed record per job. The
toolbox check runs once per container to learn which tools it has. Both are
fixed scripts; every value reaches them as a positional parameter.

Pure: argv builders and output parsers only.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType

from netwatch.probes.ping import PingVariant
from netwatch.probes.tcp import NcVariant, detect_nc_variant

RUNNER_SCRIPT = resources.files("netwatch.probes").joinpath("runner.sh").read_text()
# The fields that end a record: US exit-code US stderr US length-of-stderr.
_STDERR_LENGTH = re.compile(rb"\x1f(\d{1,9})\Z")
_EXIT_CODE = re.compile(rb"\x1f(\d{1,3})\x1f\Z")


def process_name() -> str:
    """What the probe scripts are called inside containers (`$0`): it names
    the netwatch process that started them, so `docker top` tells whose they
    are when several netwatch instances watch one engine."""
    return f"netwatch-{os.getpid()}"


def new_nonce() -> str:
    """A marker no tool output will carry by chance."""
    return secrets.token_hex(8)


def done_marker(nonce: str) -> bytes:
    return f"\n@@done-{nonce}\n".encode()


@dataclass(frozen=True)
class Job:
    """One tool run inside the source container."""

    id: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class JobOutput:
    stdout: str
    stderr: str
    exit_code: int
    # Wall time around the tool, when the container has a nanosecond clock.
    elapsed_s: float | None


@dataclass(frozen=True)
class RunnerOutput:
    records: Mapping[str, JobOutput]
    # Records that arrived damaged, by job id, with what was wrong.
    damaged: Mapping[str, str]
    watchdog_fired: bool
    finished: bool


def runner_argv(
    jobs: Sequence[Job], *, watchdog_s: int, clock: bool, nonce: str
) -> list[str]:
    """`sh -c RUNNER netwatch WATCHDOG CLOCK NONCE [ID N ARGV...]...`."""
    argv = ["sh", "-c", RUNNER_SCRIPT, process_name(), str(watchdog_s)]
    argv += ["date" if clock else "none", nonce]
    for job in jobs:
        argv += [job.id, str(len(job.argv)), *job.argv]
    return argv


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _elapsed(t0: bytes, t1: bytes) -> float | None:
    if not (re.fullmatch(rb"\d{1,20}", t0) and re.fullmatch(rb"\d{1,20}", t1)):
        return None
    elapsed_ns = int(t1) - int(t0)
    return elapsed_ns / 1e9 if elapsed_ns >= 0 else None


def _fields(body: bytes) -> tuple[bytes, int, bytes] | str:
    """Splits a record body into stdout, exit code and stderr, from the end,
    so that nothing a tool prints can move the fields; or says what is wrong."""
    length = _STDERR_LENGTH.search(body)
    if length is None:
        return "record has no stderr length"
    stderr_end = length.start()
    stderr_start = stderr_end - int(length.group(1))
    if stderr_start < 0:
        return "record's stderr length is past its start"
    exit_code = _EXIT_CODE.search(body, 0, stderr_start)
    if exit_code is None:
        return "record has no exit code"
    return (
        body[: exit_code.start()],
        int(exit_code.group(1)),
        body[stderr_start:stderr_end],
    )


def parse_runner_output(stdout: bytes, stderr: bytes, nonce: str) -> RunnerOutput:
    """Reads the framed records of one run; a record whose length or end is
    wrong, or whose id appears twice, is reported damaged, never half-read."""
    token = re.escape(nonce.encode())
    header_pattern = re.compile(
        rb"\n@@nw-" + token + rb" (\S{1,32}) (\d{1,9}) (\S{1,64}) (\S{1,64})\n"
    )
    records: dict[str, JobOutput] = {}
    damaged: dict[str, str] = {}
    seen: set[str] = set()
    for header in header_pattern.finditer(stdout):
        job_id = _decode(header.group(1))
        if job_id in seen:
            records.pop(job_id, None)
            damaged[job_id] = "two records claim this job"
            continue
        seen.add(job_id)
        length = int(header.group(2))
        body_start = header.end()
        end_marker = b"\n@@end-" + nonce.encode() + b" " + header.group(1) + b"\n"
        end = stdout.find(end_marker, body_start)
        if end < 0:
            damaged[job_id] = "record has no end marker"
            continue
        body = stdout[body_start:end]
        if len(body) != length and len(_decode(body)) != length:
            damaged[job_id] = f"record holds {len(body)} bytes, announced {length}"
            continue
        fields = _fields(body)
        if isinstance(fields, str):
            damaged[job_id] = fields
            continue
        tool_stdout, exit_code, tool_stderr = fields
        records[job_id] = JobOutput(
            stdout=_decode(tool_stdout),
            stderr=_decode(tool_stderr),
            exit_code=exit_code,
            elapsed_s=_elapsed(header.group(3), header.group(4)),
        )
    return RunnerOutput(
        records=MappingProxyType(records),
        damaged=MappingProxyType(damaged),
        watchdog_fired=f"\n@@watchdog-{nonce}\n".encode() in stderr,
        finished=done_marker(nonce) in stdout,
    )


# The toolbox check: which probe tools this container has, and which variant.
TOOLBOX_SCRIPT = r"""
# $1: whole seconds after which everything this check started is killed.
watchdog_pid=
if [ "$1" -gt 0 ] && command -v sleep >/dev/null 2>&1; then
    (
        trap 'kill "$sleeper" 2>/dev/null; wait "$sleeper" 2>/dev/null; exit 0' TERM
        sleep "$1" &
        sleeper=$!
        wait "$sleeper"
        kill -9 0
    ) >/dev/null 2>&1 &
    watchdog_pid=$!
fi
for tool in ping nc date sleep; do
    command -v "$tool" >/dev/null 2>&1 && printf '\n@@have %s\n' "$tool"
done
if command -v ping >/dev/null 2>&1; then
    printf '\n@@section ping\n'; ping -V </dev/null 2>&1
fi
if command -v nc >/dev/null 2>&1; then
    printf '\n@@section nc\n'; nc -h </dev/null 2>&1
fi
if command -v date >/dev/null 2>&1; then
    printf '\n@@section date\n'; date +%s%N </dev/null 2>&1
fi
printf '\n@@section end\n'
if [ -n "$watchdog_pid" ]; then
    kill "$watchdog_pid" 2>/dev/null
    wait "$watchdog_pid" 2>/dev/null
fi
"""
TOOLBOX_DONE = b"\n@@section end\n"
_HAVE = re.compile(r"^@@have (\S+)$", re.MULTILINE)
_SECTION = re.compile(r"^@@section (\S+)$", re.MULTILINE)


@dataclass(frozen=True)
class Toolbox:
    """What a container offers netwatch's probes."""

    shell: bool
    ping: PingVariant | None = None
    nc: NcVariant | None = None
    clock: bool = False
    sleep: bool = False
    notes: tuple[str, ...] = ()


NO_SHELL = Toolbox(shell=False, notes=("no shell: sh is not in the container",))


def unanswered(detail: str) -> Toolbox:
    """What is remembered of a container whose toolbox check hung or failed:
    no usable tool, until the check is tried again."""
    note = f"toolbox check gave no answer: {detail}"
    return Toolbox(shell=True, notes=(f"ping: {note}", f"nc: {note}"))


def toolbox_argv(watchdog_s: int) -> list[str]:
    return ["sh", "-c", TOOLBOX_SCRIPT, process_name(), str(watchdog_s)]


def _sections(text: str) -> dict[str, str]:
    marks = list(_SECTION.finditer(text))
    return {
        mark.group(1): text[mark.end() : following.start()].strip()
        for mark, following in itertools.pairwise(marks)
    }


def parse_toolbox(stdout: str) -> Toolbox | None:
    """Reads the toolbox check; None when its output is not whole."""
    if "@@section end" not in stdout:
        return None
    have = set(_HAVE.findall(stdout))
    sections = _sections(stdout)
    notes: list[str] = []

    ping: PingVariant | None = None
    if "ping" in have:
        version = sections.get("ping", "")
        if "iputils" in version:
            ping = PingVariant.IPUTILS
        else:
            # BusyBox and unknown pings get the options both understand.
            ping = PingVariant.BUSYBOX
            if "BusyBox" not in version:
                shown = repr(version[:80])
                notes.append(f"ping: unknown variant, using portable options: {shown}")

    nc: NcVariant | None = None
    if "nc" in have:
        nc = detect_nc_variant(sections.get("nc", ""))
        if nc is None:
            notes.append(f"nc: unrecognised variant: {sections.get('nc', '')[:80]!r}")

    clock_sample = sections.get("date", "")
    return Toolbox(
        shell=True,
        ping=ping,
        nc=nc,
        clock=clock_sample.isdigit() and len(clock_sample) > 12,
        sleep="sleep" in have,
        notes=tuple(notes),
    )
