"""The HTTP server's surface: which routes exist, and that none of them can be
steered by the request (no target, command or container name is taken from
it), over real HTTP on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from netwatch.config import MatrixSettings
from netwatch.matrix import ReachabilityMatrix
from netwatch.pairs import plan_pairs
from netwatch.reload import ReloadOutcome
from netwatch.web import WebSources, build_app
from tests.factories import attachment
from tests.factories import container as make_container

# Every route, as (method, path). A new route is a decision: add it here.
ROUTES = {
    ("GET", "/"),
    ("GET", "/metrics"),
    ("GET", "/api/v1/matrix"),
    ("GET", "/api/v1/alerts"),
    ("GET", "/-/healthy"),
    ("GET", "/-/ready"),
    ("POST", "/-/reload"),
}


def two_containers() -> ReachabilityMatrix:
    a = make_container("a", attachment("net", "10.0.0.2"))
    b = make_container("b", attachment("net", "10.0.0.3"))
    matrix = ReachabilityMatrix(MatrixSettings())
    matrix.set_plan(plan_pairs([a, b], max_ports=8), {a.id: a, b.id: b})
    return matrix


@pytest.fixture
async def client() -> AsyncIterator[tuple[TestClient, list[int]]]:
    reloads: list[int] = []

    async def reload() -> ReloadOutcome:
        reloads.append(1)
        return ReloadOutcome(ok=True)

    matrix = two_containers()
    app = build_app(
        WebSources(matrix.snapshot, lambda: True, CollectorRegistry(), reload=reload)
    )
    async with TestClient(TestServer(app)) as test_client:
        yield test_client, reloads


def routes_of(app: web.Application) -> set[tuple[str, str]]:
    found = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        info = route.resource.get_info() if route.resource else {}
        found.add((route.method, str(info.get("path", info.get("formatter")))))
    return found


def test_the_server_has_exactly_the_known_routes_and_none_takes_a_variable():
    """Every route is a fixed path: none has a {variable} a caller could fill."""
    matrix = two_containers()
    app = build_app(WebSources(matrix.snapshot, lambda: True, CollectorRegistry()))

    routes = routes_of(app)

    assert routes == ROUTES
    assert all("{" not in path for _, path in routes)


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/matrix?target=10.0.0.9&src=a&cmd=id",
        "/metrics?name[]=a&target=127.0.0.1",
        "/api/v1/alerts?container=b",
    ],
)
async def test_query_strings_change_nothing(client, path):
    """Parameters a proxy or a shell would need are ignored: the answer is
    the same as without them."""
    test_client, _ = client
    bare = path.split("?")[0]

    plain = await test_client.get(bare)
    steered = await test_client.get(path)

    assert plain.status == steered.status == 200
    if bare != "/metrics":
        first, second = await plain.json(), await steered.json()
        for body in (first, second):
            body.pop("generated_at", None)
        assert first == second


async def test_unknown_paths_and_methods_are_refused(client):
    """Paths outside the list are 404; other methods on known paths are 405;
    a POST to the matrix cannot add a target."""
    test_client, _ = client

    missing = await test_client.get("/api/v1/probe?target=10.0.0.9")
    traversal = await test_client.get("/../../etc/passwd")
    posted = await test_client.post(
        "/api/v1/matrix", data=json.dumps({"targets": ["10.0.0.9"]})
    )
    deleted = await test_client.delete("/metrics")
    matrix = await (await test_client.get("/api/v1/matrix")).json()

    assert missing.status == 404
    assert traversal.status == 404
    assert posted.status == 405
    assert deleted.status == 405
    assert {c["name"] for c in matrix["containers"]} == {"a", "b"}
    assert len(matrix["pairs"]) == 2


async def test_reload_reads_nothing_from_the_request(client):
    """POST /-/reload calls the daemon's reload once whatever the body says;
    GET does not reload at all."""
    test_client, reloads = client

    by_get = await test_client.get("/-/reload")
    by_post = await test_client.post(
        "/-/reload", data="config: /etc/shadow\npolicy: /tmp/x"
    )

    assert by_get.status == 405
    assert by_post.status == 200
    assert reloads == [1]
