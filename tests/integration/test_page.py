"""The matrix page in a real browser (Debian's headless Chromium) against a
daemon watching real containers."""

from __future__ import annotations

import html.parser
import os
import shutil
import subprocess
import tempfile

import pytest

from tests.integration.conftest import ARTIFACTS, REQUIRE_DOCKER, wait_for
from tests.integration.test_daemon import three_tier

pytestmark = pytest.mark.docker

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        message = "Chromium is not installed (Debian: chromium)"
        if REQUIRE_DOCKER or os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return binary


def browse(url: str, *extra: str) -> str:
    """Loads `url` in headless Chromium, lets its scripts run, returns stdout."""
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
             "--virtual-time-budget=8000", *extra, url],
            capture_output=True, text=True, timeout=90, check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class Cells(html.parser.HTMLParser):
    """Collects the grid's cells and their data attributes from the DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str], dict[str, str]] = {}
        self.loaded = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if tag == "body" and found.get("data-loaded") == "true":
            self.loaded = True
        if tag == "td" and "cell" in found.get("class", ""):
            self.cells[(found["data-src"], found["data-dst"])] = found


def test_the_page_draws_the_matrix_with_broken_and_isolated_pairs(lab, start_daemon):
    """The grid has a cell per ordered pair; a broken pair and an isolated
    pair carry their verdicts (and so their colours); a screenshot is saved."""
    web, api, db = three_tier(lab)
    lab.in_netns(
        api, "iptables", "-A", "INPUT", "-s", lab.ip(web, "backend"), "-j", "DROP"
    )
    daemon = start_daemon()
    daemon.wait_ready()
    wait_for(
        lambda: daemon.pair(web, api)["verdict"] == "broken", 20, "web -> api broken"
    )
    url = f"http://127.0.0.1:{daemon.port}/"

    parser = Cells()
    parser.feed(browse(url, "--dump-dom"))
    screenshot = ARTIFACTS / "matrix-page.png"
    browse(url, f"--screenshot={screenshot}", "--window-size=1100,420")

    assert parser.loaded, "the page never rendered the matrix"
    assert len(parser.cells) == 9
    assert parser.cells[(web, api)]["data-verdict"] == "broken"
    assert parser.cells[(web, db)]["data-verdict"] == "ok"
    assert parser.cells[(web, db)]["data-expected"] == "false"
    assert parser.cells[(api, db)]["data-verdict"] == "ok"
    assert parser.cells[(api, db)]["data-expected"] == "true"
    assert parser.cells[(db, db)]["data-verdict"] == "self"
    assert "web" in parser.cells[(web, api)]["data-info"]
    assert screenshot.stat().st_size > 10_000


def test_the_page_colours_are_the_legends():
    """Each verdict the grid can show has a colour rule, and the page loads
    nothing from elsewhere."""
    from importlib import resources

    page = resources.files("netwatch").joinpath("page.html").read_text()

    for selector in (
        'td[data-verdict="ok"][data-expected="true"]',
        'td[data-verdict="ok"][data-expected="false"]',
        'td[data-verdict="broken"]',
        'td[data-verdict="unexpected"]',
        'td[data-verdict="unmeasured"]',
        'td[data-verdict="held"]',
    ):
        assert selector in page
    assert "http://" not in page
    assert "https://" not in page
    assert "innerHTML" not in page
