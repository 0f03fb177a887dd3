"""deploy/swarm/stack.yml on a one-node swarm: the stack deploys from the
image built here, and containers on its overlay network appear in the matrix
and reach each other."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from tests.integration.conftest import ROOT, docker, free_port, http_get, wait_for
from tests.integration.test_image import image  # noqa: F401  (the built image)

pytestmark = pytest.mark.docker

STACK = ROOT / "deploy/swarm/stack.yml"


def advertise_address() -> str:
    """This machine's own address, for the swarm's control plane."""
    route = subprocess.run(
        ["ip", "-4", "route", "show", "default"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    device = route[route.index("dev") + 1]
    shown = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "dev", device],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return shown[shown.index("inet") + 1].split("/")[0]


@contextlib.contextmanager
def one_node_swarm() -> Iterator[None]:
    """A swarm of this machine alone, left again afterwards if made here."""
    state = docker("info", "--format", "{{.Swarm.LocalNodeState}}")
    made = state != "active"
    # The swarm's bridge to the host outlives the swarm: removed if made here.
    had_bridge = bool(
        docker("network", "ls", "-q", "--filter", "name=^docker_gwbridge$")
    )
    if made:
        docker("swarm", "init", "--advertise-addr", advertise_address())
    try:
        yield
    finally:
        if made:
            docker("swarm", "leave", "--force", check=False)
            if not had_bridge:
                docker("network", "rm", "docker_gwbridge", check=False)


def test_the_stack_deploys_and_sees_containers_on_its_overlay(image):  # noqa: F811
    """The global netwatch service runs one task on the node; two containers
    attached to the stack's overlay network are in its matrix, reaching
    each other as the topology says."""
    stack = f"nws{uuid.uuid4().hex[:6]}"
    label = f"netwatch.test={stack}"
    port = free_port()
    env = {
        **os.environ,
        "NETWATCH_IMAGE": image,
        "DOCKER_GID": str(os.stat("/var/run/docker.sock").st_gid),
        "NETWATCH_PORT": str(port),
        "NETWATCH_MATCH_LABELS": label,
        "PROMETHEUS_REPLICAS": "0",
    }
    containers = [f"{stack}-a", f"{stack}-b"]
    with one_node_swarm():
        try:
            deployed = subprocess.run(
                ["docker", "stack", "deploy", "-c", str(STACK), stack],
                env=env, capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            assert deployed.returncode == 0, deployed.stderr
            overlay = f"{stack}_netwatch"
            for name in containers:
                docker(
                    "run", "-d", "--name", name, "--label", label, "--network", overlay,
                    "netwatch-test/tools", "sleep", "100000",
                )  # fmt: skip

            wait_for(
                lambda: http_get(port, "/-/ready")[0] == 200, 120, "the netwatch task"
            )

            def measured() -> dict | None:  # type: ignore[type-arg]
                body = json.loads(http_get(port, "/api/v1/matrix")[1])
                pairs = {(p["src"], p["dst"]): p for p in body["pairs"]}
                pair = pairs.get((containers[0], containers[1]))
                if pair and pair["probes"].get("ping", {}).get("state") == "reachable":
                    return body
                return None

            body = wait_for(measured, 60, "the overlay pair to be measured")
            mode = docker(
                "service", "inspect", "-f", "{{json .Spec.Mode}}", f"{stack}_netwatch"
            )
        finally:
            docker("rm", "-f", *containers, check=False)
            docker("stack", "rm", stack, check=False)
            wait_for(
                lambda: (
                    not docker(
                        "network", "ls", "-q", "--filter", f"name={stack}_", check=False
                    )
                ),
                60,
                "the stack's network to go",
            )

    assert "Global" in mode
    names = {c["name"] for c in body["containers"]}
    assert names == set(containers), (
        "netwatch must watch its node's labelled containers only"
    )
    overlay_attachments = [
        a for c in body["containers"] for a in c["networks"] if a["driver"] == "overlay"
    ]
    assert len(overlay_attachments) == 2
    for pair in body["pairs"]:
        assert pair["expected_reachable"] is True
        assert pair["verdict"] == "ok", pair
