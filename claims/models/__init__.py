"""The claims app's models, by concern: incidents and items (with approvals), claims, e-mail
received, payouts and the audit trail."""

from .audit import AppendOnlyError, AuditHash, AuditRecord, AuditSeal
from .claims import (
    ApiClient,
    Claim,
    ClaimAttachment,
    ClaimItem,
    ClaimKind,
    ClaimSubmission,
    ClaimVerification,
    Notification,
    attachment_path,
)
from .inbound import InboundMessage
from .incidents import (
    DETECTED_KINDS,
    DETECTION_SETTINGS,
    LIMIT_SETTINGS,
    SETTING_FIELDS,
    ApprovalLimitChange,
    DetectionChunk,
    DetectionRun,
    Finding,
    Incident,
    Item,
    ItemApproval,
    ItemKind,
)
from .payouts import PayoutBatch, PayoutConfirmation, PayoutLine, PayoutLineItem

# Named for the OpenAPI schema's enums (config/settings.py, ENUM_NAME_OVERRIDES).
ClaimStatus, ItemStatus, LimitChangeStatus = Claim.Status, Item.Status, ApprovalLimitChange.Status
PayoutLineStatus, ItemApprovalTier = PayoutLine.Status, Item.Approval
InboundOutcome = InboundMessage.Outcome

__all__ = [
    "DETECTED_KINDS",
    "DETECTION_SETTINGS",
    "LIMIT_SETTINGS",
    "SETTING_FIELDS",
    "ApiClient",
    "AppendOnlyError",
    "ApprovalLimitChange",
    "AuditHash",
    "AuditRecord",
    "AuditSeal",
    "Claim",
    "ClaimAttachment",
    "ClaimItem",
    "ClaimKind",
    "ClaimSubmission",
    "ClaimVerification",
    "DetectionChunk",
    "DetectionRun",
    "Finding",
    "InboundMessage",
    "Incident",
    "Item",
    "ItemApproval",
    "ItemKind",
    "Notification",
    "PayoutBatch",
    "PayoutConfirmation",
    "PayoutLine",
    "PayoutLineItem",
    "attachment_path",
    "ClaimStatus",
    "ItemStatus",
    "LimitChangeStatus",
    "PayoutLineStatus",
    "ItemApprovalTier",
    "InboundOutcome",
]
