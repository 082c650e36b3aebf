"""What the vault-writer keeps in Vault, as plain dicts (pure: no I/O)."""

from datetime import datetime
from typing import Any

from pydantic import SecretStr

from shared.contracts.events import BindingValidated


def credential_record(event: BindingValidated, secret_key: SecretStr, stored_at: datetime,
                      replaced: dict[str, str] | None = None) -> dict[str, Any]:
    """The binding as trading engines read it. `request_id` makes a redelivered write recognisable, and
    `stored_at` lets it be reported again at the same time; `replaced` (rotation only) names the old key,
    masked, and its index entry to release."""
    return {
        **(replaced or {}),
        "exchange": event.exchange,
        "access_key": event.access_key,
        "secret_key": secret_key.get_secret_value(),
        # Kept sealed as well, so a key-health sweep can hand it to the validator without ever unsealing.
        "secret_key_sealed": event.secret_key_sealed.get_secret_value(),
        "label": event.label,
        "user_id": event.user_id,
        "binding_id": event.binding_id,
        "request_id": event.request_id,
        "htx_uid": event.htx.uid,
        "spot_account_id": event.htx.spot_account_id,
        "permissions": event.htx.permissions,
        "ip_addresses": event.htx.ip_addresses,
        "valid_days": event.htx.valid_days,
        "key_status": event.htx.key_status,
        "validated_at": event.validated_at.isoformat(),
        "stored_at": stored_at.isoformat(),
    }


def index_record(user_id: str, binding_id: str) -> dict[str, Any]:
    return {"user_id": user_id, "binding_id": binding_id}


def index_holds(record: dict[str, Any], user_id: str, binding_id: str) -> bool:
    return record.get("user_id") == user_id and record.get("binding_id") == binding_id


def sweep_marker(request_id: str, claimed_at: datetime) -> dict[str, Any]:
    return {"request_id": request_id, "claimed_at": claimed_at.isoformat()}


def revocation_record(request_id: str, access_key_masked: str, revoked_at: datetime) -> dict[str, Any]:
    return {"request_id": request_id, "access_key_masked": access_key_masked, "revoked_at": revoked_at.isoformat()}
