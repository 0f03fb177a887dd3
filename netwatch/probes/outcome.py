"""The shape every probe result takes, whatever tool or engine produced it.

Three outcomes only: the destination was reached; the network said no
(timeout, refused, no route); or netwatch could not measure, with a reason.
Could-not-measure is never folded into unreachable.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from enum import StrEnum


class ProbeKind(StrEnum):
    PING = "ping"
    TCP = "tcp"
    DNS = "dns"
    HTTP = "http"


# The probes that decide whether a pair is reachable. DNS and HTTP say
# something else (is the name known, does the service answer) and are
# judged on their own.
REACHABILITY_PROBES = frozenset({ProbeKind.PING, ProbeKind.TCP})


class Outcome(StrEnum):
    OK = "ok"
    UNREACHABLE = "unreachable"
    UNMEASURED = "unmeasured"


class Reason(StrEnum):
    """Why a probe was unreachable or could not measure."""

    # The network answered no.
    NO_REPLY = "no_reply"
    HOST_UNREACHABLE = "host_unreachable"
    NO_ROUTE = "no_route"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    NOT_FOUND = "not_found"
    # netwatch could not measure.
    PERMISSION_DENIED = "permission_denied"
    DNS_RESOLUTION = "dns_resolution"
    TOOL_MISSING = "tool_missing"
    TOOL_UNSUPPORTED_OPTION = "tool_unsupported_option"
    TOOL_FAILED = "tool_failed"
    PARSE_ERROR = "parse_error"
    OUTPUT_TOO_LARGE = "output_too_large"
    BAD_RESPONSE = "bad_response"
    # Reached (a resolver, a server that accepted the connection) but no
    # answer in time: the network carried the question.
    NO_ANSWER = "no_answer"
    ENGINE_UNSUPPORTED = "engine_unsupported"
    EXEC_NOT_STARTED = "exec_not_started"
    EXEC_FAILED = "exec_failed"
    EXEC_TIMEOUT = "exec_timeout"
    SOURCE_PAUSED = "source_paused"
    SOURCE_GONE = "source_gone"
    DESTINATION_PAUSED = "destination_paused"
    ENGINE_UNAVAILABLE = "engine_unavailable"


# How tools say there is no way to the address: the C libraries' words for
# ENETUNREACH and EHOSTUNREACH, glibc's ("Network is unreachable", "No route
# to host") and musl's, which Alpine and BusyBox builds print ("Network
# unreachable", "Host is unreachable"). Lower case, to find in lowered text.
NO_ROUTE_WORDS = (
    "network is unreachable",
    "no route to host",
    "network unreachable",
    "host is unreachable",
)

# Reasons that mean the network refused the probe; all others mean netwatch
# could not measure.
NETWORK_REASONS = frozenset(
    {
        Reason.NO_REPLY,
        Reason.HOST_UNREACHABLE,
        Reason.NO_ROUTE,
        Reason.REFUSED,
        Reason.TIMEOUT,
        Reason.NOT_FOUND,
    }
)


@dataclass(frozen=True)
class ProbeResult:
    """One measurement of one probe, from one source to one target address."""

    probe: ProbeKind
    src: str
    dst: str
    address: str
    network: str | None
    outcome: Outcome
    reason: Reason | None
    detail: str
    at: float
    # ping
    sent: int = 0
    received: int = 0
    rtt_samples_s: tuple[float, ...] = ()
    # tcp, http
    port: int | None = None
    connect_s: float | None = None
    # dns: the lookup's time and the addresses it gave; http: the status
    # code and the time to the response's first byte
    elapsed_s: float | None = None
    answers: tuple[str, ...] = ()
    status: int | None = None

    @property
    def target(self) -> str:
        if self.port is None:
            return self.address
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


def outcome_for(reason: Reason | None) -> Outcome:
    """The outcome a failure reason implies; no reason means success."""
    if reason is None:
        return Outcome.OK
    if reason in NETWORK_REASONS:
        return Outcome.UNREACHABLE
    return Outcome.UNMEASURED


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` with control characters (terminal escapes among them) shown as
    `?`: tool output is quoted to terminals and logs, never obeyed."""
    return _CONTROL.sub("?", text)


def first_line(text: str, limit: int = 200) -> str:
    """The first non-empty line of tool output, printable, cut to `limit`."""
    for line in text.splitlines():
        line = printable(line.strip())
        if line:
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return ""


@dataclass(frozen=True)
class ProbeRequest:
    """One thing to measure from a source: an address, and a port for tcp;
    for dns the address is the name to look up; for http, a path too."""

    probe: ProbeKind
    dst: str
    address: str
    network: str | None
    port: int | None = None
    path: str | None = None


def unmeasured(
    src: str, request: ProbeRequest, reason: Reason, detail: str
) -> ProbeResult:
    """The result for a request netwatch could not measure, and why."""
    return ProbeResult(
        probe=request.probe,
        src=src,
        dst=request.dst,
        address=request.address,
        network=request.network,
        port=request.port,
        outcome=Outcome.UNMEASURED,
        reason=reason,
        detail=detail,
        at=time.time(),
    )
