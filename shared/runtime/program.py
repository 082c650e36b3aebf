"""What every Hash7 program shares before it does anything: its version, and its settings from the HASH7_*
environment, where a malformed variable is one line naming it instead of pydantic's report over many lines."""

from importlib.metadata import version
from typing import TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsError

# The distribution every console script belongs to (pyproject.toml).
DISTRIBUTION = "hash7-binding"

S = TypeVar("S", bound=BaseSettings)


class BadSettings(ValueError):
    """A HASH7_* variable does not hold what its setting needs; the message names the variable, never its value."""


def version_line(program: str) -> str:
    """What `<program> --version` prints, worded as click's version_option words it."""
    return f"{program}, version {version(DISTRIBUTION)}"


def settings_from_environment(settings_class: type[S]) -> S:
    """settings_class from the environment; raises BadSettings naming each malformed variable."""
    prefix = str(settings_class.model_config.get("env_prefix", "")).upper()
    try:
        return settings_class()
    except ValidationError as exc:
        # A check of several settings together (a model validator) has no location; its message names them.
        problems = "; ".join(
            f"{prefix}{str(error['loc'][0]).upper()}: {error['msg']}" if error["loc"]
            else str(error["msg"]).removeprefix("Value error, ")
            for error in exc.errors(include_input=False, include_url=False)
        )
    except SettingsError as exc:
        # A list or mapping setting whose variable is not JSON; pydantic-settings names the field.
        problems = f"{exc} (list settings take JSON, e.g. {prefix}EGRESS_IPS='[\"203.0.113.10\"]')"
    raise BadSettings(f"bad configuration: {problems}")
