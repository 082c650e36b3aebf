# validator: unseals the secret key in memory to test the binding against the exchange. It never stores it.

# Unseal the binding secret (the user id is the derivation context); "update" is how Transit grants decrypt.
path "transit/decrypt/binding-secret" {
  capabilities = ["update"]
}

# Read the binding a key-health recheck names, to check the key stored for it (never one an event carries).
path "hash7/data/bindings/*" {
  capabilities = ["read"]
}
