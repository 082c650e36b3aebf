"""Where things live in Vault. Policies in deploy/vault/policies/*.hcl grant exactly these paths."""

import hashlib

KV_MOUNT = "hash7"
TRANSIT_MOUNT = "transit"
# Derived Transit key: context = user id, so a secret sealed for one user cannot be unsealed for another.
BINDING_SECRET_KEY = "binding-secret"
# Derived the same way (context = user id): seals the passphrase some exchanges' keys come with (OKX), which the
# exchange wants in clear with every request, so unlike the secret it cannot live in a Transit key of its own. Sealed
# by the app, stored sealed by the vault-writer, opened only by the validator and trading engines to send it
# (README.md#the-passphrases-path). A key of its own, so a role that may open passphrases opens no wrapped secret.
BINDING_PASSPHRASE_KEY = "binding-passphrase"
# Transit key used only to HMAC access keys for the uniqueness index (the index never holds a key).
ACCESS_KEY_INDEX_KEY = "access-key-index"

# Ed25519 Transit keys, one per producing party, that sign its records (shared/contracts/provenance.py). Each
# party's role may sign with its own only; every role may read their public halves, to verify.
EVENT_SIGNING_KEY_PREFIX = "event-"


def event_signing_key(producer: str) -> str:
    return f"{EVENT_SIGNING_KEY_PREFIX}{producer}"


# Exchange secrets, each a non-exportable Transit HMAC key (shared/adapters/vault/README.md#exchange-keys):
# - one per stored binding, imported by the vault-writer; the validator (sweeps) and trading engines sign with it;
# - one per binding request while the validator proves its key, deleted by the validator once it has its verdict.
# Names carry a digest of the ids: ids may hold ':', which a Transit key name may not, and no two pairs of ids
# may share a key.
EXCHANGE_KEY_PREFIX = "exchange-key-"
KEY_CHECK_PREFIX = "key-check-"


def _ids_digest(*ids: str) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:40]


def exchange_key(user_id: str, binding_id: str) -> str:
    return EXCHANGE_KEY_PREFIX + _ids_digest(user_id, binding_id)


def key_check_key(user_id: str, request_id: str) -> str:
    return KEY_CHECK_PREFIX + _ids_digest(user_id, request_id)


# AppRoles, one per service and per client. Each has a policy file deploy/vault/policies/<role>.hcl.
SERVICE_ROLES = ("intake", "validator", "vault-writer", "whitelist")
CLIENT_ROLES = ("app", "trading-engine", "ops")
# The roles that sign or verify records (deploy/bootstrap/event_keys.py signing_policy).
RECORD_ROLES = SERVICE_ROLES + CLIENT_ROLES
# Takes Vault's raft snapshots on a schedule (`hash7-admin backup-every`) and nothing else: no record, no key.
BACKUP_ROLE = "backup"
ALL_ROLES = (*RECORD_ROLES, BACKUP_ROLE)
# Where Vault's jwt auth method is mounted: workloads on Kubernetes log in there with their service-account token,
# to a role of the same name and policy as their AppRole (deploy/bootstrap/vault_jwt.py).
JWT_AUTH_MOUNT = "jwt"


# Every user's bindings, one folder per user.
BINDINGS_FOLDER = "bindings/"


def user_bindings_folder(user_id: str) -> str:
    return f"{BINDINGS_FOLDER}{user_id}/"


def binding_path(user_id: str, binding_id: str) -> str:
    return user_bindings_folder(user_id) + binding_id


def user_whitelists_folder(user_id: str) -> str:
    return f"whitelists/{user_id}/"


def whitelist_path(user_id: str, binding_id: str) -> str:
    return user_whitelists_folder(user_id) + binding_id


def key_import_path(user_id: str, binding_id: str) -> str:
    """Which request made the last import into a binding's Transit key by a rotation, and its version."""
    return f"key-imports/{user_id}/{binding_id}"


def revocation_path(user_id: str, binding_id: str) -> str:
    """A tombstone (no secret) left by a revocation, so a redelivered revoke is answered, not refused."""
    return f"revocations/{user_id}/{binding_id}"


def sweep_marker_path(sweep_id: str) -> str:
    """Claimed (create-only) by the vault-writer instance that runs a key-health sweep, so it runs once."""
    return f"sweeps/{sweep_id}"


def sweep_progress_path(sweep_id: str) -> str:
    """How far a key-health sweep got, advanced (check-and-set) as each of its pages starts. Beside the claim, not in
    it: the claim's write time is the sweep's start (shared/adapters/vault/stores.py SweepClaims), and the mount keeps
    one version per key."""
    return f"sweep-progress/{sweep_id}"


# Names the key-health sweep running now (or the last one to run), taken with check-and-set by a sweep as it
# starts, so that one sweep runs at a time (shared/adapters/vault/stores.py SweepClaims.in_charge).
SWEEP_RUNNING_PATH = "sweep-running"


# One entry per claimed access key, under an HMAC of the key with the access-key-index key. A rotation of that key
# changes every path: claims are checked under every version still in use (shared/adapters/vault/stores.py).
ACCESS_KEY_INDEX_FOLDER = "index/access-keys/"


def access_key_index_path(access_key_hmac: str) -> str:
    """access_key_hmac: an HMAC as Transit gives it ("vault:v1:<base64>"), or the Base64 of its digest."""
    # ':' '/' '+' '=' are not welcome in a path segment.
    digest = access_key_hmac.rsplit(":", 1)[-1]
    return ACCESS_KEY_INDEX_FOLDER + digest.replace("+", "-").replace("/", "_").rstrip("=")
