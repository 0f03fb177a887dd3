"""Discovery's pure helpers: finding netwatch's own container, and keeping
track of engine events across reconnects."""

from __future__ import annotations

import copy

import pytest

from netwatch.discovery import event_key, event_since, own_container_id
from tests.conftest import load_cases

CASES = load_cases()

OWN_ID = "4d1c0a9e8b7f6e5d4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a2918a7b6c5d"
OTHER_ID = "e2c5a7b9d1f3e5a7c9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a3c5"
LAYER_ID = "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c"

# /proc/self/mountinfo inside a container (Docker 24, overlay2, cgroup v2).
CONTAINER_MOUNTINFO = "\n".join(
    [
        "1466 1312 0:183 / / rw,relatime master:636 - overlay overlay rw,"
        "lowerdir=/var/lib/docker/overlay2/l/Q2XK:/var/lib/docker/overlay2/l/7HZ3,"
        f"upperdir=/var/lib/docker/overlay2/{LAYER_ID}/diff,"
        f"workdir=/var/lib/docker/overlay2/{LAYER_ID}/work",
        "1467 1466 0:186 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw",
        "1468 1466 0:187 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755",
        "1474 1466 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime"
        " - cgroup2 cgroup rw",
        f"1480 1466 254:1 /var/lib/docker/containers/{OWN_ID}/resolv.conf"
        " /etc/resolv.conf rw,relatime - ext4 /dev/vda1 rw",
        f"1481 1466 254:1 /var/lib/docker/containers/{OWN_ID}/hostname"
        " /etc/hostname rw,relatime - ext4 /dev/vda1 rw",
        f"1482 1466 254:1 /var/lib/docker/containers/{OWN_ID}/hosts"
        " /etc/hosts rw,relatime - ext4 /dev/vda1 rw",
        "",
    ]
)

# /proc/self/mountinfo of a process on a plain host without containers.
PLAIN_HOST_MOUNTINFO = "\n".join(
    [
        "22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw",
        "23 28 0:22 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw",
        "28 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro",
        "30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9"
        " - cgroup2 cgroup2 rw",
        "",
    ]
)

# The same host running Docker: other containers' overlay and shm mounts
# appear in the host's own mount table.
DOCKER_HOST_MOUNTINFO = PLAIN_HOST_MOUNTINFO + "\n".join(
    [
        f"812 28 0:55 / /var/lib/docker/overlay2/{LAYER_ID}/merged rw,relatime"
        " shared:410 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/Q2XK,"
        f"upperdir=/var/lib/docker/overlay2/{LAYER_ID}/diff,"
        f"workdir=/var/lib/docker/overlay2/{LAYER_ID}/work",
        f"845 28 0:58 / /var/lib/docker/containers/{OTHER_ID}/mounts/shm"
        " rw,nosuid,nodev,noexec,relatime shared:431 - tmpfs shm rw,size=65536k",
        "",
    ]
)

HOST_CGROUP_V2 = "0::/user.slice/user-1000.slice/session-3.scope\n"


def proc_with(tmp_path, **files: str):  # type: ignore[no-untyped-def]
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def test_own_id_is_read_from_the_hostname_mount(tmp_path):
    """Inside a container, the /etc/hostname bind mount gives the id."""
    proc = proc_with(tmp_path, mountinfo=CONTAINER_MOUNTINFO, cgroup="0::/\n")

    assert own_container_id(proc) == OWN_ID


def test_own_id_is_not_an_overlay_layer_id(tmp_path):
    """The 64-hex overlay2 layer ids on the root mount are not taken for the id."""
    mountinfo = CONTAINER_MOUNTINFO.replace(f"containers/{OWN_ID}", "containers/x")
    proc = proc_with(tmp_path, mountinfo=mountinfo, cgroup="0::/\n")

    assert own_container_id(proc) is None


@pytest.mark.parametrize(
    "cgroup",
    [
        f"12:memory:/docker/{OWN_ID}\n11:pids:/docker/{OWN_ID}\n",
        f"0::/system.slice/docker-{OWN_ID}.scope\n",
    ],
    ids=["cgroup-v1", "cgroup-v2-systemd"],
)
def test_own_id_falls_back_to_the_cgroup_path(tmp_path, cgroup):
    """Without a readable mountinfo, the cgroup path gives the id."""
    proc = proc_with(tmp_path, cgroup=cgroup)

    assert own_container_id(proc) == OWN_ID


def test_plain_host_has_no_own_container(tmp_path):
    """On a host without containers the answer is None."""
    proc = proc_with(tmp_path, mountinfo=PLAIN_HOST_MOUNTINFO, cgroup=HOST_CGROUP_V2)

    assert own_container_id(proc) is None


def test_unreadable_proc_has_no_own_container(tmp_path):
    """With neither file present the answer is None, not an error."""
    assert own_container_id(tmp_path) is None


def test_docker_host_is_not_taken_for_a_container(tmp_path):
    """netwatch run on a Docker host does not mistake another container for itself."""
    proc = proc_with(tmp_path, mountinfo=DOCKER_HOST_MOUNTINFO, cgroup=HOST_CGROUP_V2)

    assert own_container_id(proc) is None


def test_event_key_is_id_action_and_time():
    """An event is known by its actor id, its action and its timeNano."""
    event = {
        "Type": "container",
        "Action": "start",
        "Actor": {"ID": OTHER_ID, "Attributes": {"name": "web1"}},
        "time": 1700000000,
        "timeNano": 1700000000123456789,
    }

    assert event_key(event) == (OTHER_ID, "start", 1700000000123456789)


def test_event_key_reads_old_style_fields():
    """Events with only id and status (old engines) still get a key."""
    event = {"status": "die", "id": OTHER_ID, "from": "alpine", "time": 1700000000}

    assert event_key(event) == (OTHER_ID, "die", 0)


def test_event_key_of_an_empty_event():
    """An event missing every field gets an empty key instead of an error."""
    assert event_key({}) == ("", "", 0)


def test_events_differing_in_action_or_time_have_different_keys():
    """Two actions on one container at one time, or one action twice, differ."""
    start = {"Action": "start", "Actor": {"ID": OTHER_ID}, "timeNano": 10}
    die = {**start, "Action": "die"}
    later = {**start, "timeNano": 11}

    keys = {event_key(start), event_key(die), event_key(later)}

    assert len(keys) == 3


@pytest.mark.parametrize(
    ("time_nano", "since"),
    [
        (1700000000000000000, "1700000000.000000000"),
        (1700000000123456789, "1700000000.123456789"),
        (1700000000000000005, "1700000000.000000005"),
        (5, "0.000000005"),
    ],
)
def test_event_since_keeps_nanoseconds(time_nano, since):
    """since is seconds and nine digits of nanoseconds, as the engine expects."""
    assert event_since(time_nano) == since


def test_case_nw019_reconnect_resumes_from_the_last_event_and_dedupes_the_replay():
    """NW-019: after the idle cut, since is the start event's time, and the start
    event the engine replays has the same key, so it is processed once."""
    case = CASES["NW-019-events-stream-idle-timeout"]
    timeline = case["input"]["timeline"]
    expected = case["expected"]
    start = timeline[0]["event"]
    replayed = copy.deepcopy(start)
    during_gap = next(
        step["event_during_gap"] for step in timeline if "event_during_gap" in step
    )

    since = event_since(start["timeNano"])
    start_keys = {event_key(start), event_key(replayed)}

    assert int(since.split(".")[0]) == expected["reconnect_since"]
    assert float(since) == start["time"]
    assert event_key(start) == event_key(replayed)
    assert len(start_keys) == expected["start_event_processed_times"]
    assert event_key(during_gap) not in start_keys
