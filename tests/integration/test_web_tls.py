"""The HTTP server behind the exporters' web configuration file, against
real clients: Debian's Prometheus scraping over TLS with basic auth, curl,
and `netwatch health`, talking to a real `netwatch run` that watches real
containers."""

from __future__ import annotations

import base64
import http.client
import shutil
import signal
import ssl
import subprocess

import bcrypt
import pytest

from tests.integration.conftest import (
    Lab,
    RunningDaemon,
    netwatch_env,
    run_netwatch,
    wait_for,
)
from tests.integration.test_dashboards import Prometheus
from tests.pki import Pki, make_pki

pytestmark = pytest.mark.docker

USER = "prometheus"
PASSWORD = "scrape-me"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def curl(*argv: str) -> tuple[int, str]:
    """curl's exit code, and the status and headers it wrote (000: none)."""
    binary = shutil.which("curl")
    if binary is None:
        pytest.fail("curl is not installed (Debian: curl)")
    done = subprocess.run(
        [binary, "-sS", "-o", "/dev/null", "--max-time", "10",
         "-w", "%{http_code} %header{www-authenticate}|"
               "%header{x-content-type-options}", *argv],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return done.returncode, done.stdout


def status_over_tls(
    daemon: RunningDaemon, context: ssl.SSLContext, password: str | None = None
) -> int:
    """The status of GET /-/healthy over TLS, as USER when given a password."""
    connection = http.client.HTTPSConnection(
        "127.0.0.1", daemon.port, timeout=5, context=context
    )
    headers = {}
    if password is not None:
        token = base64.b64encode(f"{USER}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    try:
        connection.request("GET", "/-/healthy", headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def health(lab: Lab, daemon: RunningDaemon, *argv: str, **env: str) -> int:
    """`netwatch health` against the daemon: its exit code."""
    environment = netwatch_env(
        lab, {"NETWATCH_HTTP__LISTEN": f"127.0.0.1:{daemon.port}", **env}
    )
    return run_netwatch("health", *argv, env=environment, timeout=30).returncode


def test_prometheus_scrapes_netwatch_over_tls_with_basic_auth(
    lab, start_daemon, pki, tmp_path
):
    """Prometheus scrapes netwatch over TLS, verifying its certificate with
    the CA, with basic auth: the target is up and the pair series arrive.
    curl gets 401 without credentials or with a wrong password, 200 with the
    right one; plain HTTP gets no answer; `netwatch health` is healthy."""
    lab.network("net")
    a = lab.run("a", networks=("net",))
    b = lab.run("b", networks=("net",))
    stored = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
    # Relative paths: the certificates lie beside the file.
    web_config = pki.ca.cert.parent / "web-basic-auth.yml"
    web_config.write_text(
        "tls_server_config:\n"
        "  cert_file: server.crt\n"
        "  key_file: server.key\n"
        f"basic_auth_users:\n  {USER}: '{stored}'\n"
        "http_server_config:\n"
        "  headers:\n"
        "    X-Content-Type-Options: nosniff\n"
    )
    trusting = ssl.create_default_context(cafile=pki.ca.cert)
    daemon = start_daemon(
        {"NETWATCH_HTTP__WEB_CONFIG_FILE": str(web_config)},
        answers=lambda d: status_over_tls(d, trusting, PASSWORD) == 200,
    )
    scrape = {
        "scheme": "https",
        "tls_config": {"ca_file": str(pki.ca.cert)},
        "basic_auth": {"username": USER, "password": PASSWORD},
    }

    with Prometheus(tmp_path, daemon.port, scrape) as prometheus:
        up = wait_for(
            lambda: prometheus.query('up{job="netwatch"} == 1'), 30, "a good scrape"
        )
        pairs = wait_for(
            lambda: prometheus.query(
                f'netwatch_pair_reachable{{src="{a}",dst="{b}",probe="ping"}}'
            ),
            30,
            "the pair's series in Prometheus",
        )
        [target] = prometheus.api("targets")["data"]["activeTargets"]
    url = f"https://127.0.0.1:{daemon.port}/metrics"
    ca = str(pki.ca.cert)
    anonymous = curl("--cacert", ca, url)
    wrong = curl("--cacert", ca, "-u", f"{USER}:not-{PASSWORD}", url)
    right = curl("--cacert", ca, "-u", f"{USER}:{PASSWORD}", url)
    plain = curl(f"http://127.0.0.1:{daemon.port}/metrics")
    healthy = health(lab, daemon, NETWATCH_HTTP__WEB_CONFIG_FILE=str(web_config))
    ready = health(
        lab, daemon, "--ready", NETWATCH_HTTP__WEB_CONFIG_FILE=str(web_config)
    )

    assert [sample["value"][1] for sample in up] == ["1"]
    assert target["scrapeUrl"].startswith("https://127.0.0.1:")
    assert target["health"] == "up"
    assert [sample["value"][1] for sample in pairs] == ["1"]
    assert anonymous == (0, '401 Basic realm="netwatch"|nosniff')
    assert wrong[0] == 0
    assert wrong[1].startswith("401 Basic")
    assert right == (0, "200 |nosniff")
    # TLS only: a plain HTTP request gets no HTTP answer at all.
    assert plain[0] != 0
    assert plain[1].startswith("000")
    assert healthy == 0
    # Without credentials, readiness cannot be learnt (a 401 proves only life).
    assert ready == 1


def test_client_certificates_are_required_and_verified(lab, start_daemon, pki):
    """With RequireAndVerifyClientCert, a client without a certificate, or
    with one no trusted CA signed, is refused in the handshake; the client
    certificate is served; `netwatch health` is healthy when given it, and
    not without it."""
    web_config = pki.ca.cert.parent / "web-mutual.yml"
    web_config.write_text(
        "tls_server_config:\n"
        f"  cert_file: {pki.server.cert}\n"
        f"  key_file: {pki.server.key}\n"
        f"  client_ca_file: {pki.ca.cert}\n"
        "  client_auth_type: RequireAndVerifyClientCert\n"
    )
    mutual = ssl.create_default_context(cafile=pki.ca.cert)
    mutual.load_cert_chain(pki.client.cert, pki.client.key)
    daemon = start_daemon(
        {},
        "--web.config.file",
        str(web_config),
        answers=lambda d: status_over_tls(d, mutual) == 200,
    )
    url = f"https://127.0.0.1:{daemon.port}/-/healthy"
    ca = str(pki.ca.cert)

    without = curl("--cacert", ca, url)
    stranger = curl(
        "--cacert", ca, "--cert", str(pki.stranger.cert),
        "--key", str(pki.stranger.key), url,
    )  # fmt: skip
    client = curl(
        "--cacert", ca, "--cert", str(pki.client.cert),
        "--key", str(pki.client.key), url,
    )  # fmt: skip
    flag = ("--web.config.file", str(web_config))
    health_without = health(lab, daemon, *flag)
    health_with = health(
        lab,
        daemon,
        *flag,
        "--client-cert",
        str(pki.client.cert),
        "--client-key",
        str(pki.client.key),
    )

    assert without[0] != 0
    assert without[1].startswith("000")
    assert stranger[0] != 0
    assert stranger[1].startswith("000")
    assert client == (0, "200 |")
    assert health_without == 1
    assert health_with == 0


def test_sighup_swaps_the_users_and_a_broken_web_config_changes_nothing(
    lab, start_daemon, pki
):
    """A reload reads the web configuration again: a new password works and
    the old one no longer does; a web configuration with a bad hash fails
    the reload and the running users stay."""
    lab.network("net")
    lab.run("a", networks=("net",))
    web_config = pki.ca.cert.parent / "web-reload.yml"

    def users(password: str) -> None:
        stored = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
        web_config.write_text(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            f"basic_auth_users:\n  {USER}: '{stored}'\n"
        )

    users("first")
    trusting = ssl.create_default_context(cafile=pki.ca.cert)
    daemon = start_daemon(
        {"NETWATCH_HTTP__WEB_CONFIG_FILE": str(web_config)},
        answers=lambda d: status_over_tls(d, trusting, "first") == 200,
    )

    users("second")
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: daemon.events("config.reloaded"), 20, "the reload")

    assert status_over_tls(daemon, trusting, "second") == 200
    assert status_over_tls(daemon, trusting, "first") == 401

    web_config.write_text(f"basic_auth_users:\n  {USER}: not-a-bcrypt-hash\n")
    daemon.process.send_signal(signal.SIGHUP)
    (failed,) = wait_for(
        lambda: daemon.events("config.reload_failed"), 20, "the failed reload"
    )

    assert any("basic_auth_users" in problem for problem in failed["problems"])
    assert "not-a-bcrypt-hash" not in str(failed)
    assert status_over_tls(daemon, trusting, "second") == 200
    assert daemon.process.poll() is None
