"""An Ingress whose new version does not parse keeps its last good version (DESIGN §4)."""

from __future__ import annotations

from typing import Any

from gateway_core.manifests import build_snapshot
from gateway_core.routing import BuildOptions, build_table
from gateway_core.testing import ingress, path, routed_service
from gateway_core.transport.balancing import round_robin

OPTIONS = BuildOptions(specs={}, balancer_factory=round_robin)


def objects(path_type: str) -> list[tuple[str, dict[str, Any]]]:
    app = ingress("app", rules=[("a.local", [path("/", "api")])])
    app["spec"]["rules"][0]["http"]["paths"][0]["pathType"] = path_type
    return [("manifests.yaml", document) for document in [*routed_service("api", 8080), app]]


def test_unparseable_new_version_keeps_the_last_good_one() -> None:
    good = build_table(build_snapshot(objects("Prefix")), OPTIONS)
    broken = build_table(build_snapshot(objects("Sometimes")), OPTIONS, good)
    route = broken.match("a.local", "/x")
    assert route is not None
    assert route.unavailable is None
    rejected = broken.rejected["default/app"]
    assert rejected.serving_last_good is True
    assert "pathType" in rejected.reasons[0]
    fixed = build_table(build_snapshot(objects("Prefix")), OPTIONS, broken)
    assert fixed.rejected == {}


def test_unparseable_ingress_without_history_is_listed_as_rejected() -> None:
    table = build_table(build_snapshot(objects("Sometimes")), OPTIONS)
    assert table.match("a.local", "/x") is None
    assert table.rejected["default/app"].serving_last_good is False
