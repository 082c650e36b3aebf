"""A client of the OKX sandbox's admin API: every sandbox's (deploy/sandbox/common/admin_client.py), plus OKX's
instruments."""

from typing import Any

from deploy.sandbox.common.admin_client import SandboxAdmin


class OkxSandboxAdmin(SandboxAdmin):
    def put_instrument(self, instrument: dict[str, Any]) -> None:
        self._send("PUT", f"/instruments/{instrument['inst_id']}", instrument)
