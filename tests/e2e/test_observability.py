"""Each running service's health and metrics (shared/runtime/health.py, shared/runtime/metrics.py), read over HTTP
as Prometheus and a Kubernetes probe would, after a binding went through the real pipeline."""

import asyncio
import json
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from deploy.stack.services import SERVICE_PACKAGES
from shared.adapters.vault.client import VaultClient
from shared.contracts.states import BindingState
from shared.runtime.config import VaultConnection
from tests.e2e.helpers import bind, fresh_key, new_user, states

pytestmark = pytest.mark.stack


def get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def samples(url: str) -> dict[tuple[str, frozenset], float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def total(series: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(value for (sample, sample_labels), value in series.items() if sample == name and wanted <= sample_labels)


async def test_every_service_is_live_and_ready_and_counts_a_binding_it_handled(client, htx_sandbox, pipeline):
    user = new_user()
    timeline = await bind(client, user, fresh_key(htx_sandbox), trading_pairs=["btcusdt"])
    assert states(timeline)[-1] is BindingState.ACTIVE
    await asyncio.sleep(1.5)  # the services note their load every second

    urls = {package: pipeline.health_url(package) for package in SERVICE_PACKAGES}
    for package, url in urls.items():
        assert get_json(f"{url}/livez")[0] == 200, package
        status, answer = get_json(f"{url}/readyz")
        assert (status, answer["problems"]) == (200, []), package

    prefix = pipeline.settings.topic_prefix
    intake, validator = samples(urls["intake"]), samples(urls["validator"])
    writer, whitelist = samples(urls["vault_writer"]), samples(urls["whitelist"])
    assert total(intake, "hash7_records_handled_total", topic=f"{prefix}binding.requested", result="handled") >= 1
    assert total(intake, "hash7_statuses_total", state="received", reason_code="none") >= 1
    assert total(validator, "hash7_exchange_request_seconds_count", exchange="htx", path="/v2/user/uid") >= 1
    assert total(validator, "hash7_vault_request_seconds_count", operation="hmac_batch") >= 1
    assert total(validator, "hash7_statuses_total", state="validated") >= 1
    assert total(writer, "hash7_vault_request_seconds_count", operation="write") >= 1
    assert total(whitelist, "hash7_statuses_total", state="active") >= 1
    # Every subscription reports its partitions; nothing is held once the binding is done.
    lags = [(labels, value) for (name, labels), value in writer.items() if name == "hash7_consumer_lag"]
    assert lags and all(value >= 0 for _, value in lags)
    assert total(writer, "hash7_records_in_hand") == 0


async def test_vault_says_whether_it_is_reachable_and_unsealed(bootstrapped_stack):
    settings = bootstrapped_stack.settings
    credentials = settings.approle_credentials("validator")
    assert await VaultClient(settings.vault_connection(), credentials).unsealed_problem() is None
    unreachable = VaultClient(VaultConnection(addr="http://127.0.0.1:9", timeout_s=1), credentials)
    assert await unreachable.unsealed_problem() == "unreachable (ConnectionError)"
