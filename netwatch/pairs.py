"""Pair selection: which ordered pairs netwatch probes, and what to expect.

`plan_pairs` is the one place that decides: it plans the full mesh of
monitored containers, and `tier_plan` cuts it down for large hosts (the
mesh within each network, a rendezvous-hashed sample of isolation checks
across networks, a global budget). Everything downstream reads only the
`PairPlan`.

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

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from netwatch.containers import (
    LABEL_PORTS,
    ContainerInfo,
    NetworkAttachment,
    NetworkMode,
)
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
    # DNS: the destination's names to look up from the source, and whether
    # the source's resolver should know them.
    names: tuple[str, ...] = ()
    resolves: bool = False
    # HTTP: the destination's port and path to GET, from its labels.
    http: tuple[int, str] | None = None


@dataclass(frozen=True)
class PairPlan:
    pairs: Mapping[PairKey, PlannedPair]
    by_source: Mapping[str, tuple[PlannedPair, ...]]
    # Pairs that exist but have nothing to probe, with the reason.
    unaddressable: Mapping[PairKey, str]
    # Pairs left out by tiered planning (a large host's budget).
    sampled_out: int = 0

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


# The engine's default network has no embedded DNS: names resolve only on
# networks users create.
DEFAULT_BRIDGE_NAME = "bridge"


# A name the engine's DNS can serve: letters, digits, `_` and `-` in labels
# of at most 63, dot-separated. Other aliases Docker accepts are never
# served, and are not looked up.
_HOSTNAME = re.compile(
    r"[A-Za-z0-9_][A-Za-z0-9_-]{0,62}(\.[A-Za-z0-9_][A-Za-z0-9_-]{0,62})*"
)


def _dns_names(
    src: _Stack, dst: ContainerInfo, dst_stack: _Stack, max_names: int
) -> tuple[tuple[str, ...], bool]:
    """The names of `dst` to look up from `src`, and whether they should
    resolve there: on a user-defined network they share, the engine's DNS
    knows the destination's name and its aliases on that network.

    A name the engine's DNS does not know is forwarded by it to the host's
    resolvers, off this machine, whatever the query says; and netwatch's
    probes never leave the machine. So names that should not resolve are
    looked up only from sources that have no embedded DNS at all (on the
    default bridge only: nothing answers at 127.0.0.11 there, and the
    lookup is refused on the spot). Host-network and `--network none`
    sources, and `container:X` guests (no name of their own), look nothing
    up.
    """
    if src.owner == dst_stack.owner or not src.networks:
        return (), False
    if src.mode in (NetworkMode.HOST, NetworkMode.NONE):
        return (), False
    if dst.network_mode is NetworkMode.CONTAINER or not dst.name:
        return (), False
    src_networks = {a.network_id for a in src.networks}
    shared = [
        a
        for a in dst_stack.networks
        if a.network_id in src_networks and a.network != DEFAULT_BRIDGE_NAME
    ]
    if shared:
        # The engine lists the short id among the aliases: not a name.
        aliases = (
            alias
            for a in shared
            for alias in a.aliases
            if not (len(alias) >= 12 and dst.id.startswith(alias))
        )
        names = [dst.name, *aliases]
        unique = tuple(
            dict.fromkeys(n for n in names if len(n) <= 253 and _HOSTNAME.fullmatch(n))
        )
        return unique[:max_names], True
    embedded_dns = any(a.network != DEFAULT_BRIDGE_NAME for a in src.networks)
    if embedded_dns or _HOSTNAME.fullmatch(dst.name) is None:
        return (), False
    return (dst.name,), False


def plan_pairs(
    containers: Iterable[ContainerInfo],
    *,
    max_ports: int,
    every: Iterable[ContainerInfo] = (),
    policy: Policy | None = None,
    listening: Mapping[str, tuple[int, ...]] | None = None,
    max_names: int = 4,
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
            ports = _ports(dst, (listening or {}).get(dst.id, ()))
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
            names, resolves = _dns_names(stacks[src.id], dst, dst_stack, max_names)
            pairs[key] = PlannedPair(
                src=src.id,
                dst=dst.id,
                expected_reachable=expected,
                basis=basis,
                targets=targets,
                ports=ports[: max(max_ports, len(port_expectations))],
                hold=hold,
                port_expectations=port_expectations,
                names=names,
                resolves=resolves,
                http=dst.http_check if expected else None,
            )

    return _plan_of(pairs, unaddressable)


@dataclass(frozen=True)
class Tiering:
    """How a large host's plan is cut down (config `planner`)."""

    # Pairs planned at most; above it, pairs are sampled.
    max_pairs: int
    # Isolation checks per source: pairs towards containers it shares no
    # network with.
    isolation_sample: int
    # Changes the sample, so that every pair is checked in time.
    salt: int = 0


def rendezvous(src: str, dst: str, salt: int) -> int:
    """A stable, well-spread rank of a pair: the same inputs, the same rank,
    and adding or removing a container moves no other pair's rank."""
    digest = hashlib.sha256(f"{salt}:{src}:{dst}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def tier_plan(plan: PairPlan, tiering: Tiering) -> tuple[PairPlan, int]:
    """The plan cut down for a large host, and how many pairs were left out.

    Every pair expected to reach (a full mesh within each network) is kept
    while they fit the budget; each source keeps its `isolation_sample`
    best-ranked isolation checks; when even the mesh exceeds the budget,
    each source keeps its best-ranked pairs up to its share. Ranks come from
    rendezvous hashing, so the sample is stable as containers come and go.
    """
    if plan.count <= tiering.max_pairs:
        return plan, 0

    def rank(pair: PlannedPair) -> int:
        return rendezvous(pair.src, pair.dst, tiering.salt)

    kept: dict[PairKey, PlannedPair] = {}
    sources = plan.by_source
    mesh = [p for pairs in sources.values() for p in pairs if p.expected_reachable]
    if len(mesh) <= tiering.max_pairs:
        kept.update({(p.src, p.dst): p for p in mesh})
        room = tiering.max_pairs - len(mesh)
        per_source = min(tiering.isolation_sample, room // max(1, len(sources)))
        for pairs in sources.values():
            isolated = sorted((p for p in pairs if not p.expected_reachable), key=rank)
            kept.update({(p.src, p.dst): p for p in isolated[:per_source]})
    else:
        share = max(1, tiering.max_pairs // max(1, len(sources)))
        for pairs in sources.values():
            best = sorted(pairs, key=lambda p: (not p.expected_reachable, rank(p)))
            kept.update({(p.src, p.dst): p for p in best[:share]})
    left_out = plan.count - len(kept)
    return replace(_plan_of(kept, plan.unaddressable), sampled_out=left_out), left_out


def _ports(dst: ContainerInfo, listening: tuple[int, ...]) -> tuple[int, ...]:
    """The label's ports; without a label, the exposed ports and those the
    container listens on (read from its namespace, where visible)."""
    if dst.labels.get(LABEL_PORTS, "").strip():
        return dst.probe_ports
    return tuple(sorted(set(dst.probe_ports) | set(listening)))


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
