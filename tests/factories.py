"""Builders of the model objects the unit tests need: one place for them."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from netwatch.containers import ContainerInfo, NetworkAttachment, NetworkMode


def attachment(
    network: str,
    address: str,
    *,
    driver: str | None = "bridge",
    icc: bool = True,
    internal: bool = False,
) -> NetworkAttachment:
    """`address` on `network`, whose id is derived from its name."""
    return NetworkAttachment(
        network=network,
        network_id=f"{network}-network-id",
        driver=driver,
        internal=internal,
        icc=icc,
        ipv4=address,
        ipv6=None,
        aliases=(),
    )


def container(
    name: str,
    *networks: NetworkAttachment,
    id: str | None = None,
    labels: Mapping[str, str] | None = None,
    mode: NetworkMode = NetworkMode.USER_DEFINED,
    target: str | None = None,
    ports: tuple[int, ...] = (),
    paused: bool = False,
    started_at: str = "2024-05-01T10:00:00Z",
    image: str = "alpine:3.20",
) -> ContainerInfo:
    """A running container; its id is `NAME-container-id` unless given."""
    return ContainerInfo(
        id=id or f"{name}-container-id",
        name=name,
        image=image,
        labels=MappingProxyType(dict(labels or {})),
        network_mode=mode,
        network_mode_target=target,
        networks=networks,
        exposed_tcp_ports=ports,
        probe_ports=ports,
        paused=paused,
        pid=100,
        health=None,
        started_at=started_at,
    )
