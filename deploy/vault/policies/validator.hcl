# validator: unseals the secret key in memory to test the binding against the exchange. It never stores it.

# Unseal the binding secret (the user id is the derivation context); "update" is how Transit grants decrypt.
path "transit/decrypt/binding-secret" {
  capabilities = ["update"]
}

# Sign the records it produces (shared/runtime/provenance.py): Ed25519 in Transit, the private key never leaves
# Vault, and no other role may sign as validator.
path "transit/sign/event-validator" {
  capabilities = ["update"]
}

# Read the public halves of every producer's signing key, to verify what it reads.
path "transit/keys/event-*" {
  capabilities = ["read"]
}

# Read the binding a key-health recheck names, to check the key stored for it (never one an event carries).
path "hash7/data/bindings/*" {
  capabilities = ["read"]
}
