"""Hostile names against a real engine and a real `netwatch run`, with both
probe engines: network names, aliases, hostnames and labels full of shell
syntax, markup, control characters, non-ASCII text, NUL and 10 kB values.

What the engine (Docker 20.10) really accepts, found on this machine:
container names only `[a-zA-Z0-9][a-zA-Z0-9_.-]*`; network names anything
(quotes, `;`, `$(...)`, `<`, newlines, escape sequences, 10 kB); aliases and
hostnames (which become aliases) anything; label values anything, NUL too
through the Engine API (the CLI cannot pass NUL in argv).

Nothing may reach a shell (the marker file must never exist), the metrics must
stay valid exposition with the values escaped, the JSON must carry them
exactly, the page must show them as text, and the terminal table must escape
control characters.
"""

from __future__ import annotations

import html.parser
import http.client
import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from prometheus_client.parser import text_string_to_metric_families

from netwatch.report import printable
from tests.integration.conftest import (
    REQUIRE_DOCKER,
    Lab,
    RunningDaemon,
    docker,
    netwatch_env,
    run_netwatch,
    wait_for,
)
from tests.integration.test_page import browse

pytestmark = pytest.mark.docker

CONTROL = "line\nbreak\x1b[31mred\x1b[0m\ttab"
UNICODE = "é日本🙂\u200fאב\u202e"
# If the page ever parsed a value as HTML, these would leave elements, and
# the handler a mark on <body>.
MARKUP = '</script><img src=x onerror="document.body.dataset.pwned=1"><b>bold</b>'
TEN_KB = "P" * 10_240
# Probes of both engines and the DNS and HTTP checks of the namespace engine.
PROBES = {
    "NETWATCH_PROBES__DNS__TIMEOUT": "1s",
    "NETWATCH_PROBES__DNS__INTERVAL": "4s",
    "NETWATCH_PROBES__HTTP__TIMEOUT": "1s",
    "NETWATCH_PROBES__HTTP__INTERVAL": "4s",
}


def _engine_api(method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """One call to the engine's API on its local socket: the only way to put
    a NUL in a label (`docker run --label` cannot)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    assert host.startswith("unix://"), f"this test needs a local engine: {host}"

    class Connection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(30)
            self.sock.connect(host.removeprefix("unix://"))

    connection = Connection("localhost")
    try:
        connection.request(
            method, path, json.dumps(body), {"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        answer = response.read()
    finally:
        connection.close()
    assert response.status < 300, answer
    return json.loads(answer) if answer else {}


@dataclass(frozen=True)
class HostileLab:
    lab: Lab
    marker: str
    network: str
    long_network: str
    injected: str
    aliases: tuple[str, ...]
    # Containers, and what their labels say.
    a: str
    b: str
    c: str
    project_a: str
    service_a: str
    service_c: str
    http_path: str

    @property
    def names(self) -> tuple[str, str, str]:
        return self.a, self.b, self.c


def _start_container(
    lab: Lab,
    short: str,
    network: str,
    *,
    labels: dict[str, str],
    aliases: tuple[str, ...] = (),
    hostname: str | None = None,
    command: tuple[str, ...] = ("sleep", "100000"),
) -> str:
    """A tools container made through the API: the CLI reads `--network` as
    CSV, so it cannot attach to a network whose name holds a quote."""
    name = lab.name(short)
    body: dict[str, Any] = {
        "Image": "netwatch-test/tools",
        "Cmd": list(command),
        "Labels": {"netwatch.test": lab.prefix, **labels},
        "HostConfig": {"NetworkMode": network},
        "NetworkingConfig": {"EndpointsConfig": {network: {"Aliases": aliases}}},
    }
    if hostname is not None:
        body["Hostname"] = hostname
    _engine_api("POST", f"/containers/create?name={quote(name)}", body)
    # The lab removes it (by its label) whatever happens from here on.
    docker("start", name)
    return name


@pytest.fixture(scope="module")
def hostile(docker_engine: None) -> Iterator[HostileLab]:
    """Three containers on a network with a hostile name: `a`, also on a
    network with a 10 kB name, with hostile aliases, hostname and Compose
    labels; `b` listening on 8080 with hostile netwatch.ports and
    netwatch.http.path labels; `c` with NUL and 10 kB labels."""
    lab = Lab()
    marker = f"/tmp/{lab.prefix}-pwned"
    injected = f"$(touch {marker});`touch {marker}`;touch {marker}|touch {marker}"
    try:
        network = lab.network(f"{injected}{MARKUP}\"'\\{CONTROL}{UNICODE}")
        long_network = lab.network("L" * 10_000)
        aliases = (
            f"a;touch {marker}",
            f"$(touch {marker})",
            MARKUP,
            "x\ny\x1b[2J",
            UNICODE,
            "nul\x00alias",
        )
        project_a = f'proj {injected} {MARKUP} "quoted" back\\slash {UNICODE}'
        service_a = f"svc{CONTROL}{injected}"
        a = _start_container(
            lab,
            "a",
            network,
            labels={
                "netwatch.ports": f"8080;touch {marker}",
                "netwatch.http.port": "80$(id)",
                "com.docker.compose.project": project_a,
                "com.docker.compose.service": service_a,
            },
            aliases=aliases,
            hostname=f"h$(touch${{IFS}}{marker})",
        )
        docker("network", "connect", long_network, a)
        http_path = f"/$(touch${{IFS}}{marker})?q=\"'<img>`id`"
        b = _start_container(
            lab,
            "b",
            network,
            labels={
                "netwatch.ports": f"8080,`touch {marker}`",
                "netwatch.http.port": "8080",
                "netwatch.http.path": http_path,
            },
            command=("nc", "-lk", "8080"),
        )
        service_c = "nul\x00byte"
        c = _start_container(
            lab,
            "c",
            network,
            labels={
                "com.docker.compose.project": TEN_KB,
                "com.docker.compose.service": service_c,
                "netwatch.ports": "$(id)",
            },
        )
        yield HostileLab(
            lab, marker, network, long_network, injected, aliases,
            a, b, c, project_a, service_a, service_c, http_path,
        )  # fmt: skip
    finally:
        lab.cleanup()
        # `docker network rm NAME` puts the name in the URL unescaped: a name
        # with a slash or `?` is "page not found". By id, then.
        left = docker("network", "ls", "-q", "--filter", f"label={lab.label}")
        if left:
            docker("network", "rm", *left.split(), check=False)
        if os.path.lexists(marker):
            os.remove(marker)


def _nobody_was_pwned(hostile: HostileLab) -> None:
    """The marker exists neither on the host nor in any container."""
    assert not os.path.lexists(hostile.marker)
    for name in hostile.names:
        found = docker(
            "exec", name, "sh", "-c", 'test -e "$1" && echo found', "sh",
            hostile.marker, check=False,
        )  # fmt: skip
        assert found == "", name


def _start(start_daemon: Any, hostile: HostileLab, engine: str) -> RunningDaemon:
    """`netwatch run` with `engine`, watching the hostile lab, once every pair
    was probed (and, on the namespace engine, HTTP checked)."""
    daemon: RunningDaemon = start_daemon(
        {
            **PROBES,
            "NETWATCH_PROBES__ENGINE": engine,
            "NETWATCH_DISCOVERY__MATCH_LABELS": json.dumps(
                {"netwatch.test": hostile.lab.prefix}
            ),
        }
    )
    daemon.wait_ready()

    def probed() -> bool:
        pairs = daemon.matrix()["pairs"]
        kinds = {"ping", "tcp"} | ({"http"} if engine == "netns" else set())
        by_dst = {p["dst"]: p for p in pairs if p["src"] == hostile.a}
        return len(pairs) == 6 and kinds <= set(by_dst[hostile.b]["probes"])

    wait_for(probed, 30, f"every pair probed by the {engine} engine")
    return daemon


def _check_metrics(metrics: str, hostile: HostileLab) -> None:
    """promtool finds no error (lint warnings aside), and the labels read
    back are exactly the hostile values."""
    promtool = shutil.which("promtool")
    if promtool is None:
        message = "promtool is missing (Debian package prometheus)"
        if REQUIRE_DOCKER:
            pytest.fail(message)
        pytest.skip(message)
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=metrics.encode(), capture_output=True,
        timeout=30, check=False,
    )  # fmt: skip
    report = (checked.stdout + checked.stderr).decode(errors="replace")
    # 0: clean; 3: lint problems only; 1: the exposition does not parse.
    assert checked.returncode in (0, 3), report
    assert "error while linting" not in report, report
    assert "parsing error" not in report, report

    info = {
        sample.labels["container"]: sample.labels
        for family in text_string_to_metric_families(metrics)
        if family.name == "netwatch_container_info"
        for sample in family.samples
    }
    assert info[hostile.a]["compose_project"] == hostile.project_a
    assert info[hostile.a]["compose_service"] == hostile.service_a
    assert info[hostile.c]["compose_project"] == TEN_KB
    assert info[hostile.c]["compose_service"] == hostile.service_c
    pair_services = {
        (sample.labels["src"], sample.labels["dst"]): (
            sample.labels["src_service"], sample.labels["dst_service"],
        )
        for family in text_string_to_metric_families(metrics)
        if family.name == "netwatch_pair_expected_reachable"
        for sample in family.samples
    }  # fmt: skip
    assert pair_services[(hostile.a, hostile.c)] == (
        hostile.service_a,
        hostile.service_c,
    )
    # Escaped as the format says: backslash, quote and newline, and no more.
    assert 'compose_service="svcline\\nbreak\x1b[31mred' in metrics
    assert "back\\\\slash" in metrics
    assert 'quoted\\"' in metrics


def _check_matrix(matrix: dict[str, Any], hostile: HostileLab) -> None:
    """The JSON carries every hostile value exactly."""
    containers = {c["name"]: c for c in matrix["containers"]}
    a, c = containers[hostile.a], containers[hostile.c]
    assert a["compose_project"] == hostile.project_a
    assert a["compose_service"] == hostile.service_a
    assert c["compose_project"] == TEN_KB
    assert c["compose_service"] == hostile.service_c
    on_network = {n["network"]: n for n in a["networks"]}
    assert set(on_network) == {hostile.network, hostile.long_network}
    aliases = set(on_network[hostile.network]["aliases"])
    assert set(hostile.aliases) <= aliases
    # The engine lists the hostname among the aliases.
    assert f"h$(touch${{IFS}}{hostile.marker})" in aliases
    pairs = {(p["src"], p["dst"]): p for p in matrix["pairs"]}
    assert pairs[(hostile.a, hostile.c)]["basis"] == f"share {hostile.network}"
    assert "uid=" not in json.dumps(matrix)


class Page(html.parser.HTMLParser):
    """The elements of the rendered page, and each cell's details."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.body: dict[str, str] = {}
        self.info: dict[tuple[str, str], str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        if tag == "body":
            self.body = found
        if tag == "td" and "data-info" in found:
            self.info[(found["data-src"], found["data-dst"])] = found["data-info"]


def _check_page(daemon: RunningDaemon, hostile: HostileLab) -> None:
    """The page renders, no hostile value became an element or ran, and the
    details show the values as text."""
    page = Page()

    page.feed(browse(f"http://127.0.0.1:{daemon.port}/", "--dump-dom"))

    assert page.body.get("data-loaded") == "true"
    assert "data-pwned" not in page.body
    assert "img" not in page.tags
    assert "b" not in page.tags
    assert page.tags.count("script") == 1
    assert f"share {hostile.network}" in page.info[(hostile.a, hostile.c)]


@pytest.mark.parametrize("engine", ["exec", "netns"])
def test_hostile_names_are_data_everywhere(hostile, start_daemon, engine):
    """With hostile names and labels, nothing runs in a shell, the labels
    netwatch reads are reported as ignored, /metrics passes promtool with
    the values escaped, the JSON round-trips them, the page shows them as
    text, and the daemon keeps running."""
    daemon = _start(start_daemon, hostile, engine)

    matrix = daemon.matrix()
    metrics = daemon.metrics()
    ignored = daemon.events("discovery.label_ignored")

    _nobody_was_pwned(hostile)
    reasons = {(e["container"], e["reason"].split(":")[0]) for e in ignored}
    assert {(name, "netwatch.ports") for name in hostile.names} <= reasons
    assert (hostile.a, "netwatch.http.port") in reasons
    _check_metrics(metrics, hostile)
    _check_matrix(matrix, hostile)
    _check_page(daemon, hostile)
    if engine == "netns":
        # b's nc prints what it receives: the path went out as it was written.
        request = f"GET {hostile.http_path} HTTP/1.1"
        assert request in docker("logs", hostile.b).splitlines()
    assert daemon.process.poll() is None
    _nobody_was_pwned(hostile)


def test_the_terminal_table_escapes_control_characters(hostile):
    """`netwatch matrix` prints a broken pair whose basis names the hostile
    network on one line, and `netwatch policy show` every pair's, with the
    newline and escape sequences escaped: no row breaks, nothing reaches the
    terminal but text."""
    (inspect,) = json.loads(docker("inspect", hostile.a))
    address = inspect["NetworkSettings"]["Networks"][hostile.network]["IPAddress"]
    hostile.lab.in_netns(
        hostile.b, "iptables", "-A", "INPUT", "-s",
        address, "-j", "DROP",
    )  # fmt: skip
    env = netwatch_env(hostile.lab, {**PROBES, "NETWATCH_PROBES__ENGINE": "netns"})

    try:
        done = run_netwatch("matrix", "--color", "never", env=env, timeout=60)
        shown = run_netwatch("policy", "show", env=env, timeout=60)
    finally:
        hostile.lab.in_netns(
            hostile.b, "iptables", "-D", "INPUT", "-s",
            address, "-j", "DROP",
        )  # fmt: skip

    assert done.returncode == 1, done.stderr
    assert not any(ch != "\n" and not ch.isprintable() for ch in done.stdout)
    lines = done.stdout.splitlines()
    assert [row.split()[1] for row in lines[1:4]] == sorted(hostile.names)
    start = lines.index("Findings:") + 1
    end = next(i for i, line in enumerate(lines[start:], start) if line[:2] != "  ")
    findings = lines[start:end]
    assert lines[end].startswith("6 pairs: "), done.stdout
    broken = f"  BROKEN        {hostile.a} -> {hostile.b}: expected reachable "
    assert any(
        line.startswith(broken) and printable(hostile.network) in line
        for line in findings
    ), done.stdout
    assert all(
        line.startswith(("  BROKEN ", "  UNEXPECTED ", "  not measured ", "  DNS ",
                         "  HTTP "))
        for line in findings
    ), done.stdout  # fmt: skip
    expectations = shown.stdout.splitlines()
    assert shown.returncode == 0, shown.stderr
    assert not any(ch != "\n" and not ch.isprintable() for ch in shown.stdout)
    assert len(expectations) == 2 + 6, shown.stdout
    assert f"reachable  share {printable(hostile.network)}" in expectations[2]
    _nobody_was_pwned(hostile)
