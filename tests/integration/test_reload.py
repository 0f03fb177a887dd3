"""Reloading the configuration of a running daemon: SIGHUP and POST /-/reload.

The matrix survives every reload, a new policy is enforced at once, settings
bound to startup wait for a restart (and say so), and a configuration that
fails validation changes nothing.
"""

from __future__ import annotations

import http.client
import signal
import threading
from pathlib import Path

import pytest

from tests.integration.conftest import Lab, wait_for
from tests.integration.test_daemon import series

pytestmark = pytest.mark.docker


def post(port: int, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def two_and_one(lab: Lab) -> tuple[str, str, str]:
    """a and b share a network; c shares none."""
    lab.network("shared")
    lab.network("apart")
    a = lab.listen("a", networks=("shared",))
    b = lab.listen("b", networks=("shared",))
    c = lab.listen("c", networks=("apart",))
    return a, b, c


def deny_policy(path: Path, src: str, dst: str) -> Path:
    path.write_text(
        "groups:\n"
        f"  src: {{names: [{src}]}}\n"
        f"  dst: {{names: [{dst}]}}\n"
        "rules:\n"
        "  - deny: {from: src, to: dst}\n"
        "default: topology\n"
    )
    return path


class ReadinessWatch:
    """Polls /-/ready in a thread and remembers every answer that was not 200."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._done = threading.Event()
        self.failures: list[int] = []
        self.polls = 0
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> ReadinessWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join(10)

    def _poll(self) -> None:
        while not self._done.wait(0.1):
            connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=5)
            try:
                connection.request("GET", "/-/ready")
                status = connection.getresponse().status
            except OSError:
                status = 0
            finally:
                connection.close()
            self.polls += 1
            if status != 200:
                self.failures.append(status)


def test_sighup_applies_a_new_policy_and_probes_and_keeps_the_matrix(
    lab, start_daemon, tmp_path
):
    """SIGHUP reads the file again: the new policy judges a->b at once, TCP
    probing stops as asked, new engine settings wait for a restart, and
    every pair keeps its measurements and the daemon stays ready."""
    a, b, c = two_and_one(lab)
    config = tmp_path / "netwatch.yaml"
    config.write_text("matrix:\n  loss_window: 10\n")
    daemon = start_daemon({}, "--config", str(config))
    daemon.wait_ready()
    before = {(p["src"], p["dst"]): p for p in daemon.matrix()["pairs"]}
    assert before[(a, b)]["verdict"] == "ok"

    policy = deny_policy(tmp_path / "policy.yaml", a, b)
    config.write_text(
        f"policy: {policy}\n"
        "docker:\n  request_timeout: 7s\n"
        "probes:\n  tcp:\n    enabled: false\n"
        "matrix:\n  loss_window: 4\n"
    )
    with ReadinessWatch(daemon.port) as readiness:
        daemon.process.send_signal(signal.SIGHUP)
        reloaded = wait_for(
            lambda: daemon.events("config.reloaded"),
            20,
            "the reload to be logged",
        )
        wait_for(
            lambda: daemon.pair(a, b)["verdict"] == "unexpected",
            20,
            "a->b to be judged by the new policy",
        )

    assert readiness.polls > 0
    assert readiness.failures == []
    assert sorted(reloaded[0]["changed"]) == ["matrix", "policy", "probes"]
    (restart,) = daemon.events("config.restart_needed")
    assert restart["keys"] == ["docker"]
    assert restart["level"] == "warning"
    (probing,) = daemon.events("daemon.probing_restarted")
    assert probing["probes"] == {"ping": 4.0}
    after = {(p["src"], p["dst"]): p for p in daemon.matrix()["pairs"]}
    assert set(after) == set(before)
    for key in [(a, c), (b, a), (c, a)]:
        assert after[key]["verdict"] == "ok", after[key]
        assert after[key]["changes"] == before[key]["changes"]
        assert (
            after[key]["probes"]["ping"]["state"]
            == (before[key]["probes"]["ping"]["state"])
        )
    assert daemon.matrix()["policy"] == str(policy)
    metrics = daemon.metrics()
    assert series(metrics, "netwatch_config_last_reload_successful") == [1.0]
    assert series(metrics, "netwatch_config_reloads_total", result="ok") == [1.0]


def test_a_broken_config_on_reload_changes_nothing(lab, start_daemon, tmp_path):
    """POST /-/reload with a typo in the file answers 500 naming the key, logs
    why, keeps the running policy and matrix, and a fixed file then loads."""
    a, b, _ = two_and_one(lab)
    policy = deny_policy(tmp_path / "policy.yaml", a, b)
    config = tmp_path / "netwatch.yaml"
    config.write_text(f"policy: {policy}\n")
    daemon = start_daemon({}, "--config", str(config))
    daemon.wait_ready()
    wait_for(lambda: daemon.pair(a, b)["verdict"] == "unexpected", 20, "the policy")

    config.write_text("matrix:\n  los_window: 3\n")
    status, body = post(daemon.port, "/-/reload")

    assert status == 500, body
    assert "matrix.los_window" in body
    assert "running configuration stays" in body
    (failed,) = daemon.events("config.reload_failed")
    assert failed["level"] == "error"
    assert any("matrix.los_window" in problem for problem in failed["problems"])
    assert daemon.process.poll() is None
    assert daemon.get("/-/ready")[0] == 200
    assert daemon.matrix()["policy"] == str(policy)
    assert daemon.pair(a, b)["verdict"] == "unexpected"
    metrics = daemon.metrics()
    assert series(metrics, "netwatch_config_last_reload_successful") == [0.0]
    assert series(metrics, "netwatch_config_reloads_total", result="failed") == [1.0]

    config.write_text("matrix:\n  loss_window: 3\n")
    status, body = post(daemon.port, "/-/reload")

    assert status == 200, body
    assert "changed: matrix, policy" in body
    wait_for(lambda: daemon.pair(a, b)["verdict"] == "ok", 20, "the topology again")
    assert series(daemon.metrics(), "netwatch_config_last_reload_successful") == [1.0]


def test_a_broken_policy_on_reload_changes_nothing(lab, start_daemon, tmp_path):
    """A policy file broken after startup fails the reload with its line; the
    daemon goes on with the policy it has."""
    a, b, _ = two_and_one(lab)
    policy = deny_policy(tmp_path / "policy.yaml", a, b)
    config = tmp_path / "netwatch.yaml"
    config.write_text(f"policy: {policy}\n")
    daemon = start_daemon({}, "--config", str(config))
    daemon.wait_ready()

    policy.write_text(
        "groups:\n  src: {names: [x]}\nrules:\n  - allow: {from: nobody}\n"
    )
    daemon.process.send_signal(signal.SIGHUP)
    failed = wait_for(
        lambda: daemon.events("config.reload_failed"),
        20,
        "the failed reload to be logged",
    )

    assert any(f"{policy}:4" in problem for problem in failed[0]["problems"]), failed
    assert daemon.process.poll() is None
    wait_for(lambda: daemon.pair(a, b)["verdict"] == "unexpected", 20, "old policy")
