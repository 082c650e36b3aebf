"""How `hash7` shows records as rich tables: one view per kind of record (its columns and its time), and the
reading of a topic into a table, then row by row while following it; or as JSON lines (--output json)."""

import heapq
import itertools
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from rich import box
from rich.table import Table
from rich.text import Text

from shared.clients.binding_client import BindingClient, DeadLetterRecord
from shared.clients.console import JSON, Waiting, print_json_line, shown, stderr, stdout
from shared.contracts.events import AuditEvent, BindingStatus
from shared.contracts.routing import Topic
from shared.contracts.states import BindingState

T = TypeVar("T")


@dataclass(frozen=True)
class Column(Generic[T]):
    header: str
    cell: Callable[[T], Text]
    # The layout of rows printed one at a time while following a topic: a fixed width or a share of the
    # rest, never sized by content, so that each row lines up under the header printed first.
    width: int | None = None
    ratio: int | None = None


@dataclass(frozen=True)
class TableView(Generic[T]):
    """How one kind of record is shown: its columns, and its time for ordering."""

    title: str
    columns: Sequence[Column[T]]
    time: Callable[[T], datetime]

    def table(self, rows: Iterable[T], *, header: bool = True, fixed_layout: bool = False) -> Table:
        """Columns sized by their content, or with fixed_layout sized the same whatever the rows hold."""
        table = Table(box=box.SIMPLE_HEAD, show_header=header, show_edge=False, expand=fixed_layout,
                      header_style="bold", padding=(0, 2, 0, 0), pad_edge=False)
        for column in self.columns:
            table.add_column(column.header, overflow="fold", no_wrap=column.width is not None,
                             width=column.width if fixed_layout else None,
                             ratio=column.ratio if fixed_layout else None)
        for row in rows:
            table.add_row(*(column.cell(row) for column in self.columns))
        return table


def shown_time(moment: datetime) -> Text:
    return Text(moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"))


_STATE_STYLES = {
    BindingState.ACTIVE: "bold green",
    BindingState.AWAITING_WHITELIST: "green",
    BindingState.EXPIRING: "yellow",
    BindingState.REJECTED: "bold red",
    BindingState.INVALID: "bold red",
    BindingState.REVOKED: "magenta",
}


def shown_state(state: BindingState) -> Text:
    return Text(state.value, style=_STATE_STYLES.get(state, ""))


def shown_lines(lines: Iterable[Text]) -> Text:
    """Texts one per line (a dim dash for none). Made by `shown`, which escapes a value's own line breaks, no
    value can fake a line of its own."""
    joined = list(lines)
    return Text("\n").join(joined) if joined else shown(None)


def shown_reasons(status: BindingStatus) -> Text:
    return shown_lines(
        line
        for reason in status.reasons
        for line in (Text.assemble(shown(reason.code.value, style="bold"), ": ", shown(reason.message)),
                     Text.assemble("  → ", shown(reason.hint, style="italic")))
    )


_TIME = "Time (UTC)"
_TIME_WIDTH = 19

_STATUS_TIME = Column[BindingStatus](_TIME, lambda s: shown_time(s.occurred_at), width=_TIME_WIDTH)
_STATUS_STATE = Column[BindingStatus]("State", lambda s: shown_state(s.state), width=18)
_STATUS_BINDING = Column[BindingStatus]("Binding", lambda s: shown(s.binding_id), ratio=1)
_STATUS_REASONS = Column[BindingStatus]("Reasons", shown_reasons, ratio=4)

# One request's timeline, as `bind`, `whitelist` and `revoke` print it.
REQUEST_TIMELINE = TableView[BindingStatus](
    "statuses", [_STATUS_TIME, _STATUS_STATE, _STATUS_BINDING, _STATUS_REASONS], lambda s: s.occurred_at
)
# A user's timeline across requests, as `timeline` prints it.
USER_TIMELINE = TableView[BindingStatus](
    "statuses",
    [_STATUS_TIME, _STATUS_STATE, Column("Request", lambda s: shown(s.request_id), ratio=1), _STATUS_BINDING,
     _STATUS_REASONS],
    lambda s: s.occurred_at,
)
AUDIT = TableView[AuditEvent](
    "audit events",
    [
        Column(_TIME, lambda e: shown_time(e.occurred_at), width=_TIME_WIDTH),
        Column("Service", lambda e: shown(e.service), width=12),
        Column("Action", lambda e: shown(e.action), ratio=3),
        Column("Outcome", lambda e: shown(e.outcome), width=10),
        Column("User", lambda e: shown(e.user_id), ratio=2),
        Column("Binding", lambda e: shown(e.binding_id), ratio=3),
        Column("Key", lambda e: shown(e.access_key_masked), width=11),
        Column("Reasons", lambda e: shown_lines(shown(code) for code in e.reason_codes), ratio=4),
    ],
    lambda e: e.occurred_at,
)
DEAD_LETTERS = TableView[DeadLetterRecord](
    "dead letters",
    [
        Column("Failed at (UTC)", lambda d: shown_time(d.failed_at), width=_TIME_WIDTH),
        Column("Original topic/partition/offset", lambda d: shown(
            f"{d.original_topic or '?'}/{d.original_partition if d.original_partition is not None else '?'}"
            f"/{d.original_offset if d.original_offset is not None else '?'}"), ratio=2),
        Column("Error", lambda d: shown(d.error_class), ratio=1),
        Column("Message", lambda d: shown(d.error_message), ratio=3),
        Column("Service", lambda d: shown(d.service), width=12),
        Column("Size", lambda d: shown(_size_of(d)), width=10),
        Column("Body (preview)", lambda d: shown(d.body_preview), ratio=4),
    ],
    lambda d: d.failed_at,
)


def _size_of(letter: DeadLetterRecord) -> str:
    if letter.original_size is None:
        return "?"
    return f"{letter.original_size} B" + (" (cut)" if letter.truncated else "")


class Newest(Generic[T]):
    """The newest `limit` items by time (all of them when limit is None), holding no more than that."""

    def __init__(self, limit: int | None, time: Callable[[T], datetime]) -> None:
        self._limit = limit
        self._time = time
        self._heap: list[tuple[datetime, int, T]] = []
        # The arrival number breaks ties between equal times, so items themselves are never compared.
        self._arrivals = itertools.count()

    def add(self, item: T) -> None:
        entry = (self._time(item), next(self._arrivals), item)
        if self._limit is None or len(self._heap) < self._limit:
            heapq.heappush(self._heap, entry)
        else:
            heapq.heappushpop(self._heap, entry)

    def oldest_first(self) -> list[T]:
        return [item for _, _, item in sorted(self._heap)]


async def show_records(view: TableView[T], open_reader: Callable[[Callable[[], None]], AsyncGenerator[T, None]], *,
                       follow: bool, source: str, output: str, limit: int | None = None) -> None:
    """Print what a topic (source, for the progress line) holds now as one table (its newest `limit` rows);
    when following, then print each new row as it arrives, aligned under that table. With output json, the
    same records one JSON line each."""
    backlog: Newest[T] = Newest(limit, view.time)
    caught_up = False
    waiting = Waiting(f"Reading {view.title} from {source}…")

    def show(rows: list[T], *, header: bool) -> None:
        if output == JSON:
            for row in rows:
                print_json_line(row)
        else:
            stdout.print(view.table(rows, header=header, fixed_layout=follow))

    def show_backlog() -> None:
        nonlocal caught_up
        caught_up = True
        waiting.stop()
        rows = backlog.oldest_first()
        if rows or (follow and output != JSON):
            show(rows, header=True)
        else:
            stderr.print(f"No {view.title}" + (" yet." if follow else "."), style="dim")

    with waiting:
        async with aclosing(open_reader(show_backlog)) as reader:
            async for record in reader:
                if caught_up:
                    show([record], header=False)
                else:
                    backlog.add(record)


def report_skipped(client: BindingClient, topic: Topic) -> None:
    if forged := client.unauthentic_records[topic]:
        stderr.print(f"Skipped {forged} record(s) on {topic.value} that no allowed producer signed "
                     "(forged or altered; see the log for each).", style="red")
    if skipped := client.unparseable_records[topic]:
        stderr.print(f"Skipped {skipped} record(s) on {topic.value} that are not valid events.", style="yellow")
