"""The sidecar image: built here from a locally made base image, run next to
real containers with the Docker socket mounted, and scraped."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.integration.conftest import ROOT, Lab, docker, free_port, http_get, wait_for
from tests.integration.test_daemon import series, three_tier

pytestmark = pytest.mark.docker

BASE = "netwatch-test/python-base:bookworm"
IMAGE = "netwatch:ci"
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"


@pytest.fixture(scope="module")
def image(docker_engine: None) -> str:
    """netwatch's image, built FROM a Debian base made here (no registry),
    trusting this machine's CAs for pip (its proxy inspects TLS)."""
    subprocess.run(["bash", str(ROOT / "tests/images/base.sh")], check=True)
    build = ROOT / ".build"
    build.mkdir(exist_ok=True)
    shutil.copy(HOST_CA, build / "extra-ca.pem")
    subprocess.run(
        [
            "docker", "build", "-q", "-t", IMAGE,
            "--build-arg", f"BASE_IMAGE={BASE}",
            "--build-arg", "EXTRA_CA_FILE=.build/extra-ca.pem",
            str(ROOT),
        ],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    return IMAGE


def run_sidecar(lab: Lab, image: str, port: int) -> str:
    """netwatch as a sidecar, watching the lab (and carrying its label)."""
    socket_gid = docker(
        "run", "--rm", "-v", "/var/run/docker.sock:/s", BASE, "stat", "-c", "%g", "/s"
    )
    return lab.run(
        "netwatch",
        image=None,
        options=(
            "-p", f"127.0.0.1:{port}:10980",
            "-v", "/var/run/docker.sock:/var/run/docker.sock",
            "--group-add", socket_gid,
            # As the README runs it: no capability, nothing to write.
            "--cap-drop", "ALL", "--read-only",
            "--security-opt", "no-new-privileges",
            "-e", f"NETWATCH_DISCOVERY__MATCH_LABELS=netwatch.test={lab.prefix}",
            "-e", "NETWATCH_PROBES__PING__INTERVAL=4s",
        ),
        full_image=image,
        command=(),
    )  # fmt: skip


def get(port: int, path: str) -> str:
    status, body = http_get(port, path, timeout=5)
    if status != 200:
        raise OSError(f"HTTP {status}: {body[:200]}")
    return body


def test_sidecar_serves_the_real_matrix(lab, image):
    """Run as a sidecar with the socket mounted, the image's matrix matches
    the three-tier topology, it leaves its own container out, runs as a
    non-root user and turns healthy."""
    web, api, db = three_tier(lab)
    port = free_port()

    sidecar = run_sidecar(lab, image, port)
    wait_for(lambda: get(port, "/-/ready"), 60, "the sidecar to be ready")
    body = json.loads(get(port, "/api/v1/matrix"))
    metrics = get(port, "/metrics")

    names = {c["name"] for c in body["containers"]}
    assert names == {web, api, db}, "the sidecar must not watch itself"
    pairs = {(p["src"], p["dst"]): p for p in body["pairs"]}
    for (src, dst), pair in pairs.items():
        expected = {src, dst} in ({web, api}, {api, db})
        assert pair["expected_reachable"] is expected
        assert pair["verdict"] == "ok", pair
    assert series(
        metrics, "netwatch_pair_reachable", src=web, dst=api, probe="ping"
    ) == [1.0]
    assert docker("inspect", "-f", "{{.Config.User}}", sidecar) == "10001:10001"
    wait_for(
        lambda: (
            docker("inspect", "-f", "{{.State.Health.Status}}", sidecar) == "healthy"
        ),
        60,
        "the HEALTHCHECK to pass",
    )


def test_image_carries_its_labels_and_stays_small(image):
    """OCI labels are set, and the image is printed with its size."""
    labels = json.loads(docker("inspect", "-f", "{{json .Config.Labels}}", image))
    size = int(docker("inspect", "-f", "{{.Size}}", image))

    assert labels["org.opencontainers.image.title"] == "netwatch"
    assert labels["org.opencontainers.image.version"]
    print(f"\nimage {image}: {size / 1e6:.0f} MB")
    assert size < 400e6
