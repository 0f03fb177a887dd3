"""Pair selection: which ordered pairs netwatch probes, and what to expect.

`plan_pairs` is the one place that decides. Today it plans the full mesh of
monitored containers; a tiered plan for large hosts replaces this function
(TODO(#5): mesh within networks, a rendezvous-hashed sample across them, a
probe budget), and everything downstream reads only the `PairPlan`.

What the topology says to expect:
- two containers sharing a network reach each other, addressed by the
  destination's address on every shared network (unless the bridge was made
  with enable_icc=false);
- two containers sharing none do not, and one of the destination's addresses
  is probed to prove the isolation holds;
- a `container:X` container lives in X's network stack: it has X's networks,
  and it reaches X (and X it) as the same stack;
- a `--network none` container reaches nothing; having no address, it cannot
  be probed as a destination (such pairs are listed as not addressable);
- a host-network container is the host: it reaches every container attached
  to a local bridge network (the host routes to each bridge, internal ones
  too) and not containers on overlay or other drivers only. It has no address
  of its own, so pairs towards it are not addressable either.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from netwatch.containers import ContainerInfo, NetworkAttachment, NetworkMode
from netwatch.policy import Policy

PairKey = tuple[str, str]


@dataclass(frozen=True)
class Target:
    """An address of the destination, and the shared network it lives on."""

    address: str
    network: str | None


@dataclass(frozen=True)
class PlannedPair:
    src: str
    dst: str
    expected_reachable: bool
    basis: str
    targets: tuple[Target, ...]
    ports: tuple[int, ...]
    # Set when the pair exists but cannot be probed now (a paused container).
    hold: str | None = None
    # From a policy: ports that must be open (True) or closed (False).
    port_expectations: tuple[tuple[int, bool], ...] = ()


@dataclass(frozen=True)
class PairPlan:
    pairs: Mapping[PairKey, PlannedPair]
    by_source: Mapping[str, tuple[PlannedPair, ...]]
    # Pairs that exist but have nothing to probe, with the reason.
    unaddressable: Mapping[PairKey, str]

    @property
    def count(self) -> int:
        """How many ordered pairs the plan covers."""
        return len(self.pairs)


EMPTY_PLAN = PairPlan(MappingProxyType({}), MappingProxyType({}), MappingProxyType({}))


@dataclass(frozen=True)
class _Stack:
    """A network namespace, shared by a container and its `container:` guests."""

    owner: str
    mode: NetworkMode
    networks: tuple[NetworkAttachment, ...]


def _resolve_stack(
    info: ContainerInfo, by_ref: Mapping[str, ContainerInfo], depth: int = 0
) -> _Stack:
    if info.network_mode is not NetworkMode.CONTAINER:
        return _Stack(info.id, info.network_mode, info.networks)
    host = by_ref.get(info.network_mode_target or "")
    if host is None or depth > 8:
        return _Stack(info.id, NetworkMode.NONE, ())
    return _resolve_stack(host, by_ref, depth + 1)


def _references(containers: Iterable[ContainerInfo]) -> dict[str, ContainerInfo]:
    refs: dict[str, ContainerInfo] = {}
    for info in containers:
        refs[info.id] = info
        refs[info.short_id] = info
        refs[info.name] = info
    return refs


def _expectation(src: _Stack, dst: _Stack) -> tuple[bool, str, tuple[Target, ...]]:
    """Expected reachability, its basis, and the destination addresses to probe."""
    addressed = [a for a in dst.networks if a.address is not None]
    every = tuple(Target(a.address, a.network) for a in addressed if a.address)
    if src.owner == dst.owner:
        return True, "same network stack", every

    if src.mode is NetworkMode.HOST:
        bridged = tuple(
            Target(a.address, a.network)
            for a in addressed
            if a.address and a.driver == "bridge"
        )
        if bridged:
            return True, "host network reaches local bridges", bridged
        return False, "host network, destination on no local bridge", every[:1]

    if not src.networks:
        return False, "source has no network", every[:1]

    src_networks = {a.network_id: a for a in src.networks}
    shared = [a for a in addressed if a.network_id in src_networks]
    if not shared:
        return False, "no shared network", every[:1]

    open_shared = [a for a in shared if a.icc]
    if not open_shared:
        names = ", ".join(a.network for a in shared)
        return (
            False,
            f"shared network keeps containers apart (icc off): {names}",
            every[:1],
        )
    names = ", ".join(a.network for a in open_shared)
    targets = tuple(Target(a.address, a.network) for a in open_shared if a.address)
    return True, f"share {names}", targets


def plan_pairs(
    containers: Iterable[ContainerInfo],
    *,
    max_ports: int,
    every: Iterable[ContainerInfo] = (),
    policy: Policy | None = None,
) -> PairPlan:
    """Plans every ordered pair of `containers` (the monitored ones).

    `every` lists all running containers, monitored or not: a `container:X`
    guest has X's networks even when X itself is not monitored. A `policy`
    overrides the topology's expectation where it says something, and adds
    the ports it names, with whether each must be open.
    """
    monitored = sorted(containers, key=lambda info: (info.name, info.id))
    refs = _references([*every, *monitored])
    stacks = {info.id: _resolve_stack(info, refs) for info in monitored}

    pairs: dict[PairKey, PlannedPair] = {}
    unaddressable: dict[PairKey, str] = {}
    # A task on another node is a destination only: no exec reaches it.
    for src in (info for info in monitored if not info.remote):
        for dst in monitored:
            if src.id == dst.id:
                continue
            key = (src.id, dst.id)
            dst_stack = stacks[dst.id]
            if dst_stack.mode is NetworkMode.HOST:
                unaddressable[key] = "destination uses the host's network"
                continue
            if not any(a.address for a in dst_stack.networks):
                unaddressable[key] = "destination has no network address"
                continue

            expected, basis, targets = _expectation(stacks[src.id], dst_stack)
            ports = dst.probe_ports
            port_expectations: tuple[tuple[int, bool], ...] = ()
            if policy is not None:
                decision = policy.decide(src, dst)
                if decision.expected_reachable is not None:
                    expected = decision.expected_reachable
                    basis = f"{decision.basis} (topology: {basis})"
                if decision.ports:
                    basis += f"; ports: {decision.ports_text()}"
                port_expectations = tuple(sorted(decision.ports.items()))
                # Ports the policy speaks of come first: they are never cut.
                named = tuple(port for port, _ in port_expectations)
                ports = named + tuple(p for p in ports if p not in named)
            hold = None
            if src.paused:
                hold = "source is paused"
            elif dst.paused:
                hold = "destination is paused"
            pairs[key] = PlannedPair(
                src=src.id,
                dst=dst.id,
                expected_reachable=expected,
                basis=basis,
                targets=targets,
                ports=ports[: max(max_ports, len(port_expectations))],
                hold=hold,
                port_expectations=port_expectations,
            )

    return _plan_of(pairs, unaddressable)


def _plan_of(
    pairs: dict[PairKey, PlannedPair], unaddressable: Mapping[PairKey, str]
) -> PairPlan:
    by_source: dict[str, list[PlannedPair]] = {}
    for pair in pairs.values():
        by_source.setdefault(pair.src, []).append(pair)
    return PairPlan(
        pairs=MappingProxyType(pairs),
        by_source=MappingProxyType({src: tuple(p) for src, p in by_source.items()}),
        unaddressable=MappingProxyType(dict(unaddressable)),
    )


def hold_pairs(plan: PairPlan, containers: set[str], reason: str) -> PairPlan:
    """The plan with every pair of `containers` held (not measured) for `reason`."""
    pairs = {
        key: replace(pair, hold=reason)
        if (pair.src in containers or pair.dst in containers)
        else pair
        for key, pair in plan.pairs.items()
    }
    return _plan_of(pairs, plan.unaddressable)
