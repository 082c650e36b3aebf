"""Where the embedded stack's Vault keeps its files under the run folder, and the keys it saved at first start.

deploy/stack/bao.py writes them; the bootstrap reads the root token from them when HASH7_VAULT_TOKEN is unset.
"""

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, SecretStr, ValidationError

from deploy.bootstrap.errors import StackError


@dataclass(frozen=True)
class VaultFiles:
    """Where the embedded Vault keeps its files under the run folder."""

    run_dir: Path

    @property
    def directory(self) -> Path:
        return self.run_dir / "vault"

    @property
    def config(self) -> Path:
        return self.directory / "server.hcl"

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def init_file(self) -> Path:
        return self.directory / "init.json"

    @property
    def audit_log(self) -> Path:
        return self.directory / "audit.log"

    @property
    def server_log(self) -> Path:
        return self.run_dir / "logs" / "vault.log"


class InitKeys(BaseModel):
    """What `bao operator init` hands out once: the only way to unseal, and the root token."""

    unseal_key: SecretStr
    root_token: SecretStr


def read_init_keys(files: VaultFiles) -> InitKeys | None:
    """The keys saved at first start, or None if there is no init file."""
    try:
        saved = files.init_file.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return InitKeys.model_validate_json(saved)
    except ValidationError:
        # Not chained: pydantic's message would quote the file's content.
        raise StackError(f"{files.init_file} is damaged: expected JSON with unseal_key and root_token") from None
