"""`hash7 bind` end to end: the real services answer, the CLI shows their verdict and exits with its code."""

import asyncio
import uuid

import pytest

from shared.clients.console import EXIT_REFUSED
from shared.contracts.secrets import mask_access_key
from tests.clients.hash7_process import hash7_environment, run_hash7
from tests.fixtures.htx_sandbox import HtxSandbox
from tests.fixtures.pipeline import Pipeline

pytestmark = pytest.mark.stack


async def test_bind_of_a_key_that_can_withdraw_is_refused_with_the_fix(pipeline: Pipeline,
                                                                      htx_sandbox: HtxSandbox) -> None:
    # Refused whatever else the session bound: a key that can withdraw never gets as far as being stored.
    key = htx_sandbox.key_entry("withdraw")
    access_key, secret_key = key["access_key"], key["secret_key"]
    user_id = f"user-{uuid.uuid4().hex[:12]}"

    completed = await asyncio.to_thread(
        run_hash7, ["bind", "--user", user_id, "--access-key", access_key, "--secret-stdin", "--timeout", "60"],
        hash7_environment(pipeline.settings), secret_key + "\n",
    )

    assert completed.returncode == EXIT_REFUSED, completed.stdout + completed.stderr
    assert "permission_withdraw_forbidden" in completed.stdout
    assert "Edit the key" in completed.stdout  # the hint: where in the HTX app to fix it
    output = completed.stdout + completed.stderr
    assert secret_key not in output and access_key not in output
    assert mask_access_key(access_key) in completed.stderr
