"""The audit stream's contract: its vocabulary is published with meanings, its events are deterministic, and
every one of them maps to OCSF for a SIEM."""

import itertools
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.contracts.audit import AuditAction, AuditOutcome
from shared.contracts.events import BindingStored, RevokeRequested
from shared.contracts.outcomes import audit, naming_vault_calls
from shared.contracts.reasons import ReasonCode, reason
from shared.contracts.siem import ACTIVITIES, OUTCOMES, to_ocsf
from shared.contracts.states import BindingState
from tests.builders import stored

AT = datetime(2026, 5, 4, 12, 0, 0, tzinfo=UTC)
PUBLISHED = Path(__file__).parents[2] / "shared" / "contracts" / "published" / "schemas" / "audit.json"


def revoke(request_id: str = "r1") -> RevokeRequested:
    return RevokeRequested(request_id=request_id, user_id="u1", binding_id="b1")


def revoked(cause: RevokeRequested | BindingStored | str, at: datetime = AT, **fields: object):
    return audit(service="vault-writer", action=AuditAction.REVOKE, outcome=AuditOutcome.REVOKED, cause=cause,
                 at=at, user_id="u1", request_id="r1", binding_id="b1", **fields)


@pytest.mark.parametrize("vocabulary", [AuditAction, AuditOutcome], ids=lambda enum: enum.__name__)
def test_the_published_contract_lists_every_action_and_outcome_with_its_meaning(vocabulary):
    published = json.loads(PUBLISHED.read_text())["$defs"][vocabulary.__name__]
    assert published["enum"] == [member.value for member in vocabulary]
    assert published["x-enum-descriptions"] == [member.meaning for member in vocabulary]
    assert all(member.meaning.strip() and "\n" not in member.meaning for member in vocabulary)


def test_every_binding_state_a_handler_reports_is_an_outcome_of_the_same_name():
    reported = {BindingState.ACTIVE, BindingState.AWAITING_WHITELIST, BindingState.EXPIRING, BindingState.INVALID}
    assert {AuditOutcome.of_state(state).value for state in reported} == {state.value for state in reported}


def test_the_same_decision_about_the_same_input_is_the_same_event():
    assert revoked(revoke()) == revoked(revoke())
    assert revoked(revoke()).occurred_at == AT
    # A pipeline event is named by its own (derived) id, whatever record carried it.
    copy = stored()
    assert revoked(copy).event_id == revoked(copy, at=AT + timedelta(seconds=5)).event_id


def test_a_redelivery_naming_other_vault_calls_keeps_the_id():
    first, second = (naming_vault_calls([revoked(revoke())], [request_id])[0] for request_id in ("v-1", "v-2"))
    assert first.event_id == second.event_id
    assert first.details == {"vault_request_ids": ["v-1"]} and second.details == {"vault_request_ids": ["v-2"]}


def test_another_input_outcome_subject_or_reason_is_another_event():
    base = revoked(revoke())
    others = [
        revoked(revoke(), at=AT + timedelta(seconds=1)),  # the app sent the request again: a record of its own
        revoked(revoke("r2")),
        revoked("hash7.binding.requested/0/7"),
        revoked(revoke(), reasons=[reason(ReasonCode.BINDING_UNKNOWN, "htx", binding_id="b1")]),
        audit(service="vault-writer", action=AuditAction.REVOKE, outcome=AuditOutcome.REJECTED, cause=revoke(),
              at=AT, user_id="u1", request_id="r1", binding_id="b1"),
    ]
    assert len({base.event_id, *(event.event_id for event in others)}) == 1 + len(others)


@pytest.mark.parametrize(("action", "outcome"), list(itertools.product(AuditAction, AuditOutcome)))
def test_every_action_and_outcome_maps_to_an_ocsf_api_activity(action, outcome):
    event = audit(service="whitelist", action=action, outcome=outcome, cause="c", at=AT, user_id="u1",
                  request_id="r1", binding_id="b1", access_key_masked="ak-0…0001",
                  reasons=[reason(ReasonCode.KEY_EXPIRING, "htx", days=3)], details={"pairs": ["btcusdt"]})
    ocsf = to_ocsf(event)

    assert (ocsf["class_uid"], ocsf["category_uid"]) == (6003, 6)
    assert ocsf["type_uid"] == 600300 + ocsf["activity_id"] and ocsf["activity_id"] in {1, 2, 3, 4, 99}
    assert ocsf["status_id"] in {1, 2, 99} and ocsf["severity_id"] in {1, 2, 3, 4}
    assert ocsf["metadata"]["uid"] == str(event.event_id) and ocsf["metadata"]["correlation_uid"] == "r1"
    assert ocsf["time"] == int(AT.timestamp() * 1000)
    assert ocsf["api"]["operation"] == action.value and ocsf["status_code"] == outcome.value
    assert ocsf["actor"] == {"user": {"uid": "u1"}} and ocsf["resources"] == [{"uid": "b1", "type": "binding"}]
    assert ocsf["status_detail"] == "key_expiring"
    assert ocsf["unmapped"] == {"access_key_masked": "ak-0…0001", "details": {"pairs": ["btcusdt"]}}
    json.dumps(ocsf)


def test_the_mapping_names_each_action_and_outcome_once_and_nothing_else():
    assert set(ACTIVITIES) == set(AuditAction) and set(OUTCOMES) == set(AuditOutcome)


def test_the_siem_filter_turns_audit_lines_into_ocsf_lines_and_names_the_others():
    event = revoked(revoke())
    run = subprocess.run([sys.executable, "-m", "shared.contracts.siem"], check=True, capture_output=True, text=True,
                         input=event.to_bytes().decode() + "\nnot json\n", timeout=60)

    [line] = run.stdout.splitlines()
    assert json.loads(line) == to_ocsf(event)
    assert run.stderr.strip() == "line 2 is not an audit event: body is not readable JSON (JSONDecodeError)"
