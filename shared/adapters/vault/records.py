"""What is kept in Vault, as typed records: the one place that says which fields each record has (pure: no I/O).

Written by the vault-writer and the whitelist service, read by them and by trading engines
(shared.clients.trading.credentials). The field names are the stored ones, so records already in Vault stay
readable; unknown fields are ignored, times are ISO 8601 strings (`datetime.isoformat()`), and a field that is
None where it may be absent (a rotation's fields, an unjudged key health) is left out when written.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, model_validator

from shared.adapters.vault.layout import exchange_key
from shared.contracts.events import BindingValidated, SweepCursor
from shared.contracts.secrets import SealedPassphrase


def _iso(value: datetime) -> str:
    # As records have always been written (pydantic's own JSON would write UTC as "Z").
    return value.isoformat()


# A W3C traceparent of version 00 (https://www.w3.org/TR/trace-context/#traceparent-header).
_TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


def _traceparent_or_none(value: object) -> str | None:
    # Anything else reads as no trace context: a trace link is never worth a binding that cannot be read.
    return value if isinstance(value, str) and _TRACEPARENT.fullmatch(value) else None


Traceparent = Annotated[str | None, BeforeValidator(_traceparent_or_none)]

IsoTime = Annotated[datetime, PlainSerializer(_iso, return_type=str, when_used="json")]


@dataclass(frozen=True)
class KeyRef:
    """One version of a Transit HMAC key holding an exchange secret: what signs a binding's requests
    (shared/adapters/vault/stores.py)."""

    name: str
    version: int


def _absent_when_none() -> Any:
    return Field(default=None, exclude_if=lambda value: value is None)


class KeyHealth(StrEnum):
    """An exchange key's last known health, as the whitelist service judged it."""

    HEALTHY = "healthy"
    EXPIRING = "expiring"
    INVALID = "invalid"


class VaultRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    def to_vault(self) -> dict[str, Any]:
        """The data a KV write takes."""
        return self.model_dump(mode="json")

    @classmethod
    def from_vault(cls, data: Mapping[str, Any]) -> Self:
        return cls.model_validate(data)


class _SignsWithItsOwnKey(VaultRecord):
    """A binding's user and binding ids and the version of its Transit key that signs for it. The key's name is the
    one its ids give: a record naming any other key does not read, so no record, however written, makes one binding
    sign with another's secret."""

    user_id: str
    binding_id: str
    exchange_key: str
    exchange_key_version: int

    @model_validator(mode="after")
    def _names_its_own_key(self) -> Self:
        if self.exchange_key != exchange_key(self.user_id, self.binding_id):
            raise ValueError("exchange_key is not the key of this binding")
        return self

    @property
    def signing_key(self) -> KeyRef:
        return KeyRef(self.exchange_key, self.exchange_key_version)


class BindingRecord(_SignsWithItsOwnKey):
    """A binding as trading engines read it (bindings/<user>/<binding>): the access key, and which version of which
    Transit key signs with its secret; never the secret, which only Vault holds. `request_id` makes a redelivered
    write recognisable, and `stored_at` lets it be reported again at the same time; a rotation names the old key,
    masked (`rotated_from`), and its index entry to release (`replaced_index_path`). `traceparent` is the W3C
    context of the span that stored it (from signed headers, shared/runtime/tracing.py), which orders link to."""

    # Records written before Bybit and OKX hold HTX's ids as integers (below).
    model_config = ConfigDict(frozen=True, extra="ignore", coerce_numbers_to_str=True)

    rotated_from: str | None = _absent_when_none()
    replaced_index_path: str | None = _absent_when_none()
    traceparent: Traceparent = _absent_when_none()
    # The key's passphrase (OKX), as the ciphertext the app sealed it to (README.md#the-passphrases-path): never
    # opened by the vault-writer, which may not.
    passphrase_sealed: SealedPassphrase | None = _absent_when_none()
    exchange: str
    # Out of the repr: a repr ends up in logs and exceptions.
    access_key: str = Field(repr=False)
    label: str
    request_id: str
    # The exchange's facts about the key (shared/contracts/events.py KeyFacts). Records written before Bybit and OKX
    # name the first two `htx_uid` and `spot_account_id`, as integers: they read as the same facts.
    owner_uid: str = Field(validation_alias=AliasChoices("owner_uid", "htx_uid"))
    trading_account_id: str | None = Field(validation_alias=AliasChoices("trading_account_id", "spot_account_id"))
    permissions: list[str]
    ip_addresses: list[str]
    valid_days: int | None
    key_status: str
    validated_at: IsoTime
    stored_at: IsoTime

    @classmethod
    def of(cls, event: BindingValidated, signing_key: KeyRef, stored_at: datetime, traceparent: str | None = None,
           rotated_from: str | None = None, replaced_index_path: str | None = None) -> Self:
        return cls(
            rotated_from=rotated_from, replaced_index_path=replaced_index_path, traceparent=traceparent,
            passphrase_sealed=event.passphrase_sealed, exchange=event.exchange, access_key=event.access_key,
            exchange_key=signing_key.name,
            exchange_key_version=signing_key.version, label=event.label, user_id=event.user_id,
            binding_id=event.binding_id, request_id=event.request_id, owner_uid=event.key.owner_uid,
            trading_account_id=event.key.trading_account_id, permissions=event.key.permissions,
            ip_addresses=event.key.ip_addresses, valid_days=event.key.valid_days, key_status=event.key.key_status,
            validated_at=event.validated_at, stored_at=stored_at,
        )


class RecheckableBinding(_SignsWithItsOwnKey):
    """What a key-health recheck needs of a BindingRecord, read from the same data: a record without an exchange key
    (stored before secrets moved into Transit, with the secret in KV) is none."""

    exchange: str
    access_key: str = Field(repr=False)
    passphrase_sealed: SealedPassphrase | None = None


class KeyImport(VaultRecord):
    """The last import into a binding's Transit key by a rotation (key-imports/<user>/<binding>): which request made
    it, and the version it became. A rotation delivered again finds its own import here rather than importing
    twice; a later rotation never takes an earlier one's version for its own."""

    request_id: str
    version: int


class WhitelistRecord(VaultRecord):
    """The pairs a binding may trade and its key's health (whitelists/<user>/<binding>), as of the request that
    last changed them."""

    pairs: list[str] = []
    # When the app asked for these pairs: an older request (sent again) changes nothing. None: no such request.
    pairs_as_of: IsoTime | None = _absent_when_none()
    # None until the whitelist service has judged the key (it always writes a judgement).
    health: KeyHealth | None = _absent_when_none()
    # The time of the fact the health comes from (the key's write in Vault, or the start of the sweep that
    # rechecked it): an older fact (a sweep's result delivered late or sent again) changes nothing.
    health_as_of: IsoTime | None = _absent_when_none()
    # The binding's KV version whose binding.stored was applied here: a recheck may be written before it (a sweep
    # started as the binding was stored), and a copy of binding.stored after both must be told from the first.
    applied_binding_version: int | None = _absent_when_none()
    request_id: str
    updated_at: IsoTime

    @property
    def key_health(self) -> KeyHealth:
        """The health to act on: a key not judged yet is as healthy as the validator found it."""
        return self.health or KeyHealth.HEALTHY


class BindingExchange(VaultRecord):
    """The exchange of a binding's key (binding-exchanges/<user>/<binding>), written once, before the binding."""

    exchange: str


class Tombstone(VaultRecord):
    """Left by a revocation (revocations/<user>/<binding>; no secret), so a redelivered revoke is answered."""

    request_id: str
    access_key_masked: str
    revoked_at: IsoTime
    # None in tombstones left before Bybit and OKX (all HTX).
    exchange: str | None = None


class SweepClaim(VaultRecord):
    """Claims a key-health sweep (sweeps/<sweep id>) for the request that runs it."""

    request_id: str
    claimed_at: IsoTime


class SweepProgress(VaultRecord):
    """How far a key-health sweep got (sweep-progress/<sweep id>): the page in progress starts after `after` (None: the
    first page), and every binding before it has had its recheck requested and confirmed by the broker. Written as
    each page starts, so a page is counted once however often it is redone."""

    request_id: str
    after: SweepCursor | None = _absent_when_none()
    # Where the next page starts (the last binding of the page in progress); None when it is the last page. The
    # only cursor a next page may carry: a page request is not believed for its cursor.
    next_after: SweepCursor | None = _absent_when_none()
    # Pages started and the bindings in them, the page in progress included.
    pages: int
    bindings: int
    # The page in progress is the last one.
    finished: bool = False
    # When the page in progress started (after waiting for its turn).
    updated_at: IsoTime
    # When its re-checks have had their turn at the sweep's pace (its start + its bindings / pace): the next page
    # starts no sooner, and the last page's is the sweep's end. None in progress written before sweeps were paced.
    turn_ends_at: IsoTime | None = _absent_when_none()


class RunningSweep(VaultRecord):
    """Names the key-health sweep that runs now, or ran last (sweep-running): another starts only once that one's
    progress says finished, or has stood still too long (services/vault_writer/handlers.py)."""

    sweep_id: str
    request_id: str
    # When the sweep took this record: its last sign of life until its first page's progress is written.
    taken_at: IsoTime
    # The sweep this one replaced as abandoned, if any.
    replaced: str | None = _absent_when_none()


class AccessKeyIndexEntry(VaultRecord):
    """Names the one binding that holds an access key (index/access-keys/<HMAC of the key>)."""

    user_id: str
    binding_id: str

    def names(self, user_id: str, binding_id: str) -> bool:
        return (self.user_id, self.binding_id) == (user_id, binding_id)
