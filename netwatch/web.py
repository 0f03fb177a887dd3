"""The HTTP server: metrics, the matrix as JSON, health, readiness, reload.

No endpoint takes a target, a command or a container name from the request:
everything served is read from the current matrix snapshot, and the one
endpoint that acts (`POST /-/reload`) reads only netwatch's own files.

With a web configuration file (netwatch.webconfig), a guard sits in front
of every route alike: the rate limit, the client certificate's names, basic
auth, then the route; its headers go on every answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from importlib import resources

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from netwatch import __version__
from netwatch.containers import ContainerInfo
from netwatch.matrix import MatrixSnapshot
from netwatch.metrics import MatrixCollector, NetstatCollector
from netwatch.netstat import Netstat
from netwatch.reload import ReloadOutcome
from netwatch.report import snapshot_to_dict
from netwatch.webconfig import WebGuard

# The matrix page: one file, no outside assets; it reads /api/v1/matrix.
_PAGE = resources.files("netwatch").joinpath("page.html").read_text(encoding="utf-8")


@dataclass(frozen=True)
class ExpositionSettings:
    """How the pair families are exported; a reload may change them."""

    coverage_window_s: float | None = None
    # Above this many pairs, latency histograms are exported without buckets.
    buckets_max_pairs: int | None = None


@dataclass(frozen=True)
class WebSources:
    """What the server reads; all of it comes from the daemon, and is read
    again for every request, so that a reload shows at once."""

    snapshot: Callable[[], MatrixSnapshot]
    ready: Callable[[], bool]
    self_registry: CollectorRegistry
    alerts: Callable[[], list[dict[str, object]]] = list
    # The policy file the expectations follow; None: the topology.
    policy: Callable[[], str | None] = lambda: None
    netstats: Callable[
        [], tuple[Mapping[str, Netstat], Mapping[str, ContainerInfo]]
    ] = lambda: ({}, {})
    exposition: Callable[[], ExpositionSettings] = ExpositionSettings
    # None: the daemon cannot reload (POST /-/reload answers so).
    reload: Callable[[], Awaitable[ReloadOutcome]] | None = None


def render_pairs(
    snapshot: MatrixSnapshot,
    netstats: tuple[Mapping[str, Netstat], Mapping[str, ContainerInfo]] = ({}, {}),
    coverage_window_s: float | None = None,
    buckets_max_pairs: int | None = None,
) -> bytes:
    """The pair and container families of the exposition."""
    pairs = CollectorRegistry(auto_describe=False)
    pairs.register(
        MatrixCollector(lambda: snapshot, coverage_window_s, buckets_max_pairs)
    )
    pairs.register(NetstatCollector(lambda: netstats))
    return generate_latest(pairs)


def render_metrics(
    snapshot: MatrixSnapshot,
    self_registry: CollectorRegistry,
    netstats: tuple[Mapping[str, Netstat], Mapping[str, ContainerInfo]] = ({}, {}),
    coverage_window_s: float | None = None,
) -> bytes:
    """The whole exposition at once: netwatch's own metrics, then the pair
    families, then the containers' interfaces."""
    return generate_latest(self_registry) + render_pairs(
        snapshot, netstats, coverage_window_s
    )


# The pair families are rendered again at most this often, and at most
# once per this many times their last rendering took: a large host's
# matrix costs a second of CPU to render, and must not cost it every scrape.
_RENDER_MIN_INTERVAL_S = 1.0
_RENDER_COST_FACTOR = 4.0
# Renderings faster than this are done for each scrape that finds the
# matrix changed.
_RENDER_INLINE_S = 0.1


class PairExposition:
    """The pair families, rendered whenever the matrix or the containers'
    counters change. Where rendering is cheap (a small host), a scrape that
    finds the matrix changed renders it at once and sees it current; where
    it is not (thousands of pairs), renderings happen off the request path,
    so a scrape costs what netwatch's own metrics cost and sees the matrix
    as of the last rendering, a few seconds old at most."""

    def __init__(self, sources: WebSources) -> None:
        self._sources = sources
        self._body: bytes | None = None
        self._rendered_from: tuple[object, ...] | None = None
        self._took = 0.0
        self._lock = asyncio.Lock()

    async def body(self) -> bytes:
        # Cheap renderings are done for the scrape itself: what is served is
        # then always current, as on every host of a few dozen containers.
        if self._body is None or self._took < _RENDER_INLINE_S:
            await self.refresh()
        assert self._body is not None
        return self._body

    async def refresh(self) -> None:
        async with self._lock:
            snapshot = self._sources.snapshot()
            netstats = self._sources.netstats()
            settings = self._sources.exposition()
            source = (snapshot, *netstats, settings)
            if self._rendered_from is not None and all(
                now is before or now == before
                for now, before in zip(source, self._rendered_from, strict=True)
            ):
                return
            started = time.perf_counter()
            self._body = await asyncio.to_thread(
                render_pairs,
                snapshot,
                netstats,
                settings.coverage_window_s,
                settings.buckets_max_pairs,
            )
            self._took = time.perf_counter() - started
            self._rendered_from = source

    async def run(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(
                max(_RENDER_MIN_INTERVAL_S, _RENDER_COST_FACTOR * self._took)
            )


def guard_middleware(guard: WebGuard) -> Middleware:
    """Refuses a request before any route runs: 429 when the rate limit is
    spent, 403 when the client certificate names none of the allowed
    subjects, 401 (asking for basic auth) without a known user's password."""

    @web.middleware
    async def guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not guard.allow_request():
            return web.Response(status=429, text="too many requests\n")
        transport = request.transport
        peercert = transport.get_extra_info("peercert") if transport else None
        if not guard.client_allowed(peercert):
            return web.Response(
                status=403,
                text="client certificate not allowed\n",
                headers={hdrs.CONNECTION: "close"},
            )
        if not await guard.authenticated(request.headers.get(hdrs.AUTHORIZATION)):
            return web.Response(
                status=401,
                text="unauthorized\n",
                headers={hdrs.WWW_AUTHENTICATE: 'Basic realm="netwatch"'},
            )
        return await handler(request)

    return guarded


def build_app(sources: WebSources, guard: WebGuard | None = None) -> web.Application:
    """The routes; with a guard, every one of them behind it."""
    exposition = PairExposition(sources)

    async def metrics(_: web.Request) -> web.Response:
        pairs = await exposition.body()
        body = generate_latest(sources.self_registry) + pairs
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def rendering(_: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(exposition.run())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def matrix(_: web.Request) -> web.Response:
        body = snapshot_to_dict(
            sources.snapshot(), ready=sources.ready(), policy=sources.policy()
        )
        return web.json_response(
            body, dumps=lambda data: json.dumps(data, ensure_ascii=False)
        )

    async def alerts(_: web.Request) -> web.Response:
        body = {"alerts": sources.alerts()}
        return web.json_response(
            body, dumps=lambda data: json.dumps(data, ensure_ascii=False)
        )

    async def healthy(_: web.Request) -> web.Response:
        return web.Response(text="netwatch is healthy\n")

    async def ready(_: web.Request) -> web.Response:
        if sources.ready():
            return web.Response(text="netwatch is ready\n")
        return web.Response(
            status=503, text="netwatch is not ready: no full round yet\n"
        )

    async def reload(_: web.Request) -> web.Response:
        # The body is not read: a reload reads netwatch's own files only.
        if sources.reload is None:
            return web.Response(status=503, text="netwatch cannot reload\n")
        outcome = await sources.reload()
        return web.Response(status=200 if outcome.ok else 500, text=outcome.describe())

    async def index(_: web.Request) -> web.Response:
        return web.Response(
            text=_PAGE,
            content_type="text/html",
            headers={
                # Nothing from elsewhere: scripts and styles are the page's own.
                "Content-Security-Policy": "default-src 'self'; "
                "script-src 'unsafe-inline'; style-src 'unsafe-inline'",
                "X-Netwatch-Version": __version__,
            },
        )

    app = web.Application(middlewares=[guard_middleware(guard)] if guard else [])
    if guard is not None:

        async def configured_headers(
            _: web.Request, response: web.StreamResponse
        ) -> None:
            # The file's headers win over a route's own (the page's CSP).
            response.headers.update(guard.headers)

        app.on_response_prepare.append(configured_headers)
    app.cleanup_ctx.append(rendering)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/matrix", matrix)
    app.router.add_get("/api/v1/alerts", alerts)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_post("/-/reload", reload)
    app.router.add_get("/", index)
    return app


async def start_server(
    app: web.Application,
    host: str | None,
    port: int,
    ssl_context: ssl.SSLContext | None = None,
) -> web.AppRunner:
    """Starts serving, over TLS with `ssl_context`; the caller cleans the
    runner up."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host=host, port=port, ssl_context=ssl_context)
    await site.start()
    return runner


def bound_port(runner: web.AppRunner) -> int | None:
    """The port actually bound (useful when asked for port 0)."""
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return None
