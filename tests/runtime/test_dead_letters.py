"""What a dead letter keeps of the original bytes, and that its headers (shared/contracts/dead_letters.py) read
back as written."""

import json
from datetime import UTC, datetime

from aiokafka import ConsumerRecord

from shared.clients.binding_client import DeadLetterRecord
from shared.runtime.dead_letters import DeadLetter, scrub_plaintext_secrets


def test_a_plaintext_secret_is_blanked_and_the_rest_kept():
    raw = json.dumps({"user_id": "u1", "secret_key_sealed": "plain-secret"}).encode()
    assert json.loads(scrub_plaintext_secrets(raw)) == {"user_id": "u1", "secret_key_sealed": "[REDACTED]"}


def test_a_document_with_a_lone_surrogate_is_scrubbed_into_valid_utf8():
    # Valid JSON, but "\ud800" decodes to a character UTF-8 cannot encode: this once looped forever.
    raw = b'{"label": "\\ud800", "secret_key_sealed": "plain-secret"}'
    scrubbed = scrub_plaintext_secrets(raw)
    assert json.loads(scrubbed.decode("utf-8")) == {"label": "\ud800", "secret_key_sealed": "[REDACTED]"}


def test_the_reader_finds_in_the_headers_what_the_writer_put_there():
    letter = DeadLetter.of(b'{"user_id": "u1"}', b"u1", "hash7.binding.validated", 2, 41, ValueError("no pairs"),
                           "vault-writer")
    record = ConsumerRecord(topic="hash7.dead-letter", partition=0, offset=5, timestamp=0, timestamp_type=0,
                            key=letter.key.encode(), value=letter.body, checksum=None, serialized_key_size=2,
                            serialized_value_size=len(letter.body),
                            headers=[(name, text.encode()) for name, text in letter.headers().items()])
    read = DeadLetterRecord.from_record(record)
    assert (read.original_topic, read.original_partition, read.original_offset) == ("hash7.binding.validated", 2, 41)
    assert (read.error_class, read.error_message, read.service) == ("ValueError", "no pairs", "vault-writer")
    assert read.failed_at == letter.failed_at and read.failed_at.tzinfo is not None
    assert read.failed_at != datetime.fromtimestamp(0, UTC)
