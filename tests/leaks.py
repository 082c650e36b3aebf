"""Where secrets turn up that must never be there: the scan behind the suites' leak checks."""

import json
from collections.abc import Iterator, Mapping, Set

import hvac

from shared.adapters.vault.layout import KV_MOUNT
from shared.contracts.routing import Topic


def leaks(secrets: Set[str], topics: Mapping[Topic, bytes], logs: str,
          published: Mapping[str, Topic] | None = None) -> list[str]:
    """One line per secret found on a topic or in the logs, naming it by its first characters only. A plaintext
    secret a test itself published (as a broken app would) may be found on the topic it was published to only."""
    published = published or {}
    found = sorted(
        f"{secret[:4]}… on {topic.value}"
        for secret in secrets for topic, content in topics.items()
        if secret.encode() in content and published.get(secret) != topic
    )
    return found + sorted(f"{secret[:4]}… in a service log" for secret in secrets if secret in logs)


def kv_documents(vault_admin: hvac.Client, folder: str = "") -> Iterator[tuple[str, str]]:
    """(path, JSON of its data) of every secret in Hash7's KV mount, read as root: what a role could ever read."""
    try:
        names = vault_admin.secrets.kv.v2.list_secrets(path=folder, mount_point=KV_MOUNT)["data"]["keys"]
    except hvac.exceptions.InvalidPath:
        return
    for name in names:
        if name.endswith("/"):
            yield from kv_documents(vault_admin, folder + name)
            continue
        data = vault_admin.secrets.kv.v2.read_secret_version(path=folder + name, mount_point=KV_MOUNT,
                                                             raise_on_deleted_version=False)["data"]["data"]
        yield folder + name, json.dumps(data)


def leaks_in_kv(secrets: Set[str], vault_admin: hvac.Client) -> list[str]:
    """One line per secret found in Vault's KV, where the services and trading engines read."""
    return sorted(f"{secret[:4]}… in Vault KV at {path}" for path, document in kv_documents(vault_admin)
                  for secret in secrets if secret in document)
