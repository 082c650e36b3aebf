"""inspect_key on HTX's adapter against the real sandbox over HTTP: every verdict of the demo scenario, HTX's
refusals turned into reasons, and transient trouble raised."""

import time

import pytest
from pydantic import SecretStr

from services.validator.inspection import inspect_key
from services.validator.verdict import KeyPolicy
from shared.adapters.exchange.errors import ExchangeErrorKind, ExchangeTransientError
from shared.adapters.exchange.port import ExchangeCredentials
from shared.adapters.htx.client import HtxClient
from shared.adapters.htx.exchange import HtxExchange
from shared.adapters.request_signing import LocalHmacSigner
from shared.contracts.events import KeyFacts
from shared.contracts.reasons import ReasonCode as R
from tests.services.validator.reasons import codes

pytestmark = pytest.mark.stack

POLICY = KeyPolicy(egress_ips=("203.0.113.10", "203.0.113.11"), expiry_warning_days=14)


@pytest.fixture
def sandbox(clean_htx_sandbox):
    return clean_htx_sandbox


@pytest.fixture
async def client(sandbox):
    async with HtxClient(sandbox.base_url, timeout_s=2.0, retry_budget_s=0.5, backoff_base_s=0.02) as htx:
        yield HtxExchange(htx)


@pytest.mark.parametrize(
    ("note", "rejections", "warnings"),
    [
        ("good", [], []),
        ("withdraw", [R.PERMISSION_WITHDRAW_FORBIDDEN], []),
        ("read-only", [R.PERMISSION_TRADE_MISSING], []),
        ("no-ip-binding", [R.IP_BINDING_MISSING], [R.KEY_EXPIRING]),
        ("foreign-cidr", [R.IP_BINDING_FOREIGN], []),
        ("missing-one-ip", [R.IP_BINDING_INCOMPLETE], []),
        ("ip-not-bound", [R.IP_BINDING_INCOMPLETE], []),
        ("expired", [R.KEY_EXPIRED], []),
        ("locked-account", [R.ACCOUNT_LOCKED], []),
        ("sub-user", [R.SUB_ACCOUNT_KEY], []),
        ("abnormal-user", [R.KEY_DISABLED], []),
        ("no-read", [R.PERMISSION_READ_MISSING], []),
    ],
)
async def test_every_demo_key_gets_its_verdict(sandbox, client, note, rejections, warnings):
    inspection = await inspect_key(client, sandbox.credentials(note), POLICY)
    assert codes(inspection.verdict.rejections) == rejections
    assert codes(inspection.verdict.warnings) == warnings
    assert inspection.accepted is (rejections == [])


async def test_a_good_key_carries_htx_facts(sandbox, client):
    inspection = await inspect_key(client, sandbox.credentials("good"), POLICY)
    assert inspection.facts == KeyFacts(owner_uid="63628520", trading_account_id="10000011",
                                        permissions=["readOnly", "trade"],
                                        ip_addresses=["203.0.113.10", "203.0.113.11"], valid_days=None,
                                        key_status="normal")


async def test_reasons_name_the_addresses_to_fix(sandbox, client):
    missing = await inspect_key(client, sandbox.credentials("missing-one-ip"), POLICY)
    refused = await inspect_key(client, sandbox.credentials("ip-not-bound"), POLICY)
    foreign = await inspect_key(client, sandbox.credentials("foreign-cidr"), POLICY)
    assert "missing: 203.0.113.11." in missing.verdict.rejections[0].message
    # HTX refused the call and named the egress IP it saw.
    assert "missing: 203.0.113.10." in refused.verdict.rejections[0].message and refused.facts is None
    assert "203.0.113.0/24" in foreign.verdict.rejections[0].message


async def test_a_sub_account_key_has_no_facts(sandbox, client):
    assert (await inspect_key(client, sandbox.credentials("sub-user"), POLICY)).facts is None


@pytest.mark.parametrize(
    "credentials_of",
    [
        lambda sandbox: ExchangeCredentials("00000000-00000000-00000000-00000", LocalHmacSigner(SecretStr("x"))),
        lambda sandbox: ExchangeCredentials(sandbox.key_entry("good")["access_key"],
                                       LocalHmacSigner(SecretStr("wrong-secret"))),
    ],
    ids=["unknown-key", "wrong-secret"],
)
async def test_an_unknown_key_or_wrong_secret_is_key_invalid(sandbox, client, credentials_of):
    inspection = await inspect_key(client, credentials_of(sandbox), POLICY)
    assert codes(inspection.verdict.rejections) == [R.KEY_INVALID]


async def test_changes_made_at_run_time_change_the_verdict(sandbox, client):
    access_key = sandbox.key_entry("good")["access_key"]
    sandbox.admin.update_key(access_key, permission="readOnly,trade,withdraw", valid_days=3)
    sandbox.admin.set_account_state(10000011, "lock")
    inspection = await inspect_key(client, sandbox.credentials("good"), POLICY)
    assert codes(inspection.verdict.rejections) == [R.PERMISSION_WITHDRAW_FORBIDDEN, R.ACCOUNT_LOCKED]
    assert codes(inspection.verdict.warnings) == [R.KEY_EXPIRING]
    sandbox.admin.reset()
    assert (await inspect_key(client, sandbox.credentials("good"), POLICY)).accepted


async def test_a_drifted_clock_is_corrected_from_htx_time(sandbox):
    async with HtxClient(sandbox.base_url, clock=lambda: time.time() - 600) as drifted:
        assert (await inspect_key(HtxExchange(drifted), sandbox.credentials("good"), POLICY)).accepted


async def test_transient_trouble_is_raised_after_the_retry_budget(sandbox, client):
    sandbox.admin.set_fault("/v1/account/accounts", error_rate=1.0)
    with pytest.raises(ExchangeTransientError) as caught:
        await inspect_key(client, sandbox.credentials("good"), POLICY)
    assert caught.value.kind is ExchangeErrorKind.UNAVAILABLE
    assert sandbox.admin.request_counts()["GET /v1/account/accounts"]["gateway-internal-error"] > 1


async def test_a_locked_account_is_told_in_our_words(sandbox, client):
    [locked] = (await inspect_key(client, sandbox.credentials("locked-account"), POLICY)).verdict.rejections
    assert "(spot account locked)" in locked.message
