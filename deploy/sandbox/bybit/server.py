"""`bybit-sandbox`: a local HTTP server that answers like Bybit's v5 REST API (shared/adapters/bybit/README.md), for
the services, the tests and the benchmarks.

    python -m deploy.sandbox.bybit.server --port 8931 --scenario deploy/sandbox/bybit/demo-scenario.json
"""

from pathlib import Path

from deploy.sandbox.bybit.admin import ADMIN_ROUTES
from deploy.sandbox.bybit.api import serve_bybit
from deploy.sandbox.bybit.scenario import BybitSandboxState, BybitScenario
from deploy.sandbox.common.program import SandboxProgram

DEFAULT_PORT = 8931
DEMO_SCENARIO = Path(__file__).with_name("demo-scenario.json")

SANDBOX = SandboxProgram(
    name="bybit-sandbox",
    description="A local stand-in for Bybit's v5 REST API.",
    default_port=DEFAULT_PORT,
    demo_scenario=DEMO_SCENARIO,
    demo_keys=lambda path: BybitScenario.load(path).demo_keys(),
    load_state=lambda path, seed, routes: BybitSandboxState(BybitScenario.load(path), seed=seed, egress_routes=routes),
    # serve_bybit answers 404 for paths Bybit lacks (shared/adapters/bybit/README.md#envelopes).
    serve=serve_bybit,
    admin_routes=ADMIN_ROUTES,
)
main = SANDBOX.main

if __name__ == "__main__":
    main()
