"""The edges to the outside: Vault and the exchanges."""
