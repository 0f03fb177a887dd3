"""Every shared fault case is a test; the copy here matches the shared one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import DATA, load_cases

SHARED = Path(__file__).resolve().parents[3] / "shared" / "cases" / "probe-cases.json"
TESTS = Path(__file__).resolve().parents[1]
LATER: dict[str, str] = {}


def test_every_case_is_named_by_a_test():
    """Each case id appears in a test, except categories a later issue owns."""
    sources = "\n".join(p.read_text() for p in TESTS.rglob("test_*.py"))
    named = sources.lower().replace("-", "")
    cases = load_cases()

    missing = [
        case_id
        for case_id, case in cases.items()
        if case["category"] not in LATER and "nw" + case_id.split("-")[1] not in named
    ]

    assert cases, "no cases loaded"
    assert missing == []


def test_the_copy_matches_the_shared_cases():
    """tests/data holds the same cases as ../shared/cases (when it is there)."""
    if not SHARED.exists():
        pytest.skip(f"{SHARED} is not on this machine; the copy in tests/data is used")

    assert json.loads(SHARED.read_text()) == json.loads(
        (DATA / "cases" / "probe-cases.json").read_text()
    )
