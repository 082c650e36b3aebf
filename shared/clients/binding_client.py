"""The app side of the binding flow: wrap the secret key for Vault and seal it for its user, publish requests, and
read what the services answer on binding.status; plus readers of the audit and dead-letter topics for people
(shared.clients.cli).

The readers use no consumer group: each assigns itself every partition of its topic and never commits, so
any number of them can read a topic from the start without disturbing each other or the services' groups.
"""

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncGenerator, Callable, Mapping
from collections.abc import Set as AbstractSet
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Self, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import SecretStr

from shared.adapters.okx.signing import passphrase_is_sendable
from shared.adapters.vault.client import VaultClient
from shared.adapters.vault.key_import import NotImportable, wrap_for_import
from shared.adapters.vault.layout import BINDING_PASSPHRASE_KEY, BINDING_SECRET_KEY
from shared.contracts import dead_letters
from shared.contracts.events import (
    AuditEvent,
    BindingRequested,
    BindingStatus,
    Event,
    MalformedEvent,
    RevokeRequested,
    SweepRequested,
    WhitelistRequested,
    parse_event,
    utc_now,
)
from shared.contracts.exchanges import supported_exchange
from shared.contracts.routing import ROUTES, Party, Topic
from shared.contracts.states import BindingState, RequestKind
from shared.runtime.config import Settings
from shared.runtime.errors import ClientError, CredentialsMissing
from shared.runtime.kafka_security import kafka_connection
from shared.runtime.logging import redact
from shared.runtime.producer import BrokerUnavailable, KafkaPublisher, start_kafka_client
from shared.runtime.provenance import EventSigner, EventVerifier, Unauthentic
from shared.runtime.tracing import requesting

log = structlog.get_logger(__name__)
E = TypeVar("E", bound=Event)

# The AppRole of the Hash7 app (one of shared.adapters.vault.layout.CLIENT_ROLES): it may only read Vault's public
# wrapping key and seal binding secrets.
APP_ROLE = "app"
_CLIENT_ID = "hash7-binding-client"
# How long one fetch waits for new records; bounds how late a reader notices that it has caught up.
_POLL_TIMEOUT_MS = 500
BODY_PREVIEW_CHARS = 240

StatusPredicate = Callable[[BindingStatus], bool]


class TopicMissing(ClientError):
    """A topic the client needs does not exist on the broker."""


class InvalidRequest(ClientError):
    """The request's fields do not satisfy the contract; the message names the fields, never their values."""


class StatusTimeout(TimeoutError):
    """The awaited status did not arrive in time. `timeline` holds what did arrive for the request."""

    def __init__(self, request_id: str, awaited: str, timeout_s: float, timeline: list[BindingStatus]) -> None:
        seen = ", ".join(status.state for status in timeline) or "none"
        super().__init__(
            f"no {awaited} status for request {request_id} within {timeout_s:g}s (states seen: {seen})"
        )
        self.request_id = request_id
        self.timeline = timeline


@dataclass(frozen=True)
class DeadLetterRecord:
    """One dead letter as people see it: where the original came from and why it failed (the headers of
    shared/contracts/dead_letters.py), and the start of its body with anything secret removed. The raw body
    is never kept."""

    partition: int
    offset: int
    key: str
    original_topic: str | None
    original_partition: int | None
    original_offset: int | None
    error_class: str | None
    error_message: str | None
    service: str | None
    failed_at: datetime
    # The original body's size; the dead letter may hold only its start (truncated).
    original_size: int | None
    truncated: bool
    body_preview: str

    @classmethod
    def from_record(cls, record: ConsumerRecord) -> Self:
        headers = {name: value.decode(errors="replace") for name, value in record.headers or ()}
        return cls(
            partition=record.partition,
            offset=record.offset,
            key=(record.key or b"").decode(errors="replace"),
            original_topic=headers.get(dead_letters.ORIGINAL_TOPIC),
            original_partition=_int_or_none(headers.get(dead_letters.ORIGINAL_PARTITION)),
            original_offset=_int_or_none(headers.get(dead_letters.ORIGINAL_OFFSET)),
            error_class=headers.get(dead_letters.EXCEPTION_TYPE),
            error_message=redact(headers.get(dead_letters.EXCEPTION_MESSAGE)),
            service=headers.get(dead_letters.SERVICE),
            failed_at=_timestamp_or_none(headers.get(dead_letters.FAILED_AT))
            or datetime.fromtimestamp(record.timestamp / 1000, UTC),
            original_size=_int_or_none(headers.get(dead_letters.ORIGINAL_SIZE)),
            truncated=headers.get(dead_letters.TRUNCATED) == "true",
            body_preview=body_preview(record.value),
        )


def body_preview(body: bytes | None, limit: int = BODY_PREVIEW_CHARS) -> str:
    """The start of a message body, safe to show: a JSON body is redacted field by field (secret-named
    fields removed, access keys masked), anything else is scrubbed of secret-shaped text."""
    text = (body or b"").decode(errors="replace")
    try:
        cleaned = json.dumps(redact(json.loads(text)), ensure_ascii=False)
    except (ValueError, RecursionError):  # not JSON, or JSON no reader should walk (deep, huge numbers)
        cleaned = str(redact(text))
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


class BindingClient:
    """What the Hash7 app (and the `hash7` CLI) needs from the backend. Use it as an async context manager.

    Nothing connects until it is needed. Everything needs Vault and the app's AppRole credentials: requests
    are signed with the app's key, and every record read is verified against its producers' keys
    (shared/runtime/provenance.py). Records on the read topics that are not authentic are skipped and counted
    in `unauthentic_records`, those that are not valid events in `unparseable_records`; neither is raised.
    """

    def __init__(self, settings: Settings, vault: VaultClient | None = None, *, reader: Party = Party.APP) -> None:
        self._settings = settings
        self._vault = vault
        # Whose Kafka user reads topics (shared/runtime/kafka_security.py): the app's, or ops' for audit events and
        # dead letters, which the routing table has only ops consume. Requests are published as the app's.
        self._reader = reader
        # Vault's public key for wrapping secrets (PEM), read once.
        self._wrapping_key: str | None = None
        self._publisher: KafkaPublisher | None = None
        self._verifier: EventVerifier | None = None
        # Who sent each request this client submitted, and its kind: its statuses must be about that user and
        # answer that kind of request (request ids are the app's choice, so one may name requests of two kinds).
        self._requesters: dict[str, tuple[str, RequestKind]] = {}
        self.unparseable_records: Counter[Topic] = Counter()
        self.unauthentic_records: Counter[Topic] = Counter()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        if self._publisher is not None:
            await self._publisher.close()

    async def preflight(self, on_step: Callable[[str], None] = lambda step: None) -> None:
        """Log in to Vault and connect to Kafka now, so that a problem shows before anyone types a secret.
        on_step hears each step as it starts, naming its server, for progress displays."""
        on_step(f"Logging in to Vault at {self._settings.vault_addr}…")
        await self._ready_vault().check()
        on_step(f"Connecting to Kafka at {self._settings.kafka_bootstrap_servers}…")
        await self._ready_publisher().start()

    # ---- requests -----------------------------------------------------------------------------------------

    async def bind(self, user_id: str, access_key: str, secret_key: SecretStr, *, exchange: str = "htx",
                   label: str = "", trading_pairs: list[str] | None = None,
                   replaces_binding_id: str | None = None, request_id: str | None = None,
                   passphrase: SecretStr | None = None) -> str:
        """Wrap and seal secret_key for user_id, publish the binding request and return its request id. Only the
        Transit ciphertext leaves this process; it opens only with user_id as context, and holds the secret
        wrapped for Vault, which alone can unwrap it (README.md#the-secrets-path). passphrase: the one an OKX key
        was created with, sealed for user_id too (README.md#the-passphrases-path); none for other exchanges."""
        request_id = request_id or _new_request_id()
        # One span from sealing to publishing: Vault's share of a slow request shows in its trace.
        with requesting(RequestKind.BIND.value, request_id):
            request = await self.binding_request(
                user_id, access_key, secret_key, exchange=exchange, label=label, trading_pairs=trading_pairs,
                replaces_binding_id=replaces_binding_id, request_id=request_id, passphrase=passphrase,
            )
            await self._publish_request(request, user_id, RequestKind.BIND)
        return request_id

    async def binding_request(self, user_id: str, access_key: str, secret_key: SecretStr, *, exchange: str = "htx",
                              label: str = "", trading_pairs: list[str] | None = None,
                              replaces_binding_id: str | None = None,
                              request_id: str | None = None,
                              passphrase: SecretStr | None = None) -> BindingRequested:
        """The request `bind` publishes, sealed but not yet sent: load drivers seal ahead of time and submit
        at their own pace."""
        _check_passphrase(exchange, passphrase)
        vault = self._ready_vault()
        if self._wrapping_key is None:
            self._wrapping_key = await vault.wrapping_key()
        try:
            wrapped = wrap_for_import(self._wrapping_key, secret_key)
        except NotImportable as exc:
            raise ClientError(f"that is not an exchange secret key: {exc}") from None
        sealed = await vault.seal(BINDING_SECRET_KEY, SecretStr(wrapped), context=user_id)
        # Sealed as it is, not wrapped: the exchange wants it in clear, so the validator and engines must open it.
        passphrase_sealed = (None if passphrase is None
                             else await vault.seal(BINDING_PASSPHRASE_KEY, passphrase, context=user_id))
        return _build(
            BindingRequested, request_id=request_id or _new_request_id(), user_id=user_id, exchange=exchange,
            label=label, access_key=access_key, secret_key_sealed=sealed, passphrase_sealed=passphrase_sealed,
            trading_pairs=trading_pairs, replaces_binding_id=replaces_binding_id, requested_at=utc_now().isoformat(),
        )

    async def submit(self, request: BindingRequested) -> None:
        """Publish a binding request made by `binding_request`."""
        await self._submit(request, request.user_id, RequestKind.BIND)

    async def set_whitelist(self, user_id: str, binding_id: str, pairs: list[str],
                            request_id: str | None = None) -> str:
        """Ask for pairs to become the binding's whole whitelist; returns the request id."""
        request_id = request_id or _new_request_id()
        request = _build(WhitelistRequested, request_id=request_id, user_id=user_id, binding_id=binding_id,
                         trading_pairs=pairs, requested_at=utc_now().isoformat())
        await self._submit(request, user_id, RequestKind.WHITELIST)
        return request_id

    async def revoke(self, user_id: str, binding_id: str, request_id: str | None = None) -> str:
        request_id = request_id or _new_request_id()
        request = _build(RevokeRequested, request_id=request_id, user_id=user_id, binding_id=binding_id)
        await self._submit(request, user_id, RequestKind.REVOKE)
        return request_id

    async def request_sweep(self, request_id: str | None = None) -> str:
        """Ask for a key-health sweep of every stored binding now; returns the request id. Changes show up
        as statuses (scope key_health) and audit events."""
        request_id = request_id or _new_request_id()
        request = _build(SweepRequested, request_id=request_id, sweep_id=f"manual-{request_id}",
                         requested_at=utc_now().isoformat())
        await self._ready_publisher().publish(request)
        return request_id

    async def _submit(self, request: Event, user_id: str, kind: RequestKind) -> None:
        # Every service's work on the request continues this span's trace (shared/runtime/tracing.py).
        with requesting(kind.value, getattr(request, "request_id")):
            await self._publish_request(request, user_id, kind)

    async def _publish_request(self, request: Event, user_id: str, kind: RequestKind) -> None:
        await self._ready_publisher().publish(request)
        self._requesters[getattr(request, "request_id")] = (user_id, kind)

    async def publish_raw(self, topic: Topic, key: str, value: bytes, headers: Mapping[str, str] | None = None, *,
                          signed: bool = True) -> None:
        """Publish bytes as they are, for tests and fuzzers that need to send what no model would produce:
        signed as the app (a careless app), or not at all (someone else on the broker)."""
        await self._ready_publisher().send(topic, key, value, headers or {}, signed=signed)

    # ---- statuses -----------------------------------------------------------------------------------------

    async def statuses(self, *, user_id: str | None = None, request_id: str | None = None,
                       binding_id: str | None = None, from_beginning: bool = True, follow: bool = False,
                       on_caught_up: Callable[[], None] | None = None) -> AsyncGenerator[BindingStatus, None]:
        """Statuses matching every filter given, in the order of the topic. Without follow the iteration
        ends at the end the topic had when reading started; on_caught_up is called once that end is reached
        (with follow, reading then goes on)."""
        async with aclosing(self._events(Topic.BINDING_STATUS, BindingStatus, from_beginning=from_beginning,
                                         follow=follow, on_caught_up=on_caught_up)) as statuses:
            async for status in statuses:
                if ((user_id is None or status.user_id == user_id)
                        and (request_id is None or status.request_id == request_id)
                        and (binding_id is None or status.binding_id == binding_id)):
                    yield status

    async def wait_for(self, request_id: str, states: AbstractSet[BindingState] | StatusPredicate,
                       timeout_s: float, on_status: Callable[[BindingStatus], None] | None = None, *,
                       user_id: str | None = None, kind: RequestKind | None = None) -> list[BindingStatus]:
        """The request's statuses up to and including the first one in states (or matching the predicate).
        Only statuses about the request's user and kind count: those given, else those this client submitted
        the request with (request ids are the app's choice, so two users, or two kinds of request, may share
        one). A sweep's statuses are
        about many users. on_status sees each status as it arrives, for progress displays. Raises
        StatusTimeout."""
        sent_for, sent_as = self._requesters.get(request_id, (None, None))
        user_id, kind = user_id or sent_for, kind or sent_as
        if callable(states):
            matches, awaited = states, "matching"
        else:
            wanted = frozenset(states)
            matches, awaited = (lambda status: status.state in wanted), "/".join(sorted(wanted))
        timeline: list[BindingStatus] = []

        async def follow_until_match() -> None:
            async with aclosing(self.statuses(user_id=user_id, request_id=request_id, follow=True)) as statuses:
                async for status in statuses:
                    if kind is not None and status.request_kind not in (kind, None):
                        continue  # another kind of request that shares the id
                    timeline.append(status)
                    if on_status is not None:
                        on_status(status)
                    if matches(status):
                        return

        try:
            await asyncio.wait_for(follow_until_match(), timeout_s)
        except TimeoutError:
            raise StatusTimeout(request_id, awaited, timeout_s, timeline) from None
        return timeline

    # ---- audit and dead letters ---------------------------------------------------------------------------

    def audit_events(self, *, follow: bool = False,
                     on_caught_up: Callable[[], None] | None = None) -> AsyncGenerator[AuditEvent, None]:
        return self._events(Topic.AUDIT, AuditEvent, from_beginning=True, follow=follow, on_caught_up=on_caught_up)

    async def dead_letters(self, *, follow: bool = False,
                           on_caught_up: Callable[[], None] | None = None) -> AsyncGenerator[DeadLetterRecord, None]:
        async with aclosing(self.dead_letter_records(follow=follow, on_caught_up=on_caught_up)) as records:
            async for record in records:
                yield DeadLetterRecord.from_record(record)

    async def dead_letter_records(self, *, follow: bool = False, on_caught_up: Callable[[], None] | None = None
                                  ) -> AsyncGenerator[ConsumerRecord, None]:
        """The authentic dead letters as they are on the topic, raw body included: for replays
        (deploy/admin/dead_letters.py), never for display."""
        async with aclosing(self._records(Topic.DEAD_LETTER, from_beginning=True, follow=follow,
                                          on_caught_up=on_caught_up)) as records:
            async for record in records:
                if await self._authentic(Topic.DEAD_LETTER, record):
                    yield record

    # ---- the one topic reader -----------------------------------------------------------------------------

    async def _events(self, topic: Topic, model: type[E], *, from_beginning: bool, follow: bool,
                      on_caught_up: Callable[[], None] | None) -> AsyncGenerator[E, None]:
        async with aclosing(self._records(topic, from_beginning=from_beginning, follow=follow,
                                          on_caught_up=on_caught_up)) as records:
            async for record in records:
                if not await self._authentic(topic, record):
                    continue
                try:
                    yield parse_event(model, record.value or b"")
                except MalformedEvent as exc:
                    self.unparseable_records[topic] += 1
                    log.warning("record_unparseable", topic=record.topic, partition=record.partition,
                                offset=record.offset, problem=exc.problem)

    async def _authentic(self, topic: Topic, record: ConsumerRecord) -> bool:
        """Whether a producer the routing table allows on topic signed the record; forged ones are counted."""
        try:
            await self._ready_verifier().producer_of(topic, ROUTES[topic].producers, record.key,
                                                     record.headers or (), record.value or b"")
        except Unauthentic as exc:
            self.unauthentic_records[topic] += 1
            log.warning("record_unauthentic", topic=record.topic, partition=record.partition,
                        offset=record.offset, problem=exc.problem, claimed_producer=exc.claimed_producer)
            return False
        return True

    async def _records(self, topic: Topic, *, from_beginning: bool, follow: bool,
                       on_caught_up: Callable[[], None] | None) -> AsyncGenerator[ConsumerRecord, None]:
        name = self._settings.topic(topic)
        connection = kafka_connection(self._settings, self._reader)
        consumer = AIOKafkaConsumer(
            **connection.client_options(),
            client_id=_CLIENT_ID,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=self._settings.kafka_fetch_max_wait_ms,
        )
        await start_kafka_client(consumer, connection)
        try:
            # Once Kafka answers (an unreachable broker is the first thing to say): every allowed producer's keys,
            # so that the reader verifies through a later Vault outage (EventVerifier.read_keys_of).
            await self._ready_verifier().read_keys_of(ROUTES[topic].producers)
            partitions = await self._partitions(consumer, name)
            consumer.assign(partitions)
            if from_beginning:
                await consumer.seek_to_beginning(*partitions)
            else:
                await consumer.seek_to_end(*partitions)
            # The end as it is now: reaching it means "caught up", and ends the iteration unless following.
            ends = await consumer.end_offsets(partitions)
            behind = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}
            if not behind and on_caught_up is not None:
                on_caught_up()
            while follow or behind:
                batches = await consumer.getmany(timeout_ms=_POLL_TIMEOUT_MS)
                for records in batches.values():
                    for record in records:
                        yield record
                if behind:
                    behind = {tp for tp in behind if await consumer.position(tp) < ends[tp]}
                    if not behind and on_caught_up is not None:
                        on_caught_up()
        except KafkaError as exc:
            raise BrokerUnavailable(f"reading {name} failed ({type(exc).__name__})") from None
        finally:
            await consumer.stop()

    async def _partitions(self, consumer: AIOKafkaConsumer, name: str) -> list[TopicPartition]:
        await consumer.topics()  # refreshes the metadata of every topic
        partitions = consumer.partitions_for_topic(name)
        if not partitions:
            raise TopicMissing(f"topic {name} does not exist on {self._settings.kafka_bootstrap_servers} "
                               "(has the stack been bootstrapped, and is HASH7_TOPIC_PREFIX right?)")
        return [TopicPartition(name, partition) for partition in sorted(partitions)]

    # ---- connections --------------------------------------------------------------------------------------

    def _ready_vault(self) -> VaultClient:
        if self._vault is None:
            try:
                credentials = self._settings.approle_credentials(APP_ROLE)
            except RuntimeError as exc:
                raise CredentialsMissing(str(exc)) from None
            self._vault = VaultClient(self._settings.vault_connection(), credentials)
        return self._vault

    def _ready_publisher(self) -> KafkaPublisher:
        if self._publisher is None:
            self._publisher = KafkaPublisher(self._settings, _CLIENT_ID, EventSigner(self._ready_vault(), Party.APP))
        return self._publisher

    def _ready_verifier(self) -> EventVerifier:
        if self._verifier is None:
            self._verifier = EventVerifier(self._ready_vault())
        return self._verifier


# The longest passphrase sealed: OKX's own limit is far below (shared/adapters/okx/README.md#signing); this bounds
# what is sent to Transit and onto the topics whatever a user pastes.
MAX_PASSPHRASE_CHARS = 128


def _check_passphrase(exchange: str, passphrase: SecretStr | None) -> None:
    """A passphrase where the exchange wants one and none elsewhere, refused here in a line, before anything is sealed
    or sent (intake checks the same: services/intake/handlers.py). An exchange Hash7 does not support is left to
    intake to answer."""
    supported = supported_exchange(exchange)
    if supported is None:
        return
    if supported.needs_passphrase and passphrase is None:
        raise ClientError(f"an {supported.display_name} key needs its passphrase")
    if not supported.needs_passphrase and passphrase is not None:
        raise ClientError(f"keys on {supported.display_name} have no passphrase; none may be sent")
    if passphrase is not None and not 0 < len(passphrase.get_secret_value()) <= MAX_PASSPHRASE_CHARS:
        raise ClientError(f"that is not a passphrase: it must be 1 to {MAX_PASSPHRASE_CHARS} characters")
    if passphrase is not None and not passphrase_is_sendable(passphrase.get_secret_value()):
        # The one exchange with passphrases is OKX; the rule is ours (shared/adapters/okx/README.md#signing).
        raise ClientError("that is not a passphrase: it may hold only printable ASCII characters, no space at its ends")


def _build(model: type[E], **fields: object) -> E:
    """The event, checked by the same parse its consumer applies, so a bad field fails here, by name. It is of the
    model's own version, as every producer writes (shared/contracts/events.py)."""
    document = {"schema_version": model.model_fields["schema_version"].default, **fields}
    try:
        return parse_event(model, json.dumps(document).encode())
    except MalformedEvent as exc:
        raise InvalidRequest(f"invalid {model.__name__}: {exc.problem}") from None


def _new_request_id() -> str:
    return uuid.uuid4().hex


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _timestamp_or_none(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text is not None else None
    except ValueError:
        return None
