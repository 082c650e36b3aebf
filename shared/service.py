"""Running a service process: settings, logging, the FastStream app and its AsyncAPI description."""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from shared.config import ServiceSettings
from shared.logging import configure_logging
from shared.vault import VaultClient

S = TypeVar("S", bound=ServiceSettings)


def service_app(broker: KafkaBroker, settings: ServiceSettings, description: str) -> FastStream:
    return FastStream(
        broker,
        logger=logging.getLogger("hash7.app"),
        specification=AsyncAPI(title=f"hash7 {settings.service_name}", version="1", description=description),
    )


def background(app: FastStream, work: Callable[[], Awaitable[None]]) -> None:
    """Run work for as long as the app runs: started once the broker is up (so it may publish), cancelled
    when the app shuts down."""
    tasks: list[asyncio.Task[None]] = []

    async def start() -> None:
        tasks.append(asyncio.create_task(work()))

    async def stop() -> None:
        for task in tasks:
            task.cancel()

    app.after_startup(start)
    app.on_shutdown(stop)


def run(settings_class: type[S], build: Callable[[S], FastStream]) -> None:
    """The body of every `python -m services.<name>`: Ctrl-C / SIGTERM stop it gracefully (in-flight
    messages finish or are left uncommitted for redelivery)."""
    settings = settings_class()
    configure_logging(settings.service_name, settings.log_format, settings.log_level)
    asyncio.run(build(settings).run())


def vault_client(settings: ServiceSettings) -> VaultClient:
    """The service's own AppRole identity (never the root token)."""
    return VaultClient(settings.vault_addr, settings.approle_credentials(settings.service_name), settings.vault_timeout_s)
