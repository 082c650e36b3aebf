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

# Seal the passphrase an OKX key comes with, for its user (derived binding-passphrase key): it never leaves the app in
# clear (README.md#the-passphrases-path). "update" only, as above.
path "transit/encrypt/binding-passphrase" {
  capabilities = ["update"]
}
