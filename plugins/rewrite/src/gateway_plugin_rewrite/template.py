"""The ``replacement`` of a regex rule, parsed once at bind time and rendered per match.

Syntax (as ingress-nginx's ``rewrite-target``): ``$1``..``$9`` insert a capture group,
``${12}`` or ``${name}`` any numbered or named group, ``$0`` the whole match, ``$$`` a
literal ``$``. The first ``?`` outside a capture starts the replacement's own query.
Captures are encoded for where they land (path or query), so a client cannot add segments
or query parameters that the rule did not write.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway_plugin_rewrite.paths import (
    PATH_SAFE,
    QUERY_SAFE,
    QUERY_VALUE_SAFE,
    check_literal,
    encode,
    has_dot_segment,
    single_leading_slash,
)

_REFERENCE = re.compile(r"\$(?:(\$)|(\d)|\{([^}]*)\})")
_GROUP_NAME = re.compile(r"^(?:\d{1,3}|[A-Za-z_][A-Za-z0-9_]{0,63})$")

Part = str | int
"""A literal (already encoded for the wire) or a group number."""


@dataclass(frozen=True, slots=True)
class Rendered:
    """A rendered replacement: the new raw path, and the query it adds (or None)."""

    path: bytes
    query: bytes | None


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed replacement: path parts, then query parts when it has a ``?``."""

    path: tuple[Part, ...]
    query: tuple[Part, ...] | None

    @classmethod
    def parse(cls, text: str, pattern: re.Pattern[str]) -> Template:
        """Parse ``text`` against ``pattern``'s groups; ValueError with the reason if invalid."""
        if not text.startswith("/"):
            raise ValueError("replacement must start with '/' (a path on the upstream)")
        check_literal(text, "replacement")
        path: list[Part] = []
        query: list[Part] | None = None
        last = 0

        def literal(chunk: str) -> None:
            nonlocal query
            if query is None and "?" in chunk:
                before, _, after = chunk.partition("?")
                path.append(encode(before, PATH_SAFE))
                query = [encode(after, QUERY_SAFE)]
            elif query is None:
                path.append(encode(chunk, PATH_SAFE))
            else:
                query.append(encode(chunk, QUERY_SAFE))

        for reference in _REFERENCE.finditer(text):
            literal(text[last : reference.start()])
            last = reference.end()
            dollar, digit, braced = reference.groups()
            if dollar:
                literal("$")
                continue
            group = _group_number(digit if digit is not None else braced, pattern)
            (path if query is None else query).append(group)
        rest = text[last:]
        if "$" in rest:
            raise ValueError("replacement: '$' must be followed by a group number, '{name}' or '$'")
        literal(rest)
        query_parts = None if query is None else tuple(part for part in query if part != "")
        template = cls(tuple(part for part in path if part != ""), query_parts)
        sample = "".join(part if isinstance(part, str) else "x" for part in template.path)
        if has_dot_segment(sample):
            raise ValueError("replacement must not contain '.' or '..' path segments")
        return template

    def render(self, match: re.Match[str]) -> Rendered:
        """The replacement for ``match`` (captures come from the decoded view)."""
        path = "".join(_fill(part, match, PATH_SAFE) for part in self.path)
        path = single_leading_slash(path)
        query = None
        if self.query is not None:
            query = "".join(_fill(part, match, QUERY_VALUE_SAFE) for part in self.query).encode("ascii")
        return Rendered(path.encode("ascii"), query)


def _fill(part: Part, match: re.Match[str], safe: str) -> str:
    if isinstance(part, str):
        return part
    return encode(match.group(part) or "", safe)


def _group_number(reference: str, pattern: re.Pattern[str]) -> int:
    if not _GROUP_NAME.match(reference):
        raise ValueError(f"replacement: '${{{reference}}}' is not a group number or name")
    if reference.isdigit():
        number = int(reference)
        if number > pattern.groups:
            raise ValueError(f"replacement refers to group ${number} but the regex has {pattern.groups} group(s)")
        return number
    if reference not in pattern.groupindex:
        raise ValueError(f"replacement refers to group {reference!r}, which the regex does not name")
    return pattern.groupindex[reference]
