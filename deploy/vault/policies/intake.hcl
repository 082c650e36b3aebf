# intake: checks and forwards binding requests; the secret arrives already sealed and stays sealed, so it
# needs no secret at all: Vault only signs its records and gives it the producers' public keys.

# Sign the records it produces (shared/runtime/provenance.py): Ed25519 in Transit, the private key never leaves
# Vault, and no other role may sign as intake.
path "transit/sign/event-intake" {
  capabilities = ["update"]
}

# Read the public halves of every producer's signing key, to verify what it reads.
path "transit/keys/event-*" {
  capabilities = ["read"]
}
