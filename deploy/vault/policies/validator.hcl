# validator: proves a binding's key against the exchange, with Vault signing every request
# (README.md#the-secrets-path). It never holds the secret and never stores a binding.

# Unseal what the app sealed (the user id is the derivation context): the secret wrapped for Vault, which only Vault
# can unwrap. "update" is how Transit grants decrypt.
path "transit/decrypt/binding-secret" {
  capabilities = ["update"]
}

# Import a request's secret into a key-check key of its own, read its version and delete it once the verdict is in
# (deletion_allowed is set on that key alone, just before). Only those parameters are allowed: the key stays
# non-exportable without a plaintext backup, and no version can be trimmed or retired.
path "transit/keys/key-check-*" {
  capabilities = ["read", "update", "delete"]
  allowed_parameters = {
    "ciphertext"       = []
    "type"             = ["hmac"]
    "hash_function"    = ["SHA256"]
    "deletion_allowed" = [true]
  }
}

# Sign the key check's exchange requests.
path "transit/hmac/key-check-*" {
  capabilities = ["update"]
}

# Sign a key-health recheck's exchange requests with the key stored for the binding.
path "transit/hmac/exchange-key-*" {
  capabilities = ["update"]
}

# Read the binding a key-health recheck names, to check the key stored for it (never one an event carries).
path "hash7/data/bindings/*" {
  capabilities = ["read"]
}
