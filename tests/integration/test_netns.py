"""The namespace engine against real containers: the same matrix as the exec
engine, and containers with no tools at all measured too."""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import Lab, netwatch_env, run_netwatch, wait_for
from tests.integration.test_daemon import series, three_tier

pytestmark = pytest.mark.docker

NETNS = {"NETWATCH_PROBES__ENGINE": "netns"}


def matrix(
    lab: Lab, engine: str, extra: dict[str, str] | None = None
) -> tuple[int, dict]:  # type: ignore[type-arg]
    env = netwatch_env(lab, {"NETWATCH_PROBES__ENGINE": engine, **(extra or {})})
    done = run_netwatch("matrix", "--json", env=env)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def summary(body: dict) -> dict[tuple[str, str], tuple[bool, str, str, str]]:  # type: ignore[type-arg]
    return {
        (p["src"], p["dst"]): (
            p["expected_reachable"],
            p["verdict"],
            p["probes"]["ping"]["state"],
            p["probes"].get("tcp", {}).get("state", "-"),
        )
        for p in body["pairs"]
    }


def test_both_engines_give_the_three_tier_lab_the_same_matrix(lab):
    """Expectations, verdicts and per-probe states agree between engines."""
    three_tier(lab)

    exec_code, by_exec = matrix(lab, "exec")
    netns_code, by_netns = matrix(lab, "netns")

    assert summary(by_netns) == summary(by_exec)
    assert exec_code == netns_code == 0
    assert {verdict for _, verdict, _, _ in summary(by_netns).values()} == {"ok"}


def test_containers_without_tools_are_measured_from_their_namespace(lab):
    """A distroless container (no shell, no ping, no nc) gets real results:
    reachable where it shares a network, unreachable where it shares none;
    a --network none container reaches nothing."""
    lab.network("app")
    server = lab.listen("server", networks=("app",))
    bare = lab.run("bare", "distroless", networks=("app",), command=("/sleeper",))
    alone = lab.run("alone", "distroless", networks=("bridge",), command=("/sleeper",))
    dark = lab.run("dark", "distroless", networks=("none",), command=("/sleeper",))

    code, body = matrix(lab, "netns")
    pairs = {(p["src"], p["dst"]): p for p in body["pairs"]}

    to_server = pairs[(bare, server)]
    assert to_server["verdict"] == "ok"
    assert to_server["probes"]["ping"]["state"] == "reachable"
    assert to_server["probes"]["tcp"]["state"] == "reachable"
    assert to_server["probes"]["tcp"]["results"][0]["connect_s"] > 0
    assert pairs[(alone, server)]["probes"]["ping"]["state"] == "unreachable"
    assert pairs[(dark, server)]["probes"]["ping"]["state"] == "unreachable"
    assert pairs[(dark, server)]["probes"]["ping"]["reason"] == "no_route"
    assert code == 0


def test_the_namespace_engine_measures_loss(lab):
    """30% of echo requests dropped at the destination shows as loss between
    10% and 50% over about a hundred echoes."""
    lab.network("app")
    src = lab.run("src", "distroless", networks=("app",), command=("/sleeper",))
    dst = lab.run("dst", networks=("app",))
    lab.in_netns(
        dst, "iptables", "-A", "INPUT", "-p", "icmp", "--icmp-type", "echo-request",
        "-m", "statistic", "--mode", "random", "--probability", "0.3", "-j", "DROP",
    )  # fmt: skip

    _, body = matrix(
        lab,
        "netns",
        {
            "NETWATCH_PROBES__PING__COUNT": "100",
            "NETWATCH_PROBES__PING__INTERVAL": "60s",
            "NETWATCH_PROBES__TCP__ENABLED": "false",
        },
    )

    ping = next(p for p in body["pairs"] if p["src"] == src)["probes"]["ping"]
    assert ping["window_sent"] == 100
    assert 0.1 <= ping["loss_ratio"] <= 0.5, ping


def test_interfaces_and_listening_ports_come_from_the_namespace(lab, start_daemon):
    """Without a ports label or exposed ports, the port a container listens
    on becomes a TCP target; its interface counters are exported."""
    lab.network("app")
    server = lab.run("server", networks=("app",), command=("nc", "-lk", "8080"))
    client = lab.run("client", networks=("app",))
    daemon = start_daemon(NETNS)
    daemon.wait_ready()

    def probed() -> bool:
        tcp = (daemon.pair(client, server) or {}).get("probes", {}).get("tcp")
        return bool(tcp) and tcp["results"][0]["target"].endswith(":8080")

    wait_for(probed, 40, "the listening port to be probed")
    metrics = daemon.metrics()
    assert series(
        metrics, "netwatch_container_listening_port", container=server, port="8080"
    ) == [1.0]
    received = series(
        metrics,
        "netwatch_interface_receive_bytes_total",
        container=server,
        interface="eth0",
    )
    assert received
    assert received[0] > 0
    assert daemon.pair(client, server)["probes"]["tcp"]["state"] == "reachable"


def test_a_namespace_that_refuses_icmp_sockets_falls_back_to_the_tools(lab):
    """Where net.ipv4.ping_group_range leaves netwatch out (the host's own
    namespace often does, so host-network containers), the namespace engine
    cannot make an ICMP socket: the container's own ping measures instead,
    TCP still runs from the namespace, and a container without ping says
    why it was not measured, never "source gone" or unreachable."""
    lab.network("app")
    server = lab.listen("server", networks=("app",))
    tooled = lab.run("tooled", networks=("app",))
    bare = lab.run("bare", "distroless", networks=("app",), command=("/sleeper",))
    for source in (tooled, bare):
        lab.in_netns(
            source, "sh", "-c", "echo 1 0 > /proc/sys/net/ipv4/ping_group_range"
        )

    _, body = matrix(lab, "netns")
    pairs = {(p["src"], p["dst"]): p for p in body["pairs"]}

    by_tools = pairs[(tooled, server)]
    assert by_tools["verdict"] == "ok", by_tools
    assert by_tools["probes"]["ping"]["state"] == "reachable", by_tools
    assert by_tools["probes"]["tcp"]["state"] == "reachable", by_tools
    assert by_tools["probes"]["tcp"]["results"][0]["connect_s"] > 0
    untooled = pairs[(bare, server)]["probes"]
    assert untooled["ping"]["state"] == "unknown", untooled
    ping = untooled["ping"]["results"][0]
    assert ping["reason"] == "permission_denied", ping
    assert "cannot make a socket in the namespace" in ping["detail"], ping
    assert "by exec: " in ping["detail"], ping
    assert untooled["tcp"]["state"] == "reachable", untooled
