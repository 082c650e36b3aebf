# trading-engine: the client that trades with the stored keys. Read-only.

# Read a stored binding, secret key included, to sign exchange requests.
path "hash7/data/bindings/*" {
  capabilities = ["read"]
}

# Read which symbols and IPs a binding is whitelisted for.
path "hash7/data/whitelists/*" {
  capabilities = ["read"]
}
