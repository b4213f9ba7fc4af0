"""The ``ip-filter`` plugin object: one per route, holding that route's compiled lists.

The lists are compiled when the plugin is bound; a request costs one dictionary lookup of
its client address (the verdicts of recent addresses are kept, boundedly) or, on a miss,
one address parse and two bisections.
"""

from __future__ import annotations

from gateway_core import Binding, LocalResponse, RequestContext
from gateway_plugin_ip_filter.config import IpFilterConfig
from gateway_plugin_ip_filter.networks import AddressSet, parse_address

FORBIDDEN = LocalResponse.error(403, "forbidden", "requests from this client address are not allowed")

VERDICT_CACHE_SIZE = 4096
"""Client addresses whose verdict is remembered per route; the oldest is forgotten first."""


class IpFilter:
    """Refuses clients the deny list names or the allow list (when there is one) does not."""

    __slots__ = ("config", "_allow", "_deny", "_verdicts")

    def __init__(self, config: IpFilterConfig) -> None:
        self.config = config
        self._allow = AddressSet.parse(config.allow)
        self._deny = AddressSet.parse(config.deny)
        self._verdicts: dict[str, bool] = {}

    @classmethod
    def from_binding(cls, config: IpFilterConfig, binding: Binding) -> IpFilter:
        return cls(config)

    def allows(self, client_ip: str) -> bool:
        """Whether ``client_ip`` may pass: not denied, and allowed if there is an allow list.

        An address that does not parse matches no network: refused when there is an allow
        list, let through by a deny list alone.
        """
        verdict = self._verdicts.get(client_ip)
        if verdict is None:
            address = parse_address(client_ip)
            if address is None:
                verdict = not self._allow
            else:
                verdict = address not in self._deny and (not self._allow or address in self._allow)
            if len(self._verdicts) >= VERDICT_CACHE_SIZE:
                del self._verdicts[next(iter(self._verdicts))]
            self._verdicts[client_ip] = verdict
        return verdict

    async def on_request(self, ctx: RequestContext) -> LocalResponse | None:
        return None if self.allows(ctx.client_ip) else FORBIDDEN
