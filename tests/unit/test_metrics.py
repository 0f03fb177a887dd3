"""Metrics built from the matrix at scrape time, netwatch's own metrics, and
the exposition render_metrics serves."""

from __future__ import annotations

import asyncio
import dataclasses
import math

import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from netwatch.config import MatrixSettings
from netwatch.containers import ContainerInfo, NetworkMode
from netwatch.matrix import LATENCY_BUCKETS_S, ReachabilityMatrix
from netwatch.metrics import MatrixCollector, SelfMetrics
from netwatch.pairs import plan_pairs
from netwatch.probes.outcome import Outcome, ProbeKind, ProbeResult, Reason
from netwatch.web import render_metrics
from tests.conftest import load_cases
from tests.factories import attachment
from tests.factories import container as make_container

CASES = load_cases()


def container(
    name: str,
    container_id: str,
    address: str,
    *,
    service: str | None = None,
    image: str = "alpine:3.20",
) -> ContainerInfo:
    labels = {"com.docker.compose.service": service} if service is not None else {}
    return make_container(
        name,
        attachment("lab", address),
        id=container_id,
        labels=labels,
        ports=(80,),
        started_at="",
        image=image,
    )


WEB1 = container("web1", "c1", "10.0.0.1", service="web")
WEB2 = container("web2", "c2", "10.0.0.2", service="web")
DB1 = container("db1", "c3", "10.0.0.3", service="db")


def ping(
    src: str, dst: str, *, received: int = 3, reason: Reason | None = None
) -> ProbeResult:
    if reason is not None:
        outcome = Outcome.UNMEASURED
    else:
        outcome = Outcome.OK if received else Outcome.UNREACHABLE
    return ProbeResult(
        probe=ProbeKind.PING,
        src=src,
        dst=dst,
        address="10.0.0.9",
        network="lab",
        outcome=outcome,
        reason=reason or (None if received else Reason.NO_REPLY),
        detail="",
        at=0.0,
        sent=0 if reason else 3,
        received=received,
        rtt_samples_s=(0.00004,) * received,
    )


def tcp(src: str, dst: str, *, ok: bool = True) -> ProbeResult:
    return ProbeResult(
        probe=ProbeKind.TCP,
        src=src,
        dst=dst,
        address="10.0.0.9",
        network="lab",
        outcome=Outcome.OK if ok else Outcome.UNREACHABLE,
        reason=None if ok else Reason.REFUSED,
        detail="",
        at=0.0,
        port=80,
        connect_s=0.0002 if ok else None,
    )


def matrix_of(*containers: ContainerInfo) -> ReachabilityMatrix:
    matrix = ReachabilityMatrix(MatrixSettings(), clock=lambda: 1000.0)
    matrix.set_plan(plan_pairs(containers, max_ports=8), {c.id: c for c in containers})
    return matrix


def scrape(matrix: ReachabilityMatrix) -> dict[str, list[Sample]]:
    """Renders the exposition as /metrics does and parses it back, by family."""
    registry = CollectorRegistry()
    SelfMetrics(registry)

    text = render_metrics(matrix.snapshot(), registry).decode("utf-8")

    return {
        family.name: family.samples for family in text_string_to_metric_families(text)
    }


def collector_registry(matrix: ReachabilityMatrix) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(MatrixCollector(matrix.snapshot))
    return registry


def pair(src: str, dst: str, **extra: str) -> dict[str, str]:
    services = {"web1": "web", "web2": "web", "db1": "db", "db-primary": "db"}
    return {
        "src": src,
        "dst": dst,
        "src_service": services.get(src, ""),
        "dst_service": services.get(dst, ""),
        **extra,
    }


def test_exposition_parses_with_self_and_pair_families():
    """The /metrics body parses as Prometheus text and holds both halves."""
    matrix = matrix_of(WEB1, DB1)
    matrix.record("c1", ProbeKind.PING, [ping("c1", "c3")])
    matrix.record("c1", ProbeKind.TCP, [tcp("c1", "c3")])

    families = scrape(matrix)

    assert {
        "netwatch_build_info",
        "netwatch_rounds",
        "netwatch_docker_up",
        "netwatch_pair_reachable",
        "netwatch_pair_expected_reachable",
        "netwatch_pair_verdict",
        "netwatch_pair_changes",
        "netwatch_ping_loss_ratio",
        "netwatch_ping_rtt_seconds",
        "netwatch_tcp_connect_seconds",
        "netwatch_probe_results",
        "netwatch_containers",
        "netwatch_pairs",
        "netwatch_container_info",
    } <= set(families)


def test_metric_names_follow_prometheus_conventions():
    """Counters end in _total, gauges never do, and histograms are in seconds."""
    matrix = matrix_of(WEB1, DB1)
    matrix.record("c1", ProbeKind.PING, [ping("c1", "c3")])
    registry = CollectorRegistry()
    SelfMetrics(registry)

    text = render_metrics(matrix.snapshot(), registry).decode("utf-8")

    for family in text_string_to_metric_families(text):
        assert family.name.startswith("netwatch_")
        if family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples), family.name
        else:
            assert not family.name.endswith("_total"), family.name
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name


def test_ping_rtt_buckets_start_at_ten_microseconds():
    """netwatch_ping_rtt_seconds buckets are LATENCY_BUCKETS_S, from 1e-05."""
    matrix = matrix_of(WEB1, DB1)
    matrix.record("c1", ProbeKind.PING, [ping("c1", "c3")])

    buckets = [
        s
        for s in scrape(matrix)["netwatch_ping_rtt_seconds"]
        if s.name.endswith("_bucket") and s.labels["src"] == "web1"
    ]

    assert buckets[0].labels["le"] == "1e-05"
    assert [float(s.labels["le"]) for s in buckets] == [*LATENCY_BUCKETS_S, math.inf]
    assert buckets[-1].value == 3.0
    assert buckets[1].value == 0.0
    assert buckets[2].value == 3.0


def test_never_measured_pairs_have_no_reachable_series():
    """Unmeasured pairs are absent from netwatch_pair_reachable, not 0."""
    matrix = matrix_of(WEB1, DB1)
    matrix.record("c1", ProbeKind.PING, [ping("c1", "c3")])

    families = scrape(matrix)

    reachable = [
        (s.labels["src"], s.labels["dst"]) for s in families["netwatch_pair_reachable"]
    ]
    assert reachable == [("web1", "db1")]
    verdicts = {
        s.labels["verdict"]: s.value
        for s in families["netwatch_pair_verdict"]
        if s.labels["src"] == "db1"
    }
    assert verdicts == {"ok": 0.0, "broken": 0.0, "unexpected": 0.0, "unmeasured": 1.0}


def test_reachable_series_follows_each_probes_state():
    """1 when a probe reached, 0 when the network said no, absent when unmeasured."""
    matrix = matrix_of(WEB1, WEB2, DB1)
    matrix.record(
        "c1", ProbeKind.PING, [ping("c1", "c2"), ping("c1", "c3", received=0)]
    )
    matrix.record("c1", ProbeKind.TCP, [tcp("c1", "c2", ok=False)])
    matrix.record(
        "c2", ProbeKind.PING, [ping("c2", "c1", reason=Reason.PERMISSION_DENIED)]
    )
    registry = collector_registry(matrix)

    def reachable(src: str, dst: str, probe: str) -> float | None:
        return registry.get_sample_value(
            "netwatch_pair_reachable", pair(src, dst, probe=probe)
        )

    assert reachable("web1", "web2", "ping") == 1.0
    assert reachable("web1", "web2", "tcp") == 0.0
    assert reachable("web1", "db1", "ping") == 0.0
    assert reachable("web2", "web1", "ping") is None


def test_verdict_is_one_hot():
    """Exactly one verdict series of a pair is 1."""
    matrix = matrix_of(WEB1, DB1)
    matrix.record("c1", ProbeKind.PING, [ping("c1", "c3", received=0)])
    registry = collector_registry(matrix)

    values = {
        verdict: registry.get_sample_value(
            "netwatch_pair_verdict", pair("web1", "db1", verdict=verdict)
        )
        for verdict in ("ok", "broken", "unexpected", "unmeasured")
    }

    assert values == {"ok": 0.0, "broken": 1.0, "unexpected": 0.0, "unmeasured": 0.0}
    assert (
        registry.get_sample_value(
            "netwatch_pair_expected_reachable", pair("web1", "db1")
        )
        == 1.0
    )
    assert (
        registry.get_sample_value("netwatch_pair_changes_total", pair("web1", "db1"))
        == 1.0
    )


def test_loss_ratio_and_result_counts():
    """Loss over the window is exported, and results are counted per outcome."""
    matrix = matrix_of(WEB1, DB1)
    matrix.record("c1", ProbeKind.PING, [ping("c1", "c3")])
    matrix.record("c1", ProbeKind.PING, [ping("c1", "c3", received=0)])
    registry = collector_registry(matrix)

    loss = registry.get_sample_value("netwatch_ping_loss_ratio", pair("web1", "db1"))
    results = {
        outcome.value: registry.get_sample_value(
            "netwatch_probe_results_total",
            pair("web1", "db1", probe="ping", result=outcome.value),
        )
        for outcome in Outcome
    }

    assert loss == pytest.approx(0.5)
    assert (
        registry.get_sample_value("netwatch_ping_loss_ratio", pair("db1", "web1"))
        is None
    )
    # An outcome never seen has no series yet.
    assert results == {"ok": 1.0, "unreachable": 1.0, "unmeasured": None}


def test_connect_histogram_appears_once_a_connect_was_timed():
    """netwatch_tcp_connect_seconds exists only for pairs with a timed connect."""
    matrix = matrix_of(WEB1, DB1)
    matrix.record("c1", ProbeKind.TCP, [tcp("c1", "c3")])
    matrix.record("c3", ProbeKind.TCP, [tcp("c3", "c1", ok=False)])
    registry = collector_registry(matrix)

    timed = registry.get_sample_value(
        "netwatch_tcp_connect_seconds_count", pair("web1", "db1")
    )
    untimed = registry.get_sample_value(
        "netwatch_tcp_connect_seconds_count", pair("db1", "web1")
    )

    assert timed == 1.0
    assert untimed is None


def test_inventory_gauges():
    """Container count, planned and unaddressable pairs, and one info series each."""
    lonely = dataclasses.replace(
        container("lonely", "c9", "10.0.0.9"),
        network_mode=NetworkMode.NONE,
        networks=(),
    )
    matrix = matrix_of(WEB1, DB1, lonely)
    registry = collector_registry(matrix)

    info = registry.get_sample_value(
        "netwatch_container_info",
        {
            "container": "web1",
            "id": "c1",
            "image": "alpine:3.20",
            "compose_project": "",
            "compose_service": "web",
            "network_mode": "user-defined",
        },
    )

    assert registry.get_sample_value("netwatch_containers") == 3.0
    assert registry.get_sample_value("netwatch_pairs", {"coverage": "planned"}) == 4.0
    assert (
        registry.get_sample_value("netwatch_pairs", {"coverage": "unaddressable"})
        == 2.0
    )
    assert info == 1.0


def test_collector_reads_the_current_snapshot_at_each_scrape():
    """The same registry shows new results at the next scrape without re-registering."""
    matrix = matrix_of(WEB1, DB1)
    registry = collector_registry(matrix)
    labels = pair("web1", "db1", probe="ping")
    before = registry.get_sample_value("netwatch_pair_reachable", labels)

    matrix.record("c1", ProbeKind.PING, [ping("c1", "c3")])

    assert before is None
    assert registry.get_sample_value("netwatch_pair_reachable", labels) == 1.0


@pytest.mark.parametrize(
    "value",
    [
        pytest.param('we"b', id="quote"),
        pytest.param("line\nbreak", id="newline"),
        pytest.param("back\\slash", id="backslash"),
        pytest.param('all\\"\n\\n', id="mixed"),
        pytest.param("ünïcødé ✓", id="non-ascii"),
    ],
)
def test_label_values_are_escaped_and_parse_back_equal(value):
    """Quotes, newlines and backslashes in names and labels survive the exposition."""
    odd = container(value, "c7", "10.0.0.7", service=value, image=value)
    matrix = matrix_of(WEB1, odd)
    matrix.record("c7", ProbeKind.PING, [ping("c7", "c1")])

    families = scrape(matrix)

    (reachable,) = families["netwatch_pair_reachable"]
    assert reachable.labels["src"] == value
    assert reachable.labels["src_service"] == value
    images = {s.labels["image"] for s in families["netwatch_container_info"]}
    assert value in images


def test_case_nw020_removed_and_renamed_containers_leave_no_series():
    """NW-020: once web2 leaves the plan and db1 is renamed db-primary, no series
    carries web2 or db1, and web1 -> db-primary is exported."""
    case = CASES["NW-020-prom-stale-series-remove-rename"]
    expected = case["expected"]
    ids = {"web1": WEB1.id, "web2": WEB2.id, "db1": DB1.id}
    matrix = matrix_of(WEB1, WEB2, DB1)
    for measured in case["input"]["before"]:
        src, dst = ids[measured["src"]], ids[measured["dst"]]
        matrix.record(src, ProbeKind.PING, [ping(src, dst)])
    before = scrape(matrix)
    db_primary = dataclasses.replace(DB1, name="db-primary")

    matrix.set_plan(
        plan_pairs([WEB1, db_primary], max_ports=8),
        {WEB1.id: WEB1, db_primary.id: db_primary},
    )
    after = scrape(matrix)

    def label_count(families: dict[str, list[Sample]], value: str) -> int:
        return sum(
            value in sample.labels.values()
            for samples in families.values()
            for sample in samples
        )

    assert label_count(before, "web2") > 0
    assert label_count(before, "db1") > 0
    assert label_count(after, "web2") == expected["series_with_label_web2"]
    assert label_count(after, "db1") == expected["series_with_label_db1"]
    for present in expected["series_present"]:
        reachable = [
            s
            for s in after["netwatch_pair_reachable"]
            if (s.labels["src"], s.labels["dst"]) == (present["src"], present["dst"])
        ]
        assert [s.value for s in reachable] == [1.0]


def test_self_metrics_use_the_registry_they_are_given():
    """SelfMetrics registers on its own registry, so two can coexist, and never
    touches the global one."""
    first, second = CollectorRegistry(), CollectorRegistry()

    one = SelfMetrics(first)
    SelfMetrics(second)
    one.rounds.labels(probe="ping").inc()
    one.docker_up.set(1)

    assert first.get_sample_value("netwatch_rounds_total", {"probe": "ping"}) == 1.0
    assert second.get_sample_value("netwatch_rounds_total", {"probe": "ping"}) is None
    assert first.get_sample_value("netwatch_docker_up") == 1.0
    assert REGISTRY.get_sample_value("netwatch_docker_up") is None


def test_self_metrics_report_the_build():
    """netwatch_build_info carries the version and the Python version."""
    registry = CollectorRegistry()

    SelfMetrics(registry)

    samples = [
        s
        for family in registry.collect()
        if family.name == "netwatch_build"
        for s in family.samples
    ]
    assert len(samples) == 1
    assert set(samples[0].labels) == {"version", "python"}
    assert samples[0].value == 1.0


def test_self_metrics_have_no_created_series():
    """Counters and histograms export no _created series."""
    registry = CollectorRegistry()
    metrics = SelfMetrics(registry)
    metrics.rounds.labels(probe="ping").inc()
    metrics.lag.observe(0.2)

    names = {s.name for family in registry.collect() for s in family.samples}

    assert not any(name.endswith("_created") for name in names)


async def test_self_metrics_count_the_loop_tasks_when_scraped():
    """netwatch_asyncio_tasks counts the tasks of the loop it is read in,
    and is NaN where no loop runs; the interpreter's blocks are counted."""
    registry = CollectorRegistry()
    SelfMetrics(registry)
    before = registry.get_sample_value("netwatch_asyncio_tasks")

    sleepers = [asyncio.create_task(asyncio.sleep(10)) for _ in range(3)]
    during = registry.get_sample_value("netwatch_asyncio_tasks")
    for sleeper in sleepers:
        sleeper.cancel()
    await asyncio.gather(*sleepers, return_exceptions=True)
    outside = await asyncio.to_thread(
        registry.get_sample_value, "netwatch_asyncio_tasks"
    )

    assert before is not None
    assert during == before + 3
    assert outside is not None
    assert math.isnan(outside)
    assert (registry.get_sample_value("netwatch_python_allocated_blocks") or 0) > 0


def test_latency_histograms_lose_their_buckets_above_the_pair_limit():
    """A large host's pairs keep the sum and count (averages), not the 14
    buckets each."""
    matrix = matrix_of(WEB1, DB1)
    matrix.record("c1", ProbeKind.PING, [ping("c1", "c3")])
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MatrixCollector(matrix.snapshot, buckets_max_pairs=1))

    samples = [
        s
        for family in registry.collect()
        if family.name == "netwatch_ping_rtt_seconds"
        for s in family.samples
        if s.labels["src"] == "web1"
    ]

    buckets = [s for s in samples if s.name.endswith("_bucket")]
    assert [s.labels["le"] for s in buckets] == ["+Inf"]
    assert buckets[0].value == 3
    count = next(s for s in samples if s.name.endswith("_count"))
    assert count.value == 3
