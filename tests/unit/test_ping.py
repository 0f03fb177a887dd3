"""The ping parser on recorded real output and on the shared fault cases."""

from __future__ import annotations

from typing import Any

import pytest

from netwatch.config import PingSettings
from netwatch.probes.outcome import Reason
from netwatch.probes.ping import PingVariant, parse_ping_output, ping_argv
from tests.conftest import load_cases

CASES = load_cases()


def parse(sample: dict[str, Any]):  # type: ignore[no-untyped-def]
    return parse_ping_output(sample["stdout"], sample["stderr"], sample["exit_code"])


def test_iputils_replies_are_read_with_mdev_and_samples(recorded):
    """iputils output gives counts, round-trip statistics and each reply's time."""
    result = parse(recorded["iputils-ok"])

    assert result.reason is None
    assert result.variant is PingVariant.IPUTILS
    assert (result.transmitted, result.received, result.loss) == (3, 3, 0.0)
    assert result.rtt_mdev_ms is not None
    assert len(result.rtt_samples_ms) == 3
    assert result.rtt_min_ms <= result.rtt_avg_ms <= result.rtt_max_ms


def test_busybox_replies_are_read_without_mdev(recorded):
    """BusyBox output has no mdev: it is None, not zero and not a failure."""
    result = parse(recorded["busybox-ping-ok"])

    assert result.reason is None
    assert result.variant is PingVariant.BUSYBOX
    assert (result.transmitted, result.received) == (3, 3)
    assert result.rtt_mdev_ms is None
    assert len(result.rtt_samples_ms) == 3


@pytest.mark.parametrize("key", ["iputils-no-reply", "busybox-ping-no-reply"])
def test_silence_is_no_reply_with_full_loss(recorded, key):
    """When every echo is dropped the result is unreachable, with loss 1."""
    result = parse(recorded[key])

    assert result.reason is Reason.NO_REPLY
    assert result.reachable is False
    assert result.loss == 1.0
    assert result.rtt_avg_ms is None


def test_destination_host_unreachable_is_unreachable(recorded):
    """ICMP host-unreachable errors make the result unreachable, not unmeasured."""
    result = parse(recorded["iputils-host-unreachable"])

    assert result.reason is Reason.HOST_UNREACHABLE
    assert result.errors == 6
    assert result.reachable is False


def test_network_unreachable_from_a_none_container_is_unreachable(recorded):
    """A source with no network gets 'Network is unreachable': the network said no."""
    result = parse(recorded["iputils-network-unreachable"])

    assert result.reason is Reason.NO_ROUTE
    assert result.reachable is False
    assert result.transmitted is None


@pytest.mark.parametrize(
    ("stdout", "stderr", "exit_code"),
    [
        ("", "", 0),
        ("hello world\n", "", 0),
        ("PING 10.0.0.2 (10.0.0.2): 56 data bytes\n", "", 1),
        ("3 packets sent, 2 came back\n", "", 0),
        ("\x00\x01\x02garbage", "Segmentation fault", 139),
    ],
    ids=["empty", "unrelated-text", "header-only", "foreign-summary", "binary-garbage"],
)
def test_output_in_any_other_shape_is_a_parse_error(stdout, stderr, exit_code):
    """Unknown output is a parse error that quotes what it saw, never a zero."""
    result = parse_ping_output(stdout, stderr, exit_code)

    assert result.reason is Reason.PARSE_ERROR
    assert result.reachable is None
    assert result.loss is None
    assert f"exit {exit_code}" in result.detail


def test_replies_without_a_round_trip_line_are_a_parse_error():
    """A summary claiming replies but lacking the rtt line is not trusted."""
    stdout = (
        "PING 10.0.0.2 (10.0.0.2) 56(84) bytes of data.\n\n"
        "--- 10.0.0.2 ping statistics ---\n"
        "2 packets transmitted, 2 received, 0% packet loss, time 1001ms\n"
    )

    result = parse_ping_output(stdout, "", 0)

    assert result.reason is Reason.PARSE_ERROR


def test_duplicates_are_counted_and_not_taken_as_samples():
    """iputils marks duplicate replies; they are counted, not sampled twice."""
    stdout = (
        "PING 10.0.0.2 (10.0.0.2) 56(84) bytes of data.\n"
        "64 bytes from 10.0.0.2: icmp_seq=1 ttl=64 time=0.040 ms\n"
        "64 bytes from 10.0.0.2: icmp_seq=1 ttl=64 time=0.050 ms (DUP!)\n\n"
        "--- 10.0.0.2 ping statistics ---\n"
        "1 packets transmitted, 1 received, +1 duplicates, 0% packet loss, time 0ms\n"
        "rtt min/avg/max/mdev = 0.040/0.045/0.050/0.005 ms\n"
    )

    result = parse_ping_output(stdout, "", 0)

    assert result.duplicates == 1
    assert result.rtt_samples_ms == (0.040,)


def test_iputils_argv_sends_exactly_count_echoes():
    """iputils gets numeric output, a count, spacing and a reply timeout, and
    no -w, which would make it keep sending to a silent address."""
    settings = PingSettings(count=3, spacing=0.2, reply_timeout=1, interval=10)

    argv = ping_argv(PingVariant.IPUTILS, settings, "172.18.0.2")

    assert argv == ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", "172.18.0.2"]


def test_busybox_argv_uses_whole_seconds_and_ipv6_flag():
    """BusyBox takes integer timeouts; IPv6 addresses get -6."""
    settings = PingSettings(count=2, spacing=0.5, reply_timeout=1.4, interval=10)

    argv = ping_argv(PingVariant.BUSYBOX, settings, "fd00::2")

    assert argv == [
        "ping",
        "-6",
        "-c",
        "2",
        "-i",
        "0.5",
        "-W",
        "1",
        "-w",
        "2",
        "fd00::2",
    ]


# The shared fault cases about ping (../shared/cases, copied to tests/data).


def _variants(case: dict[str, Any]) -> list[dict[str, Any]]:
    return case["input"].get("variants", [case["input"]])


def test_case_nw001_busybox_summary():
    """NW-001: BusyBox's summary and its rtt line without mdev are read."""
    case = CASES["NW-001-ping-busybox-summary"]
    expected = case["expected"]

    result = parse(case["input"])

    assert result.variant == expected["variant"]
    assert result.transmitted == expected["transmitted"]
    assert result.received == expected["received"]
    assert result.loss == expected["loss"]
    assert result.rtt_min_ms == expected["rtt_min_ms"]
    assert result.rtt_avg_ms == expected["rtt_avg_ms"]
    assert result.rtt_max_ms == expected["rtt_max_ms"]
    assert result.rtt_mdev_ms is expected["rtt_mdev_ms"]
    assert result.reachable is expected["reachable"]


@pytest.mark.parametrize("variant", [0, 1], ids=["iputils", "busybox"])
def test_case_nw002_total_loss_has_no_rtt_line(variant):
    """NW-002: full loss prints no rtt line; that is zero replies, not a failure."""
    case = CASES["NW-002-ping-total-loss-no-rtt-line"]
    expected = case["expected"]

    result = parse(_variants(case)[variant])

    assert result.transmitted == expected["transmitted"]
    assert result.received == expected["received"]
    assert result.loss == expected["loss"]
    assert result.rtt_avg_ms is expected["rtt_avg_ms"]
    assert result.reachable is expected["reachable"]
    assert result.reason is not Reason.PARSE_ERROR


@pytest.mark.parametrize("variant", [0, 1], ids=["busybox", "iputils"])
def test_case_nw005_no_cap_net_raw_is_permission_denied(variant):
    """NW-005: a ping that may not open its socket could not measure: no loss."""
    case = CASES["NW-005-ping-no-cap-net-raw"]

    result = parse(_variants(case)[variant])

    assert result.reason is Reason.PERMISSION_DENIED
    assert result.reason.value == case["expected"]["error_kind"]
    assert result.reachable is None
    assert result.loss is None


def test_case_nw006_ipv6_header():
    """NW-006: the IPv6 header shape and colons in addresses parse."""
    case = CASES["NW-006-ping-ipv6-header"]
    expected = case["expected"]

    result = parse(case["input"])

    assert result.family == expected["family"]
    assert result.target == expected["target"]
    assert (result.transmitted, result.received) == (2, 2)
    assert result.loss == expected["loss"]
    assert result.rtt_avg_ms == expected["rtt_avg_ms"]
    assert result.reachable is True


def test_case_nw006_reply_by_name():
    """NW-006 note: replies from a named host ('web2 (10.0.0.2)') are sampled."""
    stdout = (
        "PING web2 (10.0.0.2) 56(84) bytes of data.\n"
        "64 bytes from web2 (10.0.0.2): icmp_seq=1 ttl=64 time=0.031 ms\n\n"
        "--- web2 ping statistics ---\n"
        "1 packets transmitted, 1 received, 0% packet loss, time 0ms\n"
        "rtt min/avg/max/mdev = 0.031/0.031/0.031/0.000 ms\n"
    )

    result = parse_ping_output(stdout, "", 0)

    assert result.target == "10.0.0.2"
    assert result.rtt_samples_ms == (0.031,)


@pytest.mark.parametrize("variant", [0, 1], ids=["busybox", "iputils"])
def test_case_nw008_name_failure_is_not_loss(variant):
    """NW-008: an unresolvable name could not measure, whatever the exit code."""
    case = CASES["NW-008-ping-dns-failure-exit-codes"]

    result = parse(_variants(case)[variant])

    assert result.reason is Reason.DNS_RESOLUTION
    assert result.reason.value == case["expected"]["error_kind"]
    assert result.loss is None
    assert result.reachable is None


@pytest.mark.parametrize(
    "stderr",
    [
        "ping: sendto: Network unreachable\n",
        "ping: sendto: Host is unreachable\n",
        "ping: sendto: Network is unreachable\n",
        "ping: sendmsg: No route to host\n",
    ],
    ids=["musl-enetunreach", "musl-ehostunreach", "glibc-enetunreach", "glibc-ehost"],
)
def test_no_route_in_either_c_librarys_words_is_unreachable(stderr):
    """musl (Alpine, static BusyBox) and glibc word ENETUNREACH and
    EHOSTUNREACH differently; each is no_route, never a parse error, with
    and without BusyBox's statistics."""
    busybox_stats = (
        "PING 10.9.0.2 (10.9.0.2): 56 data bytes\n\n--- 10.9.0.2 ping statistics ---\n"
        "3 packets transmitted, 0 packets received, 100% packet loss\n"
    )
    alone = parse_ping_output("", stderr, 1)
    with_stats = parse_ping_output(busybox_stats, stderr, 1)

    assert alone.reason is Reason.NO_ROUTE
    assert with_stats.reason is Reason.NO_ROUTE
    assert alone.reachable is with_stats.reachable is False


def test_case_nw008_send_error_no_route_is_unreachable():
    """NW-008 note: 'sendmsg: No route to host' is no_route, and unreachable."""
    result = parse_ping_output("", "ping: sendmsg: No route to host\n", 1)

    assert result.reason is Reason.NO_ROUTE
    assert result.reachable is False
