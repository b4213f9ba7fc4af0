"""Reading one cookie from a request's ``Cookie`` headers, for hashing and affinity.

Bytes in, bytes out, no decoding: the balancers compare and hash the raw value. The first
cookie of that name wins (RFC 6265 §5.4 orders more specific paths first).
"""

from __future__ import annotations

from gateway_core.messages import RawHeaders

_SEPARATORS = frozenset(b"; \t")
"""Bytes that may precede a cookie name: the pair separator and the space after it."""


def cookie_value(raw: RawHeaders, name: bytes) -> bytes | None:
    """The value of cookie ``name`` in ``raw``'s ``Cookie`` headers (quotes stripped), or None."""
    needle = name + b"="
    for key, value in raw:
        if key != b"cookie":
            continue
        start = value.find(needle)
        while start != -1:
            if start == 0 or value[start - 1] in _SEPARATORS:
                end = value.find(b";", start)
                content = value[start + len(needle) : end if end != -1 else len(value)].strip()
                if len(content) >= 2 and content[:1] == content[-1:] == b'"':
                    content = content[1:-1]
                return content
            start = value.find(needle, start + 1)
    return None
