"""What the planner asks of DNS and HTTP, how the matrix judges the answers,
and how the labels that ask for an HTTP check are read."""

from __future__ import annotations

import os
import time
from dataclasses import replace

import pytest

from netwatch.config import MatrixSettings, ProbeSettings, load_config
from netwatch.containers import NetworkMode, parse_http_labels
from netwatch.errors import ConfigError
from netwatch.matrix import PairState, ReachabilityMatrix, Verdict
from netwatch.pairs import plan_pairs
from netwatch.probes.outcome import Outcome, ProbeKind, ProbeResult, Reason
from netwatch.scheduler import enabled_kinds, requests_for
from tests.factories import attachment, container

FRONT_WEB = replace(attachment("front", "10.0.0.2"), aliases=("www", "web.internal"))
WEB = container(
    "web",
    FRONT_WEB,
    labels={"netwatch.http.port": "8080", "netwatch.http.path": "/health"},
)
WEB = replace(WEB, http_check=(8080, "/health"))
PROXY = container("proxy", attachment("front", "10.0.0.3"))
LEGACY = container(
    "legacy", attachment("bridge", "172.17.0.2"), mode=NetworkMode.DEFAULT_BRIDGE
)
OLD = container(
    "old", attachment("bridge", "172.17.0.3"), mode=NetworkMode.DEFAULT_BRIDGE
)
LONER = container("loner.example", attachment("solo", "10.9.0.2"))


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No NETWATCH_* variable of the machine running the tests leaks in."""
    for name in list(os.environ):
        if name.upper().startswith("NETWATCH_"):
            monkeypatch.delenv(name)


def _plan(*containers):
    return plan_pairs(containers, max_ports=8)


def test_names_on_a_shared_user_defined_network_should_resolve():
    pair = _plan(WEB, PROXY).pairs[(PROXY.id, WEB.id)]

    assert pair.names == ("web", "www", "web.internal")
    assert pair.resolves is True


def test_names_on_the_default_bridge_should_not_resolve():
    pair = _plan(LEGACY, OLD).pairs[(LEGACY.id, OLD.id)]

    assert pair.names == ("old",)
    assert pair.resolves is False


def test_names_that_should_not_resolve_are_looked_up_only_without_embedded_dns():
    """From a user-defined network, an unknown name would be forwarded off
    the host: isolation is not checked by name there. From the default
    bridge only, nothing answers at 127.0.0.11: it is."""
    plan = _plan(PROXY, LONER, LEGACY, WEB)

    assert plan.pairs[(PROXY.id, LONER.id)].names == ()
    assert plan.pairs[(LONER.id, PROXY.id)].names == ()
    assert plan.pairs[(PROXY.id, LEGACY.id)].names == ()
    assert plan.pairs[(LEGACY.id, PROXY.id)].names == ("proxy",)
    assert plan.pairs[(LEGACY.id, PROXY.id)].resolves is False
    assert plan.pairs[(LEGACY.id, LONER.id)].names == ("loner.example",)


def test_aliases_the_engine_cannot_serve_are_not_looked_up():
    odd = replace(FRONT_WEB, aliases=('a"b', "sp ace", "ÜNICODE", "ok-name", "x" * 64))
    web = replace(WEB, networks=(odd,))

    pair = _plan(web, PROXY).pairs[(PROXY.id, web.id)]

    assert pair.names == ("web", "ok-name")


def test_names_are_capped():
    many = replace(FRONT_WEB, aliases=tuple(f"alias{i}" for i in range(10)))
    web = replace(WEB, networks=(many,))

    pair = plan_pairs([web, PROXY], max_ports=8, max_names=3).pairs[(PROXY.id, web.id)]

    assert pair.names == ("web", "alias0", "alias1")


def test_host_and_container_mode_sources_look_nothing_up():
    host = container("hostnet", mode=NetworkMode.HOST)
    guest = container("guest", mode=NetworkMode.CONTAINER, target=WEB.id)
    plan = _plan(WEB, PROXY, host, guest)

    assert plan.pairs[(host.id, WEB.id)].names == ()
    assert plan.pairs[(guest.id, WEB.id)].names == ()  # the same stack
    assert plan.pairs[(PROXY.id, guest.id)].names == ()  # no name of its own


def test_the_http_check_goes_with_pairs_expected_to_reach():
    plan = _plan(WEB, PROXY, LEGACY)

    assert plan.pairs[(PROXY.id, WEB.id)].http == (8080, "/health")
    assert plan.pairs[(LEGACY.id, WEB.id)].http is None
    assert plan.pairs[(WEB.id, PROXY.id)].http is None


def test_requests_carry_names_and_the_http_path():
    pair = _plan(WEB, PROXY).pairs[(PROXY.id, WEB.id)]

    requests = requests_for([pair], [ProbeKind.DNS, ProbeKind.HTTP])

    assert [(r.probe, r.address) for r in requests] == [
        (ProbeKind.DNS, "web"),
        (ProbeKind.DNS, "www"),
        (ProbeKind.DNS, "web.internal"),
        (ProbeKind.HTTP, "10.0.0.2"),
    ]
    assert (requests[-1].port, requests[-1].path) == (8080, "/health")


def test_dns_and_http_run_only_with_the_namespace_engine():
    settings = ProbeSettings()

    assert set(enabled_kinds(settings, "exec")) == {ProbeKind.PING, ProbeKind.TCP}
    assert set(enabled_kinds(settings, "netns")) == set(ProbeKind)


PORT, PATH = "netwatch.http.port", "netwatch.http.path"


@pytest.mark.parametrize(
    ("labels", "check", "problem"),
    [
        ({PORT: "80"}, (80, "/"), None),
        ({PORT: " 8080 ", PATH: "/a?b=1"}, (8080, "/a?b=1"), None),
        ({PORT: "http"}, None, "is not a port number"),
        ({PORT: "80", PATH: "health"}, None, "is not a path"),
        ({PORT: "80", PATH: "/a b"}, None, "is not a path"),
        ({PORT: "80", PATH: "/\r\nX: y"}, None, "is not a path"),
        ({PATH: "/health"}, None, "without netwatch.http.port"),
        ({}, None, None),
    ],
)
def test_http_labels(labels, check, problem):
    parsed, problems = parse_http_labels(labels)

    assert parsed == check
    if problem is None:
        assert problems == ()
    else:
        assert problem in problems[0]


def _dns(dst: str, name: str, outcome: Outcome) -> ProbeResult:
    reason = None if outcome is Outcome.OK else Reason.NOT_FOUND
    return ProbeResult(
        probe=ProbeKind.DNS,
        src=PROXY.id,
        dst=dst,
        address=name,
        network=None,
        outcome=outcome,
        reason=reason,
        detail="resolver says NXDOMAIN" if reason else "resolved",
        at=time.time(),
        elapsed_s=0.001,
    )


def test_dns_answers_are_judged_apart_from_reachability():
    """A name that does not resolve is a DNS finding; the pair stays as
    ping and tcp found it."""
    plan = _plan(WEB, PROXY)
    matrix = ReachabilityMatrix(MatrixSettings())
    matrix.set_plan(plan, {c.id: c for c in (WEB, PROXY)})

    matrix.record(
        PROXY.id,
        ProbeKind.DNS,
        [_dns(WEB.id, "web", Outcome.OK), _dns(WEB.id, "www", Outcome.UNREACHABLE)],
    )

    pair = matrix.snapshot().pairs[(PROXY.id, WEB.id)]
    assert pair.state is PairState.UNKNOWN
    assert pair.verdict is Verdict.UNMEASURED
    assert pair.dns_findings == ("www does not resolve: resolver says NXDOMAIN",)
    assert pair.names_resolve is True


def test_a_name_resolving_across_isolated_networks_is_a_finding():
    plan = _plan(LEGACY, OLD)
    matrix = ReachabilityMatrix(MatrixSettings())
    matrix.set_plan(plan, {c.id: c for c in (LEGACY, OLD)})

    matrix.record(LEGACY.id, ProbeKind.DNS, [_dns(OLD.id, "old", Outcome.OK)])

    pair = matrix.snapshot().pairs[(LEGACY.id, OLD.id)]
    assert pair.dns_findings == ("old resolves with no user-defined network shared",)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"probes": {"dns": {"interval": 2, "timeout": 2}}}, "probes.dns.interval"),
        ({"probes": {"http": {"timeout": "soon"}}}, "probes.http.timeout"),
        (
            {"probes": {"bandwidth": {"duration": 10, "server_deadline": 12}}},
            "probes.bandwidth.server_deadline",
        ),
        ({"probes": {"bandwidth": {"method": "netperf"}}}, "probes.bandwidth.method"),
        ({"probes": {"bandwidth": {"port": 70000}}}, "probes.bandwidth.port"),
    ],
)  # fmt: skip
def test_bad_service_probe_settings_name_the_key(overrides, key):
    with pytest.raises(ConfigError) as raised:
        load_config(overrides=overrides)

    assert key in str(raised.value)


def test_an_http_error_status_is_an_http_finding():
    plan = _plan(WEB, PROXY)
    matrix = ReachabilityMatrix(MatrixSettings())
    matrix.set_plan(plan, {c.id: c for c in (WEB, PROXY)})
    answered = ProbeResult(
        probe=ProbeKind.HTTP,
        src=PROXY.id,
        dst=WEB.id,
        address="10.0.0.2",
        network="front",
        port=8080,
        outcome=Outcome.OK,
        reason=None,
        detail="HTTP 503",
        at=time.time(),
        status=503,
    )

    matrix.record(PROXY.id, ProbeKind.HTTP, [answered])

    pair = matrix.snapshot().pairs[(PROXY.id, WEB.id)]
    assert pair.http_findings == ("GET 10.0.0.2:8080 answered 503",)
    matrix.record(PROXY.id, ProbeKind.HTTP, [replace(answered, status=200)])
    assert matrix.snapshot().pairs[(PROXY.id, WEB.id)].http_findings == ()
