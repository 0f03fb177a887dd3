"""Alert conditions read from the matrix: which alerts should be active now.

Pure: `active_conditions` looks at one snapshot and netwatch's own health and
returns the conditions that hold at this moment, each with the labels that
name it. Whether a condition has held long enough to fire, and when a firing
alert resolves, is the lifecycle's business (lifecycle.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from netwatch.config import AlertRule, AlertRules
from netwatch.matrix import MatrixSnapshot, PairState, PairView, Verdict
from netwatch.probes.outcome import ProbeKind

# The alert names, as Alertmanager and the Prometheus rules know them.
ALERT_NAMES = {
    "packet_loss_warning": "NetwatchPacketLoss",
    "packet_loss_critical": "NetwatchPacketLossCritical",
    "broken_path": "NetwatchBrokenPath",
    "unexpected_reachability": "NetwatchUnexpectedReachability",
    "high_latency": "NetwatchHighLatency",
    "stalled": "NetwatchStalled",
    "engine_unavailable": "NetwatchEngineUnavailable",
    "mostly_unmeasured": "NetwatchMostlyUnmeasured",
    "name_resolution": "NetwatchNameResolution",
}

AlertKey = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Condition:
    """A rule's condition that holds now, for one pair or for netwatch."""

    rule: str
    labels: Mapping[str, str]
    summary: str
    value: float | None = None
    # Containers whose recent lifecycle may explain the condition.
    containers: tuple[str, ...] = field(default=())

    @property
    def key(self) -> AlertKey:
        return tuple(sorted(self.labels.items()))


@dataclass(frozen=True)
class Health:
    """netwatch's own state, as the self-alerts need it."""

    now: float
    engine_up: bool
    engine_down_since: float | None
    # Per probe kind: its interval and when its last full round completed.
    last_round: Mapping[ProbeKind, tuple[float, float | None]]
    started_at: float


def _labels(
    rule: str,
    settings: AlertRule,
    snapshot: MatrixSnapshot,
    pair: PairView | None,
    **extra: str,
) -> dict[str, str]:
    labels = {
        "alertname": ALERT_NAMES[rule],
        "rule": rule,
        "severity": settings.severity,
    }
    if pair is not None:
        labels |= {"src": snapshot.name(pair.src), "dst": snapshot.name(pair.dst)}
    return labels | extra


def _pair_conditions(
    snapshot: MatrixSnapshot, pair: PairView, rules: AlertRules
) -> list[Condition]:
    found: list[Condition] = []
    route = f"{snapshot.name(pair.src)} -> {snapshot.name(pair.dst)}"
    containers = (pair.src, pair.dst)

    if pair.verdict is Verdict.BROKEN and rules.broken_path.enabled:
        why = "; ".join(pair.port_findings) or "measured unreachable"
        found.append(
            Condition(
                "broken_path",
                _labels("broken_path", rules.broken_path, snapshot, pair, probe="any"),
                f"{route} should be reachable ({pair.basis}) but is not: {why}",
                containers=containers,
            )
        )
    if pair.verdict is Verdict.UNEXPECTED and rules.unexpected_reachability.enabled:
        why = "; ".join(pair.port_findings) or "measured reachable"
        found.append(
            Condition(
                "unexpected_reachability",
                _labels(
                    "unexpected_reachability",
                    rules.unexpected_reachability,
                    snapshot,
                    pair,
                    probe="any",
                ),
                f"{route} should be isolated ({pair.basis}) but is not: {why}",
                containers=containers,
            )
        )

    if pair.dns_findings and pair.hold is None and rules.name_resolution.enabled:
        found.append(
            Condition(
                "name_resolution",
                _labels(
                    "name_resolution",
                    rules.name_resolution,
                    snapshot,
                    pair,
                    probe="dns",
                ),
                f"{route}: {'; '.join(pair.dns_findings)}",
                value=float(len(pair.dns_findings)),
                containers=containers,
            )
        )

    ping = pair.probes.get(ProbeKind.PING)
    if not pair.expected_reachable or ping is None or pair.hold is not None:
        return found
    if ping.state is PairState.UNKNOWN:
        return found
    # Loss only counts while echoes come back: a dead path is broken_path's.
    if ping.loss_ratio is not None and ping.state in (
        PairState.REACHABLE,
        PairState.DEGRADED,
    ):
        for rule in ("packet_loss_critical", "packet_loss_warning"):
            settings: AlertRule = getattr(rules, rule)
            if settings.enabled and ping.loss_ratio > (settings.threshold or 0):
                found.append(
                    Condition(
                        rule,
                        _labels(rule, settings, snapshot, pair, probe="ping"),
                        f"{route} loses {ping.loss_ratio:.0%} of echoes "
                        f"(threshold {settings.threshold:.0%})",
                        value=ping.loss_ratio,
                        containers=containers,
                    )
                )
    latency = rules.high_latency
    if (
        latency.enabled
        and ping.rtt_avg_s is not None
        and ping.rtt_avg_s > (latency.threshold or 0)
    ):
        found.append(
            Condition(
                "high_latency",
                _labels("high_latency", latency, snapshot, pair, probe="ping"),
                f"{route} round trip {ping.rtt_avg_s * 1000:.1f} ms "
                f"(threshold {(latency.threshold or 0) * 1000:.0f} ms)",
                value=ping.rtt_avg_s,
                containers=containers,
            )
        )
    return found


def _self_conditions(
    snapshot: MatrixSnapshot, health: Health, rules: AlertRules
) -> list[Condition]:
    found: list[Condition] = []
    if rules.engine_unavailable.enabled and not health.engine_up:
        found.append(
            Condition(
                "engine_unavailable",
                _labels("engine_unavailable", rules.engine_unavailable, snapshot, None),
                "netwatch cannot reach the Docker engine",
            )
        )

    stalled = rules.stalled
    if stalled.enabled and health.engine_up:
        for kind, (interval, last) in health.last_round.items():
            since = last if last is not None else health.started_at
            allowed = (stalled.threshold or 3.0) * interval
            if health.now - since > allowed:
                found.append(
                    Condition(
                        "stalled",
                        _labels("stalled", stalled, snapshot, None, probe=kind.value),
                        f"no full {kind.value} round for {health.now - since:.0f}s "
                        f"(interval {interval:g}s)",
                        value=health.now - since,
                    )
                )

    unmeasured = rules.mostly_unmeasured
    # Pairs not probed yet (just started) or held (paused) are not failures.
    tried = [p for p in snapshot.pairs.values() if p.probes and p.hold is None]
    if unmeasured.enabled and tried and health.engine_up:
        failed = sum(1 for pair in tried if pair.verdict is Verdict.UNMEASURED)
        ratio = failed / len(tried)
        if ratio > (unmeasured.threshold or 0.5):
            found.append(
                Condition(
                    "mostly_unmeasured",
                    _labels("mostly_unmeasured", unmeasured, snapshot, None),
                    f"{ratio:.0%} of {len(tried)} probed pairs could not be measured",
                    value=ratio,
                )
            )
    return found


def active_conditions(
    snapshot: MatrixSnapshot, health: Health, rules: AlertRules
) -> dict[AlertKey, Condition]:
    """Every condition that holds now, keyed by its labels."""
    conditions = _self_conditions(snapshot, health, rules)
    for pair in snapshot.pairs.values():
        conditions += _pair_conditions(snapshot, pair, rules)
    return {condition.key: condition for condition in conditions}
