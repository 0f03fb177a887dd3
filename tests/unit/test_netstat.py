"""Interface counters and listening ports, read from /proc/PID/net."""

from __future__ import annotations

from netwatch.netstat import parse_listening, parse_net_dev, read_netstat
from tests.conftest import DATA

# Recorded from a netwatch-test/tools container running `nc -lk 8080`, with
# a few lines added: a loopback listener, a connection, an IPv6 listener.
PROC_NET = DATA / "proc-net"
NET_DEV = (PROC_NET / "dev").read_text()
TCP = (PROC_NET / "tcp").read_text()
TCP6 = (PROC_NET / "tcp6").read_text()


def test_interface_counters_are_read_per_interface():
    """Receive and transmit bytes, packets, errors and drops per interface."""
    interfaces = parse_net_dev(NET_DEV)

    eth0 = interfaces["eth0"]
    assert (eth0.receive_bytes, eth0.receive_packets, eth0.receive_drops) == (486, 5, 1)
    assert (eth0.transmit_bytes, eth0.transmit_errors, eth0.transmit_drops) == (
        98,
        2,
        3,
    )
    assert set(interfaces) == {"lo", "eth0"}


def test_listening_ports_leave_out_loopback_and_connections():
    """LISTEN sockets on any or a container address count; loopback-only
    listeners and established connections do not."""
    assert parse_listening(TCP) == {8080, 80}
    assert parse_listening(TCP6) == {443}


def test_garbage_in_proc_files_is_skipped():
    """Lines of another shape are ignored, never a crash."""
    assert parse_net_dev("x\ny\n  eth0: a b c\n") == {}
    assert (
        parse_listening("header\n 0: zz:zz 00:00 0A\n 1: 00000000:FFFFF 0 0A\n")
        == set()
    )


def test_reading_a_namespace_that_is_not_there_gives_nothing(tmp_path):
    """A pid without /proc entries (gone, or not visible) gives None."""
    assert read_netstat(999999, proc=tmp_path) is None


def test_reading_a_namespace_from_proc_files(tmp_path):
    """dev, tcp and tcp6 are combined; lo is left out."""
    net = tmp_path / "42" / "net"
    net.mkdir(parents=True)
    (net / "dev").write_text(NET_DEV)
    (net / "tcp").write_text(TCP)
    (net / "tcp6").write_text(TCP6)

    stat = read_netstat(42, proc=tmp_path)

    assert stat is not None
    assert set(stat.interfaces) == {"eth0"}
    assert stat.listening == (80, 443, 8080)
