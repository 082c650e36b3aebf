# vault-writer: the only writer of bindings and of the access-key index; it also removes them on revoke. It imports
# each binding's secret into the binding's own Transit key and deletes that key on revoke, but never signs with it
# (README.md#the-secrets-path). The bootstrap adds the grant on the bindings' keys (deploy/bootstrap/key_grants.py):
# import (a version too), read their versions, delete.

# Unseal what the app sealed (the user id is the context): the secret wrapped for Vault, which only Vault can unwrap.
path "transit/decrypt/binding-secret" {
  capabilities = ["update"]
}

# No grant on transit/*/binding-passphrase: a key's passphrase (OKX) is stored as the ciphertext that came, never
# opened here (README.md#the-passphrases-path).

# HMAC an access key for the uniqueness index, so the index never holds an access key in clear; after a rotation
# of the index key, also with each older version still in use, and read which versions those are (its settings,
# never its material): claims made before the rotation still count (shared/adapters/vault/stores.py AccessKeyIndex).
path "transit/hmac/access-key-index" {
  capabilities = ["update"]
}
path "transit/hmac/access-key-index/sha2-256" {
  capabilities = ["update"]
}
path "transit/keys/access-key-index" {
  capabilities = ["read"]
}

# Write a binding with check-and-set, and read it back to tell a redelivered write from a conflict.
path "hash7/data/bindings/*" {
  capabilities = ["create", "read", "update"]
}

# Read a binding's versions before a write; delete every version of a revoked binding; list the stored
# bindings for a key-health sweep (a list shows user and binding ids only). No metadata write, destroy or
# undelete: the mount keeps one version per key, so a rotation's write itself removes the replaced secret,
# and a key's own max_versions (which could keep it) is not ours to raise (shared/adapters/vault/README.md#kv-history).
path "hash7/metadata/bindings/*" {
  capabilities = ["read", "delete", "list"]
}

# Note which rotation imports which version of a binding's key, so a rotation delivered again never imports twice
# (shared/adapters/vault/stores.py ExchangeKeys), and drop the note with the key on revoke.
path "hash7/data/key-imports/*" {
  capabilities = ["create", "read", "update"]
}
path "hash7/metadata/key-imports/*" {
  capabilities = ["delete"]
}

# Claim an access key in the index with check-and-set, and read the claim to spot a duplicate.
path "hash7/data/index/access-keys/*" {
  capabilities = ["create", "read", "update"]
}

# Release a revoked binding's access-key claim; list the claims, to move each under a rotated index key
# (hash7-admin rotate-transit, deploy/admin/rotation.py, runs as the vault-writer).
path "hash7/metadata/index/access-keys/*" {
  capabilities = ["delete", "list"]
}

# Drop a revoked binding's whitelist record (its contents are never read here).
path "hash7/metadata/whitelists/*" {
  capabilities = ["delete"]
}

# Leave (and look up) a revocation tombstone, so a redelivered revoke is answered instead of refused and a
# redelivered validation of a revoked binding does not store it again.
# No "update": a tombstone is written once and never changed.
path "hash7/data/revocations/*" {
  capabilities = ["create", "read"]
}

# Key-health sweep: claim a sweep once (create-only), so several instances never sweep twice.
path "hash7/data/sweeps/*" {
  capabilities = ["create", "read"]
}

# Key-health sweep: note how far a sweep got as each page starts (check-and-set), so a page redelivered after a
# crash is redone and a copy of a page the sweep has passed is skipped (services/vault_writer/handlers.py).
path "hash7/data/sweep-progress/*" {
  capabilities = ["create", "read", "update"]
}

# Key-health sweep: name the sweep running now as it starts (check-and-set), so that one sweep runs at a time.
path "hash7/data/sweep-running" {
  capabilities = ["create", "read", "update"]
}
