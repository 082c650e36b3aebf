"""Every topic the system uses, named once. The deployed name is the configurable prefix plus the value."""

from enum import StrEnum


class Topic(StrEnum):
    BINDING_REQUESTED = "binding.requested"
    BINDING_ACCEPTED = "binding.accepted"
    BINDING_VALIDATED = "binding.validated"
    BINDING_STORED = "binding.stored"
    WHITELIST_REQUESTED = "whitelist.requested"
    BINDING_REVOKE_REQUESTED = "binding.revoke-requested"
    BINDING_STATUS = "binding.status"
    # Key health: a sweep re-checks every stored binding against HTX (vault-writer → validator → whitelist).
    HEALTH_SWEEP_REQUESTED = "health.sweep-requested"
    BINDING_RECHECK_REQUESTED = "binding.recheck-requested"
    BINDING_RECHECKED = "binding.rechecked"
    AUDIT = "audit"
    DEAD_LETTER = "dead-letter"

    def full_name(self, prefix: str) -> str:
        return f"{prefix}{self.value}"



# The topics every new binding passes through while its user waits for `active`. The others carry occasional
# requests (revocations, whitelists, sweeps and their paced re-checks), polled less often.
BINDING_PATH = frozenset({Topic.BINDING_REQUESTED, Topic.BINDING_ACCEPTED, Topic.BINDING_VALIDATED,
                          Topic.BINDING_STORED})
