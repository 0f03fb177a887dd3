"""The nc variant detection and the TCP result parser, on real output."""

from __future__ import annotations

import pytest

from netwatch.config import TcpSettings
from netwatch.probes.outcome import Reason
from netwatch.probes.tcp import NcVariant, detect_nc_variant, parse_nc_output, tcp_argv
from tests.conftest import load_cases

CASES = load_cases()


def _text(sample):  # type: ignore[no-untyped-def]
    return sample["stdout"] + sample["stderr"]


@pytest.mark.parametrize(
    ("key", "variant"),
    [
        ("openbsd-nc-help", NcVariant.OPENBSD),
        ("busybox-nc-help", NcVariant.BUSYBOX),
        ("ncat-help", NcVariant.NCAT),
    ],
)
def test_variant_is_detected_from_real_help_text(recorded, key, variant):
    """Each nc's own help text names its variant."""
    assert detect_nc_variant(_text(recorded[key])) is variant


def test_ncat_without_z_falls_back_to_send_only():
    """An Ncat whose help lists no -z is driven with --send-only."""
    help_text = (
        "Ncat 6.40 ( http://nmap.org/ncat )\nUsage: ncat [options]\n  -w, --wait\n"
    )

    assert detect_nc_variant(help_text) is NcVariant.NCAT_SEND_ONLY


def test_unknown_nc_without_z_is_not_guessed():
    """An nc netwatch does not know, offering no -z, is reported, not guessed at."""
    assert detect_nc_variant("netcat 0.1 - usage: nc host port\n") is None


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("openbsd-nc-open", None),
        ("openbsd-nc-refused", Reason.REFUSED),
        ("openbsd-nc-timeout", Reason.TIMEOUT),
        ("openbsd-nc-no-route", Reason.NO_ROUTE),
        ("busybox-nc-open", None),
        ("busybox-nc-refused", Reason.REFUSED),
        ("busybox-nc-timeout", Reason.TIMEOUT),
        ("busybox-nc-z", Reason.TOOL_UNSUPPORTED_OPTION),
        ("ncat-open", None),
        ("ncat-refused", Reason.REFUSED),
        ("ncat-timeout", Reason.TIMEOUT),
    ],
)
def test_real_nc_results_are_classified(recorded, key, reason):
    """Open, refused, timed out, no route and usage errors each read right,
    ncat's OpenSSL noise on stderr included."""
    sample = recorded[key]

    got, detail = parse_nc_output(
        sample["stdout"], sample["stderr"], sample["exit_code"]
    )

    assert got is reason
    assert detail


def test_silent_failure_is_a_parse_error_not_a_closed_port():
    """Exit 1 with no words at all is unexplained: could not measure."""
    reason, detail = parse_nc_output("", "", 1)

    assert reason is Reason.PARSE_ERROR
    assert "exit 1" in detail


def test_case_nw009_ncat_rejecting_z_is_a_usage_error():
    """NW-009: an Ncat that rejects -z is an unsupported option, never a closed port."""
    case = CASES["NW-009-nc-ncat-without-z"]
    sample = case["input"]

    reason, _ = parse_nc_output(sample["stdout"], sample["stderr"], sample["exit_code"])

    assert reason is Reason.TOOL_UNSUPPORTED_OPTION
    assert reason.value == case["expected"]["error_kind"]


@pytest.mark.parametrize(
    ("variant", "argv"),
    [
        (NcVariant.OPENBSD, ["nc", "-n", "-v", "-z", "-w", "2", "10.0.0.2", "80"]),
        (NcVariant.NCAT, ["nc", "-n", "-v", "-z", "-w", "2", "10.0.0.2", "80"]),
        (
            NcVariant.NCAT_SEND_ONLY,
            ["nc", "-n", "-v", "--send-only", "-w", "2", "10.0.0.2", "80"],
        ),
        (NcVariant.BUSYBOX, ["nc", "-w", "2", "10.0.0.2", "80", "-e", "sh", "-c", ":"]),
        (NcVariant.GENERIC_Z, ["nc", "-v", "-z", "-w", "2", "10.0.0.2", "80"]),
    ],
)
def test_argv_per_variant(variant, argv):
    """Each variant gets the connect-only form it understands."""
    assert tcp_argv(variant, TcpSettings(), "10.0.0.2", 80) == argv


@pytest.mark.parametrize(
    "stderr",
    [
        "nc: can't connect to remote host (10.9.0.2): Network unreachable\n",
        "nc: can't connect to remote host (10.9.0.2): Host is unreachable\n",
    ],
    ids=["musl-enetunreach", "musl-ehostunreach"],
)
def test_no_route_in_musls_words_is_unreachable(stderr):
    """BusyBox nc built on musl says it in musl's words."""
    reason, detail = parse_nc_output("", stderr, 1)

    assert reason is Reason.NO_ROUTE
    assert "unreachable" in detail
