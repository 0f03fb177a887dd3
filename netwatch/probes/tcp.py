"""The TCP probe: connect to a port the way `nc -z -w` does, with any nc.

Pure functions: `detect_nc_variant` reads `nc -h` output, `tcp_argv` builds
the command for a variant, and `parse_nc_output` reads what it printed. A usage
error is never read as a closed port.
"""

from __future__ import annotations

import re
from enum import StrEnum

from netwatch.config import TcpSettings
from netwatch.probes.outcome import NO_ROUTE_WORDS, Reason, first_line


class NcVariant(StrEnum):
    OPENBSD = "openbsd"
    NCAT = "ncat"
    # Ncat releases that reject -z: connect, send nothing, quit.
    NCAT_SEND_ONLY = "ncat-send-only"
    # BusyBox nc has no -z: it runs a program once connected, and quits.
    BUSYBOX = "busybox"
    # Any other nc whose help lists -z (traditional, GNU netcat).
    GENERIC_Z = "generic-z"


_Z_OPTION = re.compile(r"^\s*-[a-zA-Z]*z\b|\[-[a-zA-Z]*z[a-zA-Z]*\]", re.MULTILINE)


def detect_nc_variant(help_text: str) -> NcVariant | None:
    """Names the nc variant from its help text; None when nothing fits."""
    has_z = _Z_OPTION.search(help_text) is not None
    if "OpenBSD netcat" in help_text:
        return NcVariant.OPENBSD
    if "Ncat" in help_text:
        return NcVariant.NCAT if has_z else NcVariant.NCAT_SEND_ONLY
    if has_z:
        return NcVariant.GENERIC_Z
    if "BusyBox" in help_text and "-e PROG" in help_text:
        return NcVariant.BUSYBOX
    return None


def tcp_argv(
    variant: NcVariant,
    settings: TcpSettings,
    address: str,
    port: int,
) -> list[str]:
    """The connect-only command for one address and port."""
    timeout = str(max(1, round(settings.connect_timeout)))
    if variant in (NcVariant.OPENBSD, NcVariant.NCAT):
        return ["nc", "-n", "-v", "-z", "-w", timeout, address, str(port)]
    if variant is NcVariant.NCAT_SEND_ONLY:
        return ["nc", "-n", "-v", "--send-only", "-w", timeout, address, str(port)]
    if variant is NcVariant.BUSYBOX:
        # -e takes every argument after it, so it comes last; `sh` is there,
        # since the probe runner itself runs in it.
        return ["nc", "-w", timeout, address, str(port), "-e", "sh", "-c", ":"]
    return ["nc", "-v", "-z", "-w", timeout, address, str(port)]


_USAGE = (
    "invalid option",
    "unrecognized option",
    "illegal option",
    "unknown option",
    "option requires an argument",
    "usage:",
    "try `--help'",
)
_REFUSED = re.compile(r"connection refused", re.IGNORECASE)
# "timed out" (OpenBSD, BusyBox) or Ncat's closing "TIMEOUT."
_TIMEOUT = re.compile(r"\btimed out\b|\btimeout\.?\s*$", re.IGNORECASE)
_NO_ROUTE = re.compile(
    "|".join((*map(re.escape, NO_ROUTE_WORDS), "operation not permitted")),
    re.IGNORECASE,
)
_PERMISSION = re.compile(r"permission denied", re.IGNORECASE)
_DNS = re.compile(
    r"name or service not known|could not resolve|bad address", re.IGNORECASE
)


def parse_nc_output(
    stdout: str, stderr: str, exit_code: int | None
) -> tuple[Reason | None, str]:
    """Reads one nc run: None and a summary when connected, else a reason."""
    text = f"{stderr}\n{stdout}"
    lowered = text.lower()
    if exit_code == 0:
        return None, "connected"
    if any(marker in lowered for marker in _USAGE):
        return Reason.TOOL_UNSUPPORTED_OPTION, first_line(stderr) or first_line(stdout)
    if exit_code in (126, 127):
        # The shell's codes for a command it could not find or run.
        return Reason.TOOL_MISSING, first_line(
            text
        ) or f"nc could not run (exit {exit_code})"
    for pattern, reason in (
        (_REFUSED, Reason.REFUSED),
        (_TIMEOUT, Reason.TIMEOUT),
        (_NO_ROUTE, Reason.NO_ROUTE),
        (_PERMISSION, Reason.PERMISSION_DENIED),
        (_DNS, Reason.DNS_RESOLUTION),
    ):
        for line in text.splitlines():
            if pattern.search(line):
                return reason, first_line(line)
    seen = first_line(stderr) or first_line(stdout) or "no output"
    return Reason.PARSE_ERROR, f"unrecognised nc output (exit {exit_code}): {seen}"
