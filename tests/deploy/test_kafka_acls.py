"""The Kafka ACLs the routing table grants (deploy/bootstrap/kafka_acls.py), and the bootstrap step that applies them
with the parties' SCRAM users.

No broker this suite can start enforces ACLs (Tansu has no authorizer, and Apache Kafka's jars cannot be fetched
here), so the step runs against an in-memory admin client that answers as kafka-python's does; the matrix itself is
checked against facts written out here by hand, not against the generator's own loops."""

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from kafka.admin import ACL, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePattern
from kafka.admin import ResourceType as KafkaResourceType
from kafka.errors import NoError
from structlog.testing import capture_logs

from deploy.bootstrap.kafka_acls import (
    PRINCIPALS,
    Grant,
    Operation,
    Resource,
    acl_changes,
    apply_users_and_acls,
    ensure_kafka_security,
    granted,
    principal_of,
)
from deploy.bootstrap.private_files import is_private
from deploy.bootstrap.progress import Outcome, Progress
from shared.contracts.routing import ROUTES, Party, Topic
from shared.runtime.config import Settings
from shared.runtime.kafka_security import KafkaConnection, kafka_connection, kafka_credentials_file
from tests.clients.hash7_process import hash7_environment, run_hash7

PREFIX = "p."
GRANTS = granted(PREFIX, "-blue")


def _names(party: Party, resource: Resource, operation: Operation) -> set[str]:
    return {grant.name for grant in GRANTS
            if grant.principal == principal_of(party) and grant.resource is resource and grant.operation is operation}


def _topics(*topics: Topic) -> set[str]:
    return {topic.full_name(PREFIX) for topic in topics}


T = Topic
# What each party writes, by hand from the routing table's summaries (ops also replays dead letters).
WRITES = {
    Party.APP: _topics(T.BINDING_REQUESTED, T.WHITELIST_REQUESTED, T.BINDING_REVOKE_REQUESTED,
                       T.HEALTH_SWEEP_REQUESTED),
    Party.INTAKE: _topics(T.BINDING_ACCEPTED, T.BINDING_STATUS, T.AUDIT, T.DEAD_LETTER),
    Party.VALIDATOR: _topics(T.BINDING_VALIDATED, T.BINDING_RECHECKED, T.BINDING_STATUS, T.AUDIT, T.DEAD_LETTER),
    Party.VAULT_WRITER: _topics(T.BINDING_STORED, T.HEALTH_SWEEP_REQUESTED, T.BINDING_RECHECK_REQUESTED,
                                T.BINDING_STATUS, T.AUDIT, T.DEAD_LETTER),
    Party.WHITELIST: _topics(T.BINDING_STATUS, T.AUDIT, T.DEAD_LETTER),
    Party.TRADING_ENGINE: _topics(T.AUDIT),
    Party.OPS: _topics(T.AUDIT, T.BINDING_REQUESTED, T.BINDING_ACCEPTED, T.BINDING_VALIDATED, T.BINDING_STORED,
                       T.WHITELIST_REQUESTED, T.BINDING_REVOKE_REQUESTED, T.BINDING_STATUS,
                       T.HEALTH_SWEEP_REQUESTED, T.BINDING_RECHECK_REQUESTED, T.BINDING_RECHECKED),
}
READS = {
    Party.APP: _topics(T.BINDING_STATUS),
    Party.INTAKE: _topics(T.BINDING_REQUESTED, T.BINDING_STATUS),
    Party.VALIDATOR: _topics(T.BINDING_ACCEPTED, T.BINDING_RECHECK_REQUESTED),
    Party.VAULT_WRITER: _topics(T.BINDING_VALIDATED, T.BINDING_REVOKE_REQUESTED, T.HEALTH_SWEEP_REQUESTED),
    Party.WHITELIST: _topics(T.BINDING_STORED, T.WHITELIST_REQUESTED, T.BINDING_RECHECKED),
    Party.TRADING_ENGINE: set(),
    Party.OPS: _topics(T.AUDIT, T.DEAD_LETTER),
}
GROUPS = {
    Party.INTAKE: {"p.intake-blue.binding.requested"},  # statuses are its view: no group
    Party.VALIDATOR: {"p.validator-blue.binding.accepted", "p.validator-blue.binding.recheck-requested"},
    Party.VAULT_WRITER: {"p.vault-writer-blue.binding.validated", "p.vault-writer-blue.binding.revoke-requested",
                         "p.vault-writer-blue.health.sweep-requested"},
    Party.WHITELIST: {"p.whitelist-blue.binding.stored", "p.whitelist-blue.whitelist.requested",
                      "p.whitelist-blue.binding.rechecked"},
}


@pytest.mark.parametrize("party", list(Party))
def test_each_party_writes_and_reads_exactly_its_topics(party):
    assert _names(party, Resource.TOPIC, Operation.WRITE) == WRITES[party]
    assert _names(party, Resource.TOPIC, Operation.READ) == READS[party]
    assert _names(party, Resource.TOPIC, Operation.DESCRIBE) == WRITES[party] | READS[party]
    assert _names(party, Resource.GROUP, Operation.READ) == GROUPS.get(party, set())


def test_nothing_but_topics_and_groups_of_the_parties_is_granted():
    assert {grant.principal for grant in GRANTS} == PRINCIPALS == {f"User:{party.value}" for party in Party}
    assert {(grant.resource, grant.operation) for grant in GRANTS} == {
        (Resource.TOPIC, Operation.READ), (Resource.TOPIC, Operation.WRITE), (Resource.TOPIC, Operation.DESCRIBE),
        (Resource.GROUP, Operation.READ)}
    assert {grant.name for grant in GRANTS if grant.resource is Resource.TOPIC} == _topics(*Topic)


def test_the_table_is_the_source_a_producer_added_to_a_route_gets_its_write(monkeypatch):
    route = ROUTES[Topic.BINDING_RECHECKED]
    monkeypatch.setitem(ROUTES, Topic.BINDING_RECHECKED,  # type: ignore[index]
                        type(route)(**{**route.__dict__, "producers": route.producers | {Party.TRADING_ENGINE}}))

    assert Grant("User:trading-engine", Resource.TOPIC, "p.binding.rechecked", Operation.WRITE) in granted(PREFIX, "")


def test_changes_add_what_is_missing_remove_what_is_no_longer_granted_and_leave_others_alone():
    wanted = frozenset({Grant("User:intake", Resource.TOPIC, "p.audit", Operation.WRITE)})
    stale = Grant("User:intake", Resource.TOPIC, "p.binding.stored", Operation.WRITE)
    foreign = Grant("User:billing", Resource.TOPIC, "billing.invoices", Operation.WRITE)

    changes = acl_changes(wanted, [stale, foreign])

    assert (changes.create, changes.delete) == (wanted, {stale})
    assert acl_changes(wanted, [*wanted, foreign]) == acl_changes(frozenset(), [])


def test_hash7_admin_prints_the_grants_of_the_deployment():
    environment = hash7_environment(HASH7_TOPIC_PREFIX=PREFIX, HASH7_KAFKA_GROUP_SUFFIX="-blue")

    result = run_hash7(["--output", "json", "kafka-acls"], environment, module="deploy.admin")

    assert result.returncode == 0, result.stderr
    printed = {Grant(row["principal"], Resource(row["resource_type"]), row["resource_name"], Operation(operation))
               for row in map(json.loads, result.stdout.splitlines()) for operation in row["operations"]}
    assert printed == GRANTS


# ---- the bootstrap step ------------------------------------------------------------------------------------------


@dataclass
class InMemoryKafkaAdmin:
    """Answers as kafka-python's KafkaAdminClient does to the calls the step makes; keeps ACLs as the raw fields
    of what it was sent, so that a wrong conversion shows."""

    users: dict[str, dict[int, bytes]] = field(default_factory=dict)  # user -> mechanism -> salted password
    acls: set[tuple[Any, ...]] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)

    def describe_user_scram_credentials(self, users: list[str]) -> dict[str, Any]:
        self.calls.append("describe users")
        return {user: {"error": None if user in self.users else "not found",
                       "credential_infos": [{"mechanism": mechanism, "iterations": 4096}
                                            for mechanism in self.users.get(user, {})]} for user in users}

    def alter_user_scram_credentials(self, upsertions: list[Any]) -> dict[str, None]:
        self.calls.append("alter users")
        for upsertion in upsertions:
            self.users.setdefault(upsertion.user, {})[int(upsertion.mechanism)] = upsertion.salted_password
        return {upsertion.user: None for upsertion in upsertions}

    def describe_acls(self, acl_filter: Any) -> tuple[list[Any], type[NoError]]:
        return [ACL(principal, host, ACLOperation(operation), ACLPermissionType(permission),
                    ResourcePattern(KafkaResourceType(resource_type), name, ACLResourcePatternType(pattern)))
                for principal, host, operation, permission, resource_type, name, pattern in self.acls], NoError

    def create_acls(self, acls: list[Any]) -> dict[str, list[Any]]:
        self.calls.append(f"create {len(acls)} acls")
        self.acls.update(self._fields(acl) for acl in acls)
        return {"succeeded": acls, "failed": []}

    def delete_acls(self, filters: list[Any]) -> list[tuple[Any, list[Any], type[NoError]]]:
        self.calls.append(f"delete {len(filters)} acls")
        self.acls.difference_update(self._fields(acl) for acl in filters)
        return [(acl, [acl], NoError) for acl in filters]

    @staticmethod
    def _fields(acl: Any) -> tuple[Any, ...]:
        pattern = acl.resource_pattern
        return (acl.principal, acl.host, int(acl.operation), int(acl.permission_type), int(pattern.resource_type),
                pattern.resource_name, int(pattern.pattern_type))


def _settings(tmp_path) -> Settings:
    return Settings(run_dir=tmp_path, topic_prefix=PREFIX, kafka_group_suffix="-blue")


def test_the_step_creates_every_user_and_acl_once_and_a_rerun_changes_nothing(tmp_path):
    admin, settings = InMemoryKafkaAdmin(), _settings(tmp_path)
    first, second = Progress(), Progress()

    apply_users_and_acls(admin, settings, first)
    users, acls = dict(admin.users), set(admin.acls)
    apply_users_and_acls(admin, settings, second)

    assert set(admin.users) == {party.value for party in Party}
    assert len(acls) == len(GRANTS)
    assert (admin.users, admin.acls) == (users, acls)
    assert {step.outcome for step in first.steps} == {Outcome.CREATED, Outcome.UPDATED}
    assert second.changed == []
    assert admin.calls.count("alter users") == len(Party) and f"create {len(GRANTS)} acls" in admin.calls
    for party in Party:
        path = kafka_credentials_file(tmp_path, party.value)
        stored = json.loads(path.read_text())
        assert stored["username"] == party.value and len(stored["password"]) >= 32 and is_private(path)
        # What the workload then connects with: its own file.
        sasl = Settings(run_dir=tmp_path, kafka_security_protocol="SASL_PLAINTEXT")
        assert kafka_connection(sasl, party).client_options()["sasl_plain_password"] == stored["password"]


def test_a_grant_the_table_dropped_is_removed_and_another_applications_acl_is_kept(tmp_path):
    admin, settings = InMemoryKafkaAdmin(), _settings(tmp_path)
    apply_users_and_acls(admin, settings, Progress())
    stale = ("User:intake", "*", 4, 3, 2, "p.binding.stored", 3)  # WRITE, ALLOW, TOPIC, LITERAL
    foreign = ("User:billing", "*", 4, 3, 2, "billing.invoices", 3)
    admin.acls |= {stale, foreign}
    progress = Progress()

    apply_users_and_acls(admin, settings, progress)

    assert stale not in admin.acls and foreign in admin.acls
    assert [(step.subject, step.detail) for step in progress.changed] == [
        ("kafka ACLs of User:intake", f"{len(_grants_of(Party.INTAKE))} ACLs: 0 added, 1 removed")]


def test_an_acl_hash7_never_makes_on_its_principal_is_reported_and_left_in_place(tmp_path):
    admin, settings = InMemoryKafkaAdmin(), _settings(tmp_path)
    apply_users_and_acls(admin, settings, Progress())
    deny = ("User:whitelist", "*", 3, 2, 2, "p.audit", 3)  # READ, DENY, TOPIC, LITERAL: an operator's own
    admin.acls.add(deny)

    with capture_logs() as logs:
        apply_users_and_acls(admin, settings, Progress())

    assert deny in admin.acls
    assert [(log["event"], log["principal"]) for log in logs if log["log_level"] == "warning"] == [
        ("kafka ACL not made by Hash7 left in place", "User:whitelist")]


def test_a_fresh_broker_gets_the_passwords_the_workloads_already_hold(tmp_path):
    settings = _settings(tmp_path)
    apply_users_and_acls(InMemoryKafkaAdmin(), settings, Progress())
    files = {party: kafka_credentials_file(tmp_path, party.value).read_text() for party in Party}
    fresh = InMemoryKafkaAdmin()

    apply_users_and_acls(fresh, settings, Progress())

    assert {party: kafka_credentials_file(tmp_path, party.value).read_text() for party in Party} == files
    assert set(fresh.users) == {party.value for party in Party}


def test_a_broker_without_authentication_is_left_alone_with_a_log_line(tmp_path):
    with capture_logs() as logs:
        ensure_kafka_security(KafkaConnection("127.0.0.1:1", "PLAINTEXT"), _settings(tmp_path), Progress())

    assert [log["event"] for log in logs] == ["kafka users and ACLs skipped: the broker has no authentication"]
    assert not (tmp_path / "credentials").exists()


def _grants_of(party: Party) -> set[Grant]:
    return {grant for grant in GRANTS if grant.principal == principal_of(party)}


def test_where_the_users_are_the_operators_only_the_acls_are_applied_and_no_password_is_made(tmp_path):
    admin, settings = InMemoryKafkaAdmin(), _settings(tmp_path)

    apply_users_and_acls(admin, settings, Progress(), manage_users=False)

    assert admin.users == {} and "alter users" not in admin.calls and len(admin.acls) == len(GRANTS)
    assert not (tmp_path / "credentials").exists()
