"""The daemon against a real engine: the three-tier lab and its changes."""

from __future__ import annotations

import re

import pytest

from tests.integration.conftest import Lab, docker, netwatch_env, run_netwatch, wait_for

pytestmark = pytest.mark.docker


def three_tier(lab: Lab) -> tuple[str, str, str]:
    """web on frontend+backend, api on backend+database, db on database."""
    for network in ("frontend", "backend", "database"):
        lab.network(network)
    web = lab.listen("web", networks=("frontend", "backend"))
    api = lab.listen("api", networks=("backend", "database"))
    db = lab.listen("db", networks=("database",))
    return web, api, db


def series(metrics: str, name: str, /, **labels: str) -> list[float]:
    """Values of the series of `name` whose labels include `labels`."""
    values = []
    for line in metrics.splitlines():
        if not line.startswith((name + "{", name + " ")):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            values.append(float(line.rsplit(" ", 1)[1]))
    return values


def test_three_tier_lab_matches_its_design(lab, start_daemon):
    """web and api reach each other, api and db too, web and db do not; every
    pair is judged ok, by ping and by TCP, in the JSON and in /metrics."""
    web, api, db = three_tier(lab)

    daemon = start_daemon()
    daemon.wait_ready()
    matrix = daemon.matrix()
    metrics = daemon.metrics()

    pairs = {(p["src"], p["dst"]): p for p in matrix["pairs"]}
    assert len(pairs) == 6
    reachable = {(web, api), (api, web), (api, db), (db, api)}
    for (src, dst), pair in pairs.items():
        expected = (src, dst) in reachable
        assert pair["expected_reachable"] is expected, (src, dst)
        assert pair["verdict"] == "ok", pair
        assert pair["probes"]["ping"]["state"] == (
            "reachable" if expected else "unreachable"
        )
        assert pair["probes"]["tcp"]["state"] == (
            "reachable" if expected else "unreachable"
        )
        assert series(
            metrics, "netwatch_pair_reachable", src=src, dst=dst, probe="ping"
        ) == [1.0 if expected else 0.0]
        assert series(
            metrics, "netwatch_pair_expected_reachable", src=src, dst=dst
        ) == [1.0 if expected else 0.0]
        assert series(
            metrics, "netwatch_pair_verdict", src=src, dst=dst, verdict="ok"
        ) == [1.0]
    # web and api share only the backend: api is probed at its address there.
    (result,) = pairs[(web, api)]["probes"]["ping"]["results"]
    assert result["network"] == lab.name("backend")
    assert result["target"] == lab.ip(api, "backend")
    assert series(metrics, "netwatch_containers") == [3.0]
    assert (
        series(
            metrics, "netwatch_ping_rtt_seconds_bucket", src=web, dst=api, le="+Inf"
        )[0]
        > 0
    )
    assert re.search(r'^netwatch_ping_rtt_seconds_bucket\{.*le="1e-05"', metrics, re.M)
    assert series(metrics, "netwatch_ping_loss_ratio", src=web, dst=api) == [0.0]


def test_disconnect_changes_matrix_and_metrics_within_15_seconds(lab, start_daemon):
    """Taking web off the backend makes web/api an isolated pair, at once in
    the expectation and, by measurement, in the verdict and /metrics."""
    web, api, _ = three_tier(lab)
    daemon = start_daemon()
    daemon.wait_ready()
    assert daemon.pair(web, api)["expected_reachable"] is True

    docker("network", "disconnect", lab.name("backend"), web)

    def isolated() -> bool:
        pair = daemon.pair(web, api)
        metrics = daemon.metrics()
        return (
            pair["expected_reachable"] is False
            and pair["probes"]["ping"]["state"] == "unreachable"
            and pair["verdict"] == "ok"
            and series(metrics, "netwatch_pair_expected_reachable", src=web, dst=api)
            == [0.0]
            and series(
                metrics, "netwatch_pair_reachable", src=web, dst=api, probe="ping"
            )
            == [0.0]
        )

    wait_for(isolated, 15, "web/api to be measured isolated")


def test_removed_container_vanishes_from_the_next_scrape(lab, start_daemon):
    """After `docker rm`, no series names the container (NW-020)."""
    web, api, db = three_tier(lab)
    daemon = start_daemon()
    daemon.wait_ready()
    assert f'"{db}"' in daemon.metrics()

    docker("rm", "-f", db)
    lab.forget(db)

    wait_for(lambda: f'"{db}"' not in daemon.metrics(), 10, "db's series to vanish")
    assert {p["src"] for p in daemon.matrix()["pairs"]} == {web, api}


def test_renamed_container_is_labelled_by_its_new_name(lab, start_daemon):
    """After `docker rename`, the old name is gone and the new one measured (NW-020)."""
    _, api, db = three_tier(lab)
    daemon = start_daemon()
    daemon.wait_ready()
    renamed = lab.name("db-primary")

    docker("rename", db, renamed)
    lab.forget(db)

    def renamed_everywhere() -> bool:
        metrics = daemon.metrics()
        pair = daemon.pair(api, renamed)
        return (
            f'"{db}"' not in metrics
            and series(
                metrics, "netwatch_pair_reachable", src=api, dst=renamed, probe="ping"
            )
            == [1.0]
            and pair is not None
            and pair["verdict"] == "ok"
        )

    wait_for(renamed_everywhere, 15, "the new name to replace the old")


def test_a_paused_container_is_held_not_unreachable(lab, start_daemon):
    """Pausing db marks its pairs 'not measured', never unreachable or broken."""
    _, api, db = three_tier(lab)
    daemon = start_daemon()
    daemon.wait_ready()

    docker("pause", db)
    try:

        def held() -> bool:
            pair = daemon.pair(api, db)
            back = daemon.pair(db, api)
            return (
                pair["hold"] == "destination is paused"
                and pair["verdict"] == "unmeasured"
                and back["hold"] == "source is paused"
                and back["verdict"] == "unmeasured"
            )

        wait_for(held, 10, "db's pairs to be held")
        metrics = daemon.metrics()
        assert series(
            metrics, "netwatch_pair_verdict", src=api, dst=db, verdict="broken"
        ) == [0.0]
    finally:
        docker("unpause", db)

    wait_for(
        lambda: daemon.pair(api, db)["verdict"] == "ok", 15, "db to be measured again"
    )


def test_new_container_joins_the_matrix(lab, start_daemon):
    """A container started while netwatch runs is probed within seconds."""
    _, api, db = three_tier(lab)
    daemon = start_daemon()
    daemon.wait_ready()

    cache = lab.run("cache", networks=("backend",))

    def joined() -> bool:
        pair = daemon.pair(api, cache)
        return (
            pair is not None
            and pair["probes"].get("ping", {}).get("state") == "reachable"
        )

    wait_for(joined, 15, "cache to be measured")
    assert daemon.pair(db, cache)["expected_reachable"] is False


def test_sigterm_stops_quickly_and_leaves_no_exec_behind(lab, start_daemon):
    """SIGTERM ends the daemon within a few seconds; no probe process stays
    in any container."""
    web, api, db = three_tier(lab)
    daemon = start_daemon()
    daemon.wait_ready()

    took = daemon.stop()

    assert daemon.process.returncode == 0
    assert took < 8
    for container in (web, api, db):
        processes = docker("top", container, "-o", "pid,args")
        leftovers = [
            line for line in processes.splitlines()[1:] if "nc -lk" not in line
        ]
        assert leftovers == [], (container, leftovers)


def test_an_engine_with_nothing_to_watch_is_ready_at_once(lab, start_daemon):
    """With no container to monitor, the first (empty) round completes and
    /-/ready answers 200 within seconds, not at the first engine event."""
    daemon = start_daemon()

    daemon.wait_ready(timeout=10)

    assert daemon.matrix()["summary"]["pairs"] == 0


def test_topology_changes_are_never_judged_on_stale_results(lab, start_daemon):
    """Right after a disconnect or a reconnect, web/api is re-measured: its
    verdict is never a false 'unexpected' or 'broken', and the loss of the
    isolated spell does not follow it back as 'degraded'."""
    web, api, _ = three_tier(lab)
    daemon = start_daemon()
    daemon.wait_ready()
    seen: list[tuple[bool, str, str]] = []

    def settles(expected: bool) -> bool:
        pair = daemon.pair(web, api)
        seen.append((pair["expected_reachable"], pair["state"], pair["verdict"]))
        return pair["expected_reachable"] is expected and pair["verdict"] == "ok"

    docker("network", "disconnect", lab.name("backend"), web)
    wait_for(lambda: settles(False), 15, "web/api to settle isolated", interval=0.1)
    docker("network", "connect", lab.name("backend"), web)
    wait_for(lambda: settles(True), 15, "web/api to settle reachable", interval=0.1)

    assert {verdict for _, _, verdict in seen} <= {"ok", "unmeasured"}, seen
    ping = daemon.pair(web, api)["probes"]["ping"]
    assert ping["state"] in ("reachable", "degraded")
    # The loss window holds only runs since the reconnect (2 echoes a run);
    # the isolated spell's total loss is not carried back.
    assert ping["window_sent"] <= 4, ping
    assert ping["loss_ratio"] < 1.0


def test_a_taken_port_is_a_clear_error(lab, start_daemon):
    """A second daemon on a port already in use exits 2 with a message."""
    daemon = start_daemon()
    env = netwatch_env(lab, {"NETWATCH_HTTP__LISTEN": f"127.0.0.1:{daemon.port}"})

    done = run_netwatch("run", env=env, timeout=30)

    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{daemon.port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_no_zombie_is_left_where_pid_1_never_reaps(lab, start_daemon):
    """Rounds of probes leave no zombie in a container whose PID 1 (sleep)
    never reaps orphans: every process a probe starts is waited for."""
    lab.network("app")
    quiet = lab.run("quiet", networks=("app",))
    lab.listen("server", networks=("app",))
    daemon = start_daemon()
    daemon.wait_ready()

    wait_for(
        lambda: series(daemon.metrics(), "netwatch_rounds_total", probe="ping")[0] >= 4,
        40,
        "four rounds",
    )

    processes = docker("top", quiet, "-o", "pid,stat,args").splitlines()[1:]
    zombies = [line for line in processes if line.split()[1].startswith("Z")]
    assert zombies == [], processes
