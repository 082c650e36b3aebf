"""What one page of a key-health sweep costs at a given number of users (services/vault_writer/handlers.py
handle_sweep_requested): Vault's KV LIST has no paging, so each page lists every user id; this measures that LIST
and a whole page (Bindings.ids_after, the vault-writer's own code, through an AppRole like the vault-writer's) on an
in-memory OpenBao seeded with that many users of one binding each.

    python -m deploy.bench.sweep_pages --users 100000 --page-size 500

Prints the time to seed, the LIST's size on the wire, the time of pages at the start, middle and end of the sweep,
and the Python memory a page's handling peaks at (tracemalloc). Without Kafka: a page's publishing is the
pipeline's usual cost per record (make bench)."""

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import httpx
from pydantic import SecretStr

from deploy.stack.bao import start_bao_dev
from deploy.stack.processes import free_port
from shared.adapters.vault.client import VaultClient, hvac_client
from shared.adapters.vault.layout import BINDINGS_FOLDER, KV_MOUNT, binding_path
from shared.adapters.vault.stores import Bindings
from shared.contracts.events import SweepCursor
from shared.runtime.config import SWEEP_PAGE_SIZE, AppRoleCredentials, VaultConnection

HOST = "127.0.0.1"
ROLE = "sweep-bench"
# What the vault-writer's policy grants for sweeping (deploy/vault/policies/vault-writer.hcl): listing names only.
POLICY = f'path "{KV_MOUNT}/metadata/{BINDINGS_FOLDER}*" {{ capabilities = ["list"] }}'
SEED_CONCURRENCY = 32
PAGES_TIMED = 5


async def seed(addr: str, token: SecretStr, users: int) -> None:
    """One binding (a record of no secret: a sweep lists names only) for each of `users` users."""
    gate = asyncio.Semaphore(SEED_CONCURRENCY)
    async with httpx.AsyncClient(base_url=addr, headers={"X-Vault-Token": token.get_secret_value()}) as client:
        async def put(n: int) -> None:
            async with gate:
                answer = await client.post(f"/v1/{KV_MOUNT}/data/{binding_path(user_id(n), 'b-0')}",
                                           json={"data": {"seeded": "yes"}})
                answer.raise_for_status()

        await asyncio.gather(*(put(n) for n in range(users)))


def user_id(n: int) -> str:
    return f"user-{n:08d}"


def sweeping_role(addr: str, token: SecretStr) -> AppRoleCredentials:
    admin = hvac_client(VaultConnection(addr=addr, timeout_s=30.0), token)
    admin.sys.enable_secrets_engine("kv", path=KV_MOUNT, options={"version": "2"})
    admin.sys.enable_auth_method("approle")
    admin.sys.create_or_update_policy(ROLE, POLICY)
    admin.auth.approle.create_or_update_approle(ROLE, token_policies=[ROLE])
    role_id = admin.auth.approle.read_role_id(ROLE)["data"]["role_id"]
    secret_id = admin.auth.approle.generate_secret_id(ROLE)["data"]["secret_id"]
    return AppRoleCredentials(role_id=role_id, secret_id=SecretStr(secret_id))


async def timed_pages(bindings: Bindings, after: SweepCursor | None, page_size: int) -> tuple[list[float], int]:
    """Seconds of each of PAGES_TIMED pages from `after` on, and the most Python memory one of them held."""
    seconds, peak = [], 0
    for _ in range(PAGES_TIMED):
        tracemalloc.start()
        started = time.perf_counter()
        page = await bindings.ids_after(after, page_size)
        seconds.append(time.perf_counter() - started)
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        if not page:
            break
        after = page[-1]
    return seconds, peak


async def measure(users: int, page_size: int, run_dir: Path) -> None:
    token = SecretStr(secrets.token_urlsafe(24))
    server = start_bao_dev(HOST, free_port(next_one_too=True), run_dir, token.get_secret_value())
    try:
        credentials = await asyncio.to_thread(sweeping_role, server.addr, token)
        started = time.perf_counter()
        await seed(server.addr, token, users)
        print(f"seeded {users} users in {time.perf_counter() - started:.1f} s")
        async with httpx.AsyncClient(base_url=server.addr,
                                     headers={"X-Vault-Token": token.get_secret_value()}) as client:
            started = time.perf_counter()
            listed = await client.request("LIST", f"/v1/{KV_MOUNT}/metadata/{BINDINGS_FOLDER}")
            print(f"LIST {BINDINGS_FOLDER}: {len(listed.content) / 1e6:.1f} MB on the wire, "
                  f"{time.perf_counter() - started:.2f} s")
        bindings = Bindings(VaultClient(VaultConnection(addr=server.addr, timeout_s=120.0), credentials))
        for where, after in (("start", None), ("middle", SweepCursor(user_id=user_id(users // 2), binding_id="b-0")),
                             ("end", SweepCursor(user_id=user_id(max(users - 2 * page_size, 0)), binding_id="b-0"))):
            seconds, peak = await timed_pages(bindings, after, page_size)
            print(f"pages of {page_size} at the {where}: median {statistics.median(seconds):.3f} s, "
                  f"max {max(seconds):.3f} s; peak Python memory of a page {peak / 1e6:.1f} MB")
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=SWEEP_PAGE_SIZE)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as run_dir:
        asyncio.run(measure(args.users, args.page_size, Path(run_dir)))


if __name__ == "__main__":
    main()
