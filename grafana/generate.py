"""Writes netwatch's Grafana dashboards (grafana/dashboards/*.json).

The JSON files are generated so that every panel is built the same way; edit
this file and run it again (`python grafana/generate.py`). A test checks the
committed JSON is what this file writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
OUT = Path(__file__).parent / "dashboards"
PAIR = 'src="$src", dst="$dst"'

# The matrix grid: one number per pair telling the verdicts apart, and
# reachable-as-expected from isolated-as-expected, coloured as the page does.
MATRIX_CODES = (
    "max by (src, dst) ("
    '(netwatch_pair_verdict{verdict="ok"} * on (instance, src, dst, src_service, dst_service) '
    "group_left () (2 - netwatch_pair_expected_reachable))"
    ' + ignoring (verdict) (netwatch_pair_verdict{verdict="unmeasured"} * 3)'
    ' + ignoring (verdict) (netwatch_pair_verdict{verdict="broken"} * 4)'
    ' + ignoring (verdict) (netwatch_pair_verdict{verdict="unexpected"} * 5))'
)
MATRIX_CELLS = {
    1: ("reachable", "green"),
    2: ("isolated", "#4b5563"),
    3: ("not measured", "yellow"),
    4: ("broken", "red"),
    5: ("unexpected", "purple"),
}


class Panels:
    """Hands out panel ids and grid positions, left to right, top to bottom."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self._x = self._y = self._row_height = 0

    def add(self, panel: dict[str, Any], width: int, height: int) -> None:
        if self._x + width > 24:
            self._x, self._y = 0, self._y + self._row_height
            self._row_height = 0
        panel["id"] = len(self.panels) + 1
        panel["gridPos"] = {"x": self._x, "y": self._y, "w": width, "h": height}
        panel["datasource"] = DATASOURCE
        self.panels.append(panel)
        self._x += width
        self._row_height = max(self._row_height, height)


def target(
    expr: str, legend: str = "", *, instant: bool = False, table: bool = False
) -> dict[str, Any]:
    return {
        "refId": "A",
        "datasource": DATASOURCE,
        "expr": expr,
        "legendFormat": legend,
        "instant": instant,
        "range": not instant,
        "format": "table" if table else "time_series",
    }


def stat(title: str, expr: str, colour: str, description: str) -> dict[str, Any]:
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "targets": [target(expr)],
        "fieldConfig": {
            "defaults": {
                "color": {"mode": "fixed", "fixedColor": colour},
                "unit": "none",
            },
            "overrides": [],
        },
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"]},
            "colorMode": "background",
        },
    }


def timeseries(
    title: str, targets: list[dict[str, Any]], unit: str, description: str
) -> dict[str, Any]:
    for index, item in enumerate(targets):
        item["refId"] = chr(ord("A") + index)
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom"}},
    }


def table(
    title: str, expr: str, description: str, unit: str, value_title: str
) -> dict[str, Any]:
    return {
        "type": "table",
        "title": title,
        "description": description,
        "targets": [target(expr, instant=True, table=True)],
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "transformations": [
            {
                "id": "organize",
                "options": {
                    "excludeByName": {
                        "Time": True,
                        "__name__": True,
                        "instance": True,
                        "job": True,
                    },
                    "renameByName": {"Value": value_title},
                },
            },
        ],
        "options": {"sortBy": [{"displayName": value_title, "desc": True}]},
    }


def dashboard(
    uid: str,
    title: str,
    panels: Panels,
    variables: list[dict[str, Any]],
    description: str,
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["netwatch"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": variables},
        "annotations": {"list": []},
        "links": [
            {
                "type": "dashboards",
                "tags": ["netwatch"],
                "asDropdown": True,
                "title": "netwatch",
            }
        ],
        "panels": panels.panels,
    }


def variable(name: str, query: str, *, multi: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "label": name,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": name},
        "definition": query,
        "refresh": 2,
        "sort": 1,
        "multi": multi,
        "includeAll": multi,
        "current": {},
    }


def overview() -> dict[str, Any]:
    panels = Panels()
    panels.add(
        stat(
            "Broken paths",
            'sum(netwatch_pair_verdict{verdict="broken"})',
            "red",
            "Pairs that should reach each other and do not.",
        ),
        6,
        4,
    )
    panels.add(
        stat(
            "Unexpected paths",
            'sum(netwatch_pair_verdict{verdict="unexpected"})',
            "purple",
            "Pairs that should be isolated and are not: isolation is broken.",
        ),
        6,
        4,
    )
    panels.add(
        stat(
            "Not measured",
            'sum(netwatch_pair_verdict{verdict="unmeasured"})',
            "yellow",
            "Pairs netwatch could not measure (no tools, paused, engine trouble).",
        ),
        6,
        4,
    )
    panels.add(
        stat(
            "Containers",
            "sum(netwatch_containers)",
            "blue",
            "Containers netwatch monitors.",
        ),
        6,
        4,
    )
    panels.add(
        {
            "type": "table",
            "title": "Reachability matrix (rows: sources, columns: destinations)",
            "description": "Each cell is the pair's verdict: reachable or isolated as expected, broken, unexpected, not measured.",
            "targets": [target(MATRIX_CODES, instant=True, table=True)],
            "transformations": [
                {
                    "id": "groupingToMatrix",
                    "options": {
                        "columnField": "dst",
                        "rowField": "src",
                        "valueField": "Value",
                    },
                },
            ],
            "fieldConfig": {
                "defaults": {
                    "custom": {
                        "cellOptions": {"type": "color-background"},
                        "align": "center",
                    },
                    "mappings": [
                        {
                            "type": "value",
                            "options": {
                                str(code): {
                                    "text": text,
                                    "color": colour,
                                    "index": code,
                                }
                                for code, (text, colour) in MATRIX_CELLS.items()
                            },
                        },
                    ],
                },
                # The row names are not a verdict: no colour for them.
                "overrides": [
                    {
                        "matcher": {"id": "byName", "options": "src\\dst"},
                        "properties": [
                            {"id": "custom.cellOptions", "value": {"type": "auto"}}
                        ],
                    },
                ],
            },
            "options": {"showHeader": True, "cellHeight": "sm"},
        },
        24,
        12,
    )
    panels.add(
        table(
            "Worst pairs by packet loss",
            "topk(10, netwatch_ping_loss_ratio and on (instance, src, dst, src_service, dst_service) "
            "(netwatch_pair_expected_reachable == 1))",
            "Loss over netwatch's window of runs, for pairs that should reach each other.",
            "percentunit",
            "loss",
        ),
        12,
        9,
    )
    panels.add(
        table(
            "Worst pairs by round-trip time",
            "topk(10, rate(netwatch_ping_rtt_seconds_sum[5m]) / rate(netwatch_ping_rtt_seconds_count[5m]))",
            "Average ICMP round trip over 5 minutes.",
            "s",
            "round trip",
        ),
        12,
        9,
    )
    panels.add(
        timeseries(
            "Broken and unexpected paths",
            [
                target('sum(netwatch_pair_verdict{verdict="broken"})', "broken"),
                target(
                    'sum(netwatch_pair_verdict{verdict="unexpected"})', "unexpected"
                ),
                target(
                    'sum(netwatch_pair_verdict{verdict="unmeasured"})', "not measured"
                ),
            ],
            "none",
            "How many pairs contradict the expectation, over time.",
        ),
        24,
        8,
    )
    panels.add(
        table(
            "Slowest pairs by bandwidth",
            "bottomk(10, netwatch_bandwidth_bits_per_second)",
            "Throughput of each sampled pair's last bandwidth test (iperf3, or "
            "sockets where the containers have no iperf3).",
            "bps",
            "bandwidth",
        ),
        8,
        9,
    )
    panels.add(
        table(
            "Names that resolve wrongly",
            "topk(20, netwatch_dns_findings)",
            "Per pair looked up: how many of the destination's names resolve "
            "where they should not, or do not where they should (0: all as "
            "expected).",
            "none",
            "findings",
        ),
        8,
        9,
    )
    panels.add(
        table(
            "HTTP checks",
            "netwatch_http_status_code",
            "Status code of the last GET to each destination labelled "
            "netwatch.http.port, from each source.",
            "none",
            "status",
        ),
        8,
        9,
    )
    return dashboard(
        "netwatch-overview",
        "netwatch / overview",
        panels,
        [],
        "Which containers reach which: the matrix, the worst pairs, what is broken.",
    )


def pair_detail() -> dict[str, Any]:
    panels = Panels()
    panels.add(
        stat(
            "Verdict is ok",
            f'max(netwatch_pair_verdict{{{PAIR}, verdict="ok"}})',
            "green",
            "1 when the pair is as expected.",
        ),
        6,
        4,
    )
    panels.add(
        stat(
            "Expected reachable",
            f"max(netwatch_pair_expected_reachable{{{PAIR}}})",
            "blue",
            "1 when src should reach dst.",
        ),
        6,
        4,
    )
    panels.add(
        stat(
            "State changes",
            f"max(netwatch_pair_changes_total{{{PAIR}}})",
            "orange",
            "State or verdict changes since netwatch first saw the pair.",
        ),
        6,
        4,
    )
    panels.add(
        stat(
            "Loss now",
            f"max(netwatch_ping_loss_ratio{{{PAIR}}})",
            "red",
            "Share of echoes lost over the window.",
        ),
        6,
        4,
    )
    panels.add(
        timeseries(
            "Reachable, by probe",
            [
                target(
                    f'netwatch_pair_reachable{{{PAIR}, probe=~"$probe"}}', "{{probe}}"
                ),
            ],
            "none",
            "1 reached, 0 the network said no; gaps: not measured.",
        ),
        12,
        8,
    )
    panels.add(
        timeseries(
            "Packet loss",
            [
                target(f"netwatch_ping_loss_ratio{{{PAIR}}}", "loss"),
            ],
            "percentunit",
            "Loss over netwatch's window of runs.",
        ),
        12,
        8,
    )
    panels.add(
        timeseries(
            "Round-trip time",
            [
                target(
                    f"histogram_quantile(0.5, sum by (le) (rate(netwatch_ping_rtt_seconds_bucket{{{PAIR}}}[5m])))",
                    "p50",
                ),
                target(
                    f"histogram_quantile(0.95, sum by (le) (rate(netwatch_ping_rtt_seconds_bucket{{{PAIR}}}[5m])))",
                    "p95",
                ),
                target(
                    f"sum(rate(netwatch_ping_rtt_seconds_sum{{{PAIR}}}[5m])) / sum(rate(netwatch_ping_rtt_seconds_count{{{PAIR}}}[5m]))",
                    "average",
                ),
            ],
            "s",
            "ICMP round trip of each echo reply.",
        ),
        12,
        8,
    )
    panels.add(
        timeseries(
            "TCP connect time",
            [
                target(
                    f"histogram_quantile(0.95, sum by (le) (rate(netwatch_tcp_connect_seconds_bucket{{{PAIR}}}[5m])))",
                    "p95",
                ),
                target(
                    f"sum(rate(netwatch_tcp_connect_seconds_sum{{{PAIR}}}[5m])) / sum(rate(netwatch_tcp_connect_seconds_count{{{PAIR}}}[5m]))",
                    "average",
                ),
            ],
            "s",
            "Time to a TCP connection (includes starting nc, about 1 ms).",
        ),
        12,
        8,
    )
    panels.add(
        timeseries(
            "Probe results",
            [
                target(
                    f'sum by (probe, result) (rate(netwatch_probe_results_total{{{PAIR}, probe=~"$probe"}}[5m]))',
                    "{{probe}} {{result}}",
                ),
            ],
            "ops",
            "Results per second by probe and outcome.",
        ),
        24,
        8,
    )
    panels.add(
        timeseries(
            "Bandwidth",
            [
                target(
                    f"netwatch_bandwidth_bits_per_second{{{PAIR}}}",
                    "{{method}}",
                ),
            ],
            "bps",
            "Each bandwidth test of the pair (a rotating sample: tests are "
            "minutes apart).",
        ),
        12,
        8,
    )
    panels.add(
        timeseries(
            "Name lookups",
            [
                target(f"netwatch_dns_lookup_seconds{{{PAIR}}}", "{{name}}"),
            ],
            "s",
            "Time of each lookup of the destination's names through the "
            "source's resolver (the engine's embedded DNS).",
        ),
        12,
        8,
    )
    variables = [
        variable("src", "label_values(netwatch_pair_expected_reachable, src)"),
        variable(
            "dst", 'label_values(netwatch_pair_expected_reachable{src="$src"}, dst)'
        ),
        variable(
            "probe", "label_values(netwatch_probe_results_total, probe)", multi=True
        ),
    ]
    return dashboard(
        "netwatch-pair",
        "netwatch / pair detail",
        panels,
        variables,
        "One pair over time: reachability, loss, round trip, connect time, "
        "bandwidth, name lookups.",
    )


def health() -> dict[str, Any]:
    panels = Panels()
    panels.add(
        stat(
            "Engine up",
            "min(netwatch_docker_up)",
            "green",
            "1 while the Docker engine answers.",
        ),
        6,
        4,
    )
    panels.add(
        stat(
            "Ready",
            "min(netwatch_ready)",
            "green",
            "1 once the first full round completed.",
        ),
        6,
        4,
    )
    panels.add(
        stat(
            "Firing alerts",
            'sum(netwatch_alerts{state="firing"})',
            "red",
            "netwatch's own firing alerts.",
        ),
        6,
        4,
    )
    panels.add(
        stat(
            "Planned pairs",
            'sum(netwatch_pairs{coverage="planned"})',
            "blue",
            "Ordered pairs in the plan.",
        ),
        6,
        4,
    )
    panels.add(
        timeseries(
            "Rounds per minute",
            [
                target(
                    "sum by (probe) (rate(netwatch_rounds_total[5m])) * 60", "{{probe}}"
                ),
            ],
            "none",
            "Full rounds completed, per probe kind.",
        ),
        12,
        8,
    )
    panels.add(
        timeseries(
            "Round duration",
            [
                target(
                    "histogram_quantile(0.95, sum by (probe, le) (rate(netwatch_round_duration_seconds_bucket[5m])))",
                    "p95 {{probe}}",
                ),
            ],
            "s",
            "From a round's start to its last source's result.",
        ),
        12,
        8,
    )
    panels.add(
        timeseries(
            "Lag behind schedule",
            [
                target(
                    "histogram_quantile(0.95, sum by (le) (rate(netwatch_schedule_lag_seconds_bucket[5m])))",
                    "p95",
                ),
            ],
            "s",
            "How late runs start.",
        ),
        12,
        8,
    )
    panels.add(
        timeseries(
            "docker exec rate",
            [
                target(
                    "sum by (result) (rate(netwatch_execs_total[1m]))", "{{result}}"
                ),
                target(
                    "histogram_quantile(0.95, sum by (le) (rate(netwatch_exec_duration_seconds_bucket[5m])))",
                    "p95 duration",
                ),
            ],
            "none",
            "Execs per second at the engine, by result, and their p95 duration.",
        ),
        12,
        8,
    )
    panels.add(
        timeseries(
            "Errors and engine events",
            [
                target(
                    "sum by (kind) (rate(netwatch_errors_total[5m])) or vector(0)",
                    "{{kind}}",
                ),
                target(
                    "sum(rate(netwatch_docker_events_total[5m])) or vector(0)",
                    "engine events",
                ),
            ],
            "ops",
            "Trouble netwatch met, and the engine events it followed.",
        ),
        12,
        8,
    )
    panels.add(
        timeseries(
            "Alert notifications",
            [
                target(
                    "sum by (notifier, result) (rate(netwatch_alert_notifications_total[5m])) or vector(0)",
                    "{{notifier}} {{result}}",
                ),
                target(
                    "sum(rate(netwatch_alert_notifications_held_total[5m])) or vector(0)",
                    "held back",
                ),
            ],
            "ops",
            "Deliveries to webhooks and Alertmanagers, and notifications held back.",
        ),
        12,
        8,
    )
    return dashboard(
        "netwatch-health",
        "netwatch / health",
        panels,
        [],
        "netwatch itself: rounds, lag, execs, errors, alert deliveries.",
    )


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, board in (
        ("overview", overview()),
        ("pair-detail", pair_detail()),
        ("health", health()),
    ):
        (OUT / f"netwatch-{name}.json").write_text(json.dumps(board, indent=2) + "\n")


if __name__ == "__main__":
    main()
