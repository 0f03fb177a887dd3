"""The namespace engine: probes from sockets made inside the source
container's network namespace, with no exec at all.

A worker thread enters the container's namespace (setns on
/proc/PID/ns/net, through pyroute2), creates the sockets and comes back; the
sockets stay in the container's namespace, and the event loop drives them.
So a container without any tool (distroless, scratch) is measured like any
other, and probing costs it nothing. ICMP echo goes over a datagram socket
(Docker sets `net.ipv4.ping_group_range` in containers), TCP is a plain
non-blocking connect, timed by netwatch itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import struct
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from netwatch.config import ProbeSettings
from netwatch.containers import ContainerInfo
from netwatch.metrics import SelfMetrics
from netwatch.netstat import still_the_containers
from netwatch.probes.outcome import (
    ProbeKind,
    ProbeRequest,
    ProbeResult,
    Reason,
    first_line,
    outcome_for,
    unmeasured,
)
from netwatch.probes.services import NO_ROUTE_ERRNOS, connect, http_get, lookup

log = structlog.get_logger("netwatch.netns")

_ECHO_REQUEST = 8
_ECHO_REPLY = 0
_ECHO_REQUEST_V6 = 128
_ECHO_REPLY_V6 = 129
_PAYLOAD = b"netwatch-probe-00"


class NamespaceUnavailableError(Exception):
    """The container's namespace cannot be entered from here."""


def _setns(fd: int) -> None:
    # pyroute2 wraps the setns(2) call; imported late, it is only needed here.
    from pyroute2.netns import setns  # type: ignore[import-untyped]

    setns(fd, flags=0)


def namespace_path(pid: int, proc: Path = Path("/proc")) -> Path:
    return proc / str(pid) / "ns" / "net"


def can_enter_namespaces(proc: Path = Path("/proc")) -> tuple[bool, str]:
    """Whether this process may setns into network namespaces, and why not."""
    try:
        home = os.open(proc / "self" / "ns" / "net", os.O_RDONLY)
    except OSError as exc:
        return False, f"cannot open its own namespace: {exc.strerror}"
    try:
        _setns(home)
    except OSError as exc:
        return (
            False,
            f"setns is not allowed (needs CAP_SYS_ADMIN): {exc.strerror or exc}",
        )
    except ImportError as exc:
        return False, f"pyroute2 is missing: {exc}"
    finally:
        os.close(home)
    return True, "setns allowed"


# What kind of socket one probe needs: family, type, protocol.
SocketSpec = tuple[socket.AddressFamily, socket.SocketKind, int]
_ICMP4: SocketSpec = (socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
_ICMP6: SocketSpec = (socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_ICMPV6)


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


@dataclass
class _Sockets:
    """The sockets made in one namespace, one per spec asked for, each a
    socket or the error that refused it; `problem` (and its `reason`) when
    the namespace itself could not be used."""

    made: list[socket.socket | OSError] = field(default_factory=list)
    problem: str | None = None
    reason: Reason = Reason.SOURCE_GONE

    def all_made(self) -> list[socket.socket] | str:
        """Every socket asked for, or why not."""
        if self.problem is not None:
            return self.problem
        sockets = [sock for sock in self.made if isinstance(sock, socket.socket)]
        for refused in self.made:
            if isinstance(refused, OSError):
                return _refusal(refused)
        return sockets

    def close(self) -> None:
        for sock in self.made:
            if isinstance(sock, socket.socket):
                sock.close()


def _refusal(exc: OSError) -> str:
    return f"cannot make a socket in the namespace: {exc.strerror or exc}"


def _refusal_reason(exc: OSError) -> Reason:
    """A socket refused for want of rights (an ICMP socket where
    net.ipv4.ping_group_range leaves netwatch out, as in the host's own
    namespace), or of support (IPv6 turned off)."""
    if exc.errno in (errno.EACCES, errno.EPERM):
        return Reason.PERMISSION_DENIED
    return Reason.ENGINE_UNSUPPORTED


def make_sockets(
    path: Path, specs: Sequence[SocketSpec], container_id: str | None = None
) -> _Sockets:
    """In a worker thread: enter the namespace at `path`, make one socket
    per spec there, come back. The sockets stay in that namespace. With
    `container_id`, the namespace is used only if its process still belongs
    to that container (checked after the namespace is held open)."""
    made = _Sockets()
    try:
        target = os.open(path, os.O_RDONLY)
    except OSError as exc:
        made.problem = f"cannot open {path}: {exc.strerror}"
        if exc.errno in (errno.EACCES, errno.EPERM):
            made.reason = Reason.PERMISSION_DENIED
        return made
    if container_id is not None and not still_the_containers(
        path.parent.parent, container_id
    ):
        os.close(target)
        made.problem = (
            f"process {path.parent.parent.name} no longer belongs to the "
            "container (it exited)"
        )
        return made
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _setns(target)
        try:
            for family, kind, proto in specs:
                try:
                    made.made.append(socket.socket(family, kind, proto))
                except OSError as exc:
                    made.made.append(exc)
        finally:
            # Back home, always: this thread serves other containers next.
            _setns(home)
    except OSError as exc:
        made.close()
        made.made = []
        made.problem = f"cannot enter the namespace: {exc.strerror or exc}"
        made.reason = Reason.PERMISSION_DENIED
    finally:
        os.close(target)
        os.close(home)
    for sock in made.made:
        if isinstance(sock, socket.socket):
            sock.setblocking(False)
    return made


@dataclass
class _Echoes:
    """Echo requests sent to one address, and their replies."""

    # Sequence number: when it was sent, in wall-clock nanoseconds.
    sent_at: dict[int, int] = field(default_factory=dict)
    replied: set[int] = field(default_factory=set)
    rtts: list[float] = field(default_factory=list)
    error: OSError | None = None


# The kernel stamps each reply as it arrives (SO_TIMESTAMPNS, Linux's
# asm-generic/socket.h: the option and its message type are both 35): round
# trips do not include the time the event loop took to get to the reply.
_SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@qq")
_ANCILLARY_SIZE = socket.CMSG_SPACE(_TIMESPEC.size)


def _arrival_ns(ancillary: list[tuple[int, int, bytes]]) -> int:
    """When the kernel received a datagram, or now if it did not say."""
    for level, kind, data in ancillary:
        stamped = level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS
        if stamped and len(data) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            return int(seconds) * 1_000_000_000 + int(nanoseconds)
    return time.time_ns()


def _replies(
    sock: socket.socket,
    echoes: dict[str, _Echoes],
    v6: bool,
    answered: asyncio.Event,
    complete: Callable[[], bool],
) -> Callable[[], None]:
    """A reader callback: takes every datagram waiting, keeps our replies."""
    reply_kind = _ECHO_REPLY_V6 if v6 else _ECHO_REPLY

    def read() -> None:
        while True:
            try:
                data, ancillary, _, peer = sock.recvmsg(2048, _ANCILLARY_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # an ICMP error queued on the socket: no reply
            arrived = _arrival_ns(ancillary)
            if len(data) < 8 or data[0] != reply_kind or not data.endswith(_PAYLOAD):
                continue
            record = echoes.get(peer[0])
            sequence = struct.unpack("!H", data[6:8])[0]
            if record is None or sequence not in record.sent_at:
                continue
            if sequence in record.replied:
                continue  # a duplicate reply
            record.replied.add(sequence)
            # Both ends on the wall clock; a clock step can make one sample
            # negative: it counts as a reply, with no time.
            record.rtts.append(max(0.0, (arrived - record.sent_at[sequence]) / 1e9))
            if complete():
                answered.set()

    return read


def _echo(sequence: int, v6: bool) -> bytes:
    # The kernel fills in the identifier and the checksum of ping sockets.
    kind = _ECHO_REQUEST_V6 if v6 else _ECHO_REQUEST
    return struct.pack("!BBHHH", kind, 0, 0, 0, sequence) + _PAYLOAD


class NetnsEngine:
    """Runs probe requests from sockets inside the source's namespace."""

    name = "netns"

    def __init__(
        self,
        settings: ProbeSettings,
        *,
        metrics: SelfMetrics,
        proc: Path = Path("/proc"),
        workers: int = 4,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._proc = proc
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="netns")

    def forget(self, container_id: str) -> None:
        """Nothing is remembered per container."""

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def reachable(self, src: ContainerInfo) -> bool:
        return src.pid > 0 and namespace_path(src.pid, self._proc).exists()

    async def probe_source(
        self, src: ContainerInfo, requests: Sequence[ProbeRequest]
    ) -> list[ProbeResult]:
        results, refused = await self.probe(src, requests)
        return results + [result for _, result in refused]

    async def probe(
        self, src: ContainerInfo, requests: Sequence[ProbeRequest]
    ) -> tuple[list[ProbeResult], list[tuple[ProbeRequest, ProbeResult]]]:
        """The results, and apart from them the requests whose socket the
        namespace refused, each with its unmeasured result: another engine
        may measure those."""
        if not requests:
            return [], []
        if not self.reachable(src):
            detail = f"network namespace of pid {src.pid} is not visible"
            gone = [unmeasured(src.id, r, Reason.SOURCE_GONE, detail) for r in requests]
            return gone, []

        pings = [r for r in requests if r.probe is ProbeKind.PING]
        others = [r for r in requests if r.probe is not ProbeKind.PING]
        want_v4 = any(":" not in r.address for r in pings)
        want_v6 = any(":" in r.address for r in pings)
        specs: list[SocketSpec] = [_ICMP4] * want_v4 + [_ICMP6] * want_v6
        specs += [self._spec(r) for r in others]
        sockets = await self.sockets_in(src, specs)
        try:
            if sockets.problem is not None:
                detail = first_line(sockets.problem)
                failed = [
                    unmeasured(src.id, r, sockets.reason, detail) for r in requests
                ]
                return failed, []
            made = iter(sockets.made)
            icmp = next(made) if want_v4 else None
            icmp6 = next(made) if want_v6 else None
            refused: list[tuple[ProbeRequest, ProbeResult]] = []

            def usable(
                sock: socket.socket | OSError | None, wanting: list[ProbeRequest]
            ) -> socket.socket | None:
                if not isinstance(sock, OSError):
                    return sock
                reason, detail = _refusal_reason(sock), _refusal(sock)
                refused.extend(
                    (r, unmeasured(src.id, r, reason, detail)) for r in wanting
                )
                return None

            icmp = usable(icmp, [r for r in pings if ":" not in r.address])
            icmp6 = usable(icmp6, [r for r in pings if ":" in r.address])
            pairs = [
                (r, usable(sock, [r])) for r, sock in zip(others, made, strict=True)
            ]
            sendable = [r for r in pings if (icmp6 if ":" in r.address else icmp)]
            async with asyncio.TaskGroup() as tasks:
                pinging = tasks.create_task(self._ping(src.id, sendable, icmp, icmp6))
                running = [
                    tasks.create_task(self._one(src.id, request, sock))
                    for request, sock in pairs
                    if sock is not None
                ]
            return pinging.result() + [task.result() for task in running], refused
        finally:
            sockets.close()

    async def sockets_in(
        self, container: ContainerInfo, specs: Sequence[SocketSpec]
    ) -> _Sockets:
        """Sockets made inside the container's network namespace."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool,
            make_sockets,
            namespace_path(container.pid, self._proc),
            specs,
            container.id,
        )

    @staticmethod
    def _spec(request: ProbeRequest) -> SocketSpec:
        if request.probe is ProbeKind.DNS:
            return (socket.AF_INET, socket.SOCK_DGRAM, 0)
        return (_family(request.address), socket.SOCK_STREAM, 0)

    async def _one(
        self, src: str, request: ProbeRequest, sock: socket.socket
    ) -> ProbeResult:
        if request.probe is ProbeKind.DNS:
            return await lookup(src, request, sock, self._settings.dns.timeout)
        if request.probe is ProbeKind.HTTP:
            return await http_get(src, request, sock, self._settings.http.timeout)
        return await self._connect(src, request, sock)

    async def _ping(
        self,
        src: str,
        requests: list[ProbeRequest],
        icmp: socket.socket | None,
        icmp6: socket.socket | None,
    ) -> list[ProbeResult]:
        """Sends `count` echoes to every address, `spacing` apart, and waits
        for replies up to `reply_timeout` after the last one."""
        if not requests:
            return []
        settings = self._settings.ping
        loop = asyncio.get_running_loop()
        echoes = {request.address: _Echoes() for request in requests}
        answered = asyncio.Event()

        def complete() -> bool:
            return all(
                len(r.rtts) >= len(r.sent_at)
                for r in echoes.values()
                if r.error is None
            )

        # Replies are read as they arrive (a reader on each socket), echoes
        # are sent straight from the non-blocking sockets: uvloop offers
        # neither sock_sendto nor sock_recvfrom.
        listening = []
        for sock, v6 in ((icmp, False), (icmp6, True)):
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
                reader = _replies(sock, echoes, v6, answered, complete)
                loop.add_reader(sock.fileno(), reader)
                listening.append(sock.fileno())
        try:
            for sequence in range(1, settings.count + 1):
                for address, record in echoes.items():
                    if record.error is not None:
                        continue
                    v6 = ":" in address
                    sock = icmp6 if v6 else icmp
                    assert sock is not None
                    try:
                        record.sent_at[sequence] = time.time_ns()
                        sock.sendto(_echo(sequence, v6), (address, 0))
                    except OSError as exc:
                        record.sent_at.pop(sequence, None)
                        record.error = exc
                if sequence < settings.count:
                    await asyncio.sleep(settings.spacing)
            # Every echo is out: wait for the last replies, or the timeout.
            answered.clear()
            if complete():
                answered.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(settings.reply_timeout):
                    await answered.wait()
        finally:
            for fileno in listening:
                loop.remove_reader(fileno)

        now = time.time()
        return [
            self._ping_result(src, request, echoes[request.address], now)
            for request in requests
        ]

    def _ping_result(
        self, src: str, request: ProbeRequest, record: _Echoes, now: float
    ) -> ProbeResult:
        sent, received = len(record.sent_at), len(record.rtts)
        if record.error is not None and sent == 0:
            reason = (
                Reason.NO_ROUTE
                if record.error.errno in NO_ROUTE_ERRNOS
                else Reason.EXEC_FAILED
            )
            detail = f"send: {record.error.strerror or record.error}"
        elif received:
            reason, detail = None, f"{sent} echoes sent, {received} replies"
        else:
            reason, detail = Reason.NO_REPLY, f"{sent} echoes sent, no reply"
        return ProbeResult(
            probe=ProbeKind.PING,
            src=src,
            dst=request.dst,
            address=request.address,
            network=request.network,
            outcome=outcome_for(reason),
            reason=reason,
            detail=detail,
            at=now,
            sent=sent,
            received=min(received, sent),
            rtt_samples_s=tuple(record.rtts),
        )

    async def _connect(
        self, src: str, request: ProbeRequest, sock: socket.socket
    ) -> ProbeResult:
        assert request.port is not None
        reason, detail, connect_s = await connect(
            sock, request.address, request.port, self._settings.tcp.connect_timeout
        )
        return ProbeResult(
            probe=ProbeKind.TCP,
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
        )
