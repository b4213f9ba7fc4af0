"""The provider's store (scopes, change detection, problems, Secrets) and the Secret rule."""

from __future__ import annotations

from typing import Any

from gateway_core.manifests import Ingress, Secret, Service
from gateway_core.providers.kubernetes.references import SecretReferences, secret_references
from gateway_core.providers.kubernetes.store import ObjectStore
from gateway_core.testing import ingress, path, plugin_annotations, secret, service


def versioned(obj: dict[str, Any], version: str, namespace: str = "default") -> dict[str, Any]:
    obj["metadata"].update(resourceVersion=version, namespace=namespace)
    obj.pop("apiVersion")  # list items carry neither apiVersion nor kind
    obj.pop("kind")
    return obj


def test_a_scope_replaces_only_its_namespace() -> None:
    store = ObjectStore()
    team_a = store.scope("Service", "v1", "a")
    team_b = store.scope("Service", "v1", "b")
    assert team_a.replace([versioned(service("one"), "1", "a"), versioned(service("two"), "2", "a")])
    assert team_b.replace([versioned(service("three"), "3", "b")])
    assert team_a.replace([versioned(service("one"), "1", "a")])  # two is gone
    found = sorted((obj.namespace, obj.name) for obj in store.snapshot().objects)
    assert found == [("a", "one"), ("b", "three")]


def test_only_a_change_the_gateway_reads_counts_as_a_change() -> None:
    store = ObjectStore()
    scope = store.scope("Ingress", "networking.k8s.io/v1", None)
    web = versioned(ingress("web", rules=[(None, [path("/", "api")])]), "1")
    assert scope.upsert(web)
    assert not scope.upsert(web)  # a replayed ADDED
    assert not scope.replace([web])  # a re-list that found the same
    status_only = {**web, "metadata": {**web["metadata"], "resourceVersion": "2"}, "status": {"loadBalancer": {}}}
    assert not scope.upsert(status_only)  # our own status write comes back as MODIFIED
    moved = versioned(ingress("web", rules=[(None, [path("/v2", "api")])]), "3")
    assert scope.upsert(moved)
    assert scope.delete(moved)
    assert not scope.delete(moved)


def test_an_object_that_does_not_parse_is_a_problem_until_fixed() -> None:
    store = ObjectStore()
    scope = store.scope("Service", "v1", None)
    broken = versioned(service("api"), "1")
    broken["spec"]["ports"][0]["port"] = 70000
    assert scope.upsert(broken)
    snapshot = store.snapshot()
    assert snapshot.objects == ()
    assert [problem.object_ref for problem in snapshot.problems] == [("Service", "default", "api")]
    assert "spec.ports[0].port" in snapshot.problems[0].message
    assert scope.upsert(versioned(service("api"), "2"))
    snapshot = store.snapshot()
    assert [obj.name for obj in snapshot.objects if isinstance(obj, Service)] == ["api"]
    assert snapshot.problems == ()


def test_objects_without_a_name_are_ignored() -> None:
    store = ObjectStore()
    scope = store.scope("Service", "v1", None)
    assert not scope.upsert({"metadata": {"namespace": "default"}, "spec": {}})
    assert not scope.replace([{"spec": {}}])
    assert store.snapshot().objects == ()


def test_only_referenced_secrets_are_kept() -> None:
    references = SecretReferences(by_namespace={"shop": frozenset({"keys"})})
    store = ObjectStore(keep_secret=lambda namespace, name: references(namespace, name))
    scope = store.scope("Secret", "v1", None)
    assert scope.replace(
        [
            versioned(secret("keys", {"alice": "k1"}), "1", "shop"),
            versioned(secret("keys", {"bob": "k2"}), "2", "other"),
            versioned(secret("token", {"t": "x"}), "3", "shop"),
        ]
    )
    assert not scope.upsert(versioned(secret("token", {"t": "y"}), "4", "shop"))
    kept = [(obj.namespace, obj.name) for obj in store.snapshot().objects if isinstance(obj, Secret)]
    assert kept == [("shop", "keys")]
    references = SecretReferences()
    assert store.prune_secrets()
    assert store.count("Secret") == 0


def test_secret_references_follow_tls_plugin_configs_and_the_default_configs() -> None:
    objects = [
        ingress(
            "shop",
            namespace="shop",
            annotations=plugin_annotations(
                {"key-auth": {"secret": "api-keys"}, "rate-limit": {"limit": "10/s", "storage": ["redis-creds"]}}
            ),
        ),
        ingress("broken", namespace="shop", annotations={"meta-native.io/plugin.key-auth": "secret: [unclosed"}),
        ingress("blog", namespace="blog"),
    ]
    objects[2]["spec"]["tls"] = [{"hosts": ["blog.example"], "secretName": "blog-tls"}]
    ingresses = [Ingress.model_validate(obj) for obj in objects]
    references = secret_references(ingresses, {"jwt-auth": {"keys": {"secret": "jwt-keys"}, "leeway": 5}})
    assert references("shop", "api-keys")
    assert references("shop", "redis-creds")
    assert references("shop", "10/s")  # any string value counts: a few extra, never one missing
    assert not references("blog", "api-keys")  # Secrets are looked up in the route's namespace
    assert references("blog", "blog-tls")
    assert references("anywhere", "jwt-keys")  # defaults apply in every namespace
    assert not references("shop", "limit")  # keys are not values
    fewer = secret_references(ingresses[2:], {})
    assert references.covers(fewer)
    assert not fewer.covers(references)
