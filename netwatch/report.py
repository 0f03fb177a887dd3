"""The matrix for people and programs: JSON, and the table `netwatch matrix`
prints. Both read one snapshot; neither changes anything.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Mapping
from typing import Any

from netwatch.containers import ContainerInfo
from netwatch.matrix import MatrixSnapshot, PairState, PairView, ProbeView, Verdict
from netwatch.pairs import PairPlan, PlannedPair
from netwatch.policy import Policy
from netwatch.probes.outcome import ProbeKind, ProbeResult


def _when(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat()


def _container(info: ContainerInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "name": info.name,
        "image": info.image,
        "compose_project": info.compose_project,
        "compose_service": info.compose_service,
        "network_mode": info.network_mode.value,
        "networks": [
            {
                "network": a.network,
                "driver": a.driver,
                "internal": a.internal,
                "ipv4": a.ipv4,
                "ipv6": a.ipv6,
                "aliases": list(a.aliases),
            }
            for a in info.networks
        ],
        "probe_ports": list(info.probe_ports),
        "paused": info.paused,
        "health": info.health,
        "label_problems": list(info.label_problems),
    }


def _result(result: ProbeResult) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "target": result.target,
        "network": result.network,
        "outcome": result.outcome.value,
        "reason": result.reason.value if result.reason else None,
        "detail": result.detail,
        "at": _when(result.at),
    }
    if result.probe is ProbeKind.DNS:
        entry |= {"answers": list(result.answers), "lookup_s": result.elapsed_s}
    elif result.probe is ProbeKind.HTTP:
        entry |= {
            "status": result.status,
            "connect_s": result.connect_s,
            "ttfb_s": result.elapsed_s,
        }
    elif result.port is None:
        entry |= {"sent": result.sent, "received": result.received}
    else:
        entry["connect_s"] = result.connect_s
    return entry


# A lookup's state in words about names, not paths.
_DNS_STATES = {
    PairState.REACHABLE: "resolved",
    PairState.DEGRADED: "resolved",
    PairState.UNREACHABLE: "not_resolved",
    PairState.UNKNOWN: "unknown",
}


def _probe(view: ProbeView) -> dict[str, Any]:
    state = view.state.value
    if view.probe is ProbeKind.DNS:
        state = _DNS_STATES[view.state]
    entry: dict[str, Any] = {
        "state": state,
        "since": _when(view.since),
        "changes": view.changes,
        "last_at": _when(view.last_at),
        "reason": view.reason.value if view.reason else None,
        "detail": view.detail,
        "results": [_result(r) for r in view.results],
    }
    if view.loss_ratio is not None or view.window_sent:
        entry |= {
            "loss_ratio": view.loss_ratio,
            "window_sent": view.window_sent,
            "window_received": view.window_received,
            "rtt_min_s": view.rtt_min_s,
            "rtt_avg_s": view.rtt_avg_s,
            "rtt_max_s": view.rtt_max_s,
        }
    return entry


def _pair(snapshot: MatrixSnapshot, pair: PairView) -> dict[str, Any]:
    return {
        "src": snapshot.name(pair.src),
        "dst": snapshot.name(pair.dst),
        "src_id": pair.src,
        "dst_id": pair.dst,
        "expected_reachable": pair.expected_reachable,
        "basis": pair.basis,
        "state": pair.state.value,
        "verdict": pair.verdict.value,
        "since": _when(pair.since),
        "changes": pair.changes,
        "hold": pair.hold,
        "port_findings": list(pair.port_findings),
        "names_resolve": pair.names_resolve,
        "dns_findings": list(pair.dns_findings),
        "http_findings": list(pair.http_findings),
        "probes": {kind.value: _probe(view) for kind, view in pair.probes.items()},
    }


def snapshot_to_dict(
    snapshot: MatrixSnapshot, *, ready: bool | None = None, policy: str | None = None
) -> dict[str, Any]:
    """The whole matrix as JSON-ready data (the `/api/v1/matrix` body)."""
    counts = snapshot.verdict_counts()
    body: dict[str, Any] = {
        "generated_at": _when(time.time()),
        "updated_at": _when(snapshot.at),
        # The policy file the expectations follow; null: the topology.
        "policy": policy,
        "summary": {
            "containers": len(snapshot.containers),
            "pairs": len(snapshot.pairs),
            "unaddressable": len(snapshot.unaddressable),
            "verdicts": {verdict.value: count for verdict, count in counts.items()},
        },
        "containers": [
            _container(info)
            for info in sorted(snapshot.containers.values(), key=lambda c: c.name)
        ],
        "pairs": [
            _pair(snapshot, pair)
            for pair in sorted(
                snapshot.pairs.values(),
                key=lambda p: (snapshot.name(p.src), snapshot.name(p.dst)),
            )
        ],
        "unaddressable": [
            {"src": snapshot.name(src), "dst": snapshot.name(dst), "reason": reason}
            for (src, dst), reason in sorted(snapshot.unaddressable.items())
        ],
    }
    if ready is not None:
        body["ready"] = ready
    return body


# Cell words of the table, and the mark for a contradiction.
_CELL = {
    PairState.REACHABLE: "reach",
    PairState.DEGRADED: "lossy",
    PairState.UNREACHABLE: "unreach",
    PairState.UNKNOWN: "unmeas",
}
_RED, _YELLOW, _DIM, _RESET = "\x1b[31m", "\x1b[33m", "\x1b[2m", "\x1b[0m"

LEGEND = (
    "reach: reachable   lossy: reachable with loss   unreach: unreachable\n"
    "unmeas: could not measure   held: a container is paused   "
    "n/a: nothing to address\n"
    "! marks a cell that contradicts the expectation"
)


def printable(text: str) -> str:
    """`text` with every character a terminal would act on (newline, escape,
    NUL, bidirectional marks) written as its escape: names, aliases and
    network names come from whoever starts containers, and must not break a
    row or drive the terminal."""
    return "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode()
        for char in text
    )


def _cell(pair: PairView | None, unaddressable: bool, is_self: bool) -> tuple[str, str]:
    """The cell text and its colour."""
    if is_self:
        return "self", _DIM
    if pair is None:
        return ("n/a" if unaddressable else "?"), _DIM
    text = _CELL[pair.state]
    if pair.hold is not None:
        return "held", _YELLOW
    if pair.verdict in (Verdict.BROKEN, Verdict.UNEXPECTED):
        return f"!{text}", _RED
    if pair.verdict is Verdict.UNMEASURED:
        return text, _YELLOW
    return text, ""


def render_table(
    snapshot: MatrixSnapshot, *, color: bool = False, policy: str | None = None
) -> str:
    """Rows are sources, columns destinations (numbered, keyed by row)."""
    containers = sorted(snapshot.containers.values(), key=lambda c: c.name)
    if not containers:
        return "no containers to monitor\n"
    # Room for the longest cell ("!unreach") and a space before it.
    width = max(9, len(str(len(containers))) + 2)
    names = {c.id: printable(c.name) for c in containers}
    name_width = min(28, max(map(len, names.values())))

    def fit(name: str) -> str:
        return name if len(name) <= name_width else name[: name_width - 1] + "…"

    header = " " * (len(str(len(containers))) + name_width + 3)
    header += "".join(f"{'#' + str(i):>{width}}" for i in range(1, len(containers) + 1))
    lines = [header]
    for row, src in enumerate(containers, start=1):
        line = (
            f"{row:>{len(str(len(containers)))}} {fit(names[src.id]):<{name_width}}  "
        )
        for dst in containers:
            key = (src.id, dst.id)
            text, tint = _cell(
                snapshot.pairs.get(key), key in snapshot.unaddressable, src.id == dst.id
            )
            cell = f"{text:>{width}}"
            line += f"{tint}{cell}{_RESET}" if color and tint else cell
        lines.append(line.rstrip())
    lines += ["", LEGEND, ""]
    if policy is not None:
        lines += [f"Expectations follow the policy {policy}.", ""]

    findings = findings_of(snapshot)
    if findings:
        lines.append("Findings:")
        lines += [f"  {printable(finding)}" for finding in findings]
    else:
        lines.append("Every measured pair is as expected.")
    counts = snapshot.verdict_counts()
    lines.append(
        f"{len(snapshot.pairs)} pairs: {counts[Verdict.OK]} as expected, "
        f"{counts[Verdict.BROKEN]} broken, {counts[Verdict.UNEXPECTED]} unexpected, "
        f"{counts[Verdict.UNMEASURED]} not measured"
    )
    return "\n".join(lines) + "\n"


def findings_of(snapshot: MatrixSnapshot) -> list[str]:
    """One line per pair that is not simply as expected, worst first."""
    order = {Verdict.BROKEN: 0, Verdict.UNEXPECTED: 1, Verdict.UNMEASURED: 2}
    lines = []
    for pair in sorted(
        (p for p in snapshot.pairs.values() if p.verdict is not Verdict.OK),
        key=lambda p: (order[p.verdict], snapshot.name(p.src), snapshot.name(p.dst)),
    ):
        route = f"{snapshot.name(pair.src)} -> {snapshot.name(pair.dst)}"
        if pair.hold is not None:
            lines.append(f"not measured  {route}: {pair.hold}")
        elif pair.verdict is Verdict.BROKEN:
            lines.append(
                f"BROKEN        {route}: expected reachable ({pair.basis}), "
                f"measured unreachable{_why(pair)}"
            )
        elif pair.verdict is Verdict.UNEXPECTED:
            lines.append(
                f"UNEXPECTED    {route}: expected isolated ({pair.basis}), "
                f"measured reachable"
            )
        else:
            lines.append(f"not measured  {route}{_why(pair)}")
    for pair in sorted(
        (p for p in snapshot.pairs.values() if p.dns_findings or p.http_findings),
        key=lambda p: (snapshot.name(p.src), snapshot.name(p.dst)),
    ):
        route = f"{snapshot.name(pair.src)} -> {snapshot.name(pair.dst)}"
        lines.extend(f"DNS           {route}: {found}" for found in pair.dns_findings)
        lines.extend(f"HTTP          {route}: {found}" for found in pair.http_findings)
    return lines


def _why(pair: PairView) -> str:
    reasons = [
        f"{view.probe}: {view.reason} ({view.detail})"
        for view in pair.probes.values()
        if view.reason is not None
    ]
    return f": {'; '.join(reasons)}" if reasons else ""


def _name(containers: Mapping[str, ContainerInfo], container_id: str) -> str:
    info = containers.get(container_id)
    return info.name if info else container_id[:12]


def _sorted_pairs(
    plan: PairPlan, containers: Mapping[str, ContainerInfo]
) -> list[PlannedPair]:
    return sorted(
        plan.pairs.values(),
        key=lambda p: (_name(containers, p.src), _name(containers, p.dst)),
    )


def _groups(
    policy: Policy | None, containers: Mapping[str, ContainerInfo]
) -> dict[str, list[str]]:
    if policy is None:
        return {}
    return {
        group: sorted(info.name for info in containers.values() if spec.matches(info))
        for group, spec in policy.groups.items()
    }


def expectations_to_dict(
    plan: PairPlan, containers: Mapping[str, ContainerInfo], policy: Policy | None
) -> dict[str, Any]:
    """What `netwatch policy show --json` prints."""
    return {
        "policy": policy.source if policy else None,
        "default": policy.default if policy else "topology",
        "groups": _groups(policy, containers),
        "pairs": [
            {
                "src": _name(containers, pair.src),
                "dst": _name(containers, pair.dst),
                "expected_reachable": pair.expected_reachable,
                "basis": pair.basis,
                "ports": {
                    str(port): is_open for port, is_open in pair.port_expectations
                },
            }
            for pair in _sorted_pairs(plan, containers)
        ],
        "unaddressable": [
            {
                "src": _name(containers, src),
                "dst": _name(containers, dst),
                "reason": reason,
            }
            for (src, dst), reason in sorted(plan.unaddressable.items())
        ],
    }


def render_expectations(
    plan: PairPlan, containers: Mapping[str, ContainerInfo], policy: Policy | None
) -> str:
    """What `netwatch policy show` prints: the expectation of every pair."""
    lines = []
    if policy is None:
        lines.append("No policy: every expectation comes from the topology.")
    else:
        lines.append(f"Policy {policy.source} (pairs no rule names: {policy.default})")
        lines.append("Groups:")
        for group, members in _groups(policy, containers).items():
            lines.append(f"  {group}: {', '.join(members) or '(no container)'}")
    lines.append("")

    pairs = _sorted_pairs(plan, containers)
    routes = [
        f"{_name(containers, p.src)} -> {_name(containers, p.dst)}" for p in pairs
    ]
    width = max(map(len, routes), default=0)
    for route, pair in zip(routes, pairs, strict=True):
        expectation = "reachable" if pair.expected_reachable else "isolated "
        lines.append(f"{route:<{width}}  {expectation}  {printable(pair.basis)}")
    if not pairs:
        lines.append("No pairs: fewer than two monitored containers with an address.")
    for (src, dst), reason in sorted(plan.unaddressable.items()):
        route = f"{_name(containers, src)} -> {_name(containers, dst)}"
        lines.append(f"{route}: not addressable ({printable(reason)})")
    return "\n".join(lines) + "\n"
