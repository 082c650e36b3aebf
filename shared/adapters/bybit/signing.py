"""Bybit v5 HMAC-SHA256 signing, pure functions shared by the client and the sandbox
(shared/adapters/bybit/README.md#signing).

Signed text = timestamp (ms) + api key + recv window (ms) + payload, where payload is the query string of a GET
exactly as sent, or the raw JSON body of a POST. The signature is the lower-case hex of the HMAC-SHA256 digest.
"""

import hashlib
import hmac

from pydantic import SecretStr

API_KEY_HEADER = "X-BAPI-API-KEY"
TIMESTAMP_HEADER = "X-BAPI-TIMESTAMP"
SIGN_HEADER = "X-BAPI-SIGN"
RECV_WINDOW_HEADER = "X-BAPI-RECV-WINDOW"
# pybit sends "2" on every signed request; ccxt sends none (shared/adapters/bybit/README.md#signing).
SIGN_TYPE_HEADER = "X-BAPI-SIGN-TYPE"
SIGN_TYPE_HMAC = "2"
# shared/adapters/bybit/README.md#signing: Bybit's default when the header is absent.
DEFAULT_RECV_WINDOW_MS = 5000


def pre_sign_text(timestamp_ms: int | str, api_key: str, recv_window_ms: int | str, payload: str) -> str:
    """The text that is signed: the four parts concatenated, no separator."""
    return f"{timestamp_ms}{api_key}{recv_window_ms}{payload}"


def encode_signature(digest: bytes) -> str:
    """`X-BAPI-SIGN`: the raw HMAC-SHA256 digest as lower-case hex."""
    return digest.hex()


def compute_signature(secret_key: SecretStr, text: str) -> str:
    """The signature of text with secret_key, computed here: for the sandbox, which holds its keys' secrets as Bybit
    does. Hash7's own requests are signed inside Vault (shared/adapters/request_signing.py)."""
    return encode_signature(hmac.new(secret_key.get_secret_value().encode(), text.encode(), hashlib.sha256).digest())


def signed_headers(api_key: str, timestamp_ms: int, recv_window_ms: int, signature: str) -> dict[str, str]:
    """The headers that carry a signed request's authentication."""
    return {
        API_KEY_HEADER: api_key,
        TIMESTAMP_HEADER: str(timestamp_ms),
        RECV_WINDOW_HEADER: str(recv_window_ms),
        SIGN_HEADER: signature,
    }
