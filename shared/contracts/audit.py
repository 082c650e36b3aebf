"""The audit stream's vocabulary: what was decided about (`AuditAction`) and what was decided (`AuditOutcome`).

Each member carries its meaning, which the published contract shows next to the enum (`x-enum-descriptions`,
one per value, in order), so a SIEM rule or a dashboard can be written from the contract alone. A new member
is a new enum value: a new major of AuditEvent for strict consumers (shared/contracts/events.py's policy)."""

from enum import StrEnum
from typing import Any, Self

from pydantic import GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from shared.contracts.states import BindingState


class DescribedValue(StrEnum):
    """A wire value with a one-line meaning (`meaning`), published with the enum."""

    meaning: str

    def __new__(cls, value: str, meaning: str) -> Self:
        member = str.__new__(cls, value)
        member._value_ = value
        member.meaning = meaning
        return member

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema: dict[str, Any] = handler(core_schema)
        schema["x-enum-descriptions"] = [member.meaning for member in cls]
        return schema


class AuditAction(DescribedValue):
    """What a decision was about."""

    BIND_REQUEST = "bind_request", "intake: a bind request from the app (checked, then passed on or refused)"
    VALIDATE = "validate", "validator: a new key checked on HTX (permissions, IP binding, expiry)"
    STORE = "store", "vault-writer: a validated key stored in Vault (secret in Transit, record in KV)"
    REVOKE = "revoke", "vault-writer: a binding revoked (its key deleted from Vault)"
    WHITELIST = "whitelist", "whitelist: the pairs a binding may trade, set or judged"
    KEY_HEALTH = "key_health", "whitelist: a binding's state after a key-health re-check"
    HEALTH_SWEEP = "health_sweep", "vault-writer: a sweep re-checking every stored binding"
    RECHECK = "recheck", "validator: one stored key re-checked on HTX during a sweep"
    ORDER = "order", "trading engine: an order the bot asked to place through a binding"
    CONSUME = "consume", "any service: a record it refused to handle (its copy is on the dead-letter topic)"
    DEAD_LETTER_REPLAY = "dead_letter_replay", "hash7-admin: a dead letter sent back to the topic it came from"


class AuditOutcome(DescribedValue):
    """What was decided. A binding state (shared/contracts/states.py) is an outcome under the same name."""

    @classmethod
    def of_state(cls, state: BindingState) -> "AuditOutcome":
        return cls[state.name]

    ACCEPTED = "accepted", "the bind request is well-formed and passed on to validation"
    REPLAYED = "replayed", "a bind request sent again: the first one's answer is repeated, nothing is redone"
    REJECTED = "rejected", "refused; reason_codes say why (the user is told too when known)"
    MALFORMED = "malformed", "not a valid event: refused and dead-lettered"
    VALIDATED = "validated", "the key passed every check on HTX"
    STORED = "stored", "the key is in Vault (a rotation replaced the binding's previous key)"
    REVOKED = "revoked", "the binding is revoked: its key is deleted from Vault"
    ALREADY_REVOKED = "already_revoked", "about a binding revoked meanwhile: nothing stored, nothing changed"
    SUPERSEDED = "superseded", "about something a newer request already replaced: nothing changed"
    ALREADY_APPLIED = "already_applied", "a copy of a fact already applied: nothing changed"
    SAVED_PENDING_BINDING = "saved_pending_binding", "the whitelist is saved and waits for its binding to be stored"
    AWAITING_WHITELIST = "awaiting_whitelist", "binding state: stored, but no valid whitelist yet"
    ACTIVE = "active", "binding state: stored, healthy key and valid whitelist: the bot may trade"
    EXPIRING = "expiring", "binding state: active, but the key expires soon"
    INVALID = "invalid", "binding state: the key no longer works on HTX, or its whitelist is invalid"
    STALE_RECHECK_IGNORED = "stale_recheck_ignored", "a re-check older than the judgement in force: ignored"
    BINDING_GONE = "binding_gone", "nothing to re-check: the binding was revoked meanwhile"
    PASSED = "passed", "the re-checked key still passes every check"
    FAILED = "failed", "the re-checked key fails a check (reason_codes)"
    UNCHECKED = "unchecked", "HTX could not be asked: nothing is known, nothing changes"
    STARTED = "started", ("this sweep was claimed here; its first page of re-checks is requested (details.replaced: "
                          "the abandoned sweep it replaced, if any)")
    ALREADY_CLAIMED = "already_claimed", "another request claimed this sweep: skipped"
    PAGE_REQUESTED = "page_requested", ("one page of a sweep's re-checks requested (details: page, bindings, "
                                        "bindings_so_far, age_s)")
    FINISHED = "finished", "a sweep's last page is requested (details: pages, bindings, duration_s)"
    SWEEP_RUNNING = "sweep_running", ("a new sweep not started: another is running (details.running_sweep_id); "
                                      "the next request after it ends starts one")
    PAGE_REFUSED = "page_refused", ("a page request whose cursor is not where its sweep stands (a first page with a "
                                    "cursor, or one the sweep never asked for): nothing re-checked")
    ORDER_PLACED = "order_placed", "the order was signed through the binding's key and sent to HTX"
    ORDER_REFUSED = "order_refused", "the order was refused before HTX (binding not active, pair not whitelisted)"
    RECORD_TOO_LARGE = "record_too_large", "a record over the size limit: not read, dead-lettered"
    EVENT_REJECTED = "event_rejected", "a record without a valid proof of origin: not handled, dead-lettered"
    DEAD_LETTERED = "dead_lettered", "a record whose handling kept failing: dead-lettered for a replay"
    REPUBLISHED = "republished", "the original record is on its topic again, as its producer signed it"
    REPLAY_REFUSED = "replay_refused", ("not sent again: not the original's bytes, or no valid proof of origin "
                                        "(details.reason)")
