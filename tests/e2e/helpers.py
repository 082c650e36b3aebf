"""Helpers for end-to-end tests: fresh users and fresh sandbox keys, so tests never collide."""

import secrets
import uuid
from dataclasses import dataclass

from pydantic import SecretStr

from shared.contracts.states import BindingState

# Every secret a test hands to the system is recorded here, so the last test can prove none leaked.
SECRETS_USED: set[str] = set()
# Plaintext secrets a test itself published on binding.requested, as a broken app would: they may be found
# there, and nowhere else.
PLAINTEXT_PUBLISHED: set[str] = set()
TERMINAL = frozenset({BindingState.ACTIVE, BindingState.AWAITING_WHITELIST, BindingState.REJECTED,
                      BindingState.EXPIRING, BindingState.REVOKED})
WAIT_S = 60.0


def new_user() -> str:
    return f"user-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class Key:
    access_key: str
    secret_key: SecretStr
    uid: int


def _copy_of_demo_key(sandbox, like: str, note: str, **changes) -> dict:
    """The demo key noted `like`, with new access and secret keys (the secret registered for the leak scan)."""
    entry = dict(sandbox.key_entry(like))
    entry.update(access_key="-".join(secrets.token_hex(4) for _ in range(4)),
                 secret_key="-".join(secrets.token_hex(4) for _ in range(4)), note=note, **changes)
    SECRETS_USED.add(entry["secret_key"])
    return entry


def _key(entry: dict, uid: int) -> Key:
    return Key(entry["access_key"], SecretStr(entry["secret_key"]), uid)


def fresh_key(sandbox, like: str = "good", **changes) -> Key:
    """A new HTX key on the sandbox, a copy of the demo key noted `like`, on the same HTX user."""
    entry = _copy_of_demo_key(sandbox, like, f"{like}-copy", **changes)
    uid = sandbox.user(like)["uid"]
    sandbox.admin.put_key(uid, entry)
    return _key(entry, uid)


def fresh_account_key(sandbox, like: str = "good") -> tuple[Key, int]:
    """A new HTX user with its own spot account and one key like the demo key `like`: (key, account id), for
    tests that change the account without touching other tests' keys."""
    uid = secrets.randbelow(10**8) + 10**9
    account_id = uid * 10
    entry = _copy_of_demo_key(sandbox, like, f"{like}-own-account")
    sandbox.admin.put_user({"uid": uid, "parent_uid": None, "api_keys": [entry],
                            "accounts": [{"id": account_id, "type": "spot", "subtype": "", "state": "working"}]})
    return _key(entry, uid), account_id


async def bind(client, user: str, key: Key, **kwargs):
    """Bind key for user through the app's client; the timeline up to its first terminal status."""
    request_id = await client.bind(user, key.access_key, key.secret_key, **kwargs)
    return await client.wait_for(request_id, TERMINAL, WAIT_S)


def demo_key(sandbox, note: str) -> Key:
    entry = sandbox.key_entry(note)
    SECRETS_USED.add(entry["secret_key"])
    return Key(entry["access_key"], SecretStr(entry["secret_key"]), sandbox.user(note)["uid"])


def states(timeline) -> list[BindingState]:
    return [status.state for status in timeline]
