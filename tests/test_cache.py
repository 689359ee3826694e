"""The Redis cache (config.cache) and the window counter the throttles share, on a real Redis.

CI sets CLAIMDESK_TEST_CACHE_URL; elsewhere these run whenever it is set.
"""

import os
import threading

import pytest

from claims.throttling import count_in_window, count_in_windows
from config.cache import RedisCache

CACHE_URL = os.environ.get("CLAIMDESK_TEST_CACHE_URL", "")
pytestmark = pytest.mark.skipif(
    not CACHE_URL, reason="needs a Redis server (CLAIMDESK_TEST_CACHE_URL); .ci/run has one"
)


@pytest.fixture
def cache():
    cache = RedisCache(CACHE_URL, {"KEY_PREFIX": "cache-test"})
    cache.clear()
    yield cache
    cache.clear()


def test_each_call_is_counted_in_its_own_window_which_expires(cache):
    counts = [count_in_window(cache, "caller:a", 60, now) for now in (120.0, 150.5, 179.9, 180.0)]

    assert counts == [1, 2, 3, 1]  # 180 starts the next minute
    client = cache._cache.get_client(write=True)
    ttl = client.ttl(cache.make_key("caller:a:3"))
    assert 0 < ttl <= 61


def test_every_window_of_a_call_is_counted_in_one_round_trip(cache, monkeypatch):
    client = cache._cache.get_client(write=True)
    calls = []
    execute = client.execute_command
    monkeypatch.setattr(client, "execute_command", lambda *args, **kw: calls.append(args[0]) or execute(*args, **kw))

    first = count_in_windows(cache, [("caller:c", 60), ("claimant:7", 3600)], 7200.0)
    second = count_in_windows(cache, [("caller:c", 60), ("claimant:7", 3600)], 7200.0)

    assert (first, second) == ([1, 1], [2, 2])
    assert calls[-1] == "EVALSHA" and len(calls) <= 3  # the first call may load the script
    assert 0 < client.ttl(cache.make_key("claimant:7:2")) <= 3601


def test_concurrent_calls_are_each_counted_once(cache):
    def count():
        for _ in range(50):
            count_in_window(cache, "caller:b", 60, 60.0)

    threads = [threading.Thread(target=count) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert count_in_window(cache, "caller:b", 60, 60.0) == 401


def test_it_is_still_a_django_cache(cache):
    cache.set("a", {"b": 1}, 30)
    assert cache.add("n", 5, 30) and not cache.add("n", 6, 30)

    assert (cache.get("a"), cache.incr("n"), cache.get("missing", "default")) == ({"b": 1}, 6, "default")
    assert cache._cache.get_client() is cache._cache.get_client(write=True)  # one client, not one per call


@pytest.mark.django_db(transaction=True)
def test_the_api_answers_429_with_the_redis_counters(open_sample_incident, settings, monkeypatch):
    from rest_framework.test import APIClient

    from claims.api_auth import ClaimantThrottle, token_digest
    from claims.models import ApiClient

    settings.CACHES = {
        "default": {"BACKEND": "config.cache.RedisCache", "LOCATION": CACHE_URL, "KEY_PREFIX": "cache-test"}
    }
    RedisCache(CACHE_URL, {"KEY_PREFIX": "cache-test"}).clear()
    monkeypatch.setitem(ClaimantThrottle.THROTTLE_RATES, "claimant", "2/min")
    ApiClient.objects.create(name="fe", token_hash=token_digest("t"), scopes=["claims"])
    front = APIClient()
    front.credentials(HTTP_AUTHORIZATION="Token t", HTTP_X_CLAIMDESK_USER="100056")

    statuses = [
        front.post("/api/claims/", {"incident": open_sample_incident.slug, "kind": "other"}, format="json").status_code
        for _ in range(3)
    ]

    assert statuses == [201, 201, 429]
    redis = RedisCache(CACHE_URL, {"KEY_PREFIX": "cache-test"})._cache.get_client()
    assert [int(redis.get(key)) for key in redis.keys("*throttle_claimant_100056*")] == [3]
