"""Shared by jwt-auth's tests: signing keys, token builders, a real JWKS server, gateway wiring."""

from __future__ import annotations

import functools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from jwt.utils import base64url_encode

from gateway_core.testing import ingress, path, plugin_annotations, routed_service, write_manifests

HMAC_SECRET = b"0123456789abcdef0123456789abcdef-shared"

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@functools.cache
def rsa_key(name: str = "main") -> rsa.RSAPrivateKey:
    """A 2048-bit RSA signing key, one per name for the whole test session."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def ec_key(name: str = "main") -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@functools.cache
def ed_key(name: str = "main") -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def public_pem(key: SigningKey) -> bytes:
    """The SubjectPublicKeyInfo PEM of ``key``'s public half."""
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_jwk(key: SigningKey, kid: str | None, alg: str | None = None) -> dict[str, Any]:
    """The public JWK of ``key`` with ``kid`` (and ``alg``) set."""
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)
    if kid is not None:
        jwk["kid"] = kid
    if alg is not None:
        jwk["alg"] = alg
    return dict(jwk)


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims (sub alice, an hour left), with ``overrides``; a None value drops the claim."""
    now = int(time.time())
    base: dict[str, Any] = {"sub": "alice", "iat": now, "exp": now + 3600, "iss": "https://issuer.test/"}
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def sign(payload: dict[str, Any], key: SigningKey | bytes | None = None, alg: str = "RS256", **header: Any) -> str:
    """A token signed with ``key`` (the main RSA key by default); extra header fields as keywords."""
    return jwt.encode(payload, key if key is not None else rsa_key(), algorithm=alg, headers=header or None)


def forge(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    """A token assembled by hand: any header, any payload, any signature bytes."""
    parts = [json.dumps(header).encode(), json.dumps(payload).encode()]
    return ".".join(base64url_encode(part).decode() for part in [*parts, signature])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def write_route(directory: Path, upstream_port: int, config: dict[str, Any], extra: list[dict[str, Any]]) -> Path:
    """A route ``/`` bound to jwt-auth with ``config``, an open route ``open.test``, plus ``extra`` objects."""
    write_manifests(
        directory,
        [
            *routed_service("api", upstream_port),
            *extra,
            ingress("api", rules=[(None, [path("/", "api")])], annotations=plugin_annotations({"jwt-auth": config})),
            ingress("open", rules=[("open.test", [path("/", "api")])]),
        ],
    )
    return directory


class JwksServer:
    """A real HTTP server answering every GET with a JWKS document; counts what it served."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.keys = keys
        self.status = 200
        self.fetches = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                with server._lock:
                    server.fetches += 1
                    status = server.status
                    body = json.dumps({"keys": server.keys}).encode() if status == 200 else b"down"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/jwks.json"

    def start(self) -> JwksServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
