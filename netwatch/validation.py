"""Small checks of untrusted text, shared by the config and label readers."""

from __future__ import annotations

import re

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
