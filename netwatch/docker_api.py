"""The only module that talks to the Docker Engine API.

It wraps aiodocker, negotiates the API version with the engine (never pins
it), and translates every foreign error into `netwatch.errors` here, in one
place.

The endpoints netwatch uses, and no other (deploy/socket-proxy/haproxy.cfg
allows these alone). First, without a version prefix, to learn the API
version (aiodocker asks once per client; there is no /_ping):
    GET /version
then under that version's prefix (/v1.41/containers/json):
    GET /containers/json
    GET /containers/{id}/json
    GET /networks
    GET /networks/{id}          swarm overlay networks only, ?verbose=true
    GET /events                 one stream, open for as long as netwatch runs
    POST /containers/{id}/exec  the exec engine, and iperf3
    POST /exec/{id}/start       attached: the answer's body is the output
    GET /exec/{id}/json         the exec's exit code
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiodocker
import aiohttp
from aiodocker.events import DockerEvents
from aiodocker.stream import Message, _ExecParser

from netwatch.errors import (
    ContainerGoneError,
    ContainerNotRunningError,
    DockerError,
    EngineUnavailableError,
)
from netwatch.validation import engine_address_problem, shorten

# aiodocker reports a failed connection as a DockerError with this status.
_AIODOCKER_CONNECT_FAILED = 900
# What a TLS port does to plain HTTP says nothing of TLS itself.
_TLS_HINT = (
    " (plain HTTP: if the engine's port speaks TLS, set DOCKER_TLS_VERIFY=1"
    " and DOCKER_CERT_PATH)"
)

# Events netwatch follows. Exec events (ours, many) are filtered out by the
# engine. The engine matches `health_status` against `health_status: healthy`.
CONTAINER_ACTIONS = (
    "start",
    "restart",
    "die",
    "stop",
    "kill",
    "destroy",
    "pause",
    "unpause",
    "rename",
    "health_status",
    "update",
)
NETWORK_ACTIONS = ("connect", "disconnect", "create", "destroy")

# How long to keep asking for an exec's exit code after its output ended.
_EXIT_CODE_POLLS = 20
_EXIT_CODE_POLL_S = 0.05

EventHandler = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class ExecOutput:
    """What one exec produced.

    `exit_code` is None when the engine never reported one (the exec did not
    start, or is still running after its deadline); it is never coerced to 0.
    """

    stdout: bytes
    stderr: bytes
    exit_code: int | None
    running: bool
    pid: int
    timed_out: bool
    truncated: bool
    duration_s: float


class _CappedOutput:
    """Collects what aiodocker's demultiplexer parses out of an exec's
    output (it stands in for aiodocker's queue): stdout and stderr apart, up
    to `cap` bytes in all; `done` once capped or stdout ends with `marker`."""

    def __init__(self, cap: int, marker: bytes | None) -> None:
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.truncated = False
        self.done = False
        self._cap = cap
        self._marker = marker

    def feed_data(self, message: Message, size: int) -> None:
        if self.done:
            return
        room = self._cap - len(self.stdout) - len(self.stderr)
        if len(message.data) > room:
            self.truncated = True
        sink = self.stderr if message.stream == 2 else self.stdout
        sink += message.data[: max(room, 0)]
        if self.truncated or (self._marker and self.stdout.endswith(self._marker)):
            self.done = True

    def feed_eof(self) -> None:
        pass

    def set_exception(self, exc: BaseException) -> None:
        raise exc


@contextlib.contextmanager
def _translated(
    container_id: str | None = None, *, plain_tcp: bool = False
) -> Iterator[None]:
    """Turns aiodocker, aiohttp and OS errors into netwatch's own."""
    try:
        yield
    except aiodocker.DockerError as exc:
        message = str(exc.message).strip()
        if exc.status == _AIODOCKER_CONNECT_FAILED:
            if plain_tcp and message.endswith("[Server disconnected]"):
                message += _TLS_HINT
            raise EngineUnavailableError(message) from exc
        if exc.status == 404 and container_id is not None:
            raise ContainerGoneError(
                f"container {container_id[:12]}: {message}"
            ) from exc
        if exc.status == 409 and container_id is not None:
            raise ContainerNotRunningError(
                f"container {container_id[:12]}: {message}"
            ) from exc
        if exc.status >= 500 and "is not running" in message:
            raise ContainerNotRunningError(message) from exc
        raise DockerError(f"engine answered {exc.status}: {message}") from exc
    except TimeoutError as exc:  # says nothing itself
        what = f"container {container_id[:12]}: " if container_id else ""
        raise EngineUnavailableError(
            f"{what}the engine did not answer in time"
        ) from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise EngineUnavailableError(f"{type(exc).__name__}: {exc}") from exc


class DockerClient:
    """A connection to one engine. Use as an async context manager."""

    def __init__(
        self,
        host: str | None = None,
        request_timeout: float = 10.0,
        exec_start_concurrency: int = 8,
    ):
        self._host = host
        self._request_timeout = request_timeout
        self._docker: aiodocker.Docker | None = None
        # Creating and starting an exec is what costs the engine (runc);
        # a running exec waiting on its tools costs it nothing.
        self._exec_starts = asyncio.Semaphore(exec_start_concurrency)

    async def __aenter__(self) -> DockerClient:
        # DOCKER_HOST is read by aiodocker; checked here like docker.host.
        address = self._host or os.environ.get("DOCKER_HOST")
        if address and (problem := engine_address_problem(address)):
            where = "docker.host" if self._host else "DOCKER_HOST"
            raise EngineUnavailableError(f"{where} {shorten(address)}: {problem}")
        try:
            self._docker = aiodocker.Docker(
                url=self._host,
                timeout=aiohttp.ClientTimeout(
                    total=self._request_timeout, connect=self._request_timeout
                ),
            )
        except Exception as exc:  # aiodocker raises what its connectors raise
            raise EngineUnavailableError(f"no usable Docker address: {exc}") from exc
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._docker is not None:
            await self._docker.close()
            self._docker = None

    @property
    def address(self) -> str:
        docker = self._api
        return str(getattr(docker, "_connection_info", docker.docker_host))

    def _translated(
        self, container_id: str | None = None
    ) -> contextlib.AbstractContextManager[None]:
        # aiodocker turns tcp:// into https:// when it uses TLS.
        plain_tcp = self._api.docker_host.startswith(("tcp://", "http://"))
        return _translated(container_id, plain_tcp=plain_tcp)

    @property
    def _api(self) -> aiodocker.Docker:
        if self._docker is None:
            raise RuntimeError("DockerClient used outside `async with`")
        return self._docker

    async def version(self) -> dict[str, Any]:
        """Asks the engine who it is; the cheapest proof it answers."""
        with self._translated():
            try:
                return await self._api.version()
            except TimeoutError as exc:
                raise EngineUnavailableError(
                    "the engine did not answer in time"
                ) from exc

    async def list_container_ids(self) -> list[str]:
        """Ids of running and paused containers."""
        with self._translated():
            containers = await self._api.containers.list(
                filters=json.dumps({"status": ["running", "paused"]})
            )
        return [str(container.id) for container in containers]

    async def inspect_container(self, container_id: str) -> dict[str, Any]:
        with self._translated(container_id):
            container = await self._api.containers.get(container_id)
        return dict(container._container)

    async def list_networks(self) -> list[dict[str, Any]]:
        with self._translated():
            return await self._api.networks.list()

    async def inspect_network_verbose(self, network_id: str) -> dict[str, Any]:
        """A swarm network with every task on it, on every node.

        aiodocker has no verbose flag for networks, hence its query helper.
        """
        with self._translated():
            answer = await self._api._query_json(
                f"networks/{network_id}", params={"verbose": "true"}
            )
        return dict(answer)

    async def follow_events(self, since: str | None, handle: EventHandler) -> None:
        """Feeds engine events to `handle` until the stream ends.

        Returns when the engine closes the stream; raises EngineUnavailableError
        when the connection fails. Reconnecting is the caller's job.
        """
        filters = {
            "type": ["container", "network"],
            "event": sorted(set(CONTAINER_ACTIONS) | set(NETWORK_ACTIONS)),
        }
        params: dict[str, Any] = {"filters": json.dumps(filters)}
        if since is not None:
            params["since"] = since

        feed = DockerEvents(self._api)  # type: ignore[no-untyped-call]
        subscriber = feed.subscribe(create_task=False)  # type: ignore[no-untyped-call]
        # No total or read timeout: a quiet engine is not a dead one.
        reader = asyncio.ensure_future(feed.run(timeout=None, **params))
        try:
            while (event := await subscriber.get()) is not None:
                await handle(event)
        finally:
            if not reader.done():
                reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([reader])

        if not reader.cancelled() and (failure := reader.exception()) is not None:
            with self._translated():
                raise failure

    async def exec(
        self,
        container_id: str,
        argv: list[str],
        *,
        deadline_s: float,
        output_cap: int,
        done_marker: bytes | None = None,
    ) -> ExecOutput:
        """Runs `argv` in the container with Tty off and stdout, stderr apart.

        Output beyond `output_cap` bytes is dropped (`truncated`). When the
        deadline passes, what was read so far is returned with `timed_out`.
        Reading stops early once stdout ends with `done_marker`, so a process
        the command left behind holding the stream open costs no waiting.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        output = _CappedOutput(output_cap, done_marker)
        timed_out = False

        with self._translated(container_id):
            async with contextlib.AsyncExitStack() as stack:
                container = self._api.containers.container(container_id)
                # Waiting for a start slot is not the tool's time: the deadline
                # counts from the moment the command runs.
                async with self._exec_starts:
                    try:
                        async with asyncio.timeout(self._request_timeout):
                            execution = await container.exec(
                                argv,
                                stdout=True,
                                stderr=True,
                                tty=False,
                                environment={"LC_ALL": "C", "LANG": "C"},
                            )
                            response = await self._start_attached(execution.id)
                            stack.callback(response.close)
                    except TimeoutError as exc:
                        raise DockerError(
                            f"the engine took over {self._request_timeout:g}s "
                            "to start an exec"
                        ) from exc
                parser = _ExecParser(output, tty=False)
                try:
                    async with asyncio.timeout(deadline_s):
                        while not output.done:
                            if not (chunk := await response.content.readany()):
                                break
                            parser.feed_data(chunk)
                except TimeoutError:
                    timed_out = True

            exit_code, running, pid = await self._exit_status(execution)

        return ExecOutput(
            stdout=bytes(output.stdout),
            stderr=bytes(output.stderr),
            exit_code=exit_code,
            running=running,
            pid=pid,
            timed_out=timed_out,
            truncated=output.truncated,
            duration_s=loop.time() - started,
        )

    async def _start_attached(self, exec_id: str) -> aiohttp.ClientResponse:
        """Starts an exec; its output streams in as the answer's body.

        Asked without `Upgrade: tcp`, the engine answers 200 and sends the
        output until the exec ends: plain HTTP, which any API proxy passes.
        HAProxy 2.4 and later drop the Upgrade header of a request with a body
        (https://github.com/haproxy/haproxy/issues/2684), and aiodocker's
        attach cannot read the 200 that the engine then answers.
        """
        return await self._api._do_query(
            f"exec/{exec_id}/start",
            method="POST",
            data=json.dumps({"Detach": False, "Tty": False}),
            # No total or read timeout: the deadline is the caller's.
            timeout=aiohttp.ClientTimeout(connect=self._request_timeout),
        )

    async def _exit_status(self, execution: Any) -> tuple[int | None, bool, int]:
        """Reads an exec's exit code, waiting a little if the engine lags."""
        details: dict[str, Any] = {}
        for _ in range(_EXIT_CODE_POLLS):
            try:
                async with asyncio.timeout(self._request_timeout):
                    details = await execution.inspect()
            except TimeoutError:
                break
            if not details.get("Running") or details.get("ExitCode") is not None:
                break
            await asyncio.sleep(_EXIT_CODE_POLL_S)

        exit_code = details.get("ExitCode")
        return (
            exit_code if isinstance(exit_code, int) else None,
            bool(details.get("Running")),
            int(details.get("Pid") or 0),
        )
