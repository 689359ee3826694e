"""The claims app's models, by concern: incidents and items (with approvals), claims, payouts and
the audit trail."""

from .audit import AppendOnlyError, AuditHash, AuditRecord, AuditSeal
from .claims import (
    ApiClient,
    Claim,
    ClaimAttachment,
    ClaimItem,
    ClaimKind,
    ClaimVerification,
    Notification,
    attachment_path,
)
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

__all__ = [
    "DETECTED_KINDS", "DETECTION_SETTINGS", "LIMIT_SETTINGS", "SETTING_FIELDS", "ApiClient", "AppendOnlyError",
    "ApprovalLimitChange", "AuditHash", "AuditRecord", "AuditSeal", "Claim", "ClaimAttachment", "ClaimItem",
    "ClaimKind", "ClaimVerification", "DetectionChunk", "DetectionRun", "Finding", "Incident", "Item",
    "ItemApproval", "ItemKind", "Notification", "PayoutBatch", "PayoutConfirmation", "PayoutLine", "PayoutLineItem",
    "attachment_path",
]
