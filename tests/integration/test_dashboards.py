"""The Grafana dashboards, proven without Grafana: their structure, and every
panel's PromQL run against a real Prometheus (Debian's) that has scraped a
real netwatch watching real containers."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import (
    REQUIRE_DOCKER,
    ROOT,
    free_port,
    http_get,
    wait_for,
)
from tests.integration.test_daemon import three_tier

pytestmark = pytest.mark.docker

DASHBOARDS = sorted((ROOT / "grafana/dashboards").glob("*.json"))
PROVISIONING = ROOT / "grafana/provisioning"


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def exprs(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expression) for every query of every panel."""
    return [
        (panel["title"], query["expr"])
        for panel in board["panels"]
        for query in panel.get("targets", [])
    ]


def test_dashboards_are_what_the_generator_writes(tmp_path):
    """The committed JSON is grafana/generate.py's output, unedited."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "generate", ROOT / "grafana/generate.py"
    )
    assert spec is not None
    assert spec.loader is not None
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    generate.OUT = tmp_path

    generate.main()

    for path in DASHBOARDS:
        assert (tmp_path / path.name).read_text() == path.read_text(), path.name
    assert {p.name for p in tmp_path.iterdir()} == {p.name for p in DASHBOARDS}


def test_dashboard_structure():
    """Unique uids and panel ids, datasources that provisioning defines, and
    every template variable a query uses defined on its dashboard."""
    sources = yaml.safe_load((PROVISIONING / "datasources/prometheus.yml").read_text())
    datasource_uids = {d["uid"] for d in sources["datasources"]}
    boards = [load(path) for path in DASHBOARDS]

    assert len(boards) == 3
    assert len({b["uid"] for b in boards}) == len(boards)
    for board in boards:
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), board["uid"]
        defined = {v["name"] for v in board["templating"]["list"]}
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] in datasource_uids, panel["title"]
            for query in panel["targets"]:
                assert query["datasource"]["uid"] in datasource_uids
        for variable in board["templating"]["list"]:
            assert variable["datasource"]["uid"] in datasource_uids
        for title, expr in exprs(board):
            used = set(re.findall(r"\$(\w+)", expr))
            assert used <= defined, (board["uid"], title, used - defined)
    provider = yaml.safe_load((PROVISIONING / "dashboards/netwatch.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


class Prometheus:
    """Debian's Prometheus on loopback, scraping one netwatch every second."""

    def __init__(
        self, workdir: Path, target_port: int, scrape: dict[str, Any] | None = None
    ) -> None:
        self.port = free_port()
        self._workdir = workdir
        self._target = target_port
        # More of the scrape configuration (scheme, tls_config, basic_auth).
        self._scrape = scrape or {}
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Prometheus:
        binary = shutil.which("prometheus")
        if binary is None:
            message = "Prometheus is not installed (Debian: prometheus)"
            if REQUIRE_DOCKER or os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        rules = ROOT / "deploy/prometheus/rules"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in sorted(rules.glob("*.rules.yml"))],
            "scrape_configs": [
                {
                    "job_name": "netwatch",
                    "static_configs": [{"targets": [f"127.0.0.1:{self._target}"]}],
                    **self._scrape,
                }
            ],
        }
        path = self._workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        with (self._workdir / "prometheus.log").open("wb") as log:
            self._process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={path}",
                    f"--storage.tsdb.path={self._workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_for(
            lambda: http_get(self.port, "/-/ready")[0] == 200,
            60,
            "Prometheus to be ready",
        )
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(20)

    def api(self, path: str, **params: str) -> dict[str, Any]:
        status, body = http_get(
            self.port, f"/api/v1/{path}?{urllib.parse.urlencode(params)}"
        )
        answer: dict[str, Any] = json.loads(body)
        assert status == 200, answer
        return answer

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = self.api("query", query=expr)
        assert answer["status"] == "success", (expr, answer)
        return answer["data"]["result"]


def fill(expr: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        expr = expr.replace(f"${name}", value)
    return expr


def test_every_panel_query_returns_data_from_a_real_prometheus(
    lab, start_daemon, tmp_path
):
    """With Prometheus scraping netwatch on a lab (listeners, a lossy path, a
    broken path), every panel's query, template variables filled in from
    Prometheus itself, parses and returns data."""
    _, api, db = three_tier(lab)
    lab.in_netns(
        db, "iptables", "-A", "INPUT", "-p", "icmp", "--icmp-type", "echo-request",
        "-m", "statistic", "--mode", "random", "--probability", "0.2", "-j", "DROP",
    )  # fmt: skip
    lab.run(
        "site",
        "busybox",
        networks=("frontend",),
        labels={"netwatch.http.port": "8080", "netwatch.http.path": "/etc/hostname"},
        command=("httpd", "-f", "-p", "8080", "-h", "/"),
    )
    daemon = start_daemon(
        {
            "NETWATCH_ALERTS__EVALUATION_INTERVAL": "1s",
            # The namespace engine measures DNS and HTTP too.
            "NETWATCH_PROBES__ENGINE": "netns",
            "NETWATCH_PROBES__DNS__INTERVAL": "4s",
            "NETWATCH_PROBES__HTTP__INTERVAL": "4s",
            "NETWATCH_PROBES__HTTP__TIMEOUT": "2s",
            "NETWATCH_PROBES__BANDWIDTH__ENABLED": "true",
            "NETWATCH_PROBES__BANDWIDTH__INTERVAL": "2s",
            "NETWATCH_PROBES__BANDWIDTH__PAIRS_PER_ROUND": "4",
            "NETWATCH_PROBES__BANDWIDTH__DURATION": "1s",
            "NETWATCH_PROBES__BANDWIDTH__SERVER_DEADLINE": "6s",
        }
    )
    daemon.wait_ready()

    with Prometheus(tmp_path, daemon.port) as prometheus:
        wait_for(
            lambda: prometheus.query("netwatch_rounds_total"), 30, "the first scrape"
        )
        # Enough samples for rate() over the panels' windows.
        time.sleep(15)
        wait_for(
            lambda: prometheus.query(
                f'netwatch_bandwidth_bits_per_second{{src="{api}",dst="{db}"}}'
            ),
            60,
            "a bandwidth test of the pair shown",
        )
        values = {
            "src": api,
            "dst": db,
            "probe": "ping|tcp",
        }
        offered = prometheus.api(
            "label/src/values", **{"match[]": "netwatch_pair_expected_reachable"}
        )
        assert api in offered["data"]

        empty = []
        for path in DASHBOARDS:
            board = load(path)
            for variable in board["templating"]["list"]:
                query = fill(variable["query"]["query"], values)
                match = re.fullmatch(r"label_values\((.+), (\w+)\)", query)
                assert match, query
                found = prometheus.api(
                    f"label/{match.group(2)}/values", **{"match[]": match.group(1)}
                )
                assert found["data"], (path.name, variable["name"])
            for title, expr in exprs(board):
                if not prometheus.query(fill(expr, values)):
                    empty.append((path.name, title, expr))

    assert empty == []
