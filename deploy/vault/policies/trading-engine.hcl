# trading-engine: the client that trades with the stored keys. Read-only.

# Read a stored binding, secret key included, to sign exchange requests.
path "hash7/data/bindings/*" {
  capabilities = ["read"]
}

# Read which symbols and IPs a binding is whitelisted for.
path "hash7/data/whitelists/*" {
  capabilities = ["read"]
}

# Sign the records it produces (shared/runtime/provenance.py): Ed25519 in Transit, the private key never leaves
# Vault, and no other role may sign as trading-engine.
path "transit/sign/event-trading-engine" {
  capabilities = ["update"]
}

# Read the public halves of every producer's signing key, to verify what it reads.
path "transit/keys/event-*" {
  capabilities = ["read"]
}
