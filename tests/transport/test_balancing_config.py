"""The ``meta-native.io/load-balance`` annotation: what it accepts, and the clear reason it gives
for what it refuses (which rejects the Ingress)."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from gateway_core.manifests.endpoint_key import endpoint_key
from gateway_core.manifests.upstream_policy import LOAD_BALANCE, LoadBalancing, parse_upstream_policy


def problems(text: str) -> tuple[str, ...]:
    return parse_upstream_policy({LOAD_BALANCE: text})[1]


def test_a_valid_annotation_is_parsed() -> None:
    policy, found = parse_upstream_policy(
        {
            LOAD_BALANCE: """
                strategy: hash
                hash_on: cookie:session
                weights: {"10.0.0.1:8080": 3, "10.0.0.2": 0}
                affinity: {name: srv, max_age: 600, secure: true, same_site: Strict}
            """
        }
    )
    assert found == ()
    balancing = policy.load_balance
    assert (balancing.strategy, balancing.hash_on) == ("hash", "cookie:session")
    assert balancing.weights == {"10.0.0.1:8080": 3, "10.0.0.2": 0}
    assert balancing.affinity is not None
    assert balancing.affinity.max_age == 600


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{strategy: fastest}", "strategy: Input should be 'round-robin'"),
        ("{strategy: hash, hash_on: 'query:id'}", "hash_on: Value error, must be client_ip, path, header:<name>"),
        ("{strategy: hash, hash_on: 'header:'}", "hash_on"),
        ("{strategy: hash, hash_on: 'header:bad name'}", "hash_on"),
        ("{hash_on: path}", "hash_on applies to strategy hash only (strategy is round-robin)"),
        ("{strategy: least-request, weights: {10.0.0.1: 2}}", "least-request weighs endpoints by their measured load"),
        ("{strategy: ewma, weights: {10.0.0.1: 5}}", "ewma weighs endpoints by their measured load"),
        ("{weights: {10.0.0.1: 1001}}", "weight of '10.0.0.1' must be between 0 and 1000"),
        ("{weights: {10.0.0.1: -1}}", "between 0 and 1000"),
        ("{weights: {'10.0.0.1:http': 2}}", "the port must be a number"),
        ("{weights: {'not an address': 2}}", "is not an IP address, ip:port or a DNS name"),
        ("{affinity: {same_site: None}}", "same_site None needs secure: true"),
        ("{affinity: {name: 'a b'}}", "must be a cookie name"),
        ("{affinity: {path: 'shop'}}", "must be an absolute path"),
        ("{affinity: {max_age: 0}}", "max_age"),
        ("{strategy: random, extra: 1}", "extra: Extra inputs are not permitted"),
        ("[round-robin]", "must be a mapping"),
    ],
)
def test_an_invalid_annotation_is_refused_with_its_reason(text: str, reason: str) -> None:
    found = problems(text)
    assert len(found) >= 1
    assert all(problem.startswith(f"annotation {LOAD_BALANCE}") for problem in found), found
    assert any(reason in problem for problem in found), found


def test_least_request_and_ewma_accept_weight_zero_and_one() -> None:
    for strategy in ("least-request", "ewma"):
        assert LoadBalancing.model_validate({"strategy": strategy, "weights": {"10.0.0.1": 0, "10.0.0.2": 1}})


def test_hash_on_may_be_given_with_the_hash_strategy() -> None:
    assert LoadBalancing.model_validate({"strategy": "hash", "hash_on": "client_ip"}).hash_on == "client_ip"
    with pytest.raises(ValidationError):
        LoadBalancing.model_validate({"strategy": "random", "hash_on": "client_ip"})


@pytest.mark.parametrize(
    ("key", "spelled"),
    [
        ("10.0.0.1", "10.0.0.1"),
        ("10.0.0.1:08080", "10.0.0.1:8080"),
        ("[fd00::1]:80", "[fd00::1]:80"),
        ("[fd00::1]", "fd00::1"),
        ("fd00::1", "fd00::1"),
        ("api.example.com:443", "api.example.com:443"),
    ],
)
def test_weight_keys_are_spelled_as_endpoint_addresses(key: str, spelled: str) -> None:
    assert endpoint_key(key) == spelled
    assert LoadBalancing.model_validate({"weights": {key: 2}}).weights == {spelled: 2}


@pytest.mark.parametrize(
    "key", ["", "10.0.0.1:", "10.0.0.1:0", "10.0.0.1:70000", "[fd00::1", "[nope]:80", "1.2.3", "-x"]
)
def test_keys_that_name_no_endpoint_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(key))):
        endpoint_key(key)
