"""The invariants every fault test checks once its load has run, whatever fault it injected:

1. every request reaches a final status;
2. a request's statuses are in causal order (received → validated → stored → final); an event may come
   again only with the same event_id, and then identical;
3. a good key, on whichever exchange (the stream mixes HTX, Bybit and OKX keys), ends active, or rejected
   only for a reason the fault excuses (a rival of a key another user won: key_already_bound);
4. every active binding is in Vault exactly once (one KV version for a fresh key, holding its own request
   and key on its exchange, no secret and, for OKX, the passphrase sealed; its Transit key signing as the
   key's secret), a rejected one not at all (no record, no Transit key), no key check left a key behind, and
   the access-key index names the one winner of each key, so no two users hold the same key;
5. no secret (the keys' secrets and passphrases, the root token, the unseal key, any AppRole secret id) is on
   any topic, in any service log or in Vault's KV;
6. no record without a valid proof of origin was processed: every such record on a topic a service consumes
   in a consumer group was refused unread (a dead letter naming its place). The topics only people and views
   read (statuses, audit, dead letters) have no service to refuse them: their readers skip them, as
   tests/clients and tests/security prove;
7. no partition's commits are stuck: every service's consumer group has committed to the end of its topic.
"""

import asyncio
import base64
import itertools
import json
from collections import defaultdict
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from typing import Any

import hvac
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from hvac import exceptions as hvac_errors

from deploy.bench.load import ArrivedStatus, distinct
from deploy.bootstrap.vault_files import VaultFiles, read_init_keys
from deploy.stack.loopback import LoopbackStack
from shared.adapters.vault.client import VaultClient
from shared.adapters.vault.layout import (
    ACCESS_KEY_INDEX_KEY,
    ALL_ROLES,
    KV_MOUNT,
    TRANSIT_MOUNT,
    access_key_index_path,
    binding_path,
    exchange_key,
    key_check_key,
)
from shared.adapters.vault.records import AccessKeyIndexEntry
from shared.contracts import dead_letters
from shared.contracts.events import BindingRequested
from shared.contracts.exchanges import ExchangeName
from shared.contracts.reasons import ReasonCode
from shared.contracts.routing import ROUTES, SERVICES, Party, Topic
from shared.contracts.states import BIND_OUTCOME, BindingState
from shared.runtime.config import ServiceSettings, Settings, approle_file, consumer_group_id
from shared.runtime.kafka_security import kafka_connection
from shared.runtime.provenance import EventVerifier, Unauthentic
from tests.faults.load_run import LoadRun
from tests.kafka_reading import raw_records, topic_bytes
from tests.leaks import leaks, leaks_in_kv
from tests.vault_admin import signs_as, transit_key

S = BindingState
# Where each state stands in a binding request's life; every final state stands last.
_STAGE = {S.RECEIVED: 0, S.VALIDATED: 1, S.STORED: 2} | {state: 3 for state in BIND_OUTCOME.final}
_EMITTER = {S.RECEIVED: "intake", S.VALIDATED: "validator", S.STORED: "vault-writer", S.ACTIVE: "whitelist",
            S.AWAITING_WHITELIST: "whitelist", S.EXPIRING: "whitelist"}
# A text HTX would sign: an active binding's Transit key must sign it as the binding's secret does.
KEY_PROBE_TEXT = "GET\napi.huobi.pro\n/v2/user/uid\nAccessKeyId=probe"
# Who rejects, by the last state before the rejection.
_REJECTER = {None: "intake", S.RECEIVED: "validator", S.VALIDATED: "vault-writer", S.STORED: "whitelist"}


@dataclass
class Findings:
    violations: list[str] = field(default_factory=list)


async def check_invariants(run: LoadRun, stack: LoopbackStack, *, excused: Set[ReasonCode] = frozenset(),
                           published: Mapping[str, Topic] | None = None) -> Findings:
    """published: plaintext secrets the test itself put on a topic (see tests.leaks); scanned for too."""
    findings = Findings()
    missing = set(ExchangeName) - {key.exchange for key in run.keys}
    if missing:
        findings.violations.append(f"the stream held no key of {', '.join(sorted(missing))}: it was not mixed")
    findings.violations += await _without_final_status(run, stack)
    for request in run.requests:
        check_timeline(request.request_id, run.collector.timeline(request.request_id), findings)
    vault = hvac.Client(url=stack.settings.vault_addr, token=stack.root_token.get_secret_value())
    try:
        for access_key, rivals in _by_access_key(run.requests).items():
            findings.violations += _check_key(access_key, rivals, run, vault, excused)
        secrets = _key_secrets(run) | _stack_secrets(stack) | set(published or {})
        findings.violations += leaks(secrets, await topic_bytes(stack.settings), stack.services.log_text(), published)
        findings.violations += leaks_in_kv(secrets, vault)
    finally:
        vault.adapter.close()
    findings.violations += await unauthentic_records_processed(stack.settings)
    findings.violations += await stuck_commits(stack.settings)
    return findings


async def unauthentic_records_processed(settings: Settings) -> list[str]:
    """Invariant 6, read from the topics with a verifier of our own (a service's identity)."""
    verifier = EventVerifier(VaultClient(settings.vault_connection(), settings.approle_credentials(Party.INTAKE.value)))
    refused = {(headers.get(dead_letters.ORIGINAL_TOPIC), headers.get(dead_letters.ORIGINAL_PARTITION),
                headers.get(dead_letters.ORIGINAL_OFFSET))
               for headers in (_headers(record) for record in await raw_records(settings, Topic.DEAD_LETTER))
               if headers.get(dead_letters.EXCEPTION_TYPE) in _REFUSED_UNREAD}
    problems = []
    for topic, route in ROUTES.items():
        if not route.grouped_consumers & set(SERVICES):
            continue
        for record in await raw_records(settings, topic):
            try:
                await verifier.producer_of(topic, route.producers, record.key, record.headers, record.value or b"")
            except Unauthentic as exc:
                if (record.topic, str(record.partition), str(record.offset)) not in refused:
                    problems.append(f"{record.topic} {record.partition}/{record.offset}: no valid proof of origin "
                                    f"({exc.problem}) and not refused unread")
    return problems


# Dead letters of records refused before they were read (shared/runtime/processing.py): too large, or no proof.
_REFUSED_UNREAD = {"Unauthentic", "RecordTooLarge"}


def _key_secrets(run: LoadRun) -> set[str]:
    """Every key's secret, and every OKX key's passphrase."""
    return ({key.secret_key.get_secret_value() for key in run.keys}
            | {key.passphrase.get_secret_value() for key in run.keys if key.passphrase is not None})


def _headers(record: ConsumerRecord) -> dict[str, str]:
    return {name: value.decode(errors="replace") for name, value in record.headers}


async def stuck_commits(settings: Settings, timeout_s: float = 15.0) -> list[str]:
    """Invariant 7: commits follow a few times a second, so the groups get to the end within timeout_s."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        behind = await _groups_behind(settings)
        if not behind or asyncio.get_running_loop().time() > deadline:
            return behind
        await asyncio.sleep(0.5)


async def _groups_behind(settings: Settings) -> list[str]:
    behind = []
    for topic, route in ROUTES.items():
        for service in sorted(route.grouped_consumers & set(SERVICES)):
            group = consumer_group_id(settings.topic_prefix, service, ServiceSettings().kafka_group_suffix, topic)
            reader = AIOKafkaConsumer(**kafka_connection(settings, service).client_options(), group_id=group,
                                      enable_auto_commit=False)
            await reader.start()
            try:
                name = settings.topic(topic)
                partitions = [TopicPartition(name, p) for p in sorted(await _partitions_of(reader, name))]
                ends = await reader.end_offsets(partitions)
                for tp in partitions:
                    committed = await reader.committed(tp) or 0
                    if committed < ends[tp]:
                        behind.append(f"group {group}: partition {tp.partition} committed to {committed}, "
                                      f"its end is {ends[tp]}")
            finally:
                await reader.stop()
    return behind


async def _partitions_of(reader: AIOKafkaConsumer, name: str) -> set[int]:
    await reader.topics()
    return reader.partitions_for_topic(name) or set()


async def _without_final_status(run: LoadRun, stack: LoopbackStack) -> list[str]:
    """One violation per request left without a final status, with what is known of it: the statuses it
    got and the audit events and dead letters that name it (the stack is gone once the test has ended)."""
    if not run.without_outcome:
        return []
    trail: dict[str, list[str]] = defaultdict(list)
    for topic in (Topic.AUDIT, Topic.DEAD_LETTER):
        for record in await raw_records(stack.settings, topic):
            document = _json_object(record.value)
            if document.get("request_id") in run.without_outcome:
                trail[document["request_id"]].append(
                    "dead letter" if topic is Topic.DEAD_LETTER
                    else f"{document.get('service')} {document.get('action')} {document.get('outcome')}")
    return [f"{request_id}: no final status (statuses: "
            f"{', '.join(a.status.state for a in run.collector.timeline(request_id)) or 'none'}; "
            f"audits and dead letters: {'; '.join(trail[request_id]) or 'none'})"
            for request_id in run.without_outcome]


def _json_object(value: bytes | None) -> dict[str, Any]:
    try:
        document = json.loads(value or b"")
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def check_timeline(request_id: str, timeline: list[ArrivedStatus], findings: Findings) -> None:
    """Invariant 2 for one request's statuses, in their order of arrival."""
    first_of: dict[object, ArrivedStatus] = {}
    for arrived in timeline:
        first = first_of.setdefault(arrived.status.event_id, arrived)
        if first.status == arrived.status:
            continue
        differing = sorted(name for name in type(first.status).model_fields
                           if getattr(first.status, name) != getattr(arrived.status, name))
        findings.violations.append(f"{request_id}: event {arrived.status.event_id} ({_emitter(first, timeline)}) "
                                   f"came again with other {', '.join(differing)}")
    stages = [_STAGE[arrived.status.state] for arrived in distinct(timeline)]
    if any(later <= earlier for earlier, later in itertools.pairwise(stages)):
        states = ", ".join(arrived.status.state for arrived in distinct(timeline))
        findings.violations.append(f"{request_id}: statuses out of causal order: {states}")


def _emitter(status: ArrivedStatus, timeline: list[ArrivedStatus]) -> str:
    state = status.status.state
    if state != S.REJECTED:
        return f"{_EMITTER[state]}/{state}"
    before = [arrived.status.state for arrived in distinct(timeline) if arrived.arrived_at < status.arrived_at]
    return f"{_REJECTER[before[-1] if before else None]}/{state}"


def _by_access_key(requests: list[BindingRequested]) -> dict[str, list[BindingRequested]]:
    grouped: dict[str, list[BindingRequested]] = defaultdict(list)
    for request in requests:
        grouped[request.access_key].append(request)
    return grouped


def _check_key(access_key: str, rivals: list[BindingRequested], run: LoadRun, vault: hvac.Client,
               excused: Set[ReasonCode]) -> list[str]:
    """One key, requested by one user or by rivals: at most one wins, and Vault says the same."""
    problems = []
    secrets = {key.access_key: key.secret_key.get_secret_value() for key in run.keys}
    outcomes = {request.request_id: run.collector.outcome(request.request_id) for request in rivals}
    winners = [request for request in rivals
               if (outcome := outcomes[request.request_id]) is not None and outcome.status.state == S.ACTIVE]
    if len(winners) > 1:
        problems.append(f"one key active for {len(winners)} users: {', '.join(r.request_id for r in winners)}")
    for request in rivals:
        outcome = outcomes[request.request_id]
        if outcome is None:
            continue  # reported as without a final status
        won = request in winners
        allowed = excused | ({ReasonCode.KEY_ALREADY_BOUND} if winners and not won else set())
        if outcome.status.state == S.REJECTED and not set(outcome.status.reason_codes) <= allowed:
            problems.append(f"{request.request_id}: a good key was rejected "
                            f"({', '.join(outcome.status.reason_codes)})")
        elif outcome.status.state not in (S.ACTIVE, S.REJECTED):
            problems.append(f"{request.request_id}: ended {outcome.status.state}, not active")
        problems += _check_stored(request, outcome.status.binding_id, won, vault, secrets[access_key])
    index = _read(vault, access_key_index_path(_index_hmac(vault, access_key)))
    if winners:
        winner = winners[0]
        winning = outcomes[winner.request_id]
        assert winning is not None
        if index is None or not AccessKeyIndexEntry.from_vault(index).names(winner.user_id,
                                                                   winning.status.binding_id or ""):
            problems.append(f"{winner.request_id}: the access-key index does not name the active binding")
    elif index is not None:
        problems.append(f"key of {rivals[0].request_id}: indexed although no binding of it is active")
    return problems


def _check_stored(request: BindingRequested, binding_id: str | None, active: bool, vault: hvac.Client,
                  secret: str) -> list[str]:
    problems = ([f"{request.request_id}: its key check left a key in Vault"]
                if transit_key(vault, key_check_key(request.user_id, request.request_id)) else [])
    if binding_id is None:
        return problems + ([] if not active else [f"{request.request_id}: active without a binding id"])
    path, name = binding_path(request.user_id, binding_id), exchange_key(request.user_id, binding_id)
    try:
        versions = vault.secrets.kv.v2.read_secret_metadata(path=path, mount_point=KV_MOUNT)["data"]["versions"]
    except hvac_errors.InvalidPath:
        versions = {}
    if not active:
        if versions:
            problems.append(f"{request.request_id}: not active, yet stored in Vault")
        if transit_key(vault, name):
            problems.append(f"{request.request_id}: not active, yet its key is in Transit")
        return problems
    if len(versions) != 1:
        return problems + [f"{request.request_id}: {len(versions)} KV versions for one fresh key"]
    record = _read(vault, path)
    if record is None or record["request_id"] != request.request_id or record["access_key"] != request.access_key:
        return problems + [f"{request.request_id}: Vault holds another request's or another key's record"]
    if record.get("exchange") != request.exchange:
        problems.append(f"{request.request_id}: a {request.exchange} key stored as {record.get('exchange')}'s")
    if bool(record.get("passphrase_sealed")) != (request.passphrase_sealed is not None):
        problems.append(f"{request.request_id}: its passphrase is not stored sealed as it came")
    if "secret_key" in record or (record.get("exchange_key"), record.get("exchange_key_version")) != (name, 1):
        return problems + [f"{request.request_id}: the record holds a secret or names another Transit key"]
    if not signs_as(vault, name, secret, KEY_PROBE_TEXT):
        problems.append(f"{request.request_id}: its Transit key does not sign as the key's secret")
    return problems


def _read(vault: hvac.Client, path: str) -> dict | None:
    try:
        return vault.secrets.kv.v2.read_secret_version(path=path, mount_point=KV_MOUNT,
                                                       raise_on_deleted_version=False)["data"]["data"]
    except hvac_errors.InvalidPath:
        return None


def _index_hmac(vault: hvac.Client, access_key: str) -> str:
    return vault.secrets.transit.generate_hmac(
        name=ACCESS_KEY_INDEX_KEY, hash_input=base64.b64encode(access_key.encode()).decode(),
        algorithm="sha2-256", mount_point=TRANSIT_MOUNT,
    )["data"]["hmac"]


def _stack_secrets(stack: LoopbackStack) -> set[str]:
    """The root token, the unseal key and every AppRole secret id of the stack."""
    run_dir = stack.settings.run_dir
    keys = read_init_keys(VaultFiles(run_dir))
    found = {stack.root_token.get_secret_value()}
    if keys is not None:
        found.add(keys.unseal_key.get_secret_value())
    found |= {json.loads(approle_file(run_dir, role).read_text())["secret_id"] for role in ALL_ROLES}
    return found


async def assert_invariants(run: LoadRun, stack: LoopbackStack, *, excused: Set[ReasonCode] = frozenset(),
                            published: Mapping[str, Topic] | None = None) -> None:
    findings = await check_invariants(run, stack, excused=excused, published=published)
    assert not findings.violations, "\n".join(findings.violations[:40])
