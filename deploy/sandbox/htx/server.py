"""`htx-sandbox`: a local HTTP server that answers like HTX's spot REST API (see the README and
shared/adapters/htx/README.md), for the services, the tests and the benchmarks.

    htx-sandbox --host 127.0.0.1 --port 8930 --scenario deploy/sandbox/htx/demo-scenario.json
"""

from pathlib import Path

from deploy.sandbox.common.program import SandboxProgram
from deploy.sandbox.htx.admin import ADMIN_ROUTES
from deploy.sandbox.htx.api import serve_htx
from deploy.sandbox.htx.scenario import HtxSandboxState, Scenario

DEFAULT_PORT = 8930
DEMO_SCENARIO = Path(__file__).with_name("demo-scenario.json")

SANDBOX = SandboxProgram(
    name="htx-sandbox",
    description="A local stand-in for HTX's spot REST API.",
    default_port=DEFAULT_PORT,
    demo_scenario=DEMO_SCENARIO,
    demo_keys=lambda path: Scenario.load(path).demo_keys(),
    load_state=lambda path, seed, routes: HtxSandboxState(Scenario.load(path), seed=seed, egress_routes=routes),
    # serve_htx answers 405 for paths HTX lacks (shared/adapters/htx/README.md#transport).
    serve=serve_htx,
    admin_routes=ADMIN_ROUTES,
)
main = SANDBOX.main

if __name__ == "__main__":
    main()
