"""The namespace engine uses a PID's namespace only while the PID is still
the container's: a recycled PID belongs to some other process."""

from __future__ import annotations

import socket
from pathlib import Path

from netwatch.netstat import still_the_containers
from netwatch.probes.netns_engine import make_sockets

CONTAINER = "c79dd4ebcdc2a7eec2c628acb58eab910a9ddace84577ad4eb48a44bab4ba0ee"


def _pid_dir(tmp_path: Path, cgroup: str) -> Path:
    pid_dir = tmp_path / "4242"
    pid_dir.mkdir()
    (pid_dir / "cgroup").write_text(cgroup)
    return pid_dir


def test_a_process_in_the_containers_cgroup_is_the_containers(tmp_path):
    for layout in (
        f"0::/docker/{CONTAINER}\n",  # cgroupfs driver, from the host
        f"0::/system.slice/docker-{CONTAINER}.scope\n",  # systemd driver
        f"0::/../../docker-{CONTAINER}.scope\n",  # from a sidecar's cgroupns
    ):
        pid_dir = _pid_dir(tmp_path, layout)
        assert still_the_containers(pid_dir, CONTAINER), layout
        (pid_dir / "cgroup").unlink()
        pid_dir.rmdir()


def test_a_recycled_pid_is_not(tmp_path):
    assert not still_the_containers(
        _pid_dir(tmp_path, "0::/user.slice/user-0.slice/session-1.scope\n"),
        CONTAINER,
    )
    assert not still_the_containers(tmp_path / "gone", CONTAINER)


def test_no_socket_is_made_in_a_namespace_that_is_no_longer_the_containers():
    """This test's own process is in no container's cgroup."""
    made = make_sockets(
        Path("/proc/self/ns/net"),
        [(socket.AF_INET, socket.SOCK_DGRAM, 0)],
        CONTAINER,
    )

    assert made.made == []
    assert made.problem is not None
    assert "no longer belongs to the container" in made.problem
