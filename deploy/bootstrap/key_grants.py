"""The grants on the Transit keys that hold exchange secrets (shared/adapters/vault/README.md#exchange-keys), made
here once for the two roles that manage such keys; deploy/bootstrap/vault_setup.py appends each to its role's file.

A role that manages keys may import them (a version too), read their versions and delete them (setting
deletion_allowed on one key just before), and nothing else: the allowed parameters are exactly what an import
(shared/adapters/vault/key_import.py HMAC_KEY_IMPORT) and a deletion send. So the keys stay non-exportable without
a plaintext backup, and no version can be trimmed or retired.
"""

import json

from shared.adapters.vault.key_import import HMAC_KEY_IMPORT
from shared.adapters.vault.layout import EXCHANGE_KEY_PREFIX, KEY_CHECK_PREFIX, TRANSIT_MOUNT

# Which keys each role manages: the validator its key checks' keys, the vault-writer the bindings' keys.
KEYS_MANAGED_BY = {"validator": KEY_CHECK_PREFIX, "vault-writer": EXCHANGE_KEY_PREFIX}


def key_management_policy(role: str) -> str:
    """The policy lines for the keys role manages; "" for a role that manages none."""
    prefix = KEYS_MANAGED_BY.get(role)
    if prefix is None:
        return ""
    allowed = {"ciphertext": [], **{name: [value] for name, value in HMAC_KEY_IMPORT.items()},
               "deletion_allowed": [True]}
    parameters = "\n".join(f"    {json.dumps(name)} = {json.dumps(values)}" for name, values in allowed.items())
    return (f"\n# Import, read the versions of and delete its {prefix}* keys; no other parameter "
            "(deploy/bootstrap/key_grants.py).\n"
            f'path "{TRANSIT_MOUNT}/keys/{prefix}*" {{\n  capabilities = ["read", "update", "delete"]\n'
            f"  allowed_parameters = {{\n{parameters}\n  }}\n}}\n")
