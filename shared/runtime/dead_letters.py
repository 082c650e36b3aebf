"""Dead letters: a record a service gave up on, kept on the dead-letter topic as it arrived (secrets scrubbed),
with the headers of shared/contracts/dead_letters.py saying where it came from and why it failed."""

import json
from dataclasses import dataclass
from datetime import datetime

from shared.contracts import dead_letters
from shared.contracts.events import utc_now
from shared.contracts.secrets import is_sealed
from shared.runtime.logging import redact

_MESSAGE_LIMIT = 1000


@dataclass(frozen=True)
class DeadLetter:
    """The original bytes (secrets scrubbed) with headers naming where they came from and why they failed."""

    body: bytes
    key: str
    source_topic: str
    partition: int
    offset: int
    error_class: str
    error_message: str
    service: str
    failed_at: datetime

    @classmethod
    def of(cls, raw: bytes, key: bytes | None, record_topic: str, partition: int, offset: int,
           error: BaseException, service: str) -> "DeadLetter":
        return cls(
            body=scrub_plaintext_secrets(raw),
            key=(key or b"").decode(errors="replace"),
            source_topic=record_topic,
            partition=partition,
            offset=offset,
            error_class=type(error).__name__,
            error_message=str(redact(str(error)))[:_MESSAGE_LIMIT],
            service=service,
            failed_at=utc_now(),
        )

    def headers(self) -> dict[str, str]:
        return {
            dead_letters.ORIGINAL_TOPIC: self.source_topic,
            dead_letters.ORIGINAL_PARTITION: str(self.partition),
            dead_letters.ORIGINAL_OFFSET: str(self.offset),
            dead_letters.EXCEPTION_TYPE: self.error_class,
            dead_letters.EXCEPTION_MESSAGE: self.error_message,
            dead_letters.SERVICE: self.service,
            dead_letters.FAILED_AT: self.failed_at.isoformat(),
        }


def scrub_plaintext_secrets(raw: bytes) -> bytes:
    """The original bytes, except that a JSON field meant to hold a sealed secret but holding anything else
    (a plaintext secret pasted by a broken app) is blanked: a dead letter must not become a secret's copy."""
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return raw
    if not isinstance(document, dict):
        return raw
    suspicious = [
        name for name, value in document.items()
        if "secret" in name.lower() and not (isinstance(value, str) and is_sealed(value))
    ]
    if not suspicious:
        return raw
    for name in suspicious:
        document[name] = "[REDACTED]"
    # ASCII with escapes: the document may hold a lone surrogate ("\ud800" in the JSON), which has no UTF-8.
    return json.dumps(document).encode()
