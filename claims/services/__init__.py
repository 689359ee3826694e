"""Writes that matter (the style guide's services), by concern: the compensation engine
(engine.py: incidents, detection runs, items), claims (claims.py: filing, verification, merging,
claims following their items), e-mail received (inbound.py), approvals (approvals.py), payouts
(payouts.py) and the audit trail (audit.py). Callers use `claims.services.<name>`; a test that
patches a function patches it in the module that defines it."""

from .approvals import (
    Outcome,
    claim_approve,
    claim_reject,
    claim_take_into_review,
    incident_limits_confirm,
    item_amount_set,
    item_approve,
    item_for_claim_create,
    item_recomputation_accept,
    item_reject,
    item_send_back,
    items_approve,
    items_reject,
)
from .audit import audit_history, audit_record, audit_seal, audit_verify
from .claims import (
    ATTACHMENT_TYPES,
    MAX_ATTACHMENT_BYTES,
    MAX_ATTACHMENTS,
    REFERENCE_FIELDS,
    VERIFICATION_LIFETIME,
    ClaimRefused,
    VerificationFailed,
    VerificationUsed,
    attachment_content_type,
    attachments_check,
    attachments_split,
    claim_add_information,
    claim_create,
    claim_file,
    claim_merge_if_repeated,
    claim_status_from_items,
    claim_transition,
    claim_verify,
    claimant_actor,
    claims_assign,
    claims_follow_items,
    claims_for_found_users,
    status_link_send,
    tasks_requeue,
    web_claim_submit,
    web_submission_file,
)
from .engine import (
    DEFAULT_CHUNK_SIZE,
    DETECTION_ACTOR,
    POLICY_ACTOR,
    IncidentFileError,
    IncidentLoaded,
    SettingsSaved,
    detect_users,
    detection_chunk_run,
    detection_chunks_requeue,
    detection_context,
    detection_start,
    incident_load,
    incident_settings_parse,
    incident_settings_save,
    item_approval,
    items_detect_and_save,
)
from .inbound import (
    inbound_parse,
    inbound_parse_again,
    inbound_requeue,
    inbound_store,
    incident_open_for_claims,
)
from .payouts import (
    ConfirmationInvalid,
    ReconciliationRow,
    payout_batch_create,
    payout_files_render,
    payout_files_write,
    payout_line_release,
    payouts_confirm,
    reconcile,
    reconciliation_csv,
)

__all__ = [
    "ATTACHMENT_TYPES", "DEFAULT_CHUNK_SIZE", "DETECTION_ACTOR", "MAX_ATTACHMENTS", "MAX_ATTACHMENT_BYTES",
    "POLICY_ACTOR", "REFERENCE_FIELDS", "VERIFICATION_LIFETIME", "ClaimRefused", "IncidentFileError",
    "IncidentLoaded", "Outcome", "SettingsSaved", "VerificationFailed", "VerificationUsed",
    "attachment_content_type", "attachments_check", "attachments_split", "audit_history", "audit_record",
    "audit_seal", "audit_verify", "claim_add_information",
    "claim_approve", "claim_create", "claim_file", "claim_merge_if_repeated", "claim_reject",
    "claim_status_from_items", "claim_take_into_review", "claim_transition", "claim_verify", "claimant_actor",
    "claims_assign", "claims_follow_items", "claims_for_found_users", "detect_users", "detection_chunk_run",
    "detection_chunks_requeue", "detection_context", "detection_start", "incident_limits_confirm",
    "incident_load", "incident_settings_parse", "incident_settings_save", "item_amount_set", "item_approval",
    "item_approve", "item_for_claim_create", "item_recomputation_accept", "item_reject", "item_send_back",
    "items_approve", "items_detect_and_save", "items_reject", "status_link_send", "tasks_requeue",
    "web_claim_submit",
    "web_submission_file",
    # inbound.py
    "inbound_parse", "inbound_parse_again", "inbound_requeue", "inbound_store", "incident_open_for_claims",
    # payouts.py
    "ConfirmationInvalid", "ReconciliationRow", "payout_batch_create", "payout_files_render", "payout_files_write",
    "payout_line_release",
    "payouts_confirm", "reconcile", "reconciliation_csv",
]
