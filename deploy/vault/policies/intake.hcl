# intake: checks and forwards binding requests; the secret arrives already sealed and stays sealed, so it
# needs no secret and no KV at all. Deliberately empty: the bootstrap adds what every role gets for records
# (signing its own, reading the producers' public keys: deploy/bootstrap/event_keys.py signing_policy).
