"""The routing table (shared/contracts/routing.py) is complete, and the services keep to it: each subscribes to
exactly the topics the table says it consumes, with a handler that takes the event the topic carries, and may
not produce what the table does not let it."""

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
from shared.contracts.events import RevokeRequested
from shared.contracts.routing import ROUTES, SERVICES, Party, RouteViolation, Topic, route_of
from shared.runtime import subscriptions
from shared.runtime.config import IntakeSettings, ValidatorSettings, VaultWriterSettings, WhitelistSettings
from tests.builders import stored
from tests.fakes import InMemoryVault

# Each service's composition root, and the arguments its `build` takes here (no server is started).
_SERVICE_APPS: dict[Party, tuple[ModuleType, Callable[[], tuple[Any, ...]]]] = {
    Party.INTAKE: (services.intake.app, lambda: (IntakeSettings(),)),
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

    def recording_follow(broker: Any, settings: Any, topic: Topic, on_event: Any) -> None:
        readings.append(Reading(topic, None))
        subscriptions.follow(broker, settings, topic, on_event)

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
