"""Many bindings through a running pipeline, for the benchmark and the fault tests.

- Each binding gets an exchange user and key of its own on that exchange's sandbox: HTX, Bybit and OKX limit
  requests per UID, and real users each have their own. The fault tests mix the three exchanges in one stream.
- Requests are sealed before the clock starts, then submitted at a chosen pace.
- One reader follows binding.status and records every status with the time it arrived. (Waiting request by
  request with `BindingClient.wait_for` would re-read the whole topic for each one.)
"""

import asyncio
import itertools
import secrets
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from pydantic import SecretStr

from deploy.sandbox.common.admin_client import SandboxAdmin
from shared.clients.binding_client import BindingClient
from shared.contracts.events import BindingRequested, BindingStatus
from shared.contracts.exchanges import ExchangeName
from shared.contracts.states import BIND_OUTCOME

LOAD_PAIRS = ("btcusdt",)
# Sealing is a Transit call each; a few at a time keeps Vault busy within the client's pool of connections.
_SEALING_CONCURRENCY = 8
# Far above any scenario's UIDs, and distinct for every key this process provisions.
_uids = itertools.count(700_000_000)


@dataclass(frozen=True)
class SandboxKey:
    uid: int
    access_key: str
    secret_key: SecretStr
    exchange: ExchangeName = ExchangeName.HTX
    # OKX's third credential (shared/adapters/okx/README.md); None on the other exchanges.
    passphrase: SecretStr | None = None


def _random_key() -> str:
    return "-".join(secrets.token_hex(4) for _ in range(4))


def provision_good_keys(sandbox: SandboxAdmin, count: int, egress_ips: Sequence[str],
                        keys_per_user: int = 1) -> list[SandboxKey]:
    """count keys that pass every check (Read + Trade, bound to exactly our egress IPs, no expiry), on new HTX
    users with a working spot account each, keys_per_user keys to a user (HTX's rate limits are per user)."""
    keys: list[SandboxKey] = []
    while len(keys) < count:
        uid = next(_uids)
        user_keys = [SandboxKey(uid, _random_key(), SecretStr(_random_key()))
                     for _ in range(min(keys_per_user, count - len(keys)))]
        sandbox.put_user({
            "uid": uid,
            "accounts": [{"id": uid, "type": "spot", "state": "working"}],
            "api_keys": [{"access_key": key.access_key, "secret_key": key.secret_key.get_secret_value(),
                          "permission": "readOnly,trade", "ip_addresses": ",".join(egress_ips)}
                         for key in user_keys],
        })
        keys.extend(user_keys)
    return keys


def provision_good_bybit_keys(sandbox: SandboxAdmin, count: int, egress_ips: Sequence[str]) -> list[SandboxKey]:
    """count Bybit keys that pass every check (read-write with Spot trade, bound to exactly our egress IPs, so never
    expiring), each on a new Bybit user (deploy/sandbox/bybit/scenario.py BybitUser)."""
    keys = []
    for _ in range(count):
        key = SandboxKey(next(_uids), _random_key(), SecretStr(_random_key()), ExchangeName.BYBIT)
        sandbox.put_user({"uid": key.uid, "api_keys": [{
            "api_key": key.access_key, "secret": key.secret_key.get_secret_value(), "read_only": 0,
            "permissions": {"Spot": ["SpotTrade"]}, "ips": list(egress_ips), "valid_days": None}]})
        keys.append(key)
    return keys


def provision_good_okx_keys(sandbox: SandboxAdmin, count: int, egress_ips: Sequence[str]) -> list[SandboxKey]:
    """count OKX keys that pass every check (read and trade, bound to exactly our egress IPs), each with its own
    passphrase, on a new OKX main account (deploy/sandbox/okx/scenario.py OkxUser)."""
    keys = []
    for _ in range(count):
        passphrase = SecretStr(_random_key())
        key = SandboxKey(next(_uids), _random_key(), SecretStr(_random_key()), ExchangeName.OKX, passphrase)
        sandbox.put_user({"uid": key.uid, "api_keys": [{
            "api_key": key.access_key, "secret_key": key.secret_key.get_secret_value(),
            "passphrase": passphrase.get_secret_value(), "perm": "read_only,trade", "ip": ",".join(egress_ips)}]})
        keys.append(key)
    return keys


async def seal_requests(client: BindingClient, keys: Iterable[SandboxKey],
                        pairs: Sequence[str] = LOAD_PAIRS) -> list[BindingRequested]:
    """One binding request per key, each for a new user (intake limits attempts per user), sealed now."""
    gate = asyncio.Semaphore(_SEALING_CONCURRENCY)

    async def seal(key: SandboxKey) -> BindingRequested:
        async with gate:
            return await client.binding_request(f"load-{uuid.uuid4().hex[:16]}", key.access_key, key.secret_key,
                                                exchange=key.exchange, passphrase=key.passphrase,
                                                trading_pairs=list(pairs))

    return list(await asyncio.gather(*(seal(key) for key in keys)))


class Submission:
    """Submits requests in order, at rate_per_s or (None) as fast as the broker takes them, and records when
    each went out (time.monotonic())."""

    def __init__(self, client: BindingClient, requests: Sequence[BindingRequested],
                 rate_per_s: float | None = None) -> None:
        self._client = client
        self._requests = requests
        self._interval_s = 1 / rate_per_s if rate_per_s else 0.0
        self.submitted_at: dict[str, float] = {}

    async def run(self) -> None:
        started = time.monotonic()
        for index, request in enumerate(self._requests):
            # Paced against the start, not the previous send: a slow send does not lower the offered rate.
            if (ahead_s := started + index * self._interval_s - time.monotonic()) > 0:
                await asyncio.sleep(ahead_s)
            await self._client.submit(request)
            self.submitted_at[request.request_id] = time.monotonic()

    async def reached(self, count: int) -> None:
        """Return once count requests have been submitted."""
        while len(self.submitted_at) < count:
            await asyncio.sleep(0.05)


@dataclass(frozen=True)
class ArrivedStatus:
    status: BindingStatus
    arrived_at: float  # time.monotonic()


def distinct(timeline: Iterable[ArrivedStatus]) -> list[ArrivedStatus]:
    """Each event once, at its first arrival: what an app deduplicating on event_id shows."""
    seen: set[object] = set()
    kept = []
    for arrived in timeline:
        if arrived.status.event_id not in seen:
            seen.add(arrived.status.event_id)
            kept.append(arrived)
    return kept


class StatusCollector:
    """Follows binding.status from its current end (enter it before submitting) and keeps every status in
    the order it arrived (`arrived`), also per request id."""

    def __init__(self, client: BindingClient) -> None:
        self._client = client
        self._timelines: dict[str, list[ArrivedStatus]] = defaultdict(list)
        self.arrived: list[ArrivedStatus] = []
        self._arrival = asyncio.Event()
        self._caught_up = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._reader = asyncio.create_task(self._follow())
        caught_up = asyncio.create_task(self._caught_up.wait())
        await asyncio.wait([self._reader, caught_up], return_when=asyncio.FIRST_COMPLETED)
        caught_up.cancel()
        self._raise_if_reader_failed()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)

    async def _follow(self) -> None:
        async with aclosing(self._client.statuses(from_beginning=False, follow=True,
                                                  on_caught_up=self._caught_up.set)) as statuses:
            async for status in statuses:
                arrived = ArrivedStatus(status, time.monotonic())
                self.arrived.append(arrived)
                if status.request_id is not None:
                    self._timelines[status.request_id].append(arrived)
                self._arrival.set()

    def _raise_if_reader_failed(self) -> None:
        if self._reader is not None and self._reader.done():
            self._reader.result()
            raise RuntimeError("the binding.status reader stopped")

    def timeline(self, request_id: str) -> list[ArrivedStatus]:
        return list(self._timelines.get(request_id, ()))

    def outcome(self, request_id: str) -> ArrivedStatus | None:
        """The request's last distinct status, if it is one that ends a binding request."""
        statuses = distinct(self._timelines.get(request_id, ()))
        if statuses and statuses[-1].status.state in BIND_OUTCOME.final:
            return statuses[-1]
        return None

    async def wait_for_outcomes(self, request_ids: Iterable[str], timeout_s: float,
                                on_progress: Callable[[int], None] | None = None) -> list[str]:
        """Wait until every request has an outcome or timeout_s passed; returns the ids still without one.
        on_progress gets the number still waiting, whenever it may have changed."""
        pending = set(request_ids)
        deadline = time.monotonic() + timeout_s
        while True:
            self._raise_if_reader_failed()
            pending = {request_id for request_id in pending if self.outcome(request_id) is None}
            if on_progress is not None:
                on_progress(len(pending))
            remaining_s = deadline - time.monotonic()
            if not pending or remaining_s <= 0:
                return sorted(pending)
            self._arrival.clear()
            try:
                await asyncio.wait_for(self._arrival.wait(), min(remaining_s, 1.0))
            except TimeoutError:
                pass
