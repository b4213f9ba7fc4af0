"""The ``request-id`` plugin object: one per route, giving every request an id.

``on_request`` decides the id once (the client's, when trusted and well formed, else a new
UUID4), sets it on the upstream request and stashes it under :data:`REQUEST_ID`;
``on_response`` and ``on_local_response`` echo it. It must not do per-request work that the config fixes: the
header name and the validity check are compiled at bind time.
"""

from __future__ import annotations

import re
import uuid

from gateway_core import Binding, LocalResponse, RequestContext, StashKey, UpstreamResponse
from gateway_plugin_request_id.config import RequestIdConfig

REQUEST_ID: StashKey[str] = StashKey("request-id.id")
"""The request's id, for other plugins and log lines: ``ctx.stash.get(REQUEST_ID)``."""


def new_request_id() -> str:
    """A fresh id: a random UUID4 in its canonical 36-character form."""
    return str(uuid.uuid4())


class RequestId:
    """Keeps or generates the id and sends it upstream (no response echo)."""

    __slots__ = ("config", "_name", "_raw_name", "_valid")

    def __init__(self, config: RequestIdConfig) -> None:
        self.config = config
        self._name = config.header
        self._raw_name = config.header.lower().encode("latin-1")
        # Visible ASCII only (no space, no control character, nothing beyond 0x7e).
        self._valid = re.compile(rb"[\x21-\x7e]{1,%d}" % config.max_length).fullmatch

    @classmethod
    def from_binding(cls, config: RequestIdConfig, binding: Binding) -> RequestId:
        """The plugin object for a route; a subclass echoes the id when ``response_header`` is on."""
        if config.response_header:
            return EchoedRequestId(config)
        return cls(config)

    async def on_request(self, ctx: RequestContext) -> LocalResponse | None:
        headers = ctx.request.headers
        found: bytes | None = None
        count = 0
        raw_name = self._raw_name
        for name, value in headers.raw:
            if name == raw_name:
                found = value
                count += 1
        if count == 1 and self.config.trust_incoming and found is not None and self._valid(found):
            request_id = found.decode("ascii")
        else:  # absent, repeated (ambiguous), malformed or not trusted: a new one replaces them all
            request_id = new_request_id()
            headers.set(self._name, request_id)
        ctx.stash[REQUEST_ID] = request_id
        return None


class EchoedRequestId(RequestId):
    """Also puts the id on the response to the client.

    A class of its own so that routes with ``response_header: false`` have no
    ``on_response`` phase to run at all.
    """

    __slots__ = ()

    async def on_response(self, ctx: RequestContext, response: UpstreamResponse) -> None:
        request_id = ctx.stash.get(REQUEST_ID)
        if request_id is not None and self._name not in response.headers:
            response.headers.raw.append((self._raw_name, request_id.encode("ascii")))

    async def on_local_response(self, ctx: RequestContext, response: LocalResponse) -> None:
        """The gateway's own answers (a 401, a 429, a 502) carry the id too."""
        request_id = ctx.stash.get(REQUEST_ID)
        if request_id is not None:
            response.headers.append((self._raw_name, request_id.encode("ascii")))
