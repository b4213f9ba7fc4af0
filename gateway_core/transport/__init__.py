"""How the gateway reaches upstreams: the transport interface, its implementations, balancers.

``pool`` (the default, pooled keep-alive HTTP/1.1) and ``httpx_transport`` implement
:class:`~gateway_core.transport.base.Transport`; ``balancing`` chooses endpoints.
"""
