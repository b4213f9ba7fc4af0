"""Routes: matching (Ingress host/path rules), plugin binding, and building the table.

Pure computation over snapshots and plugin specs; the swap is a single assignment in
``TableHolder``.
"""

from gateway_core.routing.binding import BindingPolicy, BoundPlugin, plugin_config
from gateway_core.routing.build import BuildOptions, build_table
from gateway_core.routing.table import RejectedIngress, Route, RouteTable, TableHolder

__all__ = [
    "BindingPolicy",
    "BoundPlugin",
    "BuildOptions",
    "RejectedIngress",
    "Route",
    "RouteTable",
    "TableHolder",
    "build_table",
    "plugin_config",
]
