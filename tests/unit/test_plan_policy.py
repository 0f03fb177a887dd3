"""A policy in the plan and in the verdicts: plan_pairs takes its expectations
and ports, and the matrix judges the ports it names."""

from __future__ import annotations

from pathlib import Path

import pytest

from netwatch.config import MatrixSettings
from netwatch.containers import ContainerInfo, NetworkAttachment
from netwatch.matrix import (
    PairState,
    ProbeView,
    ReachabilityMatrix,
    Verdict,
    combined_verdict,
    port_findings,
)
from netwatch.pairs import PairPlan, plan_pairs
from netwatch.policy import Policy, load_policy
from netwatch.probes.outcome import Outcome, ProbeKind, ProbeResult, Reason
from tests.factories import attachment as attach
from tests.factories import container as make_container

THREE_TIER = """\
groups:
  web: {services: [web]}
  api: {services: [api]}
  db: {services: [db]}
rules:
  - allow: {from: api, to: db, ports: [5432]}
  - deny: {from: "*", to: db}
"""


def container(
    name: str,
    *networks: NetworkAttachment,
    ports: tuple[int, ...] = (),
    paused: bool = False,
) -> ContainerInfo:
    """A Compose service's container, named after its service."""
    labels = {"com.docker.compose.service": name}
    return make_container(name, *networks, labels=labels, ports=ports, paused=paused)


WEB = container(
    "web", attach("frontend", "10.1.0.2"), attach("backend", "10.2.0.2"), ports=(80,)
)
API = container(
    "api", attach("backend", "10.2.0.3"), attach("database", "10.3.0.3"), ports=(8080,)
)
DB = container("db", attach("database", "10.3.0.4"), ports=(5432, 9187))


def key(src: ContainerInfo, dst: ContainerInfo) -> tuple[str, str]:
    return (src.id, dst.id)


def policy_of(tmp_path: Path, text: str) -> Policy:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return load_policy(path)


def plan_with(
    tmp_path: Path,
    text: str,
    *containers: ContainerInfo,
    max_ports: int = 8,
) -> PairPlan:
    return plan_pairs(
        containers or (WEB, API, DB),
        max_ports=max_ports,
        policy=policy_of(tmp_path, text),
    )


# The plan.


def test_policy_overrides_an_isolation_the_topology_expects(tmp_path):
    """A pair the topology isolates is expected reachable when the policy
    allows it, and the basis names the rule, its line and the topology."""
    plan = plan_with(
        tmp_path,
        "groups:\n  web: {services: [web]}\n  db: {services: [db]}\n"
        "rules:\n  - allow: {from: web, to: db}\n",
    )

    pair = plan.pairs[key(WEB, DB)]

    assert pair.expected_reachable is True
    assert pair.basis == "policy rule 1 (line 5) allows (topology: no shared network)"


def test_policy_overrides_a_reachability_the_topology_expects(tmp_path):
    """A pair sharing a network is expected isolated when the policy denies it."""
    plan = plan_with(
        tmp_path,
        "groups:\n  web: {services: [web]}\n  api: {services: [api]}\n"
        "rules:\n  - deny: {from: web, to: api}\n",
    )

    pair = plan.pairs[key(WEB, API)]

    assert pair.expected_reachable is False
    assert pair.basis == (
        "policy rule 1 (line 5) denies (topology: share backend); "
        "ports: 8080 closed (rule 1 (line 5))"
    )


def test_policy_default_names_itself_and_the_topology(tmp_path):
    """A pair decided by `default: deny` says so, with what the topology said."""
    plan = plan_with(tmp_path, "default: deny\n")

    pair = plan.pairs[key(API, WEB)]

    assert pair.expected_reachable is False
    assert pair.basis == "policy default deny (topology: share backend)"


def test_policy_keeps_the_topology_where_it_says_nothing(tmp_path):
    """Pairs no rule names keep the topology's expectation, basis, targets and
    ports exactly."""
    without = plan_pairs([WEB, API, DB], max_ports=8)

    plan = plan_with(tmp_path, THREE_TIER)

    silent = [key(WEB, API), key(API, WEB), key(DB, API), key(DB, WEB)]
    for pair_key in silent:
        assert plan.pairs[pair_key] == without.pairs[pair_key]
    assert plan.pairs[key(WEB, API)].port_expectations == ()


def test_policy_never_changes_the_targets(tmp_path):
    """The addresses probed come from the topology whatever the policy says."""
    without = plan_pairs([WEB, API, DB], max_ports=8)

    plan = plan_with(tmp_path, THREE_TIER)

    for pair_key, pair in plan.pairs.items():
        assert pair.targets == without.pairs[pair_key].targets


def test_three_tier_plan_expects_db_from_api_on_5432_only(tmp_path):
    """api -> db is reachable with 5432 open and 9187 closed; web -> db is
    isolated with both closed."""
    plan = plan_with(tmp_path, THREE_TIER)

    api_db = plan.pairs[key(API, DB)]
    web_db = plan.pairs[key(WEB, DB)]

    assert api_db.expected_reachable is True
    assert api_db.basis == (
        "policy rule 1 (line 6) allows (topology: share database); "
        "ports: 5432 open (rule 1 (line 6)), 9187 closed (rule 2 (line 7))"
    )
    assert api_db.port_expectations == ((5432, True), (9187, False))
    assert api_db.ports == (5432, 9187)
    assert web_db.expected_reachable is False
    assert web_db.basis.startswith(
        "policy rule 2 (line 7) denies (topology: no shared network); ports: "
    )
    assert web_db.port_expectations == ((5432, False), (9187, False))


def test_policy_ports_are_added_even_when_not_exposed(tmp_path):
    """A port a rule names is probed although the destination does not expose it."""
    plan = plan_with(
        tmp_path,
        "groups:\n  api: {services: [api]}\n  db: {services: [db]}\n"
        "rules:\n  - allow: {from: api, to: db, ports: [6432]}\n",
    )

    pair = plan.pairs[key(API, DB)]

    assert pair.port_expectations == ((6432, True),)
    assert pair.ports == (6432, 5432, 9187)


@pytest.mark.parametrize(
    ("max_ports", "ports"),
    [
        (1, (5432, 6432)),
        (2, (5432, 6432)),
        (3, (5432, 6432, 80)),
        (8, (5432, 6432, 80, 443, 9187)),
    ],
)
def test_policy_ports_come_first_and_are_never_cut(tmp_path, max_ports, ports):
    """Ports the policy speaks of lead the list and stay even beyond max_ports;
    the destination's own ports fill what max_ports leaves."""
    db = container("db", attach("database", "10.3.0.4"), ports=(80, 443, 9187))

    plan = plan_with(
        tmp_path,
        "groups:\n  api: {services: [api]}\n  db: {services: [db]}\n"
        "rules:\n  - allow: {from: api, to: db, ports: [6432, 5432]}\n",
        API,
        db,
        max_ports=max_ports,
    )

    assert plan.pairs[key(API, db)].ports == ports


def test_without_a_policy_ports_are_cut_at_max_ports():
    """Without a policy max_ports cuts the destination's ports, in their order."""
    db = container("db", attach("database", "10.3.0.4"), ports=(80, 443, 9187))

    plan = plan_pairs([API, db], max_ports=2)

    assert plan.pairs[key(API, db)].ports == (80, 443)
    assert plan.pairs[key(API, db)].port_expectations == ()


def test_policy_keeps_a_paused_pair_on_hold(tmp_path):
    """A pair with a paused destination is held whatever the policy expects."""
    paused_db = container("db", attach("database", "10.3.0.4"), paused=True)

    plan = plan_with(tmp_path, THREE_TIER, API, paused_db)

    pair = plan.pairs[key(API, paused_db)]
    assert pair.hold == "destination is paused"
    assert pair.expected_reachable is True


# Port findings and the combined verdict.


def tcp(
    port: int,
    outcome: Outcome = Outcome.OK,
    *,
    src: str = API.id,
    dst: str = DB.id,
) -> ProbeResult:
    reason = {
        Outcome.OK: None,
        Outcome.UNREACHABLE: Reason.REFUSED,
        Outcome.UNMEASURED: Reason.TOOL_MISSING,
    }[outcome]
    return ProbeResult(
        probe=ProbeKind.TCP,
        src=src,
        dst=dst,
        address="10.3.0.4",
        network="database",
        outcome=outcome,
        reason=reason,
        detail="" if reason is None else str(reason),
        at=0.0,
        port=port,
        connect_s=0.0003 if outcome is Outcome.OK else None,
    )


def ping(*, src: str = API.id, dst: str = DB.id) -> ProbeResult:
    return ProbeResult(
        probe=ProbeKind.PING,
        src=src,
        dst=dst,
        address="10.3.0.4",
        network="database",
        outcome=Outcome.OK,
        reason=None,
        detail="",
        at=0.0,
        sent=3,
        received=3,
        rtt_samples_s=(0.00004,) * 3,
    )


def tcp_view(*results: ProbeResult) -> ProbeView:
    return ProbeView(
        probe=ProbeKind.TCP,
        state=PairState.REACHABLE,
        since=0.0,
        changes=0,
        results=results,
    )


def test_open_port_that_must_be_closed_is_a_finding():
    """A port the policy closes, measured open, is reported."""
    findings = port_findings({9187: False}, tcp_view(tcp(9187)))

    assert findings == ("port 9187 must be closed, measured open",)


def test_refused_port_that_must_be_open_is_a_finding():
    """A port the policy opens, measured refused, is reported with the reason."""
    findings = port_findings({5432: True}, tcp_view(tcp(5432, Outcome.UNREACHABLE)))

    assert findings == ("port 5432 must be open, measured refused",)


def test_ports_as_demanded_are_no_finding():
    """Ports measured as the policy wants them give nothing to report."""
    view = tcp_view(tcp(5432), tcp(9187, Outcome.UNREACHABLE))

    assert port_findings({5432: True, 9187: False}, view) == ()


def test_unmeasured_ports_are_no_finding():
    """A port that could not be measured is judged neither open nor closed."""
    view = tcp_view(tcp(5432, Outcome.UNMEASURED), tcp(9187, Outcome.UNMEASURED))

    assert port_findings({5432: True, 9187: False}, view) == ()


def test_ports_the_policy_does_not_name_are_no_finding():
    """A port without an expectation is not judged, open or closed."""
    view = tcp_view(tcp(80), tcp(443, Outcome.UNREACHABLE))

    assert port_findings({5432: True}, view) == ()


@pytest.mark.parametrize(
    ("expectations", "view"),
    [({}, tcp_view(tcp(9187))), ({9187: False}, None)],
    ids=["no-expectations", "no-tcp-run"],
)
def test_nothing_to_judge_is_no_finding(expectations, view):
    """Without expectations or without a TCP run there are no findings."""
    assert port_findings(expectations, view) == ()


CLOSED_OPEN = "port 9187 must be closed, measured open"
OPEN_REFUSED = "port 5432 must be open, measured refused"


@pytest.mark.parametrize(
    ("verdict", "findings", "combined"),
    [
        (Verdict.OK, [], Verdict.OK),
        (Verdict.OK, [CLOSED_OPEN], Verdict.UNEXPECTED),
        (Verdict.OK, [OPEN_REFUSED], Verdict.BROKEN),
        (Verdict.OK, [OPEN_REFUSED, CLOSED_OPEN], Verdict.UNEXPECTED),
        (Verdict.BROKEN, [CLOSED_OPEN], Verdict.UNEXPECTED),
        (Verdict.BROKEN, [OPEN_REFUSED], Verdict.BROKEN),
        (Verdict.UNEXPECTED, [OPEN_REFUSED], Verdict.UNEXPECTED),
        (Verdict.UNEXPECTED, [], Verdict.UNEXPECTED),
        (Verdict.BROKEN, [], Verdict.BROKEN),
        (Verdict.UNMEASURED, [], Verdict.UNMEASURED),
    ],
)
def test_combined_verdict(verdict, findings, combined):
    """An open must-be-closed port makes it unexpected, a closed must-be-open
    port broken, either outweighing the pair's own verdict."""
    assert combined_verdict(verdict, findings) is combined


def matrix_for(tmp_path: Path, text: str) -> ReachabilityMatrix:
    plan = plan_with(tmp_path, text)
    matrix = ReachabilityMatrix(MatrixSettings(), clock=lambda: 1000.0)
    matrix.set_plan(plan, {info.id: info for info in (WEB, API, DB)})
    return matrix


def test_matrix_judges_an_open_must_be_closed_port_unexpected(tmp_path):
    """A reachable pair whose must-be-closed port answers is unexpected."""
    matrix = matrix_for(tmp_path, THREE_TIER)

    matrix.record(API.id, ProbeKind.PING, [ping()])
    matrix.record(API.id, ProbeKind.TCP, [tcp(5432), tcp(9187)])

    view = matrix.snapshot().pairs[key(API, DB)]
    assert view.state is PairState.REACHABLE
    assert view.verdict is Verdict.UNEXPECTED
    assert view.port_findings == ("port 9187 must be closed, measured open",)


def test_matrix_judges_a_refused_must_be_open_port_broken(tmp_path):
    """A reachable pair whose must-be-open port refuses is broken."""
    matrix = matrix_for(tmp_path, THREE_TIER)

    matrix.record(API.id, ProbeKind.PING, [ping()])
    matrix.record(
        API.id,
        ProbeKind.TCP,
        [tcp(5432, Outcome.UNREACHABLE), tcp(9187, Outcome.UNREACHABLE)],
    )

    view = matrix.snapshot().pairs[key(API, DB)]
    assert view.state is PairState.REACHABLE
    assert view.verdict is Verdict.BROKEN
    assert view.port_findings == ("port 5432 must be open, measured refused",)


def test_matrix_ignores_unmeasured_port_results(tmp_path):
    """Ports that could not be measured leave a reachable pair's verdict ok."""
    matrix = matrix_for(tmp_path, THREE_TIER)

    matrix.record(API.id, ProbeKind.PING, [ping()])
    matrix.record(
        API.id,
        ProbeKind.TCP,
        [tcp(5432, Outcome.UNMEASURED), tcp(9187, Outcome.UNMEASURED)],
    )

    view = matrix.snapshot().pairs[key(API, DB)]
    assert view.verdict is Verdict.OK
    assert view.port_findings == ()


def test_matrix_pair_as_the_policy_wants_it_is_ok(tmp_path):
    """5432 open and 9187 closed from api is exactly the design: ok."""
    matrix = matrix_for(tmp_path, THREE_TIER)

    matrix.record(API.id, ProbeKind.PING, [ping()])
    matrix.record(API.id, ProbeKind.TCP, [tcp(5432), tcp(9187, Outcome.UNREACHABLE)])

    view = matrix.snapshot().pairs[key(API, DB)]
    assert view.verdict is Verdict.OK
    assert view.basis.startswith("policy rule 1 (line 6) allows")


def test_matrix_judges_the_latest_port_run(tmp_path):
    """A port finding goes away once the port is measured as demanded."""
    matrix = matrix_for(tmp_path, THREE_TIER)
    matrix.record(API.id, ProbeKind.PING, [ping()])
    matrix.record(API.id, ProbeKind.TCP, [tcp(5432), tcp(9187)])

    matrix.record(API.id, ProbeKind.TCP, [tcp(5432), tcp(9187, Outcome.UNREACHABLE)])

    view = matrix.snapshot().pairs[key(API, DB)]
    assert view.verdict is Verdict.OK
    assert view.port_findings == ()
    assert view.changes == 3
