"""Every verdict the HTX path has, reached end to end for Bybit and OKX (issue 17): each key is bound through the app's
client (shared/clients/binding_client.py) into the four real services, which ask that exchange's real sandbox
process; each test checks the final state, the reason codes, that every reason speaks of that exchange (its
`display_name` in the hint, or in the message where the hint is neutral, and no other exchange's name), and the
status's `exchange`.

Verdicts an exchange cannot reach (shared/adapters/bybit/README.md#verdicts-bybit-cannot-reach,
shared/adapters/okx/README.md#verdicts-okx-cannot-reach) are not skipped: the last tests ask each adapter about every
demo key of its sandbox and prove it never gives them.

HTX has its own tests (tests/e2e/test_binding_pipeline.py); they are not repeated here.
"""

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import SecretStr

from services.validator.inspection import inspect_key
from services.validator.verdict import KeyPolicy
from shared.adapters.bybit.client import BybitExchange
from shared.adapters.exchange.errors import ExchangeError
from shared.adapters.exchange.port import ExchangeCredentials, Permission
from shared.adapters.okx.client import OkxExchange
from shared.adapters.request_signing import LocalHmacSigner
from shared.adapters.vault.layout import KV_MOUNT, whitelist_path
from shared.contracts.exchanges import ExchangeName
from shared.contracts.reasons import NEUTRAL_HINTS, ReasonCode
from shared.contracts.states import BindingState
from tests.e2e.helpers import SECRETS_USED, Key, bind, fresh_bybit_key, fresh_okx_key, new_user, states

pytestmark = pytest.mark.stack
S = BindingState
R = ReasonCode
BYBIT, OKX = ExchangeName.BYBIT, ExchangeName.OKX
# Hash7's egress IPs in the tests' stack, which the demo "good" keys of both sandboxes are bound to exactly.
EGRESS = ("203.0.113.10", "203.0.113.11")
FOREIGN_HOST = "198.51.100.7"


@dataclass(frozen=True)
class Case:
    """A key made like the demo key `like` (with `changes` to the key, or on a new user with `user`'s fields) and the
    reasons it must be rejected with, in the validator's order."""

    like: str
    reasons: list[ReasonCode]
    changes: dict[str, Any] = field(default_factory=dict)
    user: dict[str, Any] | None = None


BYBIT_CASES = {
    "withdraw": Case("with-withdraw", [R.PERMISSION_WITHDRAW_FORBIDDEN]),
    "transfer": Case("with-transfer", [R.PERMISSION_TRANSFER_FORBIDDEN]),
    "read-only": Case("read-only", [R.PERMISSION_TRADE_MISSING]),
    "no-spot-trade": Case("no-spot-trade", [R.PERMISSION_TRADE_MISSING]),
    # ips ["*"], valid for 90 days: more than the warning's 14, so no key_expiring with it.
    "no-ip": Case("no-ip", [R.IP_BINDING_MISSING]),
    "ip-incomplete": Case("ip-incomplete", [R.IP_BINDING_INCOMPLETE]),
    # Not bound to the caller's IP: Bybit refuses the call (10010), which is an incomplete binding.
    "ip-foreign-refused": Case("ip-foreign", [R.IP_BINDING_INCOMPLETE]),
    "ip-foreign": Case("good", [R.IP_BINDING_FOREIGN], {"ips": [*EGRESS, FOREIGN_HOST]}),
    "ip-wide-cidr": Case("ip-wide-cidr", [R.IP_BINDING_FOREIGN]),
    "expired": Case("expired", [R.KEY_EXPIRED]),
    "banned": Case("banned", [R.ACCOUNT_LOCKED]),
    "common-banned": Case("good", [R.KEY_DISABLED], user={"common_banned": True}),
    "sub-account": Case("sub-account", [R.SUB_ACCOUNT_KEY], {"permissions": {"Spot": ["SpotTrade"]}}),
    # The demo sub-account key may also transfer between sub-accounts: both are reported.
    "sub-account-transfer": Case("sub-account", [R.SUB_ACCOUNT_KEY, R.PERMISSION_TRANSFER_FORBIDDEN]),
    "wrong-secret": Case("secret-mismatch", [R.KEY_INVALID]),
}

OKX_CASES = {
    "withdraw": Case("with-withdraw", [R.PERMISSION_WITHDRAW_FORBIDDEN]),
    "read-only": Case("read-only", [R.PERMISSION_TRADE_MISSING]),
    # Without read_only OKX refuses account/config itself (50120): Read is what describing a key needs.
    "no-read": Case("good", [R.PERMISSION_READ_MISSING], {"perm": "trade"}),
    "no-ip": Case("no-ip", [R.IP_BINDING_MISSING]),
    "ip-incomplete": Case("ip-incomplete", [R.IP_BINDING_INCOMPLETE]),
    # Not bound to the caller's IP: OKX refuses the call (50110) naming the caller's address.
    "ip-foreign-refused": Case("ip-foreign", [R.IP_BINDING_INCOMPLETE]),
    "ip-foreign": Case("good", [R.IP_BINDING_FOREIGN], {"ip": ",".join([*EGRESS, FOREIGN_HOST])}),
    # A /24 holding both egress IPs: neither is bound as a host, and the network is foreign.
    "ip-wide-cidr": Case("ip-range", [R.IP_BINDING_INCOMPLETE, R.IP_BINDING_FOREIGN]),
    "frozen": Case("frozen", [R.KEY_DISABLED]),
    "account-blocked": Case("good", [R.ACCOUNT_LOCKED], user={"status": "blocked"}),
    "account-liquidating": Case("good", [R.ACCOUNT_LOCKED], user={"status": "liquidating"}),
    "account-status-invalid": Case("good", [R.ACCOUNT_LOCKED], user={"status": "invalid"}),
    "sub-account": Case("sub-account", [R.SUB_ACCOUNT_KEY]),
    "wrong-secret": Case("secret-mismatch", [R.KEY_INVALID]),
    "wrong-passphrase": Case("wrong-passphrase", [R.KEY_INVALID]),
}


@pytest.fixture
def fresh(bybit_sandbox, okx_sandbox) -> Callable[..., Key]:
    """fresh(exchange, like, user=None, **changes): a new key on that exchange's sandbox (tests/e2e/helpers.py)."""
    def make(exchange: ExchangeName, like: str = "good", **options: Any) -> Key:
        if exchange is BYBIT:
            return fresh_bybit_key(bybit_sandbox, like, **options)
        return fresh_okx_key(okx_sandbox, like, **options)
    return make


def assert_speaks_of(status, exchange: ExchangeName) -> None:
    """The status is about exchange, and each reason names it where the user reads what to do."""
    assert status.exchange == exchange.value
    others = [name.display_name for name in ExchangeName if name is not exchange]
    for r in status.reasons:
        where = r.message if r.code in NEUTRAL_HINTS else r.hint
        assert exchange.display_name in where, (r.code, where)
        assert not any(other in r.message + r.hint for other in others), r


async def assert_rejected(client, key: Key, expected: list[ReasonCode]):
    timeline = await bind(client, new_user(), key, trading_pairs=["BTC/USDT"])
    assert states(timeline) == [S.RECEIVED, S.REJECTED], [s.reasons for s in timeline]
    rejection = timeline[-1]
    assert rejection.reason_codes == expected
    assert all(s.exchange == key.exchange.value for s in timeline)
    assert_speaks_of(rejection, key.exchange)
    return rejection


@pytest.mark.parametrize("case", sorted(BYBIT_CASES))
async def test_each_bybit_key_is_rejected_with_its_reasons(client, fresh, case):
    spec = BYBIT_CASES[case]
    await assert_rejected(client, fresh(BYBIT, spec.like, user=spec.user, **spec.changes), spec.reasons)


@pytest.mark.parametrize("case", sorted(OKX_CASES))
async def test_each_okx_key_is_rejected_with_its_reasons(client, fresh, case):
    spec = OKX_CASES[case]
    await assert_rejected(client, fresh(OKX, spec.like, user=spec.user, **spec.changes), spec.reasons)


async def test_the_okx_refusal_of_the_callers_ip_names_the_address_to_add(client, fresh):
    # OKX's 50110 names the caller (shared/adapters/okx/README.md#errors): the egress IP the call left from.
    rejection = await assert_rejected(client, fresh(OKX, "ip-foreign"), [R.IP_BINDING_INCOMPLETE])
    assert "203.0.113.10" in rejection.reasons[0].message


def unknown_key(exchange: ExchangeName) -> Key:
    """A key no sandbox knows, shaped like that exchange's."""
    secret = secrets.token_hex(18).upper()
    passphrase = f"E2e-{secrets.token_hex(6)}!" if exchange.needs_passphrase else None
    SECRETS_USED.update(s for s in (secret, passphrase) if s)
    access_key = str(uuid.uuid4()) if exchange is OKX else f"H7E2E{secrets.token_hex(7).upper()}"
    return Key(access_key, SecretStr(secret), 0, exchange=exchange,
               passphrase=SecretStr(passphrase) if passphrase else None)


@pytest.mark.parametrize("exchange", [BYBIT, OKX])
async def test_an_unknown_key_is_key_invalid(client, exchange):
    await assert_rejected(client, unknown_key(exchange), [R.KEY_INVALID])


@pytest.mark.parametrize(("exchange", "endpoint"), [(BYBIT, "/v5/user/query-api"), (OKX, "/api/v5/account/config")])
async def test_an_exchange_outage_tells_the_user_to_retry_not_to_fix_the_key(
        client, fresh, bybit_sandbox, okx_sandbox, exchange, endpoint):
    sandbox = bybit_sandbox if exchange is BYBIT else okx_sandbox
    key = fresh(exchange)
    sandbox.admin.set_fault(endpoint, error_rate=1.0)
    try:
        rejection = await assert_rejected(client, key, [R.EXCHANGE_UNAVAILABLE])
    finally:
        sandbox.admin.clear_faults()
    assert rejection.reasons[0].hint == NEUTRAL_HINTS[R.EXCHANGE_UNAVAILABLE]


@pytest.mark.parametrize("exchange", [BYBIT, OKX])
async def test_a_good_key_with_pairs_from_the_exchanges_list_becomes_active(client, fresh, vault_admin, exchange):
    user, key = new_user(), fresh(exchange)
    timeline = await bind(client, user, key, trading_pairs=["BTC/USDT", "eth-usdt"])
    assert states(timeline) == [S.RECEIVED, S.VALIDATED, S.STORED, S.ACTIVE], [s.reasons for s in timeline]
    assert all(s.exchange == exchange.value and not s.reasons for s in timeline)
    pairs = vault_admin.secrets.kv.v2.read_secret_version(
        path=whitelist_path(user, timeline[0].binding_id), mount_point=KV_MOUNT,
        raise_on_deleted_version=False)["data"]["data"]["pairs"]
    assert pairs == ["btcusdt", "ethusdt"]


# Listed by each sandbox but not tradable (deploy/sandbox/*/demo-scenario.json): judged by that exchange's own list.
UNTRADABLE = {BYBIT: "LUNA/USDT", OKX: "NEW/USDT"}


@pytest.mark.parametrize("exchange", [BYBIT, OKX])
async def test_pairs_are_judged_by_the_keys_own_exchange(client, fresh, exchange):
    timeline = await bind(client, new_user(), fresh(exchange), trading_pairs=["BTC/USDT", UNTRADABLE[exchange]])
    # The key is good and stored; the binding waits for a whitelist the exchange can trade.
    assert states(timeline) == [S.RECEIVED, S.VALIDATED, S.STORED, S.AWAITING_WHITELIST], [s.reasons for s in timeline]
    assert timeline[-1].reason_codes == [R.PAIR_NOT_TRADABLE]
    assert UNTRADABLE[exchange].replace("/", "").lower() in timeline[-1].reasons[0].message
    assert_speaks_of(timeline[-1], exchange)


async def test_a_bybit_key_close_to_expiry_is_bound_but_expiring(client, fresh):
    timeline = await bind(client, new_user(), fresh(BYBIT, "expiring-soon"), trading_pairs=["BTC/USDT"])
    assert states(timeline) == [S.RECEIVED, S.VALIDATED, S.STORED, S.EXPIRING]
    assert timeline[-1].reason_codes == [R.KEY_EXPIRING] and "3 day" in timeline[-1].reasons[0].message
    assert_speaks_of(timeline[-1], BYBIT)


# ---- verdicts an exchange cannot reach ---------------------------------------------------------------------


def policy_for(good_ips: list[str]) -> KeyPolicy:
    return KeyPolicy(tuple(good_ips), expiry_warning_days=14)


def every_bybit_key(bybit_sandbox) -> list[tuple[str, ExchangeCredentials]]:
    return [(key["note"], bybit_sandbox.bybit_credentials(key["note"]))
            for user in bybit_sandbox.scenario["users"] for key in user["api_keys"]]


def every_okx_key(okx_sandbox) -> list[tuple[str, ExchangeCredentials]]:
    return [(key["label"], okx_sandbox.credentials(key["label"]))
            for user in okx_sandbox.scenario["users"] for key in user["api_keys"]]


async def verdicts_of_every_demo_key(exchange, keys, policy) -> dict[str, set[ReasonCode] | str]:
    """Each demo key's reason codes as the validator gives them, or the error kind when no verdict could be given."""
    found: dict[str, set[ReasonCode] | str] = {}
    try:
        for name, credentials in keys:
            try:
                inspection = await inspect_key(exchange, credentials, policy)
            except ExchangeError as error:
                found[name] = error.kind.value
                continue
            found[name] = {r.code for r in inspection.verdict.rejections + inspection.verdict.warnings}
    finally:
        await exchange.aclose()
    return found


async def descriptions(adapter, keys) -> list[tuple[str, Any]]:
    """What the adapter says of each key it may describe (the others are refused: no description to check)."""
    described = []
    try:
        for name, credentials in keys:
            try:
                described.append((name, await adapter.describe_key(credentials)))
            except ExchangeError:
                continue
    finally:
        await adapter.aclose()
    return described


async def test_no_bybit_key_is_ever_missing_read(clean_bybit_sandbox):
    sandbox = clean_bybit_sandbox
    described = await descriptions(BybitExchange(sandbox.base_url, timeout_s=2.0, retry_budget_s=0.5),
                                   every_bybit_key(sandbox))
    # Read-only, no-spot-trade and with-withdraw keys among them: whatever else a key may do, it may read.
    assert {"read-only", "no-spot-trade", "with-withdraw"} <= {name for name, _ in described}
    assert all(d.key is not None and Permission.READ in d.key.permissions for _, d in described)
    verdicts = await verdicts_of_every_demo_key(
        BybitExchange(sandbox.base_url, timeout_s=2.0, retry_budget_s=0.5), every_bybit_key(sandbox),
        policy_for(sandbox.key_entry("good")["ips"]))
    assert len(verdicts) == len(every_bybit_key(sandbox))
    assert not any(R.PERMISSION_READ_MISSING in v for v in verdicts.values() if isinstance(v, set)), verdicts


async def test_no_okx_key_is_ever_transfer_forbidden_expired_or_expiring(clean_okx_sandbox):
    sandbox = clean_okx_sandbox
    user, _ = sandbox.entry("good")
    # A key granted every permission OKX names, and one with a name OKX does not have: still no TRANSFER.
    secret, passphrase = secrets.token_hex(16).upper(), f"E2e-{secrets.token_hex(6)}!"
    SECRETS_USED.update({secret, passphrase})
    sandbox.admin.put_key(user["uid"], {"api_key": "every-permission", "secret_key": secret, "passphrase": passphrase,
                                        "perm": "read_only,trade,withdraw,transfer", "ip": ",".join(EGRESS)})
    keys = [*every_okx_key(sandbox),
            ("every-permission", ExchangeCredentials("every-permission", LocalHmacSigner(SecretStr(secret)),
                                                     passphrase=SecretStr(passphrase)))]
    described = await descriptions(OkxExchange(sandbox.base_url, timeout_s=2.0, retry_budget_s=0.5), keys)
    assert {"with-withdraw", "no-ip", "every-permission"} <= {name for name, _ in described}
    assert all(d.key is not None and Permission.TRANSFER not in d.key.permissions and d.key.valid_days is None
               for _, d in described)
    verdicts = await verdicts_of_every_demo_key(
        OkxExchange(sandbox.base_url, timeout_s=2.0, retry_budget_s=0.5), keys, policy_for(list(EGRESS)))
    unreachable = {R.PERMISSION_TRANSFER_FORBIDDEN, R.KEY_EXPIRED, R.KEY_EXPIRING}
    assert not any(unreachable & v for v in verdicts.values() if isinstance(v, set)), verdicts
    assert R.PERMISSION_WITHDRAW_FORBIDDEN in verdicts["every-permission"]
