"""One full ping round: the naive exec-per-pair loop against netwatch.

Starts N containers (default 10, so 90 ordered pairs) spread over a few
networks (default 3; --networks 1 puts them all on one), then measures, in
one run on this machine:

  naive     `docker exec SRC ping -c 1 -W 1 DST` for every ordered pair, one
            after the other (DST addressed by an IP on a shared network when
            there is one, else by its first IP);
  netwatch  two rounds of netwatch's exec engine over the same pairs (ping
            only, the default 3 echoes per pair, one exec per source): the
            first also learns each container's tools; the second is what
            the daemon runs every interval;
  CLI       `netwatch matrix` end to end (start, discovery, round, print).

Needs a Docker engine and the test images (bash tests/images/build.sh).

    .venv/bin/python benchmarks/round_vs_naive.py [--containers 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import uuid

from prometheus_client import CollectorRegistry

from netwatch.config import load_config
from netwatch.discovery import Discovery
from netwatch.docker_api import DockerClient
from netwatch.matrix import ReachabilityMatrix
from netwatch.metrics import SelfMetrics
from netwatch.pairs import plan_pairs
from netwatch.probes.exec_engine import ExecEngine
from netwatch.probes.outcome import ProbeKind
from netwatch.scheduler import probe_once


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


def naive_round(names: list[str]) -> float:
    ips = {name: addresses(name) for name in names}
    started = time.monotonic()
    for src in names:
        for dst in names:
            if src == dst:
                continue
            shared = [net for net in ips[dst] if net in ips[src]]
            target = ips[dst][shared[0]] if shared else next(iter(ips[dst].values()))
            subprocess.run(
                ["docker", "exec", src, "ping", "-c", "1", "-W", "1", target],
                capture_output=True, check=False,
            )  # fmt: skip
    return time.monotonic() - started


async def _two_rounds(prefix: str) -> tuple[float, float, int]:
    """A first round (which also learns each container's tools), then a
    second, as the daemon runs every interval once it knows them."""
    config = load_config(
        overrides={
            "discovery": {"match_labels": {"netwatch.bench": prefix}},
            "probes": {"tcp": {"enabled": False}},
        }
    )
    metrics = SelfMetrics(CollectorRegistry(auto_describe=False))
    async with DockerClient(
        exec_start_concurrency=config.docker.exec_concurrency
    ) as client:
        discovery = Discovery(
            client, config.discovery, metrics=metrics, on_change=lambda: None
        )
        await discovery.refresh_all()
        monitored = discovery.monitored()
        plan = plan_pairs(monitored.values(), max_ports=8)
        engine = ExecEngine(client, config.probes, metrics=metrics)
        timings = []
        for _ in range(2):
            matrix = ReachabilityMatrix(config.matrix)
            matrix.set_plan(plan, monitored)
            started = time.monotonic()
            await probe_once(engine, matrix, plan, monitored, [ProbeKind.PING])
            timings.append(time.monotonic() - started)
        return timings[0], timings[1], plan.count


def cli_round(prefix: str) -> float:
    env_selector = json.dumps({"netwatch.bench": prefix})
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "netwatch", "matrix", "--json"],
        capture_output=True,
        check=False,
        env={
            "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
            "NETWATCH_DISCOVERY__MATCH_LABELS": env_selector,
            "NETWATCH_PROBES__TCP__ENABLED": "false",
        },
    )
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=10)
    parser.add_argument(
        "--networks",
        type=int,
        default=3,
        help="networks to spread the containers over (1: everyone reaches everyone)",
    )
    args = parser.parse_args()

    prefix = f"nwb{uuid.uuid4().hex[:6]}"
    names, networks = start_lab(prefix, args.containers, max(1, args.networks))
    try:
        pairs = len(names) * (len(names) - 1)
        naive = naive_round(names)
        first, steady, measured = asyncio.run(_two_rounds(prefix))
        cli = cli_round(prefix)
    finally:
        docker("rm", "-f", *names)
        for network in networks:
            docker("network", "rm", network)

    print(
        f"containers: {len(names)} on {len(networks)} network(s)  "
        f"pairs: {pairs} (netwatch measured {measured})"
    )
    print(f"{'method':<44}{'seconds':>10}{'pairs/s':>10}")
    for label, seconds in (
        ("naive: docker exec ping -c 1 per pair", naive),
        ("netwatch exec engine: first round", first),
        ("netwatch exec engine: steady-state round", steady),
        ("netwatch matrix CLI, end to end", cli),
    ):
        print(f"{label:<44}{seconds:>10.2f}{pairs / seconds:>10.1f}")
    print(
        f"speed-up over the naive loop: {naive / first:.1f}x (first round), "
        f"{naive / steady:.1f}x (steady state); netwatch sends 3 echoes a pair, "
        "the naive loop 1"
    )


if __name__ == "__main__":
    main()
