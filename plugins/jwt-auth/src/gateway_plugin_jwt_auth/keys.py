"""Verification keys: parsed once (at bind or fetch time), looked up per request by ``alg``/``kid``.

Every key is held as a :class:`jwt.PyJWK` pinned to one allowed algorithm, so a token can
only ever be verified with a key of the family its ``alg`` names: no HS/RS confusion, no
key used with a curve it was not made for. Keys too weak for their algorithm (RSA under
2048 bits, HMAC keys shorter than the hash) and private key material are refused here.
Nothing in this module does I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt import PyJWK
from jwt.algorithms import get_default_algorithms
from jwt.exceptions import PyJWTError
from jwt.utils import base64url_encode

from gateway_plugin_jwt_auth.config import HMAC_ALGORITHMS

MAX_KEYS = 64
"""Keys one source may hold: a token without ``kid`` is tried against each key of its algorithm."""

MIN_RSA_BITS = 2048
RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
"""RFC 7518 §3.2: an HMAC key at least as long as the hash output."""

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.S)
_ALGORITHMS = get_default_algorithms()

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey


class KeyMaterialError(ValueError):
    """The key material cannot be used: the message says why, naming no secret bytes."""


class KeySet:
    """Keys by (algorithm, kid); immutable once built, so requests read it without locks."""

    __slots__ = ("_by_kid", "_by_algorithm", "_without_kid", "size")

    def __init__(self, keys: Iterable[tuple[str | None, PyJWK]]) -> None:
        by_kid: dict[tuple[str, str], list[PyJWK]] = {}
        by_algorithm: dict[str, list[PyJWK]] = {}
        without_kid: dict[str, list[PyJWK]] = {}
        for kid, key in keys:
            algorithm = key.algorithm_name
            by_algorithm.setdefault(algorithm, []).append(key)
            if kid is None:
                without_kid.setdefault(algorithm, []).append(key)
            else:
                by_kid.setdefault((algorithm, kid), []).append(key)
        self._by_kid = {name: tuple(found) for name, found in by_kid.items()}
        self._by_algorithm = {name: tuple(found) for name, found in by_algorithm.items()}
        self._without_kid = {name: tuple(found) for name, found in without_kid.items()}
        self.size = sum(len(found) for found in self._by_algorithm.values())

    def candidates(self, algorithm: str, kid: str | None) -> tuple[PyJWK, ...]:
        """Keys to try for a token: those named by its ``kid`` (or keys that have none); all without a kid."""
        if kid is None:
            return self._by_algorithm.get(algorithm, ())
        return self._by_kid.get((algorithm, kid)) or self._without_kid.get(algorithm, ())

    def __len__(self) -> int:
        return self.size


def algorithms_for(key: object, allowed: Sequence[str]) -> list[str]:
    """The allowed algorithms ``key`` can verify; KeyMaterialError if it is too weak or private."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise KeyMaterialError(f"an RSA key of {key.key_size} bits is too weak (at least {MIN_RSA_BITS})")
        return [name for name in allowed if name in RSA_ALGORITHMS]
    if isinstance(key, ec.EllipticCurvePublicKey):
        return [name for name in allowed if EC_CURVES.get(name) == key.curve.name]
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return [name for name in allowed if name == "EdDSA"]
    raise KeyMaterialError(f"a {type(key).__name__} cannot verify tokens (only public keys can)")


def _describe(key: object) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return f"an RSA-{key.key_size} key"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"an EC {key.curve.name} key"
    return f"an {type(key).__name__.removesuffix('PublicKey')} key"


def _pinned(jwk: Mapping[str, Any], algorithm: str) -> PyJWK:
    try:
        return PyJWK(dict(jwk), algorithm)
    except PyJWTError as exc:
        raise KeyMaterialError(f"unusable with {algorithm}: {exc}") from None


def keys_from_pem(data: bytes, allowed: Sequence[str]) -> KeySet:
    """Keys from concatenated PEM public keys and/or X.509 certificates (a certificate's dates are not checked)."""
    blocks = [(match.group(1).decode(), match.group(0)) for match in _PEM_BLOCK.finditer(data)]
    if not blocks:
        raise KeyMaterialError("no PEM block found (expected '-----BEGIN PUBLIC KEY-----' or a certificate)")
    if len(blocks) > MAX_KEYS:
        raise KeyMaterialError(f"{len(blocks)} PEM blocks; at most {MAX_KEYS} keys are allowed")
    keys: list[tuple[str | None, PyJWK]] = []
    for number, (kind, block) in enumerate(blocks, 1):
        if "PRIVATE" in kind:
            raise KeyMaterialError(f"PEM block {number} is a private key: give the gateway only public keys")
        try:
            if kind == "CERTIFICATE":
                public_key: object = x509.load_pem_x509_certificate(block).public_key()
            elif kind in ("PUBLIC KEY", "RSA PUBLIC KEY"):
                public_key = load_pem_public_key(block)
            else:
                raise KeyMaterialError(f"PEM block {number} is a {kind}, not a public key or certificate")
        except ValueError as exc:
            if isinstance(exc, KeyMaterialError):
                raise
            raise KeyMaterialError(f"PEM block {number} cannot be read: {exc}") from None
        try:
            algorithms = algorithms_for(public_key, allowed)
        except KeyMaterialError as exc:
            raise KeyMaterialError(f"PEM block {number}: {exc}") from None
        if not algorithms:
            raise KeyMaterialError(
                f"PEM block {number} is {_describe(public_key)}, which none of {', '.join(allowed)} can use"
            )
        for algorithm in algorithms:
            jwk = _ALGORITHMS[algorithm].to_jwk(public_key, as_dict=True)
            keys.append((None, _pinned(jwk, algorithm)))
    return KeySet(keys)


def keys_from_jwks(data: bytes, allowed: Sequence[str]) -> tuple[KeySet, list[str]]:
    """Keys from a JWKS document, and why any of its keys were skipped.

    Skipped: keys for encryption (``use`` other than ``sig``), symmetric (``oct``) keys,
    keys with private members, keys no allowed algorithm can use, weak keys. KeyMaterialError
    when the document is not a JWKS or leaves no usable key.
    """
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        raise KeyMaterialError("not a JSON document") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise KeyMaterialError('not a JWKS: expected a JSON object with a "keys" list')
    if len(entries) > MAX_KEYS:
        raise KeyMaterialError(f"the JWKS has {len(entries)} keys; at most {MAX_KEYS} are allowed")
    keys: list[tuple[str | None, PyJWK]] = []
    skipped: list[str] = []
    for number, entry in enumerate(entries, 1):
        try:
            kid, found = _jwk_keys(entry, allowed)
        except KeyMaterialError as exc:
            skipped.append(f"key {number}: {exc}")
            continue
        keys.extend((kid, key) for key in found)
    if not keys:
        reasons = "; ".join(skipped) or "it is empty"
        raise KeyMaterialError(f"the JWKS has no key usable with {', '.join(allowed)} ({reasons})")
    return KeySet(keys), skipped


_GUESS = {"RSA": "RS256", "EC": "ES256", "OKP": "EdDSA"}


def _jwk_keys(entry: object, allowed: Sequence[str]) -> tuple[str | None, list[PyJWK]]:
    if not isinstance(entry, dict):
        raise KeyMaterialError("not a JSON object")
    kid = entry.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise KeyMaterialError("its kid is not a string")
    label = f"kid {kid!r}" if kid is not None else "no kid"
    if entry.get("use", "sig") != "sig":
        raise KeyMaterialError(f"{label}: its use is not 'sig'")
    kty = entry.get("kty")
    if kty == "oct":
        raise KeyMaterialError(f"{label}: symmetric keys are only accepted through shared_secret")
    if "d" in entry or "p" in entry or "k" in entry:
        raise KeyMaterialError(f"{label}: it holds private key material")
    if not isinstance(kty, str) or kty not in _GUESS:
        raise KeyMaterialError(f"{label}: unsupported kty {kty!r}")
    declared = entry.get("alg")
    if declared is not None and declared not in allowed:
        raise KeyMaterialError(f"{label}: its alg {declared!r} is not allowed")
    probe = _pinned(entry, declared if isinstance(declared, str) else _GUESS[kty])
    algorithms = algorithms_for(probe.key, [declared] if isinstance(declared, str) else allowed)
    if not algorithms:
        raise KeyMaterialError(f"{label}: {_describe(probe.key)} fits none of the allowed algorithms")
    return kid, [probe if name == probe.algorithm_name else _pinned(entry, name) for name in algorithms]


def key_from_shared_secret(data: bytes, allowed: Sequence[str]) -> KeySet:
    """The HMAC key, byte for byte (a trailing newline is part of it); refused if too short."""
    keys: list[tuple[str | None, PyJWK]] = []
    jwk = {"kty": "oct", "k": base64url_encode(data).decode("ascii")}
    for algorithm in allowed:
        if algorithm not in HMAC_ALGORITHMS:
            raise KeyMaterialError(f"{algorithm} cannot use a shared secret")
        minimum = HMAC_MIN_BYTES[algorithm]
        if len(data) < minimum:
            raise KeyMaterialError(f"the shared secret has {len(data)} bytes; {algorithm} needs at least {minimum}")
        key = _pinned(jwk, algorithm)
        try:
            _ALGORITHMS[algorithm].prepare_key(key.key)
        except PyJWTError:
            raise KeyMaterialError("the shared secret looks like a PEM/SSH/DER key; use a random byte string") from None
        keys.append((None, key))
    return KeySet(keys)
