# app: the Hash7 app seals a user's exchange secret key before submitting a binding. It never unseals.

# Seal with the derived binding-secret key; "update" only, since "create" would let encrypt re-create a missing key.
path "transit/encrypt/binding-secret" {
  capabilities = ["update"]
}
