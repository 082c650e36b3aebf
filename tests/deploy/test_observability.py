"""The Grafana dashboard and the Prometheus alert rules (deploy/observability/) say only what the services export:
every expression parses as PromQL (promql-parser, a port of Prometheus's own parser) and names only metrics that
shared/runtime/metrics.py, FastStream's middleware or the process collector define, and each alert names the README
runbook for it."""

import json
import re
from pathlib import Path

import promql_parser
import pytest
import yaml
from prometheus_client import REGISTRY

import shared.runtime.metrics  # noqa: F401 — registers the metrics
from shared.runtime.broker import make_broker
from shared.runtime.config import Settings

OBSERVABILITY = Path(__file__).resolve().parents[2] / "deploy" / "observability"
README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
# What Prometheus itself records about each scrape.
PROMETHEUS_OWN = {"up"}


def exported_names() -> set[str]:
    make_broker(Settings(), "metrics-test")  # FastStream's middleware registers its metrics
    names = set(PROMETHEUS_OWN)
    for family in REGISTRY.collect():
        suffixes = {"counter": ["_total", "_created"], "histogram": ["_bucket", "_count", "_sum", "_created"],
                    "summary": ["_count", "_sum", "_created"]}.get(family.type, [""])
        names |= {family.name + suffix for suffix in suffixes}
    return names


def selectors(expr: str) -> set[str]:
    names: set[str] = set()

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def alert_rules() -> list[dict]:
    document = yaml.safe_load((OBSERVABILITY / "alert-rules.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((OBSERVABILITY / "grafana-dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


@pytest.mark.parametrize("expr", [rule["expr"] for rule in alert_rules()] + dashboard_exprs())
def test_every_expression_parses_and_names_only_exported_metrics(expr):
    used = selectors(expr)
    assert used, f"no metric in {expr}"
    assert used <= exported_names(), used - exported_names()


def test_a_metric_that_does_not_exist_is_caught():
    assert selectors("rate(hash7_no_such_thing_total[5m])") - exported_names() == {"hash7_no_such_thing_total"}
    with pytest.raises(ValueError):
        promql_parser.parse("sum by (topic (rate(x[5m]))")


def test_each_alert_has_a_severity_a_summary_and_a_runbook_the_readme_has():
    runbooks = set(re.findall(r"^#### (.+)$", README, flags=re.MULTILINE))
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        runbook = rule["annotations"]["runbook"].removeprefix("Runbooks: ")
        assert runbook in runbooks, f"{rule['alert']}: README has no runbook '#### {runbook}'"
