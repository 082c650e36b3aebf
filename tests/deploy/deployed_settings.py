"""Whether a deployment's environment (a compose service's, a Kubernetes container's) is one its program accepts:
the settings class is built from exactly that environment, as the program builds it at start."""

import os
from collections.abc import Mapping
from pathlib import Path

import pytest

from shared.contracts.routing import Party
from shared.runtime.config import ServiceSettings, Settings

# Settings naming a file that must exist (pydantic's FilePath): stood in for by an empty file under a folder of the
# test's, since the deployment's own files are mounted only where it runs.
_FILE_SETTINGS = ("_FILE", "_CAFILE", "_CACERT", "_CERTFILE", "_KEYFILE", "_CERT", "_KEY")


def _descendants(cls: type[ServiceSettings]) -> list[type[ServiceSettings]]:
    return [kind for sub in cls.__subclasses__() for kind in (sub, *_descendants(sub))]


# A service's own class names its service; one shared by several (KeyHealthSettings) does not.
SERVICE_SETTINGS = {cls.service_name: cls for cls in _descendants(ServiceSettings) if hasattr(cls, "service_name")}


def load_settings(settings_class: type[Settings], environment: Mapping[str, str | None], files_root: Path,
                  monkeypatch: pytest.MonkeyPatch) -> Settings:
    """settings_class as built from environment alone (raises pydantic's ValidationError when it is refused)."""
    for name in [name for name in os.environ if name.startswith("HASH7_")]:
        monkeypatch.delenv(name)
    for name, value in environment.items():
        if not name.startswith("HASH7_") or value is None:
            continue
        if value.startswith("/") and name.endswith(_FILE_SETTINGS):
            stand_in = files_root / value.lstrip("/")
            stand_in.parent.mkdir(parents=True, exist_ok=True)
            stand_in.touch()
            value = str(stand_in)
        monkeypatch.setenv(name, value)
    return settings_class()


def service_settings(party: Party) -> type[ServiceSettings]:
    return SERVICE_SETTINGS[party]
