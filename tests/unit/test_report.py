"""The terminal table and `policy show`: text from containers (names, network
names, aliases, tool output) never breaks a row or drives the terminal."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from netwatch.matrix import MatrixSnapshot, PairState, PairView, Verdict
from netwatch.pairs import PairPlan, PlannedPair
from netwatch.report import printable, render_expectations, render_table
from tests.factories import attachment, container

# What Docker 20.10 accepts as a network name, seen on a real engine.
HOSTILE_NETWORK = "net\n\x1b[31mred\x1b[0m\u200f\u202eé日本\x00$(id)"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain-name_1.2", "plain-name_1.2"),
        ("two\nlines", "two\\nlines"),
        ("\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),
        ("nul\x00byte\r\t", "nul\\x00byte\\r\\t"),
        ("rtl\u200f\u202eoverride", "rtl\\u200f\\u202eoverride"),
        ("é日本🙂 $(id) `id` \"'", "é日本🙂 $(id) `id` \"'"),
    ],
)
def test_printable_escapes_only_what_a_terminal_acts_on(text, shown):
    """Control and format characters become escapes; letters of any script,
    emoji, spaces and punctuation stay as they are."""
    assert printable(text) == shown


def _broken_pair_snapshot(basis: str) -> MatrixSnapshot:
    src = container("src", attachment(HOSTILE_NETWORK, "10.0.0.2"))
    dst = container("dst", attachment(HOSTILE_NETWORK, "10.0.0.3"))
    pair = PairView(
        src=src.id,
        dst=dst.id,
        expected_reachable=True,
        basis=basis,
        state=PairState.UNREACHABLE,
        verdict=Verdict.BROKEN,
        since=0.0,
        changes=1,
        hold=None,
        probes=MappingProxyType({}),
        dns_findings=("alias\nx\x1b[31m does not resolve: NXDOMAIN",),
    )
    return MatrixSnapshot(
        at=0.0,
        containers=MappingProxyType({src.id: src, dst.id: dst}),
        pairs=MappingProxyType({(src.id, dst.id): pair}),
        unaddressable=MappingProxyType({}),
    )


def test_the_table_escapes_a_hostile_network_name_and_alias():
    """A network name and an alias with newlines and escape sequences show as
    escapes in the findings: every finding stays one line, and no escape
    sequence reaches the terminal."""
    snapshot = _broken_pair_snapshot(f"share {HOSTILE_NETWORK}")

    table = render_table(snapshot, color=False)

    assert "\x1b" not in table
    assert "\x00" not in table
    findings = table.split("Findings:\n")[1].splitlines()
    assert findings[0].startswith("  BROKEN        src -> dst: expected reachable")
    assert printable(HOSTILE_NETWORK) in findings[0]
    assert findings[1].startswith("  DNS           src -> dst: alias\\nx\\x1b[31m")
    assert findings[2].startswith("1 pairs: ")


def test_policy_show_escapes_a_hostile_basis():
    """`policy show` prints a basis naming a hostile network on one line."""
    src = container("src", attachment(HOSTILE_NETWORK, "10.0.0.2"))
    dst = container("dst", attachment(HOSTILE_NETWORK, "10.0.0.3"))
    planned = PlannedPair(
        src=src.id,
        dst=dst.id,
        expected_reachable=True,
        basis=f"share {HOSTILE_NETWORK}",
        targets=(),
        ports=(),
    )
    plan = PairPlan(
        pairs={(src.id, dst.id): planned},
        by_source={src.id: (planned,)},
        unaddressable={},
    )

    text = render_expectations(plan, {src.id: src, dst.id: dst}, None)

    lines = text.splitlines()
    assert len(lines) == 3
    assert lines[2] == f"src -> dst  reachable  share {printable(HOSTILE_NETWORK)}"
