"""Kafka's users and ACLs, from the routing table (shared/contracts/routing.py): one user per party (`User:<party>`),
allowed exactly what the table lets it do.

- a producer of a topic may WRITE (and DESCRIBE) it; a consumer may READ (and DESCRIBE) it;
- a service reading a topic in a consumer group may READ that group (shared.runtime.config.consumer_group_id); the app
  and ops read with no group (assigned partitions, nothing committed), and intake reads statuses as a view, so none of
  them is granted a group;
- ops may also WRITE the topics a dead letter can come from: a replay sends the original record again, signed by its
  original producer (deploy/admin/dead_letters.py), so the consumers' signature check still holds ops to the table;
- nothing on the cluster: no producer is idempotent or transactional (shared/runtime/broker.py), so none needs
  IDEMPOTENT_WRITE, and topics are the bootstrap's (no CREATE).

`ensure_kafka_security` applies them as the broker's super user: every party's SCRAM user (a random password, written
0600 to the party's kafka.json in its own credentials folder) and its ACLs, idempotently; ACLs of the parties' users
that the table no longer grants are removed.

kafka-python's admin client does the work: aiokafka's has no ACL or SCRAM call, and kafka-python (pure Python, like
the rest of the stack) has both, the SCRAM one being KIP-554's AlterUserScramCredentials.
"""

import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import structlog
from kafka.admin import (  # type: ignore[import-untyped]
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    KafkaAdminClient,
    ResourcePattern,
    ResourcePatternFilter,
    ResourceType,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from kafka.errors import KafkaError  # type: ignore[import-untyped]
from pydantic import SecretStr, ValidationError

from deploy.bootstrap.private_files import write_private_file
from deploy.bootstrap.progress import BootstrapError, Outcome, Progress
from shared.contracts.routing import DEAD_LETTER_SOURCES, ROUTES, SERVICES, Party
from shared.runtime.config import Settings, consumer_group_id
from shared.runtime.kafka_security import KafkaConnection, KafkaUserCredentials, kafka_credentials_file

log = structlog.get_logger(__name__)


class Resource(StrEnum):
    TOPIC = "TOPIC"
    GROUP = "GROUP"


class Operation(StrEnum):
    READ = "READ"
    WRITE = "WRITE"
    DESCRIBE = "DESCRIBE"


@dataclass(frozen=True, order=True)
class Grant:
    """One ACL: principal may do operation on the resource of that exact (literal) name, from any host."""

    principal: str
    resource: Resource
    name: str
    operation: Operation


def principal_of(party: Party) -> str:
    return f"User:{party.value}"


PRINCIPALS = frozenset(principal_of(party) for party in Party)


def granted(topic_prefix: str, group_suffix: str) -> frozenset[Grant]:
    """Every ACL the routing table grants, for a deployment's topic prefix and consumer-group suffix."""
    grants: set[Grant] = set()

    def allow(party: Party, resource: Resource, name: str, *operations: Operation) -> None:
        grants.update(Grant(principal_of(party), resource, name, operation) for operation in operations)

    for topic, route in ROUTES.items():
        name = topic.full_name(topic_prefix)
        for party in route.producers:
            allow(party, Resource.TOPIC, name, Operation.WRITE, Operation.DESCRIBE)
        for party in route.consumers:
            allow(party, Resource.TOPIC, name, Operation.READ, Operation.DESCRIBE)
        for service in route.grouped_consumers & set(SERVICES):
            group = consumer_group_id(topic_prefix, service, group_suffix, topic)
            allow(service, Resource.GROUP, group, Operation.READ)
    for topic in DEAD_LETTER_SOURCES:
        allow(Party.OPS, Resource.TOPIC, topic.full_name(topic_prefix), Operation.WRITE, Operation.DESCRIBE)
    return frozenset(grants)


@dataclass(frozen=True)
class AclChanges:
    create: frozenset[Grant]
    delete: frozenset[Grant]


def acl_changes(wanted: frozenset[Grant], present: Iterable[Grant]) -> AclChanges:
    """What turns the broker's ACLs into wanted: those of Hash7's principals (PRINCIPALS) only; any other ACL on
    the broker (another application's, the super user's) is not Hash7's to remove."""
    managed = {grant for grant in present if grant.principal in PRINCIPALS}
    return AclChanges(frozenset(wanted - managed), frozenset(managed - wanted))


def _acl(grant: Grant) -> ACL:
    return ACL(grant.principal, "*", ACLOperation[grant.operation.value], ACLPermissionType.ALLOW,
               ResourcePattern(ResourceType[grant.resource.value], grant.name, ACLResourcePatternType.LITERAL))


def _grant(acl: ACL) -> Grant | None:
    """The grant an ACL on the broker is, or None for one Hash7 never makes (a DENY, a prefixed pattern, a host,
    another resource type or operation): such ACLs of Hash7's principals are reported, not touched."""
    pattern = acl.resource_pattern
    try:
        resource, operation = Resource(pattern.resource_type.name), Operation(acl.operation.name)
    except ValueError:
        return None
    if (acl.permission_type is not ACLPermissionType.ALLOW or acl.host != "*"
            or pattern.pattern_type is not ACLResourcePatternType.LITERAL):
        return None
    return Grant(acl.principal, resource, pattern.resource_name, operation)


_EVERY_ACL = ACLFilter(None, None, ACLOperation.ANY, ACLPermissionType.ANY,
                       ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY))


def ensure_kafka_security(connection: KafkaConnection, settings: Settings, progress: Progress, *,
                          manage_users: bool = True) -> None:
    """Every party's Kafka user (unless manage_users is off) and exactly the ACLs the routing table grants, as the
    super user of connection."""
    if connection.credentials is None:
        log.info("kafka users and ACLs skipped: the broker has no authentication",
                 security_protocol=connection.security_protocol)
        return
    try:
        admin = KafkaAdminClient(**connection.client_options(), client_id="hash7-bootstrap")
    except KafkaError as error:
        raise BootstrapError(f"cannot reach Kafka at {connection.bootstrap_servers} as "
                             f"'{connection.credentials.username}': {type(error).__name__}") from None
    try:
        apply_users_and_acls(admin, settings, progress, manage_users=manage_users)
    except KafkaError as error:
        raise BootstrapError(f"Kafka at {connection.bootstrap_servers} refused to set up users or ACLs: "
                             f"{type(error).__name__} {error}") from None
    finally:
        admin.close()


def apply_users_and_acls(admin: Any, settings: Settings, progress: Progress, *, manage_users: bool = True) -> None:
    """The work of ensure_kafka_security with an admin client that answers as kafka-python's KafkaAdminClient.
    Without manage_users the users are someone else's (Kubernetes: each workload's Secret, made by the operator,
    deploy/k8s), and only the ACLs are applied."""
    if manage_users:
        _ensure_users(admin, settings.kafka_sasl_mechanism, settings, progress)
    _ensure_acls(admin, granted(settings.topic_prefix, settings.kafka_group_suffix), progress)


def _ensure_users(admin: Any, mechanism: str, settings: Settings, progress: Progress) -> None:
    """Each party's SCRAM credential for mechanism. A party whose kafka.json exists and whose user the broker knows
    is left alone; a missing user gets the file's password (a fresh broker), a missing file a new password."""
    scram = ScramMechanism[mechanism.replace("-", "_")]
    known = admin.describe_user_scram_credentials([party.value for party in Party])
    for party in Party:
        path = kafka_credentials_file(settings.run_dir, party.value)
        stored = _stored_credentials(path)
        infos = known.get(party.value, {}).get("credential_infos", [])
        on_broker = any(info["mechanism"] == scram for info in infos)
        if stored is not None and on_broker:
            progress.record(f"kafka user {party.value}", Outcome.PRESENT)
            continue
        credentials = stored or KafkaUserCredentials(username=party.value,
                                                     password=SecretStr(secrets.token_urlsafe(32)))
        errors = admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
            party.value, scram, credentials.password.get_secret_value())])
        if errors.get(party.value):
            raise BootstrapError(f"Kafka refused the user {party.value}: {errors[party.value]}")
        if stored is None:
            write_private_file(path, json.dumps({"username": credentials.username,
                                                 "password": credentials.password.get_secret_value()}))
        progress.record(f"kafka user {party.value}", Outcome.UPDATED if on_broker else Outcome.CREATED,
                        f"{mechanism}, credentials in {path}")


def _stored_credentials(path: Path) -> KafkaUserCredentials | None:
    try:
        return KafkaUserCredentials.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValidationError:
        raise BootstrapError(f"{path} is not a Kafka credentials file (username, password): fix or remove it") from None


def _ensure_acls(admin: Any, wanted: frozenset[Grant], progress: Progress) -> None:
    acls, _ = admin.describe_acls(_EVERY_ACL)
    present = [grant for grant in map(_grant, acls) if grant is not None]
    foreign = [acl for acl in acls if acl.principal in PRINCIPALS and _grant(acl) is None]
    for acl in foreign:
        log.warning("kafka ACL not made by Hash7 left in place", principal=acl.principal, acl=repr(acl))
    changes = acl_changes(wanted, present)
    if changes.create:
        created = admin.create_acls([_acl(grant) for grant in sorted(changes.create)])
        if created["failed"]:
            raise BootstrapError(f"Kafka refused {len(created['failed'])} ACLs: {created['failed'][0]}")
    if changes.delete:
        for _, _, error in admin.delete_acls([_acl(grant) for grant in sorted(changes.delete)]):
            if error.errno:
                raise BootstrapError(f"Kafka refused to delete ACLs: {error.__name__}")
    for principal in sorted(PRINCIPALS):
        made = sum(grant.principal == principal for grant in changes.create)
        removed = sum(grant.principal == principal for grant in changes.delete)
        detail = f"{sum(grant.principal == principal for grant in wanted)} ACLs"
        if made or removed:
            progress.record(f"kafka ACLs of {principal}", Outcome.UPDATED, f"{detail}: {made} added, {removed} removed")
        else:
            progress.record(f"kafka ACLs of {principal}", Outcome.PRESENT, detail)
