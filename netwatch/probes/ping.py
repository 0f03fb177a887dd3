"""The ping probe: argv for each ping variant, and a parser of what it prints.

Both functions are pure. The parser reads iputils and BusyBox output; output
in any other shape is a parse failure that quotes what it saw, never a silent
zero. Errors are classified from the text first (stderr, then stdout) and the
exit code only as a hint, since the variants disagree on exit codes.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from enum import StrEnum

from netwatch.config import PingSettings
from netwatch.probes.outcome import (
    NETWORK_REASONS,
    NO_ROUTE_WORDS,
    Reason,
    first_line,
)


class PingVariant(StrEnum):
    IPUTILS = "iputils"
    BUSYBOX = "busybox"


def _seconds(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def ping_argv(variant: PingVariant, settings: PingSettings, address: str) -> list[str]:
    """The ping command for one address, bounded by its own deadline.

    iputils gets no `-w`: with a deadline it counts replies, not echoes, and
    keeps sending to a silent address until the deadline (ten echoes instead
    of three), which weighs failed runs more in the loss ratio. Its `-c`,
    `-i` and `-W` bound it already. BusyBox keeps `-c` as a count of echoes
    with `-w`, so it gets both.
    """
    deadline = str(int(settings.deadline))
    reply_timeout = str(max(1, round(settings.reply_timeout)))
    family = ["-6"] if ":" in address else []
    if variant is PingVariant.IPUTILS:
        return [
            "ping", *family, "-n",
            "-c", str(settings.count),
            "-i", _seconds(settings.spacing),
            "-W", _seconds(settings.reply_timeout),
            address,
        ]  # fmt: skip
    return [
        "ping", *family,
        "-c", str(settings.count),
        "-i", _seconds(settings.spacing),
        "-W", reply_timeout,
        "-w", deadline,
        address,
    ]  # fmt: skip


@dataclass(frozen=True)
class PingParse:
    """What one ping run printed, read into numbers.

    `reason` is None when at least one reply came back. Statistics fields are
    None when the output carried none (an error before any echo was sent).
    """

    reason: Reason | None
    detail: str
    variant: PingVariant | None = None
    family: str | None = None
    target: str | None = None
    transmitted: int | None = None
    received: int | None = None
    duplicates: int = 0
    errors: int = 0
    rtt_min_ms: float | None = None
    rtt_avg_ms: float | None = None
    rtt_max_ms: float | None = None
    rtt_mdev_ms: float | None = None
    rtt_samples_ms: tuple[float, ...] = ()

    @property
    def loss(self) -> float | None:
        if not self.transmitted or self.received is None:
            return None
        return max(0.0, (self.transmitted - self.received) / self.transmitted)

    @property
    def reachable(self) -> bool | None:
        """True on a reply, False when the network said no, else unknown."""
        if self.reason is None:
            return True
        if self.reason in NETWORK_REASONS:
            return False
        return None


# Numbers as ping prints them; anything longer or odder is not ping output.
_COUNT = r"\d{1,9}"
_MS = r"\d{1,9}(?:\.\d{1,9})?"
_HEADER = re.compile(r"^PING\s+(\S+?)\s*\(([^)\s]+)\)", re.MULTILINE)
_STATS = re.compile(rf"^({_COUNT}) packets transmitted, (.*)$", re.MULTILINE)
_RTT = re.compile(
    r"^(?:rtt|round-trip) min/avg/max(?:/(?:mdev|stddev))? = "
    rf"({_MS})/({_MS})/({_MS})(?:/({_MS}))? ms",
    re.MULTILINE,
)
_REPLY = re.compile(r"^\d+ bytes from .*?\btime[=<](\S*?) ?ms(.*)$", re.MULTILINE)

_PERMISSION = (
    "socket: operation not permitted",
    "permission denied",
    "are you root",
    "cap_net_raw",
)
_DNS = (
    "bad address",
    "name or service not known",
    "temporary failure in name resolution",
    "unknown host",
    "cannot resolve",
    "no address associated with hostname",
)
_NO_ROUTE = (*NO_ROUTE_WORDS, "operation not permitted")
_USAGE = (
    "invalid option",
    "unrecognized option",
    "illegal option",
    "invalid argument",
    "option requires an argument",
    "usage:",
)
_NOT_FOUND = ("not found", "no such file or directory")


def _statistics(line: str) -> tuple[int, int, int] | None:
    """Reads `received`, duplicates and errors from the statistics line."""
    received = duplicates = errors = None
    for part in line.split(","):
        part = part.strip()
        if match := re.fullmatch(rf"({_COUNT}) (?:packets )?received", part):
            received = int(match.group(1))
        elif match := re.fullmatch(rf"\+?({_COUNT}) duplicates", part):
            duplicates = int(match.group(1))
        elif match := re.fullmatch(rf"\+({_COUNT}) errors", part):
            errors = int(match.group(1))
    if received is None:
        return None
    return received, duplicates or 0, errors or 0


def _variant(stdout: str) -> PingVariant | None:
    if "packets received" in stdout or "round-trip min" in stdout:
        return PingVariant.BUSYBOX
    if re.search(r"\bseq=\d", stdout) and "icmp_seq=" not in stdout:
        return PingVariant.BUSYBOX
    if "icmp_seq=" in stdout or "rtt min" in stdout or "bytes of data" in stdout:
        return PingVariant.IPUTILS
    if re.search(r"\d+ received,", stdout):
        return PingVariant.IPUTILS
    return None


def _family(address: str | None) -> str | None:
    if address is None:
        return None
    try:
        return f"ipv{ipaddress.ip_address(address).version}"
    except ValueError:
        return None


def _classify_error(text: str, exit_code: int | None) -> Reason | None:
    lowered = text.lower()
    if any(marker in lowered for marker in _PERMISSION):
        return Reason.PERMISSION_DENIED
    if any(marker in lowered for marker in _DNS):
        return Reason.DNS_RESOLUTION
    if any(marker in lowered for marker in _NO_ROUTE):
        return Reason.NO_ROUTE
    if any(marker in lowered for marker in _USAGE):
        return Reason.TOOL_UNSUPPORTED_OPTION
    if exit_code in (126, 127) or any(marker in lowered for marker in _NOT_FOUND):
        return Reason.TOOL_MISSING
    return None


def parse_ping_output(stdout: str, stderr: str, exit_code: int | None) -> PingParse:
    """Reads iputils or BusyBox ping output into a PingParse."""
    header = _HEADER.search(stdout)
    target = header.group(2) if header else None
    variant, family = _variant(stdout), _family(target)

    stats_match = _STATS.search(stdout)
    stats = _statistics(stats_match.group(2)) if stats_match else None
    if stats_match is None or stats is None:
        reason = _classify_error(f"{stderr}\n{stdout}", exit_code)
        if reason is None:
            seen = first_line(stderr) or first_line(stdout) or "no output"
            reason = Reason.PARSE_ERROR
            detail = f"unrecognised ping output (exit {exit_code}): {seen}"
        else:
            detail = (
                first_line(stderr)
                or first_line(stdout)
                or f"ping printed nothing (exit {exit_code})"
            )
        return PingParse(reason, detail, variant, family, target)

    transmitted = int(stats_match.group(1))
    received, duplicates, errors = stats
    if received > transmitted + duplicates:
        detail = f"more replies than echoes: {first_line(stats_match.group(0))}"
        return PingParse(Reason.PARSE_ERROR, detail, variant, family, target)
    replies = [m for m in _REPLY.finditer(stdout) if "DUP!" not in m.group(2)]
    if any(re.fullmatch(_MS, m.group(1)) is None for m in replies):
        bad = next(m.group(0) for m in replies if re.fullmatch(_MS, m.group(1)) is None)
        detail = f"unreadable reply time: {first_line(bad)}"
        return PingParse(Reason.PARSE_ERROR, detail, variant, family, target)
    samples = tuple(float(m.group(1)) for m in replies)
    rtt = _RTT.search(stdout)
    if received > 0 and rtt is None:
        summary = first_line(stats_match.group(0))
        detail = f"{received} replies but no round-trip line: {summary}"
        return PingParse(Reason.PARSE_ERROR, detail, variant, family, target)

    reason = None
    detail = stats_match.group(0).strip()
    if received == 0:
        lowered = f"{stderr}\n{stdout}".lower()
        if "destination host unreachable" in lowered:
            reason = Reason.HOST_UNREACHABLE
        elif any(words in lowered for words in NO_ROUTE_WORDS):
            reason = Reason.NO_ROUTE
        elif errors or "unreachable" in lowered:
            reason = Reason.HOST_UNREACHABLE
        else:
            reason = Reason.NO_REPLY
        detail = first_line(stderr) or detail

    return PingParse(
        reason=reason,
        detail=detail,
        variant=variant,
        family=family,
        target=target,
        transmitted=transmitted,
        received=received,
        duplicates=duplicates,
        errors=errors,
        rtt_min_ms=float(rtt.group(1)) if rtt else None,
        rtt_avg_ms=float(rtt.group(2)) if rtt else None,
        rtt_max_ms=float(rtt.group(3)) if rtt else None,
        rtt_mdev_ms=float(rtt.group(4)) if rtt and rtt.group(4) else None,
        rtt_samples_ms=samples,
    )
