"""deploy/docker-compose.yml: valid, and its netwatch and demo services up
for real with images built here (Prometheus, Alertmanager and Grafana need
images that cannot be pulled on this machine)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid

import pytest
import yaml

from tests.integration.conftest import (
    REQUIRE_DOCKER,
    ROOT,
    docker,
    free_port,
    http_get,
    wait_for,
)
from tests.integration.test_image import image  # noqa: F401  (the built image)

pytestmark = pytest.mark.docker

COMPOSE_DIR = ROOT / "deploy"


def compose(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    if binary is None:
        if REQUIRE_DOCKER:
            pytest.fail("docker-compose is missing (Debian: docker-compose)")
        pytest.skip("docker-compose is missing")
    return subprocess.run(
        [binary, *argv], cwd=COMPOSE_DIR, env=env, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip


def socket_gid() -> str:
    return str(os.stat("/var/run/docker.sock").st_gid)


def test_the_compose_file_is_valid_with_and_without_the_demo():
    """`docker-compose config` accepts the file; the lab services sit behind
    the demo profile, the monitoring stack does not."""
    env = {**os.environ, "DOCKER_GID": socket_gid()}

    plain = compose("config", env=env)
    demo = compose("--profile", "demo", "config", "--services", env=env)

    assert plain.returncode == 0, plain.stderr
    services = yaml.safe_load(plain.stdout)["services"]
    profiles = {name: spec.get("profiles") for name, spec in services.items()}
    assert profiles == {
        "netwatch": None,
        "prometheus": None,
        "alertmanager": None,
        "grafana": None,
        "web": ["demo"],
        "api": ["demo"],
        "db": ["demo"],
    }
    assert demo.returncode == 0, demo.stderr
    assert {"web", "api", "db"} <= set(demo.stdout.split())


def granted(project: str) -> dict[str, object]:
    """What the engine gave the running netwatch service: capabilities
    added and dropped, root file system, security options, PID namespace."""
    (container,) = docker(
        "ps", "-q", "--filter", f"label=com.docker.compose.project={project}",
        "--filter", "label=com.docker.compose.service=netwatch",
    ).split()  # fmt: skip
    host = json.loads(docker("inspect", "-f", "{{json .HostConfig}}", container))
    options = host["SecurityOpt"] or []
    if host["PidMode"] == "host":
        # The engine's own addition for a container in the host's PID
        # namespace (no SELinux label can confine it): asked for by no file.
        options = [option for option in options if option != "label=disable"]
    return {
        "cap_add": sorted(c.removeprefix("CAP_") for c in host["CapAdd"] or []),
        "cap_drop": host["CapDrop"],
        "read_only": host["ReadonlyRootfs"],
        "security_opt": options,
        "pid": host["PidMode"],
    }


def test_netwatch_and_the_demo_come_up_and_show_the_lab(image):  # noqa: F811
    """netwatch and the demo lab, brought up by Compose, give the three-tier
    matrix: web and db isolated, the rest reachable, all as expected."""
    project = f"nwc{uuid.uuid4().hex[:6]}"
    port = free_port()
    env = {
        **os.environ,
        "DOCKER_GID": socket_gid(),
        "NETWATCH_IMAGE": image,
        "DEMO_IMAGE": "netwatch-test/busybox",
        "NETWATCH_PORT": str(port),
        "NETWATCH_MATCH_LABELS": f"com.docker.compose.project={project}",
    }
    services = ("netwatch", "web", "api", "db")
    try:
        up = compose(
            "-p",
            project,
            "--profile",
            "demo",
            "up",
            "-d",
            "--no-build",
            *services,
            env=env,
        )
        assert up.returncode == 0, up.stderr

        wait_for(
            lambda: http_get(port, "/-/ready")[0] == 200, 90, "netwatch to be ready"
        )
        privileges = granted(project)
        body = json.loads(http_get(port, "/api/v1/matrix")[1])
    finally:
        down = compose("-p", project, "--profile", "demo", "down", "-v", env=env)
    assert down.returncode == 0, down.stderr

    # The exec engine's sidecar holds the socket and nothing else.
    assert privileges == {
        "cap_add": [],
        "cap_drop": ["ALL"],
        "read_only": True,
        "security_opt": ["no-new-privileges:true"],
        "pid": "",
    }
    by_service = {c["id"]: c["compose_service"] for c in body["containers"]}
    assert sorted(by_service.values()) == ["api", "db", "web"]
    for pair in body["pairs"]:
        services_pair = {by_service[pair["src_id"]], by_service[pair["dst_id"]]}
        assert pair["expected_reachable"] is (services_pair != {"web", "db"}), pair
        assert pair["verdict"] == "ok", pair


def test_the_namespace_override_runs_the_sidecar_with_the_netns_engine(
    image,  # noqa: F811
):
    """With docker-compose.netns.yml on top (pid: host, SYS_ADMIN and
    SYS_PTRACE, every other capability dropped), the sidecar probes from the
    containers' namespaces: DNS lookups and the demo's HTTP checks appear."""
    project = f"nwc{uuid.uuid4().hex[:6]}"
    port = free_port()
    env = {
        **os.environ,
        "DOCKER_GID": socket_gid(),
        "NETWATCH_IMAGE": image,
        "DEMO_IMAGE": "netwatch-test/busybox",
        "NETWATCH_PORT": str(port),
        "NETWATCH_MATCH_LABELS": f"com.docker.compose.project={project}",
    }
    files = ("-f", "docker-compose.yml", "-f", "docker-compose.netns.yml")
    services = ("netwatch", "web", "api", "db")
    body: dict = {}  # type: ignore[type-arg]
    try:
        up = compose(
            *files, "-p", project, "--profile", "demo", "up", "-d", "--no-build",
            *services, env=env,
        )  # fmt: skip
        assert up.returncode == 0, up.stderr

        def measured() -> bool:
            nonlocal body
            body = json.loads(http_get(port, "/api/v1/matrix")[1])
            service = {c["id"]: c["compose_service"] for c in body["containers"]}
            looked_up = any(
                (service[p["src_id"]], service[p["dst_id"]]) == ("api", "web")
                and p["probes"].get("http", {}).get("results")
                and p["probes"].get("dns", {}).get("results")
                for p in body["pairs"]
            )
            every_pair = all(p["verdict"] != "unmeasured" for p in body["pairs"])
            return looked_up and every_pair

        wait_for(measured, 90, "an HTTP check from the namespace engine")
        privileges = granted(project)
    finally:
        down = compose(
            *files, "-p", project, "--profile", "demo", "down", "-v", env=env
        )
    assert down.returncode == 0, down.stderr

    assert privileges == {
        "cap_add": ["SYS_ADMIN", "SYS_PTRACE"],
        "cap_drop": ["ALL"],
        "read_only": True,
        "security_opt": ["no-new-privileges:true"],
        "pid": "host",
    }
    service = {c["id"]: c["compose_service"] for c in body["containers"]}
    pairs = {(service[p["src_id"]], service[p["dst_id"]]): p for p in body["pairs"]}
    http = pairs[("api", "web")]["probes"]["http"]["results"][0]
    assert http["status"] == 200, http
    lookups = pairs[("api", "web")]["probes"]["dns"]["results"]
    assert lookups
    assert all(lookup["outcome"] == "ok" for lookup in lookups), lookups
    # web and db share no network: the path is not there, and the name is
    # not looked up (the engine would forward it off the host).
    assert pairs[("web", "db")]["verdict"] == "ok"
    assert not pairs[("web", "db")]["probes"].get("dns", {}).get("results")
