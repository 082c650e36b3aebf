"""The services' Vault client: AppRole or JWT login, token renewal and re-login, typed errors, and every hvac call
run in a worker thread (hvac is synchronous; a blocked event loop would starve Kafka heartbeats)."""

import base64
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

import anyio
import hvac
import hvac.adapters
import requests
import structlog
from hvac import exceptions as hvac_errors
from pydantic import SecretStr
from requests.adapters import HTTPAdapter

from shared.adapters.vault.key_import import HMAC_KEY_IMPORT
from shared.adapters.vault.layout import JWT_AUTH_MOUNT, KV_MOUNT, TRANSIT_MOUNT
from shared.runtime.config import JwtLogin, VaultConnection, VaultLogin
from shared.runtime.errors import TransientError
from shared.runtime.metrics import VAULT_ERRORS, VAULT_SECONDS
from shared.runtime.tracing import calling

log = structlog.get_logger(__name__)
T = TypeVar("T")

# Renew when this fraction of the token's lifetime has passed (shared/adapters/vault/README.md#approle-and-tokens).
_RENEW_AT_FRACTION = 2 / 3
# What a failed TLS handshake with Vault means, in one line (requests' own message is OpenSSL's detail).
UNTRUSTED_CERTIFICATE = "Vault's TLS certificate is not trusted: set HASH7_VAULT_CACERT to the CA bundle that signed it"
REFUSED_HANDSHAKE = ("Vault refused the TLS handshake: if it requires a client certificate, set "
                     "HASH7_VAULT_CLIENT_CERT and HASH7_VAULT_CLIENT_KEY")
# Vault calls one process makes at once (one worker thread each), and the connections it keeps open for them:
# with fewer kept than threads, requests closes a connection after most calls and opens one for the next.
_CONCURRENT_CALLS = 40


class VaultUnavailable(TransientError):
    """Vault is down, sealed, unreachable or too slow."""


def tls_failure(error: requests.exceptions.SSLError) -> str:
    """What went wrong in a TLS handshake with Vault, and which setting fixes it. OpenSSL names a certificate that does
    not verify CERTIFICATE_VERIFY_FAILED; anything else is the server's refusal (a missing client certificate)."""
    return UNTRUSTED_CERTIFICATE if "CERTIFICATE_VERIFY_FAILED" in str(error) else REFUSED_HANDSHAKE


class VaultDenied(Exception):
    """Vault refused the operation even with a fresh token: a policy denial, never retried."""


class CasConflict(Exception):
    """A check-and-set write lost: the path is not at the version the writer read."""


class UnsealFailed(Exception):
    """Transit could not decrypt: wrong key, wrong context (another user) or not our ciphertext."""


class KeyExists(Exception):
    """An import named a Transit key that exists already."""


class ImportRefused(Exception):
    """Transit would not import: not a ciphertext wrapped with its wrapping key, or a secret of a size it refuses."""


class KeyMissing(Exception):
    """The Transit key (or the version) asked to sign does not exist: deleted by a revocation, or never imported."""


@dataclass(frozen=True)
class HmacBatch:
    """Raw HMAC-SHA256 digests from one Transit call, and Vault's id of that call, as its audit log records it."""

    digests: list[bytes]
    request_id: str


@dataclass(frozen=True)
class SigningKeys:
    """The public half of a Transit signing key: raw Ed25519 public keys by version, and the oldest version
    Vault still accepts (a rotation's older versions are retired by raising it)."""

    public_keys: dict[int, bytes]
    min_version: int

    def usable(self, version: int) -> bytes | None:
        return self.public_keys.get(version) if version >= self.min_version else None


@dataclass(frozen=True)
class KvEntry:
    data: dict[str, Any]
    version: int
    custom_metadata: dict[str, str]
    # Vault's id of the read, as its audit log records it: lets our audit events point at Vault's.
    request_id: str = ""
    # When Vault wrote this version (its own clock).
    written_at: datetime | None = None


class VaultPort(Protocol):
    """What the services need from Vault; VaultClient is the real one, tests may pass an in-memory one."""

    async def unseal(self, key: str, ciphertext: str, context: str) -> SecretStr: ...
    async def hmac(self, key: str, data: str) -> str: ...
    async def unsealed_problem(self) -> str | None: ...
    async def hmac_batch(self, key: str, version: int, texts: Sequence[str]) -> HmacBatch: ...
    async def import_hmac_key(self, key: str, ciphertext: str) -> None: ...
    async def import_hmac_key_version(self, key: str, ciphertext: str) -> None: ...
    async def key_version(self, key: str) -> int | None: ...
    async def live_versions(self, key: str) -> range: ...
    async def delete_key(self, key: str) -> None: ...
    async def sign(self, key: str, digests: Sequence[bytes]) -> list[str]: ...
    async def signing_keys(self, key: str) -> SigningKeys: ...
    async def read(self, path: str) -> KvEntry | None: ...
    async def read_metadata(self, path: str) -> dict[str, Any] | None: ...
    async def write(self, path: str, data: dict[str, Any], cas: int) -> int: ...
    async def list(self, path: str) -> list[str]: ...
    async def delete_all(self, path: str) -> None: ...


# The request ids of the Vault calls made in the current context, while someone asks (`vault_request_ids`).
_request_ids: ContextVar[list[str] | None] = ContextVar("vault_request_ids", default=None)


@contextmanager
def vault_request_ids() -> Iterator[list[str]]:
    """The request id of each Vault call made in this context and answered with a body, in order: Vault's audit
    log records each call under it. Logins and renewals are left out (they are no decision's). The calls run in
    worker threads, which see this list: anyio runs them in a copy of the caller's context. Vault answers a
    delete with no body, so a delete has no id here (its audit log entry is found by path and time)."""
    request_ids: list[str] = []
    token = _request_ids.set(request_ids)
    try:
        yield request_ids
    finally:
        _request_ids.reset(token)


class _RequestIdRecorder(hvac.adapters.JSONAdapter):
    def request(self, *args: Any, **kwargs: Any) -> Any:
        answer = super().request(*args, **kwargs)
        request_ids = _request_ids.get()
        if request_ids is not None and isinstance(answer, dict) and answer.get("request_id") and not answer.get("auth"):
            request_ids.append(str(answer["request_id"]))
        return answer


def hvac_client(connection: VaultConnection, token: SecretStr, session: requests.Session | None = None) -> hvac.Client:
    """An hvac client with exactly this token, connected as `connection` says (namespace, CA, client certificate).
    An empty token, not None: hvac would otherwise pick up VAULT_TOKEN or ~/.vault-token
    (shared/adapters/vault/README.md#client)."""
    session = session or requests.Session()
    # On the session, not only as hvac's arguments: given a session, hvac's adapter replaces its `verify` argument
    # with the session's (True by default), so a CA passed only as an argument would be ignored.
    session.verify = str(connection.cacert) if connection.cacert is not None else True
    client_cert = None
    if connection.client_cert is not None and connection.client_key is not None:
        client_cert = (str(connection.client_cert), str(connection.client_key))
        session.cert = client_cert
    # hvac's stubs say int, but it hands the timeout to requests, which takes float seconds.
    return hvac.Client(url=connection.addr, token=token.get_secret_value(),
                       timeout=connection.timeout_s,  # type: ignore[arg-type]
                       verify=session.verify, cert=client_cert, namespace=connection.namespace,
                       session=session, adapter=_RequestIdRecorder)


class VaultClient:
    """One identity (an AppRole, or a JWT role). Safe to share between concurrent handlers of one process."""

    def __init__(self, connection: VaultConnection, login: VaultLogin) -> None:
        session = requests.Session()
        # The address is given: without this, requests reads proxy variables and ~/.netrc on every call,
        # a fifth of the vault-writer's CPU under load.
        session.trust_env = False
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=_CONCURRENT_CALLS)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._hvac = hvac_client(connection, SecretStr(""), session)
        self._identity = login
        self._login_lock = threading.Lock()
        self._threads = anyio.CapacityLimiter(_CONCURRENT_CALLS)
        self._renew_after = 0.0
        self._expires_at = 0.0
        # The lease a login gives (the role's token TTL); a renewal that gives less has reached the max TTL.
        self._login_lease_s = 0

    # ---- token lifecycle --------------------------------------------------------------------------------

    def _login(self) -> None:
        # Each reads its file again at each login: a rotated secret id replaces its file (deploy/admin/approle.py),
        # and the kubelet replaces a projected service-account token before it expires.
        if isinstance(self._identity, JwtLogin):
            auth = self._hvac.auth.jwt.jwt_login(role=self._identity.role, jwt=self._identity.token(),
                                                 path=JWT_AUTH_MOUNT)["auth"]
        else:
            credentials = self._identity.current()
            auth = self._hvac.auth.approle.login(
                role_id=credentials.role_id,
                secret_id=credentials.secret_id.get_secret_value(),
                use_token=True,
            )["auth"]
        self._login_lease_s = auth["lease_duration"]
        self._set_lease(auth["lease_duration"])
        log.info("vault_login", policies=auth.get("policies"), ttl_s=auth["lease_duration"])

    def _set_lease(self, lease_s: int) -> None:
        now = time.monotonic()
        self._renew_after = now + lease_s * _RENEW_AT_FRACTION
        self._expires_at = now + lease_s

    def _ensure_token(self) -> None:
        with self._login_lock:
            now = time.monotonic()
            if now < self._renew_after:
                return
            if now < self._expires_at:
                try:
                    auth = self._hvac.auth.token.renew_self()["auth"]
                    # Near its max TTL Vault still renews, but only up to it, with a shorter lease: log in again
                    # now, rather than renew until Vault refuses ("past the max TTL").
                    if auth["lease_duration"] >= self._login_lease_s:
                        self._set_lease(auth["lease_duration"])
                        return
                except hvac_errors.VaultError:
                    log.info("vault_token_renewal_failed_relogin")
            self._login()

    def _force_relogin(self) -> None:
        with self._login_lock:
            self._login()

    def _call(self, operation: Callable[[], T]) -> T:
        """Run one hvac operation with a valid token. An expired token answers 403 like a policy denial
        (shared/adapters/vault/README.md#approle-and-tokens), so a 403 triggers one re-login before it counts as
        a denial."""
        try:
            self._ensure_token()
            try:
                return operation()
            except hvac_errors.Forbidden:
                self._force_relogin()
                try:
                    return operation()
                except hvac_errors.Forbidden:
                    raise VaultDenied("Vault denied the operation (policy)") from None
        except requests.exceptions.SSLError as exc:
            raise VaultUnavailable(tls_failure(exc)) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise VaultUnavailable(f"Vault unreachable ({type(exc).__name__})") from None
        except (hvac_errors.VaultDown, hvac_errors.InternalServerError, hvac_errors.BadGateway,
                hvac_errors.RateLimitExceeded) as exc:
            raise VaultUnavailable(f"Vault unavailable ({type(exc).__name__})") from None

    async def _run(self, operation: Callable[[], T]) -> T:
        # Each public method runs a local function of its own: its qualified name's second part is the method's
        # name ("VaultClient.seal.<locals>.encrypt" → "seal"), a bounded label for the metrics.
        name = operation.__qualname__.split(".")[1] if "." in operation.__qualname__ else "other"
        started = time.monotonic()
        try:
            with calling("vault", name):
                return await anyio.to_thread.run_sync(self._call, operation, limiter=self._threads)
        except Exception as exc:
            VAULT_ERRORS.labels(name, type(exc).__name__).inc()
            raise
        finally:
            VAULT_SECONDS.labels(name).observe(time.monotonic() - started)

    async def check(self) -> None:
        """Log in now, so a bad credential is found at start-up rather than on the first message."""
        await self._run(lambda: None)

    async def unsealed_problem(self) -> str | None:
        """None when Vault answers and is unsealed, else what is wrong (a readiness check: no token needed)."""
        def read() -> str | None:
            try:
                sealed = bool(self._hvac.sys.read_seal_status()["sealed"])
            except (requests.RequestException, hvac_errors.VaultError) as exc:
                return f"unreachable ({type(exc).__name__})"
            return "sealed" if sealed else None

        return await anyio.to_thread.run_sync(read, limiter=self._threads)

    # ---- Transit ----------------------------------------------------------------------------------------

    async def seal(self, key: str, plaintext: SecretStr, context: str) -> str:
        def encrypt() -> str:
            return str(self._hvac.secrets.transit.encrypt_data(
                name=key, plaintext=_b64(plaintext.get_secret_value()), context=_b64(context),
                mount_point=TRANSIT_MOUNT,
            )["data"]["ciphertext"])

        return await self._run(encrypt)

    async def unseal(self, key: str, ciphertext: str, context: str) -> SecretStr:
        def decrypt() -> SecretStr:
            try:
                answer = self._hvac.secrets.transit.decrypt_data(
                    name=key, ciphertext=ciphertext, context=_b64(context), mount_point=TRANSIT_MOUNT
                )
            except hvac_errors.InvalidRequest:
                # Wrong context, foreign or corrupted ciphertext: Vault's text is not passed on, it may
                # quote the input.
                raise UnsealFailed("the sealed value cannot be opened for this user") from None
            return SecretStr(base64.b64decode(answer["data"]["plaintext"]).decode())

        return await self._run(decrypt)

    async def hmac(self, key: str, data: str) -> str:
        def generate() -> str:
            return str(self._hvac.secrets.transit.generate_hmac(
                name=key, hash_input=_b64(data), algorithm="sha2-256", mount_point=TRANSIT_MOUNT
            )["data"]["hmac"])

        return await self._run(generate)

    async def hmac_batch(self, key: str, version: int, texts: Sequence[str]) -> HmacBatch:
        """HMAC-SHA256 every text with version `version` of Transit key `key`, in one call. The version is named,
        never "the latest": a version imported for a rotation not yet stored must not sign."""

        def generate() -> HmacBatch:
            try:
                # hvac's generate_hmac has no batch_input.
                answer = _body(self._hvac.write_data(f"{TRANSIT_MOUNT}/hmac/{key}/sha2-256", data={
                    "key_version": version, "batch_input": [{"input": _b64(text)} for text in texts]}))
            except hvac_errors.InvalidRequest:
                # The only refusal well-formed input meets: no such key or version (Vault's text names the key).
                raise KeyMissing(f"Transit key {key} has no version {version}") from None
            results = answer["data"]["batch_results"]
            if any(result.get("error") for result in results):
                raise KeyMissing(f"Transit key {key} has no version {version}")
            # The request id is what joins our audit events to Vault's audit log: an answer without one is not Vault's.
            if not answer.get("request_id"):
                raise VaultUnavailable("Vault answered a signing call without a request id")
            return HmacBatch([base64.b64decode(str(result["hmac"]).rsplit(":", 1)[-1]) for result in results],
                             str(answer["request_id"]))

        return await self._run(generate)

    async def wrapping_key(self) -> str:
        """Vault's public RSA key that wraps secrets for import (PEM; shared/adapters/vault/key_import.py)."""

        def read() -> str:
            return str(_body(self._hvac.read(f"{TRANSIT_MOUNT}/wrapping_key"))["data"]["public_key"])

        return await self._run(read)

    async def import_hmac_key(self, key: str, ciphertext: str) -> None:
        """Create Transit key `key` of type hmac from an import ciphertext: non-exportable, no plaintext backup
        (Transit's defaults, which the policies forbid changing: shared/adapters/vault/README.md#exchange-keys)."""

        def create() -> None:
            try:
                self._hvac.write_data(f"{TRANSIT_MOUNT}/keys/{key}/import",
                                      data={"ciphertext": ciphertext, **HMAC_KEY_IMPORT})
            # Transit answers every import refusal with a 500 (shared/adapters/vault/README.md#exchange-keys).
            except (hvac_errors.InvalidRequest, hvac_errors.InternalServerError) as exc:
                if "existing key" in str(exc):
                    raise KeyExists(f"Transit key {key} exists") from None
                raise ImportRefused(f"Transit refused to import {key}") from None

        await self._run(create)

    async def import_hmac_key_version(self, key: str, ciphertext: str) -> None:
        """Add a version to imported Transit key `key` (a rotation's new secret)."""

        def add() -> None:
            try:
                self._hvac.write_data(f"{TRANSIT_MOUNT}/keys/{key}/import_version", data={"ciphertext": ciphertext})
            except (hvac_errors.InvalidRequest, hvac_errors.InternalServerError):
                raise ImportRefused(f"Transit refused to import a version of {key}") from None

        await self._run(add)

    async def live_versions(self, key: str) -> range:
        """The versions of Transit key `key` still in use, from its min_decryption_version to its latest (none
        when there is no such key). Reads metadata only."""

        def read() -> range:
            try:
                answer = self._hvac.secrets.transit.read_key(name=key, mount_point=TRANSIT_MOUNT)
            except hvac_errors.InvalidPath:
                return range(0)
            return range(int(answer["data"]["min_decryption_version"]), int(answer["data"]["latest_version"]) + 1)

        return await self._run(read)

    async def key_version(self, key: str) -> int | None:
        """The latest version of Transit key `key`; None when there is no such key. Reads metadata only."""
        versions = await self.live_versions(key)
        return versions[-1] if versions else None

    async def delete_key(self, key: str) -> None:
        """Destroy Transit key `key`, every version; nothing when there is none. Deletion is allowed on this key
        alone, just before (Transit refuses to delete a key without it)."""

        def delete() -> None:
            try:
                self._hvac.secrets.transit.update_key_configuration(name=key, deletion_allowed=True,
                                                                    mount_point=TRANSIT_MOUNT)
            except (hvac_errors.InvalidPath, hvac_errors.InvalidRequest):
                return
            self._hvac.secrets.transit.delete_key(name=key, mount_point=TRANSIT_MOUNT)

        await self._run(delete)

    async def sign(self, key: str, digests: Sequence[bytes]) -> list[str]:
        """Sign every digest with the latest version of Transit key `key`, in one call (`vault:vN:<base64>` each)."""

        def sign_batch() -> list[str]:
            answer = self._hvac.secrets.transit.sign_data(
                name=key, batch_input=[{"input": base64.b64encode(digest).decode()} for digest in digests],
                mount_point=TRANSIT_MOUNT,
            )
            results = answer["data"]["batch_results"]
            failed = [result["error"] for result in results if result.get("error")]
            if failed:
                raise VaultDenied(f"Transit refused to sign with {key}: {failed[0]}")
            return [str(result["signature"]) for result in results]

        return await self._run(sign_batch)

    async def signing_keys(self, key: str) -> SigningKeys:
        def read_public_keys() -> SigningKeys:
            try:
                data = self._hvac.secrets.transit.read_key(name=key, mount_point=TRANSIT_MOUNT)["data"]
            except hvac_errors.InvalidPath:
                return SigningKeys({}, 0)
            return SigningKeys(
                {int(version): base64.b64decode(entry["public_key"]) for version, entry in data["keys"].items()
                 if entry.get("public_key")},
                int(data.get("min_decryption_version") or 1),
            )

        return await self._run(read_public_keys)

    # ---- KV v2 ------------------------------------------------------------------------------------------

    async def read(self, path: str) -> KvEntry | None:
        """The latest live version at path, or None when there is none (absent or deleted)."""

        def read() -> KvEntry | None:
            try:
                answer = self._hvac.secrets.kv.v2.read_secret_version(
                    path=path, mount_point=KV_MOUNT, raise_on_deleted_version=False
                )
            except hvac_errors.InvalidPath:
                return None
            if answer["data"]["data"] is None:
                return None
            metadata = answer["data"]["metadata"]
            return KvEntry(answer["data"]["data"], metadata["version"], metadata.get("custom_metadata") or {},
                           answer.get("request_id", ""), datetime.fromisoformat(metadata["created_time"]))

        return await self._run(read)

    async def read_metadata(self, path: str) -> dict[str, Any] | None:
        def read() -> dict[str, Any] | None:
            try:
                answer = self._hvac.secrets.kv.v2.read_secret_metadata(path=path, mount_point=KV_MOUNT)
                metadata: dict[str, Any] = answer["data"]
                return metadata
            except hvac_errors.InvalidPath:
                return None

        return await self._run(read)

    async def write(self, path: str, data: dict[str, Any], cas: int) -> int:
        """Write data as the next version if path is at version cas (0 = must not exist); returns the new
        version, or raises CasConflict, on write-once paths too."""

        def write() -> int:
            try:
                answer = self._hvac.secrets.kv.v2.create_or_update_secret(
                    path=path, secret=data, cas=cas, mount_point=KV_MOUNT
                )
            except hvac_errors.InvalidRequest as exc:
                if "check-and-set" in str(exc):
                    raise CasConflict(f"{path} is not at version {cas}") from None
                raise
            return int(answer["data"]["version"])

        try:
            return await self._run(write)
        except VaultDenied:
            # A policy that grants create and no update (a write-once path) makes Vault refuse a create-only
            # write to a path that exists as a denial, not a check-and-set failure. To the caller it is the
            # conflict it is; a write to a path that is not there (or not readable) stays a denial.
            if cas == 0 and await self.read(path) is not None:
                raise CasConflict(f"{path} already exists") from None
            raise

    async def list(self, path: str) -> list[str]:
        """The keys directly under path ("name" for a secret, "name/" for a folder); [] when there are none."""

        def list_keys() -> list[str]:
            try:
                keys: list[str] = self._hvac.secrets.kv.v2.list_secrets(path=path, mount_point=KV_MOUNT)["data"]["keys"]
                return keys
            except hvac_errors.InvalidPath:
                return []

        return await self._run(list_keys)

    async def delete_all(self, path: str) -> None:
        """Delete the metadata and every version at path (nothing is left to undelete)."""

        def delete() -> None:
            self._hvac.secrets.kv.v2.delete_metadata_and_all_versions(path=path, mount_point=KV_MOUNT)

        await self._run(delete)


def _body(answer: object) -> dict[str, Any]:
    """The JSON of an answer that has one (hvac returns the raw response for a 204:
    shared/adapters/vault/README.md#client)."""
    if not isinstance(answer, dict):
        raise VaultUnavailable("Vault answered without the data asked for")
    return answer


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
