"""DNS, HTTP and bandwidth against real containers: names through the
engine's embedded DNS, a GET to a real web server, iperf3 between two
containers with a server that is never left behind, and a busy server."""

from __future__ import annotations

import json
import threading

import pytest

from tests.integration.conftest import (
    Lab,
    docker,
    netwatch_env,
    run_netwatch,
    wait_for,
)
from tests.integration.test_daemon import series
from tests.integration.test_netns import NETNS, matrix

pytestmark = pytest.mark.docker


def pairs_of(body: dict) -> dict[tuple[str, str], dict]:  # type: ignore[type-arg]
    return {(p["src"], p["dst"]): p for p in body["pairs"]}


def test_names_resolve_on_a_user_defined_network_and_not_on_the_default_bridge(lab):
    lab.network("app")
    api = lab.run("api", networks=("app",))
    db = lab.run("db", networks=("app",), options=("--network-alias", "database"))
    old = lab.run("old", networks=("bridge",))
    older = lab.run("older", networks=("bridge",))

    code, body = matrix(lab, "netns")
    pairs = pairs_of(body)

    to_db = pairs[(api, db)]
    assert to_db["names_resolve"] is True
    lookups = {r["target"]: r for r in to_db["probes"]["dns"]["results"]}
    assert set(lookups) == {db, "database"}
    for lookup in lookups.values():
        assert lookup["outcome"] == "ok"
        assert lookup["answers"] == [lab.ip(db, "app")]
        assert 0 < lookup["lookup_s"] < 2
    assert to_db["dns_findings"] == []

    # No embedded DNS on the default bridge: the name must not resolve.
    across = pairs[(old, older)]
    assert across["names_resolve"] is False
    dns = across["probes"]["dns"]["results"]
    assert [r["target"] for r in dns] == [older]
    assert dns[0]["outcome"] == "unreachable"
    assert dns[0]["reason"] in ("refused", "not_found")
    assert across["dns_findings"] == []

    # From a user-defined network, a name that should not resolve is not
    # looked up: the engine would forward it off the host.
    assert not pairs[(api, old)]["probes"].get("dns", {}).get("results")
    assert code == 0


def test_the_daemon_exports_dns_results(lab, start_daemon):
    """Resolved, expected to resolve, no finding, and the lookup time."""
    lab.network("app")
    api = lab.run("api", networks=("app",))
    db = lab.run("db", networks=("app",))
    daemon = start_daemon({**NETNS, "NETWATCH_PROBES__DNS__INTERVAL": "4s"})
    daemon.wait_ready()

    def resolved() -> list[float]:
        return series(
            daemon.metrics(), "netwatch_dns_resolved", src=api, dst=db, name=db
        )

    wait_for(lambda: resolved() == [1.0], 30, "the name to resolve")
    metrics = daemon.metrics()
    assert series(metrics, "netwatch_dns_expected_resolved", src=api, dst=db) == [1.0]
    assert series(metrics, "netwatch_dns_findings", src=api, dst=db) == [0.0]
    lookup = series(metrics, "netwatch_dns_lookup_seconds", src=api, dst=db, name=db)
    assert lookup
    assert 0 < lookup[0] < 2


def test_http_status_and_time_to_first_byte(lab):
    lab.network("app")
    web = lab.run(
        "web",
        "busybox",
        networks=("app",),
        labels={"netwatch.http.port": "8080", "netwatch.http.path": "/etc/hostname"},
        command=("httpd", "-f", "-p", "8080", "-h", "/"),
    )
    missing = lab.run(
        "missing",
        "busybox",
        networks=("app",),
        labels={"netwatch.http.port": "8080", "netwatch.http.path": "/no/such/page"},
        command=("httpd", "-f", "-p", "8080", "-h", "/"),
    )
    silent = lab.run("silent", networks=("app",), labels={"netwatch.http.port": "8080"})
    client = lab.run("client", networks=("app",))

    _, body = matrix(lab, "netns")
    pairs = pairs_of(body)

    ok = pairs[(client, web)]["probes"]["http"]["results"][0]
    assert ok["outcome"] == "ok"
    assert ok["status"] == 200
    assert 0 < ok["ttfb_s"] < 2
    assert ok["target"] == f"{lab.ip(web, 'app')}:8080"
    assert pairs[(client, missing)]["probes"]["http"]["results"][0]["status"] == 404
    closed = pairs[(client, silent)]["probes"]["http"]["results"][0]
    assert closed["outcome"] == "unreachable"
    assert closed["reason"] == "refused"
    # HTTP is its own check: the pair's reachability is ping's and tcp's.
    assert pairs[(client, silent)]["verdict"] == "ok"


def processes(container: str) -> str:
    return docker("top", container, "-eo", "pid,args")


def bandwidth(lab: Lab, src: str, dst: str, extra: dict[str, str] | None = None):
    env = netwatch_env(lab, extra)
    done = run_netwatch("bandwidth", src, dst, "--json", env=env, timeout=90)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def test_iperf3_between_two_containers_leaves_no_server_behind(lab):
    lab.network("app")
    src = lab.run("src", networks=("app",))
    dst = lab.run("dst", networks=("app",))

    code, result = bandwidth(lab, src, dst)

    assert code == 0, result
    assert result["method"] == "iperf3"
    assert result["outcome"] == "ok"
    assert result["bits_per_second"] > 1e6
    assert result["retransmits"] is not None
    assert "iperf3" not in processes(dst)
    assert "iperf3" not in processes(src)


def test_a_client_that_never_comes_still_ends_the_server(lab):
    """The source has no iperf3 and its namespace is not used (exec
    engine): nothing is measured, and the server started in the destination
    is gone by its deadline."""
    lab.network("app")
    src = lab.run("src", "busybox", networks=("app",))
    dst = lab.run("dst", networks=("app",))

    code, result = bandwidth(
        lab,
        src,
        dst,
        {
            "NETWATCH_PROBES__BANDWIDTH__METHOD": "iperf3",
            "NETWATCH_PROBES__BANDWIDTH__SERVER_DEADLINE": "8s",
        },
    )

    assert code == 1
    assert result["outcome"] == "unmeasured"
    assert result["reason"] == "tool_missing"
    assert "iperf3" not in processes(dst)


def test_without_iperf3_the_namespace_engine_measures_with_sockets(lab):
    lab.network("app")
    src = lab.run("src", "distroless", networks=("app",), command=("/sleeper",))
    dst = lab.run("dst", "distroless", networks=("app",), command=("/sleeper",))

    code, result = bandwidth(lab, src, dst, NETNS)

    assert code == 0, result
    assert result["method"] == "socket"
    assert result["bits_per_second"] > 1e6


def test_a_busy_server_is_not_measured_and_not_unreachable(lab):
    """The destination's own iperf3 server holds the port and serves
    someone else's long test: netwatch reports that it could not measure,
    never that the path is down."""
    lab.network("app")
    dst = lab.run("dst", networks=("app",), command=("iperf3", "-s", "-p", "5201"))
    other = lab.run("other", networks=("app",))
    src = lab.run("src", networks=("app",))
    address = lab.ip(dst, "app")
    hog = threading.Thread(
        target=docker,
        args=("exec", other, "iperf3", "-c", address, "-t", "20", "-b", "1M"),
        kwargs={"check": False, "timeout": 40},
        daemon=True,
    )
    hog.start()
    wait_for(lambda: "iperf3 -c" in processes(other), 10, "the other test to start")

    code, result = bandwidth(lab, src, dst)

    assert code == 1
    assert result["outcome"] == "unmeasured", result
    assert result["reason"] in ("port_in_use", "server_busy")
    hog.join(timeout=40)


def test_the_daemon_exports_bandwidth_for_a_rotating_sample(lab, start_daemon):
    lab.network("app")
    a = lab.run("a", networks=("app",))
    b = lab.run("b", networks=("app",))
    daemon = start_daemon(
        {
            "NETWATCH_PROBES__BANDWIDTH__ENABLED": "true",
            "NETWATCH_PROBES__BANDWIDTH__INTERVAL": "3s",
            "NETWATCH_PROBES__BANDWIDTH__DURATION": "1s",
            "NETWATCH_PROBES__BANDWIDTH__SERVER_DEADLINE": "6s",
        }
    )
    daemon.wait_ready()

    def both_measured() -> bool:
        metrics = daemon.metrics()
        return all(
            series(
                metrics,
                "netwatch_bandwidth_bits_per_second",
                src=src,
                dst=dst,
                method="iperf3",
            )
            for src, dst in ((a, b), (b, a))
        )

    wait_for(both_measured, 60, "both directions to be measured")
    daemon.stop()
    assert "iperf3" not in processes(a)
    assert "iperf3" not in processes(b)
