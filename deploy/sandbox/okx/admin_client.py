"""A client of the OKX sandbox's admin API: the HTX sandbox's (deploy/sandbox/admin_client.py), whose routes the OKX
sandbox shares, plus OKX's instruments."""

from typing import Any

from deploy.sandbox.admin_client import SandboxAdmin


class OkxSandboxAdmin(SandboxAdmin):
    def put_instrument(self, instrument: dict[str, Any]) -> None:
        self._send("PUT", f"/instruments/{instrument['inst_id']}", instrument)
