"""The headers of a dead letter (topic dead-letter, shared/contracts/routing.py): where the record it carries came
from, why it failed, how large it was, and the original's proof of origin. Written by
shared/runtime/dead_letters.py, read by shared/clients/binding_client.py and replayed by deploy/admin/dead_letters.py;
the body is the original record's bytes, secrets scrubbed, perhaps only their start."""

ORIGINAL_TOPIC = "x-dlq-original-topic"
ORIGINAL_PARTITION = "x-dlq-original-partition"
ORIGINAL_OFFSET = "x-dlq-original-offset"
EXCEPTION_TYPE = "x-dlq-exception-type"
EXCEPTION_MESSAGE = "x-dlq-exception-message"
SERVICE = "x-dlq-service"
FAILED_AT = "x-dlq-failed-at"
ORIGINAL_SIZE = "x-dlq-original-size"
ORIGINAL_SHA256 = "x-dlq-original-sha256"
TRUNCATED = "x-dlq-truncated"
# Followed by the name of one of the original record's signed headers (shared/contracts/provenance.py: its proof
# of origin and event-type), holding that header's value as it was: what a replay sends again with the body, so
# that consumers verify the original producer's record (deploy/admin/dead_letters.py).
ORIGINAL_HEADER_PREFIX = "x-dlq-original-header-"

# Each header with what it means, for the published contract (shared/contracts/asyncapi.py).
DESCRIPTIONS: dict[str, str] = {
    ORIGINAL_TOPIC: "The full name of the topic the record was read from (with its prefix).",
    ORIGINAL_PARTITION: "The record's partition on that topic, in decimal.",
    ORIGINAL_OFFSET: "The record's offset in that partition, in decimal: with the topic and partition, where to "
                     "replay it from.",
    EXCEPTION_TYPE: "The class name of the error that stopped the record (MalformedEvent for a record that could "
                    "not be parsed).",
    EXCEPTION_MESSAGE: "The error's message, redacted, its control characters escaped (\\x1b, \\u202e) and cut to a "
                       "thousand characters.",
    SERVICE: "The service that gave up on the record.",
    FAILED_AT: "When it gave up, as an ISO 8601 timestamp with its UTC offset.",
    ORIGINAL_SIZE: "The size of the original record's body in bytes, in decimal.",
    ORIGINAL_SHA256: "The SHA-256 digest of the original body's bytes (before scrubbing or cutting), in lower-case "
                     "hex: what a replay from the original offset must match.",
    TRUNCATED: "\"true\" when the body holds only the start of the original (the original was larger than the "
               "service keeps), else \"false\".",
}
ORIGINAL_HEADER_DESCRIPTION = (
    "One per signed header of the original record (event-type, x-hash7-producer, x-hash7-produced-at, "
    "x-hash7-certificate, x-hash7-signature, any other x- header), named by the prefix and the header's name, "
    "holding its value as it was; left out when it could hold something secret. A replay sends the body back with "
    "them, so that the original producer's signature verifies."
)
