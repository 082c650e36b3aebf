"""The pure key verdict, on HTX's answers as its adapter describes them: every rule alone, all rules together, and
property tests for the IP/CIDR logic."""

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.validator.verdict import KeyPolicy, check_ip_binding, verdict_for
from shared.adapters.exchange.port import KeyDescription, KeyEntry, KeyStatus, Permission
from shared.adapters.htx.exchange import key_description
from shared.adapters.htx.models import Account, ApiKeyInfo
from shared.contracts.reasons import ReasonCode as R
from tests.services.validator.reasons import codes

EGRESS = ("203.0.113.10", "203.0.113.11")
POLICY = KeyPolicy(egress_ips=EGRESS, expiry_warning_days=14)
SPOT = Account(id=1, type="spot", state="working")


def key(**fields) -> ApiKeyInfo:
    entry = {"accessKey": "ak", "permission": "readOnly,trade", "ipAddresses": ",".join(EGRESS), "validDays": -1,
             "status": "normal"} | fields
    return ApiKeyInfo.model_validate(entry)


def verdict_on(api_key: ApiKeyInfo | None = None, accounts=(SPOT,), policy=POLICY, *, sub_account=False):
    entry = None if sub_account else api_key or key()
    return verdict_for(key_description(1, entry, list(accounts), sub_account=sub_account), policy, "htx")


def test_a_good_key_is_accepted_without_warnings():
    verdict = verdict_on()
    assert verdict.accepted and verdict.rejections == [] and verdict.warnings == []


@pytest.mark.parametrize(
    ("permission", "expected"),
    [
        ("trade,readOnly", []),
        ("readOnly,trade,withdraw", [R.PERMISSION_WITHDRAW_FORBIDDEN]),
        ("readOnly", [R.PERMISSION_TRADE_MISSING]),
        ("trade", [R.PERMISSION_READ_MISSING]),
        ("withdraw", [R.PERMISSION_WITHDRAW_FORBIDDEN, R.PERMISSION_TRADE_MISSING, R.PERMISSION_READ_MISSING]),
        (" readOnly , trade ", []),
    ],
)
def test_permissions(permission, expected):
    assert codes(verdict_on(key(permission=permission)).rejections) == expected


def test_no_ip_binding_is_rejected_and_names_our_ips():
    verdict = verdict_on(key(ipAddresses=""))
    assert codes(verdict.rejections) == [R.IP_BINDING_MISSING]
    assert "203.0.113.10, 203.0.113.11" in verdict.rejections[0].hint


def test_a_binding_missing_one_egress_ip_is_incomplete():
    verdict = verdict_on(key(ipAddresses="203.0.113.10"))
    assert codes(verdict.rejections) == [R.IP_BINDING_INCOMPLETE]
    assert verdict.rejections[0].message.endswith("missing: 203.0.113.11.")


def test_a_network_that_contains_our_ips_is_foreign():
    verdict = verdict_on(key(ipAddresses="203.0.113.10,203.0.113.11,203.0.113.0/24"))
    assert codes(verdict.rejections) == [R.IP_BINDING_FOREIGN]
    assert "203.0.113.0/24" in verdict.rejections[0].message


def test_only_a_network_of_ours_is_both_incomplete_and_foreign():
    verdict = verdict_on(key(ipAddresses="203.0.113.0/24"))
    assert codes(verdict.rejections) == [R.IP_BINDING_INCOMPLETE, R.IP_BINDING_FOREIGN]


def test_host_networks_of_our_ips_count_as_our_ips():
    assert verdict_on(key(ipAddresses="203.0.113.10/32, 203.0.113.11")).accepted


def test_a_foreign_host_and_garbage_are_reported_as_written():
    verdict = verdict_on(key(ipAddresses="203.0.113.10,203.0.113.11,198.51.100.7,not-an-ip,198.51.100.7"))
    assert codes(verdict.rejections) == [R.IP_BINDING_FOREIGN]
    assert "198.51.100.7, not-an-ip." in verdict.rejections[0].message


def test_ipv6_egress_is_matched_in_any_spelling():
    policy = KeyPolicy(egress_ips=("2001:DB8::0A", "203.0.113.10"), expiry_warning_days=14)
    assert policy.egress_ips == ("2001:db8::a", "203.0.113.10")
    spelled = "2001:0db8:0000:0000:0000:0000:0000:000A/128,203.0.113.10"
    assert verdict_on(key(ipAddresses=spelled), policy=policy).accepted
    widened = verdict_on(key(ipAddresses="2001:db8::/64,203.0.113.10"), policy=policy)
    assert codes(widened.rejections) == [R.IP_BINDING_INCOMPLETE, R.IP_BINDING_FOREIGN]


def test_an_ipv4_mapped_ipv6_address_is_not_our_ipv4_address():
    verdict = verdict_on(key(ipAddresses="::ffff:203.0.113.10,203.0.113.11"))
    assert codes(verdict.rejections) == [R.IP_BINDING_INCOMPLETE, R.IP_BINDING_FOREIGN]


@pytest.mark.parametrize(
    ("status", "expected"),
    [("normal", []), ("expired", [R.KEY_EXPIRED]), ("frozen", [R.KEY_DISABLED])],
)
def test_key_status(status, expected):
    verdict = verdict_on(key(status=status))
    assert codes(verdict.rejections) == expected
    if status == "frozen":
        assert "(frozen)" in verdict.rejections[0].message


@pytest.mark.parametrize(
    ("valid_days", "warned"),
    [(-1, False), (0, True), (7, True), (14, True), (15, False), (90, False)],
)
def test_expiry_warning_at_or_under_the_threshold(valid_days, warned):
    verdict = verdict_on(key(validDays=valid_days))
    assert verdict.accepted
    assert codes(verdict.warnings) == ([R.KEY_EXPIRING] if warned else [])
    if warned:
        assert f"in {valid_days} day(s)" in verdict.warnings[0].message


def test_an_expired_key_is_not_also_warned_about():
    assert codes(verdict_on(key(status="expired", validDays=0)).warnings) == []


def test_a_locked_spot_account_is_rejected_other_accounts_do_not_matter():
    assert codes(verdict_on(accounts=[Account(id=1, type="spot", state="lock")]).rejections) == [R.ACCOUNT_LOCKED]
    assert verdict_on(accounts=[SPOT, Account(id=2, type="margin", subtype="btcusdt", state="lock")]).accepted


def test_a_sub_account_key_is_rejected_even_undescribed():
    verdict = verdict_on(sub_account=True)
    assert codes(verdict.rejections) == [R.SUB_ACCOUNT_KEY]
    assert "sub-account" in verdict.rejections[0].message


def test_a_main_account_key_must_come_with_its_entry():
    with pytest.raises(ValueError):
        key_description(1, None, [SPOT], sub_account=False)


def test_every_failing_check_is_reported():
    bad = key(permission="withdraw,readOnly", ipAddresses="10.0.0.0/8,203.0.113.10", validDays=3, status="normal")
    verdict = verdict_on(bad, accounts=[Account(id=1, type="spot", state="lock")])
    assert codes(verdict.rejections) == [R.PERMISSION_WITHDRAW_FORBIDDEN, R.PERMISSION_TRADE_MISSING,
                                       R.IP_BINDING_INCOMPLETE, R.IP_BINDING_FOREIGN, R.ACCOUNT_LOCKED]
    assert codes(verdict.warnings) == [R.KEY_EXPIRING]


@pytest.mark.parametrize("egress", [(), ("203.0.113.0/24",), ("not-an-ip",)])
def test_a_policy_needs_host_egress_ips(egress):
    with pytest.raises(ValueError):
        KeyPolicy(egress_ips=egress, expiry_warning_days=14)


# ---- properties of the IP/CIDR logic ---------------------------------------------------------------------

addresses = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6))
egress_sets = st.lists(addresses, min_size=1, max_size=4, unique=True)


def spellings(address):
    """Ways an HTX user might write exactly this host."""
    host_prefix = address.max_prefixlen
    forms = [str(address), f"{address}/{host_prefix}", f" {address} "]
    if address.version == 6:
        forms += [address.exploded, address.exploded.upper()]
    return st.sampled_from(forms)


@given(st.data(), egress_sets)
def test_exactly_our_hosts_in_any_order_and_spelling_pass(data, egress):
    bound = [data.draw(spellings(ip)) for ip in data.draw(st.permutations(egress))]
    check = check_ip_binding(bound, egress)
    assert check.missing == [] and check.foreign == []


@given(st.data(), egress_sets)
def test_each_unbound_egress_ip_is_missing(data, egress):
    kept = data.draw(st.lists(st.sampled_from(egress), unique=True))
    check = check_ip_binding([str(ip) for ip in kept], egress)
    assert check.missing == [str(ip) for ip in egress if ip not in kept]
    assert check.foreign == []


@given(st.data(), egress_sets)
def test_any_wider_network_around_our_ip_is_foreign(data, egress):
    inside = data.draw(st.sampled_from(egress))
    prefix = data.draw(st.integers(min_value=0, max_value=inside.max_prefixlen - 1))
    network = ipaddress.ip_network(f"{inside}/{prefix}", strict=False)
    check = check_ip_binding([str(network)] + [str(ip) for ip in egress if ip != inside], egress)
    assert check.foreign == [str(network)]
    assert check.missing == [str(inside)]


@given(egress_sets, addresses)
def test_any_other_host_is_foreign(egress, other):
    bound = [str(ip) for ip in egress] + [str(other)]
    check = check_ip_binding(bound, egress)
    assert check.foreign == ([] if other in egress else [str(other)])
    assert check.missing == []


def _not_an_ip(text: str) -> bool:
    try:
        ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return True
    return False


@given(egress_sets, st.lists(st.one_of(addresses.map(str), st.text(max_size=12).filter(_not_an_ip)), max_size=6))
def test_our_hosts_are_never_foreign_and_everything_else_is(egress, bound):
    check = check_ip_binding(bound, egress)
    ours = {str(ip) for ip in egress}
    assert set(check.foreign) == {e.strip() for e in bound if e.strip() and e.strip() not in ours}


# ---- what an exchange lists reaches the user bounded and printable ----------------------------------------


def test_a_locked_spot_account_is_told_in_our_words_not_htx_state():
    hostile = "lock\x1b[2J\x1b[31m call +1-555-0100 " + "x" * 10_000
    [locked] = verdict_on(accounts=[Account(id=1, type="spot", state=hostile)]).rejections
    assert locked.code == R.ACCOUNT_LOCKED and "(spot account locked)" in locked.message
    assert "555" not in locked.message + locked.hint and "\x1b" not in locked.message


def described(bound_ips, status_text="normal", status=KeyStatus.NORMAL) -> KeyDescription:
    entry = KeyEntry(permissions=frozenset({Permission.READ, Permission.TRADE}), listed_permissions=("trade",),
                     bound_ips=tuple(bound_ips), valid_days=None, status=status, status_text=status_text)
    return KeyDescription(owner_uid="1", sub_account=False, key=entry, trading_account_id=None,
                          needs_trading_account=False, account_problem=None)


@pytest.mark.parametrize(
    "hostile",
    ["198.51.100.7\x1b[31mRED\x1b[0m", "198.51.100.7\r\nInjected: yes", "198.51.100.7\x00\x07\u202egnp.exe",
     "A" * 10_240, "🔑" * 5_000],
)
def test_a_hostile_foreign_entry_is_shown_printable_and_cut(hostile):
    [foreign] = verdict_for(described([*EGRESS, hostile]), POLICY, "bybit").rejections
    assert foreign.code == R.IP_BINDING_FOREIGN
    for text in (foreign.message, foreign.hint):
        assert text.isprintable()
        assert hostile not in text
        assert len(text) < 1_000
        assert not any(c in text for c in "\x1b\r\n\x00\x07\u202e")


def test_a_thousand_foreign_entries_show_twenty_and_count_the_rest():
    entries = [f"198.51.{i // 256}.{i % 256}" for i in range(1_000)]
    [foreign] = verdict_for(described([*EGRESS, *entries]), POLICY, "okx").rejections
    assert "198.51.0.19, and 980 more." in foreign.message
    assert "198.51.0.20," not in foreign.message and len(foreign.message) < 1_000


def test_long_repeated_entries_are_counted_once():
    [foreign] = verdict_for(described([*EGRESS, *(["203.0.113.0/24"] * 1_000)]), POLICY, "okx").rejections
    assert "Hash7's: 203.0.113.0/24." in foreign.message


def test_a_hostile_key_status_is_shown_printable_and_cut():
    hostile = "frozen\x1b[2J" + "z" * 10_000
    [refused] = verdict_for(described(EGRESS, hostile, KeyStatus.DISABLED), POLICY, "htx").rejections
    assert refused.message.isprintable() and "frozen?[2Jzz" in refused.message and len(refused.message) < 400
