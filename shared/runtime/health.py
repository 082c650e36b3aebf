"""Liveness, readiness and Prometheus metrics over HTTP, for one service process (HASH7_HEALTH_PORT).

- `GET /livez`: 200 while the event loop turns (its heartbeat is under `LIVE_MAX_STALL_S` old). A loop blocked
  for longer is a process to restart.
- `GET /readyz`: 200 when the service can do its work: its consumers joined their groups at start, Vault is
  reachable and unsealed, and no partition's commits have been held longer than HASH7_READY_MAX_RECORD_AGE_S by
  a record in hand (a stuck lane). 503 otherwise, naming what is wrong. Both answer JSON.
- `GET /metrics`: every metric of shared/runtime/metrics.py and the process's own (CPU, memory, open files).

The server is the standard library's WSGI server on a thread of its own, with prometheus_client's WSGI app for
/metrics: no web framework in the services' image for three read-only pages, and a blocked event loop cannot
stop it from saying so. It reads only what the loop notes every second (`HealthWatch`), never the loop's own
structures.
"""

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog
from prometheus_client import REGISTRY, make_wsgi_app

from shared.runtime.metrics import SUBSCRIPTIONS, VAULT_UNSEALED, PartitionLoad

log = structlog.get_logger(__name__)

# A heartbeat older than this means the event loop is stuck (a blocking call, a CPU-bound loop).
LIVE_MAX_STALL_S = 15.0
# How often the loop notes its heartbeat and its subscriptions' load, and how often Vault's seal is asked.
_NOTE_EVERY_S = 1.0
_VAULT_EVERY_S = 5.0

VaultProbe = Callable[[], Awaitable[str | None]]


@dataclass
class HealthWatch:
    """What /livez and /readyz answer from, kept up to date by `watch` on the service's event loop."""

    max_record_age_s: float
    beat_at: float = field(default_factory=time.monotonic)
    joined: bool = False
    vault_problem: str | None = "not checked yet"
    loads: list[PartitionLoad] = field(default_factory=list)

    async def beat(self, loads: Callable[[], Iterable[PartitionLoad]]) -> None:
        """Note the heartbeat and the load every second, until cancelled. Nothing here waits on anything but the
        loop, so a stale heartbeat means the loop itself is stuck."""
        while True:
            self.beat_at = time.monotonic()
            self.loads = list(loads())
            SUBSCRIPTIONS.note(self.loads)
            await asyncio.sleep(_NOTE_EVERY_S)

    async def probe_vault(self, vault_problem: VaultProbe) -> None:
        """Ask Vault's state every few seconds, until cancelled: a task of its own, so a slow Vault makes the
        service not ready, never not live."""
        while True:
            try:
                self.vault_problem = await vault_problem()
            except Exception as exc:  # noqa: BLE001 — whatever the probe met, the service is not ready, and says why
                self.vault_problem = f"not checked ({type(exc).__name__})"
            VAULT_UNSEALED.set(self.vault_problem is None)
            await asyncio.sleep(_VAULT_EVERY_S)

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        stalled_s = time.monotonic() - self.beat_at
        live = stalled_s < LIVE_MAX_STALL_S
        return live, {"status": "live" if live else "stalled", "event_loop_heartbeat_age_s": round(stalled_s, 1)}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        problems = []
        live, _ = self.liveness()
        if not live:
            problems.append(f"the event loop has not turned for over {LIVE_MAX_STALL_S:g} s")
        if not self.joined:
            problems.append("its consumers have not joined their groups yet")
        if self.vault_problem is not None:
            problems.append(f"Vault: {self.vault_problem}")
        stuck = [load for load in self.loads if load.oldest_age_s > self.max_record_age_s]
        problems += [f"{load.topic}[{load.partition}]: a record has been in hand for {load.oldest_age_s:.0f} s, "
                     "holding the partition's commits" for load in stuck]
        ready = not problems
        return ready, {"status": "ready" if ready else "not ready", "problems": problems,
                       "records_in_hand": sum(load.in_hand for load in self.loads)}


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 — the base class's name
        """Probes and scrapes come every few seconds: not one log line each."""


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scraper never holds the process open at shutdown


class HealthServer:
    """/livez, /readyz and /metrics on host:port (port 0: any free port; `url` says which)."""

    def __init__(self, watch: HealthWatch, host: str, port: int) -> None:
        self.watch = watch
        self._host = host
        self._metrics = make_wsgi_app(REGISTRY)
        self._server = make_server(host, port, self._app, server_class=_ThreadingWSGIServer,
                                   handler_class=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-http", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._server.server_port}"

    def start(self) -> None:
        self._thread.start()
        log.info("health_listening", url=self.url, paths=["/livez", "/readyz", "/metrics"])

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return self._metrics(environ, start_response)  # type: ignore[no-any-return]
        checks = {"/livez": self.watch.liveness, "/readyz": self.watch.readiness}.get(path)
        if checks is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"/livez, /readyz or /metrics\n"]
        ok, answer = checks()
        body = json.dumps(answer).encode()
        start_response("200 OK" if ok else "503 Service Unavailable",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
