"""Vault: the AppRole client (the port and its hvac implementation), where things live, and the stores over it."""
