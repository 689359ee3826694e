"""Writes that matter (the style guide's services), in two modules: the compensation engine
(engine.py: incidents, detection runs, items) and claims (claims.py: filing, verification,
merging, decisions). Callers use `claims.services.<name>`; a test that patches a function
patches it in the module that defines it."""

from .claims import (
    ATTACHMENT_TYPES,
    MAX_ATTACHMENT_BYTES,
    MAX_ATTACHMENTS,
    REFERENCE_FIELDS,
    VERIFICATION_LIFETIME,
    ClaimRefused,
    VerificationFailed,
    attachment_content_type,
    attachments_check,
    claim_add_information,
    claim_create,
    claim_decide,
    claim_file,
    claim_merge_if_repeated,
    claim_transition,
    claim_verify,
    claims_for_found_users,
    tasks_requeue,
)
from .engine import (
    DEFAULT_CHUNK_SIZE,
    DETECTION_ACTOR,
    POLICY_ACTOR,
    IncidentFileError,
    IncidentLoaded,
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

__all__ = [
    "ATTACHMENT_TYPES", "DEFAULT_CHUNK_SIZE", "DETECTION_ACTOR", "MAX_ATTACHMENTS", "MAX_ATTACHMENT_BYTES",
    "POLICY_ACTOR", "REFERENCE_FIELDS", "VERIFICATION_LIFETIME", "ClaimRefused", "IncidentFileError",
    "IncidentLoaded", "VerificationFailed", "attachment_content_type", "attachments_check", "claim_add_information",
    "claim_create", "claim_decide", "claim_file", "claim_merge_if_repeated", "claim_transition", "claim_verify",
    "claims_for_found_users", "detect_users", "detection_chunk_run", "detection_chunks_requeue",
    "detection_context", "detection_start",
    "incident_load", "incident_settings_parse", "incident_settings_save", "item_approval", "items_detect_and_save",
    "tasks_requeue",
]
