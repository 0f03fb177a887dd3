"""Reading containers and networks from engine JSON, labels, and who is watched."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from netwatch.containers import (
    NetworkInfo,
    NetworkMode,
    container_from_inspect,
    monitoring_decision,
    network_from_list_entry,
    parse_bool_label,
    parse_ports_label,
)

WEB_ID = "3f4e8a1c2b7d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7a8b9"
DB_ID = "9a8b7c6d5e4f30211f2e3d4c5b6a79881a2b3c4d5e6f708192a3b4c5d6e7f809"
FRONTEND_ID = "b1c2d3e4f5a60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"

NETWORKS = {
    FRONTEND_ID: NetworkInfo(
        id=FRONTEND_ID,
        name="lab_frontend",
        driver="bridge",
        internal=False,
        scope="local",
    ),
}


def endpoint(ip: str = "", ipv6: str = "", network_id: str = "", **extra: Any) -> dict:
    """An EndpointSettings object as API 1.41 prints it (plus DNSNames)."""
    return {
        "IPAMConfig": None,
        "Links": None,
        "Aliases": extra.get("aliases"),
        "NetworkID": network_id,
        "EndpointID": "5c1e6d0f2a9b" * 5 + "abcd" if ip or ipv6 else "",
        "Gateway": "172.20.0.1" if ip else "",
        "IPAddress": ip,
        "IPPrefixLen": 16 if ip else 0,
        "IPv6Gateway": "",
        "GlobalIPv6Address": ipv6,
        "GlobalIPv6PrefixLen": 64 if ipv6 else 0,
        "MacAddress": "02:42:ac:14:00:02" if ip else "",
        "DriverOpts": None,
        "DNSNames": extra.get("dns_names"),
    }


def inspect_json() -> dict[str, Any]:
    """GET /containers/{id}/json of a Compose web container on a user network."""
    return {
        "Id": WEB_ID,
        "Created": "2024-05-01T10:00:00.123456789Z",
        "Path": "/docker-entrypoint.sh",
        "Args": ["nginx", "-g", "daemon off;"],
        "State": {
            "Status": "running",
            "Running": True,
            "Paused": False,
            "Restarting": False,
            "OOMKilled": False,
            "Dead": False,
            "Pid": 4242,
            "ExitCode": 0,
            "Error": "",
            "StartedAt": "2024-05-01T10:00:01.5Z",
            "FinishedAt": "0001-01-01T00:00:00Z",
            "Health": {"Status": "healthy", "FailingStreak": 0, "Log": []},
        },
        "Image": "sha256:" + "e" * 64,
        "Name": "/lab-web-1",
        "RestartCount": 0,
        "HostConfig": {"NetworkMode": "lab_frontend", "IpcMode": "private"},
        "Config": {
            "Hostname": WEB_ID[:12],
            "Image": "nginx:1.25-alpine",
            "ExposedPorts": {"80/tcp": {}, "53/udp": {}, "8080/tcp": {}},
            "Labels": {
                "com.docker.compose.project": "lab",
                "com.docker.compose.service": "web",
                "maintainer": "NGINX Docker Maintainers",
            },
        },
        "NetworkSettings": {
            "Bridge": "",
            "SandboxID": "7" * 64,
            "Ports": {"80/tcp": None, "8080/tcp": None},
            "Networks": {
                "lab_frontend": endpoint(
                    "172.20.0.2",
                    network_id=FRONTEND_ID,
                    aliases=["lab-web-1", "web"],
                    dns_names=["lab-web-1", "web", WEB_ID[:12]],
                )
            },
        },
    }


def with_labels(**labels: str) -> dict[str, Any]:
    data = inspect_json()
    data["Config"]["Labels"].update(labels)
    return data


def test_user_network_container_is_read_in_full():
    """Id, name without '/', image, state and the attachment are all read."""
    data = inspect_json()

    info = container_from_inspect(data, NETWORKS)

    assert info.id == WEB_ID
    assert info.short_id == WEB_ID[:12]
    assert info.name == "lab-web-1"
    assert info.image == "nginx:1.25-alpine"
    assert info.network_mode is NetworkMode.USER_DEFINED
    assert info.network_mode_target is None
    assert info.paused is False
    assert info.pid == 4242
    assert info.health == "healthy"
    assert info.started_at == "2024-05-01T10:00:01.5Z"
    assert (info.compose_project, info.compose_service) == ("lab", "web")
    assert info.addresses == ("172.20.0.2",)
    assert info.label_problems == ()


def test_attachment_takes_driver_from_the_network_list_and_merges_names():
    """The attachment knows its driver, and aliases and DNS names appear once."""
    data = inspect_json()

    (attachment,) = container_from_inspect(data, NETWORKS).networks

    assert attachment.network == "lab_frontend"
    assert attachment.network_id == FRONTEND_ID
    assert attachment.driver == "bridge"
    assert attachment.icc is True
    assert attachment.aliases == ("lab-web-1", "web", WEB_ID[:12])


def test_attachment_on_an_unlisted_network_has_no_driver():
    """A network missing from the list gives driver None, not a guess."""
    data = inspect_json()

    (attachment,) = container_from_inspect(data, {}).networks

    assert attachment.driver is None
    assert attachment.internal is False


def test_exposed_udp_ports_are_not_probed():
    """Only exposed TCP ports become probe ports; 53/udp is skipped."""
    data = inspect_json()

    info = container_from_inspect(data, NETWORKS)

    assert info.exposed_tcp_ports == (80, 8080)
    assert info.probe_ports == (80, 8080)


def test_ports_label_replaces_exposed_ports():
    """netwatch.ports, when set, decides which ports are probed."""
    data = with_labels(**{"netwatch.ports": "5432/tcp, 80"})

    info = container_from_inspect(data, NETWORKS)

    assert info.exposed_tcp_ports == (80, 8080)
    assert info.probe_ports == (5432, 80)


def test_bad_label_values_are_reported_as_problems():
    """Unreadable netwatch labels are recorded as problems, not raised."""
    data = with_labels(**{"netwatch.ports": "80,http", "netwatch.enable": "maybe"})

    info = container_from_inspect(data, NETWORKS)

    assert info.probe_ports == (80,)
    assert info.label_problems == (
        "netwatch.ports: 'http' is not a port number",
        "netwatch.enable: 'maybe' is not true or false",
    )


@pytest.mark.parametrize(
    ("raw", "mode", "target"),
    [
        ("default", NetworkMode.DEFAULT_BRIDGE, None),
        ("bridge", NetworkMode.DEFAULT_BRIDGE, None),
        ("host", NetworkMode.HOST, None),
        ("none", NetworkMode.NONE, None),
        (f"container:{DB_ID}", NetworkMode.CONTAINER, DB_ID),
        ("mynet", NetworkMode.USER_DEFINED, None),
    ],
)
def test_network_mode_is_read_from_host_config(raw, mode, target):
    """Each --network shape maps to its NetworkMode, with X for container:X."""
    data = inspect_json()
    data["HostConfig"]["NetworkMode"] = raw

    info = container_from_inspect(data, NETWORKS)

    assert info.network_mode is mode
    assert info.network_mode_target == target


@pytest.mark.parametrize(("mode", "network"), [("host", "host"), ("none", "none")])
def test_pseudo_networks_without_address_are_left_out(mode, network):
    """The host and none pseudo-networks carry no address and are dropped."""
    data = inspect_json()
    data["HostConfig"]["NetworkMode"] = mode
    data["NetworkSettings"]["Networks"] = {network: endpoint(network_id="f" * 64)}

    info = container_from_inspect(data, NETWORKS)

    assert info.networks == ()
    assert info.addresses == ()


def test_container_mode_guest_has_no_networks_of_its_own():
    """A container:X guest reports an empty Networks map and gets no attachment."""
    data = inspect_json()
    data["HostConfig"]["NetworkMode"] = f"container:{DB_ID}"
    data["NetworkSettings"]["Networks"] = {}

    info = container_from_inspect(data, NETWORKS)

    assert info.networks == ()


def test_ipv6_only_attachment_is_addressed_by_ipv6():
    """With no IPv4, the global IPv6 address is the one probed."""
    data = inspect_json()
    data["NetworkSettings"]["Networks"] = {
        "v6net": endpoint(ipv6="fd00:0:0:0::2", network_id="a" * 64)
    }

    (attachment,) = container_from_inspect(data, NETWORKS).networks

    assert attachment.ipv4 is None
    assert attachment.address == "fd00::2"


def test_dual_stack_attachment_prefers_ipv4():
    """With both families, IPv4 is probed and IPv6 kept."""
    data = inspect_json()
    data["NetworkSettings"]["Networks"]["lab_frontend"]["GlobalIPv6Address"] = "fd00::2"

    (attachment,) = container_from_inspect(data, NETWORKS).networks

    assert attachment.address == "172.20.0.2"
    assert attachment.ipv6 == "fd00::2"


def test_malformed_address_is_not_an_address():
    """A value that is not an IP address is ignored rather than probed."""
    data = inspect_json()
    data["NetworkSettings"]["Networks"]["lab_frontend"]["IPAddress"] = "$(reboot)"

    info = container_from_inspect(data, NETWORKS)

    assert info.networks == ()


def test_paused_container_without_healthcheck():
    """State.Paused is read, and a missing Health block means no health."""
    data = inspect_json()
    data["State"]["Paused"] = True
    del data["State"]["Health"]

    info = container_from_inspect(data, NETWORKS)

    assert info.paused is True
    assert info.health is None


def test_sparse_inspect_gives_empty_defaults():
    """Missing or null sections give empty values instead of an error."""
    data = {"Id": DB_ID, "Name": "/db", "Config": None, "NetworkSettings": None}

    info = container_from_inspect(data, {})

    assert (info.id, info.name, info.image) == (DB_ID, "db", "")
    assert info.network_mode is NetworkMode.DEFAULT_BRIDGE
    assert info.networks == ()
    assert info.probe_ports == ()
    assert (info.paused, info.pid, info.health) == (False, 0, None)


def test_labels_are_frozen_copies():
    """Changing the inspect dict afterwards does not change the ContainerInfo."""
    data = inspect_json()
    info = container_from_inspect(data, NETWORKS)

    data["Config"]["Labels"]["com.docker.compose.service"] = "changed"

    assert info.compose_service == "web"
    with pytest.raises(TypeError):
        info.labels["x"] = "y"  # type: ignore[index]


HOSTILE = [
    pytest.param("we\"b's", id="quotes"),
    pytest.param("line one\nline two\r\n", id="newlines"),
    pytest.param("$(rm -rf /) `id` ${HOME}", id="shell"),
    pytest.param("ünïcødé-容器-✓\u202e", id="non-ascii"),
    pytest.param("x" * 10_000, id="10k-chars"),
    pytest.param("\\\x00\x1b[31m", id="control-chars"),
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_names_and_labels_are_kept_verbatim(value):
    """Odd names, labels, aliases and network names are read as plain text."""
    data = inspect_json()
    data["Name"] = "/" + value
    data["Config"]["Labels"][value] = value
    data["Config"]["Labels"]["com.docker.compose.service"] = value
    data["NetworkSettings"]["Networks"] = {
        value: endpoint("172.20.0.2", network_id=value, aliases=[value])
    }

    info = container_from_inspect(data, NETWORKS)

    assert info.name == value
    assert info.labels[value] == value
    assert info.compose_service == value
    assert info.networks[0].network == value
    assert info.networks[0].aliases == (value,)


HOSTILE_LABEL_VALUES = [
    *HOSTILE,
    pytest.param(
        "9" * 10_000,
        id="10k-digits",
    ),
    pytest.param(
        "²",
        id="superscript-digit",
    ),
]


@pytest.mark.parametrize("value", HOSTILE_LABEL_VALUES)
def test_hostile_netwatch_label_values_become_problems(value):
    """Any netwatch.ports or netwatch.enable value yields problems, never a crash."""
    data = with_labels(**{"netwatch.ports": value, "netwatch.enable": value})

    info = container_from_inspect(data, NETWORKS)

    assert info.probe_ports == ()
    assert len(info.label_problems) >= 2
    assert all("\n" not in problem for problem in info.label_problems)


def test_ports_label_reports_each_bad_entry():
    """Good ports are kept in order; words, out-of-range and UDP entries are
    reported one by one."""
    ports, problems = parse_ports_label("80,abc,70000,53/udp, 443")

    assert ports == (80, 443)
    assert problems == (
        "netwatch.ports: 'abc' is not a port number",
        "netwatch.ports: '70000' is not a port number",
        "netwatch.ports: '53/udp' is not a TCP port",
    )


@pytest.mark.parametrize(
    ("value", "ports"),
    [
        ("80", (80,)),
        ("80,443", (80, 443)),
        ("80 443", (80, 443)),
        ("5432/tcp", (5432,)),
        ("5432/TCP", (5432,)),
        ("1,65535", (1, 65535)),
        ("80,80,80/tcp", (80,)),
        ("", ()),
        (" , ,", ()),
    ],
)
def test_ports_label_accepts_tcp_port_lists(value, ports):
    """Commas, spaces and /tcp suffixes are accepted; repeats appear once."""
    assert parse_ports_label(value) == (ports, ())


@pytest.mark.parametrize(
    "value",
    [
        "0",
        "65536",
        "-1",
        "+80",
        "8o",
        "80-90",
        "/tcp",
        "80/sctp",
        pytest.param(
            "٨٠",
            id="arabic-indic-digits",
        ),
    ],
)
def test_ports_label_rejects_what_is_not_a_tcp_port(value):
    """Anything but an ASCII number from 1 to 65535 (TCP) is a problem."""
    ports, problems = parse_ports_label(value)

    assert ports == ()
    assert len(problems) == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        (" yes ", True),
        ("on", True),
        ("1", True),
        ("false", False),
        ("No", False),
        ("off", False),
        ("0", False),
        ("", None),
        ("maybe", None),
        ("truee", None),
        (None, None),
    ],
)
def test_bool_label_words(value, expected):
    """Yes/no words in any case are read; anything else is None."""
    assert parse_bool_label(value) is expected


def test_network_list_entry_with_icc_disabled():
    """A bridge made with enable_icc=false is read as keeping members apart."""
    entry = {
        "Name": "locked",
        "Id": FRONTEND_ID,
        "Created": "2024-05-01T09:59:00Z",
        "Scope": "local",
        "Driver": "bridge",
        "EnableIPv6": False,
        "IPAM": {
            "Driver": "default",
            "Options": {},
            "Config": [{"Subnet": "10.5.0.0/24"}],
        },
        "Internal": True,
        "Attachable": False,
        "Ingress": False,
        "Containers": {},
        "Options": {"com.docker.network.bridge.enable_icc": "false"},
        "Labels": {},
    }

    network = network_from_list_entry(entry)

    assert network == NetworkInfo(
        id=FRONTEND_ID,
        name="locked",
        driver="bridge",
        internal=True,
        scope="local",
        icc=False,
    )


@pytest.mark.parametrize(
    ("options", "icc"),
    [
        ({"com.docker.network.bridge.enable_icc": "true"}, True),
        ({"com.docker.network.bridge.enable_icc": "false"}, False),
        ({}, True),
        (None, True),
    ],
)
def test_icc_defaults_to_on(options, icc):
    """Only an explicit enable_icc=false turns icc off."""
    entry = {"Name": "n", "Id": "1" * 64, "Driver": "bridge", "Options": options}

    assert network_from_list_entry(entry).icc is icc


def test_icc_off_network_reaches_the_attachment():
    """An attachment to an icc-off network carries icc False."""
    networks = {
        FRONTEND_ID: NetworkInfo(
            FRONTEND_ID, "lab_frontend", "bridge", False, "local", icc=False
        )
    }

    (attachment,) = container_from_inspect(inspect_json(), networks).networks

    assert attachment.icc is False


def decide(labels: dict[str, str], **kwargs: Any) -> tuple[bool, str]:
    data = inspect_json()
    data["Config"]["Labels"] = copy.deepcopy(labels)
    info = container_from_inspect(data, NETWORKS)
    options: dict[str, Any] = {"opt_in": False, "self_id": None, "include_self": False}
    options.update(kwargs)
    return monitoring_decision(info, **options)


@pytest.mark.parametrize(
    ("labels", "options", "monitored"),
    [
        ({}, {}, True),
        ({"netwatch.enable": "false"}, {}, False),
        ({"netwatch.enable": "true"}, {}, True),
        ({"netwatch.enable": "maybe"}, {}, True),
        ({}, {"opt_in": True}, False),
        ({"netwatch.enable": "maybe"}, {"opt_in": True}, False),
        ({"netwatch.enable": "yes"}, {"opt_in": True}, True),
        ({"netwatch.enable": "false"}, {"opt_in": True}, False),
        ({}, {"self_id": WEB_ID}, False),
        ({}, {"self_id": WEB_ID, "include_self": True}, True),
        ({}, {"self_id": DB_ID}, True),
        (
            {"netwatch.enable": "false"},
            {"self_id": WEB_ID, "include_self": True},
            False,
        ),
        ({"team": "a"}, {"match_labels": {"team": "a"}}, True),
        ({"team": "b"}, {"match_labels": {"team": "a"}}, False),
        ({}, {"match_labels": {"team": "a"}}, False),
        ({"team": "a"}, {"match_labels": {"team": "a", "env": "prod"}}, False),
    ],
    ids=[
        "default-on",
        "enable-false-excluded",
        "enable-true",
        "unreadable-enable-ignored",
        "opt-in-unlabelled",
        "opt-in-unreadable",
        "opt-in-labelled",
        "opt-in-disabled",
        "self-excluded",
        "self-included",
        "other-self-id",
        "self-included-but-disabled",
        "match-labels-hit",
        "match-labels-other-value",
        "match-labels-missing",
        "match-labels-all-required",
    ],
)
def test_monitoring_decision(labels, options, monitored):
    """Labels, opt-in mode, self exclusion and match_labels decide together."""
    decision, reason = decide(labels, **options)

    assert decision is monitored
    assert (reason == "monitored") is monitored


def test_excluded_container_gets_a_reason_naming_the_cause():
    """The reason says which rule excluded the container."""
    assert decide({}, self_id=WEB_ID)[1] == "netwatch's own container"
    assert decide({"netwatch.enable": "off"})[1] == "labelled netwatch.enable=false"
    assert decide({}, match_labels={"team": "a"})[1] == "not labelled team=a"
