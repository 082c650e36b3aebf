"""What a dead letter keeps of the original bytes."""

import json

from shared.runtime.kafka import scrub_plaintext_secrets


def test_a_plaintext_secret_is_blanked_and_the_rest_kept():
    raw = json.dumps({"user_id": "u1", "secret_key_sealed": "plain-secret"}).encode()
    assert json.loads(scrub_plaintext_secrets(raw)) == {"user_id": "u1", "secret_key_sealed": "[REDACTED]"}


def test_a_document_with_a_lone_surrogate_is_scrubbed_into_valid_utf8():
    # Valid JSON, but "\ud800" decodes to a character UTF-8 cannot encode: this once looped forever.
    raw = b'{"label": "\\ud800", "secret_key_sealed": "plain-secret"}'
    scrubbed = scrub_plaintext_secrets(raw)
    assert json.loads(scrubbed.decode("utf-8")) == {"label": "\ud800", "secret_key_sealed": "[REDACTED]"}
