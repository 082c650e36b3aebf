"""Every topic of the routing table (shared/contracts/routing.py), created explicitly with its partition count
(FastStream's auto-create would make 1 partition).

A topic that exists is left exactly as it is, even with another partition count: adding partitions remaps
keys to partitions, which would break the per-binding ordering the pipeline relies on.
"""

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from deploy.bootstrap.progress import BootstrapError, Outcome, Progress
from shared.contracts.routing import ROUTES, Topic
from shared.runtime.kafka_security import SCRAM_REFUSALS, KafkaConnection

TOPIC_PARTITIONS: dict[Topic, int] = {topic: route.partitions for topic, route in ROUTES.items()}

_TOPIC_ALREADY_EXISTS = 36


async def ensure_topics(connection: KafkaConnection, prefix: str, replication_factor: int,
                        progress: Progress) -> None:
    """Create every missing topic; report existing ones (and any partition count that differs) unchanged."""
    admin = AIOKafkaAdminClient(**connection.client_options(), request_timeout_ms=10_000)
    try:
        await admin.start()
        wanted = {topic.full_name(prefix): partitions for topic, partitions in TOPIC_PARTITIONS.items()}
        response = await admin.create_topics(
            [NewTopic(name, partitions, replication_factor) for name, partitions in wanted.items()]
        )
        existing: list[str] = []
        for name, error_code, error_message in response.topic_errors:
            if error_code == 0:
                progress.record(f"kafka topic {name}", Outcome.CREATED, f"{wanted[name]} partitions")
            elif error_code == _TOPIC_ALREADY_EXISTS:
                existing.append(name)
            else:
                raise BootstrapError(f"Kafka refused to create topic {name}: error {error_code} {error_message or ''}")
        if existing:
            for description in await admin.describe_topics(existing):
                name, partitions = description["topic"], len(description["partitions"])
                mismatch = f"has {partitions} partitions, {wanted[name]} wanted; left as is"
                progress.record(f"kafka topic {name}", Outcome.PRESENT, "" if partitions == wanted[name] else mismatch)
    except KafkaError as error:
        raise BootstrapError(f"cannot set up topics on Kafka at {connection.bootstrap_servers}: {error}") from None
    except SCRAM_REFUSALS:
        if connection.credentials is None:
            raise
        raise BootstrapError(connection.login_refused()) from None
    finally:
        await admin.close()
