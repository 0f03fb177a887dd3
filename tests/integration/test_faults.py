"""Faults survived on the main engine: a hundred containers at once, and a
source paused or killed in the middle of its probe run."""

from __future__ import annotations

import datetime
import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.conftest import ARTIFACTS, RunningDaemon, docker, wait_for
from tests.integration.test_daemon import series

pytestmark = pytest.mark.docker

HUNDRED = 100
NETWORKS = 4
# The planner's default budget (planner.max_pairs).
MAX_PAIRS = 2000
# A guard against runaway growth, not a benchmark.
MEMORY_BOUND_BYTES = 300 * 2**20
# The lab's containers' own commands (`docker top` shows them).
MAIN_COMMANDS = ("sleep 100000", "nc -lk 8080")


def peak_memory_bytes(pid: int) -> int:
    """VmHWM of a process: the most resident memory it ever had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


def mean_round_s(daemon: RunningDaemon, rounds: int, timeout: float) -> float:
    """The mean duration of the next `rounds` full ping rounds."""
    metrics = daemon.metrics()
    name = "netwatch_round_duration_seconds"
    total = series(metrics, f"{name}_sum", probe="ping")[0]
    count = series(metrics, f"{name}_count", probe="ping")[0]

    def done() -> list[float] | None:
        now = daemon.metrics()
        later = series(now, f"{name}_count", probe="ping")[0]
        if later < count + rounds:
            return None
        return [series(now, f"{name}_sum", probe="ping")[0], later]

    later_total, later_count = wait_for(done, timeout, f"{rounds} more rounds")
    return (later_total - total) / (later_count - count)


def test_a_hundred_containers_at_once_are_all_planned_and_measured(lab, start_daemon):
    """A hundred containers started at once on four networks are all in the
    matrix within a minute; the plan keeps the planner's budget (every
    source its share of its own network's mesh), every planned pair is
    measured reachable as expected, and memory stays bounded."""
    networks = [lab.network(f"n{index}") for index in range(NETWORKS)]
    daemon = start_daemon(
        {
            "NETWATCH_PROBES__ENGINE": "netns",
            "NETWATCH_PROBES__DNS__ENABLED": "false",
            "NETWATCH_LOG__LEVEL": "debug",
        }
    )
    daemon.wait_ready()
    shorts = [f"c{index:03d}" for index in range(HUNDRED)]

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(
            pool.map(
                lambda item: lab.run(item[1], networks=(f"n{item[0] % NETWORKS}",)),
                enumerate(shorts),
            )
        )
    created_s = time.monotonic() - started

    def all_measured() -> dict | None:  # type: ignore[type-arg]
        body = daemon.matrix()
        if body["summary"]["containers"] < HUNDRED:
            return None
        if any(not p["probes"].get("ping", {}).get("results") for p in body["pairs"]):
            return None
        return body

    body = wait_for(all_measured, 90, "every planned pair measured", interval=2)
    settled_s = time.monotonic() - started
    round_s = mean_round_s(daemon, rounds=2, timeout=30)
    metrics = daemon.metrics()
    peak = peak_memory_bytes(daemon.process.pid)

    network_of = {c["name"]: c["networks"][0]["network"] for c in body["containers"]}
    assert set(network_of) == {lab.name(short) for short in shorts}
    assert set(network_of.values()) == set(networks)
    # 4 networks of 25 make a mesh of 2,400 pairs, over the budget of 2,000:
    # every source keeps its share, 2000 // 100 = 20 pairs of its own mesh.
    pairs = body["pairs"]
    assert len(pairs) == MAX_PAIRS
    assert Counter(p["src"] for p in pairs) == dict.fromkeys(network_of, 20)
    assert all(network_of[p["src"]] == network_of[p["dst"]] for p in pairs)
    assert all(p["expected_reachable"] for p in pairs)
    assert series(metrics, "netwatch_pairs", coverage="planned") == [MAX_PAIRS]
    assert series(metrics, "netwatch_pairs", coverage="sampled_out") == [
        HUNDRED * (HUNDRED - 1) - MAX_PAIRS
    ]
    assert series(metrics, "netwatch_pairs", coverage="measured_recently") == [
        MAX_PAIRS
    ]
    assert series(metrics, "netwatch_containers") == [HUNDRED]
    verdicts = Counter(p["verdict"] for p in pairs)
    assert verdicts == {"ok": MAX_PAIRS}, verdicts
    assert all(p["probes"]["ping"]["state"] == "reachable" for p in pairs)
    assert peak < MEMORY_BOUND_BYTES
    figures = {
        "containers": HUNDRED,
        "networks": NETWORKS,
        "planned_pairs": len(pairs),
        "engine": "netns",
        "create_s": round(created_s, 1),
        "start_to_all_measured_s": round(settled_s, 1),
        "ping_round_s": round(round_s, 2),
        "peak_rss_bytes": peak,
        "peak_rss_mib": round(peak / 2**20, 1),
    }
    print(json.dumps(figures))
    (ARTIFACTS / "hundred.json").write_text(json.dumps(figures, indent=2) + "\n")


def probe_processes(container: str) -> list[str]:
    """Processes in the container other than its main command: netwatch's."""
    lines = docker("top", container, "-o", "pid,args").splitlines()[1:]
    return [line for line in lines if not line.endswith(MAIN_COMMANDS)]


def taken_at(result: dict) -> float:  # type: ignore[type-arg]
    return datetime.datetime.fromisoformat(result["at"]).timestamp()


def test_a_source_paused_or_killed_mid_run_spoils_nothing_else(lab, start_daemon):
    """A source paused while its probe exec waits on a silent destination has
    its pairs held, never unreachable; a source killed mid-run vanishes from
    the matrix and the metrics; the other sources' rounds go on, no probe
    process is left in any container, and the daemon keeps running."""
    lab.network("app")
    # `slow` drops the echo requests sent to it, so the other sources' ping
    # runs wait out their timeout on it;
    # its TCP port answers, so it stays reachable as the topology expects.
    slow = lab.listen("slow", networks=("app",))
    lab.in_netns(
        slow, "iptables", "-A", "INPUT", "-p", "icmp", "--icmp-type", "echo-request",
        "-j", "DROP",
    )  # fmt: skip
    paused = lab.run("paused", networks=("app",))
    killed = lab.run("killed", networks=("app",))
    steady = [lab.run(f"steady{index}", networks=("app",)) for index in range(2)]
    daemon = start_daemon(
        {
            "NETWATCH_PROBES__PING__REPLY_TIMEOUT": "3s",
            "NETWATCH_PROBES__PING__INTERVAL": "6s",
        }
    )
    daemon.wait_ready()

    wait_for(lambda: probe_processes(paused), 20, "a run in paused", interval=0.05)
    docker("pause", paused)
    faulted_at = time.time()
    try:
        wait_for(lambda: probe_processes(killed), 20, "a run in killed", interval=0.05)
        docker("kill", killed)
        rounds = series(daemon.metrics(), "netwatch_rounds_total", probe="ping")[0]

        def gone_and_held() -> bool:
            body = daemon.matrix()
            names = {c["name"] for c in body["containers"]}
            held = [p for p in body["pairs"] if paused in (p["src"], p["dst"])]
            return (
                killed not in names
                and killed not in daemon.metrics()
                and len(held) == 6
                and all(p["hold"] is not None for p in held)
            )

        wait_for(gone_and_held, 15, "killed gone and paused held")
        wait_for(
            lambda: (
                series(daemon.metrics(), "netwatch_rounds_total", probe="ping")[0]
                >= rounds + 2
            ),
            20,
            "two more full rounds",
        )
        body = daemon.matrix()
        metrics = daemon.metrics()
        healthy = daemon.get("/-/healthy")[0]
    finally:
        docker("unpause", paused)

    assert {p["src"] for p in body["pairs"]} == {slow, paused, *steady}
    for pair in body["pairs"]:
        results = [r for view in pair["probes"].values() for r in view["results"]]
        if paused in (pair["src"], pair["dst"]):
            assert pair["verdict"] == "unmeasured", pair
            # What the frozen run reported after the pause is no verdict on
            # the network.
            after = [r for r in results if taken_at(r) >= faulted_at]
            assert all(r["outcome"] != "unreachable" for r in after), pair
        else:
            assert pair["verdict"] == "ok", pair
            assert max(taken_at(r) for r in results) > faulted_at, pair
    assert killed not in metrics
    assert healthy == 200
    assert daemon.process.poll() is None
    for container in [slow, paused, *steady]:
        wait_for(
            lambda c=container: probe_processes(c) == [],
            15,
            f"no probe process left in {container}",
        )
