"""load_config: defaults, then the file, then NETWATCH_* variables, then flags,
validated once, with every problem naming its key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from netwatch.config import DEFAULT_PORT, HttpSettings, load_config
from netwatch.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No NETWATCH_* variable of the machine running the tests leaks in."""
    for name in list(os.environ):
        if name.upper().startswith("NETWATCH_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "netwatch.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(**kwargs) -> list[str]:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as caught:
        load_config(**kwargs)
    return caught.value.problems


def test_defaults():
    """With no file, variables or flags, the documented defaults apply."""
    config = load_config()

    assert config.docker.host is None
    assert config.docker.exec_concurrency == 8
    assert config.docker.request_timeout == 10.0
    assert config.discovery.opt_in is False
    assert config.discovery.match_labels == {}
    assert config.probes.ping.interval == 10.0
    assert config.probes.ping.count == 3
    assert config.probes.tcp.max_ports == 8
    assert config.matrix.loss_window == 10
    assert config.http.host_and_port == (None, DEFAULT_PORT)
    assert (config.log.level, config.log.format) == ("info", "auto")


def test_file_overrides_defaults_and_keeps_the_rest(tmp_path):
    """Keys in the file replace defaults; keys it omits keep their defaults."""
    path = write(
        tmp_path,
        "probes:\n"
        "  ping:\n"
        "    count: 5\n"
        "    interval: 20s\n"
        "discovery:\n"
        "  match_labels:\n"
        "    com.docker.compose.project: lab\n",
    )

    config = load_config(path)

    assert config.probes.ping.count == 5
    assert config.probes.ping.interval == 20.0
    assert config.probes.ping.reply_timeout == 1.0
    assert config.probes.tcp.interval == 30.0
    assert config.discovery.match_labels == {"com.docker.compose.project": "lab"}


def test_empty_file_is_the_defaults(tmp_path):
    """An empty file configures nothing and breaks nothing."""
    path = write(tmp_path, "")

    config = load_config(path)

    assert config == load_config()


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    """NETWATCH_* with nested __ names beat the file, key by key."""
    path = write(tmp_path, "probes:\n  ping:\n    count: 5\n    interval: 20s\n")
    monkeypatch.setenv("NETWATCH_PROBES__PING__INTERVAL", "30s")
    monkeypatch.setenv("NETWATCH_DISCOVERY__OPT_IN", "true")

    config = load_config(path)

    assert config.probes.ping.interval == 30.0
    assert config.probes.ping.count == 5
    assert config.discovery.opt_in is True


def test_flags_override_the_environment(tmp_path, monkeypatch):
    """Overrides (command-line flags) beat variables and the file."""
    path = write(tmp_path, "http:\n  listen: ':1111'\n")
    monkeypatch.setenv("NETWATCH_HTTP__LISTEN", ":2222")
    monkeypatch.setenv("NETWATCH_LOG__LEVEL", "debug")

    config = load_config(path, overrides={"http": {"listen": ":3333"}})

    assert config.http.listen == ":3333"
    assert config.log.level == "debug"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("500ms", 0.5),
        ("10s", 10.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1.5", 1.5),
        (" 7 s ", 7.0),
        (7, 7.0),
        (2.5, 2.5),
    ],
)
def test_durations(value, seconds):
    """Durations take ms, s, m or h, or a bare number of seconds."""
    config = load_config(overrides={"docker": {"request_timeout": value}})

    assert config.docker.request_timeout == seconds


def test_durations_from_the_environment(monkeypatch):
    """A duration given as a variable is read like one from the file."""
    monkeypatch.setenv("NETWATCH_DISCOVERY__RESYNC_INTERVAL", "2m")

    config = load_config()

    assert config.discovery.resync_interval == 120.0


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"probes": {"ping": {"count": "many"}}}, "probes.ping.count"),
        ({"probes": {"ping": {"count": 0}}}, "probes.ping.count"),
        ({"probes": {"ping": {"count": 101}}}, "probes.ping.count"),
        ({"probes": {"ping": {"spacing": "100ms"}}}, "probes.ping.spacing"),
        ({"probes": {"jitter": 0.9}}, "probes.jitter"),
        ({"docker": {"exec_concurrency": 0}}, "docker.exec_concurrency"),
        ({"docker": {"request_timeout": "10 parsecs"}}, "docker.request_timeout"),
        ({"docker": {"request_timeout": "-1s"}}, "docker.request_timeout"),
        ({"docker": {"request_timeout": "0s"}}, "docker.request_timeout"),
        ({"docker": {"request_timeout": [1]}}, "docker.request_timeout"),
        ({"matrix": {"degraded_loss_ratio": 0}}, "matrix.degraded_loss_ratio"),
        ({"log": {"level": "loud"}}, "log.level"),
        ({"discovery": {"match_labels": ["a"]}}, "discovery.match_labels"),
        pytest.param(
            {"docker": {"request_timeout": True}},
            "docker.request_timeout",
            id="bool-duration",
        ),
    ],
)
def test_bad_values_name_their_key(overrides, key):
    """A wrong type or out-of-range value is reported under its dotted key."""
    found = problems(overrides=overrides)

    assert len(found) == 1
    assert found[0].startswith(f"{key}: ")


def test_bad_value_quotes_what_it_got():
    """The problem shows the rejected input."""
    found = problems(overrides={"probes": {"ping": {"count": "many"}}})

    assert "'many'" in found[0]


def test_every_faulty_key_is_reported():
    """Several bad keys give one problem each, not just the first."""
    found = problems(
        overrides={"docker": {"exec_concurrency": 0}, "log": {"format": "xml"}}
    )

    assert sorted(p.split(":")[0] for p in found) == [
        "docker.exec_concurrency",
        "log.format",
    ]


def test_bad_file_value_names_its_key(tmp_path):
    """A wrong value in the file is reported by key like any other."""
    path = write(tmp_path, "probes:\n  tcp:\n    max_ports: 1000\n")

    found = problems(path=path)

    assert found[0].startswith("probes.tcp.max_ports: ")


def test_bad_environment_value_names_its_key(monkeypatch):
    """A wrong value in a variable is reported by key like any other."""
    monkeypatch.setenv("NETWATCH_PROBES__PING__COUNT", "abc")

    found = problems()

    assert found[0].startswith("probes.ping.count: ")


@pytest.mark.parametrize(
    ("text", "key", "line"),
    [
        ("probes:\n  tcp:\n    intervall: 5s\n", "probes.tcp.intervall", 3),
        ("htttp:\n  listen: ':1'\n", "htttp", 1),
        ("log:\n  level: info\n  colour: true\n", "log.colour", 3),
    ],
)
def test_unknown_key_in_the_file_is_an_error(tmp_path, text, key, line):
    """A typo in the file is named, with its line, not silently ignored."""
    path = write(tmp_path, text)

    found = problems(path=path)

    assert found == [f"{key}: unknown key ({path}:{line})"]


def test_unknown_netwatch_variable_is_an_error(monkeypatch):
    """A NETWATCH_ variable naming no setting is reported by its name."""
    monkeypatch.setenv("NETWATCH_PROBES__PING__INTERVALL", "5s")
    monkeypatch.setenv("NETWATCH_PROBE__PING__COUNT", "2")

    found = problems()

    assert sorted(p.split(":")[0] for p in found) == [
        "NETWATCH_PROBES__PING__INTERVALL",
        "NETWATCH_PROBE__PING__COUNT",
    ]


def test_other_variables_are_not_checked(monkeypatch):
    """Variables without the NETWATCH_ prefix are none of netwatch's business."""
    monkeypatch.setenv("NETWATCHER_MODE", "x")
    monkeypatch.setenv("DOCKER_HOST", "unix:///var/run/docker.sock")

    config = load_config()

    assert config.docker.host is None


def test_ping_interval_too_short_for_its_run():
    """An interval that a whole ping run cannot fit in is refused with the minimum."""
    found = problems(overrides={"probes": {"ping": {"interval": "3s"}}})

    assert len(found) == 1
    assert found[0].startswith("probes.ping.interval: ")
    assert "3.5s" in found[0]


def test_ping_interval_is_checked_against_the_combined_layers(tmp_path, monkeypatch):
    """The interval from the file is checked against a count from the environment."""
    path = write(tmp_path, "probes:\n  ping:\n    interval: 5s\n")
    monkeypatch.setenv("NETWATCH_PROBES__PING__COUNT", "20")

    found = problems(path=path)

    assert found[0].startswith("probes.ping.interval: ")
    assert "6.5s" in found[0]


def test_tcp_interval_too_short_for_its_connect_timeout():
    """A TCP interval not beyond the connect timeout plus overhead is refused."""
    found = problems(
        overrides={"probes": {"tcp": {"connect_timeout": "2s", "interval": "3s"}}}
    )

    assert found[0].startswith("probes.tcp.interval: ")


def test_ping_interval_just_above_the_minimum_is_accepted():
    """An interval just above the minimum is accepted."""
    config = load_config(overrides={"probes": {"ping": {"interval": "3.6s"}}})

    assert config.probes.ping.interval == 3.6


def test_invalid_yaml_names_file_and_line(tmp_path):
    """A YAML syntax error is reported as file:line."""
    path = write(tmp_path, "probes:\n  ping:\n    count: [3\n  tcp: {}\n")

    found = problems(path=path)

    assert len(found) == 1
    assert found[0].startswith(f"{path}:4: not valid YAML")


def test_top_level_list_is_refused(tmp_path):
    """A file whose top level is not a mapping is refused, naming the file."""
    path = write(tmp_path, "- probes\n- http\n")

    found = problems(path=path)

    assert found == [f"{path}:1: the top level must be a mapping of sections, not list"]


def test_missing_file_is_reported(tmp_path):
    """A file that cannot be read is an error naming the file."""
    path = tmp_path / "absent.yaml"

    found = problems(path=path)

    assert found[0].startswith(f"{path}: cannot read")


@pytest.mark.parametrize(
    ("listen", "host_and_port"),
    [
        (":10980", (None, 10980)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("[::1]:9", ("::1", 9)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
        ("localhost:8080", ("localhost", 8080)),
    ],
)
def test_listen_address_is_split(listen, host_and_port):
    """http.listen takes :port, host:port and [v6]:port."""
    config = load_config(overrides={"http": {"listen": listen}})

    assert config.http.host_and_port == host_and_port


@pytest.mark.parametrize(
    "listen",
    [
        "10980",
        "",
        "localhost:",
        "localhost:http",
        ":65536",
        ":-1",
        ":80 ",
        ":²",
        pytest.param(
            ":٣",
            id="arabic-indic-digit",
        ),
    ],
)
def test_bad_listen_address_names_the_key(listen):
    """A listen value that is not host:port is refused under http.listen."""
    found = problems(overrides={"http": {"listen": listen}})

    assert found[0].startswith("http.listen: ")


def test_listen_setting_validates_on_its_own():
    """HttpSettings refuses a bad address even when built directly."""
    with pytest.raises(ValueError, match="not host:port"):
        HttpSettings(listen="nowhere")


def test_config_is_frozen():
    """A loaded configuration cannot be changed afterwards."""
    config = load_config()

    with pytest.raises(ValueError, match="frozen"):
        config.probes.ping.count = 9  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("probes:\n  ping:\n    reply_timeout: .inf\n", "probes.ping.reply_timeout"),
        ("probes:\n  ping:\n    interval: .inf\n", "probes.ping.interval"),
        ("probes:\n  ping:\n    count: true\n", "probes.ping.count"),
        ("probes:\n  ping:\n    count: 50\n", "probes.ping.interval"),
        ("probes:\n  tcp:\n    connect_timeout: 40s\n", "probes.tcp.interval"),
        ("1: 2\n", "keys must be words"),
        ("docker: 5\n", "docker: must be a mapping"),
        ("docker:\n  host: ssh://me@127.0.0.1\n", "docker.host"),
        ("docker:\n  host: garbage\n", "docker.host"),
        ("docker:\n  host: 'tcp://[::1'\n", "docker.host: not a URL"),
        ("docker:\n  host: tcp://127.0.0.1:99999\n", "docker.host: not a URL"),
        ("docker:\n  host: tcp://127.0.0.1:abc\n", "docker.host: not a URL"),
        ("docker:\n  host: 'http://[zz]:1'\n", "docker.host: not a URL"),
        ("docker:\n  host: tcp://:2375\n", "docker.host: no host"),
        ("docker:\n  host: unix:///\n", "docker.host: no socket path"),
    ],
    ids=[
        "inf-timeout",
        "inf-interval",
        "bool-count",
        "count-vs-default-interval",
        "timeout-vs-default-interval",
        "number-key",
        "scalar-section",
        "ssh-host",
        "schemeless-host",
        "unclosed-ipv6",
        "port-out-of-range",
        "port-not-a-number",
        "bad-ipv6",
        "no-host",
        "no-socket-path",
    ],
)
def test_values_that_once_slipped_through_are_errors(tmp_path, text, expected):
    """Infinite durations, booleans as counts, checks against default
    intervals, non-word keys, scalar sections and engine addresses netwatch
    cannot use are all reported, never a traceback."""
    path = write(tmp_path, text)

    found = problems(path=path)

    assert any(expected in problem for problem in found), found


def test_a_flag_cannot_hide_a_broken_section(tmp_path):
    """`docker: 5` in the file is an error even when --docker-host is given."""
    path = write(tmp_path, "docker: 5\n")

    with pytest.raises(ConfigError) as raised:
        load_config(path, {"docker": {"host": "unix:///var/run/docker.sock"}})

    assert raised.value.problems == [f"{path}:1: docker: must be a mapping of settings"]


def test_a_file_that_is_not_utf8_is_a_clear_error(tmp_path):
    """Binary garbage as the config file is refused, naming the file."""
    path = tmp_path / "netwatch.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage\x80")

    found = problems(path=path)

    assert found[0].startswith(f"{path}: cannot read")


@pytest.mark.parametrize(
    "address",
    ["unix:///var/run/docker.sock", "tcp://127.0.0.1:2375", "https://[::1]:2376"],
)
def test_usable_engine_addresses_pass(tmp_path, address):
    config = load_config(path=write(tmp_path, f"docker:\n  host: '{address}'\n"))

    assert config.docker.host == address
