"""Tools that lie, flood or hang inside the source container.

The netwatch-test/liar image holds a `ping` and an `nc` that misbehave as its
LIAR variable says (tests/images/liar.sh). Whatever they do, the other probes
keep their true results, the bad ones say "could not measure" with a reason,
and no process is left behind.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.integration.conftest import Lab, docker, netwatch_env, run_netwatch, wait_for

pytestmark = pytest.mark.docker


def liar_lab(lab: Lab, mode: str) -> tuple[str, str]:
    lab.network("app")
    server = lab.listen("server", networks=("app",))
    liar = lab.run("liar", "liar", networks=("app",), options=("-e", f"LIAR={mode}"))
    return liar, server


def probe(lab: Lab, extra: dict[str, str] | None = None) -> tuple[int, dict, str]:  # type: ignore[type-arg]
    done = run_netwatch("matrix", "--json", env=netwatch_env(lab, extra))
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout), done.stderr


def pair(body: dict, src: str, dst: str) -> dict:  # type: ignore[type-arg]
    return next(p for p in body["pairs"] if p["src"] == src and p["dst"] == dst)


def leftovers(container: str) -> list[str]:
    """Processes in the container other than its main command."""
    lines = docker("top", container, "-o", "pid,args").splitlines()[1:]
    return [line for line in lines if "sleep 100000" not in line]


def test_forged_records_and_engine_words_change_nothing_true(lab):
    """A ping printing a fake record for another job, separator bytes and
    'exec failed' text gets a parse error for itself; the tcp probe of the
    same exec keeps its real result and the container is not declared
    shell-less."""
    liar, server = liar_lab(lab, "forge")

    _, body, _ = probe(lab)

    result = pair(body, liar, server)
    # Both tools lie; what they print is read as their own failure to run.
    for probe_kind in ("ping", "tcp"):
        view = result["probes"][probe_kind]
        assert view["state"] == "unknown", view
        assert view["reason"] in ("parse_error", "tool_missing"), view
        assert "no shell" not in view["detail"]
    assert result["verdict"] == "unmeasured"
    assert pair(body, server, liar)["probes"]["ping"]["state"] == "reachable"


def test_malformed_numbers_are_a_parse_error_not_a_crash(lab):
    """A reply time like '1.2.3' is an unreadable result, and the command
    still prints the whole matrix."""
    liar, server = liar_lab(lab, "badfloat")

    _, body, stderr = probe(lab, {"NETWATCH_PROBES__TCP__ENABLED": "false"})

    ping = pair(body, liar, server)["probes"]["ping"]
    assert ping["reason"] == "parse_error"
    assert "1.2.3" in ping["detail"]
    assert "Traceback" not in stderr


def test_a_flood_of_output_is_cut_and_labelled(lab):
    """Megabytes of output are capped: output_too_large, not unreachable."""
    liar, server = liar_lab(lab, "flood")

    _, body, _ = probe(lab, {"NETWATCH_PROBES__TCP__ENABLED": "false"})

    ping = pair(body, liar, server)["probes"]["ping"]
    assert ping["state"] == "unknown"
    assert ping["reason"] == "output_too_large"


def test_a_hanging_tool_is_killed_at_the_deadline_and_leaves_nothing(lab):
    """A ping that never returns is cut by the watchdog: exec_timeout, and no
    process of netwatch stays in the container."""
    liar, server = liar_lab(lab, "hang")

    started = time.monotonic()
    _, body, _ = probe(lab, {"NETWATCH_PROBES__TCP__ENABLED": "false"})
    took = time.monotonic() - started

    ping = pair(body, liar, server)["probes"]["ping"]
    assert ping["reason"] == "exec_timeout"
    assert took < 20
    wait_for(lambda: leftovers(liar) == [], 10, "the liar's processes to be gone")


def test_a_toolbox_check_that_hangs_is_cut_and_remembered(lab, start_daemon):
    """`ping -V` hanging makes the toolbox check give no answer: its probes
    say so, it is not asked again every round, and nothing piles up."""
    liar, server = liar_lab(lab, "hang-version")

    daemon = start_daemon()
    wait_for(
        lambda: (daemon.pair(liar, server) or {}).get("probes", {}).get("ping"),
        40,
        "the liar's first result",
    )
    time.sleep(10)

    ping = daemon.pair(liar, server)["probes"]["ping"]
    assert ping["reason"] == "tool_missing"
    assert "toolbox check gave no answer" in ping["detail"]
    assert leftovers(liar) == []
    assert daemon.pair(server, liar)["probes"]["ping"]["state"] == "reachable"


def test_terminal_escapes_from_a_tool_never_reach_the_terminal(lab):
    """Escape sequences printed by a tool are shown as '?' in the table."""
    _liar, _ = liar_lab(lab, "ansi")

    done = run_netwatch(
        "matrix", env=netwatch_env(lab, {"NETWATCH_PROBES__TCP__ENABLED": "false"})
    )

    assert "\x1b" not in done.stdout
    assert "\x07" not in done.stdout
    assert "?]0;owned?" in done.stdout
