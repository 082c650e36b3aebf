"""What a dead letter keeps of the original bytes, and that its headers (shared/contracts/dead_letters.py) read
back as written."""

import hashlib
import json
import uuid
from datetime import UTC, datetime

import pytest
from aiokafka import ConsumerRecord

from shared.clients.binding_client import DeadLetterRecord
from shared.contracts import dead_letters
from shared.contracts.events import BindingRequested, BindingStatus, Event, utc_now
from shared.contracts.reasons import ReasonCode, reason
from shared.contracts.states import BindingState
from shared.runtime.dead_letters import DeadLetter, scrub_plaintext_secrets
from tests.builders import stored, validated


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


# ---- anything secret-shaped, anywhere in the body, is scrubbed ---------------------------------------------

HTX_SECRET = "c405c550-6fa0583b-fb4bc38e-d317e"
VAULT_TOKEN = "hvs.CAESIJlWh0Mn8nPPNSuBZbSCkRbeyTQGfrz2"
RANDOM_KEY = "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MEFCQ0RFRkdI"
PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----"
PASSWORD = "correct horse battery staple"
SEALED = "vault:v1:QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"


def hidden(secret: str, body: bytes) -> bool:
    return secret.encode() not in body and secret[4:20].encode() not in body


@pytest.mark.parametrize(
    ("secret", "document"),
    [
        (PASSWORD, {"user_id": "u1", "details": [{"meta": {"db_password": PASSWORD}}]}),
        (PASSWORD, {"outer": {"Api-Secret": {"deeper": [PASSWORD]}}}),
        (PASSWORD, {"auth": {"Passphrase": PASSWORD}}),
        (PASSWORD, {"privateKey": PASSWORD}),
        (PASSWORD, {"x-hash7-signature": PASSWORD}),
        (PASSWORD, {"refresh_token": PASSWORD}),
        (HTX_SECRET, {"label": f"my key is {HTX_SECRET}"}),
        (HTX_SECRET, {"notes": [[[{"free": HTX_SECRET}]]]}),
        (HTX_SECRET, {HTX_SECRET: "as a field name"}),
        (VAULT_TOKEN, {"trace": f"vault said: token {VAULT_TOKEN} expired"}),
        (RANDOM_KEY, {"label": RANDOM_KEY}),
        (PEM, {"label": PEM}),
        (VAULT_TOKEN, [VAULT_TOKEN]),
        (VAULT_TOKEN, VAULT_TOKEN),
    ],
    ids=["nested-password", "under-secret-parent", "passphrase", "private", "signature", "token", "htx-in-text",
         "htx-deep", "htx-as-name", "vault-token", "random-base64", "pem", "top-level-array", "top-level-string"],
)
def test_a_secret_anywhere_in_a_json_body_is_scrubbed(secret: str, document: object) -> None:
    scrubbed = scrub_plaintext_secrets(json.dumps(document).encode())

    assert hidden(secret, scrubbed), scrubbed
    json.loads(scrubbed)  # still JSON


def test_sealed_values_under_secret_names_are_kept_and_everything_else_under_them_goes() -> None:
    document = {"secrets": {"binance": SEALED, "htx": PASSWORD, "none": None}, "secret_key_sealed": SEALED}

    assert json.loads(scrub_plaintext_secrets(json.dumps(document).encode())) == {
        "secrets": {"binance": SEALED, "htx": "[REDACTED]", "none": None}, "secret_key_sealed": SEALED}


@pytest.mark.parametrize(
    ("secret", "raw"),
    [
        (PASSWORD, f'{{"user_id": "u1", "secret_key_sealed": "{PASSWORD}", '.encode()),  # cut short
        (PASSWORD, f'{{"password": "{PASSWORD}"'.encode()),  # its closing quote cut off too
        (PASSWORD, f'{{"secret": ["{PASSWORD}"], broken'.encode()),
        (PASSWORD, f"password={PASSWORD.replace(' ', '+')}&user=u1".encode()),
        (HTX_SECRET, f"plain text with {HTX_SECRET} inside".encode()),
        (VAULT_TOKEN, b"\xff\xfe not utf-8 \x80 " + VAULT_TOKEN.encode() + b" \xc3"),
        (PEM, b"\x00binary\x00" + PEM.encode()),
        # Parsers disagree on which of two values counts: both are looked at.
        (PASSWORD, f'{{"secret_key_sealed": "{PASSWORD}", "secret_key_sealed": "{SEALED}"}}'.encode()),
    ],
    ids=["truncated-json", "unterminated-quote", "broken-json-list", "form-body", "text", "not-utf8", "pem-in-binary",
         "duplicate-field"],
)
def test_a_secret_in_a_body_that_is_not_json_is_scrubbed_by_its_shape(secret: str, raw: bytes) -> None:
    scrubbed = scrub_plaintext_secrets(raw)

    assert hidden(secret.replace(" ", "+") if b"password=" in raw else secret, scrubbed), scrubbed


def test_bytes_that_are_not_utf8_survive_around_the_scrubbed_secret() -> None:
    raw = b"\xff\xfe head " + VAULT_TOKEN.encode() + b" tail \x80"

    assert scrub_plaintext_secrets(raw) == b"\xff\xfe head [REDACTED] tail \x80"


def test_nesting_a_hundred_thousand_deep_neither_crashes_nor_hides_a_secret() -> None:
    raw = b'{"a": ' * 100_000 + json.dumps(HTX_SECRET).encode() + b"}" * 100_000

    scrubbed = scrub_plaintext_secrets(raw)

    assert hidden(HTX_SECRET, scrubbed)
    assert len(scrubbed) < len(raw)


def test_nesting_as_deep_as_the_parser_allows_is_walked() -> None:
    raw = b'{"a": [' * 300 + json.dumps({"password": PASSWORD}).encode() + b"]}" * 300

    scrubbed = scrub_plaintext_secrets(raw)

    assert hidden(PASSWORD, scrubbed)
    json.loads(scrubbed)


def ordinary_events() -> list[Event]:
    request = BindingRequested(
        request_id=uuid.uuid4().hex, user_id="alice", exchange="htx", label="main", access_key=HTX_SECRET,
        secret_key_sealed=SEALED, trading_pairs=["btcusdt"], replaces_binding_id=str(uuid.uuid4()),
        requested_at=utc_now())
    rejected = BindingStatus(
        event_id=uuid.uuid4(), request_id=uuid.uuid4().hex, binding_id=str(uuid.uuid4()), user_id="alice",
        exchange="htx", state=BindingState.REJECTED, access_key_masked="c405…317e", occurred_at=utc_now(),
        reasons=[reason(code, "htx", missing_ips=["203.0.113.11"]) for code in ReasonCode])
    return [request, rejected, validated(access_key=HTX_SECRET, request_id=uuid.uuid4().hex), stored()]


@pytest.mark.parametrize("event", ordinary_events(), ids=lambda event: type(event).__name__)
def test_an_ordinary_event_survives_byte_for_byte(event: Event) -> None:
    # An access key has an HTX secret's shape; the field that names it keeps it.
    raw = event.to_bytes()

    assert scrub_plaintext_secrets(raw) == raw
    assert DeadLetter.of(raw, b"k", "t", 0, 1, ValueError("x"), "intake", max_body_bytes=len(raw)).body == raw


# ---- a body cap, with the original's size and digest ---------------------------------------------------------


def test_an_oversized_body_keeps_its_start_scrubbed_with_the_original_size_and_digest() -> None:
    raw = (b'{"label": "' + b"x" * 1000 + b'", "password": "' + PASSWORD.encode() + b'", "pad": "'
           + b"y" * 5000 + b'"}')
    cut = raw.index(PASSWORD.encode()) + 5  # the cap falls inside the secret

    letter = DeadLetter.of(raw, b"k", "t", 0, 1, ValueError("too large"), "intake", max_body_bytes=cut)

    assert len(letter.body) <= cut
    assert PASSWORD[:5].encode() not in letter.body
    assert letter.body.startswith(b'{"label": "xxx')
    headers = letter.headers()
    assert headers[dead_letters.ORIGINAL_SIZE] == str(len(raw))
    assert headers[dead_letters.ORIGINAL_SHA256] == hashlib.sha256(raw).hexdigest()
    assert headers[dead_letters.TRUNCATED] == "true"


def test_a_body_within_the_cap_is_whole_and_not_marked_truncated() -> None:
    letter = DeadLetter.of(b'{"a": 1}', None, "t", 0, 1, ValueError("x"), "intake", max_body_bytes=8)

    assert letter.body == b'{"a": 1}'
    assert letter.headers()[dead_letters.TRUNCATED] == "false"
    assert letter.headers()[dead_letters.ORIGINAL_SIZE] == "8"


def test_every_header_written_is_described_in_the_contract() -> None:
    letter = DeadLetter.of(b"x", None, "t", 0, 1, ValueError("x"), "intake")

    assert set(letter.headers()) == set(dead_letters.DESCRIPTIONS)


def test_the_exception_message_header_is_redacted_escaped_and_cut() -> None:
    error = ValueError(f"\x1b]0;pwned\x07 \x9b2J \u202e token={VAULT_TOKEN} " + "z" * 5000)

    message = DeadLetter.of(b"x", None, "t", 0, 1, error, "intake").headers()[dead_letters.EXCEPTION_MESSAGE]

    assert VAULT_TOKEN not in message
    assert all(char.isprintable() for char in message)
    assert message.startswith("\\x1b]0;pwned\\x07 \\x9b2J \\u202e token=[REDACTED]")
    assert len(message) == 1000
