"""`htx-sandbox`: a local HTTP server that answers like HTX's spot REST API (see the README and
shared/adapters/htx/README.md), for the services, the tests and the benchmarks.

    htx-sandbox --host 127.0.0.1 --port 8930 --scenario deploy/sandbox/demo-scenario.json
"""

import argparse
from pathlib import Path

import structlog
import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from deploy.sandbox.admin import ADMIN_ROUTES
from deploy.sandbox.htx_api import serve_htx
from deploy.sandbox.scenario import EgressRoute, SandboxState, Scenario
from shared.runtime.logging import configure_logging
from shared.runtime.program import version_line

PROGRAM = "htx-sandbox"
DEMO_SCENARIO = Path(__file__).with_name("demo-scenario.json")
ADMIN_PREFIX = "/_sandbox"
_EVERY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

log = structlog.get_logger()


def create_app(scenario_path: Path, seed: int | None = None, egress_routes: tuple[EgressRoute, ...] = ()) -> Starlette:
    app = Starlette(
        routes=[
            Mount(ADMIN_PREFIX, routes=ADMIN_ROUTES),
            # Every other path goes to the HTX pipeline, which answers 405 for paths HTX lacks
            # (shared/adapters/htx/README.md#transport).
            Route("/{path:path}", serve_htx, methods=_EVERY_METHOD),
        ]
    )

    def reload(new_seed: int | None = None) -> None:
        app.state.sandbox = SandboxState(Scenario.load(scenario_path), seed=seed if new_seed is None else new_seed,
                                         egress_routes=egress_routes)

    app.state.reload = reload
    reload()
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=PROGRAM, description="A local stand-in for HTX's spot REST API.")
    parser.add_argument("--version", action="version", version=version_line(PROGRAM))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8930)
    parser.add_argument("--scenario", type=Path, default=DEMO_SCENARIO, help="scenario JSON (default: the demo)")
    parser.add_argument("--seed", type=int, default=None, help="seed for injected error and timeout rates")
    parser.add_argument("--egress-map", dest="egress_routes", action="append", default=[], type=_egress_route,
                        metavar="CIDR[=IP]",
                        help="callers from CIDR stand for the egress IP (IP, else the scenario's), as loopback callers "
                             "always do; repeatable, first match wins (docker-compose.yml maps its network)")
    parser.add_argument("--log-level", default="INFO", type=str.upper,
                        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
    args = parser.parse_args(argv)
    configure_logging(PROGRAM, level=args.log_level)
    try:
        app = create_app(args.scenario, args.seed, tuple(args.egress_routes))
    except (OSError, ValueError) as error:
        parser.exit(1, f"{PROGRAM}: cannot load the scenario {args.scenario}: {_scenario_problem(error)}\n")
    log.info("sandbox.starting", host=args.host, port=args.port, scenario=str(args.scenario),
             egress_map=[f"{route.callers}={route.egress_ip or 'scenario'}" for route in args.egress_routes])
    # No access log: request lines would carry signed URLs. A short graceful shutdown: a request held by an
    # injected timeout must not keep the process alive.
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_config=None, log_level="warning",
                timeout_graceful_shutdown=1)



def _egress_route(text: str) -> EgressRoute:
    try:
        return EgressRoute.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _scenario_problem(error: OSError | ValueError) -> str:
    """What is wrong with a scenario file, on one line: the OS's reason, the JSON parser's, or each field the
    scenario model refuses (deploy/sandbox/scenario.py), never the values."""
    if isinstance(error, ValidationError):
        return "; ".join(f"{'.'.join(str(part) for part in problem['loc']) or 'the whole file'}: {problem['msg']}"
                         for problem in error.errors(include_input=False, include_url=False))
    if isinstance(error, OSError):
        return error.strerror or type(error).__name__
    return f"not JSON ({error})"


if __name__ == "__main__":
    main()
