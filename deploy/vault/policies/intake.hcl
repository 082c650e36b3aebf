# intake: checks and forwards binding requests; the secret arrives already sealed and stays sealed, so it
# needs no Vault access at all. Deliberately empty: the AppRole token carries only Vault's default policy.
