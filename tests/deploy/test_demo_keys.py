"""`make run`'s demo binds every key of each sandbox's demo scenario as its user hands it over: a mistyped secret or
passphrase where the scenario says so, OKX's passphrase always, none elsewhere."""

import json

import pytest

from deploy.stack.sandbox import SANDBOXES
from shared.contracts.exchanges import ExchangeName


@pytest.mark.parametrize("exchange", list(ExchangeName))
def test_every_demo_key_is_handed_over_once_with_a_passphrase_only_where_the_exchange_needs_one(exchange):
    program = SANDBOXES[exchange]
    scenario = json.loads(program.demo_scenario.read_text())
    keys = program.demo_keys(program.demo_scenario)
    assert len(keys) == sum(len(user["api_keys"]) for user in scenario["users"]) > 0
    assert len({key.access_key for key in keys}) == len(keys) and len({key.name for key in keys}) == len(keys)
    assert all((key.passphrase is not None) == exchange.needs_passphrase for key in keys)
    assert all(key.secret_key.get_secret_value() not in repr(key) for key in keys)


def test_a_mistyped_secret_or_passphrase_is_what_the_demo_hands_over():
    handed = {(exchange, key.name): key for exchange, program in SANDBOXES.items()
              for key in program.demo_keys(program.demo_scenario)}
    for exchange, field, handed_field in [(ExchangeName.BYBIT, "secret", "offered_secret"),
                                          (ExchangeName.OKX, "secret_key", "handed_secret_key"),
                                          (ExchangeName.OKX, "passphrase", "handed_passphrase")]:
        scenario = json.loads(SANDBOXES[exchange].demo_scenario.read_text())
        mistyped = [key for user in scenario["users"] for key in user["api_keys"] if key.get(handed_field)]
        assert mistyped, (exchange, handed_field)
        for key in mistyped:
            given = handed[(exchange, key.get("note") or key.get("label"))]
            value = given.secret_key if field != "passphrase" else given.passphrase
            assert value is not None and value.get_secret_value() == key[handed_field] != key[field]
