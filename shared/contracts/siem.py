"""The audit stream in a SIEM's terms: each AuditEvent as an OCSF 1.1 "API Activity" event (class_uid 6003).

OCSF rather than ECS: it is a vendor-neutral event schema with typed classes whose enums (activity, status,
severity) say what ECS leaves to free strings, and AWS Security Lake, Splunk, Sentinel and others ingest it as it
is. Every decision here is an API call answered by a service, which is what API Activity describes.

As a filter for ops: `hash7 --output json audit [--follow] | python -m shared.contracts.siem` prints one OCSF
event per line (a line that is not an audit event is named on stderr and skipped)."""

import json
import sys
from typing import Any

from shared.contracts.audit import AuditAction, AuditOutcome
from shared.contracts.events import AuditEvent, MalformedEvent, parse_event

OCSF_VERSION = "1.1.0"
API_ACTIVITY_CLASS_UID = 6003
APPLICATION_ACTIVITY_CATEGORY_UID = 6

# OCSF API Activity activity_id: 1 Create, 2 Read, 3 Update, 4 Delete, 99 Other.
ACTIVITIES: dict[AuditAction, tuple[int, str]] = {
    AuditAction.BIND_REQUEST: (1, "Create"),
    AuditAction.VALIDATE: (2, "Read"),
    AuditAction.STORE: (1, "Create"),
    AuditAction.REVOKE: (4, "Delete"),
    AuditAction.WHITELIST: (3, "Update"),
    AuditAction.KEY_HEALTH: (3, "Update"),
    AuditAction.HEALTH_SWEEP: (99, "Other"),
    AuditAction.RECHECK: (2, "Read"),
    AuditAction.ORDER: (1, "Create"),
    AuditAction.CONSUME: (99, "Other"),
    AuditAction.DEAD_LETTER_REPLAY: (99, "Other"),
}

SUCCESS, FAILURE, OTHER = (1, "Success"), (2, "Failure"), (99, "Other")
INFORMATIONAL, LOW, MEDIUM, HIGH = (1, "Informational"), (2, "Low"), (3, "Medium"), (4, "High")
# OCSF status_id and severity_id of each outcome. "Other" is a decision that changed nothing (a late copy, a
# repeat). Severity is what ops should look at first: a forged record is an attack, a refused order may be a
# stolen key trading, a dead letter is work stopped.
OUTCOMES: dict[AuditOutcome, tuple[tuple[int, str], tuple[int, str]]] = {
    AuditOutcome.ACCEPTED: (SUCCESS, INFORMATIONAL),
    AuditOutcome.REPLAYED: (OTHER, INFORMATIONAL),
    AuditOutcome.REJECTED: (FAILURE, LOW),
    AuditOutcome.MALFORMED: (FAILURE, LOW),
    AuditOutcome.VALIDATED: (SUCCESS, INFORMATIONAL),
    AuditOutcome.STORED: (SUCCESS, INFORMATIONAL),
    AuditOutcome.REVOKED: (SUCCESS, INFORMATIONAL),
    AuditOutcome.ALREADY_REVOKED: (OTHER, INFORMATIONAL),
    AuditOutcome.SUPERSEDED: (OTHER, INFORMATIONAL),
    AuditOutcome.ALREADY_APPLIED: (OTHER, INFORMATIONAL),
    AuditOutcome.SAVED_PENDING_BINDING: (SUCCESS, INFORMATIONAL),
    AuditOutcome.AWAITING_WHITELIST: (SUCCESS, INFORMATIONAL),
    AuditOutcome.ACTIVE: (SUCCESS, INFORMATIONAL),
    AuditOutcome.EXPIRING: (SUCCESS, LOW),
    AuditOutcome.INVALID: (FAILURE, LOW),
    AuditOutcome.STALE_RECHECK_IGNORED: (OTHER, INFORMATIONAL),
    AuditOutcome.BINDING_GONE: (OTHER, INFORMATIONAL),
    AuditOutcome.PASSED: (SUCCESS, INFORMATIONAL),
    AuditOutcome.FAILED: (FAILURE, LOW),
    AuditOutcome.UNCHECKED: (OTHER, INFORMATIONAL),
    AuditOutcome.STARTED: (SUCCESS, INFORMATIONAL),
    AuditOutcome.ALREADY_CLAIMED: (OTHER, INFORMATIONAL),
    AuditOutcome.SWEEP_RUNNING: (OTHER, INFORMATIONAL),
    AuditOutcome.PAGE_REQUESTED: (SUCCESS, INFORMATIONAL),
    AuditOutcome.FINISHED: (SUCCESS, INFORMATIONAL),
    # Only someone writing page requests of their own would make one.
    AuditOutcome.PAGE_REFUSED: (FAILURE, HIGH),
    AuditOutcome.ORDER_PLACED: (SUCCESS, INFORMATIONAL),
    AuditOutcome.ORDER_REFUSED: (FAILURE, MEDIUM),
    AuditOutcome.RECORD_TOO_LARGE: (FAILURE, MEDIUM),
    AuditOutcome.EVENT_REJECTED: (FAILURE, HIGH),
    AuditOutcome.DEAD_LETTERED: (FAILURE, MEDIUM),
    # An operator's hand: worth a look even when it worked.
    AuditOutcome.REPUBLISHED: (SUCCESS, LOW),
    AuditOutcome.REPLAY_REFUSED: (FAILURE, MEDIUM),
}


def to_ocsf(event: AuditEvent) -> dict[str, Any]:
    """The OCSF API Activity event of an audit event. metadata.uid is the audit event's id, so a SIEM drops the
    copies a redelivery makes; what OCSF has no attribute for is under `unmapped`."""
    activity_id, activity_name = ACTIVITIES[event.action]
    (status_id, status), (severity_id, severity) = OUTCOMES[event.outcome]
    ocsf: dict[str, Any] = {
        "class_uid": API_ACTIVITY_CLASS_UID,
        "class_name": "API Activity",
        "category_uid": APPLICATION_ACTIVITY_CATEGORY_UID,
        "category_name": "Application Activity",
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": API_ACTIVITY_CLASS_UID * 100 + activity_id,
        "type_name": f"API Activity: {activity_name}",
        "status_id": status_id,
        "status": status,
        "status_code": event.outcome.value,
        "severity_id": severity_id,
        "severity": severity,
        "time": int(event.occurred_at.timestamp() * 1000),
        "message": f"{event.service} {event.action.value}: {event.outcome.value}",
        "metadata": {
            "version": OCSF_VERSION,
            "uid": str(event.event_id),
            "product": {"name": "hash7", "vendor_name": "Hash7", "feature": {"name": event.service}},
            **({"correlation_uid": event.request_id} if event.request_id else {}),
        },
        # Who asked: the app's user (or the service itself, for sweeps and refused records).
        "actor": {"user": {"uid": event.user_id}} if event.user_id else {"app_name": event.service},
        "api": {"operation": event.action.value, "service": {"name": event.service},
                **({"request": {"uid": event.request_id}} if event.request_id else {})},
        "src_endpoint": {"svc_name": event.service},
        "unmapped": {"access_key_masked": event.access_key_masked, "details": event.details},
    }
    if event.reason_codes:
        ocsf["status_detail"] = ", ".join(code.value for code in event.reason_codes)
    if event.binding_id:
        ocsf["resources"] = [{"uid": event.binding_id, "type": "binding"}]
    return ocsf


def main() -> None:
    for number, line in enumerate(sys.stdin, start=1):
        try:
            event = parse_event(AuditEvent, line.encode())
        except MalformedEvent as exc:
            print(f"line {number} is not an audit event: {exc.problem}", file=sys.stderr)
            continue
        print(json.dumps(to_ocsf(event)), flush=True)


if __name__ == "__main__":
    main()
