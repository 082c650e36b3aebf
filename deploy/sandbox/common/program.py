"""A sandbox as a program: the Starlette app (the admin API under ADMIN_PREFIX, every other path to the exchange's
pipeline), its command line and its start. Each exchange's server.py describes itself as a SandboxProgram."""

import argparse
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog
import uvicorn
from pydantic import SecretStr, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from deploy.sandbox.common.state import EgressRoute, SandboxBooks
from shared.runtime.logging import configure_logging
from shared.runtime.program import version_line

# A path no supported exchange uses.
ADMIN_PREFIX = "/_sandbox"
EVERY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

# (scenario file, seed, egress routes) → the sandbox's state; raises OSError or ValueError for a bad file.
StateLoader = Callable[[Path, int | None, tuple[EgressRoute, ...]], SandboxBooks]

log = structlog.get_logger()


@dataclass(frozen=True)
class DemoKey:
    """A key of a demo scenario as its user hands it to Hash7: what `make run`'s demo binds (deploy/stack/demo.py).
    Where the scenario says the user mistypes the secret or passphrase, that is what is handed over."""

    name: str
    access_key: str
    secret_key: SecretStr = field(repr=False)
    passphrase: SecretStr | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SandboxProgram:
    name: str
    description: str
    default_port: int
    demo_scenario: Path
    load_state: StateLoader
    # The keys of a scenario file, as their users hand them over.
    demo_keys: Callable[[Path], list[DemoKey]]
    # The exchange's pipeline: answers every path outside the admin API, including the exchange's own "no such
    # path" answer.
    serve: Callable[[Request], Awaitable[Response]]
    admin_routes: Sequence[BaseRoute]

    def create_app(self, scenario_path: Path, seed: int | None = None,
                   egress_routes: tuple[EgressRoute, ...] = ()) -> Starlette:
        app = Starlette(routes=[Mount(ADMIN_PREFIX, routes=list(self.admin_routes)),
                                Route("/{path:path}", self.serve, methods=EVERY_METHOD)])

        def reload(new_seed: int | None = None) -> None:
            app.state.sandbox = self.load_state(scenario_path, seed if new_seed is None else new_seed, egress_routes)

        app.state.reload = reload
        reload()
        return app

    def argument_parser(self) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog=self.name, description=self.description)
        parser.add_argument("--version", action="version", version=version_line(self.name))
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=self.default_port)
        parser.add_argument("--scenario", type=Path, default=self.demo_scenario,
                            help="scenario JSON (default: the demo)")
        parser.add_argument("--seed", type=int, default=None, help="seed for injected error and timeout rates")
        parser.add_argument("--egress-map", dest="egress_routes", action="append", default=[], type=egress_route,
                            metavar="CIDR[=IP]",
                            help="callers from CIDR stand for the egress IP (IP, else the scenario's), as loopback "
                                 "callers always do; repeatable, first match wins (docker-compose.yml maps its "
                                 "network)")
        parser.add_argument("--log-level", default="INFO", type=str.upper,
                            choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
        return parser

    def parse_arguments(self, argv: list[str] | None = None) -> argparse.Namespace:
        return self.argument_parser().parse_args(argv)

    def main(self, argv: list[str] | None = None) -> None:
        parser = self.argument_parser()
        args = parser.parse_args(argv)
        configure_logging(self.name, level=args.log_level)
        try:
            app = self.create_app(args.scenario, args.seed, tuple(args.egress_routes))
        except (OSError, ValueError) as error:
            parser.exit(1, f"{self.name}: cannot load the scenario {args.scenario}: {scenario_problem(error)}\n")
        log.info("sandbox.starting", program=self.name, host=args.host, port=args.port, scenario=str(args.scenario),
                 egress_map=[f"{route.callers}={route.egress_ip or 'scenario'}" for route in args.egress_routes])
        # No access log: request lines and headers would carry signatures. A short graceful shutdown: a request held
        # by an injected timeout must not keep the process alive.
        uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_config=None, log_level="warning",
                    timeout_graceful_shutdown=1)


def egress_route(text: str) -> EgressRoute:
    """--egress-map's argument type."""
    try:
        return EgressRoute.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def scenario_problem(error: OSError | ValueError) -> str:
    """What is wrong with a scenario file, on one line: the OS's reason, the JSON parser's, or each field the
    scenario model refuses, never the values."""
    if isinstance(error, ValidationError):
        return "; ".join(f"{'.'.join(str(part) for part in problem['loc']) or 'the whole file'}: {problem['msg']}"
                         for problem in error.errors(include_input=False, include_url=False))
    if isinstance(error, OSError):
        return error.strerror or type(error).__name__
    return f"not JSON ({error})"
