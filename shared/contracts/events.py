"""Every event on every topic, as pydantic models.

Rules for all events: JSON on the wire; `schema_version` on each; unknown fields from newer producers are
ignored; a missing or invalid field is an error naming the field (see `parse_event`). Secrets are typed so
that they never print (see shared.contracts.secrets).

schema_version policy (the published contract in shared/contracts/published/ shows each model's versions):
- `schema_version` is one integer, the event's major version; an event without it is version 1. Producers
  write their model's default (SCHEMA_VERSION).
- A change an older consumer reads correctly by ignoring what it does not know (a new optional field) keeps
  the version: there are no minor versions, since unknown fields are ignored. Anything an older consumer
  would reject or misread (a field removed, renamed, retyped or made required, a changed meaning, a new
  enum value such as a state or reason code) is a new major.
- Each model declares the majors it understands (`understood_versions`). An event of any other major is
  malformed, never read as version 1: `parse_event` raises MalformedEvent ("schema_version 2 is not understood
  (this consumer reads 1)") with the user and request ids, so the service dead-letters it and tells the user
  `malformed_request` (shared.runtime.processing.MessageProcessor).
- A new major rolls out consumers first: they add it to `understood_versions` (converting the older shape
  in a model validator), and producers switch their default once every consumer reads it.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)
from pydantic.config import JsonDict
from pydantic_core import PydanticCustomError

from shared.contracts.audit import AuditAction, AuditOutcome
from shared.contracts.reasons import Reason, ReasonCode
from shared.contracts.secrets import SealedPassphrase, SealedSecret
from shared.contracts.states import BindingState, RequestKind

SCHEMA_VERSION = 1
# Every id the app chooses: printable, no separators that could escape a Vault path or a Kafka key.
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")]
AccessKey = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9-]+$")]
Label = Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)]
TradingPair = Annotated[str, StringConstraints(min_length=2, max_length=32)]
MAX_TRADING_PAIRS = 200


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a timezone")
    return value


Timestamp = Annotated[datetime, AfterValidator(_aware)]


def utc_now() -> datetime:
    return datetime.now(UTC)


def derived_event_id(*parts: str) -> uuid.UUID:
    """A stable event id for an event derived from earlier ones, so a redelivered input re-emits the
    same event (consumers deduplicate on it) instead of a look-alike."""
    return uuid.uuid5(uuid.NAMESPACE_URL, "hash7:" + "/".join(parts))


_VERSION_NOT_UNDERSTOOD = "schema_version_not_understood"


def _publish_understood_versions(schema: JsonDict, model: type[Any]) -> None:
    """The published JSON Schema lists the majors a model reads, so a producer in another language sees them."""
    properties = schema["properties"]
    assert isinstance(properties, dict)  # pydantic's schema of a model: narrows JsonValue for the type checker
    version = properties["schema_version"]
    assert isinstance(version, dict)
    version["enum"] = sorted(model.understood_versions)


class Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, json_schema_extra=_publish_understood_versions)

    # The majors this model reads (see the module docstring); a model that reads a new one overrides this.
    understood_versions: ClassVar[frozenset[int]] = frozenset({SCHEMA_VERSION})

    # Strict: `true` or "1" is no version; an integer on the wire is, as the published schema says.
    schema_version: int = Field(default=SCHEMA_VERSION, strict=True)

    @field_validator("schema_version")
    @classmethod
    def _understood(cls, version: int) -> int:
        if version not in cls.understood_versions:
            readable = ", ".join(str(v) for v in sorted(cls.understood_versions))
            raise PydanticCustomError(_VERSION_NOT_UNDERSTOOD,
                                      "schema_version {version} is not understood (this consumer reads {readable})",
                                      {"version": version, "readable": readable})
        return version

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


E = TypeVar("E", bound=Event)

CONTENT_TYPE = "application/json"


def event_headers(event: Event) -> dict[str, str]:
    """The Kafka headers every event travels with (the published contract documents them)."""
    return {"content-type": CONTENT_TYPE, "event-type": type(event).__name__}


class MalformedEvent(ValueError):
    """An inbound message that is not a valid event. The message names the fields, never their values."""

    def __init__(self, problem: str, user_id: str | None = None, request_id: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.user_id = user_id
        self.request_id = request_id


def parse_event(model: type[E], raw: bytes) -> E:
    """Decode raw bytes into model, or raise MalformedEvent naming what is wrong (values never echoed)."""
    try:
        document = json.loads(raw)
    except Exception as exc:  # noqa: BLE001 — not only JSONDecodeError: deep nesting, a 5,000-digit number...
        raise MalformedEvent(f"body is not readable JSON ({type(exc).__name__})") from None
    if not isinstance(document, dict):
        raise MalformedEvent(f"body is a JSON {type(document).__name__}, expected an object")
    user_id, request_id = _string_or_none(document.get("user_id")), _string_or_none(document.get("request_id"))
    # On the wire an event without a version is version 1 (module docstring), whatever the model's default.
    document.setdefault("schema_version", 1)
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        # A major this consumer does not read says all there is to say: its other fields may well differ.
        unknown_version = [err["msg"] for err in errors if err["type"] == _VERSION_NOT_UNDERSTOOD]
        problems = "; ".join(unknown_version or (f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
                                                 for err in errors))
        raise MalformedEvent(problems, user_id=user_id, request_id=request_id) from None
    except Exception as exc:  # noqa: BLE001 — whatever else a hostile document makes validation raise
        raise MalformedEvent(f"body could not be validated ({type(exc).__name__})", user_id=user_id,
                             request_id=request_id) from None


def _string_or_none(value: Any) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= 128 and value.isprintable():
        return value
    return None


# ---- app → intake ---------------------------------------------------------------------------------------


class BindingRequested(Event):
    """The app asks to bind an exchange key. `request_id` is the idempotency key.

    Version 2: `secret_key_sealed` seals the secret wrapped for import into Vault Transit (only Vault can unwrap
    it: README.md#the-secrets-path); version 1 sealed the plaintext secret."""

    understood_versions: ClassVar[frozenset[int]] = frozenset({2})
    schema_version: int = Field(default=2, strict=True)

    request_id: Identifier
    user_id: Identifier
    # Any string: intake answers an unknown exchange with `unsupported_exchange`, not `malformed_request`.
    exchange: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    label: Label = ""
    access_key: AccessKey
    # Any string here: intake answers plaintext with `secret_not_sealed` (and never forwards it).
    secret_key_sealed: SealedSecret = Field(min_length=1, max_length=8192)
    # The passphrase of a key whose exchange wants one (OKX), sealed with Transit `binding-passphrase` (derived,
    # context = the user id: README.md#the-passphrases-path); None for the others. Any string here, as above: intake
    # answers plaintext with `secret_not_sealed`, and a missing or unwanted one with `malformed_request`. Optional, so
    # version 2 still: an older intake ignores it, and an older intake knows no exchange that needs one.
    passphrase_sealed: SealedPassphrase | None = Field(default=None, min_length=1, max_length=8192)
    trading_pairs: list[TradingPair] | None = Field(default=None, max_length=MAX_TRADING_PAIRS)
    replaces_binding_id: Identifier | None = None
    requested_at: Timestamp


class WhitelistRequested(Event):
    """The app sets the full desired set of pairs the bot may trade with one binding."""

    request_id: Identifier
    user_id: Identifier
    binding_id: Identifier
    trading_pairs: list[TradingPair] = Field(max_length=MAX_TRADING_PAIRS)
    # When the app asked. A request older than the whitelist's last applied one (a replay) changes nothing.
    requested_at: Timestamp | None = None


class RevokeRequested(Event):
    request_id: Identifier
    user_id: Identifier
    binding_id: Identifier


# ---- pipeline events ------------------------------------------------------------------------------------


class BindingAccepted(Event):
    """intake → validator: the request, normalised, with its binding id. The secret is still sealed, and wrapped
    for Vault. Version 2: as BindingRequested's."""

    understood_versions: ClassVar[frozenset[int]] = frozenset({2})
    schema_version: int = Field(default=2, strict=True)

    event_id: uuid.UUID
    binding_id: Identifier
    request_id: Identifier
    user_id: Identifier
    exchange: str
    label: str
    access_key: AccessKey
    secret_key_sealed: SealedSecret
    # As on BindingRequested: sealed, for an exchange that needs it (OKX) only.
    passphrase_sealed: SealedPassphrase | None = Field(default=None, max_length=8192)
    trading_pairs: list[str] | None = None
    replaces_binding_id: Identifier | None = None
    requested_at: Timestamp
    accepted_at: Timestamp


class KeyFacts(BaseModel):
    """What the exchange told the validator about the key. Events written before Bybit and OKX named it `htx`,
    with HTX's integer `uid` and `spot_account_id`: those read as the same facts."""

    model_config = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=True)

    # The exchange's id of the key's owner.
    owner_uid: str = Field(validation_alias=AliasChoices("owner_uid", "uid"))
    # The account orders go to, where the exchange needs one named (HTX's spot account).
    trading_account_id: str | None = Field(validation_alias=AliasChoices("trading_account_id", "spot_account_id"))
    # The exchange's own permission names, as listed.
    permissions: list[str]
    ip_addresses: list[str]
    # Days until the key expires; None (or HTX's -1, in older events) when it does not.
    valid_days: int | None
    key_status: str


class BindingValidated(BindingAccepted):
    """validator → vault-writer: the accepted request plus the exchange's facts and any warnings (e.g.
    key_expiring)."""

    key: KeyFacts = Field(validation_alias=AliasChoices("key", "htx"))
    warnings: list[Reason] = Field(default_factory=list)
    validated_at: Timestamp


class BindingStored(Event):
    """vault-writer → whitelist: where the credentials now live."""

    event_id: uuid.UUID
    binding_id: Identifier
    request_id: Identifier
    user_id: Identifier
    exchange: str
    access_key_masked: str
    vault_path: str
    vault_version: int
    trading_pairs: list[str] | None = None
    warnings: list[Reason] = Field(default_factory=list)
    rotated: bool = False
    stored_at: Timestamp


# ---- key health -----------------------------------------------------------------------------------------


class SweepCursor(BaseModel):
    """A place in the order a sweep walks the stored bindings (by user id, then binding id): the last binding of a
    page, after which the next page starts."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    user_id: Identifier
    binding_id: Identifier


class SweepRequested(Event):
    """Re-check every stored binding now, one page after another. `sweep_id` makes a sweep happen once, however many
    instances or redeliveries see the request. Without `after` it asks for a sweep (its first page); the vault-writer
    asks for each next page itself, on this topic, with the same ids and the cursor the page before ended at.

    Version 2: pages (`after`, and `event_id` on a page asked for by the vault-writer). A version-1 reader would
    take a page's request for a whole sweep's."""

    understood_versions: ClassVar[frozenset[int]] = frozenset({1, 2})
    schema_version: int = Field(default=2, strict=True)

    request_id: Identifier
    sweep_id: Identifier
    requested_at: Timestamp
    # The page starts after this binding; None: the sweep's first page.
    after: SweepCursor | None = None
    # Derived from the sweep and the cursor, so a copy of a page's request in one instance is handled once.
    event_id: uuid.UUID | None = None


class RecheckRequested(Event):
    """vault-writer → validator: one stored binding to prove against HTX again. Names the binding only: the
    validator reads the key stored for it, so no event can make it check another key in its place.

    Version 2: version 1 carried the exchange, the access key and the sealed secret."""

    understood_versions: ClassVar[frozenset[int]] = frozenset({2})
    schema_version: int = Field(default=2, strict=True)

    event_id: uuid.UUID
    sweep_request_id: Identifier
    # When the sweep was claimed (recorded in Vault with the claim): the order of the facts it yields.
    sweep_started_at: Timestamp
    user_id: Identifier
    binding_id: Identifier


class BindingRechecked(Event):
    """validator → whitelist: what the same verdict as at bind time says about the key today."""

    event_id: uuid.UUID
    sweep_request_id: Identifier
    user_id: Identifier
    binding_id: Identifier
    exchange: str
    access_key_masked: str
    # The sweep's start, as on its RecheckRequested: a health fact older than the one applied changes nothing.
    sweep_started_at: Timestamp | None = None
    # False when HTX could not be asked: nothing is concluded about the key then.
    checked: bool
    rejections: list[Reason] = Field(default_factory=list)
    warnings: list[Reason] = Field(default_factory=list)
    checked_at: Timestamp


# ---- services → app / ops -------------------------------------------------------------------------------


class BindingStatus(Event):
    """Every state change of a binding, in terms the user can act on.

    The same `event_id` means the same event, identical in every field: a status sent again after a crash
    carries the time of the record that caused it, or the time recorded in Vault, never a new clock reading."""

    event_id: uuid.UUID
    request_id: str | None
    # Which kind of request the status answers (None: not known, e.g. a request too malformed to tell).
    request_kind: RequestKind | None = None
    binding_id: str | None
    user_id: str
    # The binding's exchange; None when the input that caused the status could not say (a malformed request, a
    # whitelist for a binding not stored yet). Statuses written before Bybit and OKX always said `htx`.
    exchange: str | None
    state: BindingState
    reasons: list[Reason] = Field(default_factory=list)
    access_key_masked: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    occurred_at: Timestamp

    @property
    def reason_codes(self) -> list[ReasonCode]:
        return [r.code for r in self.reasons]


class AuditEvent(Event):
    """Every decision, for ops. Never a secret: ids, masked access key and reason codes only.

    Deterministic: `event_id` is derived from the decision (shared.contracts.outcomes.audit) and `occurred_at` is
    the time of the record decided on, so a redelivered record yields the same event, and a SIEM deduplicates
    on the id. `details` may differ between such copies (a re-run's own Vault request ids)."""

    event_id: uuid.UUID
    occurred_at: Timestamp
    service: str
    action: AuditAction
    outcome: AuditOutcome
    request_id: str | None = None
    binding_id: str | None = None
    user_id: str | None = None
    access_key_masked: str | None = None
    reason_codes: list[ReasonCode] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)
