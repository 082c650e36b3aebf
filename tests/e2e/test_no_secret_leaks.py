"""Runs after every other test (marker `last`): no secret used anywhere in the suite is on any topic (dead
letters included), in any service log line, in Vault's KV or in Vault's audit log: the exchange secrets' whole
path outside Vault's barrier (README.md#the-secrets-path), and OKX keys' passphrases, which may be opened only to be
sent (README.md#the-passphrases-path)."""

import json

import pytest

from deploy.bootstrap.vault_files import VaultFiles
from shared.adapters.vault.layout import ALL_ROLES
from shared.contracts.routing import Topic
from shared.runtime.config import approle_file
from tests.e2e.helpers import PLAINTEXT_PUBLISHED, SECRETS_USED
from tests.kafka_reading import topic_bytes
from tests.leaks import leaks, leaks_in_kv

pytestmark = [pytest.mark.stack, pytest.mark.last]


def every_secret(pipeline, htx_sandbox, okx_sandbox, bootstrapped_stack) -> set[str]:
    found = set(SECRETS_USED)
    found |= {key["secret_key"] for user in htx_sandbox.scenario["users"] for key in user["api_keys"]}
    # OKX keys' secrets and passphrases, those the sandbox holds and those their users hand over mistyped.
    found |= {key[field] for user in okx_sandbox.scenario["users"] for key in user["api_keys"]
              for field in ("secret_key", "passphrase", "handed_secret_key", "handed_passphrase") if key.get(field)}
    for role in ALL_ROLES:
        found.add(json.loads(approle_file(bootstrapped_stack.run_dir, role).read_text())["secret_id"])
    found.add(bootstrapped_stack.root_token)
    return {secret for secret in found if secret}


async def test_no_secret_on_any_topic_in_any_service_log_or_in_vaults_kv_and_audit_log(
        pipeline, htx_sandbox, okx_sandbox, bootstrapped_stack, vault_admin):
    secrets = every_secret(pipeline, htx_sandbox, okx_sandbox, bootstrapped_stack)
    topics = await topic_bytes(pipeline.settings)
    logs = pipeline.log_text()
    if sum(map(len, topics.values())) < 10_000 or len(logs) < 10_000:
        pytest.skip("too little traffic to scan: run it with the end-to-end tests")
    assert not leaks(secrets, topics, logs, {secret: Topic.BINDING_REQUESTED for secret in PLAINTEXT_PUBLISHED})
    assert not leaks_in_kv(secrets, vault_admin)
    # Vault's audit log keeps a keyed HMAC of every value it records.
    audit_log = VaultFiles(bootstrapped_stack.run_dir).audit_log.read_text()
    assert not [f"{secret[:4]}… in Vault's audit log" for secret in secrets if secret in audit_log]
