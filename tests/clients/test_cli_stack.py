"""`hash7` run as a person runs it against the real broker and Vault (no services: the tests publish what a
service would): `--output json` for machines, and, on a terminal, what waiting for a silent Kafka shows."""

import asyncio
import json
import os
import pty
import select
import signal
import subprocess
import time
from collections.abc import Mapping

import pytest

from shared.clients.console import EXIT_INTERRUPTED, EXIT_OK
from shared.contracts.routing import Topic
from shared.contracts.states import BindingState
from shared.runtime.producer import KafkaPublisher
from tests.clients.fakes import ACCESS_KEY, MASKED_ACCESS_KEY, SECRET_KEY, audit_event, status
from tests.clients.hash7_process import hash7_command, hash7_environment, run_hash7
from tests.fixtures.stack import BootstrappedStack

pytestmark = pytest.mark.stack


async def hash7_json(environment: Mapping[str, str], *args: str) -> list[dict[str, object]]:
    completed = await asyncio.to_thread(run_hash7, ["--output", "json", *args], environment)
    assert completed.returncode == EXIT_OK, completed.stderr
    return [json.loads(line) for line in completed.stdout.splitlines()]


async def test_read_commands_print_json_lines_as_the_contract_dumps_the_records(
        service: KafkaPublisher, bootstrapped_stack: BootstrappedStack, user_id: str) -> None:
    statuses = [status(BindingState.RECEIVED, user_id=user_id),
                status(BindingState.ACTIVE, user_id=user_id, seconds=1)]
    for one in statuses:
        await service.publish(one)
    event = audit_event(user_id=user_id)
    await service.send(Topic.AUDIT, user_id, event.to_bytes(), {})
    body = json.dumps({"user_id": user_id, "access_key": ACCESS_KEY, "secret_key_sealed": SECRET_KEY}).encode()
    await service.send(Topic.DEAD_LETTER, user_id, body, {"x-dlq-original-topic": "t.binding.requested",
                                                          "x-dlq-exception-type": "MalformedEvent"})
    environment = hash7_environment(bootstrapped_stack.settings)

    timeline = await hash7_json(environment, "timeline", "--user", user_id)
    audit = await hash7_json(environment, "audit", "--limit", "100000")
    letters = await hash7_json(environment, "dead-letters", "--limit", "100000")

    assert timeline == [one.model_dump(mode="json") for one in statuses]
    assert [line for line in audit if line["user_id"] == user_id] == [event.model_dump(mode="json")]
    (letter,) = [line for line in letters if line["key"] == user_id]
    assert (letter["original_topic"], letter["error_class"]) == ("t.binding.requested", "MalformedEvent")
    assert MASKED_ACCESS_KEY in str(letter["body_preview"])
    for output in (timeline, audit, letters):
        assert SECRET_KEY not in json.dumps(output) and ACCESS_KEY not in json.dumps(output)


async def test_following_with_json_output_streams_each_new_record_as_a_line(
        service: KafkaPublisher, bootstrapped_stack: BootstrappedStack, user_id: str) -> None:
    following = subprocess.Popen(
        hash7_command("--output", "json", "timeline", "--user", user_id, "--follow"), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=hash7_environment(bootstrapped_stack.settings),
    )
    assert following.stdout is not None and following.stderr is not None
    try:
        # Caught up with an empty backlog: said on stderr, stdout stays pure JSON.
        assert "No statuses yet." in await asyncio.wait_for(asyncio.to_thread(following.stderr.readline), 30)
        arrived = status(BindingState.RECEIVED, user_id=user_id)
        await service.publish(arrived)
        line = await asyncio.wait_for(asyncio.to_thread(following.stdout.readline), 30)
        assert json.loads(line) == arrived.model_dump(mode="json")
    finally:
        following.send_signal(signal.SIGINT)
        await asyncio.to_thread(following.communicate, timeout=30)
    assert following.returncode == EXIT_INTERRUPTED


# ---- a silent Kafka: the terminal says what is awaited, where, and for how long ----------------------------


def on_a_terminal(command: list[str], environment: Mapping[str, str], *expected: str, timeout_s: float = 30) -> str:
    """What command shows on a terminal until it has shown every expected text (or timeout_s passed); then it
    is stopped."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal,
                               env={**environment, "COLUMNS": "200"})
    os.close(terminal)
    shown = ""
    deadline = time.monotonic() + timeout_s
    try:
        while not all(text in shown for text in expected) and (left := deadline - time.monotonic()) > 0:
            if select.select([controller], [], [], left)[0]:
                try:
                    shown += os.read(controller, 65536).decode(errors="replace")
                except OSError:  # the process ended and closed the terminal
                    break
    finally:
        process.kill()
        process.wait()
        os.close(controller)
    return shown


async def test_bind_shows_the_kafka_it_connects_to_and_the_seconds_passing(
        bootstrapped_stack: BootstrappedStack, silent_broker: str, user_id: str) -> None:
    settings = bootstrapped_stack.settings.model_copy(update={"kafka_bootstrap_servers": silent_broker})
    waiting = f"Connecting to Kafka at {silent_broker}…"

    shown = await asyncio.to_thread(
        on_a_terminal, hash7_command("bind", "--user", user_id, "--access-key", ACCESS_KEY, "--secret-stdin"),
        hash7_environment(settings), waiting, "0:00:02")

    assert waiting in shown and "0:00:02" in shown, shown


async def test_reading_a_topic_shows_the_topic_the_kafka_and_the_seconds_passing(
        bootstrapped_stack: BootstrappedStack, silent_broker: str, user_id: str) -> None:
    settings = bootstrapped_stack.settings.model_copy(update={"kafka_bootstrap_servers": silent_broker})
    waiting = f"Reading statuses from t.binding.status at Kafka {silent_broker}…"

    shown = await asyncio.to_thread(on_a_terminal, hash7_command("timeline", "--user", user_id),
                                    hash7_environment(settings), waiting, "0:00:02")

    assert waiting in shown and "0:00:02" in shown, shown
