"""Staff API: the e-mail received, as `export_inbound` writes it (email-intake.md, "Export"), in
the order received, with each message's id and when it came."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.exceptions import ValidationError

from . import selectors
from .api import SLUG
from .api_auth import CallerThrottle, IsStaffCaller, WindowThrottled
from .inbound import AUTO_GENERATED, AUTO_REPLY, BULK, DSN
from .models import ClaimKind, InboundMessage


class InboundAttachmentSerializer(serializers.Serializer):
    filename = serializers.CharField(allow_null=True, help_text="Decoded, as the sender named it.")
    contentType = serializers.CharField()  # noqa: N815  the export's own names
    size = serializers.IntegerField(help_text="Bytes, decoded (a broken attachment: as received).")


class InboundMessageSerializer(serializers.Serializer):
    """One message received: its export line, with its id and when it came."""

    id = serializers.IntegerField()
    receivedAt = serializers.DateTimeField()  # noqa: N815
    messageId = serializers.CharField(allow_null=True, help_text="With angle brackets; null when it has none.")  # noqa: N815
    sha256 = serializers.CharField(help_text="Of the raw bytes, in hex.")
    outcome = serializers.ChoiceField(
        choices=InboundMessage.Outcome.choices, allow_null=True, help_text="Null while it waits for the intake task."
    )
    userId = serializers.IntegerField(allow_null=True, help_text="The account the outcome concerns.")  # noqa: N815
    claim = serializers.UUIDField(
        allow_null=True,
        help_text="The claim's public id (for a reply or a duplicate: the claim the original belongs to).",
    )
    kind = serializers.ChoiceField(choices=ClaimKind.choices, allow_null=True)
    symbols = serializers.ListField(child=serializers.CharField())
    tradeIds = serializers.ListField(child=serializers.IntegerField())  # noqa: N815
    orderIds = serializers.ListField(child=serializers.CharField())  # noqa: N815
    withdrawalIds = serializers.ListField(child=serializers.IntegerField())  # noqa: N815
    txHashes = serializers.ListField(child=serializers.CharField())  # noqa: N815
    amounts = serializers.ListField(
        child=serializers.ListField(child=serializers.CharField(), min_length=2, max_length=2),
        help_text='[decimal as written, asset], e.g. ["104000.00", "USDC"].',
    )
    attachments = InboundAttachmentSerializer(many=True)
    ignoredReason = serializers.ChoiceField(
        choices=[AUTO_REPLY, AUTO_GENERATED, DSN, BULK],  # noqa: N815
        allow_null=True,
    )


INBOUND_FILTERS = [
    OpenApiParameter("incident", OpenApiTypes.STR, description="incident slug"),
    OpenApiParameter("outcome", OpenApiTypes.STR, enum=InboundMessage.Outcome.values),
]


@extend_schema(parameters=INBOUND_FILTERS)
class InboundMessageViewSet(WindowThrottled, mixins.ListModelMixin, viewsets.GenericViewSet):
    """Staff: the messages received, oldest first (duplicates included)."""

    serializer_class = InboundMessageSerializer
    permission_classes = [IsStaffCaller]
    throttle_classes = [CallerThrottle]

    def get_queryset(self):
        messages = selectors.inbound_list()
        params = self.request.query_params
        if params.get("incident"):
            if not SLUG.match(params["incident"]):
                raise ValidationError({"incident": ["unknown incident"]})
            messages = messages.filter(incident__slug=params["incident"])
        if params.get("outcome"):
            if params["outcome"] not in InboundMessage.Outcome.values:
                raise ValidationError({"outcome": ["unknown outcome"]})
            messages = messages.filter(outcome=params["outcome"])
        return messages

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.get_queryset())
        lines = [{"id": m.id, "receivedAt": m.received_at, **selectors.inbound_export_line(m)} for m in page]
        return self.get_paginated_response(InboundMessageSerializer(lines, many=True).data)
