"""The exec payloads: the probe runner script, and the toolbox check.

One exec per source container per round runs `runner.sh`, which starts every
probe job of that source at once and prints one framed record per job. The
toolbox check runs once per container to learn which tools it has. Both are
fixed scripts; every value reaches them as a positional parameter.

Pure: argv builders and output parsers only.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType

from netwatch.probes.ping import PingVariant
from netwatch.probes.tcp import NcVariant, detect_nc_variant

RUNNER_SCRIPT = resources.files("netwatch.probes").joinpath("runner.sh").read_text()
DONE_MARKER = b"\n@@done\n"
_WATCHDOG_MARKER = b"\n@@watchdog\n"
_UNIT_SEPARATOR = b"\x1f"
_RECORD_HEADER = re.compile(rb"\n@@nw (\S+) (\d+) (\S+) (\S+)\n")
_EXIT_CODE = re.compile(rb"\x1f(\d{1,3})\x1f")


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


def runner_argv(jobs: Sequence[Job], *, watchdog_s: int, clock: bool) -> list[str]:
    """`sh -c RUNNER netwatch WATCHDOG CLOCK [ID N ARGV...]...`."""
    argv = ["sh", "-c", RUNNER_SCRIPT, "netwatch", str(watchdog_s)]
    argv.append("date" if clock else "none")
    for job in jobs:
        argv += [job.id, str(len(job.argv)), *job.argv]
    return argv


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _elapsed(t0: bytes, t1: bytes) -> float | None:
    if not (t0.isdigit() and t1.isdigit()):
        return None
    elapsed_ns = int(t1) - int(t0)
    return elapsed_ns / 1e9 if elapsed_ns >= 0 else None


def parse_runner_output(stdout: bytes, stderr: bytes) -> RunnerOutput:
    """Reads the framed records; a record whose length or end is wrong is
    reported as damaged, never half-read."""
    records: dict[str, JobOutput] = {}
    damaged: dict[str, str] = {}
    for header in _RECORD_HEADER.finditer(stdout):
        job_id = _decode(header.group(1))
        length = int(header.group(2))
        body_start = header.end()
        end_marker = b"\n@@end " + header.group(1) + b"\n"
        end = stdout.find(end_marker, body_start)
        if end < 0:
            damaged[job_id] = "record has no end marker"
            continue
        body = stdout[body_start:end]
        if len(body) != length and len(_decode(body)) != length:
            damaged[job_id] = f"record holds {len(body)} bytes, announced {length}"
            continue
        exit_code = _EXIT_CODE.search(body)
        if exit_code is None:
            damaged[job_id] = "record has no exit code"
            continue
        records[job_id] = JobOutput(
            stdout=_decode(body[: exit_code.start()]),
            stderr=_decode(body[exit_code.end() :]),
            exit_code=int(exit_code.group(1)),
            elapsed_s=_elapsed(header.group(3), header.group(4)),
        )
    return RunnerOutput(
        records=MappingProxyType(records),
        damaged=MappingProxyType(damaged),
        watchdog_fired=_WATCHDOG_MARKER in stderr,
        finished=DONE_MARKER in stdout,
    )


# The toolbox check: which probe tools this container has, and which variant.
TOOLBOX_SCRIPT = r"""
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
"""
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


def toolbox_argv() -> list[str]:
    return ["sh", "-c", TOOLBOX_SCRIPT]


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
