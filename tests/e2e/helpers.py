"""Helpers for end-to-end tests: fresh users and fresh sandbox keys, so tests never collide."""

import secrets
import uuid
from dataclasses import dataclass

from pydantic import SecretStr

from shared.contracts.exchanges import ExchangeName
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
    """A key as its user hands it to Hash7: what `bind` sends, and the exchange user (uid) owning it."""

    access_key: str
    secret_key: SecretStr
    uid: int
    exchange: ExchangeName = ExchangeName.HTX
    # OKX keys only (ExchangeName.needs_passphrase).
    passphrase: SecretStr | None = None


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


def _new_secret(length: int) -> str:
    """A fresh secret of length hex characters (upper case, as OKX's are; Bybit's sandbox takes any), registered
    for the leak scan."""
    secret = secrets.token_hex(length // 2 + 1)[:length].upper()
    SECRETS_USED.add(secret)
    return secret


def fresh_bybit_key(bybit_sandbox, like: str = "good", *, user: dict | None = None, **changes) -> Key:
    """A new Bybit key on the sandbox, a copy of the demo key noted `like` (deploy/sandbox/bybit/demo-scenario.json)
    on the same Bybit user, with a new API key and secret; changes: the sandbox key's fields (ips, permissions,
    read_only, valid_days...). A demo key whose user hands over a wrong secret (`offered_secret`) gets a new wrong
    one, which is what the returned key carries. user: the key goes instead to a new Bybit user, a copy of the demo
    key's with these fields changed (banned, common_banned...), so other tests' keys keep their account."""
    entry = dict(bybit_sandbox.key_entry(like))
    entry.update(api_key=f"H7E2E{secrets.token_hex(7).upper()}", secret=_new_secret(36), note=f"{like}-copy",
                 **changes)
    if entry.get("offered_secret"):
        entry["offered_secret"] = _new_secret(36)
    uid = _put_key(bybit_sandbox.admin, bybit_sandbox.user(like), entry, user)
    return Key(entry["api_key"], SecretStr(entry.get("offered_secret") or entry["secret"]), uid,
               exchange=ExchangeName.BYBIT)


def fresh_okx_key(okx_sandbox, like: str = "good", *, user: dict | None = None, **changes) -> Key:
    """A new OKX key on the sandbox, a copy of the demo key labelled `like` (deploy/sandbox/okx/demo-scenario.json)
    on the same OKX user, with a new API key, secret and passphrase; changes: the sandbox key's fields (perm, ip,
    frozen...). A demo key whose user mistypes the secret or passphrase (`handed_*`) gets a new mistyped one, which is
    what the returned key carries. user: the key goes instead to a new OKX user, a copy of the demo key's with these
    fields changed (status...)."""
    owner, demo = okx_sandbox.entry(like)
    entry = dict(demo)
    entry.update(api_key=str(uuid.uuid4()), secret_key=_new_secret(32), passphrase=_new_passphrase(),
                 label=f"{like}-copy", **changes)
    if entry.get("handed_secret_key"):
        entry["handed_secret_key"] = _new_secret(32)
    if entry.get("handed_passphrase"):
        entry["handed_passphrase"] = _new_passphrase()
    uid = _put_key(okx_sandbox.admin, owner, entry, user)
    return Key(entry["api_key"], SecretStr(entry.get("handed_secret_key") or entry["secret_key"]), uid,
               exchange=ExchangeName.OKX,
               passphrase=SecretStr(entry.get("handed_passphrase") or entry["passphrase"]))


def _put_key(admin, owner: dict, entry: dict, user: dict | None) -> int:
    """Put entry on the sandbox: on owner, or with user given on a new copy of owner with those fields changed. The
    uid it went to."""
    if user is None:
        admin.put_key(owner["uid"], entry)
        return int(owner["uid"])
    # Far from the demo scenarios' uids (Bybit 7000000x, OKX 447058923436195xx).
    uid = secrets.randbelow(10**8) + 9 * 10**8
    admin.put_user({**owner, "uid": uid, **user, "api_keys": [entry]})
    return uid


def _new_passphrase() -> str:
    """A fresh passphrase shaped like the demo scenario's (letters, digits and symbols; the sandbox compares it as
    given), registered for the leak scan."""
    passphrase = f"E2e-{secrets.token_hex(6)}!"
    SECRETS_USED.add(passphrase)
    return passphrase


async def bind(client, user: str, key: Key, **kwargs):
    """Bind key for user through the app's client, on the key's exchange (with its passphrase when it has one); the
    timeline up to its first terminal status."""
    kwargs.setdefault("exchange", key.exchange.value)
    if key.passphrase is not None:
        kwargs.setdefault("passphrase", key.passphrase)
    request_id = await client.bind(user, key.access_key, key.secret_key, **kwargs)
    return await client.wait_for(request_id, TERMINAL, WAIT_S)


def demo_key(sandbox, note: str) -> Key:
    entry = sandbox.key_entry(note)
    SECRETS_USED.add(entry["secret_key"])
    return Key(entry["access_key"], SecretStr(entry["secret_key"]), sandbox.user(note)["uid"])


def states(timeline) -> list[BindingState]:
    return [status.state for status in timeline]
