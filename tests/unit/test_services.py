"""DNS lookups and HTTP GETs over sockets, against small servers on loopback
that answer right, wrong, late or not at all."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import dns.message
import dns.rcode
import dns.rrset
import pytest

from netwatch.probes.outcome import Outcome, ProbeKind, ProbeRequest, Reason
from netwatch.probes.services import http_get, lookup

Answer = Callable[[bytes], list[bytes]]


class _Resolver(asyncio.DatagramProtocol):
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        for reply in self.answer(data):
            self.transport.sendto(reply, addr)


async def _resolver(answer: Answer) -> AsyncIterator[tuple[str, int]]:
    loop = asyncio.get_running_loop()
    transport, _protocol = await loop.create_datagram_endpoint(
        lambda: _Resolver(answer), local_addr=("127.0.0.1", 0)
    )
    try:
        yield transport.get_extra_info("sockname")
    finally:
        transport.close()


def _udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    return sock


def _address_of(name: str, address: str) -> Answer:
    def answer(wire: bytes) -> list[bytes]:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        response.answer.append(dns.rrset.from_text(f"{name}.", 600, "IN", "A", address))
        return [response.to_wire()]

    return answer


def _rcode(code: dns.rcode.Rcode) -> Answer:
    def answer(wire: bytes) -> list[bytes]:
        response = dns.message.make_response(dns.message.from_wire(wire))
        response.set_rcode(code)
        return [response.to_wire()]

    return answer


DNS_REQUEST = ProbeRequest(ProbeKind.DNS, "db-id", "db", None)


async def _look_up(answer: Answer, request: ProbeRequest = DNS_REQUEST):
    async for resolver in _resolver(answer):
        with _udp() as sock:
            return await lookup("src-id", request, sock, 1.0, resolver=resolver)
    raise AssertionError("no resolver")


async def test_a_name_the_resolver_knows_resolves_with_its_address():
    result = await _look_up(_address_of("db", "10.1.0.4"))

    assert result.outcome is Outcome.OK
    assert result.answers == ("10.1.0.4",)
    assert result.elapsed_s is not None
    assert result.elapsed_s < 1.0


async def test_nxdomain_is_a_name_not_found():
    result = await _look_up(_rcode(dns.rcode.NXDOMAIN))

    assert result.outcome is Outcome.UNREACHABLE
    assert result.reason is Reason.NOT_FOUND
    assert "NXDOMAIN" in result.detail


async def test_a_known_name_without_an_address_is_not_found():
    result = await _look_up(_rcode(dns.rcode.NOERROR))

    assert result.reason is Reason.NOT_FOUND
    assert result.answers == ()


async def test_garbage_and_answers_to_other_queries_are_ignored():
    """Only the reply to netwatch's own query counts."""

    def answer(wire: bytes) -> list[bytes]:
        query = dns.message.from_wire(wire)
        stranger = dns.message.make_query("other", "A")
        stranger.id = (query.id + 1) % 65536
        wrong = dns.message.make_response(stranger)
        wrong.answer.append(dns.rrset.from_text("other.", 60, "IN", "A", "6.6.6.6"))
        return [b"\x00garbage", wrong.to_wire(), *_address_of("db", "10.1.0.4")(wire)]

    result = await _look_up(answer)

    assert result.outcome is Outcome.OK
    assert result.answers == ("10.1.0.4",)


async def test_a_silent_resolver_could_not_measure():
    """The resolver lives in the source: its silence says nothing of the
    destination."""
    result = await _look_up(lambda wire: [])

    assert result.outcome is Outcome.UNMEASURED
    assert result.reason is Reason.NO_ANSWER


async def test_no_resolver_listening_is_refused_not_unmeasured():
    """A source on the default bridge has nothing at 127.0.0.11."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with _udp() as sock:
        result = await lookup("src", DNS_REQUEST, sock, 1.0, ("127.0.0.1", port))

    assert result.outcome is Outcome.UNREACHABLE
    assert result.reason is Reason.REFUSED
    assert "no embedded DNS" in result.detail


@pytest.mark.parametrize("name", ["a" * 64, "bad..name", "x" * 300])
async def test_a_name_dns_cannot_carry_is_unmeasured(name):
    request = ProbeRequest(ProbeKind.DNS, "db-id", name, None)

    result = await _look_up(_address_of("db", "10.1.0.4"), request)

    assert result.outcome is Outcome.UNMEASURED
    assert result.reason is Reason.PARSE_ERROR


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _get(handler: Handler, path: str = "/health", within_s: float = 2.0):
    handlers: list[asyncio.Task[None]] = []

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(tracked, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    request = ProbeRequest(ProbeKind.HTTP, "web-id", "127.0.0.1", "front", port, path)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setblocking(False)
            return await http_get("src-id", request, sock, within_s)
    finally:
        # Each connection's handler ends before the loop does.
        if handlers:
            await asyncio.wait(handlers, timeout=2)
        server.close()
        await server.wait_closed()


def _replying(head: bytes, *, seen: list[bytes] | None = None) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        request = await reader.readuntil(b"\r\n\r\n")
        if seen is not None:
            seen.append(request)
        writer.write(head)
        await writer.drain()

    return handler


async def test_a_get_reports_the_status_and_time_to_first_byte():
    seen: list[bytes] = []
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    result = await _get(_replying(head, seen=seen))

    assert result.outcome is Outcome.OK
    assert result.status == 200
    assert result.elapsed_s is not None
    assert result.connect_s is not None
    assert seen[0].startswith(b"GET /health HTTP/1.1\r\n")
    assert b"\r\nhost: 127.0.0.1:" in seen[0].lower()


async def test_an_error_status_is_measured_as_such():
    result = await _get(_replying(b"HTTP/1.1 503 Service Unavailable\r\n\r\n"))

    assert result.outcome is Outcome.OK
    assert result.status == 503
    assert result.detail == "HTTP 503"


@pytest.mark.parametrize(
    "head",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n",
        b"",
    ],
    ids=["not-http", "endless-headers", "closed-at-once"],
)
async def test_a_server_that_does_not_speak_http_is_a_bad_response(head):
    result = await _get(_replying(head))

    assert result.outcome is Outcome.UNMEASURED
    assert result.reason is Reason.BAD_RESPONSE
    assert result.status is None


async def test_a_server_that_accepts_and_never_answers_could_not_measure():
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        await reader.read()  # until netwatch gives up and closes

    result = await _get(silent, within_s=0.5)

    assert result.outcome is Outcome.UNMEASURED
    assert result.reason is Reason.NO_ANSWER
    assert result.status is None


async def test_a_closed_port_is_refused():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    request = ProbeRequest(ProbeKind.HTTP, "web-id", "127.0.0.1", None, port, "/")
    with socket.socket() as sock:
        sock.setblocking(False)
        result = await http_get("src-id", request, sock, 1.0)

    assert result.outcome is Outcome.UNREACHABLE
    assert result.reason is Reason.REFUSED
