"""The routing table: the one answer to "what flows where".

For every topic: the event model it carries, who may produce it (the app counts as a producer), who consumes
it, which field keys its records, how long it is kept, and whether a user waits on it for `active`. Everything
reads this table: a handler's outgoing event takes its topic and key from it (`route_of`), a subscription
its model, the bootstrap its topics, the published contract (shared/contracts/asyncapi.py) its channels and
messages, and tests/contracts/test_routing.py checks that every topic has a producer and a consumer and that
no service emits what it may not produce.

Adding a topic or an event is one entry in ROUTES (and, for a new topic, one member of Topic).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from shared.contracts.events import (
    AuditEvent,
    BindingAccepted,
    BindingRechecked,
    BindingRequested,
    BindingStatus,
    BindingStored,
    BindingValidated,
    Event,
    RecheckRequested,
    RevokeRequested,
    SweepRequested,
    WhitelistRequested,
)


class Topic(StrEnum):
    BINDING_REQUESTED = "binding.requested"
    BINDING_ACCEPTED = "binding.accepted"
    BINDING_VALIDATED = "binding.validated"
    BINDING_STORED = "binding.stored"
    WHITELIST_REQUESTED = "whitelist.requested"
    BINDING_REVOKE_REQUESTED = "binding.revoke-requested"
    BINDING_STATUS = "binding.status"
    HEALTH_SWEEP_REQUESTED = "health.sweep-requested"
    BINDING_RECHECK_REQUESTED = "binding.recheck-requested"
    BINDING_RECHECKED = "binding.rechecked"
    AUDIT = "audit"
    DEAD_LETTER = "dead-letter"

    def full_name(self, prefix: str) -> str:
        return f"{prefix}{self.value}"


class Party(StrEnum):
    """Who produces or consumes a topic: the four services, and the programs outside them."""

    APP = "app"  # the Hash7 app (shared/clients/binding_client.py, and `hash7` acting for it)
    INTAKE = "intake"
    VALIDATOR = "validator"
    VAULT_WRITER = "vault-writer"
    WHITELIST = "whitelist"
    TRADING_ENGINE = "trading-engine"  # shared/clients/trading: its order decisions, audited
    # People and tools reading audit events and dead letters (`hash7 audit`, `hash7 dead-letters`), and
    # `hash7-admin` auditing what it does (deploy/admin/dead_letters.py).
    OPS = "ops"


SERVICES = (Party.INTAKE, Party.VALIDATOR, Party.VAULT_WRITER, Party.WHITELIST)


class Retention(StrEnum):
    """How long a topic's records must be kept. Published in the contract (`x-retention`); the bootstrap sets each
    topic's broker retention from it (RETENTION_MS in deploy/bootstrap/kafka_topics.py)."""

    REQUEST = "request"  # work in flight: kept long enough to survive an outage of a consumer (days)
    HISTORY = "history"  # what users and ops read back: statuses and audit events (long, or compacted elsewhere)
    DEAD_LETTER = "dead-letter"  # kept until ops replayed or dropped them (long)


@dataclass(frozen=True)
class Route:
    topic: Topic
    # None for dead letters: they carry another topic's bytes as they were, with x-dlq-* headers.
    model: type[Event] | None
    producers: frozenset[Party]
    consumers: frozenset[Party]
    # The event field whose value keys the record: one user's records stay in order on one partition.
    key_field: str
    retention: Retention
    # A user waits on this topic for `active`: polled as often as possible.
    binding_path: bool
    partitions: int
    summary: str
    # Consumers that read the whole topic into a view of their own (every instance, no consumer group, nothing
    # committed: shared.runtime.subscriptions.follow); the others share it in one consumer group each.
    views: frozenset[Party] = frozenset()

    @property
    def grouped_consumers(self) -> frozenset[Party]:
        return self.consumers - self.views

    @property
    def event_model(self) -> type[Event]:
        if self.model is None:
            raise RouteViolation(f"{self.topic} carries raw records, not events")
        return self.model

    def key_of(self, event: Event) -> str:
        # Audit events about no user (a sweep started) have none; they still need a key.
        return getattr(event, self.key_field, None) or "-"


# Partitions bound how many keys a consumer group works on in parallel (order holds per partition only); the
# dead-letter topic only holds the rare poison message; a sweep's requests are one message per page, in order.
_PIPELINE = 6


def _route(topic: Topic, model: type[Event] | None, producers: set[Party], consumers: set[Party], *,
           retention: Retention = Retention.REQUEST, key_field: str = "user_id", binding_path: bool = False,
           partitions: int = _PIPELINE, views: frozenset[Party] = frozenset(), summary: str) -> Route:
    return Route(topic, model, frozenset(producers), frozenset(consumers), key_field, retention, binding_path,
                 partitions, summary, views)


P = Party
ROUTES: Mapping[Topic, Route] = {route.topic: route for route in (
    _route(Topic.BINDING_REQUESTED, BindingRequested, {P.APP}, {P.INTAKE}, binding_path=True,
           summary="The app asks to bind an exchange key; the secret sealed with Vault Transit."),
    _route(Topic.BINDING_ACCEPTED, BindingAccepted, {P.INTAKE}, {P.VALIDATOR}, binding_path=True,
           summary="intake passed the request's shape, sealing and rate checks and gave it a binding id."),
    _route(Topic.BINDING_VALIDATED, BindingValidated, {P.VALIDATOR}, {P.VAULT_WRITER}, binding_path=True,
           summary="The exchange confirmed the key: permissions, IP binding, expiry and account are right."),
    _route(Topic.BINDING_STORED, BindingStored, {P.VAULT_WRITER}, {P.WHITELIST}, binding_path=True,
           summary="The credentials are in Vault KV; the whitelist service decides the binding's state."),
    _route(Topic.WHITELIST_REQUESTED, WhitelistRequested, {P.APP}, {P.WHITELIST},
           summary="The app sets the full set of pairs the bot may trade with one binding."),
    _route(Topic.BINDING_REVOKE_REQUESTED, RevokeRequested, {P.APP}, {P.VAULT_WRITER},
           summary="The app revokes a binding: its credentials and whitelist are deleted from Vault."),
    _route(Topic.HEALTH_SWEEP_REQUESTED, SweepRequested, {P.APP, P.VAULT_WRITER}, {P.VAULT_WRITER},
           key_field="sweep_id", partitions=1,
           summary="Re-check every stored binding now (the vault-writer's timer, or ops through `hash7 sweep`); "
                   "the vault-writer asks for each next page of a sweep here too."),
    _route(Topic.BINDING_RECHECK_REQUESTED, RecheckRequested, {P.VAULT_WRITER}, {P.VALIDATOR},
           summary="One stored binding to prove against its exchange again, during a sweep."),
    _route(Topic.BINDING_RECHECKED, BindingRechecked, {P.VALIDATOR}, {P.WHITELIST},
           summary="What the bind-time verdict says about a stored key today."),
    _route(Topic.BINDING_STATUS, BindingStatus, {P.INTAKE, P.VALIDATOR, P.VAULT_WRITER, P.WHITELIST},
           {P.APP, P.INTAKE}, retention=Retention.HISTORY, views=frozenset({P.INTAKE}),
           summary="Every state change of a binding, with reasons the user can act on. intake reads it back "
                   "to answer replayed requests."),
    _route(Topic.AUDIT, AuditEvent,
           {P.INTAKE, P.VALIDATOR, P.VAULT_WRITER, P.WHITELIST, P.TRADING_ENGINE, P.OPS},
           {P.OPS}, retention=Retention.HISTORY,
           summary="Every decision, for ops: ids, masked access key and reason codes, never a secret."),
    _route(Topic.DEAD_LETTER, None, {P.INTAKE, P.VALIDATOR, P.VAULT_WRITER, P.WHITELIST}, {P.OPS},
           retention=Retention.DEAD_LETTER, key_field="", partitions=3,
           summary="A record a service could not handle, as it arrived (secrets scrubbed), with x-dlq-* "
                   "headers saying where it came from and why."),
)}

# The topics a service reads: only they have dead letters, and only to them does ops replay one
# (deploy/admin/dead_letters.py), as its original producer's record, byte for byte.
DEAD_LETTER_SOURCES: tuple[Topic, ...] = tuple(topic for topic, route in ROUTES.items()
                                               if route.consumers & set(SERVICES))

_ROUTE_OF_MODEL: Mapping[type[Event], Route] = {route.model: route for route in ROUTES.values() if route.model}


class RouteViolation(RuntimeError):
    """A programming error: a party produced or consumed what the routing table does not allow it to."""


def route_of(event: Event, producer: Party) -> Route:
    """The route an event travels, checked against its producer."""
    route = _ROUTE_OF_MODEL.get(type(event))
    if route is None:
        raise RouteViolation(f"{type(event).__name__} has no topic in the routing table")
    if producer not in route.producers:
        raise RouteViolation(f"{producer} may not produce {route.topic} ({type(event).__name__})")
    return route


def subscribed_route(topic: Topic, consumer: Party, *, view: bool = False) -> Route:
    """The route a consumer reads, in a consumer group or (view) whole, checked against the table's consumers."""
    route = ROUTES[topic]
    if consumer not in (route.views if view else route.grouped_consumers):
        raise RouteViolation(f"{consumer} does not consume {topic}" + (" as a view" if view else " in a group"))
    return route
