import pytest

from shared.clients.binding_client import BindingClient


@pytest.fixture
async def client(pipeline):
    """The app's side of the system, against the session's running services."""
    async with BindingClient(pipeline.settings) as binding_client:
        yield binding_client
