"""`okx-sandbox`: a local HTTP server that answers like OKX's v5 REST API for the endpoints Hash7 uses (see
shared/adapters/okx/README.md), for the tests and the independent clients. The same command-line shape as the HTX
sandbox (deploy/sandbox/server.py).

    python -m deploy.sandbox.okx.server --host 127.0.0.1 --port 8932 --scenario deploy/sandbox/okx/demo-scenario.json
"""

import argparse
from pathlib import Path

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from deploy.sandbox.okx.admin import ADMIN_ROUTES
from deploy.sandbox.okx.okx_api import serve_okx
from deploy.sandbox.okx.scenario import OkxSandboxState, OkxScenario
from deploy.sandbox.scenario import EgressRoute
from deploy.sandbox.server import _EVERY_METHOD, ADMIN_PREFIX, _egress_route, _scenario_problem
from shared.runtime.logging import configure_logging
from shared.runtime.program import version_line

PROGRAM = "okx-sandbox"
DEFAULT_PORT = 8932
DEMO_SCENARIO = Path(__file__).with_name("demo-scenario.json")

log = structlog.get_logger()


def create_app(scenario_path: Path, seed: int | None = None, egress_routes: tuple[EgressRoute, ...] = ()) -> Starlette:
    app = Starlette(routes=[Mount(ADMIN_PREFIX, routes=ADMIN_ROUTES),
                            Route("/{path:path}", serve_okx, methods=_EVERY_METHOD)])

    def reload(new_seed: int | None = None) -> None:
        scenario = OkxScenario.load(scenario_path)
        app.state.sandbox = OkxSandboxState(scenario, seed=seed if new_seed is None else new_seed,
                                            egress_routes=egress_routes)

    app.state.reload = reload
    reload()
    return app


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROGRAM, description="A local stand-in for OKX's v5 REST API.")
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
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    configure_logging(PROGRAM, level=args.log_level)
    try:
        app = create_app(args.scenario, args.seed, tuple(args.egress_routes))
    except (OSError, ValueError) as error:
        raise SystemExit(f"{PROGRAM}: cannot load the scenario {args.scenario}: {_scenario_problem(error)}") from None
    log.info("sandbox.starting", program=PROGRAM, host=args.host, port=args.port, scenario=str(args.scenario))
    # No access log (request lines and headers carry signatures); a short graceful shutdown, so a request held by an
    # injected timeout does not keep the process alive.
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_config=None, log_level="warning",
                timeout_graceful_shutdown=1)


if __name__ == "__main__":
    main()
