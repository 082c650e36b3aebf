"""What each bootstrap step did, one readable log line per step as it happens."""

from dataclasses import dataclass, field
from enum import StrEnum

import structlog

from deploy.bootstrap.errors import StackError

log = structlog.get_logger(__name__)


class BootstrapError(StackError):
    """The bootstrap cannot go on; the message says what is wrong and what to do, and holds no secret."""


class Outcome(StrEnum):
    CREATED = "created"
    PRESENT = "already present"
    UPDATED = "updated"


@dataclass(frozen=True)
class Step:
    subject: str
    outcome: Outcome
    detail: str = ""


@dataclass
class Progress:
    steps: list[Step] = field(default_factory=list)

    def record(self, subject: str, outcome: Outcome, detail: str = "") -> None:
        self.steps.append(Step(subject, outcome, detail))
        extra = {"detail": detail} if detail else {}
        log.info("bootstrap step", step=subject, outcome=outcome.value, **extra)

    @property
    def changed(self) -> list[Step]:
        return [step for step in self.steps if step.outcome is not Outcome.PRESENT]
