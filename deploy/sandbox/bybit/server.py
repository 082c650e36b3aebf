"""`bybit-sandbox`: a local HTTP server that answers like Bybit's v5 REST API (shared/adapters/bybit/README.md), for
the services, the tests and the benchmarks.

    python -m deploy.sandbox.bybit.server --port 8931 --scenario deploy/sandbox/bybit/demo-scenario.json
"""

import argparse
from pathlib import Path

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from deploy.sandbox.bybit.admin import ADMIN_ROUTES
from deploy.sandbox.bybit.api import serve_bybit
from deploy.sandbox.bybit.scenario import BybitSandboxState, BybitScenario
from deploy.sandbox.scenario import EgressRoute
from deploy.sandbox.server import ADMIN_PREFIX, _egress_route, _scenario_problem
from shared.runtime.logging import configure_logging
from shared.runtime.program import version_line

PROGRAM = "bybit-sandbox"
DEFAULT_PORT = 8931
DEMO_SCENARIO = Path(__file__).with_name("demo-scenario.json")
_EVERY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

log = structlog.get_logger()


def create_app(scenario_path: Path, seed: int | None = None, egress_routes: tuple[EgressRoute, ...] = ()) -> Starlette:
    app = Starlette(routes=[
        Mount(ADMIN_PREFIX, routes=ADMIN_ROUTES),
        # Every other path goes to the Bybit pipeline, which answers 404 for paths Bybit lacks
        # (shared/adapters/bybit/README.md#envelopes).
        Route("/{path:path}", serve_bybit, methods=_EVERY_METHOD),
    ])

    def reload(new_seed: int | None = None) -> None:
        app.state.sandbox = BybitSandboxState(BybitScenario.load(scenario_path),
                                              seed=seed if new_seed is None else new_seed, egress_routes=egress_routes)

    app.state.reload = reload
    reload()
    return app


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """The HTX sandbox's command line (deploy/sandbox/server.py), with Bybit's port and demo scenario."""
    parser = argparse.ArgumentParser(prog=PROGRAM, description="A local stand-in for Bybit's v5 REST API.")
    parser.add_argument("--version", action="version", version=version_line(PROGRAM))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--scenario", type=Path, default=DEMO_SCENARIO, help="scenario JSON (default: the demo)")
    parser.add_argument("--seed", type=int, default=None, help="seed for injected error and timeout rates")
    parser.add_argument("--egress-map", dest="egress_routes", action="append", default=[], type=_egress_route,
                        metavar="CIDR[=IP]", help="callers from CIDR stand for the egress IP (IP, else the "
                                                  "scenario's), as loopback callers always do; repeatable")
    parser.add_argument("--log-level", default="INFO", type=str.upper,
                        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
    arguments = parser.parse_args(argv)
    arguments.parser = parser
    return arguments


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    configure_logging(PROGRAM, level=args.log_level)
    try:
        app = create_app(args.scenario, args.seed, tuple(args.egress_routes))
    except (OSError, ValueError) as error:
        args.parser.exit(1, f"{PROGRAM}: cannot load the scenario {args.scenario}: {_scenario_problem(error)}\n")
    log.info("sandbox.starting", host=args.host, port=args.port, scenario=str(args.scenario),
             egress_map=[f"{route.callers}={route.egress_ip or 'scenario'}" for route in args.egress_routes])
    # No access log: request lines and headers would carry signatures. A short graceful shutdown: a request held by
    # an injected timeout must not keep the process alive.
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_config=None, log_level="warning",
                timeout_graceful_shutdown=1)


if __name__ == "__main__":
    main()
