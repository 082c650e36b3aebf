# whitelist: keeps, per binding, the trading pairs the bot may trade.

# Write and read the whitelist records it owns, with check-and-set.
path "hash7/data/whitelists/*" {
  capabilities = ["create", "read", "update"]
}

# See that a binding exists (metadata only: never the binding's data, which holds the secret).
path "hash7/metadata/bindings/*" {
  capabilities = ["read"]
}

# Which exchange a stored binding's key is on, to judge its pairs by that exchange's list (no secret; the binding
# itself is not readable here).
path "hash7/data/binding-exchanges/*" {
  capabilities = ["read"]
}

# List a user's whitelists (ids only), to bound those waiting for a binding that is not stored.
path "hash7/metadata/whitelists/*" {
  capabilities = ["list"]
}

# See whether a binding was revoked (a tombstone holds no secret), so a whitelist request sent again after the
# revocation does not leave pairs waiting for a binding that will never come.
path "hash7/data/revocations/*" {
  capabilities = ["read"]
}
