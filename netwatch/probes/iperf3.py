"""iperf3: the argv of a one-off server and of a client, and a defensive
reader of the client's JSON.

What iperf3 prints is not trusted: an `error` key can come with exit code 0
(3.11 to 3.12), text can follow the JSON, `--json-stream` prints one event
per line, a busy server answers with an error, and the wording of connect
errors changes between versions. Every path ends in a `BandwidthReading`:
a figure, or a failure with a kind and whether the network said no.

Pure: no I/O.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from netwatch.probes.outcome import first_line


class FailureKind(StrEnum):
    SERVER_BUSY = "server_busy"
    CONNECTION_REFUSED = "connection_refused"
    NO_ROUTE = "no_route"
    TIMEOUT = "timeout"
    PORT_IN_USE = "port_in_use"
    TOOL_MISSING = "tool_missing"
    TOOL_FAILED = "tool_failed"
    PARSE_ERROR = "parse_error"
    # The pair cannot be tested now: no address, or a container paused.
    NOT_PROBEABLE = "not_probeable"


# Failures that mean the network said no (the rest: could not measure). A
# refused connection is not among them: the one-off server may not listen
# yet, and whether the path is open is ping's and tcp's to say.
NETWORK_FAILURES = frozenset({FailureKind.NO_ROUTE, FailureKind.TIMEOUT})


@dataclass(frozen=True)
class BandwidthReading:
    """What one iperf3 client run says."""

    bits_per_second: float | None
    retransmits: int | None
    failure: FailureKind | None
    detail: str
    # Whether the control connection reached the server (a busy server
    # was reached).
    reached: bool


# Exit codes of a tool ended by TERM or KILL (128 + signal).
_KILLED = (143, 137)


def server_argv(port: int, idle_timeout_s: int) -> list[str]:
    """A one-off server: it serves one test and exits, and gives up on a
    client that goes quiet."""
    return [
        "iperf3", "-s", "-1", "-p", str(port),
        "--idle-timeout", str(idle_timeout_s), "--rcv-timeout", "5000",
    ]  # fmt: skip


def client_argv(address: str, port: int, duration_s: float) -> list[str]:
    seconds = max(1, math.ceil(duration_s))
    return [
        "iperf3", "-c", address, "-p", str(port), "-J",
        "-t", str(seconds), "--connect-timeout", "2000",
    ]  # fmt: skip


def _first_json_object(text: str) -> dict[str, Any] | None:
    """The JSON object iperf3 printed, ignoring anything around it."""
    start = text.find("{")
    if start < 0:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(text, start)
    except (ValueError, RecursionError):  # RecursionError: absurd nesting
        return None
    return value if isinstance(value, dict) else None


def _stream_events(text: str) -> list[dict[str, Any]]:
    """`--json-stream` output: one JSON event per line."""
    events = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(event, dict) and "event" in event:
            events.append(event)
    return events


def classify_error(message: str) -> tuple[FailureKind, bool]:
    """The kind of an iperf3 error message, and whether the server was
    reached. Matched on stable fragments: the wording around them changes.
    Only a failure to connect speaks of the network; anything else iperf3
    complains of (its options, its results, its control channel) is the
    test failing."""
    lowered = message.lower()
    if "busy" in lowered:
        return FailureKind.SERVER_BUSY, True
    if "address already in use" in lowered:
        return FailureKind.PORT_IN_USE, False
    if "not found" in lowered and "iperf3" in lowered:
        return FailureKind.TOOL_MISSING, False
    if "unable to connect" not in lowered:
        return FailureKind.TOOL_FAILED, "option" not in lowered
    if "connection refused" in lowered:
        return FailureKind.CONNECTION_REFUSED, False
    if "no route" in lowered or "network is unreachable" in lowered:
        return FailureKind.NO_ROUTE, False
    if "timed out" in lowered or "timeout" in lowered:
        return FailureKind.TIMEOUT, False
    return FailureKind.TOOL_FAILED, False


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer of hundreds of digits
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _failure(message: str) -> BandwidthReading:
    kind, reached = classify_error(message)
    return BandwidthReading(None, None, kind, first_line(message), reached)


def parse_client_output(stdout: str, stderr: str, exit_code: int) -> BandwidthReading:
    """Reads an iperf3 client run (`-J` or `--json-stream`)."""
    document = _first_json_object(stdout)
    events = _stream_events(stdout) if document is None or "event" in document else []
    if events:
        errors = [e for e in events if e.get("event") == "error"]
        if errors:
            return _failure(str(errors[0].get("data", "")))
        ends = [e for e in events if e.get("event") == "end"]
        document = ends[-1].get("data") if ends else None
        if not isinstance(document, dict):
            document = None

    if document is None and exit_code in _KILLED:
        detail = "iperf3 overran its deadline: the probe runner's watchdog ended it"
        return BandwidthReading(None, None, FailureKind.TOOL_FAILED, detail, False)
    if document is None:
        said = first_line(stderr) or first_line(stdout)
        if exit_code == 127 or "not found" in said.lower():
            return BandwidthReading(
                None, None, FailureKind.TOOL_MISSING, said or "no iperf3", False
            )
        if said:
            return _failure(said)
        detail = f"no JSON in iperf3's output (exit {exit_code})"
        return BandwidthReading(None, None, FailureKind.PARSE_ERROR, detail, False)

    # An error key wins over the exit code: 3.11 and 3.12 exit 0 with it.
    error = document.get("error")
    if error and not isinstance(error, str):
        detail = "iperf3's error is not text"
        return BandwidthReading(None, None, FailureKind.PARSE_ERROR, detail, False)
    if error:
        return _failure(error)

    end = document.get("end")
    received = end.get("sum_received") if isinstance(end, dict) else None
    sent = end.get("sum_sent") if isinstance(end, dict) else None
    bps = (
        _number(received.get("bits_per_second")) if isinstance(received, dict) else None
    )
    if bps is None:
        detail = "iperf3 reported no received throughput"
        if exit_code != 0:
            detail += f" (exit {exit_code})"
        return BandwidthReading(None, None, FailureKind.PARSE_ERROR, detail, True)
    retransmits = _number(sent.get("retransmits")) if isinstance(sent, dict) else None
    return BandwidthReading(
        bits_per_second=bps,
        retransmits=int(retransmits) if retransmits is not None else None,
        failure=None,
        detail=f"{bps / 1e6:.1f} Mbit/s",
        reached=True,
    )
