"""Password checking in the plugin object: bcrypt off the loop, the success cache, decoys, the bound."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import threading
from collections.abc import Iterator

import bcrypt
import pytest
from gateway_plugin_basic_auth import BasicAuth, BasicAuthConfig, BcryptPool
from gateway_plugin_basic_auth.bcrypt_pool import Verdict
from gateway_plugin_basic_auth.cache import VerifiedCache
from gateway_plugin_basic_auth.htpasswd import parse_htpasswd
from gateway_plugin_basic_auth.plugin import decode_credentials

from gateway_core import Headers, RequestContext, UpstreamRequest

HTPASSWD = (
    "alice:" + bcrypt.hashpw(b"alice-pw", bcrypt.gensalt(rounds=4)).decode().replace("$2b$", "$2y$") + "\n"
    "bob:{SHA}" + base64.b64encode(hashlib.sha1(b"bob-pw").digest()).decode() + "\n"
).encode()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def context(*authorization: str) -> RequestContext:
    headers = Headers([(b"authorization", value.encode("latin-1")) for value in authorization])
    return RequestContext(
        scope={},
        method="GET",
        host="example.test",
        path="/",
        scheme="http",
        client_ip="127.0.0.1",
        peer_ip="127.0.0.1",
        route=None,
        request=UpstreamRequest("GET", b"/", headers),
    )


@pytest.fixture
def pool() -> Iterator[BcryptPool]:
    made = BcryptPool(workers=2)
    yield made
    made.shutdown()


def plugin(pool: BcryptPool, **config: object) -> BasicAuth:
    model = BasicAuthConfig.model_validate({"secret": "users", **config})
    return BasicAuth(model, parse_htpasswd(HTPASSWD, source="test"), pool=pool)


def test_decode_credentials_splits_at_the_first_colon() -> None:
    assert decode_credentials(basic("alice", "a:b:c")) == (b"alice:a:b:c", "alice", b"a:b:c")
    assert decode_credentials("basic   " + basic("alice", "")[6:] + "  ") == (b"alice:", "alice", b"")
    assert decode_credentials(basic("jürgen", "pässwort")) == (
        "jürgen:pässwort".encode(),
        "jürgen",
        "pässwort".encode(),
    )


async def test_a_good_bcrypt_password_is_checked_once_then_served_from_the_cache(pool: BcryptPool) -> None:
    auth = plugin(pool)
    first, second = context(basic("alice", "alice-pw")), context(basic("alice", "alice-pw"))
    assert await auth.on_request(first) is None
    assert await auth.on_request(second) is None
    assert pool.runs == 1
    assert second.identity == "alice"
    assert second.request.headers.get("x-auth-user") == "alice"
    assert "authorization" not in second.request.headers


async def test_wrong_passwords_are_never_cached(pool: BcryptPool) -> None:
    auth = plugin(pool)
    for _ in range(3):
        response = await auth.on_request(context(basic("alice", "guess")))
        assert response is not None
        assert response.status == 401
    assert pool.runs == 3


async def test_concurrent_requests_with_the_same_credentials_share_one_check(pool: BcryptPool) -> None:
    auth = plugin(pool)
    good = [context(basic("alice", "alice-pw")) for _ in range(5)]
    assert await asyncio.gather(*(auth.on_request(ctx) for ctx in good)) == [None] * 5
    assert [ctx.identity for ctx in good] == ["alice"] * 5
    assert pool.runs == 1
    wrong = await asyncio.gather(*(auth.on_request(context(basic("alice", "guess"))) for _ in range(5)))
    assert [response.status for response in wrong if response is not None] == [401] * 5
    assert pool.runs == 2


async def test_a_waiter_giving_up_does_not_cancel_the_shared_check(pool: BcryptPool) -> None:
    auth = plugin(pool)
    impatient = asyncio.ensure_future(auth.on_request(context(basic("alice", "alice-pw"))))
    patient = asyncio.ensure_future(auth.on_request(context(basic("alice", "alice-pw"))))
    await asyncio.sleep(0)
    impatient.cancel()
    assert await patient is None
    assert impatient.cancelled()
    assert pool.runs == 1


async def test_a_cached_success_expires_after_the_ttl(pool: BcryptPool) -> None:
    auth = plugin(pool, cache_ttl=0.05)
    assert await auth.on_request(context(basic("alice", "alice-pw"))) is None
    await asyncio.sleep(0.06)
    assert await auth.on_request(context(basic("alice", "alice-pw"))) is None
    assert pool.runs == 2


async def test_an_unknown_user_costs_a_bcrypt_run_like_a_known_one(pool: BcryptPool) -> None:
    auth = plugin(pool)
    response = await auth.on_request(context(basic("mallory", "alice-pw")))
    assert response is not None
    assert response.status == 401
    assert pool.runs == 1


async def test_sha_entries_are_checked_inline(pool: BcryptPool) -> None:
    auth = plugin(pool)
    ctx = context(basic("bob", "bob-pw"))
    assert await auth.on_request(ctx) is None
    assert ctx.identity == "bob"
    wrong = await auth.on_request(context(basic("bob", "bob-pw ")))
    assert wrong is not None
    assert wrong.status == 401
    assert pool.runs == 0


async def test_a_password_longer_than_bcrypt_reads_is_refused_not_truncated(pool: BcryptPool) -> None:
    long_hash = bcrypt.hashpw(b"x" * 72, bcrypt.gensalt(rounds=4))
    assert await pool.check(b"x" * 72, long_hash) is Verdict.MATCH
    assert await pool.check(b"x" * 73, long_hash) is Verdict.MISMATCH
    assert await pool.waste(b"x" * 73, bcrypt.gensalt(rounds=4)) is Verdict.MISMATCH
    assert pool.runs == 1


async def test_no_free_slot_means_503_without_running_bcrypt() -> None:
    full = BcryptPool(workers=1, max_pending=0)
    response = await plugin(full).on_request(context(basic("alice", "alice-pw")))
    assert response is not None
    assert response.status == 503
    assert (b"retry-after", b"1") in response.headers
    assert full.runs == 0


async def test_the_bound_refuses_checks_beyond_it_at_once() -> None:
    pool = BcryptPool(workers=1, max_pending=1)
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=6))
    try:
        first, second = await asyncio.gather(pool.check(b"pw", hashed), pool.check(b"pw", hashed))
        assert (first, second) == (Verdict.MATCH, Verdict.BUSY)
        assert await pool.check(b"pw", hashed) is Verdict.MATCH  # the slot is free again
    finally:
        pool.shutdown()
    assert await pool.check(b"pw", hashed) is Verdict.MATCH  # a fresh executor after shutdown
    pool.shutdown()


async def test_bcrypt_runs_on_a_pool_thread_while_the_loop_stays_free(pool: BcryptPool) -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=10))
    check = asyncio.ensure_future(pool.check(b"pw", hashed))
    await asyncio.sleep(0)  # the check starts and hands bcrypt to a thread
    assert not check.done()
    assert any(thread.name.startswith("basic-auth-bcrypt") for thread in threading.enumerate())
    assert await check is Verdict.MATCH


async def test_a_hash_bcrypt_refuses_fails_the_check_with_a_warning(
    pool: BcryptPool, caplog: pytest.LogCaptureFixture
) -> None:
    assert await pool.check(b"pw", b"$2y$04$garbage") is Verdict.MISMATCH
    assert "refused a stored hash" in caplog.text


def test_the_cache_is_bounded_and_keys_are_not_the_password() -> None:
    cache = VerifiedCache(ttl=60, size=2)
    keys = [cache.key(f"user{index}:pw".encode()) for index in range(3)]
    assert all(b"pw" not in key and len(key) == 32 for key in keys)
    assert VerifiedCache(ttl=60, size=2).key(b"user0:pw") != keys[0]  # a key of its own per cache
    for key in keys:
        cache.add(key)
    assert len(cache) == 2
    assert not cache.hit(keys[0])
    assert cache.hit(keys[2])


def test_a_zero_ttl_turns_the_cache_off() -> None:
    cache = VerifiedCache(ttl=0, size=2)
    cache.add(cache.key(b"a:b"))
    assert len(cache) == 0
