"""The ``meta-native.io/plugin.rate-limit`` annotation, validated.

Everything that can be checked without I/O is checked here, so a bad annotation rejects its
Ingress with a message naming the field: rate limits are parsed with ``limits.parse_many``,
the storage URL is taken apart, and credentials in it are refused (they belong in a Secret).
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from limits import RateLimitItem, parse_many
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway_core import HeaderName

Strategy = Literal["fixed-window", "moving-window", "sliding-window-counter"]
KeyKind = Literal["client_ip", "header", "identity"]
Scope = Literal["route", "ingress", "global"]

MAX_LIMITS = 8
"""Limits one binding may enforce at once: each costs one storage call per request."""
MAX_AMOUNT = 1_000_000_000
"""The largest request count per window (Redis counters are 64-bit; nobody needs more)."""
MAX_MOVING_WINDOW_AMOUNT = 10_000
"""``moving-window`` stores one timestamp per allowed request; past this, memory and time grow."""

_SYNTAX = "write it like `100/minute`, `10 per 2 seconds` or `1000/hour`"


def parse_limit(text: str) -> list[RateLimitItem]:
    """The rate limits in ``text`` (``limits`` notation, several split by `;`); ValueError if bad."""
    if not text.strip():
        raise ValueError(f"a rate limit must not be empty; {_SYNTAX}")
    try:
        items = parse_many(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a rate limit ({exc}); {_SYNTAX}") from None
    for item in items:
        if not 1 <= item.amount <= MAX_AMOUNT:
            raise ValueError(f"{text!r}: the request count must be between 1 and {MAX_AMOUNT}")
    return items


class RateLimitConfig(BaseModel):
    """How many requests, counted per what, in which storage."""

    model_config = ConfigDict(extra="forbid")

    limit: str | list[str] = Field(
        description="The rate limit in `limits` notation (`100/minute`, `10 per 2 seconds`), or a list "
        "of them enforced together (`[10/second, 1000/hour]`): a request passes only while every limit has room.",
    )
    strategy: Strategy = Field(
        "fixed-window",
        description="How requests are counted: `fixed-window` (cheapest; up to twice the limit can pass "
        "around a window boundary), `sliding-window-counter` (weighs the previous window in; smooth, cheap) "
        f"or `moving-window` (exact; keeps one timestamp per request, at most {MAX_MOVING_WINDOW_AMOUNT} per window).",
    )
    key: KeyKind = Field(
        "client_ip",
        description="What a counter is kept per: `client_ip` (the peer, or the client a trusted proxy "
        "names), `header` (the value of the request header `header`) or `identity` (the consumer an "
        "authentication plugin established). A request without a header value or an identity is counted "
        "by its client IP.",
    )
    header: HeaderName | None = Field(
        None, description="The request header whose value is the key; required with `key: header`, refused otherwise."
    )
    scope: Scope = Field(
        "ingress",
        description="Which requests share counters: `ingress` (every path of this Ingress), `route` "
        "(each path of it separately) or `global` (every route bound with the same limit and storage).",
    )
    storage: str = Field(
        "memory://",
        description="Where counters live: `memory://` (this worker process only) or "
        "`redis://host:port/db` / `rediss://...` (shared by every worker and replica). No credentials "
        "in the URL: name a Secret in `storage_secret`.",
    )
    storage_secret: str | None = Field(
        None,
        min_length=1,
        max_length=253,
        description="Secret (in the Ingress's namespace) with the Redis `password`, and optionally "
        "`username`, for a Redis storage that requires authentication.",
    )
    storage_timeout: float = Field(
        0.25,
        gt=0,
        le=5,
        description="Seconds a request may wait for the Redis storage, all its limits together; past "
        "it, the storage counts as failed (see `on_storage_error`).",
    )
    on_storage_error: Literal["allow", "deny"] = Field(
        "allow",
        description="When the storage fails or times out: `allow` the request uncounted (fail open) or "
        "`deny` it with `503 rate_limit_unavailable` (fail closed).",
    )
    response_headers: bool = Field(
        False,
        description="Also add `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` and "
        "`RateLimit-Policy` to responses that pass (they are always on a `429`). Costs one more "
        "storage read per limit and request: a Redis round trip each with a Redis storage.",
    )

    @field_validator("limit")
    @classmethod
    def _parse_limits(cls, value: str | list[str]) -> str | list[str]:
        texts = [value] if isinstance(value, str) else value
        if not texts:
            raise ValueError(f"give at least one rate limit; {_SYNTAX}")
        items = [item for text in texts for item in parse_limit(text)]
        if len(items) > MAX_LIMITS:
            raise ValueError(f"at most {MAX_LIMITS} rate limits per binding, got {len(items)}")
        seen: set[tuple[int, int]] = set()
        for item in items:
            window = (item.amount, item.get_expiry())
            if window in seen:
                raise ValueError(f"the rate limit {item} is given twice")
            seen.add(window)
        return value

    @field_validator("storage")
    @classmethod
    def _check_storage(cls, value: str) -> str:
        if value == "memory://":
            return value
        try:
            parts = urlsplit(value)
            credentials = parts.username or parts.password
        except ValueError as exc:
            raise ValueError(f"the storage is not a URL ({exc})") from None
        if credentials:  # checked first: the messages below may quote the URL
            raise ValueError(
                "no credentials in the storage URL: put the Redis password in a Secret named by `storage_secret`"
            )
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"{value!r}: the storage must be `memory://` or `redis://host:port/db` (or `rediss://`)")
        try:
            parts.port  # noqa: B018 - parsed only to refuse a bad port
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a storage URL ({exc})") from None
        if not parts.hostname:
            raise ValueError(f"{value!r}: the Redis URL needs a host, e.g. `redis://redis.cache:6379/0`")
        if parts.query or parts.fragment:
            raise ValueError(
                f"{value!r}: the Redis URL takes no query or fragment (timeouts come from `storage_timeout`)"
            )
        database = parts.path.strip("/")
        if database and not database.isdigit():
            raise ValueError(f"{value!r}: the Redis database must be a number, e.g. `/0`")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RateLimitConfig:
        if self.key == "header" and self.header is None:
            raise ValueError("`key: header` needs `header`: the name of the request header to count by")
        if self.key != "header" and self.header is not None:
            raise ValueError(f"`header` is only used with `key: header` (the key is {self.key!r})")
        if self.storage_secret is not None and self.storage == "memory://":
            raise ValueError("`storage_secret` is only used with a Redis storage")
        if self.strategy == "moving-window":
            for item in self.rate_limits():
                if item.amount > MAX_MOVING_WINDOW_AMOUNT:
                    raise ValueError(
                        f"{item}: `moving-window` keeps one entry per request, at most {MAX_MOVING_WINDOW_AMOUNT} "
                        "per window; use `sliding-window-counter` for larger limits"
                    )
        return self

    def rate_limits(self) -> list[RateLimitItem]:
        """The parsed limits, shortest window first (the order they are checked in)."""
        texts = [self.limit] if isinstance(self.limit, str) else self.limit
        items = [item for text in texts for item in parse_limit(text)]
        return sorted(items, key=lambda item: (item.get_expiry(), item.amount))
