"""Probes over a socket that already lives in the source's namespace: TCP
connect, a DNS lookup through the container's own resolver, an HTTP GET.

The namespace engine makes the sockets; these drive them from the event
loop. dnspython builds and reads DNS messages, h11 speaks HTTP/1.1: netwatch
only moves their bytes.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import h11

from netwatch import __version__
from netwatch.probes.outcome import (
    ProbeKind,
    ProbeRequest,
    ProbeResult,
    Reason,
    first_line,
    outcome_for,
    unmeasured,
)

# The engine's embedded DNS, as every container on a user-defined network
# sees it. netwatch asks no other resolver: its queries never leave the host.
EMBEDDED_DNS = ("127.0.0.11", 53)
# Errors of sendto/connect that mean the network said no.
NO_ROUTE_ERRNOS = frozenset(
    {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EPERM, errno.EACCES}
)
# Headers bigger than this are not an answer netwatch waits for.
_MAX_HEAD_BYTES = 16 * 1024


async def connect(
    sock: socket.socket, address: str, port: int, within_s: float
) -> tuple[Reason | None, str, float | None]:
    """Connects `sock`; the failure reason (None when connected), a detail,
    and the connect time."""
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    try:
        async with asyncio.timeout(within_s):
            await loop.sock_connect(sock, (address, port))
    except TimeoutError:
        return Reason.TIMEOUT, "connect timed out", None
    except ConnectionRefusedError:
        return Reason.REFUSED, "connection refused", None
    except OSError as exc:
        no_route = exc.errno in NO_ROUTE_ERRNOS
        reason = Reason.NO_ROUTE if no_route else Reason.EXEC_FAILED
        return reason, f"connect: {exc.strerror or exc}", None
    return None, "connected", time.perf_counter() - started


async def lookup(
    src: str,
    request: ProbeRequest,
    sock: socket.socket,
    within_s: float,
    resolver: tuple[str, int] = EMBEDDED_DNS,
) -> ProbeResult:
    """Looks up `request.address` (a name) at the embedded DNS through a UDP
    socket in the source's namespace."""
    try:
        name = dns.name.from_text(request.address)
    except (dns.exception.DNSException, UnicodeError, ValueError) as exc:
        detail = f"not a name that can be looked up: {exc}"
        return unmeasured(src, request, Reason.PARSE_ERROR, first_line(detail))
    query = dns.message.make_query(name, dns.rdatatype.A)
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    response: dns.message.Message | None = None
    reason: Reason | None = None
    detail = ""
    try:
        async with asyncio.timeout(within_s):
            await loop.sock_connect(sock, resolver)
            await loop.sock_sendall(sock, query.to_wire())
            while response is None:
                wire = await loop.sock_recv(sock, 65535)
                try:
                    answer = dns.message.from_wire(wire)
                except dns.exception.DNSException:
                    continue  # not a DNS message: keep waiting for ours
                if query.is_response(answer):
                    response = answer
    except TimeoutError:
        # The resolver is in the source itself: silence is not the network.
        reason = Reason.NO_ANSWER
        detail = f"no answer from {resolver[0]} within {within_s:g}s"
    except ConnectionRefusedError:
        # Nothing listens at 127.0.0.11: the source is on no user-defined
        # network, so it has no embedded DNS to know the name.
        reason = Reason.REFUSED
        detail = f"no embedded DNS at {resolver[0]} in the source"
    except OSError as exc:
        no_route = exc.errno in NO_ROUTE_ERRNOS
        reason = Reason.NO_ROUTE if no_route else Reason.EXEC_FAILED
        detail = f"query: {exc.strerror or exc}"
    elapsed = time.perf_counter() - started

    answers: tuple[str, ...] = ()
    if response is not None:
        rcode = response.rcode()
        answers = tuple(
            str(record.address)
            for rrset in response.answer
            if rrset.rdtype == dns.rdatatype.A
            for record in rrset
        )
        if rcode != dns.rcode.NOERROR:
            reason = Reason.NOT_FOUND
            detail = f"resolver says {dns.rcode.to_text(rcode)}"
        elif not answers:
            reason, detail = Reason.NOT_FOUND, "resolver knows the name, no address"
        else:
            detail = f"resolved to {', '.join(answers[:4])}"
    return ProbeResult(
        probe=ProbeKind.DNS,
        src=src,
        dst=request.dst,
        address=request.address,
        network=request.network,
        outcome=outcome_for(reason),
        reason=reason,
        detail=detail,
        at=time.time(),
        elapsed_s=elapsed if response is not None else None,
        answers=answers,
    )


def _host_header(address: str, port: int) -> str:
    host = f"[{address}]" if ":" in address else address
    return host if port == 80 else f"{host}:{port}"


async def http_get(
    src: str, request: ProbeRequest, sock: socket.socket, within_s: float
) -> ProbeResult:
    """GETs `request.path` from the destination; the status code and the
    time to the first byte of the response. The body is not read."""
    assert request.port is not None
    loop = asyncio.get_running_loop()
    status: int | None = None
    ttfb: float | None = None
    connect_s: float | None = None
    try:
        async with asyncio.timeout(within_s):
            reason, detail, connect_s = await connect(
                sock, request.address, request.port, within_s
            )
            if reason is None:
                status, ttfb = await _exchange(loop, sock, request)
                detail = f"HTTP {status}"
    except TimeoutError:
        # Connected, then silence (or a trickle): the service, not the path.
        reason = Reason.NO_ANSWER if connect_s is not None else Reason.TIMEOUT
        detail = f"no response within {within_s:g}s"
    except h11.RemoteProtocolError as exc:
        reason = Reason.BAD_RESPONSE
        detail = first_line(f"not an HTTP response: {exc}")
    except ConnectionError as exc:
        reason = Reason.BAD_RESPONSE
        detail = first_line(f"connection ended before a response: {exc}")
    except OSError as exc:
        reason, detail = Reason.EXEC_FAILED, first_line(f"http: {exc}")
    return ProbeResult(
        probe=ProbeKind.HTTP,
        src=src,
        dst=request.dst,
        address=request.address,
        network=request.network,
        port=request.port,
        outcome=outcome_for(reason),
        reason=reason,
        detail=detail,
        at=time.time(),
        connect_s=connect_s,
        elapsed_s=ttfb,
        status=status,
    )


async def _exchange(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, request: ProbeRequest
) -> tuple[int, float]:
    """Sends the GET and reads up to the response's status line and headers."""
    assert request.port is not None
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD_BYTES)
    data = conn.send(
        h11.Request(
            method="GET",
            target=request.path or "/",
            headers=[
                ("Host", _host_header(request.address, request.port)),
                ("User-Agent", f"netwatch/{__version__}"),
                ("Accept", "*/*"),
                ("Connection", "close"),
            ],
        )
    )
    assert data is not None
    sent_at = time.perf_counter()
    await loop.sock_sendall(sock, data)
    first_byte: float | None = None
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            chunk = await loop.sock_recv(sock, 4096)
            if first_byte is None:
                first_byte = time.perf_counter()
            conn.receive_data(chunk)
            continue
        if isinstance(event, h11.Response):
            assert first_byte is not None
            return event.status_code, first_byte - sent_at
        if isinstance(event, h11.ConnectionClosed):
            raise ConnectionError("the server closed the connection")
        # InformationalResponse (100 Continue and the like): read on.
