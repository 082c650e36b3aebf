# app: the Hash7 app wraps a user's exchange secret key for Vault and seals it for the user before submitting a
# binding (README.md#the-secrets-path). It never unseals, imports or signs.

# Vault's public RSA key that wraps secrets for import: only Vault can unwrap what it wraps.
path "transit/wrapping_key" {
  capabilities = ["read"]
}

# Seal with the derived binding-secret key; "update" only, since "create" would let encrypt re-create a missing key.
path "transit/encrypt/binding-secret" {
  capabilities = ["update"]
}
