"""Liveness and readiness (shared/runtime/health.py): what each answers, over a real HTTP socket."""

import asyncio
import json
import time
import urllib.error
import urllib.request

import pytest

from shared.runtime.health import LIVE_MAX_STALL_S, HealthServer, HealthWatch
from shared.runtime.metrics import PartitionLoad


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


@pytest.fixture
def served():
    watch = HealthWatch(max_record_age_s=60)
    server = HealthServer(watch, "127.0.0.1", 0)
    server.start()
    yield watch, server.url
    server.stop()


def ready_watch(watch: HealthWatch) -> None:
    watch.joined, watch.vault_problem, watch.beat_at = True, None, time.monotonic()


def test_ready_only_once_joined_with_vault_unsealed_and_no_partition_stuck(served):
    watch, url = served
    status, answer = get(f"{url}/readyz")
    assert status == 503 and "its consumers have not joined their groups yet" in answer["problems"]

    ready_watch(watch)
    watch.loads = [PartitionLoad("hash7.binding.accepted", 2, 3, 12.0, 5)]
    assert get(f"{url}/readyz") == (200, {"status": "ready", "problems": [], "records_in_hand": 3})

    watch.vault_problem = "sealed"
    status, answer = get(f"{url}/readyz")
    assert status == 503 and answer["problems"] == ["Vault: sealed"]

    watch.vault_problem = None
    watch.loads = [PartitionLoad("hash7.binding.accepted", 2, 1, 61.0, 0)]
    status, answer = get(f"{url}/readyz")
    assert status == 503
    assert answer["problems"] == ["hash7.binding.accepted[2]: a record has been in hand for 61 s, holding the "
                                  "partition's commits"]


def test_a_stalled_event_loop_is_not_live(served):
    watch, url = served
    ready_watch(watch)
    assert get(f"{url}/livez")[0] == 200
    watch.beat_at = time.monotonic() - LIVE_MAX_STALL_S - 1
    status, answer = get(f"{url}/livez")
    assert status == 503 and answer["status"] == "stalled"
    assert get(f"{url}/readyz")[0] == 503


def test_metrics_are_served_and_unknown_paths_are_not(served):
    _, url = served
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    assert "hash7_records_in_hand" in text and "process_cpu_seconds_total" in text
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{url}/admin", timeout=5)
    assert missing.value.code == 404


async def test_the_watch_notes_heartbeat_load_and_vault_until_cancelled():
    watch = HealthWatch(max_record_age_s=60)
    checks = []

    async def vault_problem() -> str | None:
        checks.append(1)
        return None

    load = PartitionLoad("t", 0, 1, 0.5, 2)
    tasks = [asyncio.create_task(watch.beat(lambda: [load])), asyncio.create_task(watch.probe_vault(vault_problem))]
    await asyncio.sleep(0.1)
    for task in tasks:
        task.cancel()
    assert watch.loads == [load] and watch.vault_problem is None and checks == [1]


async def test_a_vault_that_hangs_or_fails_makes_the_service_not_ready_but_never_not_live():
    watch = HealthWatch(max_record_age_s=60)
    watch.joined = True

    async def hangs() -> str | None:
        await asyncio.sleep(3600)
        return None

    async def fails() -> str | None:
        raise KeyError("sealed")

    beating = asyncio.create_task(watch.beat(list))
    probing = asyncio.create_task(watch.probe_vault(hangs))
    await asyncio.sleep(0.1)
    assert watch.liveness()[0] and not watch.readiness()[0]  # never checked yet: not ready
    probing.cancel()
    probing = asyncio.create_task(watch.probe_vault(fails))
    await asyncio.sleep(0.1)
    assert watch.vault_problem == "not checked (KeyError)" and watch.liveness()[0]
    for task in (beating, probing):
        task.cancel()
