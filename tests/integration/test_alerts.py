"""Alerts end to end: a real fault, the daemon's alert engine, a webhook
receiver run by the test and a real Alertmanager."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, docker, wait_for
from tests.integration.receivers import Alertmanager, WebhookReceiver
from tests.integration.test_daemon import series, three_tier

pytestmark = pytest.mark.docker

# Fast alerting for tests: short waits, quick evaluation, no grace at start.
FAST_ALERTS = {
    "NETWATCH_ALERTS__EVALUATION_INTERVAL": "500ms",
    "NETWATCH_ALERTS__RESOLVE_AFTER": "4s",
    "NETWATCH_ALERTS__GRACE_PERIOD": "0s",
    "NETWATCH_ALERTS__RULES__PACKET_LOSS_WARNING__FOR": "4s",
    "NETWATCH_ALERTS__RULES__PACKET_LOSS_CRITICAL__ENABLED": "false",
    "NETWATCH_ALERTS__RULES__BROKEN_PATH__FOR": "0s",
    "NETWATCH_ALERTS__RULES__UNEXPECTED_REACHABILITY__FOR": "0s",
    "NETWATCH_MATRIX__LOSS_WINDOW": "3",
    "NETWATCH_PROBES__PING__COUNT": "10",
    "NETWATCH_PROBES__PING__INTERVAL": "5s",
}


def receivers_env(
    *, webhooks: list[WebhookReceiver], alertmanager: Alertmanager | None
):
    env = dict(FAST_ALERTS)
    env["NETWATCH_ALERTS__WEBHOOKS"] = json.dumps(
        [{"url": hook.url, "timeout": "1s", "retries": 2} for hook in webhooks]
    )
    if alertmanager is not None:
        env["NETWATCH_ALERTS__ALERTMANAGERS"] = json.dumps(
            [{"url": alertmanager.url, "resend_interval": "2s"}]
        )
    return env


def fired(daemon, alertname: str, **labels: str) -> list[dict]:
    return [
        event
        for event in daemon.log_events()
        if event["event"] == "alert.fired"
        and event.get("alertname") == alertname
        and all(event.get(k) == v for k, v in labels.items())
    ]


def resolved(daemon, alertname: str, **labels: str) -> list[dict]:
    return [
        event
        for event in daemon.log_events()
        if event["event"] == "alert.resolved"
        and event.get("alertname") == alertname
        and all(event.get(k) == v for k, v in labels.items())
    ]


def hook_bodies(
    hook: WebhookReceiver, status: str, alertname: str, **labels: str
) -> list[dict]:
    return [
        body
        for body in hook.bodies(status)
        if body["alert"]["labels"]["alertname"] == alertname
        and all(body["alert"]["labels"].get(k) == v for k, v in labels.items())
    ]


def test_packet_loss_alert_fires_and_resolves_everywhere(lab, start_daemon, tmp_path):
    """30% loss into db raises NetwatchPacketLoss for api -> db in the log, at
    a webhook and in a real Alertmanager; removing it resolves all three.
    Prints the time from fault to alert and from repair to resolution."""
    _, api, db = three_tier(lab)
    with WebhookReceiver() as hook, Alertmanager(tmp_path) as alertmanager:
        daemon = start_daemon(receivers_env(webhooks=[hook], alertmanager=alertmanager))
        daemon.wait_ready()
        labels = {"src": api, "dst": db}
        rule = [
            "INPUT", "-p", "icmp", "--icmp-type", "echo-request",
            "-m", "statistic", "--mode", "random", "--probability", "0.3", "-j", "DROP",
        ]  # fmt: skip

        fault_at = time.time()
        lab.in_netns(db, "iptables", "-A", *rule)
        wait_for(
            lambda: hook_bodies(hook, "firing", "NetwatchPacketLoss", **labels),
            60,
            "the loss alert at the webhook",
        )
        alerted_at = time.time()
        wait_for(
            lambda: alertmanager.alerts(alertname="NetwatchPacketLoss", **labels),
            20,
            "the loss alert in Alertmanager",
        )
        assert fired(daemon, "NetwatchPacketLoss", **labels)

        repair_at = time.time()
        lab.in_netns(db, "iptables", "-D", *rule)
        wait_for(
            lambda: hook_bodies(hook, "resolved", "NetwatchPacketLoss", **labels),
            60,
            "the resolution at the webhook",
        )
        resolved_at = time.time()
        wait_for(
            lambda: not alertmanager.alerts(alertname="NetwatchPacketLoss", **labels),
            20,
            "Alertmanager to drop the alert",
        )
        assert resolved(daemon, "NetwatchPacketLoss", **labels)

    firing = hook_bodies(hook, "firing", "NetwatchPacketLoss", **labels)
    assert len(firing) == 1, "fired more than once"
    assert firing[0]["alert"]["labels"]["severity"] == "warning"
    assert firing[0]["alert"]["labels"]["probe"] == "ping"
    assert len(hook_bodies(hook, "resolved", "NetwatchPacketLoss", **labels)) == 1
    print(
        f"\nloss alert: fault -> alert {alerted_at - fault_at:.1f}s, "
        f"repair -> resolution {resolved_at - repair_at:.1f}s"
    )


def test_policy_denied_path_opening_is_an_unexpected_reachability_alert(
    lab, start_daemon, tmp_path
):
    """Under a policy denying web -> db, connecting db to the frontend while
    netwatch runs raises NetwatchUnexpectedReachability for web -> db."""
    web, _, db = three_tier(lab)
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "groups:\n"
        f"  web: {{names: [{web}]}}\n"
        f"  db: {{names: [{db}]}}\n"
        "rules:\n"
        "  - deny: {from: web, to: db}\n"
    )
    with WebhookReceiver() as hook:
        daemon = start_daemon(
            {
                **receivers_env(webhooks=[hook], alertmanager=None),
                "NETWATCH_POLICY": str(policy),
            }
        )
        daemon.wait_ready()
        assert daemon.pair(web, db)["verdict"] == "ok"

        docker("network", "connect", lab.name("frontend"), db)

        body = wait_for(
            lambda: hook_bodies(
                hook, "firing", "NetwatchUnexpectedReachability", src=web, dst=db
            ),
            20,
            "the unexpected-reachability alert",
        )
    assert body[0]["alert"]["labels"]["severity"] == "critical"
    assert "policy rule 1" in body[0]["alert"]["annotations"]["summary"]
    status, alerts = daemon.get("/api/v1/alerts")
    assert status == 200
    active = json.loads(alerts)["alerts"]
    assert any(
        a["labels"]["alertname"] == "NetwatchUnexpectedReachability"
        and a["labels"]["src"] == web
        and a["labels"]["dst"] == db
        and a["state"] == "firing"
        for a in active
    )


def test_no_alert_during_a_restart_grace_period(lab, start_daemon, tmp_path):
    """A restarted api whose listener comes up late is broken for a while
    (the matrix shows it), but inside the grace period no alert fires."""
    lab.network("app")
    web = lab.run("web", networks=("app",))
    late = ("sh", "-c", "sleep 8; exec nc -lk 8080")
    api = lab.run("api", networks=("app",), ports="8080", command=late)
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "groups:\n"
        f"  web: {{names: [{web}]}}\n"
        f"  api: {{names: [{api}]}}\n"
        "rules:\n"
        "  - allow: {from: web, to: api, ports: [8080]}\n"
    )
    with WebhookReceiver() as hook:
        env = {
            **receivers_env(webhooks=[hook], alertmanager=None),
            "NETWATCH_POLICY": str(policy),
            "NETWATCH_ALERTS__GRACE_PERIOD": "25s",
        }
        daemon = start_daemon(env)
        wait_for(lambda: daemon.pair(web, api)["verdict"] == "ok", 40, "api to listen")

        docker("restart", "-t", "0", api)
        verdicts = set()
        deadline = time.time() + 14
        while time.time() < deadline:
            pair = daemon.pair(web, api)
            if pair is not None:
                verdicts.add(pair["verdict"])
            time.sleep(0.3)

    assert "broken" in verdicts, f"the restart never broke the path: {verdicts}"
    assert hook.bodies("firing") == []
    assert fired(daemon, "NetwatchBrokenPath") == []


@pytest.mark.parametrize("mode", ["fail", "hang"])
def test_a_failing_webhook_never_holds_up_probing(lab, start_daemon, mode):
    """A receiver answering 500, or never answering, gets a bounded number of
    tries per notification while rounds go on as usual."""
    _web, _api, db = three_tier(lab)
    lab.in_netns(db, "iptables", "-A", "INPUT", "-j", "DROP")
    with WebhookReceiver(mode) as hook:
        daemon = start_daemon(receivers_env(webhooks=[hook], alertmanager=None))
        daemon.wait_ready()
        wait_for(lambda: hook.received, 30, "the first delivery attempt")
        rounds_before = series(daemon.metrics(), "netwatch_rounds_total", probe="ping")[
            0
        ]
        time.sleep(12)
        rounds_after = series(daemon.metrics(), "netwatch_rounds_total", probe="ping")[
            0
        ]
        metrics = daemon.metrics()

    notifications = len(
        {json.dumps(b["alert"]["labels"], sort_keys=True) for b in hook.bodies()}
    )
    assert rounds_after - rounds_before >= 2, "probing stalled behind the receiver"
    # One try and two retries per notification, never more.
    assert len(hook.received) <= 3 * notifications, (len(hook.received), notifications)
    result = "http_500" if mode == "fail" else "timeout"
    assert series(
        metrics, "netwatch_alert_notifications_total", notifier="webhook", result=result
    )
    assert any(e["event"] == "alert.delivery_failed" for e in daemon.log_events())


def test_rules_name_only_metrics_netwatch_exports(lab, start_daemon):
    """Every netwatch_* metric the Prometheus rules use is one the daemon
    really exports (read from a live /metrics)."""
    three_tier(lab)
    # The namespace engine: the DNS series are the namespace engine's.
    daemon = start_daemon({"NETWATCH_PROBES__ENGINE": "netns"})
    daemon.wait_ready()
    exported = set(re.findall(r"^(netwatch_[a-z_]+)", daemon.metrics(), re.M))

    rules = "\n".join(
        path.read_text() for path in (ROOT / "deploy/prometheus/rules").glob("*.yml")
    )
    used = set(re.findall(r"\b(netwatch_[a-z_]+)", rules))

    assert used, "no netwatch metric found in the rules"
    assert used <= exported, used - exported


def test_prometheus_rules_check_and_unit_tests_pass():
    """`promtool check rules` and `promtool test rules` pass on deploy/prometheus."""
    import shutil
    import subprocess

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing (Debian package prometheus)")
    rules_dir = Path(ROOT / "deploy/prometheus")

    files = sorted(str(path) for path in rules_dir.glob("rules/*.yml"))
    checked = subprocess.run(
        [promtool, "check", "rules", *files],
        cwd=rules_dir, capture_output=True, text=True, check=False,
    )  # fmt: skip
    tested = subprocess.run(
        [promtool, "test", "rules", "tests/netwatch.rules.test.yml"],
        cwd=rules_dir, capture_output=True, text=True, check=False,
    )  # fmt: skip

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout + tested.stderr
