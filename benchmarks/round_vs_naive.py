"""One full ping round: the naive exec-per-pair loop against netwatch's engines.

Starts N containers (default 10, so 90 ordered pairs) spread over a few
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

    .venv/bin/python benchmarks/round_vs_naive.py [--containers 10] [--networks 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import time
import uuid

from prometheus_client import CollectorRegistry

from netwatch.config import ProbeSettings, load_config
from netwatch.discovery import Discovery
from netwatch.docker_api import DockerClient
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=10)
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
    args = parser.parse_args()

    prefix = f"nwb{uuid.uuid4().hex[:6]}"
    names, networks = start_lab(prefix, args.containers, max(1, args.networks))
    try:
        pairs = len(names) * (len(names) - 1)
        naive, sampled = naive_round(names, args.naive_max)
        engines = asyncio.run(engine_rounds(prefix))
    finally:
        docker("rm", "-f", *names)
        for network in networks:
            docker("network", "rm", network)

    print(f"containers: {len(names)} on {len(networks)} network(s)")
    print(f"ordered pairs: {pairs}")
    naive_label = "(a) naive: docker exec ping -c 1 per pair"
    if sampled < pairs:
        naive_label += f" [{sampled} run, rest extrapolated]"
    print(f"{'method':<62}{'seconds':>9}{'x naive':>9}{'ok pairs':>10}")
    print(f"{naive_label:<62}{naive:>9.2f}{1:>9.1f}{'-':>10}")
    for label, (seconds, ok) in engines.items():
        print(f"{label:<62}{seconds:>9.2f}{naive / seconds:>9.1f}{ok:>10}")
    print("netwatch sends 3 echoes per pair, the naive loop 1.")


if __name__ == "__main__":
    main()
