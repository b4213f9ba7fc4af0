"""The ``meta-native.io/plugin.body-limit`` annotation, validated.

Sizes are written as ingress-nginx's ``proxy-body-size`` (nginx's ``client_max_body_size``)
writes them: a number of bytes, optionally followed by ``k``, ``m`` or ``g`` (binary
multiples, either case). ``0`` turns the check off, as it does in nginx.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

MAX_SIZE_LIMIT = 2**63 - 1
"""Largest limit accepted (nginx's ``off_t``); anything larger is surely a typo."""

_SIZE = re.compile(r"(\d{1,19})\s*([kmg]?)", re.IGNORECASE | re.ASCII)
_MULTIPLIERS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(value: Any) -> int:
    """Bytes from ``value``: a non-negative integer or a size string like ``"512k"``, ``"10m"``.

    Raises ValueError with the accepted syntax for anything else (pydantic reports it).
    """
    if isinstance(value, bool):
        raise ValueError("a size is a number of bytes or a string like '512k', '10m', '1g', not a boolean")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        match = _SIZE.fullmatch(value.strip())
        if match is None:
            raise ValueError(
                f"{value[:40]!r} is not a size: write bytes, or a number followed by k, m or g "
                "(binary multiples, as in ingress-nginx's proxy-body-size), e.g. '512k' or '10m'"
            )
        size = int(match.group(1)) * _MULTIPLIERS[match.group(2).lower()]
    else:
        raise ValueError("a size is a number of bytes or a string like '512k', '10m', '1g'")
    if size < 0:
        raise ValueError("a size cannot be negative (0 turns the limit off)")
    if size > MAX_SIZE_LIMIT:
        raise ValueError(f"a size must be at most {MAX_SIZE_LIMIT} bytes")
    return size


ByteSize = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": r"^\s*\d{1,19}\s*[kKmMgG]?\s*$"},
            ]
        }
    ),
]
"""A size in bytes; in config, an integer or a string such as ``"10m"``."""


class BodyLimitConfig(BaseModel):
    """How large a request body a route accepts."""

    model_config = ConfigDict(extra="forbid")

    max_size: ByteSize = Field(
        1024**2,
        description="Largest request body accepted, in bytes, or with a `k`, `m` or `g` suffix "
        "(binary multiples, as ingress-nginx's `proxy-body-size`: `512k`, `10m`, `1g`). "
        "Larger bodies get `413`. `0` turns the limit off (e.g. to override a global default on one Ingress).",
    )
