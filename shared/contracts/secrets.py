"""Types and helpers that keep secrets out of reprs, logs and accidental serialisation.

- A plaintext secret (an HTX secret key, a Vault token, an AppRole secret id) is a `SecretStr`: its
  repr/str show `**********` and JSON serialisation writes `**********`, so nothing leaks by accident;
  the only way to the value is an explicit `.get_secret_value()` at the edge that needs it.
- A sealed secret (Vault Transit ciphertext) travels on topics by design, so `SealedSecret` serialises
  to the ciphertext in JSON mode but still hides itself in reprs and logs. What it seals is the exchange secret
  wrapped for import into Vault, which only Vault can unwrap (README.md#the-secrets-path); a `SealedPassphrase`
  seals an OKX key's passphrase as it is (README.md#the-passphrases-path).
"""

import re
from typing import Annotated

from pydantic import GetJsonSchemaHandler, PlainSerializer, SecretStr
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

# Vault/OpenBao Transit ciphertext: "vault:v<key version>:<base64>".
_TRANSIT_CIPHERTEXT = re.compile(r"vault:v[1-9][0-9]{0,9}:[A-Za-z0-9+/]{16,}={0,2}")


def _reveal_for_wire(value: SecretStr) -> str:
    return value.get_secret_value()


class _PublishedAsCiphertext:
    """The published schema (shared/contracts/asyncapi.py) of a sealed secret: the string it is on the wire, not
    SecretStr's `writeOnly` password, which would tell code generators to leave the field out of what they read."""

    def __init__(self, description: str) -> None:
        self.description = description

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        published = {k: v for k, v in handler(schema).items() if k not in ("writeOnly", "format")}
        return published | {"description": self.description}


SealedSecret = Annotated[
    SecretStr, PlainSerializer(_reveal_for_wire, return_type=str, when_used="json"),
    _PublishedAsCiphertext("Vault Transit ciphertext (vault:v<key version>:<base64>, derived key, context = the user "
                           "id) of the secret wrapped for import into Vault Transit; never plaintext"),
]

# An exchange key's passphrase (OKX), sealed as it is (not wrapped: the exchange wants it in clear, so the validator and
# trading engines open it): README.md#the-passphrases-path.
SealedPassphrase = Annotated[
    SecretStr, PlainSerializer(_reveal_for_wire, return_type=str, when_used="json"),
    _PublishedAsCiphertext("Vault Transit ciphertext (vault:v<key version>:<base64>) of the key's passphrase, sealed "
                           "with the derived key binding-passphrase, context = the user id; never plaintext"),
]


def is_sealed(value: str) -> bool:
    """Whether value has the shape of Transit ciphertext (it says nothing about which key or context)."""
    return _TRANSIT_CIPHERTEXT.fullmatch(value) is not None


def mask_access_key(access_key: str) -> str:
    """The form of an access key that may appear in events and logs: enough to recognise, not to use."""
    if len(access_key) < 12:
        return "****"
    return f"{access_key[:4]}…{access_key[-4:]}"
