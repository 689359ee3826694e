"""The REST API's payout operations for finance: batches and their treasury files, treasury's
confirmation files, releases of failed lines, and the reconciliation report. Each acts for a
person (api_auth.acting_person) through the same services as the commands and the admin."""

import re

from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from . import selectors, services
from .api import SLUG
from .api_auth import CallerThrottle, IsStaffCaller, WindowThrottled, acting_person
from .api_staff import REFUSED, ReasonSerializer, RoleForbidden, act
from .models import Incident, PayoutBatch, PayoutLine
from .roles import FINANCE, Actor, RoleRefused

NUMBER = re.compile(r"[1-9][0-9]{0,8}\Z")
KEY = re.compile(r"[-a-zA-Z0-9_]+\.[1-9][0-9]{0,8}\.[1-9][0-9]{0,8}\Z")


def _incident(slug: str) -> Incident:
    if not SLUG.match(slug):
        raise Http404("no such incident")
    return get_object_or_404(Incident, slug=slug)


def _batch(slug: str, number: str) -> PayoutBatch:
    batch = selectors.payout_batch_get(incident=_incident(slug), number=int(number)) if NUMBER.match(number) else None
    if batch is None:
        raise Http404("no such payout batch")
    return batch


class PayoutLineSerializer(serializers.ModelSerializer):
    amount = serializers.DecimalField(max_digits=38, decimal_places=18, coerce_to_string=True)

    class Meta:
        model = PayoutLine
        fields = [
            "key",
            "number",
            "user_id",
            "asset",
            "amount",
            "status",
            "transaction_id",
            "confirmed_at",
            "released_by",
            "released_at",
            "release_reason",
        ]


class PayoutBatchSerializer(serializers.ModelSerializer):
    incident = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    lines = PayoutLineSerializer(many=True, read_only=True)

    class Meta:
        model = PayoutBatch
        fields = ["incident", "number", "asset", "created_by", "created_at", "lines"]


class BatchRequestSerializer(serializers.Serializer):
    asset = serializers.RegexField(r"^[A-Z0-9]{1,32}$", required=False, help_text="Only this asset's items.")


class NothingToPaySerializer(serializers.Serializer):
    detail = serializers.CharField()


class PayoutBatchesView(WindowThrottled, APIView):
    """Finance: an incident's payout batches; POST creates one from every approved item in no line."""

    permission_classes = [IsStaffCaller]
    throttle_classes = [CallerThrottle]

    @extend_schema(responses=PayoutBatchSerializer(many=True))
    def get(self, request, slug: str):
        batches = (
            PayoutBatch.objects.filter(incident=_incident(slug))
            .select_related("incident")
            .prefetch_related("lines")
            .order_by("number")
        )
        return Response(PayoutBatchSerializer(batches, many=True).data)

    @extend_schema(
        request=BatchRequestSerializer,
        responses={
            201: PayoutBatchSerializer,
            200: OpenApiResponse(NothingToPaySerializer, description="No approved item to pay"),
            **REFUSED,
        },
    )
    def post(self, request, slug: str):
        incident = _incident(slug)
        body = BatchRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        batch = act(request, services.payout_batch_create, incident=incident, asset=body.validated_data.get("asset"))
        if batch is None:
            return Response({"detail": "no approved item to pay"})
        return Response(PayoutBatchSerializer(_batch(slug, str(batch.number))).data, status=status.HTTP_201_CREATED)


class PayoutBatchView(WindowThrottled, APIView):
    """Finance: one payout batch of an incident, with its lines."""

    permission_classes = [IsStaffCaller]
    throttle_classes = [CallerThrottle]

    @extend_schema(responses=PayoutBatchSerializer)
    def get(self, request, slug: str, number: str):
        return Response(PayoutBatchSerializer(_batch(slug, number)).data)


class TreasuryFileView(WindowThrottled, APIView):
    """A batch's file for treasury, exactly as `payout_files` writes it: `csv` or `json`."""

    permission_classes = [IsStaffCaller]
    throttle_classes = [CallerThrottle]

    @extend_schema(responses={(200, "text/csv"): OpenApiTypes.STR, (200, "application/json"): OpenApiTypes.OBJECT})
    def get(self, request, slug: str, number: str, kind: str):
        if kind not in ("csv", "json"):
            raise Http404("a treasury file is csv or json")
        name, text = next(
            (n, t)
            for n, t in services.payout_files_render(batch=_batch(slug, number)).items()
            if n.endswith(f".{kind}")
        )
        response = HttpResponse(text.encode(), content_type="text/csv" if kind == "csv" else "application/json")
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


class ConfirmationRequestSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="Treasury's CSV: lineKey,status,transactionId,confirmedAt")


class ConfirmationSerializer(serializers.Serializer):
    file_name = serializers.CharField()
    sha256 = serializers.CharField()
    rows = serializers.IntegerField()
    paid = serializers.IntegerField()
    failed = serializers.IntegerField()
    unchanged = serializers.IntegerField()


class ConfirmationsView(WindowThrottled, APIView):
    """Finance: record treasury's confirmation file, validated whole (any error rejects all of it)."""

    permission_classes = [IsStaffCaller]
    throttle_classes = [CallerThrottle]
    parser_classes = [MultiPartParser]

    @extend_schema(
        request={"multipart/form-data": ConfirmationRequestSerializer},
        responses={201: ConfirmationSerializer, **REFUSED},
    )
    def post(self, request):
        body = ConfirmationRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        upload = body.validated_data["file"]
        recorded = act(request, services.payouts_confirm, content=upload.read(), file_name=upload.name[:500])
        return Response(ConfirmationSerializer(recorded).data, status=status.HTTP_201_CREATED)


class ReleaseView(WindowThrottled, APIView):
    """Finance: release a failed line, so that a later batch pays its items again (new key)."""

    permission_classes = [IsStaffCaller]
    throttle_classes = [CallerThrottle]

    @extend_schema(request=ReasonSerializer, responses={200: PayoutLineSerializer, **REFUSED})
    def post(self, request, key: str):
        if not KEY.match(key) or not PayoutLine.objects.filter(key=key).exists():
            raise Http404("no such payout line")
        body = ReasonSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        line = act(request, services.payout_line_release, key=key, reason=body.validated_data["reason"])
        return Response(PayoutLineSerializer(line).data)


class ReconciliationView(WindowThrottled, APIView):
    """Finance: the incident's payout lines against the ledger's compensation credits, as CSV
    (only the header when nothing differs). `X-Claimdesk-Differences` counts the rows."""

    permission_classes = [IsStaffCaller]
    throttle_classes = [CallerThrottle]

    @extend_schema(responses={(200, "text/csv"): OpenApiTypes.STR, **REFUSED})
    def get(self, request, slug: str):
        incident = _incident(slug)
        try:
            Actor.person(acting_person(request)).require({FINANCE}, "run reconciliation")
        except RoleRefused as exc:
            raise RoleForbidden(str(exc)) from exc
        rows = services.reconcile(incident=incident)
        response = HttpResponse(services.reconciliation_csv(rows).encode(), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="{incident.slug}-reconciliation.csv"'
        response["X-Claimdesk-Differences"] = str(len(rows))
        return response
