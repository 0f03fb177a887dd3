"""Shared test data: recorded real tool output and the shared fault cases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def recorded() -> dict[str, dict[str, Any]]:
    """Real tool output recorded from the test images (record_outputs.py)."""
    return json.loads((DATA / "recorded-output.json").read_text())


def load_cases() -> dict[str, dict[str, Any]]:
    cases = json.loads((DATA / "cases" / "probe-cases.json").read_text())
    return {case["id"]: case for case in cases}
