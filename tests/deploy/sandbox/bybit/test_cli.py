"""The Bybit sandbox's command line, as a process: every sandbox's `--egress-map` rule
(deploy/sandbox/common/network.py) decides which address a loopback caller stands for, and a bad scenario file stops
it with a one-line reason."""

import json
import subprocess
import sys

import pytest

from tests.deploy.sandbox.bybit.signed import signed_get
from tests.fixtures.bybit_sandbox import running_bybit_sandbox

pytestmark = pytest.mark.stack


def test_an_egress_map_makes_loopback_callers_another_address(tmp_path):
    with running_bybit_sandbox(tmp_path, ["--egress-map", "127.0.0.0/8=198.51.100.7"]) as sandbox:
        # 198.51.100.7 is bound only to the ip-foreign key; the good key's list does not hold it.
        assert signed_get(sandbox, "ip-foreign", "/v5/user/query-api").json()["retCode"] == 0
        assert signed_get(sandbox, "good", "/v5/user/query-api").json()["retCode"] == 10010


def test_a_bad_scenario_is_refused_on_one_line(tmp_path):
    scenario = tmp_path / "bad.json"
    scenario.write_text(json.dumps({"egress_ip": "203.0.113.10", "users": [{"uid": "x"}]}))
    run = subprocess.run([sys.executable, "-m", "deploy.sandbox.bybit.server", "--scenario", str(scenario)],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 1
    assert run.stderr.startswith(f"bybit-sandbox: cannot load the scenario {scenario}: users.0.uid:")
