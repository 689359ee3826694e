"""The REST API: the exchange's front end files and reads claims for the user it has logged in;
staff tools read every claim, incident and item.

Callers authenticate with `Authorization: Token <token>` (an ApiClient with scopes) or, for
staff in a browser, the admin session. A front-end call names its user in the
`X-Claimdesk-User` header; it sees that user's claims only, and any other claim id answers 404.
"""

import csv
import functools
import io
import re

from django.conf import settings
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.utils.cache import add_never_cache_headers
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from . import selectors, services
from .api_auth import (
    USER_PARAMETER,
    CallerThrottle,
    CanFileClaims,
    ClaimantThrottle,
    IsStaffCaller,
    WindowThrottled,
    acting_user_id,
    is_user_id,
)
from .explain import explain
from .models import SETTING_FIELDS, ApiClient, Claim, ClaimKind, Incident, Item, ItemKind
from .money import amount_from

# --- serializers ---


class PlainDecimalField(serializers.DecimalField):
    """An amount: a plain ASCII decimal (`1000.50`), never `1_000`, other scripts' digits, `-0` or an
    exponent, which Decimal() alone would take."""

    default_error_messages = {"plain": "Write a plain decimal with the digits 0-9 and at most one point, e.g. 1000.50."}

    def to_internal_value(self, data):
        value = amount_from(data)
        if value is None:
            self.fail("plain")
        return super().to_internal_value(value)


class ClaimCreateSerializer(serializers.Serializer):
    incident = serializers.SlugField(max_length=100, help_text="The incident's slug.")
    user_id = serializers.IntegerField(
        required=False, min_value=1, max_value=2**63 - 1, help_text="Staff callers only: the claimant's userId."
    )
    kind = serializers.ChoiceField(choices=ClaimKind.choices)
    description = serializers.CharField(required=False, allow_blank=True, max_length=10000, default="")
    trade_id = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    order_id = serializers.CharField(required=False, allow_blank=True, max_length=64)
    withdrawal_id = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    transaction_hash = serializers.CharField(required=False, allow_blank=True, max_length=200)
    market_symbol = serializers.CharField(required=False, allow_blank=True, max_length=64)
    approximate_time = serializers.DateTimeField(required=False)
    # 12 digits before the point: any real loss, and within what every supported database stores.
    claimed_amount = PlainDecimalField(required=False, max_digits=30, decimal_places=18, min_value=0)
    claimed_asset = serializers.CharField(required=False, allow_blank=True, max_length=32)
    language = serializers.ChoiceField(choices=["en", "zh-hans", "pt-br"], default="en")


class ItemSerializer(serializers.ModelSerializer):
    amount = serializers.DecimalField(max_digits=38, decimal_places=18, coerce_to_string=True, allow_null=True)
    explanation = serializers.SerializerMethodField()

    class Meta:
        model = Item
        fields = ["kind", "reference", "asset", "amount", "status", "review_reason", "explanation"]

    def get_explanation(self, item) -> str:
        return explain(
            kind=item.kind, inputs=item.inputs, amount=item.amount, asset=item.asset, review_reason=item.review_reason
        )


class StaffItemSerializer(ItemSerializer):
    usdc_value = serializers.DecimalField(max_digits=38, decimal_places=18, coerce_to_string=True, allow_null=True)
    flagged_amount = serializers.DecimalField(max_digits=38, decimal_places=18, coerce_to_string=True, allow_null=True)

    class Meta(ItemSerializer.Meta):
        fields = [
            "id",
            "user_id",
            *ItemSerializer.Meta.fields,
            "approval",
            "usdc_value",
            "formula",
            "inputs",
            "event_at",
            "corrective_action",
            "flagged_at",
            "flagged_amount",
            "flag_reason",
        ]


class TransitionSerializer(serializers.Serializer):
    """A claim's record in the audit trail, as a transition."""

    at = serializers.DateTimeField()
    from_status = serializers.CharField()
    to_status = serializers.CharField()
    reason = serializers.CharField()


class ClaimSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    incident = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    merged_into = serializers.SlugRelatedField(slug_field="public_id", read_only=True, allow_null=True)
    claimed_amount = serializers.DecimalField(max_digits=38, decimal_places=18, coerce_to_string=True, allow_null=True)
    items = ItemSerializer(many=True, read_only=True)
    transitions = TransitionSerializer(many=True, read_only=True, source="history")

    class Meta:
        model = Claim
        fields = [
            "id",
            "incident",
            "user_id",
            "channel",
            "kind",
            "description",
            *services.REFERENCE_FIELDS,
            "language",
            "status",
            "merged_into",
            "items",
            "transitions",
            "created_at",
        ]


class IncidentSerializer(serializers.ModelSerializer):
    auto_approve_limit = serializers.DecimalField(max_digits=38, decimal_places=18, coerce_to_string=True)
    dual_approval_limit = serializers.DecimalField(max_digits=38, decimal_places=18, coerce_to_string=True)

    class Meta:
        model = Incident
        fields = ["slug", *SETTING_FIELDS, "settings_version"]


# --- views ---

SLUG = re.compile(r"[-a-zA-Z0-9_]+\Z")
CLAIM_FILTERS = [
    OpenApiParameter("status", OpenApiTypes.STR, enum=Claim.Status.values),
    OpenApiParameter("kind", OpenApiTypes.STR, enum=ClaimKind.values),
    OpenApiParameter("incident", OpenApiTypes.STR, description="incident slug"),
]


@extend_schema_view(
    list=extend_schema(parameters=[USER_PARAMETER, *CLAIM_FILTERS]),
    retrieve=extend_schema(parameters=[USER_PARAMETER]),
    create=extend_schema(parameters=[USER_PARAMETER], request=ClaimCreateSerializer, responses={201: ClaimSerializer}),
)
class ClaimViewSet(
    WindowThrottled, mixins.CreateModelMixin, mixins.RetrieveModelMixin, mixins.ListModelMixin, viewsets.GenericViewSet
):
    """Claims: the exchange's front end files and reads them for the user it has logged in (named in
    `X-Claimdesk-User`); staff read every claim."""

    serializer_class = ClaimSerializer
    permission_classes = [CanFileClaims]
    throttle_classes = [CallerThrottle, ClaimantThrottle]
    lookup_field = "public_id"
    lookup_value_regex = "[^/]+"  # a malformed id is a JSON 404 from the view, not Django's HTML page

    def get_queryset(self):
        filters = self._list_filters() if self.action == "list" else {}
        return selectors.claim_list(user_id=acting_user_id(self.request), **filters)

    def _list_filters(self) -> dict:
        """The list's query parameters, checked: an unknown value is a 400 naming its parameter."""
        filters, params = {}, self.request.query_params
        for name, key, allowed in (
            ("status", "status", Claim.Status.values),
            ("kind", "kind", ClaimKind.values),
            ("incident", "incident_slug", None),
        ):
            value = params.get(name)
            if value:
                if (allowed is not None and value not in allowed) or (allowed is None and not SLUG.match(value)):
                    raise ValidationError({name: [f"unknown {name}"]})
                filters[key] = value
        return filters

    def finalize_response(self, request, response, *args, **kwargs):
        add_never_cache_headers(response)  # claims are personal: never kept by a browser or a proxy
        return super().finalize_response(request, response, *args, **kwargs)

    # A claim's transitions are its records in the audit trail: read for the claims shown, in one query.
    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)
        return None if page is None else selectors.claims_with_history(page)

    def get_object(self):
        return selectors.claims_with_history([super().get_object()])[0]

    def create(self, request, *args, **kwargs):
        try:
            values = _filing().run_validation(request.data)
        except ValidationError as exc:  # as is_valid() words it: a dict naming each field
            raise ValidationError(serializers.as_serializer_error(exc)) from exc
        user_id = acting_user_id(request)
        staff = user_id is None
        if staff:
            user_id = values.get("user_id")
            if user_id is None:
                raise ValidationError({"user_id": ["required for staff callers"]})
        references = {k: values[k] for k in services.REFERENCE_FIELDS if values.get(k) not in (None, "")}
        try:
            claim = services.claim_file(
                incident_slug=values["incident"],
                user_id=user_id,
                channel=Claim.Channel.STAFF if staff else Claim.Channel.API,
                kind=values["kind"],
                description=values["description"],
                references=references,
                language=values["language"],
                actor=_actor(request),
            )
        except services.ClaimRefused as exc:
            raise ValidationError({exc.field or "non_field_errors": [str(exc)]}) from exc
        if settings.CELERY_TASK_ALWAYS_EAGER:  # matching has run in this request: the claim has moved on
            claim = selectors.claims_with_history([self.get_queryset().get(pk=claim.pk)])[0]
        return Response(_shown().to_representation(claim), status=status.HTTP_201_CREATED)


# DRF builds every field of a serializer (deep copies and, for a ModelSerializer, the model's
# introspection) for each new instance: that was a third of the time it took to file a claim.
# These two use no context and keep nothing between calls once their fields are bound, so one
# instance of each serves every request of the process.
@functools.cache
def _filing() -> ClaimCreateSerializer:
    return ClaimCreateSerializer()


@functools.cache
def _shown() -> ClaimSerializer:
    return ClaimSerializer()


def _csv_lines(*row_lists):
    """CSV text a line at a time, for a streamed response."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for rows in row_lists:
        for row in rows:
            writer.writerow(row)
            yield out.getvalue()
            out.seek(0)
            out.truncate()


def _actor(request) -> str:
    user = request.user
    return f"api client {user.name}" if isinstance(user, ApiClient) else f"staff {user.get_username()}"


ITEM_FILTERS = [
    OpenApiParameter("status", OpenApiTypes.STR, enum=Item.Status.values),
    OpenApiParameter("kind", OpenApiTypes.STR, enum=ItemKind.values),
    OpenApiParameter("user_id", OpenApiTypes.INT),
]


class IncidentViewSet(WindowThrottled, viewsets.ReadOnlyModelViewSet):
    """Staff: incidents, their items and the policy's items export."""

    serializer_class = IncidentSerializer
    permission_classes = [IsStaffCaller]
    throttle_classes = [CallerThrottle]
    lookup_field = "slug"
    lookup_value_regex = "[^/]+"  # answered by get_object: a JSON 404 for any malformed slug
    queryset = Incident.objects.order_by("-window_start")

    def get_object(self):
        slug = self.kwargs["slug"]
        if not SLUG.match(slug):  # e.g. a NUL byte, which PostgreSQL text cannot even be compared with
            raise Http404("no such incident")
        return get_object_or_404(Incident, slug=slug)

    @extend_schema(parameters=ITEM_FILTERS, responses=StaffItemSerializer(many=True))
    @action(detail=True, methods=["get"])
    def items(self, request, slug=None):
        incident = self.get_object()
        params, filters = request.query_params, {}
        for name, allowed in (("status", Item.Status.values), ("kind", ItemKind.values)):
            if params.get(name):
                if params[name] not in allowed:
                    raise ValidationError({name: [f"unknown {name}"]})
                filters[name] = params[name]
        if params.get("user_id"):
            if not is_user_id(params["user_id"]):
                raise ValidationError({"user_id": ["must be a whole number"]})
            filters["user_id"] = int(params["user_id"])
        items = selectors.item_list(incident=incident, **filters).order_by("user_id", "kind", "reference", "asset")
        page = self.paginate_queryset(items)
        return self.get_paginated_response(StaffItemSerializer(page, many=True).data)

    @extend_schema(responses={(200, "text/csv"): OpenApiTypes.STR})
    @action(detail=True, methods=["get"], url_path="items-export")
    def items_export(self, request, slug=None):
        incident = self.get_object()
        response = StreamingHttpResponse(
            _csv_lines([selectors.EXPORT_HEADER], selectors.item_export_iter(incident=incident)),
            content_type="text/csv",
        )
        response["Content-Disposition"] = f'attachment; filename="{incident.slug}-items.csv"'
        return response
