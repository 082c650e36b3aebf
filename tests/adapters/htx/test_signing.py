"""Signature Version 2 against the vectors of shared/adapters/htx/README.md#test-vectors, positive and negative."""

import base64
import hashlib
import hmac
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from shared.adapters.htx.signing import (
    canonical_query,
    compute_signature,
    format_timestamp,
    parse_timestamp,
    percent_encode,
    pre_sign_text,
)
from tests.adapters.htx.signed import signed_query

# vector 5 of shared/adapters/htx/README.md#test-vectors (and the documented example's placeholders).
AK = "e2xxxxxx-99xxxxxx-84xxxxxx-7xxxx"
SK = SecretStr("b0xxxxxx-c6xxxxxx-94xxxxxx-dxxxx")
AT_2024 = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
PLACE_PRE_SIGN = (
    "POST\napi.huobi.pro\n/v1/order/orders/place\n"
    "AccessKeyId=e2xxxxxx-99xxxxxx-84xxxxxx-7xxxx&SignatureMethod=HmacSHA256&SignatureVersion=2"
    "&Timestamp=2024-01-02T03%3A04%3A05"
)
PLACE_SIGNATURE = "qQJcOrt05IWeQ3StgxqQQZPJNLexxu+r1dnlWx8sk7Y="
UID_SIGNATURE = "eN2brXLL9Ps/uZOWoDH64NT29LgPVdGl9duKSsmxgG4="


def own_vector(method: str, path: str, params: dict[str, str] | None = None) -> dict[str, str]:
    return signed_query(access_key=AK, secret_key=SK, method=method, host="api.huobi.pro", path=path,
                        timestamp=AT_2024, params=params)


def without_signature(query: dict[str, str]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in query.items() if k != "Signature"]


# ---- positive vectors ------------------------------------------------------------------------------------


def test_gosdk_signer_vector():
    text = "GET\napi.huobi.pro\n/v1/account/history\naccount-id=1&currency=btcusdt"
    assert compute_signature(SecretStr("secret"), text) == "HUP3n78npIuTzVKyjEOrPictRKEUTRoYs7Ld5y38hmA="


@pytest.mark.parametrize(
    ("path", "params", "documented_query"),
    [
        (
            "/v1/account/accounts",
            None,
            "AccessKeyId=access&SignatureMethod=HmacSHA256&SignatureVersion=2&Timestamp=2019-11-21T10%3A00%3A00"
            "&Signature=rWnLcMt3XBAsmXoNHtTQVpvMbH%2FcE1PXFwQAGeYwt3s%3D",
        ),
        (
            "/v1/account/history",
            {"account-id": "123", "currency": "btc"},
            "AccessKeyId=access&SignatureMethod=HmacSHA256&SignatureVersion=2&Timestamp=2019-11-21T10%3A00%3A00"
            "&account-id=123&currency=btc&Signature=SGZYJ9Ub%2FhFerEBbSWsCxl8Djk%2BLRBgEZOB4fLc4T9Q%3D",
        ),
    ],
)
def test_gosdk_private_url_vectors(path, params, documented_query):
    query = signed_query(access_key="access", secret_key=SecretStr("secret"), method="GET", host="api.huobi.pro",
                         path=path, timestamp=datetime(2019, 11, 21, 10, 0, 0, tzinfo=UTC), params=params)
    rebuilt = f"{canonical_query(without_signature(query))}&Signature={percent_encode(query['Signature'])}"
    assert rebuilt == documented_query


def test_pysdk_vector():
    auth = [("AccessKeyId", "123"), ("SignatureVersion", "2"), ("SignatureMethod", "HmacSHA256"), ("Timestamp", "123")]
    text = pre_sign_text("GET", "host", "/url", auth)
    assert text == "GET\nhost\n/url\nAccessKeyId=123&SignatureMethod=HmacSHA256&SignatureVersion=2&Timestamp=123"
    assert compute_signature(SecretStr("456"), text) == "Hhiaq8xYQPiBZOyWV37MdQutLo4f0ZOHiJtG3p+nILc="


def test_documented_example_signed_with_the_documented_secret():
    # DOC21's own signature is illustrative; this is the real HMAC of its pre-sign text
    # (shared/adapters/htx/README.md#test-vectors).
    params = [("AccessKeyId", AK), ("SignatureMethod", "HmacSHA256"), ("SignatureVersion", "2"),
              ("Timestamp", "2017-05-11T15:19:30"), ("order-id", "1234567890")]
    text = pre_sign_text("GET", "api.huobi.pro", "/v1/order/orders", params)
    assert compute_signature(SK, text) == "Nmd8AU8uAe0mkFpxNbiava0aeZzBEtYjCdie1ZYZjoM="


@pytest.mark.parametrize(
    ("path", "params", "signature"),
    [
        ("/v2/user/uid", None, UID_SIGNATURE),
        ("/v2/user/api-key", {"uid": "63628520", "accessKey": AK}, "VtsMp9TJBN4HRNNuh5y4yii+5VIqebOjY1jjFQ9sUU0="),
        ("/v1/account/accounts", None, "ZwDhNUJiDaqORUIA3Ds2C4OadLvGF6Vrjc+TpASSda8="),
    ],
)
def test_own_get_vectors(path, params, signature):
    assert own_vector("GET", path, params)["Signature"] == signature


def test_api_key_vector_pre_sign_sorts_upper_case_names_first():
    query = own_vector("GET", "/v2/user/api-key", {"uid": "63628520", "accessKey": AK})
    assert pre_sign_text("GET", "api.huobi.pro", "/v2/user/api-key", without_signature(query)).endswith(
        "&Timestamp=2024-01-02T03%3A04%3A05&accessKey=e2xxxxxx-99xxxxxx-84xxxxxx-7xxxx&uid=63628520"
    )


def test_post_signs_only_the_four_auth_parameters():
    query = own_vector("POST", "/v1/order/orders/place")
    assert set(query) == {"AccessKeyId", "SignatureMethod", "SignatureVersion", "Timestamp", "Signature"}
    assert pre_sign_text("POST", "api.huobi.pro", "/v1/order/orders/place", without_signature(query)) == PLACE_PRE_SIGN
    assert query["Signature"] == PLACE_SIGNATURE


def test_host_is_lower_cased_in_the_pre_sign_text():
    query = own_vector("GET", "/v2/user/uid")
    text = pre_sign_text("GET", "API.HUOBI.PRO", "/v2/user/uid", without_signature(query))
    assert text.split("\n")[1] == "api.huobi.pro"
    upper_host = signed_query(access_key=AK, secret_key=SK, method="GET", host="API.HUOBI.PRO", path="/v2/user/uid",
                              timestamp=AT_2024)
    assert upper_host["Signature"] == UID_SIGNATURE


# ---- negative vectors ------------------------------------------------------------------------------------


def test_lower_case_hex_escapes_give_another_signature():
    lower_hex = PLACE_PRE_SIGN.replace("%3A", "%3a")
    assert compute_signature(SK, lower_hex) != PLACE_SIGNATURE


def test_unsorted_parameters_give_another_signature():
    unsorted = "GET\napi.huobi.pro\n/v2/user/uid\nTimestamp=2024-01-02T03%3A04%3A05&AccessKeyId=" + AK + (
        "&SignatureMethod=HmacSHA256&SignatureVersion=2")
    assert compute_signature(SK, unsorted) != UID_SIGNATURE


def test_signing_the_post_body_gives_another_signature():
    with_body = own_vector("GET", "/v1/order/orders/place", {"symbol": "btcusdt"})
    text = pre_sign_text("POST", "api.huobi.pro", "/v1/order/orders/place", without_signature(with_body))
    assert compute_signature(SK, text) != PLACE_SIGNATURE


def test_a_wrong_secret_gives_another_signature():
    assert compute_signature(SecretStr("b0xxxxxx-c6xxxxxx-94xxxxxx-dxxxy"), PLACE_PRE_SIGN) != PLACE_SIGNATURE


def test_base64_of_the_hex_digest_is_not_the_signature():
    # shared/adapters/htx/README.md#signing: base64 the raw digest bytes, not the hex string.
    hex_digest = hmac.new(SK.get_secret_value().encode(), PLACE_PRE_SIGN.encode(), hashlib.sha256).hexdigest()
    assert base64.b64encode(hex_digest.encode()).decode() != PLACE_SIGNATURE


def test_space_as_plus_is_not_the_canonical_form():
    plus_form = "GET\nh\n/p\nnote=a+b"
    assert pre_sign_text("GET", "h", "/p", [("note", "a b")]) == "GET\nh\n/p\nnote=a%20b"
    assert compute_signature(SK, plus_form) != compute_signature(SK, "GET\nh\n/p\nnote=a%20b")


def test_a_port_in_the_signed_host_changes_the_signature():
    with_port = signed_query(access_key=AK, secret_key=SK, method="GET", host="api.huobi.pro:443", path="/v2/user/uid",
                             timestamp=AT_2024)
    assert with_port["Signature"] != UID_SIGNATURE


# ---- encoding and timestamps -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        ("2017-05-11T15:19:30", "2017-05-11T15%3A19%3A30"),
        ("a b", "a%20b"),
        ("AZaz09-_.~", "AZaz09-_.~"),
        ("*", "%2A"),
        ("/+=,", "%2F%2B%3D%2C"),
        ("é", "%C3%A9"),
    ],
)
def test_percent_encoding_is_rfc3986_with_upper_case_hex(raw, encoded):
    assert percent_encode(raw) == encoded


def test_repeated_names_sort_by_value_too():
    assert canonical_query([("b", "2"), ("a", "9"), ("b", "1")]) == "a=9&b=1&b=2"


def test_timestamp_format_is_utc_seconds_without_zone():
    assert format_timestamp(datetime(2024, 1, 2, 4, 4, 5, 999000, tzinfo=UTC).astimezone()) == "2024-01-02T04:04:05"
    assert parse_timestamp("2024-01-02T03:04:05") == AT_2024


@pytest.mark.parametrize("text", ["2024-01-02T03:04:05Z", "2024-01-02T03:04:05.123", "2024-01-02 03:04:05", "123"])
def test_timestamps_in_other_formats_are_refused(text):
    with pytest.raises(ValueError):
        parse_timestamp(text)
