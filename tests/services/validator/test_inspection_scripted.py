"""inspect_key on answers the sandbox never gives (HTX's behaviour there is undocumented), from a script."""

import httpx
import pytest
from pydantic import SecretStr

from services.validator.inspection import inspect_key
from services.validator.verdict import KeyPolicy
from shared.adapters.exchange.errors import ExchangeError, ExchangeErrorKind
from shared.adapters.exchange.port import ExchangeCredentials
from shared.adapters.request_signing import LocalHmacSigner
from shared.contracts.reasons import ReasonCode as R
from tests.adapters.htx.scripted import START, FakeTime, ScriptedHtx, client_for, ok, v1_error
from tests.services.validator.reasons import codes

POLICY = KeyPolicy(egress_ips=("203.0.113.10", "203.0.113.11"), expiry_warning_days=14)
CREDENTIALS = ExchangeCredentials("abcd1234-efgh5678-ijkl9012-mnop3", LocalHmacSigner(SecretStr("secret")))
SERVER_TIME = httpx.Response(200, json={"status": "ok", "data": int(START * 1000)})


async def inspect(*answers: httpx.Response):
    async with client_for(ScriptedHtx(SERVER_TIME, *answers), FakeTime()) as client:
        return await inspect_key(client, CREDENTIALS, POLICY)


async def test_a_key_htx_does_not_list_under_its_own_uid_is_invalid():
    other_key = {"accessKey": "someone-else", "permission": "readOnly,trade", "status": "normal"}
    inspection = await inspect(ok(63628520), ok([other_key]))
    assert codes(inspection.verdict.rejections) == [R.KEY_INVALID]
    assert inspection.facts is None


async def test_an_ip_refusal_without_the_ip_names_every_egress_ip():
    inspection = await inspect(v1_error("api-signature-not-valid", "Signature not valid: ip地址错误"))
    assert codes(inspection.verdict.rejections) == [R.IP_BINDING_INCOMPLETE]
    assert "missing: 203.0.113.10, 203.0.113.11." in inspection.verdict.rejections[0].message


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (v1_error("login-required", "The account is not logged in, please log in and try again."),
         ExchangeErrorKind.LOGIN_REQUIRED),
        (v1_error("api-signature-not-valid", "Signature not valid: Invalid submission time or incorrect time format "
                  "[无效的提交时间，或时间格式错误]"), ExchangeErrorKind.TIMESTAMP_OUT_OF_WINDOW),
        (httpx.Response(405, json={"status": "error", "err-code": "method-not-allowed", "err-msg": "x"}),
         ExchangeErrorKind.NOT_FOUND),
    ],
)
async def test_refusals_that_say_nothing_about_the_key_are_raised(answer, kind):
    with pytest.raises(ExchangeError) as caught:
        await inspect(answer)
    assert caught.value.kind is kind and not caught.value.transient
