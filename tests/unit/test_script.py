"""The probe runner's framing and the toolbox check, parsed."""

from __future__ import annotations

from netwatch.probes.ping import PingVariant
from netwatch.probes.script import (
    Job,
    parse_runner_output,
    parse_toolbox,
    runner_argv,
)
from netwatch.probes.tcp import NcVariant


def record(job_id: str, stdout: str, code: int, stderr: str, t0="-", t1="-") -> bytes:
    body = f"{stdout}\x1f{code}\x1f{stderr}".encode()
    return (
        f"\n@@nw {job_id} {len(body)} {t0} {t1}\n".encode()
        + body
        + f"\n@@end {job_id}\n".encode()
    )


def test_values_travel_as_positional_parameters_never_as_script_text():
    """Hostile values land after the fixed script, one argv word each."""
    hostile = "$(touch /tmp/owned); `id` \"'\n"

    argv = runner_argv([Job("j0", ("ping", hostile))], watchdog_s=3, clock=False)

    assert argv[:2] == ["sh", "-c"]
    assert hostile not in argv[2]
    assert argv[3:] == ["netwatch", "3", "none", "j0", "2", "ping", hostile]


def test_records_are_split_into_stdout_exit_code_and_stderr():
    """Each framed record gives the tool's own stdout, exit code and stderr."""
    stdout = record("j0", "PING ...\n", 1, "ping: oops", "1000000000", "1002500000")
    stdout += record("j1", "", 0, "Connection succeeded")
    stdout += b"\n@@done\n"

    output = parse_runner_output(stdout, b"")

    assert output.finished
    assert not output.watchdog_fired
    assert output.records["j0"].stdout == "PING ...\n"
    assert output.records["j0"].exit_code == 1
    assert output.records["j0"].stderr == "ping: oops"
    assert output.records["j0"].elapsed_s == 0.0025
    assert output.records["j1"].elapsed_s is None


def test_a_record_with_a_wrong_length_is_damaged_not_half_read():
    """A record whose body does not match its announced length is refused."""
    good = record("j0", "abc", 0, "")
    broken = good.replace(b"@@nw j0 6 ", b"@@nw j0 9 ")
    assert broken != good

    output = parse_runner_output(broken, b"")

    assert "j0" not in output.records
    assert "announced 9" in output.damaged["j0"]


def test_interleaved_garbage_damages_only_the_record_it_hit():
    """Text from elsewhere inside one record leaves the other records whole."""
    first = record("j0", "abc", 0, "")
    second = record("j1", "def", 0, "")
    spoiled = first[:20] + b"GARBAGE" + first[20:]

    output = parse_runner_output(spoiled + second, b"")

    assert "j0" in output.damaged
    assert output.records["j1"].stdout == "def"


def test_watchdog_and_unfinished_runs_are_noticed():
    """The watchdog's mark on stderr, and a missing done mark, are reported."""
    output = parse_runner_output(record("j0", "", 0, ""), b"\n@@watchdog\n")

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
