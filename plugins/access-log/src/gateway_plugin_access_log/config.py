"""The ``meta-native.io/plugin.access-log`` annotation, validated.

It names what a line holds and where it goes. It must not name anything a line could leak
by accident: credential headers are refused, and the query string is a field of its own
that is off by default.
"""

from __future__ import annotations

import posixpath

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway_core.plugin_api import HeaderName

FIELDS = (
    "time",
    "client",
    "peer",
    "method",
    "scheme",
    "host",
    "path",
    "uri",
    "status",
    "bytes_in",
    "bytes_out",
    "duration_ms",
    "upstream",
    "upstream_latency_ms",
    "route",
    "ingress",
    "service",
    "plugins",
    "identity",
    "error",
    "user_agent",
    "referer",
    "request_id",
)
"""Every field a line can hold, in the order of the docs."""

DEFAULT_FIELDS = (
    "time",
    "client",
    "method",
    "host",
    "path",
    "status",
    "bytes_in",
    "bytes_out",
    "duration_ms",
    "upstream",
    "upstream_latency_ms",
    "route",
    "ingress",
    "plugins",
    "identity",
    "error",
)
"""The fields of a line when the config names none (no query string, no client headers)."""

REFUSED_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "x-auth-token",
        "x-csrf-token",
        "x-xsrf-token",
        "x-amz-security-token",
    }
)
"""Request headers that carry credentials: listing one in ``headers`` is refused."""

STANDARD_STREAMS = ("stdout", "stderr")
FILE_SUFFIXES = (".log", ".jsonl")


class AccessLogConfig(BaseModel):
    """Which fields a line holds, which client headers it adds, and where lines go."""

    model_config = ConfigDict(extra="forbid")

    output: str = Field(
        "stdout",
        min_length=1,
        max_length=4096,
        description="Where lines go: `stdout`, `stderr`, or an absolute path to a file ending in `.log` or "
        "`.jsonl` in an existing directory, opened in append mode and reopened when it is moved "
        "(logrotate). Every route writing to one output shares one writer per process.",
    )
    fields: list[str] = Field(
        default_factory=lambda: list(DEFAULT_FIELDS),
        min_length=1,
        description="The fields of each line, in this order; any of: "
        + ", ".join(f"`{name}`" for name in FIELDS)
        + ". `uri` is the path with the query string, which may carry secrets: it is not in the default list.",
    )
    headers: list[HeaderName] = Field(
        default_factory=list,
        max_length=32,
        description="Client request headers to log, as a `headers` object (lowercase name -> value, `null` "
        "when absent; repeated headers joined with `, `). Credential headers (Authorization, Cookie, "
        "X-API-Key, ...) are refused.",
    )
    request_id_header: HeaderName = Field(
        "X-Request-ID", description="The client request header logged as the `request_id` field."
    )
    queue_size: int = Field(
        10_000,
        ge=1,
        le=1_000_000,
        description="Lines waiting for the writer, per output and process, before new lines are dropped "
        "(and counted) instead of slowing requests down. Routes sharing an output get the largest size any asks for.",
    )

    @field_validator("output")
    @classmethod
    def _check_output(cls, value: str) -> str:
        if value in STANDARD_STREAMS:
            return value
        if "\0" in value:
            raise ValueError("the output path must not contain NUL")
        if not value.startswith("/"):
            raise ValueError(f"output must be 'stdout', 'stderr' or an absolute file path, not {value!r}")
        if ".." in value.split("/"):
            raise ValueError(f"the output path {value!r} must not contain '..'")
        if not value.endswith(FILE_SUFFIXES):
            raise ValueError(f"the output file {value!r} must end in .log or .jsonl")
        normalized = posixpath.normpath(value)
        if normalized.split("/")[1] in ("proc", "sys", "dev"):
            raise ValueError(f"the output file {value!r} must not be under /proc, /sys or /dev")
        return normalized

    @field_validator("fields")
    @classmethod
    def _check_fields(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in FIELDS]
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(map(repr, unknown))}; known fields: {', '.join(FIELDS)}")
        repeated = sorted({name for name in value if value.count(name) > 1})
        if repeated:
            raise ValueError(f"field(s) listed twice: {', '.join(repeated)}")
        return value

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: list[str]) -> list[str]:
        names = [name.lower() for name in value]
        refused = [name for name in names if name in REFUSED_HEADERS]
        if refused:
            raise ValueError(
                f"header(s) {', '.join(refused)} carry credentials and are never logged "
                f"(refused: {', '.join(sorted(REFUSED_HEADERS))})"
            )
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"header(s) listed twice: {', '.join(repeated)}")
        return names

    @field_validator("request_id_header")
    @classmethod
    def _check_request_id_header(cls, value: str) -> str:
        if value.lower() in REFUSED_HEADERS:
            raise ValueError(f"header {value} carries credentials and is never logged")
        return value
