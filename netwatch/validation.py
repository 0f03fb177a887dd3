"""Small checks of untrusted text, shared by the config and label readers."""

from __future__ import annotations

import re

import yarl

_PORT = re.compile(r"[0-9]{1,5}")


def port_number(text: str) -> int | None:
    """The TCP/UDP port `text` spells in ASCII digits, or None.

    `str.isdigit` is not enough: it accepts superscripts and other scripts'
    digits, and `int` of a 10,000-digit string raises.
    """
    if _PORT.fullmatch(text) is None:
        return None
    port = int(text)
    return port if 1 <= port <= 65535 else None


def shorten(text: str, limit: int = 60) -> str:
    """`text` quoted, cut to `limit` characters, for messages about bad input."""
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


_ENGINE_SCHEMES = ("unix", "tcp", "http", "https")


def engine_address_problem(address: str) -> str | None:
    """Why `address` cannot name a Docker engine, or None when it can:
    unix://PATH, or tcp://, http:// or https:// with a host and a valid port.
    The URL is read as aiohttp will read it (yarl), so that what passes
    here cannot fail later in the middle of a request."""
    try:
        url = yarl.URL(address)
    except ValueError as exc:
        return f"not a URL: {exc}"
    if url.scheme not in _ENGINE_SCHEMES:
        return "not unix://PATH or tcp://HOST:PORT"
    if url.scheme == "unix":
        return None if url.path not in ("", "/") else "no socket path"
    if not url.host:
        return "no host"
    return None
