"""Fixtures for tests against a real Docker engine.

Every container and network a test makes carries its lab's prefix and label,
and the `lab` fixture removes them all afterwards, whatever happened. Tests
skip when no engine answers, except when NETWATCH_REQUIRE_DOCKER=1 (CI sets
it): then a missing engine fails them.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ("tools", "busybox", "ncat", "liar", "distroless")
REQUIRE_DOCKER = os.environ.get("NETWATCH_REQUIRE_DOCKER") == "1"
ARTIFACTS = ROOT / "test-artifacts"

# Probe timings for tests: fast rounds that still fit the config's checks.
FAST = {
    "NETWATCH_PROBES__PING__INTERVAL": "4s",
    "NETWATCH_PROBES__PING__COUNT": "2",
    "NETWATCH_PROBES__PING__REPLY_TIMEOUT": "1s",
    "NETWATCH_PROBES__TCP__INTERVAL": "4s",
    "NETWATCH_PROBES__TCP__CONNECT_TIMEOUT": "1s",
    "NETWATCH_LOG__FORMAT": "json",
    # The exec engine unless a test asks for the namespace engine.
    "NETWATCH_PROBES__ENGINE": "exec",
    # Bandwidth tests run only where a test asks for them.
    "NETWATCH_PROBES__BANDWIDTH__ENABLED": "false",
}


def docker(*argv: str, check: bool = True, timeout: float = 60) -> str:
    done = subprocess.run(
        ["docker", *argv], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(argv)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def _engine_answers() -> bool:
    try:
        return (
            subprocess.run(
                ["docker", "info"], capture_output=True, timeout=15, check=False
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """A Docker engine that answers, with the test images built."""
    if not _engine_answers():
        message = "no Docker engine answers `docker info`"
        if REQUIRE_DOCKER:
            pytest.fail(f"{message}, and NETWATCH_REQUIRE_DOCKER=1 forbids skipping")
        pytest.skip(message)
    missing = [
        image
        for image in IMAGES
        if not docker("images", "-q", f"netwatch-test/{image}", check=False)
    ]
    if missing:
        subprocess.run(["bash", str(ROOT / "tests/images/build.sh")], check=True)


class Lab:
    """Containers and networks for one test, all named with one prefix."""

    def __init__(self) -> None:
        self.prefix = f"nwt{uuid.uuid4().hex[:6]}"
        self.label = f"netwatch.test={self.prefix}"
        self._containers: list[str] = []
        self._networks: list[str] = []

    def name(self, short: str) -> str:
        return f"{self.prefix}-{short}"

    def network(self, short: str, *options: str) -> str:
        name = self.name(short)
        docker("network", "create", "--label", self.label, *options, name)
        self._networks.append(name)
        return name

    def run(
        self,
        short: str,
        image: str | None = "tools",
        *,
        networks: tuple[str, ...] = (),
        ports: str | None = None,
        labels: dict[str, str] | None = None,
        options: tuple[str, ...] = (),
        command: tuple[str, ...] = ("sleep", "100000"),
        full_image: str | None = None,
    ) -> str:
        """Starts a container on `networks` (short names; none = default
        bridge), from netwatch-test/IMAGE or from `full_image`."""
        name = self.name(short)
        argv = ["run", "-d", "--name", name, "--label", self.label]
        for key, value in (labels or {}).items():
            argv += ["--label", f"{key}={value}"]
        if ports is not None:
            argv += ["--label", f"netwatch.ports={ports}"]
        if networks:
            first, *rest = networks
            argv += ["--network", self._network_arg(first)]
        argv += [*options, full_image or f"netwatch-test/{image}", *command]
        self._containers.append(name)
        docker(*argv)
        for network in rest if networks else ():
            docker("network", "connect", self._network_arg(network), name)
        return name

    def _network_arg(self, short: str) -> str:
        if short in ("none", "host", "bridge") or short.startswith("container:"):
            return short
        return self.name(short)

    def listen(self, short: str, image: str = "tools", **kwargs: Any) -> str:
        """Starts a container that accepts TCP connections on port 8080."""
        command = (
            ("nc", "-lk", "8080") if image == "tools" else ("nc", "-lk", "-p", "8080")
        )
        return self.run(short, image, command=command, ports="8080", **kwargs)

    def ip(self, container: str, network: str) -> str:
        network = self._network_arg(network)
        template = f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}'
        return docker("inspect", "-f", template, container)

    def pid(self, container: str) -> int:
        return int(docker("inspect", "-f", "{{.State.Pid}}", container))

    def in_netns(self, container: str, *argv: str) -> None:
        """Runs a host command (iptables) inside the container's network namespace."""
        subprocess.run(
            ["nsenter", "-t", str(self.pid(container)), "-n", *argv],
            check=True,
            capture_output=True,
            timeout=30,
        )

    def forget(self, name: str) -> None:
        """The test removed this container itself."""
        with contextlib.suppress(ValueError):
            self._containers.remove(name)

    def cleanup(self) -> None:
        if self._containers:
            docker("rm", "-f", *self._containers, check=False)
        # Containers renamed or started by a test still carry the lab label.
        leftovers = docker("ps", "-aq", "--filter", f"label={self.label}", check=False)
        if leftovers:
            docker("rm", "-f", *leftovers.split(), check=False)
        for network in reversed(self._networks):
            docker("network", "rm", network, check=False)
        # By id: a hostile name (with / or ?) cannot be removed by name.
        networks = docker(
            "network", "ls", "-q", "--filter", f"label={self.label}", check=False
        )
        if networks:
            docker("network", "rm", *networks.split(), check=False)


@pytest.fixture
def lab(docker_engine: None) -> Iterator[Lab]:
    lab = Lab()
    try:
        yield lab
    finally:
        lab.cleanup()


def http_get(port: int, path: str, timeout: float = 10) -> tuple[int, str]:
    """GET from loopback; the connection is closed whatever happens."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def netwatch_env(lab: Lab, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a netwatch that watches only this lab's containers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETWATCH_")}
    env.update(FAST)
    env["NETWATCH_DISCOVERY__MATCH_LABELS"] = json.dumps({"netwatch.test": lab.prefix})
    env.update(extra or {})
    return env


def run_netwatch(
    *argv: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netwatch", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


class RunningDaemon:
    """A `netwatch run` subprocess, and its HTTP endpoints."""

    def __init__(
        self, process: subprocess.Popen[str], port: int, log_path: Path
    ) -> None:
        self.process = process
        self.port = port
        self.log_path = log_path

    def get(self, path: str) -> tuple[int, str]:
        return http_get(self.port, path)

    def matrix(self) -> dict[str, Any]:
        status, body = self.get("/api/v1/matrix")
        assert status == 200, body
        return json.loads(body)

    def metrics(self) -> str:
        status, body = self.get("/metrics")
        assert status == 200, body
        return body

    def pair(self, src: str, dst: str) -> dict[str, Any] | None:
        return next(
            (p for p in self.matrix()["pairs"] if p["src"] == src and p["dst"] == dst),
            None,
        )

    def log_events(self) -> list[dict[str, Any]]:
        lines = self.log_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def events(self, name: str) -> list[dict[str, Any]]:
        """The daemon's log lines of one event, oldest first."""
        return [event for event in self.log_events() if event["event"] == name]

    def wait_ready(self, timeout: float = 60) -> None:
        wait_for(
            lambda: self.get("/-/ready")[0] == 200, timeout, "netwatch to be ready"
        )

    def stop(self, timeout: float = 15) -> float:
        """SIGTERM, and how long the daemon took to exit."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=timeout)
        return time.monotonic() - started


def wait_for(
    condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.5
) -> Any:
    """Polls `condition` until it returns something true; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except (AssertionError, OSError, KeyError, TypeError, ValueError) as exc:
            last_error, value = exc, None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what}: {last_error!r}"
    )


@pytest.fixture
def start_daemon(
    lab: Lab, request: pytest.FixtureRequest
) -> Iterator[Callable[..., RunningDaemon]]:
    """Starts `netwatch run` on a free loopback port, watching only the lab."""
    daemons: list[RunningDaemon] = []
    ARTIFACTS.mkdir(exist_ok=True)

    def start(
        extra_env: dict[str, str] | None = None,
        *argv: str,
        answers: Callable[[RunningDaemon], bool] | None = None,
    ) -> RunningDaemon:
        """`answers` tells when it is up (default: /-/healthy over HTTP)."""
        port = free_port()
        env = netwatch_env(
            lab, {"NETWATCH_HTTP__LISTEN": f"127.0.0.1:{port}", **(extra_env or {})}
        )
        log_path = ARTIFACTS / f"{request.node.name}-{len(daemons)}.log"
        with log_path.open("w") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "netwatch", "run", *argv],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
            )
        daemon = RunningDaemon(process, port, log_path)
        daemons.append(daemon)
        answering = answers or (lambda d: d.get("/-/healthy")[0] == 200)
        wait_for(lambda: answering(daemon), 30, "netwatch to answer")
        return daemon

    yield start
    for daemon in daemons:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait(timeout=10)
