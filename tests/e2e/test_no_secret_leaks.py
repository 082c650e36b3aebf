"""Runs after every other test (marker `last`): no secret used anywhere in the suite is on any topic or in
any service log line."""

import json

import pytest

from shared.contracts.routing import Topic
from tests.e2e.helpers import PLAINTEXT_PUBLISHED, SECRETS_USED
from tests.kafka_reading import topic_bytes
from tests.leaks import leaks

pytestmark = [pytest.mark.stack, pytest.mark.last]


def every_secret(pipeline, htx_sandbox, bootstrapped_stack) -> set[str]:
    found = set(SECRETS_USED)
    found |= {key["secret_key"] for user in htx_sandbox.scenario["users"] for key in user["api_keys"]}
    for credentials in (bootstrapped_stack.run_dir / "approle").glob("*.json"):
        found.add(json.loads(credentials.read_text())["secret_id"])
    found.add(bootstrapped_stack.root_token)
    return {secret for secret in found if secret}


async def test_no_secret_on_any_topic_or_in_any_service_log(pipeline, htx_sandbox, bootstrapped_stack):
    secrets = every_secret(pipeline, htx_sandbox, bootstrapped_stack)
    topics = await topic_bytes(pipeline.settings)
    logs = pipeline.log_text()
    if sum(map(len, topics.values())) < 10_000 or len(logs) < 10_000:
        pytest.skip("too little traffic to scan: run it with the end-to-end tests")
    assert not leaks(secrets, topics, logs, {secret: Topic.BINDING_REQUESTED for secret in PLAINTEXT_PUBLISHED})
