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


def fresh_key(sandbox, like: str = "good", **changes) -> Key:
    """A new HTX key on the sandbox, a copy of the demo key noted `like` with its own access/secret keys."""
    entry = dict(sandbox.key_entry(like))
    access_key = "-".join(secrets.token_hex(4) for _ in range(4))
    secret_key = "-".join(secrets.token_hex(4) for _ in range(4))
    entry.update(access_key=access_key, secret_key=secret_key, note=f"{like}-copy", **changes)
    uid = sandbox.user(like)["uid"]
    sandbox.admin.put_key(uid, entry)
    SECRETS_USED.add(secret_key)
    return Key(access_key, SecretStr(secret_key), uid)


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
