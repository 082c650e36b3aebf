"""`htx-sandbox`: a local HTTP server that answers like HTX's spot REST API (see the README and
shared/adapters/htx/README.md), for the services, the tests and the benchmarks.

    htx-sandbox --host 127.0.0.1 --port 8930 --scenario deploy/sandbox/demo-scenario.json
"""

import argparse
from pathlib import Path

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from deploy.sandbox.admin import ADMIN_ROUTES
from deploy.sandbox.htx_api import serve_htx
from deploy.sandbox.scenario import SandboxState, Scenario
from shared.runtime.logging import configure_logging

DEMO_SCENARIO = Path(__file__).with_name("demo-scenario.json")
ADMIN_PREFIX = "/_sandbox"
_EVERY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

log = structlog.get_logger()


def create_app(scenario_path: Path, seed: int | None = None) -> Starlette:
    app = Starlette(
        routes=[
            Mount(ADMIN_PREFIX, routes=ADMIN_ROUTES),
            # Every other path goes to the HTX pipeline, which answers 405 for paths HTX lacks
            # (shared/adapters/htx/README.md#transport).
            Route("/{path:path}", serve_htx, methods=_EVERY_METHOD),
        ]
    )

    def reload(new_seed: int | None = None) -> None:
        app.state.sandbox = SandboxState(Scenario.load(scenario_path), seed=seed if new_seed is None else new_seed)

    app.state.reload = reload
    reload()
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="htx-sandbox", description="A local stand-in for HTX's spot REST API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8930)
    parser.add_argument("--scenario", type=Path, default=DEMO_SCENARIO, help="scenario JSON (default: the demo)")
    parser.add_argument("--seed", type=int, default=None, help="seed for injected error and timeout rates")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    configure_logging("htx-sandbox", level=args.log_level)
    app = create_app(args.scenario, args.seed)
    log.info("sandbox.starting", host=args.host, port=args.port, scenario=str(args.scenario))
    # No access log: request lines would carry signed URLs. A short graceful shutdown: a request held by an
    # injected timeout must not keep the process alive.
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_config=None, log_level="warning",
                timeout_graceful_shutdown=1)


if __name__ == "__main__":
    main()
