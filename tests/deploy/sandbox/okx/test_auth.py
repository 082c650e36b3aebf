"""The OKX gateway check as a pure function (deploy/sandbox/okx/auth.py): which caller IP it binds against, with and
without --egress-map routes (the HTX sandbox's EgressRoute, reused), and the server's command line."""

from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from deploy.sandbox.common.envelopes import Refusal
from deploy.sandbox.common.state import EgressRoute
from deploy.sandbox.okx.auth import ReceivedRequest, authenticate
from deploy.sandbox.okx.scenario import OkxSandboxState, OkxScenario
from deploy.sandbox.okx.server import DEFAULT_PORT, DEMO_SCENARIO, SANDBOX
from shared.adapters.okx.signing import compute_signature, format_timestamp, pre_sign_text

CONFIG = "/api/v5/account/config"


def state(*routes: str) -> OkxSandboxState:
    return OkxSandboxState(OkxScenario.load(DEMO_SCENARIO), egress_routes=tuple(EgressRoute.parse(r) for r in routes))


def request_from(okx: OkxSandboxState, label: str, client_ip: str) -> ReceivedRequest:
    key = next(k for user in okx.users.values() for k in user.api_keys if k.label == label)
    stamp = format_timestamp(datetime.now(UTC))
    headers = {"OK-ACCESS-KEY": key.api_key, "OK-ACCESS-PASSPHRASE": key.passphrase.get_secret_value(),
               "OK-ACCESS-TIMESTAMP": stamp,
               "OK-ACCESS-SIGN": compute_signature(key.secret_key, pre_sign_text(stamp, "GET", CONFIG))}
    return ReceivedRequest("GET", CONFIG, "", headers, b"", client_ip)


def refusal_body(okx: OkxSandboxState, label: str, client_ip: str) -> object:
    with pytest.raises(Refusal) as caught:
        authenticate(request_from(okx, label, client_ip), okx, datetime.now(UTC))
    return caught.value.body


def test_loopback_stands_for_the_egress_ip():
    okx = state()
    user, key = authenticate(request_from(okx, "good", "127.0.0.1"), okx, datetime.now(UTC))
    assert key.label == "good"


def test_another_caller_is_bound_as_itself():
    assert refusal_body(state(), "good", "172.30.70.5") == {
        "msg": "Your IP 172.30.70.5 is not included in your API key's IP whitelist.", "code": "50110"}


def test_a_mapped_network_stands_for_the_egress_ip_or_its_own():
    okx = state("172.30.70.0/24")
    assert authenticate(request_from(okx, "good", "172.30.70.5"), okx, datetime.now(UTC))
    mapped = state("172.30.70.0/24=203.0.113.11")
    assert refusal_body(mapped, "ip-incomplete", "172.30.70.5") == {
        "msg": "Your IP 203.0.113.11 is not included in your API key's IP whitelist.", "code": "50110"}


def test_a_cidr_binding_admits_callers_inside_it():
    okx = state()
    assert authenticate(request_from(okx, "ip-range", "127.0.0.1"), okx, datetime.now(UTC))


def test_the_key_models_keep_secrets_out_of_their_repr():
    okx = state()
    key = next(k for user in okx.users.values() for k in user.api_keys if k.label == "good")
    assert key.passphrase.get_secret_value() not in repr(key)
    assert key.secret_key.get_secret_value() not in repr(key)
    assert isinstance(key.passphrase, SecretStr)


def test_the_command_line_matches_the_htx_sandbox():
    args = SANDBOX.parse_arguments(["--seed", "3", "--egress-map", "10.0.0.0/8=203.0.113.11"])
    assert (args.port, args.scenario, args.seed, args.host) == (DEFAULT_PORT, DEMO_SCENARIO, 3, "127.0.0.1")
    assert DEFAULT_PORT == 8932
    assert args.egress_routes == [EgressRoute.parse("10.0.0.0/8=203.0.113.11")]
    with pytest.raises(SystemExit):
        SANDBOX.parse_arguments(["--egress-map", "not-a-network"])
