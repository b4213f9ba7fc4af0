"""Percent-encoding for rewrites: the decoded view rules match, and the safe re-encoding.

Rules are written in decoded text (``/files/my doc``, ``/café``), yet the upstream must get
exactly the resource the client named: an encoded slash (``%2F``) inside a segment must never
become a segment separator. So a rule sees the raw path decoded *except* for four delimiters,
``%2F`` (``/``), ``%3F`` (``?``), ``%23`` (``#``) and ``%25`` (``%``), which stay escaped (in
uppercase hex). Re-encoding quotes every character outside a safe set and leaves ``%`` alone:
in the view every ``%`` starts one of those four escapes, so what goes upstream names the
same thing the client sent. Bytes that are not UTF-8 round-trip unchanged (surrogateescape).

Pure functions: no I/O and no state.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

PATH_SAFE = "/%:@!$&'()*+,;=-._~"
"""Characters left as they are in a path (RFC 3986 ``pchar`` and ``/``, plus kept escapes)."""
QUERY_SAFE = PATH_SAFE + "?"
"""Characters left as they are in the literal query text of a replacement."""
QUERY_VALUE_SAFE = "/%:@!$'()*,;-._~?"
"""Characters left as they are in a capture put into a query: ``&``, ``=`` and ``+`` are
encoded so a client's path can never add query parameters."""

_KEPT_ESCAPE = re.compile(r"%(?:2[fF]|3[fF]|23|25)")
_LONE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_SLASHES = re.compile(rb"/{2,}")


def collapse_slashes(raw_path: bytes) -> bytes:
    """``raw_path`` with runs of ``/`` made one, as routing matched it."""
    if b"//" not in raw_path:
        return raw_path
    return _SLASHES.sub(b"/", raw_path)


def decoded_view(raw_path: bytes) -> str:
    """The path a rule matches: percent-decoded except ``%2F``, ``%3F``, ``%23``, ``%25``.

    A ``%`` that starts no escape is taken as a literal percent sign (shown as ``%25``).
    """
    text = raw_path.decode("utf-8", "surrogateescape")
    if "%" not in text:
        return text
    text = _LONE_PERCENT.sub("%25", text)
    pieces: list[str] = []
    last = 0
    for kept in _KEPT_ESCAPE.finditer(text):
        pieces.append(unquote(text[last : kept.start()], errors="surrogateescape"))
        pieces.append(kept.group().upper())
        last = kept.end()
    pieces.append(unquote(text[last:], errors="surrogateescape"))
    return "".join(pieces)


def decode_segment(raw_segment: str) -> str:
    """One path segment (no ``/``) in the decoded view."""
    if "%" not in raw_segment:
        return raw_segment
    return decoded_view(raw_segment.encode("utf-8", "surrogateescape"))


def encode(text: str, safe: str) -> str:
    """``text`` from the decoded view (or a config literal), percent-encoded for the wire."""
    return quote(text, safe=safe, errors="surrogateescape")


def single_leading_slash(path: str) -> str:
    """``path`` with a leading ``//`` (which an upstream may read as an authority) made ``/``."""
    if path.startswith("//"):
        return "/" + path.lstrip("/")
    return path


def has_dot_segment(path: str) -> bool:
    """True when an encoded path has a ``.`` or ``..`` segment (also as ``%2E``)."""
    if "." not in path and "%2" not in path.upper():
        return False
    return any(unquote(segment) in (".", "..") for segment in path.split("/"))


def check_literal(text: str, where: str) -> None:
    """Refuse config text that cannot be placed in a URL as written (ValueError)."""
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in text):
        raise ValueError(f"{where} must not contain control characters")
    if "#" in text:
        raise ValueError(f"{where} must not contain '#': a fragment is never sent to an upstream")
    if _LONE_PERCENT.search(text):
        raise ValueError(f"{where}: '%' must start a percent-escape such as %20 (write %25 for a literal '%')")
