"""`okx-sandbox`: a local HTTP server that answers like OKX's v5 REST API for the endpoints Hash7 uses (see
shared/adapters/okx/README.md), for the tests and the independent clients.

    python -m deploy.sandbox.okx.server --host 127.0.0.1 --port 8932 --scenario deploy/sandbox/okx/demo-scenario.json
"""

from pathlib import Path

from deploy.sandbox.common.program import SandboxProgram
from deploy.sandbox.okx.admin import ADMIN_ROUTES
from deploy.sandbox.okx.okx_api import serve_okx
from deploy.sandbox.okx.scenario import OkxSandboxState, OkxScenario

DEFAULT_PORT = 8932
DEMO_SCENARIO = Path(__file__).with_name("demo-scenario.json")

SANDBOX = SandboxProgram(
    name="okx-sandbox",
    description="A local stand-in for OKX's v5 REST API.",
    default_port=DEFAULT_PORT,
    demo_scenario=DEMO_SCENARIO,
    demo_keys=lambda path: OkxScenario.load(path).demo_keys(),
    load_state=lambda path, seed, routes: OkxSandboxState(OkxScenario.load(path), seed=seed, egress_routes=routes),
    serve=serve_okx,
    admin_routes=ADMIN_ROUTES,
)
main = SANDBOX.main

if __name__ == "__main__":
    main()
