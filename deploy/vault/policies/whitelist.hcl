# whitelist: keeps, per binding, the trading pairs the bot may trade.

# Write and read the whitelist records it owns, with check-and-set.
path "hash7/data/whitelists/*" {
  capabilities = ["create", "read", "update"]
}

# See that a binding exists (metadata only: never the binding's data, which holds the secret).
path "hash7/metadata/bindings/*" {
  capabilities = ["read"]
}

# Sign the records it produces (shared/runtime/provenance.py): Ed25519 in Transit, the private key never leaves
# Vault, and no other role may sign as whitelist.
path "transit/sign/event-whitelist" {
  capabilities = ["update"]
}

# Read the public halves of every producer's signing key, to verify what it reads.
path "transit/keys/event-*" {
  capabilities = ["read"]
}
