# trading-engine: the client that trades with the stored keys. It reads bindings and whitelists, and has Vault
# sign its exchange requests: it never holds a secret key (only, per order, an OKX key's passphrase).

# Read a stored binding: its access key and which Transit key version signs for it (the secret is not there).
path "hash7/data/bindings/*" {
  capabilities = ["read"]
}

# Read which symbols and IPs a binding is whitelisted for.
path "hash7/data/whitelists/*" {
  capabilities = ["read"]
}

# Sign exchange requests with a binding's key, inside Vault (HMAC only: no read, export or backup of the key).
path "transit/hmac/exchange-key-*" {
  capabilities = ["update"]
}

# Unseal a binding's passphrase (OKX) for each order: the exchange wants it in clear with the signed request, and the
# stored record holds it sealed for the user (README.md#the-passphrases-path).
path "transit/decrypt/binding-passphrase" {
  capabilities = ["update"]
}
