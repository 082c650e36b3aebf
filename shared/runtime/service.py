"""Running a service process: settings, logging, the FastStream app and its AsyncAPI description."""

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import structlog
from aiokafka import AIOKafkaProducer
from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from shared.adapters.vault.client import VaultClient, VaultPort
from shared.runtime.backoff import retry_while_raising
from shared.runtime.config import ServiceSettings
from shared.runtime.health import HealthServer, HealthWatch
from shared.runtime.kafka_security import kafka_connection
from shared.runtime.logging import configure_logging
from shared.runtime.producer import start_kafka_client
from shared.runtime.program import BadSettings, settings_from_environment, version_line
from shared.runtime.subscriptions import Subscriptions
from shared.runtime.tracing import configure_tracing

S = TypeVar("S", bound=ServiceSettings)
# A service that cannot run: bad settings, or what it needs unreachable.
EXIT_FAILED = 1
# EX_TEMPFAIL: the service could not start in time and should simply be started again.
EXIT_START_TIMED_OUT = 75
# A crashed background task is started again within this long (shared/runtime/backoff.py's full jitter).
BACKGROUND_RESTART_CAP_S = 30.0
log = structlog.get_logger(__name__)


def service_app(broker: KafkaBroker, subscriptions: Subscriptions, settings: ServiceSettings,
                description: str, vault: VaultPort) -> FastStream:
    """The app running broker, which closes subscriptions on shutdown, before the broker stops: the records in
    hand finish and their offsets are committed. With HASH7_HEALTH_PORT, it serves its health and metrics."""
    app = FastStream(
        broker,
        logger=logging.getLogger("hash7.app"),
        specification=AsyncAPI(title=f"hash7 {settings.service_name}", version="1", description=description),
    )

    async def check_kafka_login() -> None:
        await _check_kafka_login(settings)

    app.on_startup(check_kafka_login)
    app.on_shutdown(subscriptions.close)
    if settings.health_port is not None:
        serve_health(app, HealthServer(HealthWatch(settings.ready_max_record_age_s), settings.health_host,
                                       settings.health_port), vault, subscriptions)
    return app


async def _check_kafka_login(settings: ServiceSettings) -> None:
    """With SASL, log in once with a producer of our own before FastStream connects: FastStream loses a producer whose
    start failed (it never stops it), and lets aiokafka's SCRAM failure out as a bare KeyError; start_kafka_client
    says what happened in one line and closes what it started."""
    connection = kafka_connection(settings, settings.service_name)
    if connection.credentials is None:
        return
    probe = AIOKafkaProducer(**connection.client_options(), client_id=f"{settings.service_name}-login-check")
    await start_kafka_client(probe, connection)
    await probe.stop()


def serve_health(app: FastStream, server: HealthServer, vault: VaultPort, subscriptions: Subscriptions) -> None:
    """Serve /livez, /readyz and /metrics from before the broker starts (a slow join is visible as not ready)
    until the app has stopped; ready only once every consumer joined its group."""
    watching: list[asyncio.Task[None]] = []

    async def start() -> None:
        server.start()
        watching.extend([asyncio.create_task(server.watch.beat(subscriptions.loads)),
                         asyncio.create_task(server.watch.probe_vault(vault.unsealed_problem))])

    async def joined() -> None:
        server.watch.joined = True

    async def stop() -> None:
        for task in watching:
            task.cancel()
        server.stop()

    app.on_startup(start)
    app.after_startup(joined)
    app.after_shutdown(stop)


def background(app: FastStream, work: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
    """Run work for as long as the app runs, supervised (see `supervised`): started once the broker is up (so
    it may publish), cancelled when the app shuts down."""
    tasks: list[asyncio.Task[None]] = []

    async def start() -> None:
        tasks.append(asyncio.create_task(supervised(work, name)))

    async def stop() -> None:
        for task in tasks:
            task.cancel()

    app.after_startup(start)
    app.on_shutdown(stop)


async def supervised(work: Callable[[], Coroutine[Any, Any, None]], name: str,
                     restart_cap_s: float = BACKGROUND_RESTART_CAP_S) -> None:
    """Run work, and start it again whenever it raises, after a full-jitter backoff capped at restart_cap_s:
    a background task never dies unnoticed, nor is restarted in a tight loop. Each crash is one log line with
    the error's class only (its message may quote a secret). Cancellation stops it."""

    def log_crash(error: Exception, restart_in_s: float) -> None:
        log.error("background_task_crashed", task=name, error_class=type(error).__name__,
                  restart_in_s=round(restart_in_s, 2))

    await retry_while_raising(work, Exception, restart_cap_s, log_crash)
    log.info("background_task_finished", task=name)


def run(settings_class: type[S], build: Callable[[S], FastStream]) -> None:
    """The body of every `python -m services.<name>`: Ctrl-C / SIGTERM stop it gracefully (in-flight
    messages finish or are left uncommitted for redelivery). Whatever stops it (a bad HASH7_* setting, no AppRole
    credentials, Vault or Kafka unreachable at start) is one log line, JSON unless HASH7_LOG_FORMAT says
    otherwise, and exit code 1: never a traceback, which a log collector would take for many events."""
    program = f"python -m {build.__module__.rpartition('.')[0]}"
    parser = argparse.ArgumentParser(prog=program, description=sys.modules[build.__module__].__doc__,
                                     epilog="Configuration comes from HASH7_* environment variables.")
    parser.add_argument("--version", action="version", version=version_line(program))
    parser.parse_args()
    try:
        settings = settings_from_environment(settings_class)
    except BadSettings as error:
        configure_logging(settings_class.service_name)
        log.critical("start_failed", error=str(error))
        sys.exit(EXIT_FAILED)
    configure_logging(settings.service_name, settings.log_format, settings.log_level)
    try:
        configure_tracing(settings.service_name)
        timed_out = asyncio.run(run_with_start_deadline(build(settings), settings.start_timeout_s))
    except Exception as error:  # noqa: BLE001 — the one line says what stopped it; the class says where to look
        log.critical("service_failed", error_class=type(error).__name__, error=str(error),
                     kafka_bootstrap_servers=settings.kafka_bootstrap_servers, vault_addr=settings.vault_addr)
        sys.exit(EXIT_FAILED)
    if timed_out:
        sys.exit(EXIT_START_TIMED_OUT)


async def run_with_start_deadline(app: FastStream, timeout_s: float) -> bool:
    """Run the app until it is stopped; True when it stopped because it had not started within timeout_s.

    aiokafka's consumer start waits without limit for the group coordinator to assign partitions. A broker
    that never completes a join would leave the service up but consuming nothing, which no one notices; so
    past the deadline the service says so and stops (gracefully: what did start finishes its messages)."""
    started = asyncio.Event()
    timed_out = False

    async def mark_started() -> None:
        started.set()

    async def stop_unless_started() -> None:
        nonlocal timed_out
        try:
            await asyncio.wait_for(started.wait(), timeout_s)
        except TimeoutError:
            timed_out = True
            log.error("start_timed_out", timeout_s=timeout_s,
                      detail="not every consumer joined its group in time; exiting for a supervisor to start it again")
            app.exit()

    app.after_startup(mark_started)
    watchdog = asyncio.create_task(stop_unless_started())
    try:
        await app.run()
    finally:
        watchdog.cancel()
    return timed_out


def vault_client(settings: ServiceSettings) -> VaultClient:
    """The service's own identity, an AppRole or a JWT role as HASH7_VAULT_AUTH_METHOD says (never the root token)."""
    return VaultClient(settings.vault_connection(), settings.vault_login(settings.service_name))
