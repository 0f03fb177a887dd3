"""One full ping round: the naive exec-per-pair loop against netwatch's engines.

Starts N containers (default 10, so 90 ordered pairs; several sizes with
--containers 10,30,60) spread over a few
networks (default 3; --networks 1 puts them all on one), then measures, in
one run on this machine:

  (a) naive  `docker exec SRC ping -c 1 -W 1 DST` for every ordered pair, one
             after the other (DST addressed on a shared network when there is
             one, else by its first address). Above --naive-max pairs it runs
             on a random sample of that many pairs and the full round is
             extrapolated from it: the table says so.
  (b) exec   netwatch's exec engine: one exec per source, 3 echoes per pair;
             a first round (which also learns each container's tools), then
             the steady-state round the daemon runs every interval.
  (c) netns  netwatch's namespace engine: sockets inside each source's
             namespace, no exec; 3 echoes per pair; steady state.

Needs a Docker engine, the test images (bash tests/images/build.sh), and
root for (c).

    .venv/bin/python benchmarks/round_vs_naive.py --containers 10,30,60 --soak 180

With --soak, the daemon (`netwatch run`, namespace engine) also watches the
largest lab for that long after its first full round: its CPU, peak memory,
the execs per second the engine sees, and the time to serve /metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import uvloop
from prometheus_client import CollectorRegistry

from netwatch.config import LogSettings, ProbeSettings, load_config
from netwatch.discovery import Discovery
from netwatch.docker_api import DockerClient
from netwatch.logs import configure_logging
from netwatch.matrix import ReachabilityMatrix, Verdict
from netwatch.metrics import SelfMetrics
from netwatch.pairs import plan_pairs
from netwatch.probes.exec_engine import ExecEngine
from netwatch.probes.netns_engine import NetnsEngine
from netwatch.probes.outcome import ProbeKind
from netwatch.scheduler import ProbeEngine, probe_once


def docker(*argv: str) -> str:
    return subprocess.run(
        ["docker", *argv], capture_output=True, text=True, check=True
    ).stdout.strip()


def start_lab(prefix: str, count: int, spread: int) -> tuple[list[str], list[str]]:
    networks = [f"{prefix}-net{i}" for i in range(spread)]
    for network in networks:
        docker("network", "create", "--label", f"netwatch.bench={prefix}", network)
    names = []
    for i in range(count):
        name = f"{prefix}-c{i:02d}"
        docker(
            "run", "-d", "--name", name, "--label", f"netwatch.bench={prefix}",
            "--network", networks[i % spread], "netwatch-test/tools", "sleep", "100000",
        )  # fmt: skip
        if spread > 1 and i % 4 == 0:  # some containers sit on two networks
            docker("network", "connect", networks[(i + 1) % spread], name)
        names.append(name)
    return names, networks


def addresses(name: str) -> dict[str, str]:
    raw = docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", name)
    return {net: spec["IPAddress"] for net, spec in json.loads(raw).items()}


def naive_round(names: list[str], most: int) -> tuple[float, int]:
    """Seconds for the whole naive round (extrapolated above `most` pairs),
    and how many pairs were really run."""
    ips = {name: addresses(name) for name in names}
    pairs = [(src, dst) for src in names for dst in names if src != dst]
    sample = pairs if len(pairs) <= most else random.Random(7).sample(pairs, most)
    started = time.monotonic()
    for src, dst in sample:
        shared = [net for net in ips[dst] if net in ips[src]]
        target = ips[dst][shared[0]] if shared else next(iter(ips[dst].values()))
        subprocess.run(
            ["docker", "exec", src, "ping", "-c", "1", "-W", "1", target],
            capture_output=True, check=False,
        )  # fmt: skip
    took = time.monotonic() - started
    return took * len(pairs) / len(sample), len(sample)


async def engine_rounds(prefix: str) -> dict[str, tuple[float, int]]:
    """Seconds per round, and pairs judged ok, for each engine."""
    config = load_config(
        overrides={
            "discovery": {"match_labels": {"netwatch.bench": prefix}},
            "probes": {"tcp": {"enabled": False}},
        }
    )
    metrics = SelfMetrics(CollectorRegistry(auto_describe=False))
    found: dict[str, tuple[float, int]] = {}
    async with DockerClient(
        exec_start_concurrency=config.docker.exec_concurrency
    ) as client:
        discovery = Discovery(
            client, config.discovery, metrics=metrics, on_change=lambda: None
        )
        await discovery.refresh_all()
        monitored = discovery.monitored()
        plan = plan_pairs(monitored.values(), max_ports=8)
        exec_engine = ExecEngine(client, config.probes, metrics=metrics)
        netns_engine = NetnsEngine(ProbeSettings(), metrics=metrics)
        runs: list[tuple[str, ProbeEngine]] = [
            ("(b) exec engine, first round", exec_engine),
            ("(b) exec engine, steady state", exec_engine),
            ("(c) netns engine, steady state", netns_engine),
        ]
        try:
            for label, engine in runs:
                matrix = ReachabilityMatrix(config.matrix)
                matrix.set_plan(plan, monitored)
                started = time.monotonic()
                await probe_once(engine, matrix, plan, monitored, [ProbeKind.PING])
                took = time.monotonic() - started
                ok = matrix.snapshot().verdict_counts()[Verdict.OK]
                found[label] = (took, ok)
        finally:
            netns_engine.close()
    return found


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _get(url: str) -> tuple[float, str]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=10) as response:
        body = response.read().decode()
    return time.perf_counter() - started, body


def _metric(body: str, series: str) -> float:
    """The sum of the samples whose line starts with `series` (a name, or a
    name and the first labels)."""
    if "{" not in series:
        series_starts: tuple[str, ...] = (series + "{", series + " ")
    else:
        series_starts = (series,)
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith(series_starts)
    )


def _engine_execs(since: float, until: float) -> tuple[int, int]:
    """Execs started at the engine in [since, until], by anyone: those that
    ran iperf3 (bandwidth tests), and all the others."""
    out = docker(
        "events", "--since", f"{since:.3f}", "--until", f"{until:.3f}",
        "--filter", "type=container", "--format", "{{json .Action}}",
    )  # fmt: skip
    starts = [
        a for a in map(json.loads, out.splitlines()) if a.startswith("exec_start")
    ]
    iperf3 = sum(1 for action in starts if "iperf3" in action)
    return iperf3, len(starts) - iperf3


def soak(prefix: str, seconds: float, port: int = 10989) -> dict[str, float]:
    """Runs `netwatch run` (namespace engine) on the lab for `seconds` after
    its first full round, and reports what it cost."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETWATCH_")}
    env |= {
        "NETWATCH_DISCOVERY__MATCH_LABELS": json.dumps({"netwatch.bench": prefix}),
        "NETWATCH_PROBES__ENGINE": "netns",
        "NETWATCH_HTTP__LISTEN": f"127.0.0.1:{port}",
        "NETWATCH_LOG__LEVEL": "warning",
    }
    daemon = subprocess.Popen(
        [sys.executable, "-m", "netwatch", "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(base + "/-/ready", timeout=2) as ready:
                    if ready.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise SystemExit("the daemon never became ready")
            time.sleep(0.5)
        cpu_start, wall_start = _cpu_seconds(daemon.pid), time.time()
        _, body = _get(base + "/metrics")
        execs_start = _metric(body, "netwatch_execs_total")
        scrapes: list[float] = []
        while time.time() - wall_start < seconds:
            took, body = _get(base + "/metrics")
            scrapes.append(took)
            time.sleep(5)
        wall_end = time.time()
        cpu = _cpu_seconds(daemon.pid) - cpu_start
        execs_own = _metric(body, "netwatch_execs_total") - execs_start
        window = wall_end - wall_start
        iperf3_execs, probe_execs = _engine_execs(wall_start, wall_end)
        rounds = _metric(body, 'netwatch_rounds_total{probe="ping"')
        round_sum = _metric(body, 'netwatch_round_duration_seconds_sum{probe="ping"')
        round_count = _metric(
            body, 'netwatch_round_duration_seconds_count{probe="ping"'
        )
        scrapes.sort()
        return {
            "window_s": wall_end - wall_start,
            "cpu_percent": 100 * cpu / (wall_end - wall_start),
            "peak_rss_mb": _peak_rss_mb(daemon.pid),
            "engine_execs_per_s": probe_execs / window,
            "engine_iperf3_execs_per_s": iperf3_execs / window,
            "netwatch_execs_per_s": execs_own / window,
            "metrics_median_ms": 1000 * statistics.median(scrapes),
            "metrics_max_ms": 1000 * scrapes[-1],
            "metrics_bytes": len(body.encode()),
            "ping_rounds": rounds,
            "ping_round_avg_s": round_sum / round_count if round_count else 0.0,
        }
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)


def measure(count: int, spread: int, naive_max: int, soak_s: float) -> dict:  # type: ignore[type-arg]
    prefix = f"nwb{uuid.uuid4().hex[:6]}"
    names, networks = start_lab(prefix, count, spread)
    try:
        naive, sampled = naive_round(names, naive_max)
        # The loop the daemon runs on.
        engines = uvloop.run(engine_rounds(prefix))
        soaked = soak(prefix, soak_s) if soak_s > 0 else None
    finally:
        docker("rm", "-f", *names)
        for network in networks:
            docker("network", "rm", network)
    return {
        "containers": count,
        "pairs": count * (count - 1),
        "naive": naive,
        "sampled": sampled,
        "engines": engines,
        "soak": soaked,
    }


def print_size(row: dict) -> None:  # type: ignore[type-arg]
    pairs = row["pairs"]
    print(f"\n## {row['containers']} containers, {pairs} ordered pairs")
    naive_label = "(a) naive: docker exec ping -c 1 per pair"
    if row["sampled"] < pairs:
        naive_label += f" [{row['sampled']} run, rest extrapolated]"
    print(f"{'method':<62}{'seconds':>9}{'x naive':>9}{'ok pairs':>10}")
    print(f"{naive_label:<62}{row['naive']:>9.2f}{1:>9.1f}{'-':>10}")
    for label, (seconds, ok) in row["engines"].items():
        speedup = row["naive"] / seconds
        print(f"{label:<62}{seconds:>9.2f}{speedup:>9.1f}{ok:>10}")


def print_soak(count: int, soaked: dict[str, float]) -> None:
    print(f"\n## netwatch run, namespace engine, {count} containers, ")
    print(f"##   {soaked['window_s']:.0f} s after its first full round")
    rows = [
        ("daemon CPU (% of one core)", f"{soaked['cpu_percent']:.1f}"),
        ("daemon peak memory (VmHWM, MB)", f"{soaked['peak_rss_mb']:.1f}"),
        ("execs/s at the engine, iperf3 aside", f"{soaked['engine_execs_per_s']:.3f}"),
        ("execs/s at the engine, iperf3", f"{soaked['engine_iperf3_execs_per_s']:.3f}"),
        ("execs/s counted by netwatch (all)", f"{soaked['netwatch_execs_per_s']:.3f}"),
        ("/metrics served, median (ms)", f"{soaked['metrics_median_ms']:.1f}"),
        ("/metrics served, slowest (ms)", f"{soaked['metrics_max_ms']:.1f}"),
        ("/metrics size (bytes)", f"{soaked['metrics_bytes']:.0f}"),
        ("ping rounds completed", f"{soaked['ping_rounds']:.0f}"),
        ("ping round, average (s)", f"{soaked['ping_round_avg_s']:.2f}"),
    ]
    for label, value in rows:
        print(f"{label:<44}{value:>12}")


def main() -> None:
    configure_logging(LogSettings(level="warning", format="console"))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--containers",
        default="10",
        help="comma-separated sizes to measure, e.g. 10,30,60",
    )
    parser.add_argument(
        "--networks",
        type=int,
        default=3,
        help="networks to spread the containers over (1: everyone reaches everyone)",
    )
    parser.add_argument(
        "--naive-max",
        type=int,
        default=200,
        help="above this many pairs, the naive loop is sampled and extrapolated",
    )
    parser.add_argument(
        "--soak",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="at the largest size, also run the daemon this long and report "
        "its CPU, memory, exec rate and /metrics time",
    )
    args = parser.parse_args()
    sizes = sorted({int(size) for size in args.containers.split(",")})

    rows = []
    for size in sizes:
        soak_s = args.soak if size == sizes[-1] else 0.0
        rows.append(measure(size, max(1, args.networks), args.naive_max, soak_s))
    print(f"one full ping round per method, {args.networks} network(s)")
    for row in rows:
        print_size(row)
    print("\nnetwatch sends 3 echoes per pair, the naive loop 1.")
    if rows[-1]["soak"] is not None:
        print_soak(rows[-1]["containers"], rows[-1]["soak"])


if __name__ == "__main__":
    main()
