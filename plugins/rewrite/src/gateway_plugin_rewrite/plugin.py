"""The ``rewrite`` plugin object: one per route, its rule compiled at bind time.

``on_request`` runs after routing (and after authentication and rate limits, by priority)
and edits ``ctx.request.target``, the raw path and query that go upstream. A path the rule
does not match is forwarded byte for byte.
"""

from __future__ import annotations

import re

from gateway_core import Binding, LocalResponse, RequestContext
from gateway_plugin_rewrite.config import RewriteConfig
from gateway_plugin_rewrite.paths import (
    PATH_SAFE,
    collapse_slashes,
    decode_segment,
    decoded_view,
    encode,
    has_dot_segment,
)
from gateway_plugin_rewrite.template import Rendered, Template

ORIGINAL_URI_HEADER = "X-Original-URI"
"""The request header carrying the client's path and query when ``x_original_uri`` is on."""

_TOO_LONG = LocalResponse.error(414, "uri_too_long", "the request path is too long for this route")
_DOT_SEGMENT = LocalResponse.error(400, "bad_request", "the rewritten path would contain a '.' or '..' segment")
_BAD_TARGET = LocalResponse.error(400, "bad_request", "the request target cannot be forwarded")


class PrefixRule:
    """Replace the path prefix ``prefix`` (whole decoded segments) with ``to``."""

    __slots__ = ("_segments", "_to")

    def __init__(self, prefix: str, to: str) -> None:
        self._segments = tuple(prefix.split("/")[1:]) if prefix != "/" else ()
        # ``to`` without a trailing slash (the rest of the path brings its own), "" for root.
        self._to = encode(to, PATH_SAFE).rstrip("/").encode("ascii")

    def __call__(self, raw_path: bytes) -> Rendered | None:
        segments = raw_path.decode("utf-8", "surrogateescape").split("/")[1:]
        count = len(self._segments)
        if len(segments) < count:
            return None
        for wanted, raw in zip(self._segments, segments, strict=False):
            if decode_segment(raw) != wanted:
                return None
        rest = segments[count:]
        remainder = ("/" + "/".join(rest)).encode("utf-8", "surrogateescape") if rest else b""
        return Rendered(self._to + remainder or b"/", None)


class RegexRule:
    """Search ``pattern`` in the decoded path and render ``template`` from the match."""

    __slots__ = ("_pattern", "_template", "_max_length")

    def __init__(self, pattern: re.Pattern[str], template: Template, max_length: int) -> None:
        self._pattern = pattern
        self._template = template
        self._max_length = max_length

    def __call__(self, raw_path: bytes) -> Rendered | LocalResponse | None:
        if len(raw_path) > self._max_length:
            return _TOO_LONG
        match = self._pattern.search(decoded_view(raw_path))
        if match is None:
            return None
        rendered = self._template.render(match)
        if has_dot_segment(rendered.path.decode("ascii")):
            return _DOT_SEGMENT
        return rendered


class Rewrite:
    """Rewrites the upstream request target of one route."""

    def __init__(self, config: RewriteConfig) -> None:
        self.config = config
        self._rule: PrefixRule | RegexRule
        if config.strip_prefix is not None:
            self._rule = PrefixRule(config.strip_prefix, "/")
        elif config.replace_prefix is not None:
            self._rule = PrefixRule(config.replace_prefix.from_, config.replace_prefix.to)
        else:
            self._rule = RegexRule(config.pattern(), config.template(), config.max_path_length)

    @classmethod
    def from_binding(cls, config: RewriteConfig, binding: Binding) -> Rewrite:
        return cls(config)

    async def on_request(self, ctx: RequestContext) -> LocalResponse | None:
        request = ctx.request
        original = request.target
        raw_path, question, query = original.partition(b"?")
        result = self._rule(collapse_slashes(raw_path))
        if isinstance(result, LocalResponse):
            return result
        if self.config.x_original_uri:
            try:
                request.headers.set(ORIGINAL_URI_HEADER, original.decode("latin-1"))
            except ValueError:
                return _BAD_TARGET
        if result is None:
            return None
        if result.query is None:
            request.target = result.path + question + query
        else:
            joined = b"&".join(part for part in (result.query, query) if part)
            request.target = result.path + (b"?" + joined if joined else b"")
        return None
