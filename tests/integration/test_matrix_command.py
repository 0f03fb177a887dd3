"""`netwatch matrix` against a real engine: its table, its JSON, its exit codes."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator

import pytest

from tests.integration.conftest import Lab, netwatch_env, run_netwatch
from tests.integration.test_daemon import three_tier

pytestmark = pytest.mark.docker


def matrix_json(lab: Lab, extra: dict[str, str] | None = None) -> tuple[int, dict]:  # type: ignore[type-arg]
    done = run_netwatch("matrix", "--json", env=netwatch_env(lab, extra))
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def pairs_of(body: dict) -> dict[tuple[str, str], dict]:  # type: ignore[type-arg]
    return {(p["src"], p["dst"]): p for p in body["pairs"]}


def test_lab_as_designed_exits_0_and_prints_the_table(lab):
    """Every pair as expected: exit 0, a table with 'self' on the diagonal."""
    three_tier(lab)

    done = run_netwatch("matrix", env=netwatch_env(lab))

    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if f" {lab.prefix}-" in line]
    assert len(rows) == 3
    assert all(" self" in row for row in rows)
    assert "!" not in "".join(rows)
    assert (
        "6 pairs: 6 as expected, 0 broken, 0 unexpected, 0 not measured" in done.stdout
    )


@contextlib.contextmanager
def iptables_rules(*rules: list[str]) -> Iterator[None]:
    """Host firewall rules, inserted for the test and always removed."""
    inserted = []
    try:
        for rule in rules:
            subprocess.run(["iptables", "-I", *rule], check=True, capture_output=True)
            inserted.append(rule)
        yield
    finally:
        for rule in inserted:
            subprocess.run(["iptables", "-D", *rule], check=False, capture_output=True)


def test_a_broken_path_exits_1_and_is_marked(lab):
    """db dropping all it receives breaks api -> db: exit 1, marked '!unreach'."""
    _, api, db = three_tier(lab)
    lab.in_netns(db, "iptables", "-A", "INPUT", "-j", "DROP")

    done = run_netwatch("matrix", env=netwatch_env(lab))

    assert done.returncode == 1, done.stdout + done.stderr
    assert "!unreach" in done.stdout
    assert f"BROKEN        {api} -> {db}" in done.stdout


def test_broken_isolation_exits_1_as_unexpected(lab):
    """A DOCKER-USER rule letting web and db talk is a finding: 'unexpected'."""
    web, _, db = three_tier(lab)
    db_ip = lab.ip(db, "database")
    rules = []
    for network in ("frontend", "backend"):
        web_ip = lab.ip(web, network)
        rules += [
            ["DOCKER-USER", "-s", web_ip, "-d", db_ip, "-j", "ACCEPT"],
            ["DOCKER-USER", "-s", db_ip, "-d", web_ip, "-j", "ACCEPT"],
        ]

    with iptables_rules(*rules):
        code, body = matrix_json(lab)

    pair = pairs_of(body)[(web, db)]
    assert code == 1
    assert pair["expected_reachable"] is False
    assert pair["verdict"] == "unexpected"
    assert body["summary"]["verdicts"]["unexpected"] >= 1


def test_tool_variety_none_busybox_and_distroless(lab):
    """BusyBox measures like the rest; a container with no tools is unmeasured,
    never unreachable; a --network none container reaches nothing and cannot
    be addressed."""
    lab.network("app")
    server = lab.listen("server", networks=("app",))
    tiny = lab.run("tiny", "busybox", networks=("app",))
    bare = lab.run("bare", "distroless", networks=("app",), command=("/sleeper",))
    nat = lab.run("nat", "ncat", networks=("app",))
    alone = lab.run("alone", networks=("none",))

    code, body = matrix_json(lab)
    pairs = pairs_of(body)

    assert pairs[(tiny, server)]["verdict"] == "ok"
    assert pairs[(tiny, server)]["probes"]["ping"]["state"] == "reachable"
    assert pairs[(tiny, server)]["probes"]["tcp"]["state"] == "reachable"
    assert pairs[(nat, server)]["probes"]["tcp"]["state"] == "reachable"
    assert pairs[(nat, server)]["probes"]["ping"]["reason"] == "tool_missing"
    for dst in (server, tiny, nat):
        bare_pair = pairs[(bare, dst)]
        assert bare_pair["verdict"] == "unmeasured"
        assert bare_pair["state"] == "unknown"
        assert bare_pair["probes"]["ping"]["reason"] == "tool_missing"
        assert "no shell" in bare_pair["probes"]["ping"]["detail"]
        alone_pair = pairs[(alone, dst)]
        assert alone_pair["expected_reachable"] is False
        assert alone_pair["probes"]["ping"]["state"] == "unreachable"
        assert alone_pair["verdict"] == "ok"
    assert pairs[(server, bare)]["verdict"] == "ok"
    unaddressable = {(u["src"], u["dst"]) for u in body["unaddressable"]}
    assert {(src, alone) for src in (server, tiny, bare, nat)} <= unaddressable
    assert code == 0


def test_30_percent_icmp_loss_is_measured_between_10_and_50_percent(lab):
    """Dropping 30% of echo requests at the destination shows as that loss."""
    lab.network("app")
    src = lab.run("src", networks=("app",))
    dst = lab.run("dst", networks=("app",))
    lab.in_netns(
        dst,
        "iptables",
        "-A",
        "INPUT",
        "-p",
        "icmp",
        "--icmp-type",
        "echo-request",
        "-m",
        "statistic",
        "--mode",
        "random",
        "--probability",
        "0.3",
        "-j",
        "DROP",
    )
    many = {
        "NETWATCH_PROBES__PING__COUNT": "100",
        "NETWATCH_PROBES__PING__INTERVAL": "60s",
        "NETWATCH_PROBES__TCP__ENABLED": "false",
    }

    code, body = matrix_json(lab, many)

    ping = pairs_of(body)[(src, dst)]["probes"]["ping"]
    assert ping["window_sent"] >= 90
    assert 0.1 <= ping["loss_ratio"] <= 0.5, ping
    assert ping["state"] == "degraded"
    assert code == 0
    clean = pairs_of(body)[(dst, src)]["probes"]["ping"]
    assert clean["loss_ratio"] < 0.1


def test_invalid_configuration_exits_2_naming_the_key(lab):
    """A bad value is reported with its key, exit code 2, before anything runs."""
    done = run_netwatch(
        "matrix", env=netwatch_env(lab, {"NETWATCH_PROBES__PING__COUNT": "0"})
    )

    assert done.returncode == 2
    assert "probes.ping.count" in done.stderr


def test_usage_error_exits_2(lab):
    """An unknown flag is a usage error: exit code 2."""
    done = run_netwatch("matrix", "--no-such-flag", env=netwatch_env(lab))

    assert done.returncode == 2


def test_unreachable_engine_exits_3_with_a_clear_message(lab, tmp_path):
    """No engine at DOCKER_HOST: exit 3 and a message, no traceback."""
    env = netwatch_env(lab, {"DOCKER_HOST": f"unix://{tmp_path}/nothing.sock"})

    done = run_netwatch("matrix", env=env)

    assert done.returncode == 3
    assert "cannot use the Docker engine" in done.stderr
    assert "Traceback" not in done.stderr
