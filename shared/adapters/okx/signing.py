"""OKX v5 request signing, pure functions shared by the client and the sandbox
(shared/adapters/okx/README.md#signing, #clock).

Pre-sign text = timestamp + METHOD + requestPath (with `?query` for a GET) + body, concatenated as they are. The
signature is the Base64 of the raw HMAC-SHA256 digest, keyed with the secret key.
"""

import base64
import hashlib
import hmac
import re
from datetime import UTC, datetime

from pydantic import SecretStr

ACCESS_KEY_HEADER = "OK-ACCESS-KEY"
SIGNATURE_HEADER = "OK-ACCESS-SIGN"
TIMESTAMP_HEADER = "OK-ACCESS-TIMESTAMP"
PASSPHRASE_HEADER = "OK-ACCESS-PASSPHRASE"
# shared/adapters/okx/README.md#demo-trading: "1" asks for demo trading; absent or "0" is production.
SIMULATED_TRADING_HEADER = "x-simulated-trading"

# shared/adapters/okx/README.md#clock: `2020-12-08T09:08:57.715Z`, UTC, exactly three fraction digits.
# OKX documents no character rule for the passphrase; it travels as a header value. Our choice
# (shared/adapters/okx/README.md#signing): printable ASCII, no space at either end (HTTP trims those).
_SENDABLE_PASSPHRASE = re.compile(r"[!-~](?:[ -~]*[!-~])?")
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def passphrase_is_sendable(passphrase: str) -> bool:
    """Whether passphrase can go into OK-ACCESS-PASSPHRASE as it is: anything else (a line break, a control or
    non-ASCII character) would be refused by the HTTP stack or reach OKX changed."""
    return _SENDABLE_PASSPHRASE.fullmatch(passphrase) is not None


def request_path(path: str, query_string: str = "") -> str:
    """The requestPath that is signed: the path, and `?query` when there is one (GET parameters are part of it)."""
    return f"{path}?{query_string}" if query_string else path


def pre_sign_text(timestamp: str, method: str, path_with_query: str, body: str = "") -> str:
    return f"{timestamp}{method.upper()}{path_with_query}{body}"


def encode_signature(digest: bytes) -> str:
    """`OK-ACCESS-SIGN`: Base64 of the raw digest (Hash7's signer returns raw digests: Vault Transit)."""
    return base64.b64encode(digest).decode()


def compute_signature(secret_key: SecretStr, text: str) -> str:
    """The signature of text with secret_key, computed here: for the sandbox, which holds its keys' secrets as OKX
    does. Hash7's own requests are signed inside Vault (shared/adapters/request_signing.py)."""
    return encode_signature(hmac.new(secret_key.get_secret_value().encode(), text.encode(), hashlib.sha256).digest())


def format_timestamp(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    return f"{utc.strftime('%Y-%m-%dT%H:%M:%S')}.{utc.microsecond // 1000:03d}Z"


def parse_timestamp(text: str) -> datetime:
    """The inverse of format_timestamp; ValueError when text is not in OKX's format."""
    if not _TIMESTAMP.match(text):
        raise ValueError("not an OKX timestamp (YYYY-MM-DDTHH:MM:SS.mmmZ)")
    return datetime.strptime(text[:-1], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
