"""What netwatch knows of one container, read from the engine's inspect data.

Pure: nothing here talks to Docker. `container_from_inspect` turns the JSON of
GET /containers/{id}/json (plus the network list, for drivers and the
`internal` flag) into a frozen `ContainerInfo`, and `monitoring_decision` says
whether netwatch watches it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from netwatch.validation import port_number, shorten

LABEL_ENABLE = "netwatch.enable"
LABEL_PORTS = "netwatch.ports"
LABEL_HTTP_PORT = "netwatch.http.port"
LABEL_HTTP_PATH = "netwatch.http.path"
LABEL_COMPOSE_PROJECT = "com.docker.compose.project"
LABEL_COMPOSE_SERVICE = "com.docker.compose.service"

# A label full of junk is reported, not allowed to flood the log.
_MAX_PROBLEMS = 5
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


class NetworkMode(StrEnum):
    """How a container is attached: the shapes Docker's `--network` takes."""

    DEFAULT_BRIDGE = "default"
    USER_DEFINED = "user-defined"
    HOST = "host"
    NONE = "none"
    CONTAINER = "container"


@dataclass(frozen=True)
class NetworkInfo:
    """A network as the engine's network list describes it."""

    id: str
    name: str
    driver: str
    internal: bool
    scope: str
    # False when the bridge was made with enable_icc=false: its containers
    # are kept apart from each other.
    icc: bool = True


@dataclass(frozen=True)
class NetworkAttachment:
    """One network a container is attached to, with its addresses there."""

    network: str
    network_id: str
    driver: str | None
    internal: bool
    icc: bool
    ipv4: str | None
    ipv6: str | None
    aliases: tuple[str, ...]

    @property
    def address(self) -> str | None:
        """The address to probe on this network: IPv4 first, else IPv6."""
        return self.ipv4 or self.ipv6


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    image: str
    labels: Mapping[str, str]
    network_mode: NetworkMode
    # For `container:X`, the id or name of X as the engine reports it.
    network_mode_target: str | None
    networks: tuple[NetworkAttachment, ...]
    exposed_tcp_ports: tuple[int, ...]
    probe_ports: tuple[int, ...]
    paused: bool
    pid: int
    health: str | None
    started_at: str
    label_problems: tuple[str, ...] = field(default=())
    # A task on another swarm node, seen on an overlay network: a destination
    # only, since netwatch cannot exec in it from here.
    remote: bool = False
    # From the netwatch.http.* labels: the port and path to GET.
    http_check: tuple[int, str] | None = None

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def compose_project(self) -> str | None:
        return self.labels.get(LABEL_COMPOSE_PROJECT)

    @property
    def compose_service(self) -> str | None:
        return self.labels.get(LABEL_COMPOSE_SERVICE)

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(a.address for a in self.networks if a.address is not None)


def parse_bool_label(value: str | None) -> bool | None:
    """Reads a yes/no label; None when unset or not a recognised word."""
    if value is None:
        return None
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    return None


def parse_ports_label(value: str) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Reads `netwatch.ports` (`80,443`, `5432/tcp`): ports and problems."""
    ports: list[int] = []
    problems: list[str] = []
    for item in value.replace(" ", ",").split(","):
        item = item.strip()
        if not item:
            continue
        number, _, proto = item.partition("/")
        if proto and proto.lower() != "tcp":
            problems.append(f"{LABEL_PORTS}: {shorten(item)} is not a TCP port")
            continue
        port = port_number(number)
        if port is None:
            problems.append(f"{LABEL_PORTS}: {shorten(item)} is not a port number")
            continue
        if port not in ports:
            ports.append(port)
    return tuple(ports), tuple(problems[:_MAX_PROBLEMS])


# A request path: printable ASCII only, no spaces, within a sane length.
_HTTP_PATH = re.compile(r"/[\x21-\x7e]{0,1023}")


def parse_http_labels(
    labels: Mapping[str, str],
) -> tuple[tuple[int, str] | None, tuple[str, ...]]:
    """Reads netwatch.http.port and netwatch.http.path: the check and problems."""
    raw_port = labels.get(LABEL_HTTP_PORT, "").strip()
    raw_path = labels.get(LABEL_HTTP_PATH)
    if not raw_port:
        if raw_path is not None:
            return None, (f"{LABEL_HTTP_PATH} is set without {LABEL_HTTP_PORT}",)
        return None, ()
    port = port_number(raw_port)
    if port is None:
        return None, (f"{LABEL_HTTP_PORT}: {shorten(raw_port)} is not a port number",)
    path = (raw_path or "/").strip() or "/"
    if _HTTP_PATH.fullmatch(path) is None:
        problem = f"{LABEL_HTTP_PATH}: {shorten(path)} is not a path like /health"
        return None, (problem,)
    return (port, path), ()


def _exposed_tcp_ports(config: Mapping[str, Any]) -> tuple[int, ...]:
    exposed = config.get("ExposedPorts") or {}
    ports = set()
    for spec in exposed:
        number, _, proto = str(spec).partition("/")
        port = port_number(number)
        if (proto or "tcp") == "tcp" and port is not None:
            ports.add(port)
    return tuple(sorted(ports))


def _valid_ip(value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def _network_mode(raw: str) -> tuple[NetworkMode, str | None]:
    if raw in ("", "default", "bridge"):
        return NetworkMode.DEFAULT_BRIDGE, None
    if raw == "host":
        return NetworkMode.HOST, None
    if raw == "none":
        return NetworkMode.NONE, None
    if raw.startswith("container:"):
        return NetworkMode.CONTAINER, raw.removeprefix("container:")
    return NetworkMode.USER_DEFINED, None


def container_from_inspect(
    inspect: Mapping[str, Any], networks: Mapping[str, NetworkInfo]
) -> ContainerInfo:
    """Builds a ContainerInfo from inspect JSON; `networks` is keyed by id.

    Attachments without an address (the `none` and `host` pseudo-networks) are
    left out: they offer nothing to probe.
    """
    config = inspect.get("Config") or {}
    state = inspect.get("State") or {}
    host_config = inspect.get("HostConfig") or {}
    settings = inspect.get("NetworkSettings") or {}
    labels = {str(k): str(v) for k, v in (config.get("Labels") or {}).items()}

    mode, mode_target = _network_mode(str(host_config.get("NetworkMode") or ""))
    attachments = []
    for name, endpoint in sorted((settings.get("Networks") or {}).items()):
        endpoint = endpoint or {}
        ipv4 = _valid_ip(endpoint.get("IPAddress"))
        ipv6 = _valid_ip(endpoint.get("GlobalIPv6Address"))
        if ipv4 is None and ipv6 is None:
            continue
        network_id = str(endpoint.get("NetworkID") or "")
        known = networks.get(network_id)
        aliases = [*(endpoint.get("Aliases") or ()), *(endpoint.get("DNSNames") or ())]
        attachments.append(
            NetworkAttachment(
                network=str(name),
                network_id=network_id,
                driver=known.driver if known else None,
                internal=known.internal if known else False,
                icc=known.icc if known else True,
                ipv4=ipv4,
                ipv6=ipv6,
                aliases=tuple(dict.fromkeys(str(a) for a in aliases)),
            )
        )

    exposed = _exposed_tcp_ports(config)
    problems: tuple[str, ...] = ()
    probe_ports = exposed
    if labels.get(LABEL_PORTS, "").strip():
        probe_ports, problems = parse_ports_label(labels[LABEL_PORTS])
    if LABEL_ENABLE in labels and parse_bool_label(labels[LABEL_ENABLE]) is None:
        shown = shorten(labels[LABEL_ENABLE])
        problems += (f"{LABEL_ENABLE}: {shown} is not true or false",)
    http_check, http_problems = parse_http_labels(labels)
    problems += http_problems

    health = (state.get("Health") or {}).get("Status")
    return ContainerInfo(
        id=str(inspect.get("Id") or ""),
        name=str(inspect.get("Name") or "").removeprefix("/"),
        image=str(config.get("Image") or ""),
        labels=MappingProxyType(labels),
        network_mode=mode,
        network_mode_target=mode_target,
        networks=tuple(attachments),
        exposed_tcp_ports=exposed,
        probe_ports=probe_ports,
        paused=bool(state.get("Paused")),
        pid=int(state.get("Pid") or 0),
        health=str(health) if health else None,
        started_at=str(state.get("StartedAt") or ""),
        label_problems=problems,
        http_check=http_check,
    )


def remote_tasks(network: Mapping[str, Any], info: NetworkInfo) -> list[ContainerInfo]:
    """Tasks on other nodes, from a swarm network's verbose inspect.

    Every task (service tasks, and plain containers under the service "")
    is listed with its endpoint; the ones whose endpoint is not among the
    network's local containers run on other nodes.
    """
    local_endpoints = {
        str((container or {}).get("EndpointID") or "")
        for container in (network.get("Containers") or {}).values()
    }
    found = []
    for service in (network.get("Services") or {}).values():
        for task in (service or {}).get("Tasks") or ():
            endpoint = str(task.get("EndpointID") or "")
            address = _valid_ip(task.get("EndpointIP"))
            if not endpoint or endpoint in local_endpoints or address is None:
                continue
            node = str((task.get("Info") or {}).get("Host IP") or "")
            attachment = NetworkAttachment(
                network=info.name,
                network_id=info.id,
                driver=info.driver,
                internal=info.internal,
                icc=info.icc,
                ipv4=address if ":" not in address else None,
                ipv6=address if ":" in address else None,
                aliases=(),
            )
            found.append(
                ContainerInfo(
                    id=f"remote-{endpoint}",
                    name=str(task.get("Name") or endpoint[:12]),
                    image="",
                    labels=MappingProxyType({"netwatch.node": node} if node else {}),
                    network_mode=NetworkMode.USER_DEFINED,
                    network_mode_target=None,
                    networks=(attachment,),
                    exposed_tcp_ports=(),
                    probe_ports=(),
                    paused=False,
                    pid=0,
                    health=None,
                    started_at="",
                    remote=True,
                )
            )
    return found


def network_from_list_entry(entry: Mapping[str, Any]) -> NetworkInfo:
    options = entry.get("Options") or {}
    icc = parse_bool_label(options.get("com.docker.network.bridge.enable_icc"))
    return NetworkInfo(
        id=str(entry.get("Id") or ""),
        name=str(entry.get("Name") or ""),
        driver=str(entry.get("Driver") or ""),
        internal=bool(entry.get("Internal")),
        scope=str(entry.get("Scope") or ""),
        icc=icc is not False,
    )


def monitoring_decision(
    info: ContainerInfo,
    *,
    opt_in: bool,
    self_id: str | None,
    include_self: bool,
    match_labels: Mapping[str, str] | None = None,
) -> tuple[bool, str]:
    """Whether netwatch watches this container, and why."""
    if self_id is not None and info.id == self_id and not include_self:
        return False, "netwatch's own container"
    if info.remote and (opt_in or match_labels):
        return False, "on another node: its labels cannot be seen from here"
    for key, value in (match_labels or {}).items():
        if info.labels.get(key) != value:
            return False, f"not labelled {key}={value}"
    enabled = parse_bool_label(info.labels.get(LABEL_ENABLE))
    if enabled is False:
        return False, f"labelled {LABEL_ENABLE}=false"
    if opt_in and enabled is not True:
        return False, f"opt-in mode and not labelled {LABEL_ENABLE}=true"
    return True, "monitored"
