"""Real receivers for alert tests: a webhook server and an Alertmanager.

The webhook receiver is an aiohttp server on loopback, in a thread of the
test process, that records every request; it can answer 200, answer 500, or
never answer. Alertmanager is Debian's `prometheus-alertmanager`, started on
a free loopback port with clustering off and queried through its v2 API.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.integration.conftest import REQUIRE_DOCKER, free_port, wait_for


@dataclass
class Received:
    at: float
    body: Any


class WebhookReceiver:
    """Records POSTs; `mode` is "ok", "fail" (HTTP 500) or "hang"."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.received: list[Received] = []
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        self._started.wait(10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        async def stop() -> None:
            self._release.set()  # hanging handlers end now
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def bodies(self, status: str | None = None) -> list[Any]:
        return [
            r.body
            for r in list(self.received)
            if status is None or r.body.get("status") == status
        ]

    async def _hook(self, request: web.Request) -> web.Response:
        self.received.append(Received(time.time(), await request.json()))
        if self.mode == "hang":
            await self._release.wait()
        if self.mode == "fail":
            return web.Response(status=500, text="receiver broken on purpose")
        return web.Response(text="ok")

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, handle_signals=False)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        self._loop.run_until_complete(site.start())
        self._started.set()
        self._loop.run_forever()


class Alertmanager:
    """A real Alertmanager process on loopback."""

    CONFIG = """
route:
  receiver: blackhole
  group_wait: 1s
  group_interval: 1s
receivers:
  - name: blackhole
"""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._workdir = workdir
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Alertmanager:
        binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
        if binary is None:
            message = "Alertmanager is not installed (Debian: prometheus-alertmanager)"
            if REQUIRE_DOCKER or os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        config = self._workdir / "alertmanager.yml"
        config.write_text(self.CONFIG)
        log = (self._workdir / "alertmanager.log").open("wb")
        self._process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.path={self._workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_for(
            lambda: self._get("/-/ready") is not None, 30, "Alertmanager to be ready"
        )
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)

    def _get(self, path: str) -> Any:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text

    def alerts(self, **labels: str) -> list[dict[str, Any]]:
        """Active alerts whose labels include `labels`."""
        found = (
            self._get("/api/v2/alerts?active=true&silenced=false&inhibited=false") or []
        )
        return [
            alert
            for alert in found
            if all(alert["labels"].get(k) == v for k, v in labels.items())
            and alert["status"]["state"] == "active"
        ]
