"""`hash7-admin dead-letters replay`: send dead letters back to the topic they came from, once what made them fail
is fixed.

A replay never makes an event: it sends the original record again, byte for byte, with its key and the producer's
proof of origin the dead letter kept (shared/runtime/dead_letters.py), so that its consumers verify it as that
producer's record. To them it is a redelivery, which every consumer handles idempotently: a letter replayed twice
changes nothing the first replay did not, and tells nobody anything twice. A letter that does not hold the
original's bytes (scrubbed of something secret-shaped, cut, emptied) or whose proof of origin does not verify is
refused, with the reason, and never sent. Each replay, and each refusal, is an audit event signed by ops.

A dead letter is named by where its original was: `<source topic>/<partition>/<offset>`, as `hash7 dead-letters`
shows it.
"""

import hashlib
from collections.abc import Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import click
from aiokafka import ConsumerRecord
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from deploy.admin import PROGRAM, cli
from deploy.admin.identity import load_settings, ops_publisher, ops_vault
from shared.clients.binding_client import BindingClient, DeadLetterRecord
from shared.clients.cli.tables import Column, TableView, shown_time
from shared.clients.console import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REFUSED,
    JSON,
    Waiting,
    output_format,
    print_json_line,
    run,
    shown,
    stderr,
    stdout,
)
from shared.contracts import dead_letters
from shared.contracts.audit import AuditAction, AuditOutcome
from shared.contracts.events import AuditEvent, utc_now
from shared.contracts.outcomes import audit
from shared.contracts.routing import DEAD_LETTER_SOURCES, ROUTES, Party, Topic
from shared.runtime.config import Settings
from shared.runtime.producer import KafkaPublisher
from shared.runtime.provenance import EventVerifier, Unauthentic


class Result(StrEnum):
    REPLAYED = "replayed"
    WOULD_REPLAY = "would replay"
    REFUSED = "refused"


@dataclass(frozen=True)
class Letter:
    """A dead letter read for a replay: what people see of it, and what a replay sends."""

    summary: DeadLetterRecord
    body: bytes
    key: bytes
    original_sha256: str | None
    # The original's signed headers, by their own names.
    original_headers: dict[str, str]

    @classmethod
    def from_record(cls, record: ConsumerRecord) -> "Letter":
        headers = {name: value.decode(errors="replace") for name, value in record.headers or ()}
        prefix = dead_letters.ORIGINAL_HEADER_PREFIX
        return cls(
            summary=DeadLetterRecord.from_record(record),
            body=record.value or b"",
            key=record.key or b"",
            original_sha256=headers.get(dead_letters.ORIGINAL_SHA256),
            original_headers={name.removeprefix(prefix): value for name, value in headers.items()
                              if name.startswith(prefix)},
        )

    @property
    def id(self) -> str:
        return f"{self.summary.original_topic}/{self.summary.original_partition}/{self.summary.original_offset}"


@dataclass(frozen=True)
class Replay:
    """What became of one dead letter: replayed (or, in a dry run, would be), or refused and why."""

    dead_letter: str
    failed_at: datetime
    error_class: str | None
    result: Result
    reason: str | None = None


@dataclass(frozen=True)
class Selection:
    ids: frozenset[str]
    topic_names: frozenset[str]
    since: datetime | None
    until: datetime | None

    def __contains__(self, letter: Letter) -> bool:
        failed_at = letter.summary.failed_at
        return ((not self.ids or letter.id in self.ids)
                and (not self.topic_names or letter.summary.original_topic in self.topic_names)
                and (self.since is None or failed_at >= self.since)
                and (self.until is None or failed_at < self.until))


class LetterId(click.ParamType[Any, Any]):
    name = "TOPIC/PARTITION/OFFSET"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        topic, _, place = str(value).partition("/")
        partition, _, offset = place.partition("/")
        if not (topic and partition.isdigit() and offset.isdigit()):
            self.fail("a dead letter is named <source topic>/<partition>/<offset>, as `hash7 dead-letters` shows "
                      "it (e.g. hash7.binding.validated/2/41)", param, ctx)
        return f"{topic}/{int(partition)}/{int(offset)}"


class Moment(click.ParamType[Any, Any]):
    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail("not an ISO 8601 time (e.g. 2026-12-06T03:00 or 2026-12-06T03:00+01:00; UTC when no "
                      "offset is given)", param, ctx)
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


REPLAYS = TableView[Replay](
    "replays",
    [
        Column("Dead letter (source topic/partition/offset)", lambda r: shown(r.dead_letter)),
        Column("Failed at (UTC)", lambda r: shown_time(r.failed_at)),
        Column("Error", lambda r: shown(r.error_class)),
        Column("Result", lambda r: Text(r.result.value, style="red" if r.result is Result.REFUSED else "green")),
        Column("Why not", lambda r: shown(r.reason)),
    ],
    lambda r: r.failed_at,
)


@cli.group("dead-letters")
def dead_letters_group() -> None:
    """Dead letters: the records the services gave up on (list them with `hash7 dead-letters`)."""


@dead_letters_group.command()
@click.option("--id", "ids", type=LetterId(), multiple=True,
              help="A dead letter by where its original was: <source topic>/<partition>/<offset>, as `hash7 "
                   "dead-letters` shows it. Repeatable.")
@click.option("--topic", "topics", type=click.Choice([topic.value for topic in DEAD_LETTER_SOURCES]), multiple=True,
              help="Every dead letter from this topic (without the deployment's prefix). Repeatable.")
@click.option("--since", type=Moment(), help="Only letters that failed at or after this time (ISO 8601).")
@click.option("--until", type=Moment(), help="Only letters that failed before this time (ISO 8601).")
@click.option("--dry-run", is_flag=True, help="Say what would be replayed and what refused; send nothing.")
def replay(ids: tuple[str, ...], topics: tuple[str, ...], since: datetime | None, until: datetime | None,
           dry_run: bool) -> None:
    """Send dead letters back to their source topic, as their producer signed them, after a fix.

    Letters whose body is not the original's (scrubbed, cut) or whose proof of origin does not verify are
    refused, each with its reason. Replaying a letter twice is harmless: consumers take the second copy as a
    redelivery. Exit code 3 when some letter was refused, 1 when an --id names none."""
    if not (ids or topics or since or until):
        raise click.UsageError("say which dead letters: --id, --topic, --since or --until (see `hash7 "
                               "dead-letters`)")
    settings = load_settings()
    selection = Selection(frozenset(ids), frozenset(settings.topic(Topic(topic)) for topic in topics), since, until)
    run(settings, _replay(settings, selection, dry_run=dry_run))


async def _replay(settings: Settings, selection: Selection, *, dry_run: bool) -> int:
    vault = ops_vault(settings)
    letters = await _selected_letters(settings, BindingClient(settings, vault, reader=Party.OPS), selection)
    verifier = EventVerifier(vault)
    verdicts = [(letter, await _refusal(settings, verifier, letter)) for letter in letters]
    if dry_run:
        replays = [_outcome(letter, refusal, Result.WOULD_REPLAY) for letter, refusal in verdicts]
    else:
        publisher = ops_publisher(settings, vault)
        try:
            replays = await _send(settings, publisher, verdicts)
        finally:
            await publisher.close()
    _print(replays, dry_run=dry_run)
    missing = sorted(selection.ids - {letter.id for letter in letters})
    for letter_id in missing:
        stderr.print(Text.assemble("No dead letter ", shown(letter_id), " (see `hash7 dead-letters`)."))
    if missing:
        return EXIT_FAILED
    return EXIT_REFUSED if any(replay.result is Result.REFUSED for replay in replays) else EXIT_OK


async def _selected_letters(settings: Settings, client: BindingClient, selection: Selection) -> list[Letter]:
    """The authentic dead letters selected, each once (a record may have failed twice: its first letter counts)."""
    selected: dict[str, Letter] = {}
    with Waiting(f"Reading {settings.topic(Topic.DEAD_LETTER)} (Kafka at {settings.kafka_bootstrap_servers})…"):
        async with client, aclosing(client.dead_letter_records()) as records:
            async for record in records:
                letter = Letter.from_record(record)
                if letter in selection:
                    selected.setdefault(letter.id, letter)
    return list(selected.values())


async def _refusal(settings: Settings, verifier: EventVerifier, letter: Letter) -> str | None:
    """Why the letter must not be sent again; None when it may."""
    topic = _source_topic(settings, letter.summary.original_topic)
    if topic is None:
        return "its source is not a topic of this deployment"
    if letter.summary.error_class == Unauthentic.__name__:
        return "its original failed proof of origin: it is nobody's record to send"
    if letter.summary.truncated or hashlib.sha256(letter.body).hexdigest() != letter.original_sha256:
        return ("the letter holds only the start of the original" if letter.summary.truncated
                else "the letter's body is not the original's (secret-shaped text was scrubbed, or it was emptied)")
    try:
        await verifier.verify(topic, ROUTES[topic].producers, letter.key,
                              [(name, value.encode()) for name, value in letter.original_headers.items()],
                              letter.body)
    except Unauthentic as exc:
        return f"its original's proof of origin does not verify: {exc.problem}"
    return None


def _source_topic(settings: Settings, name: str | None) -> Topic | None:
    return next((topic for topic in DEAD_LETTER_SOURCES if settings.topic(topic) == name), None)


async def _send(settings: Settings, publisher: KafkaPublisher, verdicts: Sequence[tuple[Letter, str | None]]
                ) -> list[Replay]:
    replays = []
    progress = Progress(TextColumn("Replaying dead letters"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=stderr, transient=True)
    with progress:
        task = progress.add_task("replay", total=len(verdicts))
        for letter, refusal in verdicts:
            topic = _source_topic(settings, letter.summary.original_topic)
            user_id = None
            if refusal is None and topic is not None:  # _refusal refused letters from elsewhere
                await publisher.send(topic, letter.key.decode(), letter.body, letter.original_headers,
                                     signed=False)
                # Verified: its key is the user's when its topic is keyed by user (an unverified key is anyone's).
                user_id = letter.key.decode() if ROUTES[topic].key_field == "user_id" else None
            replay = _outcome(letter, refusal, Result.REPLAYED)
            await publisher.publish(_audit(letter, replay, user_id))
            replays.append(replay)
            progress.advance(task)
    return replays


def _outcome(letter: Letter, refusal: str | None, sent: Result) -> Replay:
    return Replay(letter.id, letter.summary.failed_at, letter.summary.error_class,
                  sent if refusal is None else Result.REFUSED, refusal)


def _audit(letter: Letter, replay: Replay, user_id: str | None) -> AuditEvent:
    at = utc_now()
    return audit(service=PROGRAM, action=AuditAction.DEAD_LETTER_REPLAY,
                 outcome=AuditOutcome.REPUBLISHED if replay.result is Result.REPLAYED else AuditOutcome.REPLAY_REFUSED,
                 # Each replay is an act of its own: a second replay of a letter is a second audit event.
                 cause=f"{letter.id}@{at.isoformat()}", at=at, user_id=user_id,
                 details={"dead_letter": letter.id, "dead_letter_partition": letter.summary.partition,
                          "dead_letter_offset": letter.summary.offset, "error_class": letter.summary.error_class,
                          "failed_by": letter.summary.service, "reason": replay.reason})


def _print(replays: list[Replay], *, dry_run: bool) -> None:
    if output_format() == JSON:
        for replay in replays:
            print_json_line(replay)
        return
    if not replays:
        stdout.print("No dead letter matches.")
        return
    stdout.print(REPLAYS.table(replays))
    refused = sum(replay.result is Result.REFUSED for replay in replays)
    sent = len(replays) - refused
    stdout.print(f"{sent} {'would be ' if dry_run else ''}replayed, {refused} refused.", markup=False)
