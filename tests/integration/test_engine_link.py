"""netwatch's link to the engine: cut it, and the matrix still catches up.

A small socket proxy stands between netwatch and the real engine, so the test
can cut every connection (the event stream among them) and refuse new ones
for a while, the way an idle timeout, a socket proxy or an engine restart
does, while the real engine carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import docker, wait_for
from tests.integration.test_daemon import series, three_tier

pytestmark = pytest.mark.docker

ENGINE_SOCKET = "/var/run/docker.sock"


class CuttableProxy:
    """Forwards a unix socket to the engine's; can drop and refuse connections."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.accepting = True
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> CuttableProxy:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _shutdown(self) -> None:
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()

    def cut(self) -> None:
        """Drops every connection now and refuses new ones until `resume`."""
        self.accepting = False
        done = threading.Event()

        def close_all() -> None:
            for writer in list(self._writers):
                writer.transport.abort()
            done.set()

        self._loop.call_soon_threadsafe(close_all)
        done.wait(5)

    def resume(self) -> None:
        self.accepting = True

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_unix_server(self._client, str(self.path))
        )
        self._ready.set()
        self._loop.run_forever()

    async def _client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if not self.accepting:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_unix_connection(ENGINE_SOCKET)
        self._writers |= {writer, up_writer}

        async def pump(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter
        ) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        try:
            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        finally:
            self._writers -= {writer, up_writer}
            writer.close()
            up_writer.close()


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[CuttableProxy]:
    with CuttableProxy(tmp_path / "engine.sock") as running:
        yield running


def test_case_nw019_cut_stream_reconnects_and_catches_up(lab, start_daemon, proxy):
    """NW-019: with the event stream cut and a container stopped during the
    gap, netwatch stays up, says so once, reconnects, re-lists, and the
    stopped container leaves the matrix; /-/ready follows the engine."""
    web, api, db = three_tier(lab)
    daemon = start_daemon({"DOCKER_HOST": f"unix://{proxy.path}"})
    daemon.wait_ready()

    proxy.cut()
    docker("stop", "-t", "0", db)
    wait_for(lambda: daemon.get("/-/ready")[0] == 503, 20, "/-/ready to turn false")
    assert series(daemon.metrics(), "netwatch_docker_up") == [0.0]
    proxy.resume()

    wait_for(
        lambda: {p["src"] for p in daemon.matrix()["pairs"]} == {web, api},
        30,
        "the stopped container to leave the matrix",
    )
    wait_for(lambda: daemon.get("/-/ready")[0] == 200, 30, "/-/ready to come back")
    assert daemon.process.poll() is None
    events = [e["event"] for e in daemon.log_events()]
    warnings = [e["event"] for e in daemon.log_events() if e["level"] == "warning"]
    assert warnings.count("docker.engine_unavailable") == 1
    assert events.count("discovery.engine_connected") >= 2
    assert series(daemon.metrics(), "netwatch_docker_up") == [1.0]
