"""A container's interfaces and listening TCP ports, read from /proc.

/proc/PID/net/* shows the network namespace of that process, so netwatch
reads a container's interface counters and listening sockets without
entering its namespace and without exec. Parsers are pure; `read_netstat`
does the reading.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from netwatch.containers import ContainerInfo

_LISTEN = "0A"


@dataclass(frozen=True)
class InterfaceCounters:
    receive_bytes: int
    receive_packets: int
    receive_errors: int
    receive_drops: int
    transmit_bytes: int
    transmit_packets: int
    transmit_errors: int
    transmit_drops: int


@dataclass(frozen=True)
class Netstat:
    interfaces: Mapping[str, InterfaceCounters]
    # TCP ports listening on an address other containers can reach.
    listening: tuple[int, ...]


def parse_net_dev(text: str) -> dict[str, InterfaceCounters]:
    """Reads /proc/net/dev; lines that are not interface rows are skipped."""
    interfaces: dict[str, InterfaceCounters] = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        fields = rest.split()
        if not sep or len(fields) < 16 or not all(f.isdigit() for f in fields[:16]):
            continue
        numbers = [int(f) for f in fields[:16]]
        interfaces[name.strip()] = InterfaceCounters(
            receive_bytes=numbers[0],
            receive_packets=numbers[1],
            receive_errors=numbers[2],
            receive_drops=numbers[3],
            transmit_bytes=numbers[8],
            transmit_packets=numbers[9],
            transmit_errors=numbers[10],
            transmit_drops=numbers[11],
        )
    return interfaces


def _address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The kernel prints addresses as host-order 32-bit words in hex."""
    try:
        raw = bytes.fromhex(hex_address)
    except ValueError:
        return None
    if len(raw) not in (4, 16):
        return None
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(words)


def parse_listening(text: str) -> set[int]:
    """TCP ports in LISTEN state in /proc/net/tcp or tcp6, leaving out
    sockets bound to loopback (no other container can reach them)."""
    ports: set[int] = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != _LISTEN:
            continue
        address_hex, _, port_hex = fields[1].partition(":")
        address = _address(address_hex)
        try:
            port = int(port_hex, 16)
        except ValueError:
            continue
        if address is None or address.is_loopback or not 0 < port < 65536:
            continue
        ports.add(port)
    return ports


def still_the_containers(pid_dir: Path, container_id: str) -> bool:
    """Whether process `pid_dir` still belongs to the container: its cgroup
    path names the container's id (Docker's layouts all do, from the host
    and from a sidecar alike). A container that exited leaves its PID free
    for any process, and that process's namespace is not the container's."""
    try:
        return container_id in (pid_dir / "cgroup").read_text(errors="replace")
    except OSError:
        return False


def read_netstat(pid: int, proc: Path = Path("/proc")) -> Netstat | None:
    """The namespace of `pid` as /proc shows it; None when not visible."""
    base = proc / str(pid) / "net"
    try:
        interfaces = parse_net_dev((base / "dev").read_text())
        listening = parse_listening((base / "tcp").read_text())
    except OSError:
        return None
    with contextlib.suppress(OSError):  # no IPv6 in this namespace
        listening |= parse_listening((base / "tcp6").read_text())
    interfaces.pop("lo", None)
    return Netstat(MappingProxyType(interfaces), tuple(sorted(listening)))


def read_all(containers: Mapping[str, ContainerInfo]) -> dict[str, Netstat]:
    """Each container's counters and listening ports, where its namespace's
    /proc files are visible."""
    found = {}
    for container_id, info in containers.items():
        if info.pid <= 0:
            continue
        stat = read_netstat(info.pid)
        # Read first, then checked: a PID recycled meanwhile is caught.
        if stat is not None and still_the_containers(
            Path("/proc") / str(info.pid), container_id
        ):
            found[container_id] = stat
    return found
