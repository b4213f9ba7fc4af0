"""Header value templates: literal text with a few ``${variable}`` slots, compiled once.

There is no expression language on purpose: a template is literal text, ``$$`` (a literal
``$``) and ``${name}`` where ``name`` is one of :data:`VARIABLES`. Anything else is refused
when the annotation is validated, so annotation text can never become code. Templates are
compiled at bind time into parts; rendering one per request is a join, nothing more.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateway_core import RequestContext

Resolver = Callable[[RequestContext], str]
"""Reads one variable's value from the request."""

VARIABLES: Mapping[str, str] = {
    "client_ip": "the client address, derived under the trusted-proxy rules",
    "request_id": "the request id (the request-id header as the request goes upstream), or empty",
    "host": "the request's host, lowercase, without port",
    "method": "the request method",
    "path": "the decoded, normalised path that routing matched (no query)",
    "scheme": "`http` or `https`, as the client used it (X-Forwarded-Proto from trusted proxies)",
}
"""Every variable a template may use, with what it expands to."""

_TOKEN = re.compile(r"\$(?:\$|\{([^}]*)\}|)")
_VARIABLE_NAME = re.compile(r"^[a-z_]{1,32}$")
_NOT_IN_A_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
"""Control characters (all but horizontal tab): never part of a header value (RFC 9110 5.5)."""


def parse(template: str) -> list[str | tuple[str]]:
    """Literal strings and ``(variable,)`` tuples; ValueError with a clear message if invalid."""
    if _NOT_IN_A_VALUE.search(template):
        raise ValueError("a header value must not contain control characters (CR, LF, NUL, ...)")
    if any(ord(char) > 0xFF for char in template):
        raise ValueError("a header value must be ASCII or Latin-1 text")
    parts: list[str | tuple[str]] = []
    literal: list[str] = []
    position = 0
    for match in _TOKEN.finditer(template):
        literal.append(template[position : match.start()])
        position = match.end()
        if match.group(0) == "$$":
            literal.append("$")
            continue
        name = match.group(1)
        if name is None:
            raise ValueError(f"{template!r}: write a literal `$` as `$$`; a variable as `${{name}}`")
        if not _VARIABLE_NAME.match(name) or name not in VARIABLES:
            known = ", ".join(f"${{{known}}}" for known in VARIABLES)
            raise ValueError(f"{template!r}: unknown variable `${{{name}}}`; the variables are {known}")
        _flush(literal, parts)
        parts.append((name,))
    literal.append(template[position:])
    _flush(literal, parts)
    return parts


def _flush(literal: list[str], parts: list[str | tuple[str]]) -> None:
    text = "".join(literal)
    if text:
        parts.append(text)
    literal.clear()


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled header value: a constant, or parts joined per request."""

    constant: str | None
    parts: tuple[str | Resolver, ...] = ()

    def render(self, ctx: RequestContext) -> str:
        """The value for this request (may be empty, or not a valid header value)."""
        if self.constant is not None:
            return self.constant
        return "".join(part if isinstance(part, str) else part(ctx) for part in self.parts)


def compile_template(template: str, resolvers: Mapping[str, Resolver]) -> Template:
    """Compile ``template`` (already validated) against the variable ``resolvers``."""
    parts = parse(template)
    if all(isinstance(part, str) for part in parts):
        return Template("".join(part for part in parts if isinstance(part, str)))
    return Template(None, tuple(part if isinstance(part, str) else resolvers[part[0]] for part in parts))


def valid_value(value: str) -> bool:
    """Whether an expanded value may travel in a header (no control characters)."""
    return not _NOT_IN_A_VALUE.search(value)
