"""Where secrets turn up that must never be there: the scan behind the suites' leak checks."""

from collections.abc import Mapping, Set

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
