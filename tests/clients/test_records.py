"""Dead-letter records and body previews (never a secret), and the CLI's newest-N backlog."""

import json
from datetime import timedelta

import pytest
from aiokafka import ConsumerRecord

from shared.clients.binding_client import BODY_PREVIEW_CHARS, DeadLetterRecord, body_preview
from shared.clients.cli.tables import Newest
from tests.clients.fakes import ACCESS_KEY, MASKED_ACCESS_KEY, SECRET_KEY, T0

CIPHERTEXT = "vault:v1:" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=" * 2


def consumer_record(value: bytes | None, headers: dict[str, str]) -> ConsumerRecord:
    return ConsumerRecord(
        topic="t.dead-letter", partition=1, offset=9, timestamp=int(T0.timestamp() * 1000), timestamp_type=0,
        key=b"user-1", value=value, checksum=None, serialized_key_size=6,
        serialized_value_size=len(value or b""), headers=[(name, text.encode()) for name, text in headers.items()],
    )


def test_a_json_body_preview_drops_secret_fields_and_masks_the_access_key() -> None:
    body = json.dumps({"user_id": "user-1", "access_key": ACCESS_KEY, "secret_key_sealed": SECRET_KEY,
                       "note": f"sealed as {CIPHERTEXT}"}).encode()

    preview = body_preview(body)

    assert SECRET_KEY not in preview and ACCESS_KEY not in preview and CIPHERTEXT not in preview
    assert json.loads(preview) == {"user_id": "user-1", "access_key": MASKED_ACCESS_KEY,
                                   "secret_key_sealed": "[REDACTED]", "note": "sealed as [REDACTED]"}


def test_a_non_json_body_preview_is_scrubbed_and_cut_short() -> None:
    preview = body_preview(f"garbage secret_key={SECRET_KEY}&x={CIPHERTEXT} ".encode() + b"\xff" * 500, limit=80)

    assert SECRET_KEY not in preview and CIPHERTEXT not in preview
    assert preview.startswith("garbage secret_key=[REDACTED]")
    assert len(preview) == 80 and preview.endswith("…")


def test_a_dead_letter_record_reads_its_origin_from_the_headers() -> None:
    record = consumer_record(b'{"a": 1}', {
        "x-dlq-original-topic": "t.binding.requested",
        "x-dlq-original-partition": "2",
        "x-dlq-original-offset": "41",
        "x-dlq-exception-type": "MalformedEvent",
        "x-dlq-exception-message": f"client_token='{SECRET_KEY}' rejected",
        "x-dlq-service": "intake",
        "x-dlq-failed-at": (T0 + timedelta(seconds=5)).isoformat(),
    })

    letter = DeadLetterRecord.from_record(record)

    assert (letter.partition, letter.offset, letter.key) == (1, 9, "user-1")
    assert (letter.original_topic, letter.original_partition, letter.original_offset) == (
        "t.binding.requested", 2, 41)
    assert (letter.error_class, letter.service) == ("MalformedEvent", "intake")
    assert SECRET_KEY not in (letter.error_message or "")
    assert letter.failed_at == T0 + timedelta(seconds=5)
    assert letter.body_preview == '{"a": 1}'


def test_a_dead_letter_without_headers_still_reads() -> None:
    letter = DeadLetterRecord.from_record(consumer_record(None, {"x-dlq-original-offset": "not a number"}))

    assert letter.original_topic is None and letter.original_offset is None and letter.error_class is None
    assert letter.failed_at == T0
    assert letter.body_preview == ""


def test_newest_keeps_the_latest_items_by_time_oldest_first() -> None:
    newest: Newest[int] = Newest(3, lambda seconds: T0 + timedelta(seconds=seconds))
    for seconds in (5, 1, 9, 3, 7, 7):
        newest.add(seconds)

    assert newest.oldest_first() == [7, 7, 9]


def test_newest_without_a_limit_keeps_everything() -> None:
    everything: Newest[int] = Newest(None, lambda seconds: T0 + timedelta(seconds=seconds))
    for seconds in (2, 0, 1):
        everything.add(seconds)

    assert everything.oldest_first() == [0, 1, 2]


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
                                  b'{"n": ' + b"9" * 5_000 + b"}", b"\xff\xfe\x00", b"", None])
def test_any_body_gives_a_preview_of_bounded_length(body):
    # One hostile dead letter must not stop `hash7 dead-letters` for good.
    preview = body_preview(body)
    assert isinstance(preview, str) and len(preview) <= BODY_PREVIEW_CHARS
