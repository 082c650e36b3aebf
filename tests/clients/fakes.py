"""Records for the client tests, and a stand-in for BindingClient that the CLI tests put in its place."""

import uuid
from collections import Counter
from collections.abc import AsyncGenerator, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar

from pydantic import SecretStr

from shared.clients.binding_client import DeadLetterRecord, StatusTimeout
from shared.contracts.audit import AuditAction, AuditOutcome
from shared.contracts.events import AuditEvent, BindingStatus
from shared.contracts.reasons import ReasonCode, reason
from shared.contracts.routing import Party, Topic
from shared.contracts.secrets import mask_access_key
from shared.contracts.states import BindingState

ACCESS_KEY = "a1b2c3d4-e5f6a7b8-c9d0e1f2-3a4b5c"
MASKED_ACCESS_KEY = mask_access_key(ACCESS_KEY)
SECRET_KEY = "plain-secret-9f8e7d6c-never-shown"
R = TypeVar("R")
T0 = datetime(2026, 5, 4, 12, 0, 0, tzinfo=UTC)


def status(state: BindingState, *, user_id: str = "user-1", request_id: str | None = "req-1",
           binding_id: str | None = "bind-1", reasons: Iterable[ReasonCode] = (), seconds: int = 0,
           **details: object) -> BindingStatus:
    return BindingStatus(
        event_id=uuid.uuid4(), request_id=request_id, binding_id=binding_id, user_id=user_id, exchange="htx",
        state=state, reasons=[reason(code, "htx", **details) for code in reasons], access_key_masked=MASKED_ACCESS_KEY,
        occurred_at=T0 + timedelta(seconds=seconds),
    )


def audit_event(*, user_id: str = "user-1", seconds: int = 0, service: str = "validator",
                reason_codes: Iterable[ReasonCode] = ()) -> AuditEvent:
    """An audit event; tests tell theirs apart by `service`, the one field of free text."""
    return AuditEvent(
        event_id=uuid.uuid4(), service=service, action=AuditAction.VALIDATE, outcome=AuditOutcome.REJECTED,
        user_id=user_id, binding_id="bind-1",
        request_id="req-1", access_key_masked=MASKED_ACCESS_KEY, reason_codes=list(reason_codes),
        occurred_at=T0 + timedelta(seconds=seconds),
    )


def dead_letter(*, preview: str = '{"x": 1}', seconds: int = 0) -> DeadLetterRecord:
    return DeadLetterRecord(
        partition=0, offset=7, key="user-1", original_topic="t.binding.requested", original_partition=2,
        original_offset=41, error_class="MalformedEvent", error_message="body is not JSON (JSONDecodeError)",
        service="intake", failed_at=T0 + timedelta(seconds=seconds), original_size=300_000, truncated=True,
        body_preview=preview,
    )


class FakeBindingClient:
    """Answers like BindingClient from canned data; remembers what it was asked."""

    # What every instance answers with, set by each test (and cleared by reset()).
    instances: ClassVar[list["FakeBindingClient"]] = []
    timeline: ClassVar[list[BindingStatus]] = []
    statuses_on_topic: ClassVar[list[BindingStatus]] = []
    audit_on_topic: ClassVar[list[AuditEvent]] = []
    dead_letters_on_topic: ClassVar[list[DeadLetterRecord]] = []
    # Forged records each instance skips, by topic, as BindingClient.unauthentic_records counts them.
    forged_on_topic: ClassVar[dict[Topic, int]] = {}
    # Records that "arrive" after the reader caught up (only for follow=True).
    arriving_later: ClassVar[list[Any]] = []
    failure: ClassVar[BaseException | None] = None

    def __init__(self, settings: object, *, reader: Party = Party.APP) -> None:
        self.reader = reader  # whose Kafka user would read the topics
        self.calls: list[tuple[str, tuple[object, ...], dict[str, object]]] = []
        self.unparseable_records: Counter[Topic] = Counter()
        self.unauthentic_records: Counter[Topic] = Counter(self.forged_on_topic)
        FakeBindingClient.instances.append(self)

    @classmethod
    def reset(cls) -> None:
        cls.instances = []
        cls.timeline = []
        cls.statuses_on_topic = []
        cls.audit_on_topic = []
        cls.dead_letters_on_topic = []
        cls.forged_on_topic = {}
        cls.arriving_later = []
        cls.failure = None

    async def __aenter__(self) -> "FakeBindingClient":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    def _called(self, name: str, *args: object, **kwargs: object) -> None:
        self.calls.append((name, args, kwargs))
        if self.failure is not None:
            raise self.failure

    async def preflight(self, on_step: Callable[[str], None] = lambda step: None) -> None:
        self._called("preflight")

    async def bind(self, user_id: str, access_key: str, secret_key: SecretStr, **options: object) -> str:
        self._called("bind", user_id, access_key, secret_key, **options)
        return "req-1"

    async def set_whitelist(self, user_id: str, binding_id: str, pairs: list[str]) -> str:
        self._called("set_whitelist", user_id, binding_id, pairs)
        return "req-1"

    async def revoke(self, user_id: str, binding_id: str) -> str:
        self._called("revoke", user_id, binding_id)
        return "req-1"

    async def wait_for(self, request_id: str, states: frozenset[BindingState], timeout_s: float,
                       on_status: Callable[[BindingStatus], None] | None = None) -> list[BindingStatus]:
        self._called("wait_for", request_id, states, timeout_s)
        for seen, status_ in enumerate(self.timeline, start=1):
            if on_status is not None:
                on_status(status_)
            if status_.state in states:
                return self.timeline[:seen]
        raise StatusTimeout(request_id, "/".join(sorted(states)), timeout_s, list(self.timeline))

    def statuses(self, **filters: object) -> AsyncGenerator[BindingStatus, None]:
        self._called("statuses", **filters)
        return self._replay(self.statuses_on_topic, filters)

    def audit_events(self, **options: object) -> AsyncGenerator[AuditEvent, None]:
        self._called("audit_events", **options)
        return self._replay(self.audit_on_topic, options)

    def dead_letters(self, **options: object) -> AsyncGenerator[DeadLetterRecord, None]:
        self._called("dead_letters", **options)
        return self._replay(self.dead_letters_on_topic, options)

    async def _replay(self, backlog: list[R], options: dict[str, object]) -> AsyncGenerator[R, None]:
        for record in backlog:
            yield record
        on_caught_up = options.get("on_caught_up")
        if callable(on_caught_up):
            on_caught_up()
        if options.get("follow"):
            for record in self.arriving_later:
                yield record
