# app: the Hash7 app seals a user's exchange secret key before submitting a binding. It never unseals.

# Seal with the derived binding-secret key; "update" only, since "create" would let encrypt re-create a missing key.
path "transit/encrypt/binding-secret" {
  capabilities = ["update"]
}

# Sign the records it produces (shared/runtime/provenance.py): Ed25519 in Transit, the private key never leaves
# Vault, and no other role may sign as app.
path "transit/sign/event-app" {
  capabilities = ["update"]
}

# Read the public halves of every producer's signing key, to verify what it reads.
path "transit/keys/event-*" {
  capabilities = ["read"]
}
