"""netwatch with least privilege: behind a Docker API proxy, and on an
engine reached over TCP with TLS.

The proxy is real HAProxy running deploy/socket-proxy/haproxy.cfg exactly as
shipped; the test only sets where it listens, through the environment the
file reads. Its log, one line per request, shows what netwatch asked for:
nothing refused, and nothing outside the endpoints `netwatch.docker_api`
documents. The TLS engine is HAProxy too, terminating TLS in front of the
engine's socket and asking for a client certificate, as dockerd's
`--tlsverify` does. A link through a proxy that is cut is
test_engine_link.py's.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import netwatch.docker_api
from tests.integration.conftest import (
    ARTIFACTS,
    REQUIRE_DOCKER,
    ROOT,
    Lab,
    RunningDaemon,
    docker,
    free_port,
    netwatch_env,
    run_netwatch,
    wait_for,
)
from tests.integration.test_daemon import series

pytestmark = pytest.mark.docker

PROXY_CONFIG = ROOT / "deploy/socket-proxy/haproxy.cfg"
ENGINE_SOCKET = "/var/run/docker.sock"
VERSION_PREFIX = re.compile(r"^/v[0-9]+\.[0-9]+(?=/)")
# The end of an `option httplog` line: status, ..., "METHOD URI VERSION".
HTTPLOG = re.compile(r' (?P<status>-?\d+) .*"(?P<method>[A-Z]+) (?P<uri>\S+) HTTP/')
SWARM_ONLY = {("GET", "/networks/{id}")}
EXEC = {
    ("POST", "/containers/{id}/exec"),
    ("POST", "/exec/{id}/start"),
    ("GET", "/exec/{id}/json"),
}


def program(name: str) -> str:
    """A program the test needs: missing fails it where Docker tests must run."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        if REQUIRE_DOCKER:
            pytest.fail(f"{name} is missing (Debian: apt-get install {name})")
        pytest.skip(f"{name} is missing")
    return found


def documented_endpoints() -> set[tuple[str, str]]:
    """The endpoints netwatch.docker_api's docstring lists, as (method, path)."""
    doc = netwatch.docker_api.__doc__ or ""
    return set(re.findall(r"^ +(GET|POST) (/[\w/{}]+)", doc, re.M))


def endpoint_of(method: str, uri: str) -> tuple[str, str] | None:
    """The documented endpoint a request is for, or None."""
    path = VERSION_PREFIX.sub("", uri.split("?", 1)[0])
    for known_method, template in documented_endpoints():
        pattern = re.escape(template).replace(r"\{id\}", "[^/]+")
        if method == known_method and re.fullmatch(pattern, path):
            return known_method, template
    return None


@dataclass(frozen=True)
class Request:
    status: int
    method: str
    uri: str


class Haproxy:
    """A running haproxy whose log (stdout and stderr) lands in a file."""

    def __init__(self, config: Path, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        log_path.write_text("")
        # Appending: HAProxy's threads write their lines at once, and only
        # O_APPEND keeps one from landing on another.
        with log_path.open("a") as log_file:
            self.process = subprocess.Popen(
                [program("haproxy"), "-f", str(config), "-db"],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
            )

    def wait_listening(self, connect: Callable[[], socket.socket]) -> None:
        def listening() -> bool:
            assert self.process.poll() is None, self.log_path.read_text()
            connect().close()
            return True

        wait_for(listening, 10, "haproxy to listen", interval=0.05)

    def finish(self) -> list[Request]:
        """Stops softly, once every connection is closed, so that each has
        its log line; the requests logged."""
        self.process.send_signal(signal.SIGUSR1)
        self.process.wait(timeout=15)
        return self.requests()

    def requests(self) -> list[Request]:
        return [
            Request(int(match["status"]), match["method"], match["uri"])
            for line in self.log_path.read_text().splitlines()
            if (match := HTTPLOG.search(line))
        ]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


class ApiProxy(Haproxy):
    """The shipped proxy config, listening on a unix socket of the test's."""

    def __init__(self, directory: Path, log_path: Path) -> None:
        self.socket_path = directory / "proxy.sock"
        super().__init__(
            PROXY_CONFIG,
            {"NETWATCH_PROXY_LISTEN": f"unix@{self.socket_path}"},
            log_path,
        )
        self.wait_listening(self.connect)

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def finish(self) -> list[Request]:
        """As Haproxy.finish, once an engine event has gone down every event
        stream: HAProxy learns that a client has gone only when it writes to
        it, and a quiet engine writes nothing to a stream left open."""
        name = f"nwt-proxy-event-{uuid.uuid4().hex[:8]}"
        docker("network", "create", "--internal", name)
        docker("network", "rm", name)
        return super().finish()

    def connect(self) -> socket.socket:
        client = socket.socket(socket.AF_UNIX)
        client.settimeout(10)
        try:
            client.connect(str(self.socket_path))
        except OSError:
            client.close()
            raise
        return client

    def request(self, method: str, path: str, body: bytes = b"") -> int:
        """Sends one request through the proxy; the status it answered.

        The request goes out in one piece: HAProxy answers a refused one as
        soon as it has the headers, and closes.
        """
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        with self.connect() as client:
            client.sendall(head.encode() + body)
            response = http.client.HTTPResponse(client)
            response.begin()
            response.read()
            return response.status


@pytest.fixture
def proxy(request: pytest.FixtureRequest) -> Iterator[ApiProxy]:
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / f"{request.node.name}-haproxy.log"
    # A short directory: a unix socket path has at most 107 bytes.
    with tempfile.TemporaryDirectory(prefix="nwt-proxy-") as directory:
        running = ApiProxy(Path(directory), log_path)
        try:
            yield running
        finally:
            running.stop()


@pytest.fixture(scope="module")
def lab(docker_engine: None) -> Iterator[Lab]:
    """One lab for the whole module (the conftest's is per test)."""
    lab = Lab()
    try:
        yield lab
    finally:
        lab.cleanup()


@pytest.fixture(scope="module")
def trio(lab: Lab) -> tuple[str, str, str]:
    """a and b share a network, c is on one of its own; all listen on 8080."""
    lab.network("shared")
    lab.network("apart")
    return (
        lab.listen("a", networks=("shared",)),
        lab.listen("b", networks=("shared",)),
        lab.listen("c", networks=("apart",)),
    )


def assert_trio_matrix(pairs: list[dict[str, Any]], trio: tuple[str, str, str]):
    """a and b reach each other; c reaches nobody and nobody reaches c."""
    a, b, _ = trio
    by_pair = {(p["src"], p["dst"]): p for p in pairs}
    assert set(by_pair) == {(s, d) for s in trio for d in trio if s != d}
    for (src, dst), pair in by_pair.items():
        expected = {src, dst} == {a, b}
        state = "reachable" if expected else "unreachable"
        assert pair["expected_reachable"] is expected, pair
        assert pair["verdict"] == "ok", pair
        assert pair["probes"]["ping"]["state"] == state, pair
        assert pair["probes"]["tcp"]["state"] == state, pair


def assert_only_documented_and_none_refused(proxy: ApiProxy) -> set[tuple[str, str]]:
    """What netwatch asked the proxy for; fails on a 403 or an undocumented
    endpoint. Returns the endpoints used."""
    made = proxy.finish()
    assert made, proxy.log_path.read_text()
    refused = [r for r in made if r.status == 403]
    undocumented = [r for r in made if endpoint_of(r.method, r.uri) is None]
    assert refused == [], refused
    assert undocumented == [], undocumented
    unversioned = {r.uri for r in made if not VERSION_PREFIX.match(r.uri)}
    assert unversioned <= {"/version"}, unversioned
    return {e for r in made if (e := endpoint_of(r.method, r.uri))}


def test_the_shipped_config_is_valid_without_warnings():
    """`haproxy -c` accepts deploy/socket-proxy/haproxy.cfg and warns of nothing."""
    done = subprocess.run(
        [program("haproxy"), "-c", "-f", str(PROXY_CONFIG)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stdout + done.stderr, done.stdout + done.stderr


def test_the_proxy_refuses_what_netwatch_does_not_use(proxy, trio):
    """Creating a container, listing images, reading logs, starting or
    removing a container, an encoded path and an unknown method all get 403;
    what netwatch uses passes, and the log shows which was which."""
    a = trio[0]
    refused = [
        ("POST", "/v1.41/containers/create", b'{"Image": "netwatch-test/tools"}'),
        ("GET", "/images/json", b""),
        ("GET", f"/v1.41/containers/{a}/logs", b""),
        ("POST", f"/v1.41/containers/{a}/start", b""),
        ("DELETE", f"/v1.41/containers/{a}", b""),
        ("GET", "/v1.41/containers/%2e%2e/images/json", b""),
        ("PUT", f"/v1.41/containers/{a}/exec", b""),
        ("GET", "/_ping", b""),
    ]

    statuses = [proxy.request(method, path, body) for method, path, body in refused]
    listing = proxy.request("GET", "/v1.41/containers/json")

    assert statuses == [403] * len(refused)
    assert listing == 200
    logged = Counter((r.status, r.method, r.uri) for r in proxy.finish())
    # HAProxy's threads log each request as its connection ends: in any order.
    assert logged == Counter(
        [(403, method, path) for method, path, _ in refused]
        + [(200, "GET", "/v1.41/containers/json")]
    )


def test_netwatch_matrix_through_the_proxy(proxy, lab, trio):
    """`netwatch matrix --json` through the proxy: the right matrix, exit 0,
    and every request it made allowed and documented."""
    env = netwatch_env(lab)

    done = run_netwatch("matrix", "--json", "--docker-host", proxy.url, env=env)

    assert done.returncode == 0, done.stderr
    assert_trio_matrix(json.loads(done.stdout)["pairs"], trio)
    used = assert_only_documented_and_none_refused(proxy)
    assert used >= EXEC


def wait_for_trio(daemon: RunningDaemon, trio: tuple[str, str, str]) -> None:
    def judged() -> bool:
        assert_trio_matrix(daemon.matrix()["pairs"], trio)
        return True

    wait_for(judged, 40, "every pair to be judged as designed")


def test_netwatch_run_on_the_exec_engine_with_bandwidth_through_the_proxy(
    proxy, trio, start_daemon
):
    """The daemon on the exec engine, iperf3 bandwidth tests on: ready, the
    right matrix, a measured bandwidth, and every endpoint documented but
    the swarm one used, none refused."""
    a, b, _ = trio
    daemon = start_daemon(
        {
            "NETWATCH_PROBES__ENGINE": "exec",
            "NETWATCH_PROBES__BANDWIDTH__ENABLED": "true",
            "NETWATCH_PROBES__BANDWIDTH__METHOD": "iperf3",
            "NETWATCH_PROBES__BANDWIDTH__INTERVAL": "2s",
            "NETWATCH_PROBES__BANDWIDTH__DURATION": "1s",
            "NETWATCH_PROBES__BANDWIDTH__SERVER_DEADLINE": "6s",
        },
        "--docker-host",
        proxy.url,
    )

    daemon.wait_ready()
    wait_for_trio(daemon, trio)
    wait_for(
        lambda: series(
            daemon.metrics(),
            "netwatch_bandwidth_bits_per_second",
            src=a,
            dst=b,
            method="iperf3",
        ),
        40,
        "a bandwidth test of a -> b",
    )
    daemon.stop()

    used = assert_only_documented_and_none_refused(proxy)
    assert used == documented_endpoints() - SWARM_ONLY


def test_netwatch_run_on_the_namespace_engine_through_the_proxy(
    proxy, trio, start_daemon
):
    """The daemon on the namespace engine: ready and the right matrix, with
    read-only endpoints alone (no exec at all), none refused."""
    daemon = start_daemon(
        {"NETWATCH_PROBES__ENGINE": "netns"}, "--docker-host", proxy.url
    )

    daemon.wait_ready()
    wait_for_trio(daemon, trio)
    daemon.stop()

    used = assert_only_documented_and_none_refused(proxy)
    assert used, "no request logged"
    assert not used & EXEC, used


def openssl(*argv: str, cwd: Path) -> None:
    subprocess.run(
        [program("openssl"), *argv],
        cwd=cwd,
        check=True,
        capture_output=True,
        timeout=30,
    )


def make_ca(directory: Path, name: str) -> None:
    """A CA: NAME.pem and NAME-key.pem."""
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-days", "1", "-subj", f"/CN=netwatch test {name}",
        "-keyout", f"{name}-key.pem", "-out", f"{name}.pem",
        cwd=directory,
    )  # fmt: skip


def issue(directory: Path, ca: str, name: str, *extensions: str) -> None:
    """A certificate signed by CA: NAME-cert.pem and NAME-key.pem."""
    added = [arg for extension in extensions for arg in ("-addext", extension)]
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-days", "1", "-subj", f"/CN={name}",
        "-CA", f"{ca}.pem", "-CAkey", f"{ca}-key.pem",
        "-addext", "basicConstraints=critical,CA:FALSE", *added,
        "-keyout", f"{name}-key.pem", "-out", f"{name}-cert.pem",
        cwd=directory,
    )  # fmt: skip


def cert_path(directory: Path, name: str, ca: str, client: str) -> Path:
    """A DOCKER_CERT_PATH as docker expects it: ca.pem, cert.pem, key.pem."""
    path = directory / name
    path.mkdir()
    shutil.copy(directory / f"{ca}.pem", path / "ca.pem")
    shutil.copy(directory / f"{client}-cert.pem", path / "cert.pem")
    shutil.copy(directory / f"{client}-key.pem", path / "key.pem")
    return path


TLS_ENGINE = """
global
    log stdout format raw local0 info
defaults
    mode tcp
    log global
    option tcplog
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend engine_tls
    bind 127.0.0.1:{port} ssl crt {directory}/server.pem {verify}
    default_backend engine
backend engine
    server engine {engine}
"""


@dataclass(frozen=True)
class TlsEngine:
    """The engine behind TLS on loopback, and certificate folders for it."""

    url: str
    trusted: Path  # the CA's client certificate
    stranger: Path  # a client certificate from another CA
    wrong_ca: Path  # trusts another CA than the server's


@pytest.fixture(scope="module")
def tls_engine(
    docker_engine: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TlsEngine]:
    directory = tmp_path_factory.mktemp("tls")
    make_ca(directory, "ca")
    make_ca(directory, "other-ca")
    issue(
        directory,
        "ca",
        "server",
        "subjectAltName=IP:127.0.0.1",
        "extendedKeyUsage=serverAuth",
    )
    issue(directory, "ca", "client", "extendedKeyUsage=clientAuth")
    issue(directory, "other-ca", "stranger", "extendedKeyUsage=clientAuth")
    (directory / "server.pem").write_text(
        (directory / "server-cert.pem").read_text()
        + (directory / "server-key.pem").read_text()
    )
    port = free_port()
    config = directory / "engine-tls.cfg"
    config.write_text(
        TLS_ENGINE.format(
            port=port,
            directory=directory,
            verify=f"ca-file {directory}/ca.pem verify required",
            engine=ENGINE_SOCKET,
        )
    )
    ARTIFACTS.mkdir(exist_ok=True)
    engine = Haproxy(config, {}, ARTIFACTS / "engine-tls-haproxy.log")
    try:
        engine.wait_listening(lambda: socket.create_connection(("127.0.0.1", port)))
        yield TlsEngine(
            url=f"tcp://127.0.0.1:{port}",
            trusted=cert_path(directory, "trusted", "ca", "client"),
            stranger=cert_path(directory, "stranger", "ca", "stranger"),
            wrong_ca=cert_path(directory, "wrong-ca", "other-ca", "client"),
        )
    finally:
        engine.stop()


def tls_env(lab: Lab, engine: TlsEngine, cert_path: Path | None) -> dict[str, str]:
    """netwatch's environment for the TLS engine; no DOCKER_TLS_VERIFY
    without a certificate folder."""
    env = netwatch_env(lab, {"DOCKER_HOST": engine.url})
    for name in ("DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT"):
        env.pop(name, None)
    if cert_path is not None:
        env |= {"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(cert_path)}
    return env


def test_netwatch_matrix_over_tls_with_a_client_certificate(lab, trio, tls_engine):
    """DOCKER_HOST=tcp://, DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH reach an
    engine that asks for a client certificate: the right matrix, exit 0."""
    env = tls_env(lab, tls_engine, tls_engine.trusted)

    done = run_netwatch("matrix", "--json", env=env)

    assert done.returncode == 0, done.stderr
    assert_trio_matrix(json.loads(done.stdout)["pairs"], trio)


@pytest.mark.parametrize(
    ("folder", "says"),
    [
        pytest.param(
            "stranger", "alert unknown ca", id="client-certificate-of-another-ca"
        ),
        pytest.param("wrong_ca", "certificate verify failed", id="server-not-trusted"),
        pytest.param(None, "set DOCKER_TLS_VERIFY=1", id="no-tls-verify"),
    ],
)
def test_a_refused_tls_engine_exits_3_saying_why(lab, tls_engine, folder, says):
    """A client certificate the engine does not trust, an engine certificate
    netwatch does not trust, or plain HTTP to the TLS port: exit 3 and a
    one-line reason, no traceback."""
    cert_path = getattr(tls_engine, folder) if folder else None
    env = tls_env(lab, tls_engine, cert_path)

    done = run_netwatch("matrix", env=env)

    assert done.returncode == 3, done.stdout + done.stderr
    assert done.stderr.startswith("netwatch: cannot use the Docker engine: ")
    assert says in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr


def test_the_compose_file_runs_netwatch_without_the_socket(docker_engine):
    """deploy/docker-compose.proxy.yml is valid for `docker-compose config`;
    only the proxy mounts the engine's socket, with the shipped config, and
    netwatch reaches it by DOCKER_HOST on a network of their own."""
    env = {**os.environ, "DOCKER_GID": str(os.stat(ENGINE_SOCKET).st_gid)}

    done = subprocess.run(
        [program("docker-compose"), "-f", "docker-compose.proxy.yml", "config"],
        cwd=ROOT / "deploy",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    spec = yaml.safe_load(done.stdout)
    proxy, netwatch = spec["services"]["docker-proxy"], spec["services"]["netwatch"]
    assert f"{ENGINE_SOCKET}:{ENGINE_SOCKET}:rw" in proxy["volumes"]
    assert f"{PROXY_CONFIG}:/usr/local/etc/haproxy/haproxy.cfg:ro" in proxy["volumes"]
    assert "volumes" not in netwatch
    assert netwatch["environment"]["DOCKER_HOST"] == "tcp://docker-proxy:2375"
    assert spec["networks"]["engine-api"]["internal"] is True
    assert set(proxy["networks"]) == {"engine-api"}
