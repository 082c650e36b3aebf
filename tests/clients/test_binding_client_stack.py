"""BindingClient and the `hash7` CLI against the real broker and Vault (the services are not needed: the
tests publish the status, audit and dead-letter records themselves)."""

import asyncio
import base64
import json
import re
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator
from typing import Any

import hvac
import pytest
from pydantic import SecretStr

from shared.adapters.vault.key_import import HMAC_KEY_IMPORT
from shared.adapters.vault.layout import BINDING_PASSPHRASE_KEY, BINDING_SECRET_KEY, TRANSIT_MOUNT
from shared.clients.binding_client import BindingClient, InvalidRequest, StatusTimeout
from shared.clients.console import EXIT_INTERRUPTED
from shared.contracts.events import (
    BindingRequested,
    BindingStatus,
    RevokeRequested,
    WhitelistRequested,
    parse_event,
)
from shared.contracts.reasons import ReasonCode
from shared.contracts.routing import Topic
from shared.contracts.states import BindingState
from shared.runtime.errors import ClientError
from shared.runtime.producer import KafkaPublisher
from tests.clients.fakes import ACCESS_KEY, MASKED_ACCESS_KEY, SECRET_KEY, audit_event, status
from tests.clients.hash7_process import hash7_command, hash7_environment, run_hash7
from tests.fixtures.stack import BootstrappedStack
from tests.kafka_reading import raw_records
from tests.vault_admin import signs_as

pytestmark = pytest.mark.stack


@pytest.fixture
async def client(bootstrapped_stack: BootstrappedStack) -> AsyncIterator[BindingClient]:
    async with BindingClient(bootstrapped_stack.settings) as binding_client:
        yield binding_client


# ---- requests ---------------------------------------------------------------------------------------------


async def test_bind_publishes_a_secret_only_vault_can_open_for_that_user(
        client: BindingClient, bootstrapped_stack: BootstrappedStack, user_id: str) -> None:
    request_id = await client.bind(user_id, ACCESS_KEY, SecretStr(SECRET_KEY), label="main",
                                   trading_pairs=["btcusdt"])

    records = await raw_records(bootstrapped_stack.settings, Topic.BINDING_REQUESTED)
    (record,) = [r for r in records if r.key == user_id.encode()]
    request = parse_event(BindingRequested, record.value)
    assert (request.request_id, request.user_id, request.access_key) == (request_id, user_id, ACCESS_KEY)
    assert (request.exchange, request.label, request.trading_pairs) == ("htx", "main", ["btcusdt"])
    assert dict(record.headers)["event-type"] == b"BindingRequested"

    sealed = request.secret_key_sealed.get_secret_value()
    assert re.fullmatch(r"vault:v[0-9]+:[A-Za-z0-9+/=]+", sealed)  # a version of its own once binding-secret rotated
    root = hvac.Client(url=bootstrapped_stack.settings.vault_addr, token=bootstrapped_stack.root_token)
    opened = root.secrets.transit.decrypt_data(
        name=BINDING_SECRET_KEY, ciphertext=sealed, context=_b64(user_id), mount_point=TRANSIT_MOUNT)
    # What opens is the secret wrapped for Vault: only an import into Transit reveals it, to Vault alone.
    wrapped = base64.b64decode(opened["data"]["plaintext"]).decode()
    assert SECRET_KEY not in wrapped and SECRET_KEY not in base64.b64decode(wrapped).decode(errors="replace")
    scratch = f"test-wrapped-{uuid.uuid4().hex}"
    root.write_data(f"{TRANSIT_MOUNT}/keys/{scratch}/import", data={"ciphertext": wrapped, **HMAC_KEY_IMPORT})
    assert signs_as(root, scratch, SECRET_KEY, "text")
    with pytest.raises(hvac.exceptions.InvalidRequest):
        root.secrets.transit.decrypt_data(name=BINDING_SECRET_KEY, ciphertext=sealed,
                                          context=_b64("someone-else"), mount_point=TRANSIT_MOUNT)

    for anything in records:
        raw = (anything.key or b"") + (anything.value or b"") + b"".join(v for _, v in anything.headers)
        assert SECRET_KEY.encode() not in raw


async def test_whitelist_and_revoke_are_published_keyed_by_user(
        client: BindingClient, bootstrapped_stack: BootstrappedStack, user_id: str) -> None:
    whitelist_id = await client.set_whitelist(user_id, "bind-1", ["btcusdt", "ethusdt"])
    revoke_id = await client.revoke(user_id, "bind-1", request_id="my-request")

    settings = bootstrapped_stack.settings
    (whitelist,) = [parse_event(WhitelistRequested, r.value)
                    for r in await raw_records(settings, Topic.WHITELIST_REQUESTED) if r.key == user_id.encode()]
    (revoke,) = [parse_event(RevokeRequested, r.value)
                 for r in await raw_records(settings, Topic.BINDING_REVOKE_REQUESTED) if r.key == user_id.encode()]
    assert (whitelist.request_id, whitelist.binding_id, whitelist.trading_pairs) == (
        whitelist_id, "bind-1", ["btcusdt", "ethusdt"])
    assert (revoke.request_id, revoke.binding_id) == (revoke_id, "bind-1") == ("my-request", "bind-1")


async def test_a_bad_request_is_refused_by_field_before_anything_is_published(
        client: BindingClient, user_id: str) -> None:
    with pytest.raises(InvalidRequest, match="access_key") as refused:
        await client.bind(user_id, "not a key!", SecretStr(SECRET_KEY))

    assert "not a key!" not in str(refused.value) and SECRET_KEY not in str(refused.value)


@pytest.mark.parametrize("secret", ["31-bytes-is-one-short-of-enough", "x" * 513])
async def test_a_secret_transit_cannot_hold_is_refused_in_one_line_before_anything_is_sealed_or_published(
        client: BindingClient, bootstrapped_stack: BootstrappedStack, user_id: str, secret: str) -> None:
    with pytest.raises(ClientError, match="32 to 512 bytes") as refused:
        await client.bind(user_id, ACCESS_KEY, SecretStr(secret))

    assert secret not in str(refused.value) and "\n" not in str(refused.value)
    records = await raw_records(bootstrapped_stack.settings, Topic.BINDING_REQUESTED)
    assert not [r for r in records if r.key == user_id.encode()]


# ---- reading statuses -------------------------------------------------------------------------------------


async def publish_statuses(service: KafkaPublisher, *statuses: BindingStatus) -> None:
    for one in statuses:
        await service.publish(one)


async def test_statuses_are_filtered_by_user_request_and_binding(
        client: BindingClient, service: KafkaPublisher, user_id: str) -> None:
    other_user = user_id + "-other"
    await publish_statuses(
        service,
        status(BindingState.RECEIVED, user_id=user_id, request_id="r1", binding_id="b1"),
        status(BindingState.RECEIVED, user_id=other_user, request_id="r1", binding_id="b1"),
        status(BindingState.RECEIVED, user_id=user_id, request_id="r2", binding_id="b2", seconds=1),
    )
    await service.send(Topic.BINDING_STATUS, user_id, b'{"user_id": "half an event"}', {})
    skipped_before = client.unparseable_records[Topic.BINDING_STATUS]

    async def read(**filters: Any) -> list[tuple[str, str | None]]:
        return [(s.user_id, s.request_id) async for s in client.statuses(**filters)]

    assert await read(user_id=user_id) == [(user_id, "r1"), (user_id, "r2")]
    assert await read(user_id=user_id, request_id="r2") == [(user_id, "r2")]
    assert await read(user_id=other_user, binding_id="b1") == [(other_user, "r1")]
    assert client.unparseable_records[Topic.BINDING_STATUS] >= skipped_before + 1


async def test_wait_for_returns_the_timeline_up_to_the_first_final_state(
        client: BindingClient, service: KafkaPublisher, user_id: str) -> None:
    request_id = f"req-{user_id}"
    await publish_statuses(service, status(BindingState.RECEIVED, user_id=user_id, request_id=request_id))
    seen: list[BindingState] = []

    async def services_answer_later() -> None:
        await asyncio.sleep(1)
        await publish_statuses(
            service,
            status(BindingState.VALIDATED, user_id=user_id, request_id=request_id, seconds=1),
            status(BindingState.ACTIVE, user_id=user_id, request_id=request_id, seconds=2),
            status(BindingState.REVOKED, user_id=user_id, request_id=request_id, seconds=3),
        )

    answering = asyncio.create_task(services_answer_later())
    timeline = await client.wait_for(request_id, {BindingState.ACTIVE, BindingState.REJECTED}, timeout_s=30,
                                     on_status=lambda s: seen.append(s.state))
    await answering

    assert [s.state for s in timeline] == seen == [BindingState.RECEIVED, BindingState.VALIDATED,
                                                   BindingState.ACTIVE]


async def test_wait_for_accepts_a_predicate(service: KafkaPublisher, client: BindingClient, user_id: str) -> None:
    request_id = f"req-{user_id}"
    await publish_statuses(
        service,
        status(BindingState.STORED, user_id=user_id, request_id=request_id),
        status(BindingState.AWAITING_WHITELIST, user_id=user_id, request_id=request_id,
               reasons=[ReasonCode.WHITELIST_EMPTY]),
    )

    timeline = await client.wait_for(request_id, lambda s: ReasonCode.WHITELIST_EMPTY in s.reason_codes, 30)

    assert [s.state for s in timeline] == [BindingState.STORED, BindingState.AWAITING_WHITELIST]


async def test_wait_for_times_out_naming_the_states_seen(
        client: BindingClient, service: KafkaPublisher, user_id: str) -> None:
    request_id = f"req-{user_id}"
    await publish_statuses(service, status(BindingState.RECEIVED, user_id=user_id, request_id=request_id))

    with pytest.raises(StatusTimeout) as timed_out:
        await client.wait_for(request_id, {BindingState.ACTIVE}, timeout_s=2)

    assert str(timed_out.value) == f"no active status for request {request_id} within 2s (states seen: received)"
    assert [s.state for s in timed_out.value.timeline] == [BindingState.RECEIVED]


async def test_a_status_no_service_signed_is_never_believed(
        client: BindingClient, service: KafkaPublisher, bootstrapped_stack: BootstrappedStack, user_id: str) -> None:
    request_id = f"req-{user_id}"
    forged = status(BindingState.ACTIVE, user_id=user_id, request_id=request_id).to_bytes()
    before = client.unauthentic_records[Topic.BINDING_STATUS]
    await client.publish_raw(Topic.BINDING_STATUS, user_id, forged, signed=False)  # anyone on the broker
    await client.publish_raw(Topic.BINDING_STATUS, user_id, forged)  # the app: not a producer of statuses
    # A service's genuine signature, over another body: the headers copied onto the forgery.
    await service.send(Topic.BINDING_STATUS, user_id, status(BindingState.REJECTED, user_id=user_id,
                                                             request_id=request_id).to_bytes(), {})
    [genuine] = [r for r in await raw_records(bootstrapped_stack.settings, Topic.BINDING_STATUS)
                 if r.key == user_id.encode()][-1:]
    await client.publish_raw(Topic.BINDING_STATUS, user_id, forged,
                             {name: value.decode() for name, value in genuine.headers}, signed=False)

    timeline = await client.wait_for(request_id, {BindingState.ACTIVE, BindingState.REJECTED}, timeout_s=30,
                                     user_id=user_id)

    assert [s.state for s in timeline] == [BindingState.REJECTED]
    assert [s.state async for s in client.statuses(user_id=user_id)] == [BindingState.REJECTED]
    assert client.unauthentic_records[Topic.BINDING_STATUS] >= before + 3


async def test_wait_for_hears_only_the_user_the_request_was_sent_for(
        client: BindingClient, service: KafkaPublisher, user_id: str) -> None:
    request_id = await client.set_whitelist(user_id, "b1", ["btcusdt"])
    # Request ids are the app's choice: another user's status may carry the same one.
    await publish_statuses(service, status(BindingState.ACTIVE, user_id=user_id + "-other", request_id=request_id),
                           status(BindingState.REJECTED, user_id=user_id, request_id=request_id, seconds=1))

    timeline = await client.wait_for(request_id, {BindingState.ACTIVE, BindingState.REJECTED}, timeout_s=30)

    assert [(s.user_id, s.state) for s in timeline] == [(user_id, BindingState.REJECTED)]


# ---- audit and dead letters -------------------------------------------------------------------------------


async def test_audit_events_are_read_back_and_garbage_is_counted(
        client: BindingClient, service: KafkaPublisher, user_id: str) -> None:
    await service.send(Topic.AUDIT, user_id, audit_event(user_id=user_id, service="first").to_bytes(), {})
    await service.send(Topic.AUDIT, user_id, b"\x00 not an event", {})
    await service.send(Topic.AUDIT, user_id, audit_event(user_id=user_id, service="second").to_bytes(), {})

    events = [e async for e in client.audit_events() if e.user_id == user_id]

    assert [e.service for e in events] == ["first", "second"]
    assert client.unparseable_records[Topic.AUDIT] >= 1


async def test_dead_letters_carry_their_origin_and_a_scrubbed_preview(
        client: BindingClient, service: KafkaPublisher, user_id: str) -> None:
    body = json.dumps({"user_id": user_id, "access_key": ACCESS_KEY, "secret_key_sealed": SECRET_KEY}).encode()
    await service.send(Topic.DEAD_LETTER, user_id, body, {
        "x-dlq-original-topic": "t.binding.requested", "x-dlq-original-partition": "1",
        "x-dlq-original-offset": "3", "x-dlq-exception-type": "MalformedEvent",
        "x-dlq-exception-message": "secret_key_sealed: not sealed", "x-dlq-service": "intake",
        "x-dlq-failed-at": "2026-05-04T12:00:00+00:00",
    })

    (letter,) = [d async for d in client.dead_letters() if d.key == user_id]

    assert (letter.original_topic, letter.original_partition, letter.original_offset) == (
        "t.binding.requested", 1, 3)
    assert (letter.error_class, letter.service) == ("MalformedEvent", "intake")
    assert SECRET_KEY not in letter.body_preview and ACCESS_KEY not in letter.body_preview
    assert MASKED_ACCESS_KEY in letter.body_preview


async def test_following_reports_catching_up_then_streams_new_records(
        client: BindingClient, service: KafkaPublisher, user_id: str) -> None:
    await service.send(Topic.AUDIT, user_id, audit_event(user_id=user_id, service="backlog").to_bytes(), {})
    caught_up = asyncio.Event()
    actions: list[str] = []

    async def follow() -> None:
        async for event in client.audit_events(follow=True, on_caught_up=caught_up.set):
            if event.user_id == user_id:
                actions.append(event.service)
                if event.service == "live":
                    return

    following = asyncio.create_task(follow())
    await asyncio.wait_for(caught_up.wait(), 30)
    assert actions == ["backlog"]
    await service.send(Topic.AUDIT, user_id, audit_event(user_id=user_id, service="live").to_bytes(), {})
    await asyncio.wait_for(following, 30)

    assert actions == ["backlog", "live"]


# ---- the CLI, as a person runs it ------------------------------------------------------------------------


async def test_cli_bind_without_waiting_never_shows_the_secret(
        bootstrapped_stack: BootstrappedStack, user_id: str) -> None:
    completed = await asyncio.to_thread(
        run_hash7, ["bind", "--user", user_id, "--access-key", ACCESS_KEY, "--secret-stdin", "--no-wait"],
        hash7_environment(bootstrapped_stack.settings), SECRET_KEY + "\n")

    assert completed.returncode == 0, completed.stderr
    request_id = completed.stdout.strip()
    requests = await raw_records(bootstrapped_stack.settings, Topic.BINDING_REQUESTED)
    assert [parse_event(BindingRequested, r.value).request_id for r in requests if r.key == user_id.encode()] == [
        request_id]
    output = completed.stdout + completed.stderr
    assert SECRET_KEY not in output and ACCESS_KEY not in output
    assert MASKED_ACCESS_KEY in completed.stderr


async def test_cli_timeline_and_audit_print_tables(
        service: KafkaPublisher, bootstrapped_stack: BootstrappedStack, user_id: str) -> None:
    await publish_statuses(
        service,
        status(BindingState.RECEIVED, user_id=user_id, request_id="r1"),
        status(BindingState.REJECTED, user_id=user_id, request_id="r1", seconds=1,
               reasons=[ReasonCode.KEY_INVALID]),
    )
    await service.send(Topic.AUDIT, user_id, audit_event(user_id=user_id, service="cli_check").to_bytes(), {})
    environment = hash7_environment(bootstrapped_stack.settings)

    timeline = await asyncio.to_thread(run_hash7, ["timeline", "--user", user_id], environment)
    audit = await asyncio.to_thread(run_hash7, ["audit", "--limit", "1000"], environment)

    assert timeline.returncode == 0, timeline.stderr
    assert "received" in timeline.stdout and "key_invalid" in timeline.stdout
    assert audit.returncode == 0, audit.stderr
    (row,) = [line for line in audit.stdout.splitlines() if "cli_check" in line]
    assert user_id in row and MASKED_ACCESS_KEY in row


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def test_cli_audit_follow_prints_new_events_until_interrupted(
        service: KafkaPublisher, bootstrapped_stack: BootstrappedStack, user_id: str) -> None:
    following = subprocess.Popen(
        hash7_command("audit", "--follow", "--limit", "1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=hash7_environment(bootstrapped_stack.settings),
    )
    assert following.stdout is not None
    output = following.stdout
    try:
        assert "Time (UTC)" in await asyncio.wait_for(asyncio.to_thread(output.readline), 30)
        await service.send(Topic.AUDIT, user_id, audit_event(user_id=user_id, service="followed").to_bytes(), {})

        async def line_with(text: str) -> str:
            while text not in (line := await asyncio.to_thread(output.readline)):
                assert line, "hash7 audit --follow ended early"
            return line

        assert user_id in await asyncio.wait_for(line_with("followed"), 30)
    finally:
        following.send_signal(signal.SIGINT)
        _, errors = await asyncio.to_thread(following.communicate, timeout=30)

    assert following.returncode == EXIT_INTERRUPTED
    assert "Traceback" not in errors


# ---- an OKX key's passphrase ------------------------------------------------------------------------------------

PASSPHRASE = "Okx-Passphrase-Of-A-User-7!"


async def test_bind_of_an_okx_key_seals_its_passphrase_for_that_user_with_the_passphrase_key(
        client: BindingClient, bootstrapped_stack: BootstrappedStack, user_id: str) -> None:
    await client.bind(user_id, ACCESS_KEY, SecretStr(SECRET_KEY), exchange="okx", passphrase=SecretStr(PASSPHRASE))

    records = [r for r in await raw_records(bootstrapped_stack.settings, Topic.BINDING_REQUESTED)
               if r.key == user_id.encode()]
    (request,) = [parse_event(BindingRequested, r.value) for r in records]
    assert request.exchange == "okx" and request.passphrase_sealed is not None
    sealed = request.passphrase_sealed.get_secret_value()
    root = hvac.Client(url=bootstrapped_stack.settings.vault_addr, token=bootstrapped_stack.root_token)
    opened = root.secrets.transit.decrypt_data(
        name=BINDING_PASSPHRASE_KEY, ciphertext=sealed, context=_b64(user_id), mount_point=TRANSIT_MOUNT)
    assert base64.b64decode(opened["data"]["plaintext"]).decode() == PASSPHRASE
    for wrong_key, context in ((BINDING_SECRET_KEY, user_id), (BINDING_PASSPHRASE_KEY, "someone-else")):
        with pytest.raises(hvac.exceptions.InvalidRequest):
            root.secrets.transit.decrypt_data(name=wrong_key, ciphertext=sealed, context=_b64(context),
                                              mount_point=TRANSIT_MOUNT)
    assert all(PASSPHRASE.encode() not in (r.value or b"") for r in records)


@pytest.mark.parametrize(("exchange", "passphrase", "message"), [
    ("okx", None, "an OKX key needs its passphrase"),
    ("htx", PASSPHRASE, "keys on HTX have no passphrase"),
    ("bybit", PASSPHRASE, "keys on Bybit have no passphrase"),
    ("okx", "", "1 to 128 characters"),
    ("okx", "Pass\r\nX-Injected: 1", "only printable ASCII"),
    ("okx", "Pass\x00word", "only printable ASCII"),
    ("okx", "Passwörd1", "only printable ASCII"),
    ("okx", "Pass🔑word", "only printable ASCII"),
])
async def test_a_missing_or_unwanted_passphrase_is_refused_in_one_line_before_anything_is_sealed_or_published(
        client: BindingClient, bootstrapped_stack: BootstrappedStack, user_id: str, exchange: str,
        passphrase: str | None, message: str) -> None:
    with pytest.raises(ClientError, match=message) as refused:
        await client.bind(user_id, ACCESS_KEY, SecretStr(SECRET_KEY), exchange=exchange,
                          passphrase=None if passphrase is None else SecretStr(passphrase))

    assert "\n" not in str(refused.value) and (not passphrase or passphrase not in str(refused.value))
    records = await raw_records(bootstrapped_stack.settings, Topic.BINDING_REQUESTED)
    assert not [r for r in records if r.key == user_id.encode()]


async def test_cli_bind_of_an_okx_key_reads_the_passphrase_from_stdin_and_never_shows_it(
        bootstrapped_stack: BootstrappedStack, user_id: str) -> None:
    completed = await asyncio.to_thread(
        run_hash7, ["bind", "--user", user_id, "--access-key", ACCESS_KEY, "--exchange", "okx", "--secret-stdin",
                    "--no-wait"],
        hash7_environment(bootstrapped_stack.settings), f"{SECRET_KEY}\n{PASSPHRASE}\n")

    assert completed.returncode == 0, completed.stderr
    (request,) = [parse_event(BindingRequested, r.value)
                  for r in await raw_records(bootstrapped_stack.settings, Topic.BINDING_REQUESTED)
                  if r.key == user_id.encode()]
    assert request.exchange == "okx" and request.passphrase_sealed is not None
    output = completed.stdout + completed.stderr
    assert PASSPHRASE not in output and SECRET_KEY not in output and "Traceback" not in output
