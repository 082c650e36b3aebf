# ops: `hash7-admin` acting for the people who run the system. It finds the bindings an emergency revocation
# must end (deploy/admin/revocation.py), and signs the audit events of what it does (the bootstrap appends that
# grant from the routing table). It reads no binding, no secret and no whitelist, and writes nothing.

# List one user's bindings (binding ids only, never a record); not the folder of every user.
path "hash7/metadata/bindings/+/" {
  capabilities = ["list"]
}

# HMAC an access key to find its entry in the uniqueness index, with the index key's latest version and with
# each older version still in use (which versions those are: the key's settings, never its material), and read
# which binding holds it (shared/adapters/vault/stores.py AccessKeyIndex).
path "transit/hmac/access-key-index" {
  capabilities = ["update"]
}
path "transit/hmac/access-key-index/sha2-256" {
  capabilities = ["update"]
}
path "transit/keys/access-key-index" {
  capabilities = ["read"]
}
path "hash7/data/index/access-keys/*" {
  capabilities = ["read"]
}
