"""dockerd stopped and started again under a running netwatch.

The machine's main engine is never touched: these tests start a second,
private dockerd (its own socket, data root, exec root and containerd, no
iptables rules of its own, addresses from 10.213.0.0/16, far from the main
engine's 172.17-31 networks), put three containers with `--restart always`
on one network there, and stop and start that engine while netwatch
watches it.

Its default bridge is one of its own (`--bridge` naming a bridge made here):
dockerd 20.10 deletes the host's `docker0`, the main engine's default
bridge, when started with `--bridge=none`, and when restarted with
`--default-address-pool`. So neither is used, and every network made on the
private engine names its subnet.
"""

from __future__ import annotations

import contextlib
import datetime
import http.client
import json
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import ARTIFACTS, Lab, RunningDaemon, wait_for
from tests.integration.test_daemon import series

pytestmark = pytest.mark.docker

# The private engine's default bridge, and the subnets of its networks.
DEFAULT_BRIDGE_ADDRESS = "10.213.255.1/24"
SUBNETS = (f"10.213.{index}.0/24" for index in range(1, 255))
# How long the engine stays down: several rounds of every probe.
OUTAGE_S = 10.0


# The main engine's default bridge.
MAIN_BRIDGE = "docker0"


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over the engine's unix socket (for GET /_ping)."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class PrivateEngine:
    """A dockerd of the test's own, stopped and started at will."""

    def __init__(self, root: Path, bridge: str, log_path: Path) -> None:
        self.root = root
        self.bridge = bridge
        self.socket = root / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        # Containers outlive the engine (dockerd --live-restore).
        self.live_restore = False

    def argv(self) -> list[str]:
        return [
            "dockerd",
            f"--host={self.host}",
            f"--data-root={self.root / 'data'}",
            f"--exec-root={self.root / 'exec'}",
            f"--pidfile={self.root / 'dockerd.pid'}",
            f"--bridge={self.bridge}",
            "--iptables=false",
            "--ip-masq=false",
            # Its own containerd namespace too, should it ever share one.
            "--containerd-namespace=netwatch-test",
            "--containerd-plugins-namespace=netwatch-test-plugins",
            "--shutdown-timeout=1",
            "--log-level=warn",
            *(["--live-restore"] if self.live_restore else []),
        ]

    def answers(self) -> bool:
        connection = _UnixHTTPConnection(self.socket, timeout=2)
        try:
            connection.request("GET", "/_ping")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def start(self, timeout: float = 60) -> float:
        """Starts dockerd; returns when (time.time()) it first answered."""
        assert self.process is None or self.process.poll() is not None
        main_bridge = _link_exists(MAIN_BRIDGE)
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                self.argv(), stdout=log_file, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.process.poll() is not None:
                raise AssertionError(
                    f"private dockerd exited {self.process.returncode}; "
                    f"see {self.log_path}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"private dockerd silent after {timeout}s")
            time.sleep(0.05)
        answered_at = time.time()
        # A guard: the main engine's default bridge must survive ours.
        assert _link_exists(MAIN_BRIDGE) or not main_bridge, (
            f"the private dockerd deleted {MAIN_BRIDGE}: check its options"
        )
        return answered_at

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, and waits until dockerd (and its containerd) is gone."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def use(self, *, live_restore: bool) -> None:
        """Runs the engine with or without --live-restore from now on."""
        if self.running and self.live_restore == live_restore:
            return
        self.stop()
        self.live_restore = live_restore
        self.start()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def docker(self, *argv: str, check: bool = True, timeout: float = 60) -> str:
        done = subprocess.run(
            ["docker", "-H", self.host, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise RuntimeError(
                f"docker {' '.join(argv)} (private engine) failed: "
                f"{done.stderr.strip()}"
            )
        return done.stdout.strip()

    def pid(self, container: str) -> int:
        return int(self.docker("inspect", "-f", "{{.State.Pid}}", container))

    def ip(self, container: str, network: str) -> str:
        template = f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}'
        return self.docker("inspect", "-f", template, container)


def _unmount_below(root: Path) -> None:
    """Lazily unmounts whatever an engine left mounted under `root`."""
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    points = [line.split()[4] for line in mounts]
    below = [point for point in points if point.startswith(f"{root}/")]
    for point in sorted(below, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _forward_chain() -> str:
    """Where an ACCEPT for the private bridge goes: the main engine's
    DOCKER-USER chain when it exists (it runs before the engine's DROPs)."""
    listed = subprocess.run(
        ["iptables", "-S", "DOCKER-USER"], capture_output=True, check=False
    )
    return "DOCKER-USER" if listed.returncode == 0 else "FORWARD"


@pytest.fixture(scope="module")
def private_engine(docker_engine: None) -> Iterator[PrivateEngine]:
    """A private dockerd with the tools image loaded; always stopped and
    its files removed afterwards."""
    if shutil.which("dockerd") is None:
        pytest.fail("dockerd is not installed (Debian's docker.io provides it)")
    ARTIFACTS.mkdir(exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="nwtd", dir="/tmp"))
    bridge = f"{root.name[:10]}br"
    engine = PrivateEngine(root, bridge, ARTIFACTS / "private-dockerd.log")
    try:
        for step in (
            ["add", bridge, "type", "bridge"],
            ["set", bridge, "up"],
        ):
            subprocess.run(["ip", "link", *step], check=True, timeout=30)
        subprocess.run(
            ["ip", "addr", "add", DEFAULT_BRIDGE_ADDRESS, "dev", bridge],
            check=True,
            timeout=30,
        )
        engine.start()
        saved = subprocess.run(
            ["docker", "save", "netwatch-test/tools"],
            capture_output=True,
            check=True,
            timeout=60,
        )
        subprocess.run(
            ["docker", "-H", engine.host, "load"],
            input=saved.stdout,
            capture_output=True,
            check=True,
            timeout=60,
        )
        yield engine
    finally:
        if engine.running:
            leftovers = engine.docker("ps", "-aq", check=False).split()
            if leftovers:
                engine.docker("rm", "-f", *leftovers, check=False)
        engine.stop()
        _unmount_below(root)
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)


class EngineLab:
    """Containers on one network of the private engine, named and labelled
    like the `lab` fixture's, so `netwatch_env(lab)` watches only them."""

    def __init__(self, engine: PrivateEngine, lab: Lab) -> None:
        self.engine = engine
        self.lab = lab
        self.network = lab.name("net")
        self.bridge = f"{lab.prefix}br"
        self.containers: list[str] = []
        self._rule: list[str] | None = None

    def create(self) -> None:
        self.engine.docker(
            "network",
            "create",
            "--label",
            self.lab.label,
            "--subnet",
            next(SUBNETS),
            "-o",
            f"com.docker.network.bridge.name={self.bridge}",
            self.network,
        )
        # The main engine's FORWARD policy is DROP, and with br_netfilter
        # bridged packets pass through it: let this bridge talk to itself.
        chain = _forward_chain()
        self._rule = [chain, "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]
        subprocess.run(["iptables", "-I", *self._rule], check=True, timeout=30)

    def run(self, short: str, *command: str, ports: str | None = None) -> str:
        name = self.lab.name(short)
        argv = ["run", "-d", "--name", name, "--label", self.lab.label]
        if ports is not None:
            argv += ["--label", f"netwatch.ports={ports}"]
        # Back when the engine is; `sleep` ignores SIGTERM: killed after 1 s.
        argv += ["--restart", "always", "--stop-timeout", "1"]
        argv += ["--network", self.network]
        self.containers.append(name)
        self.engine.docker(*argv, "netwatch-test/tools", *command)
        return name

    def ping(self, src: str, dst: str) -> bool:
        address = self.engine.ip(dst, self.network)
        done = subprocess.run(
            ["docker", "-H", self.engine.host, "exec", src, "ping", "-c1", address],
            capture_output=True,
            timeout=30,
            check=False,
        )
        return done.returncode == 0

    def cleanup(self) -> None:
        if not self.engine.running:
            with contextlib.suppress(AssertionError):
                self.engine.start()
        if self.engine.running:
            if self.containers:
                self.engine.docker("rm", "-f", *self.containers, check=False)
            self.engine.docker("network", "rm", self.network, check=False)
        if self._rule is not None:
            subprocess.run(["iptables", "-D", *self._rule], check=False, timeout=30)
        subprocess.run(
            ["ip", "link", "del", self.bridge], capture_output=True, check=False
        )


@contextlib.contextmanager
def three_containers(engine: PrivateEngine, lab: Lab) -> Iterator[EngineLab]:
    """A TCP server and two sleepers on one network of the private engine,
    reaching each other; all removed afterwards."""
    engine_lab = EngineLab(engine, lab)
    try:
        engine_lab.create()
        engine_lab.run("web", "nc", "-lk", "8080", ports="8080")
        engine_lab.run("api", "sleep", "100000")
        engine_lab.run("db", "sleep", "100000")
        _, api, db = engine_lab.containers
        assert engine_lab.ping(api, db), "containers on the private bridge must talk"
        yield engine_lab
    finally:
        engine_lab.cleanup()


@pytest.fixture
def engine_lab(private_engine: PrivateEngine, lab: Lab) -> Iterator[EngineLab]:
    """Three containers on the private engine, stopped with it."""
    private_engine.use(live_restore=False)
    with three_containers(private_engine, lab) as engine_lab:
        yield engine_lab


@pytest.fixture
def live_engine_lab(private_engine: PrivateEngine, lab: Lab) -> Iterator[EngineLab]:
    """Three containers on the private engine run with --live-restore: they
    keep running while it is down."""
    private_engine.use(live_restore=True)
    with three_containers(private_engine, lab) as engine_lab:
        yield engine_lab


def engine_warnings(daemon: RunningDaemon) -> list[dict[str, Any]]:
    """WARNING lines that speak of the engine."""
    return [
        event
        for event in daemon.log_events()
        if event.get("level") == "warning"
        and (
            event["event"].startswith(("docker.", "discovery."))
            or "engine" in event["event"]
        )
    ]


def fully_measured(
    daemon: RunningDaemon, names: list[str], targets: dict[str, str], since: float
) -> bool:
    """Ready, and every pair of `names` judged ok from ping results taken
    after `since`, at the destination's address in `targets`."""
    if daemon.get("/-/ready")[0] != 200:
        return False
    pairs = daemon.matrix()["pairs"]
    wanted = {(src, dst) for src in names for dst in names if src != dst}
    if {(p["src"], p["dst"]) for p in pairs} != wanted:
        return False
    for pair in pairs:
        results = pair["probes"].get("ping", {}).get("results", [])
        if pair["verdict"] != "ok" or not results:
            return False
        for result in results:
            taken = datetime.datetime.fromisoformat(result["at"]).timestamp()
            if result["outcome"] != "ok" or taken < since:
                return False
            if result["target"] != targets[pair["dst"]]:
                return False
    return True


def watch(
    engine_lab: EngineLab, start_daemon: Callable[..., RunningDaemon], engine: str
) -> RunningDaemon:
    """netwatch on the private engine, ready with a full, correct matrix."""
    daemon = start_daemon(
        {
            "NETWATCH_DOCKER__HOST": engine_lab.engine.host,
            "NETWATCH_PROBES__ENGINE": engine,
        }
    )
    targets = {
        name: engine_lab.engine.ip(name, engine_lab.network)
        for name in engine_lab.containers
    }
    wait_for(
        lambda: fully_measured(daemon, engine_lab.containers, targets, since=0),
        40,
        "a full, correct matrix",
    )
    return daemon


@dataclass
class Outage:
    """What netwatch said while the engine was down."""

    stopped_at: float
    healthy: int
    ready: int
    metrics: str
    pairs: list[dict[str, Any]]
    verdicts: set[str]
    results: set[tuple[str, str | None]]
    warnings: list[dict[str, Any]]


def sit_out(daemon: RunningDaemon, engine: PrivateEngine) -> Outage:
    """Stops the engine, and watches netwatch through OUTAGE_S of outage."""
    engine.stop()
    stopped_at = time.time()
    wait_for(lambda: daemon.get("/-/ready")[0] == 503, 15, "/-/ready to say 503")
    verdicts: set[str] = set()
    results: set[tuple[str, str | None]] = set()
    while time.time() < stopped_at + OUTAGE_S:
        for pair in daemon.matrix()["pairs"]:
            verdicts.add(pair["verdict"])
            for view in pair["probes"].values():
                results |= {(r["outcome"], r["reason"]) for r in view["results"]}
        time.sleep(0.5)
    return Outage(
        stopped_at=stopped_at,
        healthy=daemon.get("/-/healthy")[0],
        ready=daemon.get("/-/ready")[0],
        metrics=daemon.metrics(),
        pairs=daemon.matrix()["pairs"],
        verdicts=verdicts,
        results=results,
        warnings=engine_warnings(daemon),
    )


def misjudged(daemon: RunningDaemon) -> list[dict[str, Any]]:
    """Every change the log reports of a pair to broken, unexpected or
    unreachable (the lab's pairs are all expected to reach)."""
    return [
        event
        for event in daemon.log_events()
        if event["event"] == "matrix.pair_changed"
        and (
            event["verdict"] in ("broken", "unexpected")
            or event["state"] == "unreachable"
        )
    ]


def recover(
    daemon: RunningDaemon, engine_lab: EngineLab
) -> tuple[float, dict[str, str]]:
    """Starts the engine again; how long netwatch took from the engine's
    first answer to a full, correct matrix measured since, and the
    containers' addresses now."""
    engine = engine_lab.engine
    back_at = engine.start()
    targets = {
        name: engine.ip(name, engine_lab.network) for name in engine_lab.containers
    }
    wait_for(
        lambda: fully_measured(daemon, engine_lab.containers, targets, since=back_at),
        60,
        "netwatch to measure the containers again",
        interval=0.1,
    )
    return time.time() - back_at, targets


def record_figures(scenario: str, figures: dict[str, Any]) -> None:
    print(json.dumps({"scenario": scenario, **figures}))
    artifact = ARTIFACTS / "engine-restart.json"
    recorded = json.loads(artifact.read_text()) if artifact.exists() else {}
    recorded[scenario] = figures
    artifact.write_text(json.dumps(recorded, indent=2) + "\n")


def assert_outage_reported(outage: Outage) -> None:
    assert outage.healthy == 200
    assert outage.ready == 503
    assert series(outage.metrics, "netwatch_docker_up") == [0.0]
    assert series(outage.metrics, "netwatch_ready") == [0.0]
    assert [w["event"] for w in outage.warnings] == ["docker.engine_unavailable"]


@pytest.mark.parametrize("probe_engine", ["exec", "netns"])
def test_engine_stopped_and_started_again_the_matrix_is_rebuilt(
    engine_lab, start_daemon, probe_engine
):
    """dockerd stopped (SIGTERM) stops its containers: netwatch drops them as
    the engine says, stays up, is not ready and logs one WARNING while the
    engine is gone, and judges no pair broken; when dockerd is back and has
    restarted them, netwatch reconnects and measures them at their new
    processes."""
    engine = engine_lab.engine
    names = engine_lab.containers
    daemon = watch(engine_lab, start_daemon, probe_engine)
    before_pids = {name: engine.pid(name) for name in names}

    outage = sit_out(daemon, engine)
    recovered_s, targets = recover(daemon, engine_lab)

    assert_outage_reported(outage)
    # The engine reported each container stopping before it went: they are
    # gone from the matrix, and nothing was judged on them meanwhile.
    assert outage.pairs == []
    assert outage.verdicts <= {"ok", "unmeasured"}, outage.verdicts
    assert misjudged(daemon) == []
    assert all(engine.pid(name) != before_pids[name] for name in names)
    assert daemon.process.poll() is None
    assert engine_warnings(daemon) == outage.warnings
    assert series(daemon.metrics(), "netwatch_docker_up") == [1.0]
    record_figures(
        f"stop-{probe_engine}",
        {
            "outage_s": round(OUTAGE_S, 1),
            "engine_answering_to_full_matrix_s": round(recovered_s, 2),
            "addresses_after": targets,
        },
    )


def test_containers_outliving_the_engine_are_not_measured_not_unreachable(
    live_engine_lab, start_daemon
):
    """With --live-restore the containers run on while dockerd is down: the
    exec engine cannot reach them, so every pair says could-not-measure
    (engine_unavailable), never unreachable or broken; when dockerd is back,
    netwatch measures them again."""
    engine = live_engine_lab.engine
    names = live_engine_lab.containers
    daemon = watch(live_engine_lab, start_daemon, "exec")
    before_pids = {name: engine.pid(name) for name in names}

    outage = sit_out(daemon, engine)
    recovered_s, _ = recover(daemon, live_engine_lab)

    assert_outage_reported(outage)
    assert len(outage.pairs) == 6
    assert all(p["verdict"] == "unmeasured" for p in outage.pairs), outage.pairs
    assert outage.verdicts <= {"ok", "unmeasured"}, outage.verdicts
    assert ("unmeasured", "engine_unavailable") in outage.results
    assert not {r for r in outage.results if r[0] == "unreachable"}, outage.results
    assert misjudged(daemon) == []
    assert {name: engine.pid(name) for name in names} == before_pids
    assert daemon.process.poll() is None
    record_figures(
        "live-restore-exec",
        {
            "outage_s": round(OUTAGE_S, 1),
            "engine_answering_to_full_matrix_s": round(recovered_s, 2),
        },
    )
