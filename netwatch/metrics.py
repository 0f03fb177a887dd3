"""Prometheus metrics: pair series built from the matrix at scrape time, and
netwatch's own counters.

`MatrixCollector.collect()` reads one snapshot and builds every pair family
from it, so a removed or renamed container is gone from the very next scrape:
no labelled child lingers. Containers are labelled by name (and Compose
service where there is one), never by id or address alone.

`SelfMetrics` holds the ordinary counters and histograms of netwatch itself.
Both register on a registry passed in, never the global one.
"""

from __future__ import annotations

import asyncio
import math
import platform
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from netwatch import __version__
from netwatch.containers import ContainerInfo
from netwatch.matrix import (
    LATENCY_BUCKETS_S,
    MatrixSnapshot,
    PairState,
    PairView,
    ProbeView,
    Verdict,
)
from netwatch.matrix import Histogram as MatrixHistogram
from netwatch.netstat import Netstat
from netwatch.probes.outcome import REACHABILITY_PROBES, Outcome, ProbeKind

if TYPE_CHECKING:
    from netwatch.bandwidth import BandwidthResult

PAIR_LABELS = ["src", "dst", "src_service", "dst_service"]

# `_created` series double every counter's cardinality and no dashboard
# reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]


class SelfMetrics:
    """netwatch's own health: rounds, lag, execs, engine state, errors."""

    def __init__(self, registry: CollectorRegistry) -> None:
        Info("netwatch_build", "netwatch version and runtime.", registry=registry).info(
            {"version": __version__, "python": platform.python_version()}
        )
        self.rounds = Counter(
            "netwatch_rounds",
            "Full rounds completed: every source probed once.",
            ["probe"],
            registry=registry,
        )
        self.round_duration = Histogram(
            "netwatch_round_duration_seconds",
            "Time from a round's scheduled start to its last source's result.",
            ["probe"],
            buckets=(0.5, 1, 2, 5, 10, 15, 20, 30, 45, 60, 120, 300),
            registry=registry,
        )
        self.last_round = Gauge(
            "netwatch_last_round_timestamp_seconds",
            "When the last full round of a probe completed.",
            ["probe"],
            registry=registry,
        )
        self.lag = Histogram(
            "netwatch_schedule_lag_seconds",
            "How late a source's run started after its scheduled time.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=registry,
        )
        self.execs = Counter(
            "netwatch_execs",
            "docker exec calls, by result (ok, timeout, refused, error).",
            ["result"],
            registry=registry,
        )
        self.exec_duration = Histogram(
            "netwatch_exec_duration_seconds",
            "Wall time of one docker exec, from create to exit code.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20),
            registry=registry,
        )
        self.errors = Counter(
            "netwatch_errors",
            "Trouble netwatch met, by kind.",
            ["kind"],
            registry=registry,
        )
        self.events = Counter(
            "netwatch_docker_events",
            "Engine events received, by type.",
            ["type"],
            registry=registry,
        )
        self.docker_up = Gauge(
            "netwatch_docker_up",
            "1 when the Docker engine answers, else 0.",
            registry=registry,
        )
        self.ready = Gauge(
            "netwatch_ready",
            "1 once the first full round completed.",
            registry=registry,
        )
        self.alerts = Gauge(
            "netwatch_alerts",
            "Alerts of netwatch's own alert engine, by state.",
            ["state"],
            registry=registry,
        )
        self.notifications = Counter(
            "netwatch_alert_notifications",
            "Alert notifications by notifier and result.",
            ["notifier", "result"],
            registry=registry,
        )
        self.notifications_held = Counter(
            "netwatch_alert_notifications_held",
            "Notifications held back by the per-minute budget.",
            registry=registry,
        )
        self.reloads = Counter(
            "netwatch_config_reloads",
            "Configuration reloads (SIGHUP, POST /-/reload), by result.",
            ["result"],
            registry=registry,
        )
        self.reload_ok = Gauge(
            "netwatch_config_last_reload_successful",
            "1 when the last reload succeeded (or none was asked), 0 when "
            "it failed and the previous configuration stayed.",
            registry=registry,
        )
        self.reload_ok.set(1)
        self.reloaded_at = Gauge(
            "netwatch_config_last_reload_success_timestamp_seconds",
            "When the running configuration was read (start or reload).",
            registry=registry,
        )
        self.reloaded_at.set_to_current_time()
        self.sources = Gauge(
            "netwatch_scheduler_sources",
            "Source containers whose probe loop is running.",
            registry=registry,
        )
        self.tasks = Gauge(
            "netwatch_asyncio_tasks",
            "Tasks of netwatch's event loop when scraped (NaN when read "
            "outside the loop's thread).",
            registry=registry,
        )
        self.tasks.set_function(_loop_tasks)
        self.allocated_blocks = Gauge(
            "netwatch_python_allocated_blocks",
            "Memory blocks the Python interpreter holds, whatever their size.",
            registry=registry,
        )
        self.allocated_blocks.set_function(sys.getallocatedblocks)


def _loop_tasks() -> float:
    """Tasks of the event loop running in this thread."""
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:  # no loop runs in this thread
        return math.nan


def _pair_labels(snapshot: MatrixSnapshot, pair: PairView) -> list[str]:
    src = snapshot.containers.get(pair.src)
    dst = snapshot.containers.get(pair.dst)
    return [
        snapshot.name(pair.src),
        snapshot.name(pair.dst),
        (src.compose_service if src else None) or "",
        (dst.compose_service if dst else None) or "",
    ]


_BOUNDS = [*(repr(float(b)) for b in LATENCY_BUCKETS_S), "+Inf"]


def _add_histogram(
    family: HistogramMetricFamily,
    labels: list[str],
    histogram: MatrixHistogram,
    buckets: bool = True,
) -> None:
    """One pair's histogram; without `buckets`, only +Inf, the sum and the
    count (averages still work, quantiles do not)."""
    if buckets:
        counts = list(zip(_BOUNDS, histogram.bucket_counts, strict=True))
    else:
        counts = [("+Inf", histogram.count)]
    family.add_metric(labels, buckets=counts, sum_value=histogram.total)


def _add_service_results(
    labels: list[str],
    view: ProbeView,
    resolved: GaugeMetricFamily,
    lookup: GaugeMetricFamily,
    http_status: GaugeMetricFamily,
    http_ttfb: GaugeMetricFamily,
) -> None:
    """The last DNS lookups or HTTP GET of one pair."""
    for result in view.results:
        if result.outcome is Outcome.UNMEASURED:
            continue
        if result.probe is ProbeKind.DNS:
            name_labels = [*labels, result.address]
            ok = result.outcome is Outcome.OK
            resolved.add_metric(name_labels, 1.0 if ok else 0.0)
            if result.elapsed_s is not None:
                lookup.add_metric(name_labels, result.elapsed_s)
        elif result.probe is ProbeKind.HTTP and result.status is not None:
            http_status.add_metric(labels, float(result.status))
            if result.elapsed_s is not None:
                http_ttfb.add_metric(labels, result.elapsed_s)


class MatrixCollector(Collector):
    """Builds the pair and container families from the current snapshot."""

    def __init__(
        self,
        snapshot: Callable[[], MatrixSnapshot],
        window_s: float | None = None,
        buckets_max_pairs: int | None = None,
    ) -> None:
        self._snapshot = snapshot
        # Pairs with a result this recent count as measured_recently.
        self._window_s = window_s
        # Above this many pairs, latency histograms lose their buckets: 14
        # series per pair and probe are too many for a large host.
        self._buckets_max_pairs = buckets_max_pairs

    def describe(self) -> list[Metric]:
        return []  # families depend on state; skip the registry's dry run

    def collect(self) -> Iterator[Metric]:
        snapshot = self._snapshot()
        reachable = GaugeMetricFamily(
            "netwatch_pair_reachable",
            "1 when the probe reached dst from src in its last run, 0 when the "
            "network said no; absent while unmeasured.",
            labels=[*PAIR_LABELS, "probe"],
        )
        expected = GaugeMetricFamily(
            "netwatch_pair_expected_reachable",
            "1 when the topology says src should reach dst, else 0.",
            labels=PAIR_LABELS,
        )
        verdict = GaugeMetricFamily(
            "netwatch_pair_verdict",
            "1 for the pair's current verdict (ok, broken, unexpected, unmeasured).",
            labels=[*PAIR_LABELS, "verdict"],
        )
        changes = CounterMetricFamily(
            "netwatch_pair_changes",
            "State or verdict changes of the pair since netwatch first saw it.",
            labels=PAIR_LABELS,
        )
        loss = GaugeMetricFamily(
            "netwatch_ping_loss_ratio",
            "Share of echo requests lost over the last runs (0 to 1).",
            labels=PAIR_LABELS,
        )
        rtt = HistogramMetricFamily(
            "netwatch_ping_rtt_seconds",
            "Round-trip time of each echo reply.",
            labels=PAIR_LABELS,
        )
        connect = HistogramMetricFamily(
            "netwatch_tcp_connect_seconds",
            "Time to a TCP connection, where the source can time it.",
            labels=PAIR_LABELS,
        )
        resolved = GaugeMetricFamily(
            "netwatch_dns_resolved",
            "1 when the source's resolver gave an address for the destination's "
            "name in the last lookup, 0 when it did not; absent while unmeasured.",
            labels=[*PAIR_LABELS, "name"],
        )
        lookup = GaugeMetricFamily(
            "netwatch_dns_lookup_seconds",
            "Time of the last lookup of the destination's name from the source.",
            labels=[*PAIR_LABELS, "name"],
        )
        should_resolve = GaugeMetricFamily(
            "netwatch_dns_expected_resolved",
            "1 when the destination's names should resolve from the source (a "
            "shared user-defined network), else 0; only for pairs looked up.",
            labels=PAIR_LABELS,
        )
        dns_wrong = GaugeMetricFamily(
            "netwatch_dns_findings",
            "Names of the destination that resolve where they should not, or "
            "do not where they should, in the last lookups.",
            labels=PAIR_LABELS,
        )
        http_status = GaugeMetricFamily(
            "netwatch_http_status_code",
            "Status code of the last GET from the source to the destination's "
            "labelled HTTP port and path.",
            labels=PAIR_LABELS,
        )
        http_ttfb = GaugeMetricFamily(
            "netwatch_http_ttfb_seconds",
            "Time from sending the last GET to the first byte of the response.",
            labels=PAIR_LABELS,
        )
        results = CounterMetricFamily(
            "netwatch_probe_results",
            "Probe results by outcome (ok, unreachable, unmeasured).",
            labels=[*PAIR_LABELS, "probe", "result"],
        )

        buckets = (
            self._buckets_max_pairs is None
            or len(snapshot.pairs) <= self._buckets_max_pairs
        )
        for pair in snapshot.pairs.values():
            labels = _pair_labels(snapshot, pair)
            expected.add_metric(labels, 1.0 if pair.expected_reachable else 0.0)
            for name in Verdict:
                verdict.add_metric(
                    [*labels, name.value], 1.0 if pair.verdict is name else 0.0
                )
            changes.add_metric(labels, float(pair.changes))
            if ProbeKind.DNS in pair.probes:
                should_resolve.add_metric(labels, 1.0 if pair.names_resolve else 0.0)
                dns_wrong.add_metric(labels, float(len(pair.dns_findings)))
            for probe, view in pair.probes.items():
                if probe not in REACHABILITY_PROBES:
                    if pair.hold is None:
                        _add_service_results(
                            labels, view, resolved, lookup, http_status, http_ttfb
                        )
                elif pair.hold is not None:
                    pass  # paused: the last measurement no longer holds
                elif view.state in (PairState.REACHABLE, PairState.DEGRADED):
                    reachable.add_metric([*labels, probe.value], 1.0)
                elif view.state is PairState.UNREACHABLE:
                    reachable.add_metric([*labels, probe.value], 0.0)
                # Outcomes never seen are left out: a counter appears when
                # it first counts.
                for outcome, count in view.result_counts.items():
                    results.add_metric(
                        [*labels, probe.value, outcome.value], float(count)
                    )
                if probe is ProbeKind.PING:
                    if view.loss_ratio is not None:
                        loss.add_metric(labels, view.loss_ratio)
                    _add_histogram(rtt, labels, view.latency, buckets)
                elif probe is ProbeKind.TCP and view.latency.count:
                    _add_histogram(connect, labels, view.latency, buckets)

        containers = GaugeMetricFamily(
            "netwatch_containers", "Containers netwatch monitors."
        )
        containers.add_metric([], float(len(snapshot.containers)))
        pairs = GaugeMetricFamily(
            "netwatch_pairs",
            "Ordered pairs in the probe plan, by coverage.",
            labels=["coverage"],
        )
        pairs.add_metric(["planned"], float(len(snapshot.pairs)))
        pairs.add_metric(["unaddressable"], float(len(snapshot.unaddressable)))
        pairs.add_metric(["sampled_out"], float(snapshot.sampled_out))
        if self._window_s is not None:
            since = time.time() - self._window_s
            recent = sum(
                1
                for pair in snapshot.pairs.values()
                if any((view.last_at or 0) >= since for view in pair.probes.values())
            )
            pairs.add_metric(["measured_recently"], float(recent))
        info = GaugeMetricFamily(
            "netwatch_container_info",
            "One series per monitored container, for joins by name.",
            labels=[
                "container",
                "id",
                "image",
                "compose_project",
                "compose_service",
                "network_mode",
            ],
        )
        for container in snapshot.containers.values():
            info.add_metric(
                [
                    container.name,
                    container.short_id,
                    container.image,
                    container.compose_project or "",
                    container.compose_service or "",
                    container.network_mode.value,
                ],
                1.0,
            )
        yield from (
            reachable,
            expected,
            verdict,
            changes,
            loss,
            rtt,
            connect,
            resolved,
            lookup,
            should_resolve,
            dns_wrong,
            http_status,
            http_ttfb,
            results,
            containers,
            pairs,
            info,
        )


_INTERFACE_COUNTERS = (
    ("receive_bytes", "Bytes received"),
    ("transmit_bytes", "Bytes sent"),
    ("receive_packets", "Packets received"),
    ("transmit_packets", "Packets sent"),
    ("receive_errors", "Receive errors"),
    ("transmit_errors", "Transmit errors"),
    ("receive_drops", "Received packets dropped"),
    ("transmit_drops", "Packets to send dropped"),
)


class NetstatCollector(Collector):
    """Interface counters and listening TCP ports of each container, read
    from its namespace (where netwatch can see it)."""

    def __init__(
        self,
        source: Callable[[], tuple[Mapping[str, Netstat], Mapping[str, ContainerInfo]]],
    ) -> None:
        self._source = source

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        netstats, containers = self._source()
        families = {
            field: CounterMetricFamily(
                f"netwatch_interface_{field}",
                f"{words} by the container's interface, as its namespace counts.",
                labels=["container", "interface"],
            )
            for field, words in _INTERFACE_COUNTERS
        }
        listening = GaugeMetricFamily(
            "netwatch_container_listening_port",
            "1 for each TCP port the container listens on for other containers.",
            labels=["container", "port"],
        )
        for container_id, netstat in netstats.items():
            info = containers.get(container_id)
            if info is None:
                continue
            for interface, counters in netstat.interfaces.items():
                for field, family in families.items():
                    family.add_metric(
                        [info.name, interface], float(getattr(counters, field))
                    )
            for port in netstat.listening:
                listening.add_metric([info.name, str(port)], 1.0)
        yield from families.values()
        yield listening


class BandwidthCollector(Collector):
    """Each sampled pair's last bandwidth test."""

    def __init__(
        self,
        source: Callable[
            [], tuple[Mapping[tuple[str, str], BandwidthResult], MatrixSnapshot]
        ],
    ) -> None:
        self._source = source

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        results, snapshot = self._source()
        labels = [*PAIR_LABELS, "method"]
        bandwidth = GaugeMetricFamily(
            "netwatch_bandwidth_bits_per_second",
            "Throughput of the last bandwidth test from src to dst (method: "
            "iperf3, or socket where the containers have no iperf3).",
            labels=labels,
        )
        retransmits = GaugeMetricFamily(
            "netwatch_bandwidth_retransmits",
            "TCP retransmits iperf3 counted in the last test.",
            labels=labels,
        )
        tested = GaugeMetricFamily(
            "netwatch_bandwidth_last_test_timestamp_seconds",
            "When the pair's last bandwidth test ended, by its result (ok, "
            "unreachable, unmeasured) and the reason it failed.",
            labels=[*labels, "result", "reason"],
        )
        for (src, dst), result in results.items():
            pair = snapshot.pairs.get((src, dst))
            if pair is None:
                continue
            pair_labels = [*_pair_labels(snapshot, pair), result.method]
            if result.bits_per_second is not None:
                bandwidth.add_metric(pair_labels, result.bits_per_second)
            if result.retransmits is not None:
                retransmits.add_metric(pair_labels, float(result.retransmits))
            tested.add_metric(
                [*pair_labels, result.outcome.value, result.reason or ""], result.at
            )
        yield from (bandwidth, retransmits, tested)
