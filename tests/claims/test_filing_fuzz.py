"""Fuzzing the API's filing endpoint (issue 9): whatever the body, the answer is a claim (201) or a
JSON error naming what is wrong (400, 415), never an unhandled exception, and the memory one
request takes stays small."""

import json
import tracemalloc

import pytest
from django.core.cache import cache
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from claims.api_auth import token_digest
from claims.models import ApiClient

pytestmark = pytest.mark.django_db
SLUG = "sample-2025-07-03"
FIELDS = [
    "incident",
    "user_id",
    "kind",
    "description",
    "trade_id",
    "order_id",
    "withdrawal_id",
    "transaction_hash",
    "market_symbol",
    "approximate_time",
    "claimed_amount",
    "claimed_asset",
    "language",
]
MEMORY_PER_REQUEST = 32 * 1024 * 1024

text = st.text(st.characters(codec="utf-8") | st.sampled_from(["\ud800", "\x00", "\u202e", "１", "٣"]), max_size=40)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | text
    | st.sampled_from(
        [
            "liquidation",
            "other",
            "pt-br",
            SLUG,
            "1_000",
            "-0",
            "1e9999",
            "NaN",
            "0.000000000000000000001",
            "99999999999999999999.999999999999999999",
            "2025-07-03T11:33:53Z",
            "9999-12-31T23:59:59-14:00",
        ]
    )
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3), max_leaves=8
)
bodies = st.dictionaries(st.sampled_from(FIELDS) | text, values, max_size=8).map(
    lambda body: {"incident": SLUG, "kind": "other", **body}
)


def deep(depth: int) -> bytes:
    head = b'{"incident": "' + SLUG.encode() + b'", "kind": "other", "description": '
    return head + b"[" * depth + b"]" * depth + b"}"


@pytest.fixture
def front_end(open_sample_incident):
    ApiClient.objects.create(name="fuzz", token_hash=token_digest("fuzz"), scopes=["claims"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token fuzz", HTTP_X_CLAIMDESK_USER="100056")
    return client


def answered(client, body: bytes, content_type: str = "application/json"):
    cache.clear()  # the per-user throttle is not under test here
    tracemalloc.start()
    try:
        response = client.generic("POST", "/api/claims/", body, content_type=content_type)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert response.status_code in (201, 400, 415), (response.status_code, body[:200], response.content[:300])
    assert response["Content-Type"] == "application/json"
    assert isinstance(json.loads(response.content), dict)
    assert peak < MEMORY_PER_REQUEST, f"{peak} bytes for one request"
    return response


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies)
def test_any_json_object_is_a_claim_or_a_json_error(front_end, body):
    raw = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")

    answered(front_end, raw)


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    raw=st.binary(max_size=300),
    content_type=st.sampled_from(
        ["application/json", "application/json; charset=latin-1", "multipart/form-data", "text/plain"]
    ),
)
def test_any_bytes_are_a_json_error(front_end, raw, content_type):
    answered(front_end, raw, content_type)


@pytest.mark.parametrize(
    "body",
    [
        deep(100_000),
        b'{"incident": "x", "description": "' + b"a" * 3_000_000 + b'"}',
        b"[" * 10 + b"1" * 100_000 + b"]" * 10,
    ],
)
def test_hostile_bodies_are_json_errors_with_memory_bounded(front_end, body):
    response = answered(front_end, body)

    assert response.status_code == 400
