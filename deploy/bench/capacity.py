"""The raw capacity of what one binding costs outside our services: the same Vault operations and the same
HTX (sandbox) calls the pipeline makes for a good key, done directly, without Kafka, many at once. That is
the practical limit for bindings on this machine; the pipeline's throughput is measured against it."""

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from deploy.bench.load import SandboxKey
from shared.config import Settings
from shared.htx.client import HtxClient, HtxCredentials
from shared.htx.inspection import inspect_key
from shared.htx.verdict import KeyPolicy
from shared.vault import VaultClient
from shared.vault_layout import (
    ACCESS_KEY_INDEX_KEY,
    BINDING_SECRET_KEY,
    access_key_index_path,
    binding_path,
    revocation_path,
    whitelist_path,
)

# Bindings in flight: the best of these is the limit (too few leaves the servers idle between calls).
CONCURRENCY_LEVELS = (24, 96)
# hvac keeps 10 connections per client: more callers on one client would reconnect for every call.
CALLERS_PER_CLIENT = 8


@dataclass(frozen=True)
class Capacity:
    bindings: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.bindings / self.seconds


class DirectBinding:
    """One binding's Vault and HTX work, in the pipeline's order, with each service's own AppRole."""

    def __init__(self, settings: Settings) -> None:
        def vault_as(role: str) -> VaultClient:
            return VaultClient(settings.vault_addr, settings.approle_credentials(role), settings.vault_timeout_s)

        self._app, self._validator = vault_as("app"), vault_as("validator")
        self._writer, self._whitelist = vault_as("vault-writer"), vault_as("whitelist")
        self._htx = HtxClient(settings.htx_base_url)
        # Only the calls matter here, not the verdict's thresholds.
        self._policy = KeyPolicy(tuple(settings.egress_ips), expiry_warning_days=14)

    async def aclose(self) -> None:
        await self._htx.aclose()

    async def htx_part(self, key: SandboxKey, user_id: str) -> None:
        """The validator's calls: timestamp (once a minute), uid, api-key, accounts (HTX knows keys, not
        our users: user_id is not used)."""
        inspection = await inspect_key(self._htx, HtxCredentials(key.access_key, key.secret_key), self._policy)
        assert inspection.accepted, "a provisioned key must pass"

    async def vault_part(self, key: SandboxKey, user_id: str) -> None:
        """The app's seal, the validator's unseal, and the vault-writer's and whitelist's calls, as they make
        them for a new binding: the vault-writer checks for a revocation, then writes create-only; the whitelist
        checks the binding is still there."""
        sealed = await self._app.seal(BINDING_SECRET_KEY, key.secret_key, context=user_id)
        await self._validator.unseal(BINDING_SECRET_KEY, sealed, user_id)
        path = binding_path(user_id, user_id)
        await self._writer.read(revocation_path(user_id, user_id))
        secret = await self._writer.unseal(BINDING_SECRET_KEY, sealed, user_id)
        index = access_key_index_path(await self._writer.hmac(ACCESS_KEY_INDEX_KEY, key.access_key))
        await self._writer.write(index, {"user_id": user_id, "binding_id": user_id}, cas=0)
        await self._writer.write(path, {"access_key": key.access_key, "secret_key": secret.get_secret_value()}, cas=0)
        await self._whitelist.read_metadata(path)
        await self._whitelist.read(whitelist_path(user_id, user_id))
        await self._whitelist.write(whitelist_path(user_id, user_id), {"pairs": ["btcusdt"]}, cas=0)

    async def whole(self, key: SandboxKey, user_id: str) -> None:
        await self.htx_part(key, user_id)
        await self.vault_part(key, user_id)


Part = Callable[[DirectBinding, SandboxKey, str], Awaitable[None]]


async def measure(settings: Settings, keys: Sequence[SandboxKey], part: Part, concurrency: int) -> Capacity:
    """How long part takes for every key (each under a user of its own), concurrency at a time."""
    directs = [DirectBinding(settings) for _ in range(-(-concurrency // CALLERS_PER_CLIENT))]
    run_id = uuid.uuid4().hex[:8]
    work = iter(enumerate(keys))

    async def caller(direct: DirectBinding) -> None:
        for index, key in work:
            await part(direct, key, f"direct-{run_id}-{index}")

    started = time.monotonic()
    try:
        await asyncio.gather(*(caller(directs[lane % len(directs)]) for lane in range(concurrency)))
    finally:
        for direct in directs:
            await direct.aclose()
    return Capacity(len(keys), time.monotonic() - started)
