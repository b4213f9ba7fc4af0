"""jwt-auth in a real ``gateway run`` process: a Secret-held public key, a JWKS URL, a broken binding."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from jwt_auth_support import JwksServer, bearer, claims, public_jwk, public_pem, rsa_key, sign

from gateway_core.testing import (
    GatewayProcess,
    RecordingUpstream,
    ingress,
    path,
    plugin_annotations,
    routed_service,
    secret,
    write_manifests,
)


@pytest.mark.e2e
def test_gateway_run_verifies_tokens_with_a_secret_held_key_and_a_jwks_url(
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    gateway_process: Callable[..., GatewayProcess],
) -> None:
    backend = upstream("api")
    jwks = JwksServer([public_jwk(rsa_key("idp"), "idp-1", "RS256")]).start()
    try:
        pem_config = {
            "algorithms": ["RS256"],
            "public_keys": {"secret": "jwt-keys", "key": "public.pem"},
            "audiences": ["orders"],
            "claims_to_headers": {"scope": "X-Token-Scope"},
        }
        jwks_config = {"algorithms": ["RS256"], "jwks_url": jwks.url}
        write_manifests(
            manifests_dir,
            [
                *routed_service("api", backend.port),
                secret("jwt-keys", {"public.pem": public_pem(rsa_key())}),
                ingress(
                    "orders",
                    rules=[("orders.test", [path("/", "api")])],
                    annotations=plugin_annotations({"jwt-auth": pem_config}),
                ),
                ingress(
                    "idp",
                    rules=[("idp.test", [path("/", "api")])],
                    annotations=plugin_annotations({"jwt-auth": jwks_config}),
                ),
                ingress(
                    "broken",
                    rules=[("broken.test", [path("/", "api")])],
                    annotations=plugin_annotations(
                        {"jwt-auth": {**pem_config, "public_keys": {"secret": "no-such-secret", "key": "k"}}}
                    ),
                ),
            ],
        )
        process = gateway_process(manifests_dir)
        orders = {"Host": "orders.test"}
        good = sign(claims(aud="orders", scope="read write"))

        missing = httpx.get(f"{process.url}/", headers=orders)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == 'Bearer realm="gateway"'
        assert httpx.get(f"{process.url}/", headers={**orders, **bearer(sign(claims()))}).status_code == 401

        forged = {"X-Auth-User": "root", "X-Token-Scope": "admin"}
        response = httpx.get(f"{process.url}/", headers={**orders, **forged, **bearer(good)})
        assert response.status_code == 200
        seen = backend.requests[-1].header_list
        assert ("x-auth-user", "alice") in seen
        assert ("x-auth-user", "root") not in seen
        assert ("x-token-scope", "read write") in seen
        assert ("x-token-scope", "admin") not in seen

        idp = {"Host": "idp.test", **bearer(sign(claims(), rsa_key("idp"), kid="idp-1"))}
        assert httpx.get(f"{process.url}/", headers=idp).status_code == 200
        assert jwks.fetches == 1

        broken = httpx.get(f"{process.url}/", headers={"Host": "broken.test", **bearer(good)})
        assert (broken.status_code, broken.json()["error"]) == (503, "route_unavailable")
        routes = httpx.get(f"{process.admin_url}/routes").json()
        assert "no-such-secret" in json.dumps(routes["rejected"])
        assert {"x-auth-user", "x-token-scope"} <= set(routes["stripped_request_headers"])
    finally:
        jwks.stop()
