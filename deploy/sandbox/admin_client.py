"""The admin client's old module path, kept only because deploy/stack/loopback.py still imports it from here; the
client is deploy/sandbox/common/admin_client.py. Remove once that import moves."""

from deploy.sandbox.common.admin_client import SandboxAdmin

__all__ = ["SandboxAdmin"]
