"""Which callers stand for Hash7's egress IP (htx-sandbox --egress-map): in docker-compose.yml the services call the
sandbox from the compose network, not from loopback. The real server listens on every interface and is called at
this machine's own non-loopback address, with and without a route for it."""

import ipaddress
import socket

import pytest

from deploy.sandbox.common.network import effective_client_ip
from deploy.sandbox.common.state import EgressRoute
from shared.adapters.exchange.errors import ExchangeErrorKind
from tests.deploy.sandbox.test_http import EGRESS_IP, assert_auth_refusal, assert_ok, signed_get
from tests.fixtures.htx_sandbox import running_htx_sandbox

OTHER_EGRESS_IP = "203.0.113.11"


def _route(text: str) -> EgressRoute:
    return EgressRoute.parse(text)


@pytest.mark.parametrize(
    ("peer", "routes", "seen_as"),
    [
        # Loopback stands for the scenario's egress IP with or without routes.
        ("127.0.0.1", [], EGRESS_IP),
        ("::1", ["172.30.70.0/24"], EGRESS_IP),
        ("172.30.70.5", [], "172.30.70.5"),
        ("172.30.70.5", ["172.30.70.0/24"], EGRESS_IP),
        ("172.30.70.5", [f"172.30.70.0/24={OTHER_EGRESS_IP}"], OTHER_EGRESS_IP),
        # The first route holding the caller wins; a caller outside every route is itself.
        ("172.30.70.5", [f"172.30.70.4/30={OTHER_EGRESS_IP}", "172.30.0.0/16"], OTHER_EGRESS_IP),
        ("172.30.71.5", [f"172.30.70.4/30={OTHER_EGRESS_IP}", "172.30.0.0/16"], EGRESS_IP),
        ("198.51.100.7", ["172.30.70.0/24"], "198.51.100.7"),
        ("2001:db8::5", ["172.30.70.0/24", "2001:db8::/64"], EGRESS_IP),
    ],
)
def test_a_routes_network_stands_for_its_egress_ip(peer, routes, seen_as):
    assert effective_client_ip(peer, EGRESS_IP, [_route(route) for route in routes]) == seen_as


@pytest.mark.parametrize("text", ["", "not-a-network", "172.30.70.0/24=", "172.30.70.0/24=not-an-ip",
                                  "172.30.70.0/33", "=203.0.113.10"])
def test_a_malformed_route_is_refused_with_an_example(text):
    with pytest.raises(ValueError, match=r"is not CIDR or CIDR=IP \(e\.g\. 172\.30\.70\.0/24=203\.0\.113\.10\)"):
        EgressRoute.parse(text)


def _own_address() -> str:
    """This machine's address on its default route (a UDP connect sends nothing), or skip when there is none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            pytest.skip("no IPv4 route off this machine: nothing but loopback to call the sandbox from")
        address = str(probe.getsockname()[0])
    if ipaddress.ip_address(address).is_loopback:
        pytest.skip("this machine's only IPv4 address is loopback")
    return address


@pytest.mark.stack
def test_without_a_route_a_non_loopback_caller_is_itself_and_not_bound(tmp_path):
    own = _own_address()
    with running_htx_sandbox(tmp_path, listen_on="0.0.0.0", reached_at=own) as sandbox:
        assert_auth_refusal(signed_get(sandbox, "good", "/v2/user/uid"),
                            f"Signature not valid: Incorrect IP address [IP地址错误]:{own}",
                            ExchangeErrorKind.IP_NOT_BOUND)


@pytest.mark.stack
def test_a_route_for_the_callers_network_binds_the_demos_good_key(tmp_path):
    own = _own_address()
    with running_htx_sandbox(tmp_path, listen_on="0.0.0.0", reached_at=own,
                         options=["--egress-map", f"{own}/24"]) as sandbox:
        assert assert_ok(signed_get(sandbox, "good", "/v2/user/uid"))["data"] == sandbox.user("good")["uid"]
        assert_auth_refusal(signed_get(sandbox, "ip-not-bound", "/v2/user/uid"),
                            f"Signature not valid: Incorrect IP address [IP地址错误]:{EGRESS_IP}",
                            ExchangeErrorKind.IP_NOT_BOUND)
