"""The fault suite's timeline invariant on made-up timelines: it must catch what it claims to."""

from datetime import timedelta

from deploy.bench.load import ArrivedStatus
from shared.contracts.outcomes import status
from shared.contracts.reasons import ReasonCode, reason
from shared.contracts.states import BindingState, RequestKind
from tests.fakes import AT
from tests.faults.invariants import Findings, check_timeline

S = BindingState


def arrived(state, at, **fields) -> ArrivedStatus:
    return ArrivedStatus(status(
        exchange="htx", user_id="u1", state=state, request_id="r1", binding_id="b1", kind=RequestKind.BIND,
        occurred_at=AT + timedelta(seconds=at), **fields), at)


def findings_of(*timeline) -> Findings:
    findings = Findings()
    check_timeline("r1", list(timeline), findings)
    return findings


def test_a_timeline_in_order_with_an_identical_duplicate_holds():
    received = arrived(S.RECEIVED, 1)
    findings = findings_of(received, arrived(S.VALIDATED, 2), ArrivedStatus(received.status, 3),
                           arrived(S.STORED, 4), arrived(S.ACTIVE, 5))
    assert findings.violations == []


def test_statuses_out_of_causal_order_are_a_violation():
    findings = findings_of(arrived(S.RECEIVED, 1), arrived(S.ACTIVE, 2), arrived(S.STORED, 3))
    assert findings.violations == ["r1: statuses out of causal order: received, active, stored"]


def test_a_status_sent_again_with_only_a_new_time_is_a_violation_naming_who_sent_it():
    stored = arrived(S.STORED, 3)
    again = stored.status.model_copy(update={"occurred_at": stored.status.occurred_at + timedelta(milliseconds=1)})
    findings = findings_of(arrived(S.RECEIVED, 1), arrived(S.VALIDATED, 2), stored, ArrivedStatus(again, 4))
    assert findings.violations == [
        f"r1: event {stored.status.event_id} (vault-writer/stored) came again with other occurred_at"]


def test_a_rejection_is_attributed_to_the_stage_after_the_last_state_reached():
    rejected = arrived(S.REJECTED, 2, reasons=[reason(ReasonCode.KEY_INVALID, "htx")])
    again = rejected.status.model_copy(update={"occurred_at": rejected.status.occurred_at + timedelta(seconds=1)})
    findings = findings_of(arrived(S.RECEIVED, 1), rejected, ArrivedStatus(again, 3))
    assert findings.violations == [
        f"r1: event {rejected.status.event_id} (validator/rejected) came again with other occurred_at"]


def test_the_same_event_id_with_other_content_is_a_violation():
    stored = arrived(S.STORED, 3)
    other = stored.status.model_copy(update={"details": {"vault_version": 2}})
    findings = findings_of(arrived(S.RECEIVED, 1), arrived(S.VALIDATED, 2), stored, ArrivedStatus(other, 4))
    assert findings.violations == [
        f"r1: event {stored.status.event_id} (vault-writer/stored) came again with other details"
    ]
