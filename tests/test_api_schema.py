"""The REST API keeps to its own OpenAPI schema: property-based requests with schemathesis.

The schema is loaded from the running app (`/api/schema/`, drf-spectacular) and every operation
is called with generated inputs (positive and negative), as two callers:

- a staff client (token with scopes ["claims", "staff"]; no X-Claimdesk-User needed),
- the exchange's front end (token with scope ["claims"]) acting for a user of the July 3 sample
  through the X-Claimdesk-User header, and
- the front end again with that header generated from the schema (other and malformed userIds).

Each response must pass schemathesis's checks: no 5xx, a documented status code, a documented
content type and headers, and a body that conforms to the documented schema. Every distinct
failure (operation, check, status) is collected with the smallest input that showed it and the
response, and reported together at the end, with the server's traceback for a 5xx.

Requests go through the WSGI app in this process, so the database is committed for real
(transaction=True). Some generated inputs are steered to real data (the sample's incident slug,
claims created up front) so that successful responses are checked too, not only 4xx.
"""

import io
import json
import os
import secrets
import traceback
from datetime import timedelta
from pathlib import Path

import pytest
import schemathesis
from django.core.cache import cache
from django.core.management import call_command
from django.core.signals import got_request_exception
from django.utils import timezone
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from claims import services
from claims.api_auth import token_digest
from claims.models import ApiClient, Claim, Incident, Item

from .conftest import JULY3
from .factories import StaffFactory

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.django_db(transaction=True)

SLUG = "sample-2025-07-03"
FRONT_END_USER = 100007  # an account of the July 3 sample
OTHER_USER = 100014
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
MODES = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
MAX_EXAMPLES = int(os.environ.get("CLAIMDESK_SCHEMA_EXAMPLES", "20"))  # per operation and mode
HYPOTHESIS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture
def api_schema():
    # Per test, not per module: the WSGI call checks the database connection, which only a
    # test with database access may touch.
    from config.wsgi import application

    return schemathesis.openapi.from_wsgi("/api/schema/", application)


@pytest.fixture
def sample(july3_ledger):
    call_command("load_incident", str(JULY3 / "incident.json"), stdout=io.StringIO(), stderr=io.StringIO())
    # The sample's claims closed in 2025; reopen them so that filing a claim can succeed.
    Incident.objects.filter(slug=SLUG).update(claims_close=timezone.now() + timedelta(days=30))
    incident = Incident.objects.get(slug=SLUG)
    claims = [
        services.claim_create(
            incident=incident,
            user_id=user_id,
            channel=Claim.Channel.API,
            kind=kind,
            description="filed before the fuzzing",
            references=references,
            actor="test",
        )
        for user_id, kind, references in [
            (FRONT_END_USER, "liquidation", {"trade_id": 982069}),
            (FRONT_END_USER, "other", {}),
            (OTHER_USER, "bad_fill", {"trade_id": 982025}),
        ]
    ]
    # E-mail received (the list of GET /api/inbound-messages/): a claim, a broken message, a bounce.
    for name in (
        "01-en-liquidation-verified.eml",
        "42-broken-multipart-without-boundary.eml",
        "29-bounce-from-mailer-daemon.eml",
    ):
        services.inbound_store(
            raw=(ROOT / "tests" / "email" / name).read_bytes(),
            source="mailbox",
            mailbox="tests/email",
            place=name,
            incident=incident,
        )
    return incident, [str(claim.public_id) for claim in claims]


def api_client(name: str, scopes: list[str]) -> str:
    token = secrets.token_urlsafe(24)
    role = next((r for r in ("approver", "finance") if r in name), None)
    person = StaffFactory(username=f"{role}-person", roles=[role]) if role else None
    ApiClient.objects.create(name=name, token_hash=token_digest(token), scopes=scopes, user=person)
    return token


class ServerErrors:
    """The tracebacks of exceptions the app turned into 500 responses."""

    def __init__(self):
        self.last = None

    def __call__(self, sender, request=None, **kwargs):
        # The project's own frames and the exception: enough to find the line to fix.
        lines = traceback.format_exc().rstrip().splitlines()
        frames = [
            f"{a.strip()} | {b.strip()}"
            for a, b in zip(lines, lines[1:])
            if a.lstrip().startswith("File ") and str(ROOT) in a and "/.venv/" not in a
        ]
        self.last = "\n".join([*frames, lines[-1]])


def strategy_for(operation, mode, headers: dict, claim_ids: list[str]):
    """The operation's generated cases, plus (positive mode) cases aimed at data that exists."""
    generated = operation.as_strategy(mode, headers=headers)
    if mode != schemathesis.GenerationMode.POSITIVE:
        return generated
    names = {parameter.name for parameter in operation.path_parameters}
    if "id" in names and operation.path.startswith("/api/items/"):
        item_ids = list(Item.objects.order_by("id").values_list("id", flat=True)) or [1]
        aimed = st.sampled_from(item_ids).flatmap(
            lambda item_id: operation.as_strategy(mode, headers=headers, path_parameters={"id": item_id})
        )
    elif "public_id" in names:
        aimed = st.sampled_from(claim_ids).flatmap(
            lambda public_id: operation.as_strategy(mode, headers=headers, path_parameters={"public_id": public_id})
        )
    elif "slug" in names:
        real = {"slug": SLUG, "number": "1", "kind": "csv"}
        aimed = operation.as_strategy(
            mode, headers=headers, path_parameters={k: v for k, v in real.items() if k in names}
        )
    elif operation.method.upper() == "POST":
        aimed = generated.map(_aimed_at_sample)
    else:
        return generated
    return st.one_of(generated, aimed)


def _aimed_at_sample(case):
    if isinstance(case.body, dict):
        case.body = {**case.body, "incident": SLUG}
    return case


# Inputs the generators rarely reach, valid or not for the schema (an invalid one must get a 4xx,
# never a 5xx): a Unicode digit ("²" passes str.isdigit() but not int()), a NUL character
# (PostgreSQL text cannot hold it), numbers at and past the 64-bit limit, and a claimed amount
# with all 38 digits.
def edge_cases(label: str, headers: dict, claim_ids: list[str]) -> list[dict]:
    other_user = {"X-Claimdesk-User": "²"}
    body = {"incident": SLUG, "kind": "other", "user_id": 100021}
    return {
        "GET /api/claims/": [
            {"headers": {**headers, **other_user}},
            {"headers": headers, "query": {"incident": "a\x00b", "status": "received"}},
        ],
        "POST /api/claims/": [
            {"headers": {**headers, **other_user}, "body": body},
            {"headers": headers, "body": {**body, "description": "a\x00b", "order_id": "\x00"}},
            {"headers": headers, "body": {**body, "trade_id": 2**63 - 1, "withdrawal_id": 2**63 - 1}},
            {"headers": headers, "body": {**body, "approximate_time": "9999-12-31T23:59:59-14:00"}},
            # Last: on SQLite this amount, once stored, cannot be read back (see the report).
            {"headers": headers, "body": {**body, "claimed_amount": "99999999999999999999.999999999999999999"}},
        ],
        "GET /api/claims/{public_id}/": [
            {"headers": {**headers, **other_user}, "path_parameters": {"public_id": claim_ids[0]}},
            {"headers": headers, "path_parameters": {"public_id": "-" * 36}},
        ],
        "GET /api/incidents/{slug}/": [{"headers": headers, "path_parameters": {"slug": "a\x00b"}}],
        "GET /api/incidents/{slug}/items/": [
            {"headers": headers, "path_parameters": {"slug": SLUG}, "query": {"user_id": "²"}},
            {"headers": headers, "path_parameters": {"slug": SLUG}, "query": {"user_id": str(2**64)}},
        ],
        "GET /api/incidents/{slug}/items-export/": [{"headers": headers, "path_parameters": {"slug": "a\x00b"}}],
        "GET /api/inbound-messages/": [
            {"headers": headers, "query": {"incident": "a\x00b", "outcome": "new_claim"}},
            {"headers": headers, "query": {"incident": SLUG, "outcome": "\x00"}},
        ],
    }.get(label, [])


def fuzz(api_schema, *, role: str, headers: dict, claim_ids: list[str]) -> tuple[dict, int]:
    """Call every operation; return the distinct failures and the number of requests."""
    failures: dict[tuple, dict] = {}
    server_errors = ServerErrors()
    calls = 0

    def call(operation, mode: str, case) -> None:
        nonlocal calls
        cache.clear()  # the per-user throttle is not under test here
        server_errors.last = None
        calls += 1
        response = case.call()
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (Failure, FailureGroup) as exc:
            found = list(exc.exceptions) if isinstance(exc, FailureGroup) else [exc]
            record(failures, role, operation, mode, case, response, found, server_errors.last)

    operations = []
    for result in api_schema.get_all_operations():
        assert isinstance(result, Ok), f"the schema has an invalid operation: {result.err()}"
        operations.append(result.ok())
    unsatisfiable: list[str] = []
    got_request_exception.connect(server_errors)
    try:
        for operation in operations:
            for mode in MODES:

                @HYPOTHESIS
                @given(case=strategy_for(operation, mode, headers, claim_ids))
                def run(case):
                    call(operation, mode.value, case)  # noqa: B023 (run() is called right here)

                try:
                    run()
                except Unsatisfiable:
                    # Negative mode: an operation whose every input is valid (e.g. only a string path
                    # parameter) has no invalid request to send. Positive mode must always run.
                    if mode == schemathesis.GenerationMode.POSITIVE:
                        raise
                    unsatisfiable.append(operation.label)
        for operation in operations:
            for values in edge_cases(operation.label, headers, claim_ids):
                media = {"media_type": "application/json"} if "body" in values else {}
                call(operation, "edge", operation.Case(**values, **media))
    finally:
        got_request_exception.disconnect(server_errors)
    print(f"{role}: {calls} requests; no negative input for: {', '.join(unsatisfiable) or 'none'}")
    return failures, calls


def record(failures, role, operation, mode, case, response, found, server_traceback) -> None:
    """Keep one entry per distinct failure, with the smallest request that showed it.

    A 5xx is one failure however many checks it fails, told apart by the server's exception; a
    schema violation by where in the schema it is; the rest by check and status.
    """
    body = response.content.decode("utf-8", "replace")
    if response.status_code >= 500:
        exception = (server_traceback or "").splitlines()[-1:] or [""]
        groups = {(role, operation.label, response.status_code, exception[0]): found}
    else:
        groups = {}
        for failure in found:
            where = next((line for line in failure.message.splitlines() if line.startswith("Schema at ")), "")
            first = failure.message.strip().splitlines()[0] if where and failure.message.strip() else ""
            groups[(role, operation.label, response.status_code, failure.title, first, where)] = [failure]
    for key, group in groups.items():
        entry = {
            "role": role,
            "operation": operation.label,
            "mode": mode,
            "status": response.status_code,
            "check": ", ".join(failure.title for failure in group),
            "message": "\n".join(failure.message.strip() for failure in group if failure.message.strip())[:1500],
            "request": case.as_curl_command(),
            "response": body[:1500],
            "traceback": server_traceback,
            "count": 1,
        }
        seen = failures.get(key)
        if seen is None:
            failures[key] = entry
        else:
            seen["count"] += 1
            if len(entry["request"]) < len(seen["request"]):  # keep the smallest input
                entry["count"] = seen["count"]
                failures[key] = entry


def report(failures: dict) -> str:
    lines = [f"{len(failures)} distinct schema failures:"]
    for n, entry in enumerate(failures.values(), 1):
        lines += [
            "",
            f"[{n}] {entry['role']}: {entry['operation']} ({entry['mode']} input, seen {entry['count']}x)",
            f"    check: {entry['check']}; response {entry['status']}",
            "    " + entry["message"].replace("\n", "\n    "),
            f"    request: {entry['request']}",
            f"    response body: {entry['response']}",
        ]
        if entry["traceback"]:
            lines.append("    server traceback:\n      " + entry["traceback"].strip().replace("\n", "\n      "))
    return "\n".join(lines)


def test_the_api_schema_is_served_and_lists_every_operation(api_schema):
    labels = {result.ok().label for result in api_schema.get_all_operations()}

    assert labels == {
        "GET /api/claims/",
        "POST /api/claims/",
        "GET /api/claims/{public_id}/",
        "GET /api/incidents/",
        "GET /api/incidents/{slug}/",
        "GET /api/incidents/{slug}/items/",
        "GET /api/incidents/{slug}/items-export/",
        # staff operations, acting for a person
        "GET /api/items/{id}/",
        "POST /api/items/{id}/approve/",
        "POST /api/items/{id}/reject/",
        "POST /api/items/{id}/amount/",
        "POST /api/items/{id}/accept-recomputation/",
        "POST /api/items/{id}/send-back/",
        "POST /api/claims/{public_id}/approve/",
        "POST /api/claims/{public_id}/reject/",
        "POST /api/claims/{public_id}/review/",
        "POST /api/claims/{public_id}/amount/",
        "GET /api/limit-changes/",
        "POST /api/limit-changes/{id}/confirm/",
        # payouts, for finance
        "GET /api/incidents/{slug}/payout-batches/",
        "POST /api/incidents/{slug}/payout-batches/",
        "GET /api/incidents/{slug}/payout-batches/{number}/",
        "GET /api/incidents/{slug}/payout-batches/{number}/treasury/{kind}/",
        "GET /api/incidents/{slug}/reconciliation/",
        "POST /api/payout-confirmations/",
        "POST /api/payout-lines/{key}/release/",
        # e-mail received
        "GET /api/inbound-messages/",
    }
    assert json.loads(json.dumps(api_schema.raw_schema))["components"]["securitySchemes"]["apiToken"]["in"] == "header"


@pytest.mark.parametrize(
    "role, scopes, user_header",
    [
        ("staff", ["claims", "staff"], None),
        # A staff client bound to a person who approves: the write operations succeed too.
        ("staff acting for an approver", ["claims", "staff"], None),
        ("staff acting for finance", ["claims", "staff"], None),
        ("front end", ["claims"], str(FRONT_END_USER)),
        # The front end again, with X-Claimdesk-User generated from the schema (any, or a malformed, userId).
        ("front end, generated user header", ["claims"], None),
    ],
    ids=["staff", "staff-person", "staff-finance", "front-end", "front-end-any-user-header"],
)
def test_every_operation_gives_only_documented_responses(api_schema, sample, role, scopes, user_header):
    _, claim_ids = sample
    headers = {"Authorization": f"Token {api_client(role, scopes)}"}
    if user_header:
        headers["X-Claimdesk-User"] = user_header

    failures, calls = fuzz(api_schema, role=role, headers=headers, claim_ids=claim_ids)

    assert calls >= 25 * len(MODES)
    assert not failures, report(failures)


def test_operation_descriptions_are_written_for_callers_not_for_us():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)

    descriptions = [
        op.get("description", "") for ops in schema["paths"].values() for op in ops.values() if isinstance(op, dict)
    ]
    assert descriptions and all(descriptions)
    assert not [d for d in descriptions if "mixin" in d.lower() or "round trip" in d.lower()]
