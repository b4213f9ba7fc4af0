"""The admin API (FastAPI), on its own listener so no admin path can shadow a user's route.

``/healthz`` (the process answers), ``/ready`` (the first route table is loaded),
``/metrics`` (Prometheus, through prometheus-fastapi-instrumentator), ``/routes`` (the
table, rejected Ingresses with reasons, manifest problems), ``/plugins`` (installed
plugins, versions, priorities, config schemas), plus routers from the
``gateway_admin_routers`` hook.
"""

from __future__ import annotations

from typing import Any, Protocol

import pluggy
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from prometheus_fastapi_instrumentator import Instrumentator

from gateway_core.metrics import GatewayMetrics
from gateway_core.plugin_api import PluginSpec
from gateway_core.plugin_manager import installed_version, plugin_distributions
from gateway_core.routing.table import TableHolder
from gateway_core.settings import GatewaySettings


class AdminState(Protocol):
    """What the admin API reads from the gateway."""

    settings: GatewaySettings
    pm: pluggy.PluginManager
    specs: dict[str, PluginSpec[Any]]
    tables: TableHolder
    metrics: GatewayMetrics

    @property
    def ready(self) -> bool: ...


def describe_plugins(state: AdminState) -> dict[str, Any]:
    """Installed request-plane plugins and the hook plugins that provide them."""
    return {
        "plugins": [
            {
                "name": spec.name,
                "version": spec.version,
                "priority": spec.priority,
                "description": spec.description,
                "config_schema": spec.config_schema(),
            }
            for spec in sorted(state.specs.values(), key=lambda spec: (-spec.priority, spec.name))
        ],
        "distributions": dict(plugin_distributions(state.pm)),
    }


def create_admin_app(state: AdminState) -> FastAPI:
    """The admin app for one gateway."""
    app = FastAPI(title="Meta-Native Gateway admin", version=installed_version(), docs_url="/docs", redoc_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is alive and answering."""
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        """200 once the first route table is loaded, 503 before."""
        table = state.tables.current
        if state.ready:
            return JSONResponse({"ready": True, "generation": table.generation})
        return JSONResponse({"ready": False, "reason": "the first route table is not loaded yet"}, status_code=503)

    @app.get("/routes")
    async def routes() -> dict[str, Any]:
        """The current route table, rejected Ingresses with reasons, and manifest problems."""
        return state.tables.current.describe()

    @app.get("/plugins")
    async def plugins() -> dict[str, Any]:
        """Installed plugins: versions, priorities, config schemas."""
        return describe_plugins(state)

    if state.settings.metrics.enabled:
        instrumentator = Instrumentator(registry=state.metrics.registry, excluded_handlers=["/metrics"])
        instrumentator.instrument(app).expose(app, endpoint="/metrics", include_in_schema=False)

    for routers in state.pm.hook.gateway_admin_routers():
        for router in routers or ():
            app.include_router(router)
    return app
