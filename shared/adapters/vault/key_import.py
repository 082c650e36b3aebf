"""Wrapping an exchange secret for import into Vault Transit, where only Vault can open it
(shared/adapters/vault/README.md#exchange-keys).

Transit's import format ("bring your own key"): a fresh AES-256 key wraps the secret with AES key wrap with
padding (RFC 5649); Vault's RSA wrapping key (`transit/wrapping_key`, public) wraps that AES key with RSA-OAEP
(SHA-256, MGF1 SHA-256); the import ciphertext is the Base64 of the RSA block followed by the wrapped secret. Only
Vault holds the RSA private key, so whoever carries the result cannot read the secret; the primitives are the
`cryptography` package's.
"""

import base64
import os

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding
from pydantic import SecretStr

# The sizes Transit accepts for an imported HMAC key (measured on OpenBao 2.7.2: fewer than 32 bytes and more than
# 512 are refused).
HMAC_KEY_MIN_BYTES = 32
HMAC_KEY_MAX_BYTES = 512

IMPORT_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
# What an import says besides the ciphertext: an HMAC-SHA256 key. Nothing else: Transit's defaults keep it
# non-exportable with no plaintext backup, and the policies allow no other parameter.
HMAC_KEY_IMPORT = {"type": "hmac", "hash_function": "SHA256"}


class NotImportable(ValueError):
    """The secret cannot become a Transit HMAC key (its length); the message never quotes it."""


def wrap_for_import(wrapping_key_pem: str, secret: SecretStr) -> str:
    """The Transit import ciphertext of secret (module docstring); NotImportable when Transit would refuse it."""
    material = secret.get_secret_value().encode()
    if not HMAC_KEY_MIN_BYTES <= len(material) <= HMAC_KEY_MAX_BYTES:
        raise NotImportable(f"an exchange secret key is {HMAC_KEY_MIN_BYTES} to {HMAC_KEY_MAX_BYTES} bytes; "
                            f"this one is {len(material)}")
    wrapping_key = serialization.load_pem_public_key(wrapping_key_pem.encode())
    if not isinstance(wrapping_key, rsa.RSAPublicKey):
        raise ValueError("Vault's wrapping key is not an RSA public key")
    ephemeral = os.urandom(32)
    wrapped = wrapping_key.encrypt(ephemeral, IMPORT_OAEP) + aes_key_wrap_with_padding(ephemeral, material)
    return base64.b64encode(wrapped).decode()
