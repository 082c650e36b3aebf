"""Which rules fired: the codes of a verdict's reasons, for assertions that do not care about the wording."""

from shared.contracts.reasons import Reason, ReasonCode


def codes(reasons: list[Reason]) -> list[ReasonCode]:
    return [r.code for r in reasons]
