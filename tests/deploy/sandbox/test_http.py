"""The sandbox over raw HTTP: every refusal with HTX's exact envelope and text
(shared/adapters/htx/README.md#errors), and each one classified by the adapter's parser as the case it is."""

from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import httpx
import pytest
from pydantic import SecretStr

from shared.adapters.exchange.errors import ExchangeError, ExchangeErrorKind
from shared.adapters.htx.errors import parse_response
from shared.adapters.htx.signing import compute_signature, percent_encode
from tests.adapters.htx.signed import signed_query

pytestmark = pytest.mark.stack

K = ExchangeErrorKind
EGRESS_IP = "203.0.113.10"


def sign(sandbox, note: str, path: str, params: dict[str, str] | None = None, *, method: str = "GET",
         host: str | None = None, moment: datetime | None = None, secret: str | None = None) -> dict[str, str]:
    key = sandbox.key_entry(note)
    return signed_query(access_key=key["access_key"], secret_key=SecretStr(secret or key["secret_key"]), method=method,
                        host=host or httpx.URL(sandbox.base_url).netloc.decode(), path=path,
                        timestamp=moment or datetime.now(UTC), params=params)


def send(sandbox, method: str, path: str, query: dict[str, str] | str = "", **kwargs) -> httpx.Response:
    raw_query = query if isinstance(query, str) else urlencode(query)
    return httpx.request(method, f"{sandbox.base_url}{path}?{raw_query}", timeout=5.0, **kwargs)


def signed_get(sandbox, note: str, path: str, params: dict[str, str] | None = None) -> httpx.Response:
    return send(sandbox, "GET", path, sign(sandbox, note, path, params))


def classified(response: httpx.Response) -> ExchangeError:
    with pytest.raises(ExchangeError) as caught:
        parse_response(response.status_code, response.content)
    return caught.value


def assert_auth_refusal(response: httpx.Response, message: str, kind: ExchangeErrorKind) -> ExchangeError:
    """HTTP 200, v1 envelope, `api-signature-not-valid`, the exact text; on v1 and v2 paths alike
    (shared/adapters/htx/README.md#auth-failures)."""
    assert response.status_code == 200
    assert response.json() == {
        "status": "error", "err-code": "api-signature-not-valid", "err-msg": message, "data": None}
    error = classified(response)
    assert (error.kind, error.message) == (kind, message)
    return error


def assert_ok(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return parse_response(response.status_code, response.content)


@pytest.fixture
def sandbox(clean_htx_sandbox):
    return clean_htx_sandbox


# ---- auth parameters -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dropped", [("AccessKeyId", "Signature"), ("Signature",), ("AccessKeyId",)])
def test_missing_access_key_or_signature_is_login_required(sandbox, dropped):
    query = {k: v for k, v in sign(sandbox, "good", "/v2/user/uid").items() if k not in dropped}
    response = send(sandbox, "GET", "/v2/user/uid", query)
    assert response.json() == {"status": "error", "err-code": "login-required",
                               "err-msg": "The account is not logged in, please log in and try again.", "data": None}
    assert classified(response).kind is K.LOGIN_REQUIRED


def test_missing_timestamp(sandbox):
    query = {k: v for k, v in sign(sandbox, "good", "/v2/user/uid").items() if k != "Timestamp"}
    assert_auth_refusal(send(sandbox, "GET", "/v2/user/uid", query),
                        "Signature not valid: Submission time is required [提交时间不能为空]", K.BAD_REQUEST)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SignatureMethod", "HmacSHA1", "Signature not valid: Incorrect signature method [错误的签名方法]"),
        ("SignatureMethod", "Ed25519", "Signature not valid: Incorrect signature method [错误的签名方法]"),
        ("SignatureVersion", "1", "Signature not valid: Incorrect signature version [错误的签名版本]"),
        ("SignatureVersion", "2.1", "Signature not valid: Incorrect signature version [错误的签名版本]"),
    ],
)
def test_unsupported_signature_method_or_version(sandbox, name, value, message):
    query = sign(sandbox, "good", "/v2/user/uid") | {name: value}
    assert_auth_refusal(send(sandbox, "GET", "/v2/user/uid", query), message, K.BAD_REQUEST)


def test_unknown_access_key(sandbox):
    query = sign(sandbox, "good", "/v2/user/uid") | {"AccessKeyId": "00000000-00000000-00000000-00000"}
    assert_auth_refusal(send(sandbox, "GET", "/v2/user/uid", query),
                        "Signature not valid: Incorrect Access key [Access key错误]", K.UNKNOWN_ACCESS_KEY)


def test_a_deleted_key_is_unknown(sandbox):
    sandbox.admin.delete_key(sandbox.key_entry("good")["access_key"])
    assert_auth_refusal(signed_get(sandbox, "good", "/v2/user/uid"),
                        "Signature not valid: Incorrect Access key [Access key错误]", K.UNKNOWN_ACCESS_KEY)


# ---- timestamp window (5 minutes, shared/adapters/htx/README.md#signing) -----------------------------------


@pytest.mark.parametrize("offset", [timedelta(minutes=-6), timedelta(minutes=6)])
def test_a_timestamp_outside_the_window(sandbox, offset):
    query = sign(sandbox, "good", "/v2/user/uid", moment=datetime.now(UTC) + offset)
    assert_auth_refusal(send(sandbox, "GET", "/v2/user/uid", query),
                        "Signature not valid: Invalid submission time or incorrect time format "
                        "[无效的提交时间，或时间格式错误]",
                        K.TIMESTAMP_OUT_OF_WINDOW)


def test_a_timestamp_in_another_format(sandbox):
    query = sign(sandbox, "good", "/v2/user/uid") | {"Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    assert classified(send(sandbox, "GET", "/v2/user/uid", query)).kind is K.TIMESTAMP_OUT_OF_WINDOW


@pytest.mark.parametrize("offset", [timedelta(minutes=-4), timedelta(minutes=4)])
def test_a_timestamp_inside_the_window(sandbox, offset):
    query = sign(sandbox, "good", "/v2/user/uid", moment=datetime.now(UTC) + offset)
    assert assert_ok(send(sandbox, "GET", "/v2/user/uid", query))["data"] == sandbox.user("good")["uid"]


# ---- signature -------------------------------------------------------------------------------------------

VERIFICATION_FAILURE = "Signature not valid: Verification failure [校验失败]"


def test_a_wrong_secret(sandbox):
    query = sign(sandbox, "good", "/v2/user/uid", secret="not-the-secret")
    assert_auth_refusal(send(sandbox, "GET", "/v2/user/uid", query), VERIFICATION_FAILURE, K.SIGNATURE_MISMATCH)


def test_a_parameter_changed_after_signing(sandbox):
    owner, sub_user = sandbox.user("good"), sandbox.user("sub-user")
    params = {"uid": str(owner["uid"]), "accessKey": sandbox.key_entry("good")["access_key"]}
    query = sign(sandbox, "good", "/v2/user/api-key", params) | {"uid": str(sub_user["uid"])}
    assert_auth_refusal(send(sandbox, "GET", "/v2/user/api-key", query), VERIFICATION_FAILURE, K.SIGNATURE_MISMATCH)


def test_a_parameter_added_after_signing(sandbox):
    query = sign(sandbox, "good", "/v2/user/uid") | {"extra": "1"}
    assert_auth_refusal(send(sandbox, "GET", "/v2/user/uid", query), VERIFICATION_FAILURE, K.SIGNATURE_MISMATCH)


def test_a_signature_over_another_path(sandbox):
    query = sign(sandbox, "good", "/v1/account/accounts")
    assert_auth_refusal(send(sandbox, "GET", "/v2/user/uid", query), VERIFICATION_FAILURE, K.SIGNATURE_MISMATCH)


def _raw_query(sandbox, note: str, path: str, encode) -> str:
    """A query whose pre-sign text and URL both use encode for values, signed verbatim."""
    key = sandbox.key_entry(note)
    params = {"AccessKeyId": key["access_key"], "SignatureMethod": "HmacSHA256", "SignatureVersion": "2",
              "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")}
    canonical = "&".join(f"{k}={encode(v)}" for k, v in sorted(params.items()))
    host = httpx.URL(sandbox.base_url).netloc.decode()
    signature = compute_signature(SecretStr(key["secret_key"]), f"GET\n{host}\n{path}\n{canonical}")
    return f"{canonical}&Signature={percent_encode(signature)}"


def test_lower_case_hex_signed_verbatim_fails(sandbox):
    # shared/adapters/htx/README.md#canonical-form: the server re-encodes with upper-case hex.
    query = _raw_query(sandbox, "good", "/v2/user/uid", lambda v: percent_encode(v).replace("%3A", "%3a"))
    assert "%3a" in query
    assert_auth_refusal(send(sandbox, "GET", "/v2/user/uid", query), VERIFICATION_FAILURE, K.SIGNATURE_MISMATCH)


def test_lower_case_hex_in_the_url_of_a_correctly_signed_request_passes(sandbox):
    signed = _raw_query(sandbox, "good", "/v2/user/uid", percent_encode)
    assert assert_ok(send(sandbox, "GET", "/v2/user/uid", signed.replace("%3A", "%3a")))["data"] == 63628520


def test_the_url_order_of_parameters_does_not_matter(sandbox):
    params = {"uid": str(sandbox.user("good")["uid"]), "accessKey": sandbox.key_entry("good")["access_key"]}
    query = sign(sandbox, "good", "/v2/user/api-key", params)
    shuffled = dict(reversed(list(query.items())))
    assert assert_ok(send(sandbox, "GET", "/v2/user/api-key", shuffled))["code"] == 200


@pytest.mark.parametrize("signed_host", ["with-port", "without-port"])
def test_the_signed_host_may_carry_the_port_or_not(sandbox, signed_host):
    netloc = httpx.URL(sandbox.base_url).netloc.decode()
    host = netloc if signed_host == "with-port" else netloc.split(":")[0]
    query = sign(sandbox, "good", "/v2/user/uid", host=host)
    assert assert_ok(send(sandbox, "GET", "/v2/user/uid", query))["data"] == 63628520


def test_the_host_header_is_lower_cased_before_comparing(sandbox):
    query = sign(sandbox, "good", "/v2/user/uid", host="api.huobi.pro")
    response = send(sandbox, "GET", "/v2/user/uid", query, headers={"Host": "API.Huobi.PRO"})
    assert assert_ok(response)["data"] == 63628520


def test_a_signature_for_another_host_fails(sandbox):
    query = sign(sandbox, "good", "/v2/user/uid", host="api.huobi.pro")
    assert_auth_refusal(send(sandbox, "GET", "/v2/user/uid", query), VERIFICATION_FAILURE, K.SIGNATURE_MISMATCH)


# ---- key state -------------------------------------------------------------------------------------------


def test_ip_not_bound_names_the_caller_ip(sandbox):
    error = assert_auth_refusal(signed_get(sandbox, "ip-not-bound", "/v2/user/uid"),
                                f"Signature not valid: Incorrect IP address [IP地址错误]:{EGRESS_IP}", K.IP_NOT_BOUND)
    assert error.caller_ip == EGRESS_IP


def test_a_network_binding_that_contains_the_caller_passes(sandbox):
    sandbox.admin.update_key(sandbox.key_entry("ip-not-bound")["access_key"], ip_addresses="203.0.113.0/24")
    assert assert_ok(signed_get(sandbox, "ip-not-bound", "/v2/user/uid"))


def test_an_expired_key(sandbox):
    assert_auth_refusal(signed_get(sandbox, "expired", "/v2/user/uid"),
                        "Signature not valid: API key has expired [API Key已经过期]", K.KEY_EXPIRED)


def test_an_abnormal_user(sandbox):
    assert_auth_refusal(signed_get(sandbox, "abnormal-user", "/v2/user/uid"),
                        "Signature not valid: Abnormal user status [用户状态不正常]", K.ABNORMAL_USER)


NO_PERMISSION = "Signature not valid: API key has no permission [API Key没有权限]"


def test_a_key_without_read_permission_cannot_read(sandbox):
    assert_auth_refusal(signed_get(sandbox, "no-read", "/v1/account/accounts"),
                        NO_PERMISSION, K.NO_PERMISSION)


def test_a_read_only_key_cannot_place_orders(sandbox):
    query = sign(sandbox, "read-only", "/v1/order/orders/place", method="POST")
    response = send(sandbox, "POST", "/v1/order/orders/place", query,
                    json={"account-id": "10000031", "symbol": "btcusdt", "type": "buy-market", "amount": "5"})
    assert_auth_refusal(response, NO_PERMISSION, K.NO_PERMISSION)


def test_a_locked_account_is_listed_as_locked(sandbox):
    data = assert_ok(signed_get(sandbox, "locked-account", "/v1/account/accounts"))
    assert {"id": 10000091, "type": "spot", "subtype": "", "state": "lock"} in data["data"]


def test_a_sub_user_key_is_refused_on_the_parent_only_endpoint_with_a_bare_403(sandbox):
    sub_user = sandbox.user("sub-user")
    params = {"uid": str(sub_user["uid"]), "accessKey": sandbox.key_entry("sub-user")["access_key"]}
    response = send(sandbox, "GET", "/v2/user/api-key", sign(sandbox, "sub-user", "/v2/user/api-key", params))
    assert response.status_code == 403
    assert not response.headers["content-type"].startswith("application/json")
    assert classified(response).kind is K.FORBIDDEN
    assert assert_ok(signed_get(sandbox, "sub-user", "/v2/user/uid"))["data"] == sub_user["uid"]


def test_a_parent_may_read_its_sub_users_keys_but_not_a_strangers(sandbox):
    sub_user, stranger = sandbox.user("sub-user"), sandbox.user("withdraw")
    own = assert_ok(signed_get(sandbox, "good", "/v2/user/api-key", {"uid": str(sub_user["uid"])}))
    assert [entry["note"] for entry in own["data"]] == ["sub-user"]
    foreign = signed_get(sandbox, "good", "/v2/user/api-key", {"uid": str(stranger["uid"])})
    assert foreign.json() == {"code": 1002, "message": "forbidden", "data": None}
    assert classified(foreign).kind is K.FORBIDDEN
    missing = signed_get(sandbox, "good", "/v2/user/api-key")
    assert (missing.json()["code"], classified(missing).kind) == (2002, K.BAD_REQUEST)


# ---- routing and transport -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/v1/nothing/here"), ("GET", "/V2/user/uid"), ("POST", "/v2/user/uid")]
)
def test_an_unknown_path_or_method_is_405(sandbox, method, path):
    response = send(sandbox, method, path)
    assert response.status_code == 405
    assert response.json()["err-code"] == "method-not-allowed"
    assert classified(response).kind is K.NOT_FOUND


@pytest.mark.parametrize("path", ["/v2/user/uid", "/v1/common/timestamp"])
def test_a_get_with_a_body_is_403(sandbox, path):
    response = send(sandbox, "GET", path, sign(sandbox, "good", path), content=b'{"a":1}')
    assert response.status_code == 403
    assert classified(response).kind is K.FORBIDDEN


def test_an_order_without_a_json_body_is_a_gateway_error(sandbox):
    query = sign(sandbox, "good", "/v1/order/orders/place", method="POST")
    response = send(sandbox, "POST", "/v1/order/orders/place", query, data={"symbol": "btcusdt"})
    assert response.json() == {"status": "error", "err-code": "gateway-internal-error",
                               "err-msg": "Failed to load data. Try again later.", "data": None}
    assert classified(response).transient


# ---- rate limits and maintenance -------------------------------------------------------------------------


def test_rate_limits_per_uid_and_endpoint_with_htx_headers(sandbox):
    sandbox.admin.set_rate_limit("/v2/user/uid", requests=3, window_ms=60_000)
    answers = [signed_get(sandbox, "good", "/v2/user/uid") for _ in range(4)]
    remaining = [a.headers["X-HB-RateLimit-Requests-Remain"] for a in answers]
    expires = {int(a.headers["X-HB-RateLimit-Requests-Expire"]) for a in answers}
    assert remaining == ["2", "1", "0", "0"]
    assert len(expires) == 1 and expires.pop() > datetime.now(UTC).timestamp() * 1000 + 50_000
    assert [a.json().get("code") for a in answers[:3]] == [200, 200, 200]
    assert answers[3].json() == {
        "status": "error", "err-code": "base-request-exceed-frequency-limit",
        "err-msg": "Frequency of requests has exceeded the limit, please try again later", "data": None}
    assert classified(answers[3]).kind is K.RATE_LIMITED
    # Per UID and per endpoint: another user, and another endpoint of the same user, still pass.
    assert assert_ok(signed_get(sandbox, "withdraw", "/v2/user/uid"))
    assert assert_ok(signed_get(sandbox, "good", "/v1/account/accounts"))
    counts = sandbox.admin.request_counts()["GET /v2/user/uid"]
    assert (counts["ok"], counts["base-request-exceed-frequency-limit"]) == (4, 1)


def test_documented_limits_apply_by_default(sandbox):
    response = signed_get(sandbox, "good", "/v1/account/accounts")
    assert response.headers["X-HB-RateLimit-Requests-Remain"] == "99"


def test_maintenance_answers_every_endpoint(sandbox):
    sandbox.admin.set_fault("*", maintenance=True)
    for response in (send(sandbox, "GET", "/v1/common/timestamp"),
                     signed_get(sandbox, "good", "/v2/user/uid")):
        assert response.json() == {"status": "error", "err-code": "system-maintenance",
                                   "err-msg": "System is in maintenance!", "data": None}
        assert classified(response).kind is K.MAINTENANCE
    sandbox.admin.clear_faults()
    assert assert_ok(send(sandbox, "GET", "/v1/common/timestamp"))


@pytest.mark.parametrize(
    ("error_kind", "http_status", "kind"),
    [("gateway-internal-error", 200, K.UNAVAILABLE), ("bad-gateway", 502, K.UNAVAILABLE)],
)
def test_injected_errors(sandbox, error_kind, http_status, kind):
    sandbox.admin.set_fault("/v1/common/timestamp", error_rate=1.0, error_kind=error_kind)
    response = send(sandbox, "GET", "/v1/common/timestamp")
    assert response.status_code == http_status
    assert classified(response).kind is kind
    assert assert_ok(send(sandbox, "GET", "/v2/market-status"))
