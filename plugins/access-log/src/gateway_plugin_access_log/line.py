"""One access log line per request, as cheaply as Python allows.

A config is compiled once, at bind time, into a ``%``-template holding the chosen fields in
their order, with the keys and the route's constant values (route, ingress, service)
already written in, and an ``itemgetter`` that picks the values the template needs from a
fixed row. Per request the only work is reading attributes, escaping strings with the C
JSON escaper, and one ``%`` formatting: no dict, no ``json.dumps`` (which measured about
twice as slow for the default fields).

Output is ASCII JSON: control characters, quotes, backslashes, non-ASCII text and even
lone surrogates are escaped, so a line is always one valid JSON object on one line,
whatever the client sent. Only our own field names and escaped values are template text
(``%`` doubled); header names from the config are escaped values too.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Sequence
from json.encoder import encode_basestring_ascii
from operator import itemgetter
from typing import Any

from gateway_core import Endpoint, Outcome, RequestContext, RouteInfo, StashKey

escape: Callable[[str], str] = encode_basestring_ascii
"""A JSON string literal (quotes included) of its argument, in ASCII."""

# Positions of the values in the row ``LineFormat.render`` builds for every request.
_ROW = (
    "time",  # two slots: the date text and the milliseconds
    "time_ms",
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
    "plugins",
    "identity",
    "error",
    "user_agent",
    "referer",
    "request_id",
    "headers",
)
_SLOT = {name: index for index, name in enumerate(_ROW)}
_CONVERSIONS = {"time": '"%s.%03dZ"', "status": "%d", "bytes_in": "%d", "bytes_out": "%d", "duration_ms": "%.3f"}
"""How the template formats a field; any other field's value is already a JSON token."""

_HEADER_FIELDS = {"user_agent": b"user-agent", "referer": b"referer"}


def request_id_key() -> StashKey[str] | None:
    """The ``request-id`` plugin's stash key when that distribution is installed, else None.

    Looked up by name, at bind time, so access-log does not depend on request-id.
    """
    try:
        module = importlib.import_module("gateway_plugin_request_id")
    except ImportError:
        return None
    key = getattr(module, "REQUEST_ID", None)
    return key if isinstance(key, StashKey) else None


def utc_date(second: int) -> str:
    """``2026-05-01T12:30:00`` for ``second`` (seconds since the epoch), in UTC."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


class LineFormat:
    """The line of one config on one route: ``render(ctx, outcome)`` returns it, newline included."""

    __slots__ = (
        "_template",
        "_service",
        "_service_pair",
        "_canary_templates",
        "_pick",
        "_stamp",
        "_uri",
        "_upstream",
        "_latency",
        "_scan",
        "_header_slots",
        "_extra_keys",
        "_plugins",
        "_last_plugins",
        "_last_endpoint",
        "_request_id_key",
    )

    def __init__(
        self,
        fields: Sequence[str],
        route: RouteInfo,
        *,
        headers: Sequence[str] = (),
        request_id_header: str = "X-Request-ID",
    ) -> None:
        constants = {"route": route.id, "ingress": route.ingress_ref, "service": route.service}
        parts: list[str] = []
        picked: list[int] = []
        for name in fields:
            key = escape(name) + ":"
            if name in constants:
                parts.append(_pair(name, constants[name]))
                continue
            parts.append(key + _CONVERSIONS.get(name, "%s"))
            picked.append(_SLOT[name])
            if name == "time":
                picked.append(_SLOT["time_ms"])
        if headers:
            parts.append('"headers":%s')
            picked.append(_SLOT["headers"])
        self._template = "{" + ",".join(parts) + "}\n"
        self._service = route.service
        self._service_pair = _pair("service", route.service) if "service" in fields else None
        """The template text of the route's own service: replaced when a canary serves a request."""
        self._canary_templates: dict[str, str] = {}
        self._pick = _picker(picked)
        self._stamp: tuple[int, str] = (-1, "")
        """The current second and its date text: formatted once per second."""
        self._uri = "uri" in fields
        self._upstream = "upstream" in fields
        self._latency = "upstream_latency_ms" in fields
        # Client headers to read, each once: the optional fields first, then ``headers``.
        names: list[bytes] = []
        slots: dict[str, int] = {}
        header_fields = {**_HEADER_FIELDS, "request_id": request_id_header.lower().encode("latin-1")}
        for field, raw_name in header_fields.items():
            if field in fields:
                if raw_name not in names:
                    names.append(raw_name)
                slots[field] = names.index(raw_name)
        extra: list[int] = []
        for header in headers:
            wanted = header.lower().encode("latin-1")
            if wanted not in names:
                names.append(wanted)
            extra.append(names.index(wanted))
        self._scan = {name: index for index, name in enumerate(names)}
        self._header_slots = (slots.get("user_agent"), slots.get("referer"), slots.get("request_id"))
        self._extra_keys = tuple(
            (escape(header.lower()) + ":", index) for header, index in zip(headers, extra, strict=True)
        )
        self._plugins: dict[tuple[str, ...], str] = {}
        self._last_plugins: tuple[tuple[str, ...], str] = ((), "[]")
        self._last_endpoint: tuple[Endpoint | None, str] = (None, "null")
        self._request_id_key = request_id_key() if "request_id" in fields else None

    def render(self, ctx: RequestContext, outcome: Outcome) -> str:
        """The JSON line for one request.

        Values of fields the config leaves out are not computed when that costs more than
        reading an attribute (the upstream address, the latency, the query, the headers).
        """
        now = time.time()
        second = int(now)
        stamp = self._stamp
        if stamp[0] != second:
            stamp = self._stamp = (second, utc_date(second))  # one assignment: safe across threads
        endpoint = outcome.endpoint
        if endpoint is None or not self._upstream:
            upstream = "null"
        else:
            last = self._last_endpoint
            upstream = last[1] if endpoint is last[0] else self._endpoint_token(endpoint)
        latency = outcome.upstream_latency
        identity = ctx.identity
        error = outcome.error
        plugins = outcome.plugins
        known = self._last_plugins
        plugins_token = known[1] if plugins is known[0] else self._plugins_token(plugins)
        if self._scan:
            user_agent, referer, request_id, extra = self._headers(ctx)
        else:
            user_agent = referer = request_id = extra = "null"
        if self._request_id_key is not None:  # the id request-id kept or generated wins
            stashed = ctx.stash.get(self._request_id_key)
            if stashed is not None:
                request_id = escape(stashed)
        row = (
            stamp[1],
            int((now - second) * 1000),
            escape(ctx.client_ip),
            escape(ctx.peer_ip),
            escape(ctx.method),
            escape(ctx.scheme),
            escape(ctx.host),
            escape(ctx.path),
            escape(ctx.request.target.decode("latin-1")) if self._uri else "",
            outcome.status,
            outcome.bytes_received,
            outcome.bytes_sent,
            outcome.duration * 1000.0,
            upstream,
            "null" if latency is None or not self._latency else "%.3f" % (latency * 1000.0),
            plugins_token,
            "null" if identity is None else escape(identity),
            "null" if error is None else escape(error),
            user_agent,
            referer,
            request_id,
            extra,
        )
        template = self._template
        if ctx.service != self._service and self._service_pair is not None:
            template = self._canary_template(ctx.service)
        return template % self._pick(row)

    def _canary_template(self, service: str) -> str:
        """The template with ``service`` (a canary that served the request) in place of the route's own."""
        template = self._canary_templates.get(service)
        if template is None:
            assert self._service_pair is not None
            template = self._template.replace(self._service_pair, _pair("service", service), 1)
            if len(self._canary_templates) < 64:
                self._canary_templates[service] = template
        return template

    def _endpoint_token(self, endpoint: Endpoint) -> str:
        """The address of ``endpoint`` as JSON; the last one is remembered by identity."""
        token = escape(endpoint.address)
        self._last_endpoint = (endpoint, token)
        return token

    def _plugins_token(self, plugins: tuple[str, ...]) -> str:
        """The JSON list of plugin names, remembered (a route has few distinct lists).

        The tuple of a request nobody answered is the route's own, the same object every
        time: ``render`` checks the last one by identity before hashing anything.
        """
        token = self._plugins.get(plugins)
        if token is None:
            token = "[" + ",".join(map(escape, plugins)) + "]"
            if len(self._plugins) >= 64:
                self._plugins.clear()
            self._plugins[plugins] = token
        self._last_plugins = (plugins, token)
        return token

    def _headers(self, ctx: RequestContext) -> tuple[str, str, str, str]:
        """Tokens for user_agent, referer, request_id and the ``headers`` object, in one pass.

        These are the headers the client sent (the ASGI scope's), not the upstream request's.
        """
        scan = self._scan
        found: list[bytes | None] = [None] * len(scan)
        for name, value in ctx.scope["headers"]:
            index = scan.get(name)
            if index is not None:
                previous = found[index]
                found[index] = value if previous is None else previous + b", " + value
        tokens = ["null" if value is None else escape(value.decode("latin-1")) for value in found]
        user_agent, referer, request_id = ("null" if index is None else tokens[index] for index in self._header_slots)
        extra = "{" + ",".join(key + tokens[index] for key, index in self._extra_keys) + "}"
        return user_agent, referer, request_id, extra


def _pair(name: str, value: str) -> str:
    """``"name":"value"`` as template text (JSON-escaped, ``%`` doubled)."""
    return escape(name) + ":" + escape(value).replace("%", "%%")


def _picker(indexes: list[int]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """A function taking the values at ``indexes`` from a row, always as a tuple."""
    if len(indexes) == 1:  # itemgetter with one index returns the item itself
        index = indexes[0]
        return lambda row: (row[index],)
    if not indexes:  # only constant fields
        return lambda row: ()
    return itemgetter(*indexes)
