"""The fault suite's stack: the whole system on loopback, with the persistent (raft) Vault so that a test can
stop it and start it again on the same data. Started once for the suite (consumer-group joins take seconds)
and put back in health after every test, whatever the test broke."""

from collections.abc import AsyncIterator, Iterator

import pytest

from deploy.bench.load import StatusCollector
from deploy.sandbox.common.admin_client import SandboxAdmin
from deploy.stack.loopback import LoopbackStack, loopback_stack
from deploy.stack.services import SERVICE_PACKAGES
from shared.clients.binding_client import BindingClient
from shared.contracts.exchanges import ExchangeName
from tests.faults.load_run import LoadRuns
from tests.fixtures.pipeline import TEST_SERVICE_SETTINGS


@pytest.fixture(scope="session")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackStack]:
    with loopback_stack(tmp_path_factory.mktemp("fault-stack"), TEST_SERVICE_SETTINGS) as stack:
        yield stack


@pytest.fixture(scope="session")
def other_sandboxes(fault_stack: LoopbackStack) -> Iterator[dict[ExchangeName, SandboxAdmin]]:
    """The admin APIs of the stack's Bybit and OKX sandboxes (the stack's own `sandbox` is HTX's), where the
    mixed-exchange load provisions its keys."""
    admins = {ExchangeName.BYBIT: SandboxAdmin(fault_stack.settings.bybit_base_url),
              ExchangeName.OKX: SandboxAdmin(fault_stack.settings.okx_base_url)}
    try:
        yield admins
    finally:
        for admin in admins.values():
            admin.close()


@pytest.fixture(autouse=True)
def healthy_afterwards(fault_stack: LoopbackStack, other_sandboxes: dict[ExchangeName, SandboxAdmin]) -> Iterator[None]:
    yield
    restore_health(fault_stack, other_sandboxes)


def restore_health(stack: LoopbackStack, other_sandboxes: dict[ExchangeName, SandboxAdmin]) -> None:
    """Vault up, every sandbox as its scenario file says (no faults, default rate limits), and exactly one
    running instance of each service."""
    if not stack.vault.process.is_running():
        stack.start_vault()
    for sandbox in (stack.sandbox, *other_sandboxes.values()):
        sandbox.reset(seed=0)
    extras = [extra for package in SERVICE_PACKAGES for extra in stack.services.processes[package][1:]]
    # All at once: each may take its graceful-shutdown time.
    for extra in extras:
        extra.terminate()
    for extra in extras:
        extra.wait_or_kill(extra.stop_timeout_s)
    for package in SERVICE_PACKAGES:
        instances = stack.services.processes[package]
        del instances[1:]
        if not instances[0].is_running():
            stack.services.start(package)


@pytest.fixture
async def client(fault_stack: LoopbackStack) -> AsyncIterator[BindingClient]:
    async with BindingClient(fault_stack.settings) as binding_client:
        yield binding_client


@pytest.fixture
async def collector(client: BindingClient) -> AsyncIterator[StatusCollector]:
    async with StatusCollector(client) as status_collector:
        yield status_collector


@pytest.fixture
async def load_runs(fault_stack: LoopbackStack, other_sandboxes: dict[ExchangeName, SandboxAdmin],
                    client: BindingClient, collector: StatusCollector) -> AsyncIterator[LoadRuns]:
    runs = LoadRuns(fault_stack, other_sandboxes, client, collector)
    try:
        yield runs
    finally:
        await runs.cancel()
