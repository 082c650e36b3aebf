"""Imports every command module of `hash7-admin`, so that each registers its commands on the group."""

import deploy.admin.approle  # noqa: F401
import deploy.admin.dead_letters  # noqa: F401
import deploy.admin.kafka_acls  # noqa: F401
import deploy.admin.revocation  # noqa: F401
import deploy.admin.rotation  # noqa: F401
import deploy.admin.vault_backup  # noqa: F401
