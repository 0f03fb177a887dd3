"""The probe runner's framing and the toolbox check, parsed."""

from __future__ import annotations

import os

from netwatch.probes.ping import PingVariant
from netwatch.probes.script import (
    Job,
    parse_runner_output,
    parse_toolbox,
    runner_argv,
)
from netwatch.probes.tcp import NcVariant

NONCE = "0123abcd0123abcd"


def record(job_id: str, stdout: str, code: int, stderr: str, t0="-", t1="-") -> bytes:
    """One record as runner.sh prints it."""
    body = f"{stdout}\x1f{code}\x1f{stderr}\x1f{len(stderr.encode())}".encode()
    head = f"\n@@nw-{NONCE} {job_id} {len(body)} {t0} {t1}\n".encode()
    return head + body + f"\n@@end-{NONCE} {job_id}\n".encode()


DONE = f"\n@@done-{NONCE}\n".encode()


def test_values_travel_as_positional_parameters_never_as_script_text():
    """Hostile values land after the fixed script, one argv word each."""
    hostile = "$(touch /tmp/owned); `id` \"'\n"

    argv = runner_argv(
        [Job("j0", ("ping", hostile))], watchdog_s=3, clock=False, nonce=NONCE
    )

    assert argv[:2] == ["sh", "-c"]
    assert hostile not in argv[2]
    assert argv[3:] == [
        f"netwatch-{os.getpid()}",
        "3",
        "none",
        NONCE,
        "j0",
        "2",
        "ping",
        hostile,
    ]


def test_records_are_split_into_stdout_exit_code_and_stderr():
    """Each framed record gives the tool's own stdout, exit code and stderr."""
    stdout = record("j0", "PING ...\n", 1, "ping: oops", "1000000000", "1002500000")
    stdout += record("j1", "", 0, "Connection succeeded")
    stdout += DONE

    output = parse_runner_output(stdout, b"", NONCE)

    assert output.finished
    assert not output.watchdog_fired
    assert output.records["j0"].stdout == "PING ...\n"
    assert output.records["j0"].exit_code == 1
    assert output.records["j0"].stderr == "ping: oops"
    assert output.records["j0"].elapsed_s == 0.0025
    assert output.records["j1"].elapsed_s is None


def test_separator_bytes_in_tool_output_cannot_forge_the_exit_code():
    """A tool printing the field separator and digits still gets its own exit
    code: the fields are read from the end."""
    stdout = record("j0", "junk\x1f0\x1fmore", 1, "Connection \x1f0\x1f refused")

    output = parse_runner_output(stdout, b"", NONCE)

    assert output.records["j0"].exit_code == 1
    assert output.records["j0"].stdout == "junk\x1f0\x1fmore"
    assert output.records["j0"].stderr == "Connection \x1f0\x1f refused"


def test_a_record_forged_by_another_job_damages_both_claims():
    """A job printing a whole record for another job id (same nonce) makes
    that id's result damaged, never the forged value."""
    forged = record("j1", "", 0, "connected").decode()
    stdout = record("j0", forged, 0, "") + record("j1", "", 1, "Connection refused")

    output = parse_runner_output(stdout, b"", NONCE)

    assert "j1" not in output.records
    assert "two records" in output.damaged["j1"]


def test_records_with_another_nonce_are_not_read():
    """Markers without this run's nonce are just text."""
    stdout = record("j0", "", 0, "").replace(NONCE.encode(), b"ffffffffffffffff")

    output = parse_runner_output(stdout, b"", NONCE)

    assert output.records == {}


def test_a_record_with_a_wrong_length_is_damaged_not_half_read():
    """A record whose body does not match its announced length is refused."""
    good = record("j0", "abc", 0, "")
    broken = good.replace(
        f"@@nw-{NONCE} j0 8 ".encode(), f"@@nw-{NONCE} j0 9 ".encode()
    )
    assert broken != good

    output = parse_runner_output(broken, b"", NONCE)

    assert "j0" not in output.records
    assert "announced 9" in output.damaged["j0"]


def test_interleaved_garbage_damages_only_the_record_it_hit():
    """Text from elsewhere inside one record leaves the other records whole."""
    first = record("j0", "abc", 0, "")
    second = record("j1", "def", 0, "")
    body_at = first.index(b"\n", 1) + 1
    spoiled = first[:body_at] + b"GARBAGE" + first[body_at:]

    output = parse_runner_output(spoiled + second, b"", NONCE)

    assert "j0" in output.damaged
    assert output.records["j1"].stdout == "def"


def test_huge_numbers_in_a_header_are_not_a_record():
    """A header with a 5000-digit length is text, not a crash; a clock too
    long to be one gives no elapsed time."""
    stdout = f"\n@@nw-{NONCE} j0 {'9' * 5000} - -\nx\n@@end-{NONCE} j0\n".encode()
    stdout += record("j1", "", 0, "", "1" * 40, "2" * 40)

    output = parse_runner_output(stdout, b"", NONCE)

    assert "j0" not in output.records
    assert output.records["j1"].elapsed_s is None


def test_watchdog_and_unfinished_runs_are_noticed():
    """The watchdog's mark on stderr, and a missing done mark, are reported."""
    stderr = f"\n@@watchdog-{NONCE}\n".encode()

    output = parse_runner_output(record("j0", "", 0, ""), stderr, NONCE)

    assert output.watchdog_fired
    assert not output.finished


def test_toolbox_of_a_full_image():
    """iputils ping, OpenBSD nc, a nanosecond date and sleep are all found."""
    stdout = (
        "\n@@have ping\n\n@@have nc\n\n@@have date\n\n@@have sleep\n"
        "\n@@section ping\nping from iputils 20221126\n"
        "\n@@section nc\nOpenBSD netcat (Debian patchlevel 1.219-1)\nusage: nc [-46z]\n"
        "\n@@section date\n1796312069123456789\n"
        "\n@@section end\n"
    )

    toolbox = parse_toolbox(stdout)

    assert toolbox is not None
    assert (toolbox.ping, toolbox.nc, toolbox.clock, toolbox.sleep) == (
        PingVariant.IPUTILS,
        NcVariant.OPENBSD,
        True,
        True,
    )


def test_toolbox_of_busybox_without_nanoseconds():
    """BusyBox's date prints %N literally: no clock; its ping and nc are known."""
    stdout = (
        "\n@@have ping\n\n@@have nc\n\n@@have date\n\n@@have sleep\n"
        "\n@@section ping\nping: invalid option -- 'V'\n"
        "BusyBox v1.35.0 multi-call binary.\n"
        "\n@@section nc\nnc: invalid option -- 'h'\nBusyBox v1.35.0\n"
        "Usage: nc [-iN] [-wN] [-l] [-p PORT] [-f FILE|IPADDR PORT] [-e PROG]\n"
        "\n@@section date\n1796312069%N\n"
        "\n@@section end\n"
    )

    toolbox = parse_toolbox(stdout)

    assert toolbox is not None
    assert (toolbox.ping, toolbox.nc, toolbox.clock) == (
        PingVariant.BUSYBOX,
        NcVariant.BUSYBOX,
        False,
    )


def test_toolbox_without_tools_and_cut_short():
    """A shell with no tools has none; output cut before its end is no answer."""
    assert parse_toolbox("\n@@section end\n").ping is None  # type: ignore[union-attr]
    assert parse_toolbox("\n@@have ping\n") is None
