"""Reason codes: stable strings, the same for every exchange, each with a message in the user's terms and a hint
that names the exchange's own screen and field to change (HTX: Hash7's "HTX API Binding Tutorial"; Bybit and OKX:
their API key pages as shared/adapters/bybit/README.md and shared/adapters/okx/README.md describe them)."""

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from shared.contracts.exchanges import ExchangeName


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
    # Bybit lists transfers between accounts as permissions of their own (shared/adapters/bybit/README.md#key-info):
    # refused like withdrawal, since they move funds out of the account the bot trades.
    PERMISSION_TRANSFER_FORBIDDEN = "permission_transfer_forbidden"
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


# Messages, in the user's terms, naming the exchange as {exchange}; {placeholders} are filled from the reason's
# details.
MESSAGES: dict[ReasonCode, str] = {
    ReasonCode.MALFORMED_REQUEST: "The binding request was incomplete or badly formed: {problem}.",
    ReasonCode.UNSUPPORTED_EXCHANGE: "Hash7 cannot bind keys for the exchange '{exchange}' here.",
    ReasonCode.SECRET_NOT_SEALED: "The secret key or passphrase did not arrive sealed, so Hash7 refused it and did "
                                  "not keep it.",
    ReasonCode.SECRET_UNREADABLE: "The sealed secret key could not be opened for your account, or is not a "
                                  "{exchange} secret key.",
    ReasonCode.KEY_INVALID: "{exchange} does not recognise this access key, or the secret key does not match it.",
    ReasonCode.KEY_EXPIRED: "This API key has expired on {exchange}.",
    ReasonCode.KEY_DISABLED: "{exchange} reports this API key or your account as not in normal status ({status}).",
    ReasonCode.PERMISSION_READ_MISSING: "The key lacks the Read permission Hash7 needs to see your balances and "
                                        "orders.",
    ReasonCode.PERMISSION_TRADE_MISSING: "The key lacks the spot Trade permission the bot needs to place orders.",
    ReasonCode.PERMISSION_WITHDRAW_FORBIDDEN: "The key has the Withdraw permission. Hash7 never accepts keys that "
                                              "can move funds off {exchange}.",
    ReasonCode.PERMISSION_TRANSFER_FORBIDDEN: "The key may transfer funds between accounts ({permissions}). Hash7 "
                                              "never accepts keys that can move funds.",
    ReasonCode.IP_BINDING_MISSING: "The key is not linked to any IP address, so anyone who obtains it could use it, "
                                   "and {exchange} lets such keys lapse.",
    ReasonCode.IP_BINDING_INCOMPLETE: "The key is not linked to all of Hash7's IP addresses; missing: {missing_ips}.",
    ReasonCode.IP_BINDING_FOREIGN: "The key is also linked to addresses that are not Hash7's: {foreign_ips}.",
    ReasonCode.KEY_EXPIRING: "The key expires on {exchange} in {valid_days} day(s).",
    ReasonCode.ACCOUNT_LOCKED: "Your {exchange} account cannot trade right now ({status}), so the bot cannot trade.",
    ReasonCode.SUB_ACCOUNT_KEY: "Hash7 needs a key of your main {exchange} account; this key belongs to a "
                                "sub-account.",
    ReasonCode.KEY_ALREADY_BOUND: "This access key is already bound to a Hash7 account.",
    ReasonCode.PAIR_UNKNOWN: "{exchange} has no spot trading pair {pairs}.",
    ReasonCode.PAIR_NOT_TRADABLE: "{exchange} does not allow API trading on {pairs} right now.",
    ReasonCode.WHITELIST_EMPTY: "The bot has no trading pairs to trade with this key yet.",
    ReasonCode.EXCHANGE_UNAVAILABLE: "{exchange} could not be reached to check the key. Nothing is wrong with the "
                                     "key as far as we know.",
    ReasonCode.TOO_MANY_ATTEMPTS: "Too many binding attempts in the last minute.",
    ReasonCode.REQUEST_EXPIRED: "This binding request is too old to be handled now; nothing was changed.",
    ReasonCode.BINDING_UNKNOWN: "Hash7 has no binding {binding_id} for your account.",
}

# Hints that name no exchange's screen: the same words whichever exchange the key is for.
NEUTRAL_HINTS: dict[ReasonCode, str] = {
    ReasonCode.MALFORMED_REQUEST: "Update the Hash7 app and try again; if it keeps happening, contact Hash7 support.",
    ReasonCode.UNSUPPORTED_EXCHANGE: "Choose HTX, Bybit or OKX under Exchange in the Hash7 app.",
    ReasonCode.PAIR_UNKNOWN: "Pick pairs from the list the Hash7 app shows under the binding's whitelist.",
    ReasonCode.PAIR_NOT_TRADABLE: "Remove these pairs from the whitelist or wait until the exchange lists them as "
                                  "tradable again.",
    ReasonCode.WHITELIST_EMPTY: "Add at least one trading pair to the binding's whitelist in the Hash7 app.",
    ReasonCode.EXCHANGE_UNAVAILABLE: "Try again in a few minutes; you do not need to change the key.",
    ReasonCode.TOO_MANY_ATTEMPTS: "Wait a minute, then try again.",
    ReasonCode.REQUEST_EXPIRED: "Check your bindings in the Hash7 app; to bind the key, paste it again.",
    ReasonCode.BINDING_UNKNOWN: "Refresh the Hash7 app; the binding may already have been revoked.",
}


def _key_hints(api_page: str, *, create: str, read: str, trade: str, withdraw: str, transfer: str, ips: str,
               expiring: str, locked: str, sub_account: str, disabled: str, invalid: str) -> dict[ReasonCode, str]:
    """The hints that name one exchange's API key page and its fields."""
    return {
        ReasonCode.SECRET_NOT_SEALED: f"Update the Hash7 app, then paste the keys again. To be safe, delete this key "
                                      f"({api_page}) and create a new one.",
        ReasonCode.SECRET_UNREADABLE: "Paste the keys again in the Hash7 app; if you no longer have the secret, "
                                      f"create a new key ({api_page} → {create}).",
        ReasonCode.KEY_INVALID: f"{api_page}, check that the key exists, and {invalid}",
        ReasonCode.KEY_EXPIRED: f"{api_page} → {create}, link Hash7's IP addresses so the new key does not expire, "
                                "and bind the new key.",
        ReasonCode.KEY_DISABLED: f"{api_page} and check the key's status, or {disabled}",
        ReasonCode.PERMISSION_READ_MISSING: f"{api_page} → Edit the key → {read}",
        ReasonCode.PERMISSION_TRADE_MISSING: f"{api_page} → Edit the key → {trade}",
        ReasonCode.PERMISSION_WITHDRAW_FORBIDDEN: f"{api_page} → Edit the key → {withdraw}",
        ReasonCode.PERMISSION_TRANSFER_FORBIDDEN: f"{api_page} → Edit the key → {transfer}",
        ReasonCode.IP_BINDING_MISSING: f"{api_page} → Edit the key → {ips}: enter Hash7's IP addresses "
                                       "({egress_ips}).",
        ReasonCode.IP_BINDING_INCOMPLETE: f"{api_page} → Edit the key → {ips}: add {{missing_ips}}.",
        ReasonCode.IP_BINDING_FOREIGN: f"{api_page} → Edit the key → {ips}: remove {{foreign_ips}} and keep only "
                                       "Hash7's addresses.",
        ReasonCode.KEY_EXPIRING: f"{api_page} → Edit the key → {ips}: {expiring}",
        ReasonCode.ACCOUNT_LOCKED: locked,
        ReasonCode.SUB_ACCOUNT_KEY: f"{sub_account} {api_page} → {create}, and bind that key instead.",
        ReasonCode.KEY_ALREADY_BOUND: f"Create a separate key for this binding ({api_page} → {create}), or revoke the "
                                      "existing binding first.",
    }


# Where each exchange keeps a user's API keys (HTX: Hash7's "HTX API Binding Tutorial"; Bybit and OKX:
# shared/adapters/bybit/README.md#api-key-page, shared/adapters/okx/README.md#api-key-page).
API_PAGES: dict[ExchangeName, str] = {
    ExchangeName.HTX: "In the HTX app open your avatar → Settings → Trading Settings → API Management",
    ExchangeName.BYBIT: "On Bybit open your profile icon → Account Settings → API Management",
    ExchangeName.OKX: "On OKX open your profile icon → API keys",
}
_ANY_API_PAGE = "On your exchange open its API key management page"

# Each exchange's screens and fields.
EXCHANGE_HINTS: dict[ExchangeName, dict[ReasonCode, str]] = {
    ExchangeName.HTX: _key_hints(
        API_PAGES[ExchangeName.HTX], create="Create API",
        read="Access Settings: tick 'Read'.", trade="Access Settings: tick 'Trade'.",
        withdraw="Access Settings: untick 'Withdraw' (keep only 'Read' and 'Trade').",
        transfer="Access Settings: keep only 'Read' and 'Trade'.", ips="Link IP Address",
        expiring="link Hash7's IP addresses so it stops expiring, or create a new key and bind it as a replacement.",
        locked="Contact HTX support to unlock your spot account, then bind the key again.",
        sub_account="Log into your main HTX account, not a sub-account.",
        disabled="contact HTX support about your account.",
        invalid="copy both the Access Key and the Secret Key again exactly as shown when you created it."),
    ExchangeName.BYBIT: _key_hints(
        API_PAGES[ExchangeName.BYBIT], create="Create New Key",
        read="every Bybit key can read; make sure the key is a System-generated key for API Transactions.",
        trade="API Key Permissions: choose 'Read-Write', then under SPOT tick 'Trade'.",
        withdraw="under Wallet untick 'Withdrawal' (Bybit lets you change it only by creating a new key: then "
                 "bind the new key).",
        transfer="under Wallet untick 'Account Transfer' and 'Subaccount Transfer'.",
        ips="'Only IPs with permissions granted are allowed to access the OpenAPI'",
        expiring="keep it bound to Hash7's IP addresses (Bybit keys without an IP lapse after 90 days), or create a "
                 "new key and bind it as a replacement.",
        locked="Open Bybit's help centre about your account's trading restriction, then bind the key again.",
        sub_account="Log into your main Bybit account, not a sub-account.",
        disabled="contact Bybit support about your account.",
        invalid="copy both the API Key and the API Secret again exactly as shown when you created it."),
    ExchangeName.OKX: _key_hints(
        API_PAGES[ExchangeName.OKX], create="Create API key",
        read="Permissions: tick 'Read'.", trade="Permissions: tick 'Trade'.",
        withdraw="Permissions: untick 'Withdraw' (keep only 'Read' and 'Trade').",
        transfer="Permissions: keep only 'Read' and 'Trade'.", ips="IP address",
        expiring="keep it linked to Hash7's IP addresses (OKX lets keys without an IP lapse when unused), or create "
                 "a new key and bind it as a replacement.",
        locked="Contact OKX support about your account's API access, then bind the key again.",
        sub_account="Log into your main OKX account, not a sub-account.",
        disabled="contact OKX support about the frozen API key or your account.",
        invalid="copy the API key, the secret key and the passphrase again exactly as you set them."),
}

# Where no supported exchange is named (the request named one Hash7 does not support).
_ANY_EXCHANGE = _key_hints(
    _ANY_API_PAGE, create="create a key", read="allow reading.",
    trade="allow spot trading.", withdraw="turn off withdrawals.", transfer="turn off transfers.", ips="IP list",
    expiring="keep it bound to Hash7's IP addresses, or create a new key and bind it as a replacement.",
    locked="Contact your exchange's support about your account, then bind the key again.",
    sub_account="Log into your main account, not a sub-account.", disabled="contact your exchange's support.",
    invalid="copy the keys again exactly as shown when you created them.")


class Reason(BaseModel):
    """One reason as it travels on binding.status."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    code: ReasonCode
    message: str
    hint: str


class _KeepMissing(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def reason(code: ReasonCode, exchange: str | None, /, **details: object) -> Reason:
    """The reason for a key on exchange (None or an unsupported name: no exchange's screens), its placeholders
    filled from details (unknown ones left as written)."""
    supported = _supported(exchange)
    hints = EXCHANGE_HINTS[supported] if supported else _ANY_EXCHANGE
    hint = NEUTRAL_HINTS.get(code) or hints[code]
    names = {"exchange": supported.display_name if supported else (exchange or "the exchange")}
    values = _KeepMissing(names | {k: _render(v) for k, v in details.items()})
    return Reason(code=code, message=MESSAGES[code].format_map(values), hint=hint.format_map(values))


def delete_key_step(exchange: str | None, access_key_masked: str) -> str:
    """The next step after a key leaves Hash7 (revoked, or replaced by a rotation): delete it on the exchange too."""
    supported = _supported(exchange)
    page = API_PAGES[supported] if supported else _ANY_API_PAGE
    return f"Delete the key {access_key_masked} on the exchange too: {page[0].lower()}{page[1:]} → Delete."


def _supported(exchange: str | None) -> ExchangeName | None:
    try:
        return ExchangeName(exchange) if exchange else None
    except ValueError:
        return None


def _render(value: object) -> str:
    if isinstance(value, (list, tuple, set, frozenset)):
        return ", ".join(str(v) for v in value)
    return str(value)
