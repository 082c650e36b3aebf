"""The routing table (shared/contracts/routing.py) is complete, and the services keep to it: each subscribes to
exactly the topics the table says it consumes, with a handler that takes the event the topic carries, and may
not produce what the table does not let it."""

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from types import ModuleType
from typing import Any

import pytest

import services.intake.app
import services.validator.app
import services.vault_writer.app
import services.whitelist.app
from services.intake.handlers import IntakeDeps, handle_binding_requested
from services.intake.handlers import on_malformed as intake_malformed
from services.intake.rules import AttemptLimiter, RequestHistory
from services.validator.handlers import ValidatorDeps, handle_binding_accepted, handle_recheck_requested
from services.validator.handlers import on_malformed as validator_malformed
from services.validator.inspection import KeyInspection
from services.validator.verdict import KeyVerdict
from services.vault_writer.handlers import (
    VaultWriterDeps,
    handle_binding_validated,
    handle_revoke_requested,
    handle_sweep_requested,
)
from services.vault_writer.handlers import on_malformed as writer_malformed
from services.whitelist.catalog import SymbolCatalog, SymbolStatus
from services.whitelist.handlers import (
    WhitelistDeps,
    handle_binding_rechecked,
    handle_binding_stored,
    handle_whitelist_requested,
)
from services.whitelist.handlers import on_malformed as whitelist_malformed
from shared.adapters.exchange.port import ExchangeCredentials
from shared.contracts.events import (
    BindingRequested,
    Event,
    HtxKeyFacts,
    MalformedEvent,
    RevokeRequested,
    SweepRequested,
    WhitelistRequested,
)
from shared.contracts.routing import ROUTES, SERVICES, Party, RouteViolation, Topic, route_of
from shared.runtime import subscriptions
from shared.runtime.config import IntakeSettings, ValidatorSettings, VaultWriterSettings, WhitelistSettings
from tests.builders import SECRET, stored
from tests.fakes import AT, InMemoryVault, fake_seal

P = Party

# Each service's composition root, and the arguments its `build` takes here (no server is started).
_SERVICE_APPS: dict[Party, tuple[ModuleType, Callable[[], tuple[Any, ...]]]] = {
    Party.INTAKE: (services.intake.app, lambda: (IntakeSettings(), None, InMemoryVault())),
    Party.VALIDATOR: (services.validator.app, lambda: (ValidatorSettings(), InMemoryVault())),
    Party.VAULT_WRITER: (services.vault_writer.app, lambda: (VaultWriterSettings(), InMemoryVault())),
    Party.WHITELIST: (services.whitelist.app, lambda: (WhitelistSettings(), InMemoryVault())),
}


@dataclass(frozen=True)
class Reading:
    topic: Topic
    handle: Callable[..., Any] | None  # None for a view (`follow`), which takes any event of its topic


def readings_of(service: Party, monkeypatch: pytest.MonkeyPatch) -> list[Reading]:
    """What the service's composition root subscribes to, through the real subscribe/follow (which check the
    consumer against the table too)."""
    readings: list[Reading] = []
    real_subscribe = subscriptions.subscribe

    def recording_subscribe(broker: Any, settings: Any, topic: Topic, handle: Any, *rest: Any) -> Any:
        readings.append(Reading(topic, handle))
        return real_subscribe(broker, settings, topic, handle, *rest)

    def recording_follow(broker: Any, settings: Any, topic: Topic, on_event: Any, *rest: Any) -> None:
        readings.append(Reading(topic, None))
        subscriptions.follow(broker, settings, topic, on_event, *rest)

    app, arguments = _SERVICE_APPS[service]
    monkeypatch.setattr(subscriptions, "subscribe", recording_subscribe)
    if hasattr(app, "follow"):
        monkeypatch.setattr(app, "follow", recording_follow)
    app.build(*arguments())
    return readings


def event_parameter_type(handle: Callable[..., Any]) -> Any:
    function = handle.func if isinstance(handle, partial) else handle
    return next(iter(inspect.signature(function, eval_str=True).parameters.values())).annotation


def test_every_topic_has_its_route():
    assert set(ROUTES) == set(Topic)
    assert all(route.topic is topic for topic, route in ROUTES.items())


@pytest.mark.parametrize("topic", list(Topic))
def test_every_topic_has_a_producer_and_a_consumer(topic):
    assert ROUTES[topic].producers and ROUTES[topic].consumers


@pytest.mark.parametrize("topic", [topic for topic in Topic if ROUTES[topic].model is not None])
def test_every_event_is_keyed_by_one_of_its_fields(topic):
    route = ROUTES[topic]
    assert route.key_field in route.event_model.model_fields


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_reads_exactly_the_topics_the_table_says_it_consumes(service, monkeypatch):
    read = {reading.topic for reading in readings_of(service, monkeypatch)}
    assert read == {topic for topic, route in ROUTES.items() if service in route.consumers}


@pytest.mark.parametrize("service", SERVICES)
def test_each_handler_takes_the_event_its_topic_carries(service, monkeypatch):
    for reading in readings_of(service, monkeypatch):
        if reading.handle is not None:
            assert event_parameter_type(reading.handle) is ROUTES[reading.topic].event_model, reading.topic


def test_a_service_may_not_produce_another_stages_event():
    with pytest.raises(RouteViolation, match="intake may not produce binding.stored"):
        route_of(stored(), Party.INTAKE)


def test_a_service_may_not_produce_the_apps_requests():
    with pytest.raises(RouteViolation):
        route_of(RevokeRequested(request_id="r1", user_id="u1", binding_id="b1"), Party.VAULT_WRITER)


async def test_every_handler_emits_only_what_its_service_may_produce():
    """One binding's whole life through the real handlers (with in-memory Vault and HTX), plus a refusal and a
    malformed input at each service: every event each service emits is one the table lets it produce."""
    vault, emitted = InMemoryVault(), []

    def produced_by(service: Party, events: list[Event]) -> list[Event]:
        emitted.extend((service, event) for event in events)
        return events

    async def good_key(credentials: ExchangeCredentials) -> KeyInspection:
        return KeyInspection(KeyVerdict(), HtxKeyFacts(uid=1, spot_account_id=10, permissions=["readOnly", "trade"],
                                                       ip_addresses=["203.0.113.10"], valid_days=-1,
                                                       key_status="normal"))

    async def no_wait() -> None:
        return None

    intake = IntakeDeps(RequestHistory(clock=lambda: AT), AttemptLimiter(10))
    validator = ValidatorDeps(vault, good_key, 2.0, no_wait, asyncio.Semaphore(1))
    writer = VaultWriterDeps(vault)
    catalog = SymbolCatalog()
    catalog.replace([SymbolStatus("btcusdt", "online", api_trading=True)])
    whitelist = WhitelistDeps(vault, catalog)
    request = BindingRequested(request_id="r1", user_id="u1", exchange="htx", access_key="ak-000000000001",
                               secret_key_sealed=fake_seal(SECRET, "u1"), trading_pairs=["btcusdt"],
                               requested_at=AT)

    [accepted, *_] = produced_by(P.INTAKE, await handle_binding_requested(request, intake, at=AT))
    produced_by(P.INTAKE, await handle_binding_requested(request.model_copy(update={"exchange": "nope",
                                                                                    "request_id": "r2"}),
                                                         intake, at=AT))
    [validated_, *_] = produced_by(P.VALIDATOR, await handle_binding_accepted(accepted, validator, at=AT))
    [stored_, *_] = produced_by(P.VAULT_WRITER, await handle_binding_validated(validated_, writer, at=AT))
    produced_by(P.WHITELIST, await handle_binding_stored(stored_, whitelist, at=AT))
    produced_by(P.WHITELIST, await handle_whitelist_requested(
        WhitelistRequested(request_id="w1", user_id="u1", binding_id=stored_.binding_id, trading_pairs=["nope"]),
        whitelist, at=AT))
    sweep = SweepRequested(request_id="s1", sweep_id="s1", requested_at=AT)
    [recheck, *_] = produced_by(P.VAULT_WRITER, await handle_sweep_requested(sweep, writer, at=AT))
    [rechecked, *_] = produced_by(P.VALIDATOR, await handle_recheck_requested(recheck, validator, at=AT))
    produced_by(P.WHITELIST, await handle_binding_rechecked(rechecked, whitelist, at=AT))
    produced_by(P.VAULT_WRITER, await handle_revoke_requested(
        RevokeRequested(request_id="v1", user_id="u1", binding_id=stored_.binding_id), writer, at=AT))
    assert vault.hmac_keys == {}  # its whole life leaves no Transit key behind: no key check's, not the binding's
    malformed = MalformedEvent("user_id: field required", user_id="u1", request_id="r9")
    for service, on_malformed in ((P.INTAKE, intake_malformed), (P.VALIDATOR, validator_malformed),
                                  (P.VAULT_WRITER, writer_malformed), (P.WHITELIST, whitelist_malformed)):
        produced_by(service, list(on_malformed(malformed, at=AT)))

    topics = {route_of(event, service).topic for service, event in emitted}  # raises on a violation
    assert topics >= {Topic.BINDING_ACCEPTED, Topic.BINDING_VALIDATED, Topic.BINDING_STORED,
                      Topic.BINDING_RECHECK_REQUESTED, Topic.BINDING_RECHECKED, Topic.BINDING_STATUS, Topic.AUDIT}
