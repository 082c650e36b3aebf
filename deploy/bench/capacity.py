"""The raw capacity of what one binding costs outside our services: the same Vault operations and the same
HTX (sandbox) calls the pipeline makes for a good key, done directly, without Kafka, many at once, from as
many processes as the pipeline has services. That is the practical limit for bindings on this machine; the
pipeline's throughput is measured against it."""

import asyncio
import multiprocessing
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import repeat

from pydantic import SecretStr

from deploy.bench.load import SandboxKey
from services.validator.inspection import inspect_key
from services.validator.verdict import KeyPolicy
from shared.adapters.exchange.port import ExchangeCredentials
from shared.adapters.htx.client import HtxClient
from shared.adapters.request_signing import LocalHmacSigner, RequestSigner
from shared.adapters.vault.client import VaultClient
from shared.adapters.vault.key_import import wrap_for_import
from shared.adapters.vault.layout import (
    ACCESS_KEY_INDEX_KEY,
    BINDING_SECRET_KEY,
    access_key_index_path,
    binding_path,
    revocation_path,
    whitelist_path,
)
from shared.adapters.vault.stores import ExchangeKeys
from shared.adapters.vault.transit_signer import TransitHmacSigner
from shared.runtime.config import Settings
from shared.runtime.logging import configure_logging

# Bindings in flight: the best of these is the limit (too few leaves the servers idle between calls).
CONCURRENCY_LEVELS = (24, 96)
# The pipeline's client work (hvac, requests, httpx) runs in four service processes. Done in one, the
# measure was that interpreter's limit, which the pipeline beat: it was no limit at all.
PROCESSES = 4
# The processes start together this long after they are asked to (each first imports and sets up).
START_MARGIN_S = 5.0


@dataclass(frozen=True)
class Capacity:
    bindings: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.bindings / self.seconds


# The signed HTX requests a good key's check makes (uid, api-key, accounts): what Vault signs per binding.
SIGNED_REQUESTS_PER_CHECK = 3


class DirectBinding:
    """One binding's Vault and HTX work, in the pipeline's order, with each service's own AppRole."""

    def __init__(self, settings: Settings) -> None:
        def vault_as(role: str) -> VaultClient:
            return VaultClient(settings.vault_connection(), settings.approle_credentials(role))

        self._app, self._validator = vault_as("app"), vault_as("validator")
        self._writer, self._whitelist = vault_as("vault-writer"), vault_as("whitelist")
        self._wrapping_key: str | None = None
        self._htx = HtxClient(settings.htx_base_url)
        # Only the calls matter here, not the verdict's thresholds.
        self._policy = KeyPolicy(tuple(settings.egress_ips), expiry_warning_days=14)

    async def aclose(self) -> None:
        await self._htx.aclose()

    async def htx_part(self, key: SandboxKey, user_id: str) -> None:
        """The validator's calls: timestamp (once a minute), uid, api-key, accounts, signed here rather than by
        Vault, so that this is HTX's part alone (HTX knows keys, not our users: user_id is not used)."""
        await self._inspect(key, LocalHmacSigner(key.secret_key))

    async def vault_part(self, key: SandboxKey, user_id: str) -> None:
        """Every Vault call of a new binding, with Vault signing as many texts as the key check sends to HTX."""
        await self._bind(key, user_id, self._sign_only)

    async def whole(self, key: SandboxKey, user_id: str) -> None:
        await self._bind(key, user_id, self._inspect)

    async def _inspect(self, key: SandboxKey, signer: RequestSigner) -> None:
        inspection = await inspect_key(self._htx, ExchangeCredentials(key.access_key, signer), self._policy)
        assert inspection.accepted, "a provisioned key must pass"

    @staticmethod
    async def _sign_only(key: SandboxKey, signer: RequestSigner) -> None:
        for n in range(SIGNED_REQUESTS_PER_CHECK):
            await signer.sign([f"GET\nsandbox\n/request/{n}\nAccessKeyId={key.access_key}"])

    async def _bind(self, key: SandboxKey, user_id: str,
                    check: Callable[[SandboxKey, RequestSigner], Awaitable[None]]) -> None:
        """The app's wrap and seal; the validator's unseal, key-check import, signing and deletion; the
        vault-writer's calls for a new binding (a revocation check, unseal, index claim, key import, a second
        revocation check, create-only write); the whitelist's check that the binding is there, then its create-only
        write."""
        if self._wrapping_key is None:
            self._wrapping_key = await self._app.wrapping_key()
        wrapped = SecretStr(wrap_for_import(self._wrapping_key, key.secret_key))
        sealed = await self._app.seal(BINDING_SECRET_KEY, wrapped, context=user_id)
        key_checks = ExchangeKeys(self._validator)
        wrapped_for_validator = await self._validator.unseal(BINDING_SECRET_KEY, sealed, user_id)
        try:
            await check(key, TransitHmacSigner(self._validator, await key_checks.import_for_check(
                user_id, user_id, wrapped_for_validator.get_secret_value())))
        finally:
            await key_checks.discard_check(user_id, user_id)
        path = binding_path(user_id, user_id)
        await self._writer.read(revocation_path(user_id, user_id))
        wrapped_for_writer = await self._writer.unseal(BINDING_SECRET_KEY, sealed, user_id)
        index = access_key_index_path(await self._writer.hmac(ACCESS_KEY_INDEX_KEY, key.access_key))
        await self._writer.write(index, {"user_id": user_id, "binding_id": user_id}, cas=0)
        stored = await ExchangeKeys(self._writer).store_new(user_id, user_id, wrapped_for_writer.get_secret_value())
        await self._writer.read(revocation_path(user_id, user_id))
        await self._writer.write(path, {"access_key": key.access_key, "exchange_key": stored.name,
                                        "exchange_key_version": stored.version}, cas=0)
        await self._whitelist.read_metadata(path)
        await self._whitelist.write(whitelist_path(user_id, user_id), {"pairs": ["btcusdt"]}, cas=0)


Part = Callable[[DirectBinding, SandboxKey, str], Awaitable[None]]


def measure(settings: Settings, keys: Sequence[SandboxKey], part: Part, concurrency: int) -> Capacity:
    """How long part takes for every key (each under a user of its own), concurrency at a time, spread over
    PROCESSES processes that start at the same moment."""
    start_at = time.time() + START_MARGIN_S
    run_id = uuid.uuid4().hex[:8]
    shares = [list(keys[n::PROCESSES]) for n in range(PROCESSES)]
    with ProcessPoolExecutor(PROCESSES, mp_context=multiprocessing.get_context("spawn")) as pool:
        finished_at = list(pool.map(_measure_share, repeat(settings), shares, repeat(part),
                                    repeat(max(1, concurrency // PROCESSES)), repeat(start_at),
                                    [f"{run_id}-{n}" for n in range(PROCESSES)]))
    return Capacity(len(keys), max(finished_at) - start_at)


def _measure_share(settings: Settings, keys: Sequence[SandboxKey], part: Part, concurrency: int, start_at: float,
                   run_id: str) -> float:
    """One process's share, from start_at; returns when it finished (wall-clock time)."""
    configure_logging("bench", "console", "WARNING")
    return asyncio.run(_run_share(settings, keys, part, concurrency, start_at, run_id))


async def _run_share(settings: Settings, keys: Sequence[SandboxKey], part: Part, concurrency: int, start_at: float,
                     run_id: str) -> float:
    direct = DirectBinding(settings)
    work = iter(enumerate(keys))

    async def caller() -> None:
        for index, key in work:
            await part(direct, key, f"direct-{run_id}-{index}")

    await asyncio.sleep(max(0.0, start_at - time.time()))
    try:
        await asyncio.gather(*(caller() for _ in range(concurrency)))
    finally:
        await direct.aclose()
    return time.time()
