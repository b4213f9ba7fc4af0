"""deploy/'s RBAC grants exactly what the provider's code calls: least privilege, verb by verb."""

from __future__ import annotations

import ast
import inspect
import re

import kubernetes.client

from gateway_core.settings import GatewaySettings
from tests.deploy.deploy_support import (
    PROVIDER,
    ROOT,
    of_kind,
    one,
    pod_environment,
    pod_spec,
)

# Least privilege: exactly what the provider's code calls (checked below), one
# (role kind, API group, resource, verb, resource name) per grant; "" as the resource name
# means any object of that kind, "LEASE" the Lease named in the settings.
GRANTS = {
    ("ClusterRole", "", "services", "get", ""),
    ("ClusterRole", "", "services", "list", ""),
    ("ClusterRole", "", "services", "watch", ""),
    ("ClusterRole", "", "secrets", "list", ""),
    ("ClusterRole", "", "secrets", "watch", ""),
    ("ClusterRole", "discovery.k8s.io", "endpointslices", "list", ""),
    ("ClusterRole", "discovery.k8s.io", "endpointslices", "watch", ""),
    ("ClusterRole", "networking.k8s.io", "ingressclasses", "list", ""),
    ("ClusterRole", "networking.k8s.io", "ingressclasses", "watch", ""),
    ("ClusterRole", "networking.k8s.io", "ingresses", "get", ""),
    ("ClusterRole", "networking.k8s.io", "ingresses", "list", ""),
    ("ClusterRole", "networking.k8s.io", "ingresses", "watch", ""),
    ("ClusterRole", "networking.k8s.io", "ingresses/status", "patch", ""),
    ("ClusterRole", "", "events", "create", ""),
    ("ClusterRole", "", "events", "patch", ""),
    ("Role", "coordination.k8s.io", "leases", "create", ""),
    ("Role", "coordination.k8s.io", "leases", "get", "LEASE"),
    ("Role", "coordination.k8s.io", "leases", "patch", "LEASE"),
}


def test_rbac_grants_exactly_the_least_privilege_list(pod_settings: GatewaySettings) -> None:
    lease = pod_settings.kubernetes.lease_name
    granted = set()
    for role in [*of_kind("ClusterRole"), *of_kind("Role")]:
        for rule in role["rules"]:
            names = rule.get("resourceNames") or [""]
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        for name in names:
                            granted.add((role["kind"], group, resource, verb, "LEASE" if name == lease else name))
    assert sorted(granted - GRANTS) == [], "grants beyond least privilege"
    assert sorted(GRANTS - granted) == [], "grants the gateway needs are missing"


def api_classes() -> dict[str, type]:
    """The client's API classes (``CoreV1Api``, ``NetworkingV1Api``, ...) by name."""
    names = [name for name in dir(kubernetes.client) if re.fullmatch(r"\w+V\d\w*Api", name)]
    return {name: getattr(kubernetes.client, name) for name in names}


def rbac_of(api: type, method: str) -> set[tuple[str, str, str]]:
    """(API group, resource, verbs) a client method needs, from the request it builds."""
    source = inspect.getsource(getattr(api, f"_{method}_serialize"))
    http = re.search(r"method='(\w+)'", source)
    path = re.search(r"resource_path='([^']+)'", source)
    assert http is not None, method
    assert path is not None, method
    parts = path.group(1).strip("/").split("/")
    group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1], parts[3:])
    if rest[0] == "namespaces" and len(rest) > 2:
        rest = rest[2:]
    resource = rest[0] + ("/" + rest[2] if len(rest) > 2 else "")
    named = len(rest) > 1
    verbs = {
        "GET": {"get"} if named else {"list", "watch"},  # a list function also serves Watch().stream
        "POST": {"create"},
        "PUT": {"update"},
        "PATCH": {"patch"},
        "DELETE": {"delete"} if named else {"deletecollection"},
    }[http.group(1)]
    return {(group, resource, verb) for verb in verbs}


def provider_api_calls() -> set[tuple[str, str, str]]:
    """Every (group, resource, verb) the Kubernetes provider's code can ask of the API server.

    Each module's names (attributes and string constants, so ``getattr`` tables count too)
    are matched against the methods of the API classes that module uses.
    """
    classes = api_classes()
    needed: set[tuple[str, str, str]] = set()
    for module in sorted(PROVIDER.glob("*.py")):
        tree = ast.parse(module.read_text())
        names = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
        names |= {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
        names |= {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
        }
        names |= {
            node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)
        }
        assert not names & {"call_api", "param_serialize", "DynamicClient"}, (
            f"{module.name} calls the API without a typed method; this test cannot see which"
        )
        used = [classes[name] for name in sorted(names & set(classes))]
        for name in sorted(names):
            owners = [api for api in classes.values() if hasattr(api, f"_{name}_serialize")]
            if not owners:
                continue
            local = [api for api in used if api in owners]
            assert local, f"{module.name} uses {name} without naming its API class"
            for api in local:
                needed |= rbac_of(api, name)
    return needed


def test_rbac_grants_what_the_provider_calls_and_nothing_else() -> None:
    needed = provider_api_calls()
    assert needed, "no Kubernetes API call found in the provider"
    granted = {(group, resource, verb) for _, group, resource, verb, _ in GRANTS}
    assert sorted(needed - granted) == [], "calls the RBAC does not allow: they fail with 403 in a cluster"
    assert sorted(granted - needed) == [], "grants no code uses: drop them"


def test_the_guide_explains_every_grant() -> None:
    text = (ROOT / "docs" / "guides" / "kubernetes.md").read_text()
    table = text[text.index("| API group | Resource | Verbs | Why |") :].split("\n\n")[0]
    explained = set()
    for row in table.splitlines()[2:]:
        group, resource, verbs = (cell.strip() for cell in row.strip("|").split("|")[:3])
        group = "" if group.startswith('`""`') else group.strip("`")
        name = re.findall(r"`([^`]+)`", resource)
        explained |= {(group, name[0], verb.strip()) for verb in verbs.split(",")}
    assert explained == {(group, resource, verb) for _, group, resource, verb, _ in GRANTS}


def test_rbac_never_grants_wildcards_deletes_or_secret_writes() -> None:
    for role in [*of_kind("ClusterRole"), *of_kind("Role")]:
        assert "aggregationRule" not in role
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], f"{role['metadata']['name']}: '*' in {field}"
            assert not {"delete", "deletecollection", "escalate", "bind", "impersonate"} & set(rule["verbs"])
            assert "nonResourceURLs" not in rule
            if "secrets" in rule["resources"]:
                assert set(rule["verbs"]) <= {"get", "list", "watch"}


def test_the_lease_role_is_in_the_namespace_the_gateway_elects_in(pod_settings: GatewaySettings) -> None:
    lease_namespace = pod_settings.kubernetes.lease_namespace or pod_environment()["POD_NAMESPACE"]
    assert one("Role")["metadata"]["namespace"] == lease_namespace


def test_the_roles_are_bound_to_the_deployments_service_account() -> None:
    account = one("ServiceAccount")["metadata"]
    assert pod_spec()["serviceAccountName"] == account["name"]
    for binding_kind, role_kind in [("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")]:
        binding = one(binding_kind)
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": role_kind,
            "name": one(role_kind)["metadata"]["name"],
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
        ]
