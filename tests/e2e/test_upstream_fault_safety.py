"""What must never be retried, and retries together with the circuit breaker, through ``gateway run``.

A POST that reached an upstream is not sent again; one that never did is. A response that
started streaming is never retried. A per-endpoint circuit breaker refuses a try before
anything is sent, and the retry moves on; when every breaker is open the client gets a fast
503 ``circuit_open``. Same kit as ``test_upstream_faults.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_core.testing import free_port
from tests.e2e.test_upstream_faults import Answer, Gateways, assert_clean_log, metric, send, start_gateway
from tests.fault_upstreams import FaultyUpstream

pytestmark = pytest.mark.e2e

NO_OUTLIERS = {"enabled": False}


@pytest.fixture
def faulty() -> Iterator[Callable[..., FaultyUpstream]]:
    started: list[FaultyUpstream] = []

    def make(name: str, fault: str = "ok", **options: Any) -> FaultyUpstream:
        server = FaultyUpstream(name, fault, **options).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


# --- (4) POST ---------------------------------------------------------------------------------------


def test_a_post_is_retried_only_if_it_was_never_sent(
    gateway_process: Gateways, manifests_dir: Path, faulty: Callable[..., FaultyUpstream]
) -> None:
    resetting = faulty("resetting", "reset")
    behind_reset = faulty("behind-reset")
    behind_dead = faulty("behind-dead")
    gateway = start_gateway(
        gateway_process,
        manifests_dir,
        {
            "reset.test": ([resetting.port, behind_reset.port], {"outlier_detection": NO_OUTLIERS}),
            "dead.test": ([free_port(), behind_dead.port], {"outlier_detection": NO_OUTLIERS}),
        },
    )
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        posts = [send(client, "reset.test", f"/pay/{index}", "POST", content=b"amount=1") for index in range(10)]
        gets = [send(client, "reset.test", f"/read/{index}") for index in range(10)]
        moved = [
            send(client, "dead.test", f"/order/{index}", "POST", content=f"order {index}".encode() * 100)
            for index in range(10)
        ]
    posted = [target for target in resetting.paths() + behind_reset.paths() if target.startswith("/pay/")]
    assert sorted(posted) == sorted(f"/pay/{index}" for index in range(10)), "each POST was sent once"
    reset_posts = sum(target.startswith("/pay/") for target in resetting.paths())
    assert [answer.status for answer in posts].count(502) == reset_posts
    assert 502 in {answer.status for answer in posts}, "round robin sent some POSTs to the resetting upstream"
    assert {answer.status for answer in gets} == {200}, "GETs are retried after a reset"
    assert {answer.status for answer in moved} == {200}, "a POST that never left is retried"
    assert [seen.body for seen in behind_dead.seen] == [f"order {index}".encode() * 100 for index in range(10)]
    assert_clean_log(gateway)


# --- (5) circuit breaker, retries and outlier detection together --------------------------------------


def breaker(**config: Any) -> dict[str, str]:
    return {"meta-native.io/plugins": "circuit-breaker", "meta-native.io/plugin.circuit-breaker": json.dumps(config)}


def test_breakers_retries_and_ejections_answer_within_their_budgets(
    gateway_process: Gateways, manifests_dir: Path, faulty: Callable[..., FaultyUpstream]
) -> None:
    failing = [faulty(f"failing-{index}", "status", status=503) for index in range(3)]
    one_bad = faulty("one-bad", "status", status=503)
    fine = [faulty(f"fine-{index}") for index in range(2)]
    policies: dict[str, Any] = {
        "retries": {"on": ["gateway-error"], "attempts": 3, "timeout": 2},
        "outlier_detection": {"consecutive_failures": 2, "base_ejection_time": 30},
        "plugins": breaker(per="endpoint", fail_max=2, reset_timeout=30),
    }
    gateway = start_gateway(
        gateway_process,
        manifests_dir,
        {
            "down.test": ([server.port for server in failing], dict(policies)),
            "mixed.test": ([one_bad.port, *(server.port for server in fine)], dict(policies)),
        },
    )
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        opening = [send(client, "down.test", f"/opening/{index}") for index in range(10)]
        sent = sum(server.count for server in failing)
        refused = [client.get(f"/open/{index}", headers={"host": "down.test"}) for index in range(20)]
        timed = [send(client, "down.test", f"/timed/{index}") for index in range(20)]
        mixed = [send(client, "mixed.test", f"/m/{index}") for index in range(30)]
    assert {answer.status for answer in opening} == {503}
    assert sent <= 3 * 2, "each endpoint failed at most fail_max times before its breaker opened"
    assert sum(server.count for server in failing) == sent, "open breakers: nothing more was sent"
    for response in refused:
        assert response.status_code == 503
        assert response.json()["error"] == "circuit_open"
        assert 1 <= int(response.headers["retry-after"]) <= 30
    assert max(answer.seconds for answer in timed) < 1.0, "refusals are fast: nothing is sent, nothing awaited"
    assert max(answer.seconds for answer in opening) < 2.0 + 1.0, "within retries.timeout"
    assert {answer.status for answer in mixed} == {200}, "the open endpoint's tries moved to the others"
    assert one_bad.count <= 2
    assert metric(gateway, "gateway_upstream_retries_total") >= 30
    assert_clean_log(gateway)


# --- (6) a streaming response failing mid-body ---------------------------------------------------------


def test_a_response_cut_mid_body_is_not_retried(
    gateway_process: Gateways, manifests_dir: Path, faulty: Callable[..., FaultyUpstream]
) -> None:
    cut = faulty("cut", "cut")
    good = faulty("good")
    everything = {"on": ["connect-failure", "reset", "timeout", "5xx"], "attempts": 3}
    gateway = start_gateway(
        gateway_process,
        manifests_dir,
        {"stream.test": ([cut.port, good.port], {"retries": everything, "outlier_detection": NO_OUTLIERS})},
    )
    answers: list[Answer | None] = []
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        for index in range(8):
            try:
                answers.append(send(client, "stream.test", f"/file/{index}"))
            except httpx.RemoteProtocolError:  # the connection was cut before the promised length
                answers.append(None)
    # Cut after the head went out: the client connection is cut. (Cut before the gateway
    # relayed the head, which a loaded machine may do: a 502.) Never another try.
    cut_targets = {f"/file/{index}" for index, answer in enumerate(answers) if answer is None or answer.status == 502}
    assert cut_targets, "round robin sent some downloads to the cutting upstream"
    assert cut_targets == set(cut.paths()), "cut downloads came from the cutting upstream, once each"
    assert len(cut.paths()) == len(cut_targets)
    assert not cut_targets & set(good.paths()), "a cut download was never tried again"
    assert any(answer is None for answer in answers), "some cuts reached the client mid-body"
    assert metric(gateway, "gateway_upstream_retries_total") == 0
    assert_clean_log(gateway)
