"""Runs after every other test (marker `last`): no secret used anywhere in the suite is on any topic or in
any service log line."""

import json

import pytest
from shared.contracts.topics import Topic
from tests.e2e.helpers import PLAINTEXT_PUBLISHED, SECRETS_USED
from tests.kafka_reading import raw_records

pytestmark = [pytest.mark.stack, pytest.mark.last]


def every_secret(pipeline, htx_sandbox, bootstrapped_stack) -> set[str]:
    found = set(SECRETS_USED)
    found |= {key["secret_key"] for user in htx_sandbox.scenario["users"] for key in user["api_keys"]}
    for credentials in (bootstrapped_stack.run_dir / "approle").glob("*.json"):
        found.add(json.loads(credentials.read_text())["secret_id"])
    found.add(bootstrapped_stack.root_token)
    return {secret for secret in found if secret}


async def topic_bytes(settings) -> dict[Topic, bytes]:
    """Every value and header on every topic, per topic."""
    found = {}
    for topic in Topic:
        chunks = []
        for record in await raw_records(settings, topic):
            chunks.append(record.value or b"")
            chunks.extend(value for _, value in record.headers)
        found[topic] = b"\n".join(chunks)
    return found


async def test_no_secret_on_any_topic_or_in_any_service_log(pipeline, htx_sandbox, bootstrapped_stack):
    secrets = every_secret(pipeline, htx_sandbox, bootstrapped_stack)
    topics = await topic_bytes(pipeline.settings)
    logs = pipeline.log_text()
    if sum(map(len, topics.values())) < 10_000 or len(logs) < 10_000:
        pytest.skip("too little traffic to scan: run it with the end-to-end tests")
    leaks = sorted(
        f"{secret[:4]}… on {topic.value}"
        for secret in secrets for topic, content in topics.items()
        if secret.encode() in content and not (secret in PLAINTEXT_PUBLISHED and topic == Topic.BINDING_REQUESTED)
    )
    leaks += sorted(f"{secret[:4]}… in a service log" for secret in secrets if secret in logs)
    assert not leaks
