"""HTX Signature Version 2 (HmacSHA256), pure functions shared by the client and the sandbox
(shared/adapters/htx/README.md#signing).

Pre-sign text = method, lower-case host, path and the canonical query, one per line. The canonical query
is every signed parameter, sorted by name in ASCII order, each name and value percent-encoded per RFC 3986
with upper-case hex (space is `%20`). The signature is the Base64 of the raw HMAC-SHA256 digest.
"""

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from urllib.parse import quote

from pydantic import SecretStr

SIGNATURE_METHOD = "HmacSHA256"
SIGNATURE_VERSION = "2"
# shared/adapters/htx/README.md#signing: UTC, no fraction, no zone designator.
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S"

ACCESS_KEY_PARAM = "AccessKeyId"
SIGNATURE_METHOD_PARAM = "SignatureMethod"
SIGNATURE_VERSION_PARAM = "SignatureVersion"
TIMESTAMP_PARAM = "Timestamp"
SIGNATURE_PARAM = "Signature"


def percent_encode(text: str) -> str:
    """RFC 3986: unreserved `A-Za-z0-9-_.~` kept, every other UTF-8 byte `%XX` in upper-case hex
    (shared/adapters/htx/README.md#canonical-form)."""
    return quote(text, safe="")


def canonical_query(params: Iterable[tuple[str, str]]) -> str:
    """The signed parameters, sorted by name (then value, for repeated names), encoded and joined with `&`."""
    return "&".join(f"{percent_encode(name)}={percent_encode(value)}" for name, value in sorted(params))


def pre_sign_text(method: str, host: str, path: str, params: Iterable[tuple[str, str]]) -> str:
    """The four lines that are signed (shared/adapters/htx/README.md#signing); no trailing newline."""
    return f"{method.upper()}\n{host.lower()}\n{path}\n{canonical_query(params)}"


def encode_signature(digest: bytes) -> str:
    """The `Signature` parameter: Base64 of the raw HMAC-SHA256 digest (not of its hex form,
    shared/adapters/htx/README.md#signing)."""
    return base64.b64encode(digest).decode()


def compute_signature(secret_key: SecretStr, text: str) -> str:
    """The signature of text with secret_key, computed here: for the sandbox, which holds its keys' secrets as HTX
    does. Hash7's own requests are signed inside Vault (shared/adapters/request_signing.py)."""
    return encode_signature(hmac.new(secret_key.get_secret_value().encode(), text.encode(), hashlib.sha256).digest())


def format_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text: str) -> datetime:
    """The inverse of format_timestamp; ValueError when text is not in HTX's format."""
    return datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=UTC)


def unsigned_query(
    *,
    access_key: str,
    timestamp: datetime,
    params: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The query parameters of a signed request before its `Signature`: params and the four auth parameters, all
    of them signed.

    For GET, params are the request's query parameters. For POST, pass none: only the auth parameters are signed
    and the request's parameters travel in the JSON body (shared/adapters/htx/README.md#signing).
    """
    return {
        **(params or {}),
        ACCESS_KEY_PARAM: access_key,
        SIGNATURE_METHOD_PARAM: SIGNATURE_METHOD,
        SIGNATURE_VERSION_PARAM: SIGNATURE_VERSION,
        TIMESTAMP_PARAM: format_timestamp(timestamp),
    }
