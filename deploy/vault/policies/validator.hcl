# validator: proves a binding's key against the exchange, with Vault signing every request
# (README.md#the-secrets-path). It never holds the secret and never stores a binding. The bootstrap adds the grant
# on its key checks' keys (deploy/bootstrap/key_grants.py): import, read their versions, delete.

# Unseal what the app sealed (the user id is the derivation context): the secret wrapped for Vault, which only Vault
# can unwrap. "update" is how Transit grants decrypt.
path "transit/decrypt/binding-secret" {
  capabilities = ["update"]
}

# Unseal a key's passphrase (OKX), from the request or from the stored binding: the exchange wants it in clear on
# every request, so the validator holds it for the check alone (README.md#the-passphrases-path).
path "transit/decrypt/binding-passphrase" {
  capabilities = ["update"]
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
