"""Reason codes: stable strings, each with a message in the user's terms and a hint that names the HTX
screen and field to change (following Hash7's "HTX API Binding Tutorial": HTX app → avatar → Settings →
Trading Settings → API Management)."""

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class ReasonCode(StrEnum):
    MALFORMED_REQUEST = "malformed_request"
    UNSUPPORTED_EXCHANGE = "unsupported_exchange"
    SECRET_NOT_SEALED = "secret_not_sealed"
    SECRET_UNREADABLE = "secret_unreadable"
    KEY_INVALID = "key_invalid"
    KEY_EXPIRED = "key_expired"
    KEY_DISABLED = "key_disabled"
    PERMISSION_READ_MISSING = "permission_read_missing"
    PERMISSION_TRADE_MISSING = "permission_trade_missing"
    PERMISSION_WITHDRAW_FORBIDDEN = "permission_withdraw_forbidden"
    IP_BINDING_MISSING = "ip_binding_missing"
    IP_BINDING_INCOMPLETE = "ip_binding_incomplete"
    IP_BINDING_FOREIGN = "ip_binding_foreign"
    KEY_EXPIRING = "key_expiring"
    ACCOUNT_LOCKED = "account_locked"
    SUB_ACCOUNT_KEY = "sub_account_key"
    KEY_ALREADY_BOUND = "key_already_bound"
    PAIR_UNKNOWN = "pair_unknown"
    PAIR_NOT_TRADABLE = "pair_not_tradable"
    WHITELIST_EMPTY = "whitelist_empty"
    EXCHANGE_UNAVAILABLE = "exchange_unavailable"
    # Not in the first list of the pipeline issue; needed for intake's per-user attempt limit and for
    # actions on a binding that does not exist.
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    BINDING_UNKNOWN = "binding_unknown"
    # intake's replay memory is bounded (services/intake/rules.py): a request older than it is not done again.
    REQUEST_EXPIRED = "request_expired"


_API_MANAGEMENT = "In the HTX app open your avatar → Settings → Trading Settings → API Management"

# code → (message, hint). Messages may carry {placeholders} filled from the reason's details.
CATALOG: dict[ReasonCode, tuple[str, str]] = {
    ReasonCode.MALFORMED_REQUEST: (
        "The binding request was incomplete or badly formed: {problem}.",
        "Update the Hash7 app and try again; if it keeps happening, contact Hash7 support.",
    ),
    ReasonCode.UNSUPPORTED_EXCHANGE: (
        "Hash7 cannot bind keys for the exchange '{exchange}' here.",
        "Choose HTX under Exchange in the Hash7 app.",
    ),
    ReasonCode.SECRET_NOT_SEALED: (
        "The secret key did not arrive sealed, so Hash7 refused it and did not keep it.",
        "Update the Hash7 app, then paste the keys again. To be safe, delete this key in HTX "
        f"({_API_MANAGEMENT}) and create a new one.",
    ),
    ReasonCode.SECRET_UNREADABLE: (
        "The sealed secret key could not be opened for your account, or is not an HTX secret key.",
        "Paste the access key and secret key again in the Hash7 app; if you no longer have the secret, "
        f"create a new key in HTX ({_API_MANAGEMENT} → Create API).",
    ),
    ReasonCode.KEY_INVALID: (
        "HTX does not recognise this access key, or the secret key does not match it.",
        f"{_API_MANAGEMENT}, check that the key exists, and copy both the Access Key and the Secret Key "
        "again exactly as shown when you created it.",
    ),
    ReasonCode.KEY_EXPIRED: (
        "This API key has expired on HTX.",
        f"{_API_MANAGEMENT} → Create API, link Hash7's IP addresses so the new key does not expire, "
        "and bind the new key.",
    ),
    ReasonCode.KEY_DISABLED: (
        "HTX reports this API key or your account as not in normal status ({status}).",
        f"{_API_MANAGEMENT} and check the key's status, or contact HTX support about your account.",
    ),
    ReasonCode.PERMISSION_READ_MISSING: (
        "The key lacks the Read permission Hash7 needs to see your balances and orders.",
        f"{_API_MANAGEMENT} → Edit the key → Access Settings: tick 'Read'.",
    ),
    ReasonCode.PERMISSION_TRADE_MISSING: (
        "The key lacks the Trade permission the bot needs to place orders.",
        f"{_API_MANAGEMENT} → Edit the key → Access Settings: tick 'Trade'.",
    ),
    ReasonCode.PERMISSION_WITHDRAW_FORBIDDEN: (
        "The key has the Withdraw permission. Hash7 never accepts keys that can move funds off HTX.",
        f"{_API_MANAGEMENT} → Edit the key → Access Settings: untick 'Withdraw' (keep only 'Read' and "
        "'Trade').",
    ),
    ReasonCode.IP_BINDING_MISSING: (
        "The key is not linked to any IP address, so anyone who obtains it could use it, and HTX "
        "deactivates such keys after 90 days.",
        f"{_API_MANAGEMENT} → Edit the key → Link IP Address: paste Hash7's IP addresses ({{egress_ips}}).",
    ),
    ReasonCode.IP_BINDING_INCOMPLETE: (
        "The key is not linked to all of Hash7's IP addresses; missing: {missing_ips}.",
        f"{_API_MANAGEMENT} → Edit the key → Link IP Address: add {{missing_ips}}.",
    ),
    ReasonCode.IP_BINDING_FOREIGN: (
        "The key is also linked to addresses that are not Hash7's: {foreign_ips}.",
        f"{_API_MANAGEMENT} → Edit the key → Link IP Address: remove {{foreign_ips}} and keep only Hash7's "
        "addresses.",
    ),
    ReasonCode.KEY_EXPIRING: (
        "The key expires on HTX in {valid_days} day(s).",
        f"{_API_MANAGEMENT} → Edit the key → Link IP Address: link Hash7's IP addresses so it stops "
        "expiring, or create a new key and bind it as a replacement.",
    ),
    ReasonCode.ACCOUNT_LOCKED: (
        "Your HTX spot account is locked, so the bot cannot trade.",
        "Contact HTX support to unlock your spot account, then bind the key again.",
    ),
    ReasonCode.SUB_ACCOUNT_KEY: (
        "Hash7 needs a key of your main HTX account; this key belongs to a sub-account.",
        f"Log into your main HTX account, not a sub-account. {_API_MANAGEMENT} → Create API, and bind that "
        "key instead.",
    ),
    ReasonCode.KEY_ALREADY_BOUND: (
        "This access key is already bound to a Hash7 account.",
        f"Create a separate key for this binding ({_API_MANAGEMENT} → Create API), or revoke the existing "
        "binding first.",
    ),
    ReasonCode.PAIR_UNKNOWN: (
        "HTX has no spot trading pair {pairs}.",
        "Pick pairs from the list the Hash7 app shows under the binding's whitelist.",
    ),
    ReasonCode.PAIR_NOT_TRADABLE: (
        "HTX does not allow API trading on {pairs} right now.",
        "Remove these pairs from the whitelist or wait until HTX lists them as tradable again.",
    ),
    ReasonCode.WHITELIST_EMPTY: (
        "The bot has no trading pairs to trade with this key yet.",
        "Add at least one trading pair to the binding's whitelist in the Hash7 app.",
    ),
    ReasonCode.EXCHANGE_UNAVAILABLE: (
        "HTX could not be reached to check the key. Nothing is wrong with the key as far as we know.",
        "Try again in a few minutes; you do not need to change the key.",
    ),
    ReasonCode.TOO_MANY_ATTEMPTS: (
        "Too many binding attempts in the last minute.",
        "Wait a minute, then try again.",
    ),
    ReasonCode.REQUEST_EXPIRED: (
        "This binding request is too old to be handled now; nothing was changed.",
        "Check your bindings in the Hash7 app; to bind the key, paste it again.",
    ),
    ReasonCode.BINDING_UNKNOWN: (
        "Hash7 has no binding {binding_id} for your account.",
        "Refresh the Hash7 app; the binding may already have been revoked.",
    ),
}


class Reason(BaseModel):
    """One reason as it travels on binding.status."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    code: ReasonCode
    message: str
    hint: str


class _KeepMissing(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def reason(code: ReasonCode, **details: object) -> Reason:
    """A reason from the catalogue, its placeholders filled from details (unknown ones left as written)."""
    message, hint = CATALOG[code]
    values = _KeepMissing({k: _render(v) for k, v in details.items()})
    return Reason(code=code, message=message.format_map(values), hint=hint.format_map(values))


def _render(value: object) -> str:
    if isinstance(value, (list, tuple, set, frozenset)):
        return ", ".join(str(v) for v in value)
    return str(value)
