"""The REST API's staff operations: approving, rejecting, setting amounts and sending items back,
deciding claims, confirming approval limits. Each acts for a person (api_auth.acting_person) and
goes through the same service, with the same rules, as the admin and the commands.

A refusal by role answers 403; a refusal by another rule (or an action that changed nothing:
already decided, a stale version) answers 409. Both are JSON: {"detail": why, "rule": which}.
"""

import re

from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException
from rest_framework.response import Response

from . import services
from .api import StaffItemSerializer
from .api_auth import CallerThrottle, IsStaffCaller, WindowThrottled, acting_person
from .models import ApprovalLimitChange, Claim, Item, ItemApproval
from .roles import Actor, Refused, RoleRefused


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "refused"

    def __init__(self, detail: str, rule: str):
        super().__init__({"detail": detail, "rule": rule})


class RoleForbidden(APIException):
    status_code = status.HTTP_403_FORBIDDEN
    default_code = "role"

    def __init__(self, detail: str):
        super().__init__({"detail": detail, "rule": "role"})


REFUSED = {
    403: OpenApiResponse(description="The person holds no role that may do this: `{detail, rule}`."),
    409: OpenApiResponse(
        description="Refused by a rule, or nothing to change (already decided, a stale version): `{detail, rule}`."
    ),
}


def act(request, service, **kwargs):
    """Run a service as the person the call acts for; refusals become 403 / 409."""
    try:
        return service(actor=Actor.person(acting_person(request)), **kwargs)
    except RoleRefused as exc:
        raise RoleForbidden(str(exc)) from exc
    except Refused as exc:
        raise Conflict(str(exc), exc.rule) from exc


def changed_or_conflict(outcome: services.Outcome) -> None:
    if not outcome.changed:
        raise Conflict(outcome.message, "nothing to change")


class ApprovalSerializer(serializers.ModelSerializer):
    class Meta:
        model = ItemApproval
        fields = ["version", "slot", "approver_name", "is_approver_role", "at"]


class ItemDetailSerializer(StaffItemSerializer):
    approvals = ApprovalSerializer(many=True, read_only=True)
    incident = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta(StaffItemSerializer.Meta):
        fields = [*StaffItemSerializer.Meta.fields, "incident", "version", "amount_set_by", "approvals"]


class VersionSerializer(serializers.Serializer):
    version = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="The version the person saw; refused (409) if it is no longer current. Omitted: the current version.",
    )


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=5000, help_text="Recorded in the audit trail.")


class RejectSerializer(VersionSerializer, ReasonSerializer):
    pass


class AmountSerializer(ReasonSerializer):
    amount = serializers.RegexField(
        r"^[0-9]+(\.[0-9]+)?$",
        max_length=60,
        help_text="A plain decimal, greater than 0, with at most the asset's decimals.",
    )


class ClaimAmountSerializer(AmountSerializer):
    asset = serializers.RegexField(r"^[A-Z0-9]{1,32}$", help_text="The asset it is paid in, e.g. USDC.")


class OutcomeSerializer(serializers.Serializer):
    """What a decision did to one item: changed, or why not."""

    item_id = serializers.IntegerField()
    changed = serializers.BooleanField()
    message = serializers.CharField()


class JsonLookup:
    """A malformed id in the path is a JSON 404 from the view, not Django's HTML page: the route
    takes any segment (`[^/]+`) and get_object checks its shape first."""

    lookup_value_regex = "[^/]+"
    lookup_shape = re.compile(r"[0-9]{1,18}\Z")

    def get_object(self):
        raw = self.kwargs[self.lookup_url_kwarg or self.lookup_field]
        if not self.lookup_shape.match(raw):
            raise Http404(f"no such {self.queryset.model._meta.verbose_name}")
        return super().get_object()


def _body(serializer_class, request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class ItemViewSet(JsonLookup, WindowThrottled, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Staff: one item with its approvals, and what people do to it."""

    serializer_class = ItemDetailSerializer
    permission_classes = [IsStaffCaller]
    throttle_classes = [CallerThrottle]
    queryset = Item.objects.select_related("incident").prefetch_related("approvals")

    def _done(self, item_id: int) -> Response:
        return Response(ItemDetailSerializer(self.get_queryset().get(id=item_id)).data)

    @extend_schema(request=VersionSerializer, responses={200: ItemDetailSerializer, **REFUSED})
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        item = self.get_object()
        changed_or_conflict(
            act(
                request,
                services.item_approve,
                item_id=item.id,
                version=_body(VersionSerializer, request).get("version"),
            )
        )
        return self._done(item.id)

    @extend_schema(request=RejectSerializer, responses={200: ItemDetailSerializer, **REFUSED})
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        item, body = self.get_object(), _body(RejectSerializer, request)
        changed_or_conflict(
            act(request, services.item_reject, item_id=item.id, reason=body["reason"], version=body.get("version"))
        )
        return self._done(item.id)

    @extend_schema(request=AmountSerializer, responses={200: ItemDetailSerializer, **REFUSED})
    @action(detail=True, methods=["post"])
    def amount(self, request, pk=None):
        """Set the amount by hand: a new version that two other people approve."""
        item, body = self.get_object(), _body(AmountSerializer, request)
        act(request, services.item_amount_set, item_id=item.id, amount=body["amount"], reason=body["reason"])
        return self._done(item.id)

    @extend_schema(request=ReasonSerializer, responses={200: ItemDetailSerializer, **REFUSED})
    @action(detail=True, methods=["post"], url_path="accept-recomputation")
    def accept_recomputation(self, request, pk=None):
        item = self.get_object()
        act(
            request,
            services.item_recomputation_accept,
            item_id=item.id,
            reason=_body(ReasonSerializer, request)["reason"],
        )
        return self._done(item.id)

    @extend_schema(request=ReasonSerializer, responses={200: ItemDetailSerializer, **REFUSED})
    @action(detail=True, methods=["post"], url_path="send-back")
    def send_back(self, request, pk=None):
        """Send a decided item back to undecided (a rejected one is reopened): a new version."""
        item = self.get_object()
        act(request, services.item_send_back, item_id=item.id, reason=_body(ReasonSerializer, request)["reason"])
        return self._done(item.id)


class ClaimDecisionViewSet(JsonLookup, WindowThrottled, viewsets.GenericViewSet):
    """Staff: decisions on a claim, which act on its items."""

    permission_classes = [IsStaffCaller]
    throttle_classes = [CallerThrottle]
    queryset = Claim.objects.all()
    pagination_class = None  # answers are one claim's outcomes, never a page
    lookup_field = "public_id"
    lookup_shape = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")

    @extend_schema(request=None, responses={200: OutcomeSerializer(many=True), **REFUSED})
    @action(detail=True, methods=["post"])
    def approve(self, request, public_id=None):
        return _outcomes(act(request, services.claim_approve, claim_id=self.get_object().id))

    @extend_schema(request=ReasonSerializer, responses={200: OutcomeSerializer(many=True), **REFUSED})
    @action(detail=True, methods=["post"])
    def reject(self, request, public_id=None):
        claim_id = self.get_object().id
        return _outcomes(
            act(request, services.claim_reject, claim_id=claim_id, reason=_body(ReasonSerializer, request)["reason"])
        )

    @extend_schema(request=None, responses={200: OutcomeSerializer, **REFUSED})
    @action(detail=True, methods=["post"])
    def review(self, request, public_id=None):
        """Take the claim into review."""
        outcome = act(request, services.claim_take_into_review, claim_id=self.get_object().id)
        changed_or_conflict(outcome)
        return Response(OutcomeSerializer(outcome).data)

    @extend_schema(request=ClaimAmountSerializer, responses={201: ItemDetailSerializer, **REFUSED})
    @action(detail=True, methods=["post"])
    def amount(self, request, public_id=None):
        """Set an amount owed for a claim nothing was detected for (an item of kind `other`)."""
        body = _body(ClaimAmountSerializer, request)
        item = act(
            request,
            services.item_for_claim_create,
            claim_id=self.get_object().id,
            asset=body["asset"],
            amount=body["amount"],
            reason=body["reason"],
        )
        return Response(
            ItemDetailSerializer(Item.objects.prefetch_related("approvals").get(id=item.id)).data,
            status=status.HTTP_201_CREATED,
        )


def _outcomes(outcomes) -> Response:
    return Response(OutcomeSerializer(outcomes, many=True).data)


class LimitChangeSerializer(serializers.ModelSerializer):
    incident = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = ApprovalLimitChange
        fields = [
            "id",
            "incident",
            "auto_approve_limit",
            "dual_approval_limit",
            "proposed_by",
            "proposed_at",
            "status",
            "decided_by",
            "decided_at",
        ]


class LimitChangeViewSet(JsonLookup, WindowThrottled, mixins.ListModelMixin, viewsets.GenericViewSet):
    """Staff: approval limits proposed by one person, and their confirmation by a second approver."""

    serializer_class = LimitChangeSerializer
    permission_classes = [IsStaffCaller]
    throttle_classes = [CallerThrottle]
    queryset = ApprovalLimitChange.objects.select_related("incident").order_by("-id")

    @extend_schema(request=None, responses={200: LimitChangeSerializer, **REFUSED})
    @action(detail=True, methods=["post"])
    def confirm(self, request, pk=None):
        change = self.get_object()
        act(request, services.incident_limits_confirm, change_id=change.id)
        return Response(LimitChangeSerializer(self.get_queryset().get(id=change.id)).data)
