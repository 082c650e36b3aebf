"""The sandbox's pure rules, without a server: signed hosts, caller IPs, IP binding, rate windows."""

from pathlib import Path

import pytest

from deploy.sandbox.common.network import effective_client_ip, ip_is_bound
from deploy.sandbox.common.state import EndpointRateLimit
from deploy.sandbox.htx.auth import signed_host_candidates
from deploy.sandbox.htx.scenario import HtxSandboxState, Scenario
from deploy.sandbox.htx.server import DEMO_SCENARIO


@pytest.mark.parametrize(
    ("host_header", "candidates"),
    [
        ("api.huobi.pro", {"api.huobi.pro"}),
        ("API.Huobi.PRO:443", {"api.huobi.pro:443", "api.huobi.pro"}),
        ("127.0.0.1:8930", {"127.0.0.1:8930", "127.0.0.1"}),
        ("[::1]:8930", {"[::1]:8930", "[::1]", "::1"}),
        ("host:notaport", {"host:notaport"}),
    ],
)
def test_a_client_may_have_signed_the_host_with_or_without_its_port(host_header, candidates):
    assert signed_host_candidates(host_header) == candidates


@pytest.mark.parametrize(
    ("peer", "seen_as"),
    [("127.0.0.1", "203.0.113.10"), ("127.5.5.5", "203.0.113.10"), ("::1", "203.0.113.10"),
     ("198.51.100.7", "198.51.100.7"), ("testclient", "testclient")],
)
def test_loopback_callers_stand_for_the_egress_ip(peer, seen_as):
    assert effective_client_ip(peer, "203.0.113.10") == seen_as


@pytest.mark.parametrize(
    ("ip", "bound", "allowed"),
    [
        ("203.0.113.10", ["203.0.113.10"], True),
        ("203.0.113.10", ["203.0.113.0/24"], True),
        ("203.0.113.10", ["203.0.113.11", "garbage"], False),
        ("2001:db8::1", ["2001:DB8::/64"], True),
        ("2001:db8::1", ["203.0.113.0/24"], False),
    ],
)
def test_a_bound_host_or_network_lets_the_caller_in(ip, bound, allowed):
    assert ip_is_bound(ip, bound) is allowed


def test_rate_windows_are_fixed_per_uid_and_endpoint():
    state = HtxSandboxState(Scenario.load(Path(DEMO_SCENARIO)))
    state.rate_limits["/x"] = EndpointRateLimit(requests=2, window_ms=1000)
    slots = [state.take_rate_slot(1, "/x", now) for now in (0, 10, 20)]
    assert [(s.allowed, s.remaining, s.expires_at_ms) for s in slots] == [
        (True, 1, 1000), (True, 0, 1000), (False, 0, 1000)]
    assert state.take_rate_slot(2, "/x", 30).allowed
    assert state.take_rate_slot(1, "/y", 30).remaining == 9
    next_window = state.take_rate_slot(1, "/x", 1000)
    assert (next_window.remaining, next_window.expires_at_ms) == (1, 2000)


def test_the_demo_scenario_covers_every_verdict_and_symbol_state():
    scenario = Scenario.load(Path(DEMO_SCENARIO))
    assert scenario.egress_ip == "203.0.113.10"
    notes = {key.note for user in scenario.users for key in user.api_keys}
    assert {"good", "withdraw", "read-only", "no-ip-binding", "foreign-cidr", "missing-one-ip", "expired",
            "locked-account", "sub-user"} <= notes
    assert {s.state for s in scenario.symbols} == {
        "unknown", "not-online", "pre-online", "online", "suspend", "offline", "transfer-board", "fuse"}
