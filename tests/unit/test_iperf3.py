"""The iperf3 reader on the shared fault cases and on damaged output, and the
rotation that picks which pairs a bandwidth batch tests."""

from __future__ import annotations

import json

import pytest

from netwatch.bandwidth import candidates, next_batch
from netwatch.pairs import plan_pairs
from netwatch.probes.iperf3 import (
    FailureKind,
    classify_error,
    client_argv,
    parse_client_output,
    server_argv,
)
from tests.conftest import load_cases
from tests.factories import attachment, container

CASES = load_cases()

GOOD = {
    "start": {"connected": [{"socket": 5}], "version": "iperf 3.12"},
    "intervals": [],
    "end": {
        "sum_sent": {"bytes": 250_000_000, "bits_per_second": 1.0e9, "retransmits": 7},
        "sum_received": {"bytes": 249_000_000, "bits_per_second": 9.9e8},
    },
}


def _received(figure: object) -> str:
    return json.dumps({"end": {"sum_received": {"bits_per_second": figure}}})


def _variants(case_id: str) -> list[dict]:
    given = CASES[case_id]["input"]
    return given.get("variants", [given])


@pytest.mark.parametrize("variant", _variants("NW-011-iperf3-server-busy"))
def test_case_nw011_a_busy_server_is_reached_but_not_measured(variant):
    """NW-011: 'busy' means the control connection worked: reached, no
    figure, worth retrying later; never unreachable, never a loss."""
    reading = parse_client_output(
        variant["stdout"], variant["stderr"], variant["exit_code"]
    )

    assert reading.failure is FailureKind.SERVER_BUSY
    assert reading.reached is True
    assert reading.bits_per_second is None


def test_case_nw012_an_error_key_wins_over_exit_code_zero():
    """NW-012: iperf3 3.11/3.12 exit 0 with an `error` key."""
    given = CASES["NW-012-iperf3-json-error-exit-zero"]["input"]

    reading = parse_client_output(given["stdout"], given["stderr"], given["exit_code"])

    assert given["exit_code"] == 0
    assert reading.failure is FailureKind.CONNECTION_REFUSED
    assert reading.bits_per_second is None
    assert reading.reached is False


def test_a_good_run_gives_the_receivers_throughput_and_retransmits():
    reading = parse_client_output(json.dumps(GOOD), "", 0)

    assert reading.failure is None
    assert reading.bits_per_second == 9.9e8
    assert reading.retransmits == 7


def test_text_after_the_json_is_ignored():
    stdout = (
        json.dumps(GOOD, indent=1) + "\niperf3: interrupt - the client has terminated\n"
    )

    assert parse_client_output(stdout, "", 0).bits_per_second == 9.9e8


def test_json_stream_end_event_is_read():
    stdout = "\n".join(
        [
            json.dumps({"event": "start", "data": GOOD["start"]}),
            json.dumps({"event": "interval", "data": {}}),
            json.dumps({"event": "end", "data": {"end": GOOD["end"]}}),
        ]
    )

    assert parse_client_output(stdout, "", 0).bits_per_second == 9.9e8


@pytest.mark.parametrize(
    ("message", "kind", "reached"),
    [
        # 3.14 and later wrap the errno text in a longer sentence.
        (
            "unable to connect to server - server may have stopped running or "
            "use a different port, firewall issue, etc.: Connection refused",
            FailureKind.CONNECTION_REFUSED,
            False,
        ),
        ("unable to connect to server: No route to host", FailureKind.NO_ROUTE, False),
        (
            "unable to connect to server: Connection timed out",
            FailureKind.TIMEOUT,
            False,
        ),
        (
            "unable to start listener for connections: Address already in use",
            FailureKind.PORT_IN_USE,
            False,
        ),
        ("control socket has closed unexpectedly", FailureKind.TOOL_FAILED, True),
        # An iperf3 too old for an option: not the network.
        (
            "iperf3: unrecognized option '--connect-timeout'",
            FailureKind.TOOL_FAILED,
            False,
        ),
        (
            "unable to receive results: Connection timed out",
            FailureKind.TOOL_FAILED,
            True,
        ),
    ],
)
def test_error_wording_is_classified(message, kind, reached):
    assert classify_error(message) == (kind, reached)


@pytest.mark.parametrize(
    ("stdout", "stderr", "code", "kind"),
    [
        ("", "sh: 1: iperf3: not found", 127, FailureKind.TOOL_MISSING),
        ("", "", 0, FailureKind.PARSE_ERROR),
        ("{not json", "", 1, FailureKind.TOOL_FAILED),
        (_received("fast"), "", 0, FailureKind.PARSE_ERROR),
        (_received(-5), "", 0, FailureKind.PARSE_ERROR),
        (_received(True), "", 0, FailureKind.PARSE_ERROR),
        ("[1, 2, 3]", "", 0, FailureKind.TOOL_FAILED),
        ('{"end": []}', "", 0, FailureKind.PARSE_ERROR),
        ("\x1b[2J" * 1000, "", 1, FailureKind.TOOL_FAILED),
    ],
    ids=["missing", "silent", "broken-json", "string-figure", "negative", "bool",
         "array", "end-not-object", "escapes"],
)  # fmt: skip
def test_damaged_output_is_not_measured_and_never_raises(stdout, stderr, code, kind):
    reading = parse_client_output(stdout, stderr, code)

    assert reading.failure is kind
    assert reading.bits_per_second is None
    assert "\x1b" not in reading.detail


@pytest.mark.parametrize(
    "stdout",
    [
        '{"end": {"sum_received": {"bits_per_second": 1' + "0" * 400 + "}}}",
        '{"end": {"sum_sent": {"retransmits": 1'
        + "0" * 400
        + '}, "sum_received": {}}}',
        '{"a": ' + "[" * 200_000,
        '{"error": {"x": "timed out"}}',
    ],
    ids=["huge-figure", "huge-retransmits", "deep-nesting", "error-not-text"],
)
def test_absurd_json_is_a_parse_error_not_a_crash(stdout):
    reading = parse_client_output(stdout, "", 0)

    assert reading.bits_per_second is None
    assert reading.failure in (FailureKind.PARSE_ERROR, FailureKind.TOOL_FAILED)


def test_a_client_the_watchdog_ended_says_so():
    reading = parse_client_output("", "", 143)

    assert reading.failure is FailureKind.TOOL_FAILED
    assert "watchdog" in reading.detail


def test_the_server_is_a_one_off_with_an_idle_timeout():
    argv = server_argv(5201, 14)

    assert argv[:3] == ["iperf3", "-s", "-1"]
    assert "--idle-timeout" in argv
    assert client_argv("10.0.0.2", 5201, 2.5)[-4:-2] == ["-t", "3"]


def _pairs(count: int):
    net = [attachment("net", f"10.0.0.{i + 2}") for i in range(count)]
    containers = [container(f"c{i}", net[i]) for i in range(count)]
    return candidates(plan_pairs(containers, max_ports=8))


def test_batches_rotate_through_every_pair():
    pairs = _pairs(4)  # 12 ordered pairs
    seen = set()
    cursor = 0
    for _ in range(12):
        batch, cursor = next_batch(pairs, cursor, 2)
        assert batch
        seen.update((p.src, p.dst) for p in batch)

    assert seen == {(p.src, p.dst) for p in pairs}


def test_a_batch_tests_each_container_once():
    pairs = _pairs(5)

    batch, _ = next_batch(pairs, 0, 10)

    ends = [end for pair in batch for end in (pair.src, pair.dst)]
    assert len(ends) == len(set(ends))


def test_isolated_pairs_are_not_bandwidth_candidates():
    a = container("a", attachment("one", "10.0.0.2"))
    b = container("b", attachment("two", "10.1.0.2"))

    assert candidates(plan_pairs([a, b], max_ports=8)) == []
    assert next_batch([], 5, 2) == ([], 0)
