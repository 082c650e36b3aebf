"""What is kept in Vault, as typed records: the one place that says which fields each record has (pure: no I/O).

Written by the vault-writer and the whitelist service, read by them and by trading engines
(shared.clients.trading.credentials). The field names are the stored ones, so records already in Vault stay
readable; unknown fields are ignored, times are ISO 8601 strings (`datetime.isoformat()`), and a field that is
None where it may be absent (a rotation's fields, an unjudged key health) is left out when written.
"""

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, SecretStr, SerializationInfo

from shared.contracts.events import BindingValidated
from shared.contracts.secrets import SealedSecret

# Passed as serialisation context by `to_vault` only: the one dump that writes a plaintext secret's value.
_FOR_VAULT = {"for_vault": True}


def _iso(value: datetime) -> str:
    # As records have always been written (pydantic's own JSON would write UTC as "Z").
    return value.isoformat()


def _revealed_for_vault(value: SecretStr, info: SerializationInfo) -> str:
    # Any other JSON dump is refused rather than masked: a masked copy written to Vault by mistake would
    # silently replace the secret, which the exchange shows only once.
    if info.context != _FOR_VAULT:
        raise ValueError("a plaintext secret is dumped only for a Vault write (VaultRecord.to_vault)")
    return value.get_secret_value()


IsoTime = Annotated[datetime, PlainSerializer(_iso, return_type=str, when_used="json")]
# A plaintext secret: its value is written to Vault, and shows masked in every other dump, repr and log.
VaultSecret = Annotated[SecretStr, PlainSerializer(_revealed_for_vault, return_type=str, when_used="json")]


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
        return self.model_dump(mode="json", context=_FOR_VAULT)

    @classmethod
    def from_vault(cls, data: Mapping[str, Any]) -> Self:
        return cls.model_validate(data)


class BindingRecord(VaultRecord):
    """A binding's credentials, as trading engines read them (bindings/<user>/<binding>). `request_id` makes a
    redelivered write recognisable, and `stored_at` lets it be reported again at the same time; a rotation
    names the old key, masked (`rotated_from`), and its index entry to release (`replaced_index_path`)."""

    rotated_from: str | None = _absent_when_none()
    replaced_index_path: str | None = _absent_when_none()
    exchange: str
    # Out of the repr, like the secret: a repr ends up in logs and exceptions.
    access_key: str = Field(repr=False)
    secret_key: VaultSecret
    # Kept sealed as well, so a key-health sweep can hand it to the validator without ever unsealing. Absent
    # from records stored before sweeps existed.
    secret_key_sealed: SealedSecret | None = None
    label: str
    user_id: str
    binding_id: str
    request_id: str
    htx_uid: int
    spot_account_id: int | None
    permissions: list[str]
    ip_addresses: list[str]
    valid_days: int
    key_status: str
    validated_at: IsoTime
    stored_at: IsoTime

    @classmethod
    def of(cls, event: BindingValidated, secret_key: SecretStr, stored_at: datetime,
           rotated_from: str | None = None, replaced_index_path: str | None = None) -> Self:
        return cls(
            rotated_from=rotated_from, replaced_index_path=replaced_index_path,
            exchange=event.exchange, access_key=event.access_key, secret_key=secret_key,
            secret_key_sealed=event.secret_key_sealed, label=event.label, user_id=event.user_id,
            binding_id=event.binding_id, request_id=event.request_id, htx_uid=event.htx.uid,
            spot_account_id=event.htx.spot_account_id, permissions=event.htx.permissions,
            ip_addresses=event.htx.ip_addresses, valid_days=event.htx.valid_days, key_status=event.htx.key_status,
            validated_at=event.validated_at, stored_at=stored_at,
        )


class RecheckableBinding(VaultRecord):
    """What a key-health sweep hands the validator of a BindingRecord, read from the same data: a record without a
    sealed secret (stored before sweeps existed) is none."""

    user_id: str
    binding_id: str
    exchange: str
    access_key: str = Field(repr=False)
    secret_key_sealed: SealedSecret


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
    request_id: str
    updated_at: IsoTime

    @property
    def key_health(self) -> KeyHealth:
        """The health to act on: a key not judged yet is as healthy as the validator found it."""
        return self.health or KeyHealth.HEALTHY


class Tombstone(VaultRecord):
    """Left by a revocation (revocations/<user>/<binding>; no secret), so a redelivered revoke is answered."""

    request_id: str
    access_key_masked: str
    revoked_at: IsoTime


class SweepClaim(VaultRecord):
    """Claims a key-health sweep (sweeps/<sweep id>) for the request that runs it."""

    request_id: str
    claimed_at: IsoTime


class AccessKeyIndexEntry(VaultRecord):
    """Names the one binding that holds an access key (index/access-keys/<HMAC of the key>)."""

    user_id: str
    binding_id: str

    def names(self, user_id: str, binding_id: str) -> bool:
        return (self.user_id, self.binding_id) == (user_id, binding_id)
