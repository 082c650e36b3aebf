"""Tracing (shared/runtime/tracing.py): off unless the environment names an exporter, and then a record's
processing continues the trace of the span that published it and hands it on; the trace context rides in
headers the record's signature covers, and an order links to the span that stored its binding. The pipeline end to end:
tests/e2e/test_trace.py."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_NAMESPACE
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from shared.contracts.provenance import signed_digest
from shared.contracts.routing import Party, Topic
from shared.runtime.provenance import EventSigner, OutgoingRecord, Unauthentic
from shared.runtime.tracing import (
    OUTCOME,
    REQUEST_SPAN,
    TracingMisconfigured,
    calling,
    consuming,
    current_traceparent,
    link_to_binding,
    placing_order,
    requesting,
    tracer_provider,
    with_trace_context,
)
from tests.builders import validated
from tests.fakes import InMemoryVault
from tests.runtime.test_processing import Record, RecordingPublisher, millis, processor
from tests.runtime.test_provenance import verify
from tests.traces import capture_spans, collected

# What tracing may cost a record when it is off; a record's processing (a signature check, a handler, a
# confirmed publish) takes milliseconds.
OFF_COST_LIMIT_US = 50

_OFF_PROCESS = """
import json, time
from aiokafka import ConsumerRecord
from opentelemetry import trace
from shared.contracts.routing import Party, Topic
from shared.runtime.tracing import configure_tracing, consuming, with_trace_context

configure_tracing(Party.INTAKE)
record = ConsumerRecord("t.binding.requested", 0, 1, 0, 0, b"u1", b"{}", None, 2, 2, [("event-type", b"X")])

def one_record():
    with consuming(record, Topic.BINDING_REQUESTED, "BindingRequested"):
        return with_trace_context({"event-type": "BindingAccepted"})

headers = one_record()
runs = 20_000
started = time.perf_counter()
for _ in range(runs):
    one_record()
print(json.dumps({"provider": type(trace.get_tracer_provider()).__name__, "headers": headers,
                  "per_record_us": (time.perf_counter() - started) / runs * 1e6}))
"""

_CONSOLE_PROCESS = """
from shared.contracts.routing import Party
from shared.runtime.tracing import calling, configure_tracing

configure_tracing(Party.VALIDATOR)
with calling("htx", "GET /v1/common/symbols"):
    pass
"""


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = capture_spans()
    yield exporter
    exporter.shutdown()


def without_otel_variables() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}


def test_tracing_off_installs_nothing_adds_no_header_and_costs_nothing_measurable():
    # A process of its own: the API takes one tracer provider per process, and these tests install one.
    finished = subprocess.run([sys.executable, "-c", _OFF_PROCESS], capture_output=True, text=True, timeout=120,
                              env=without_otel_variables(), check=True)
    result = json.loads(finished.stdout)
    assert result["provider"] == "ProxyTracerProvider"
    assert result["headers"] == {"event-type": "BindingAccepted"}
    assert result["per_record_us"] < OFF_COST_LIMIT_US


@pytest.mark.parametrize("variables", [
    {},
    {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"},
    {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"},
])
def test_without_an_exporter_named_tracing_stays_off(monkeypatch, variables):
    for name in [name for name in os.environ if name.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert tracer_provider(Party.INTAKE) is None


def test_an_otlp_endpoint_alone_turns_tracing_on_named_as_the_service(monkeypatch):
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    provider = tracer_provider(Party.VAULT_WRITER)
    assert provider is not None
    try:
        assert provider.resource.attributes[SERVICE_NAME] == "vault-writer"
        assert provider.resource.attributes[SERVICE_NAMESPACE] == "hash7"
    finally:
        provider.shutdown()


def test_the_console_exporter_prints_the_services_spans_by_its_exit():
    # Its own process: what it holds is exported when it exits, as a stopping service's spans are.
    finished = subprocess.run([sys.executable, "-c", _CONSOLE_PROCESS], capture_output=True, text=True, timeout=120,
                              env=without_otel_variables() | {"OTEL_TRACES_EXPORTER": "console"}, check=True)
    printed = json.loads(finished.stdout)
    assert (printed["name"], printed["kind"]) == ("htx GET /v1/common/symbols", "SpanKind.CLIENT")
    assert printed["resource"]["attributes"][SERVICE_NAME] == "validator"


def test_an_exporter_that_is_not_installed_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "jaeger")
    with pytest.raises(TracingMisconfigured, match="no exporter named 'jaeger' is installed .*console.*otlp"):
        tracer_provider(Party.INTAKE)


def test_a_records_span_continues_the_publishers_trace_and_hands_its_own_on(spans):
    with requesting("bind", "r-1"):
        sent = with_trace_context({"event-type": "BindingRequested"})
    record = Record(b"{}", 0, offset=5, topic="t.binding.requested",
                    headers=[(name, value.encode()) for name, value in sent.items()])
    with consuming(record, Topic.BINDING_REQUESTED, "BindingRequested"):
        handed_on = with_trace_context({})

    request, process = collected(spans.get_finished_spans())
    assert (request.name, request.kind, request.parent_id) == (REQUEST_SPAN, SpanKind.PRODUCER, None)
    assert (process.trace_id, process.parent_id) == (request.trace_id, request.span_id)
    assert list(handed_on) == ["traceparent"]
    assert handed_on["traceparent"].split("-")[:3] == ["00", process.trace_id, process.span_id]
    assert (process.name, process.kind) == ("process binding.requested", SpanKind.CONSUMER)
    assert process.attributes == {
        "messaging.system": "kafka", "messaging.operation.type": "process",
        "messaging.destination.name": "t.binding.requested", "messaging.destination.partition.id": "0",
        "messaging.kafka.offset": 5, "hash7.event_type": "BindingRequested",
    }


def test_a_malformed_trace_context_starts_a_trace_of_its_own(spans):
    record = Record(b"{}", 0, offset=5, topic="t.binding.requested", headers=[("traceparent", b"00-not-a-context")])
    with consuming(record, Topic.BINDING_REQUESTED, "BindingRequested"):
        pass
    [process] = collected(spans.get_finished_spans())
    assert process.parent_id is None


async def test_the_processors_span_names_the_records_ids_and_outcome_and_is_current_in_the_handler(spans):
    publisher = RecordingPublisher()
    body = validated(request_id="r-7", binding_id="b-7").to_bytes()
    await processor([], publisher).process(Record(body, millis(datetime.now(UTC)), offset=7))
    await processor([], publisher, [ValueError("a bug")] * 9).process(Record(body, 0, offset=8))

    handled, dead_lettered = [span for span in collected(spans.get_finished_spans()) if span.kind is SpanKind.CONSUMER]
    assert (handled.attributes["hash7.request_id"], handled.attributes["hash7.binding_id"]) == ("r-7", "b-7")
    assert handled.attributes[OUTCOME] == "handled"
    assert (dead_lettered.attributes[OUTCOME], dead_lettered.attributes["hash7.error_class"]) == (
        "dead_lettered", "ValueError")
    [failed] = [span for span in spans.get_finished_spans() if span.context.span_id == int(dead_lettered.span_id, 16)]
    assert failed.status.status_code is StatusCode.ERROR


def test_a_failed_call_is_marked_by_its_error_class_alone(spans):
    with pytest.raises(ValueError), calling("vault", "seal"):
        raise ValueError("text that may quote what a user sent")
    [span] = spans.get_finished_spans()
    assert (span.kind, span.status.status_code, span.status.description) == (SpanKind.CLIENT, StatusCode.ERROR,
                                                                              "ValueError")
    assert span.events == () and span.attributes["hash7.error_class"] == "ValueError"


def test_an_order_is_a_trace_of_its_own_linked_to_the_span_that_stored_its_binding(spans):
    with requesting("bind", "r-1") as storing:
        stored = current_traceparent()
    with placing_order("b-1"):
        link_to_binding(stored)

    order, storing_context = spans.get_finished_spans()[-1], storing.get_span_context()
    trace_id, span_id, flags = storing_context.trace_id, storing_context.span_id, storing_context.trace_flags
    assert stored == f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"
    assert order.parent is None and order.context.trace_id != storing_context.trace_id
    [link] = order.links
    assert (link.context.trace_id, link.context.span_id) == (storing_context.trace_id, storing_context.span_id)
    assert link.attributes == {"hash7.link": "binding.stored"} and order.attributes["hash7.binding_id"] == "b-1"


@pytest.mark.parametrize("stored", [None, "", "00-not-a-context", "00-" + "0" * 32 + "-" + "0" * 16 + "-01"])
def test_an_order_of_a_binding_stored_untraced_or_with_no_valid_context_links_to_nothing(spans, stored):
    with placing_order("b-1"):
        link_to_binding(stored)
    [order] = spans.get_finished_spans()
    assert order.links == ()


def test_with_tracing_off_nothing_is_stored_and_nothing_is_linked():
    assert current_traceparent() is None
    with placing_order("b-1"):
        link_to_binding("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")


async def test_the_trace_context_is_signed_with_the_record_and_a_rewritten_one_is_unauthentic():
    vault = InMemoryVault()
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    [signed] = await EventSigner(vault, Party.WHITELIST).sign([OutgoingRecord(
        Topic.BINDING_STATUS, "u1", b"{}", {"event-type": "BindingStatus", "traceparent": traceparent,
                                            "tracestate": "vendor=1"})])
    headers = [(name, value.encode()) for name, value in signed.headers.items()]
    assert await verify(vault, headers, body=b"{}") is Party.WHITELIST
    # The vault-writer stores the context it continues: anyone on the broker rewriting or adding one is refused.
    rewritten = [(name, b"00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-01" if name == "traceparent" else value)
                 for name, value in headers]
    untraced = [(name, value) for name, value in headers if name not in ("traceparent", "tracestate")]
    for forged in (rewritten, untraced, [*headers, ("traceparent", traceparent.encode())],
                   [(name, b"other=2" if name == "tracestate" else value) for name, value in headers]):
        with pytest.raises(Unauthentic):
            await verify(vault, forged, body=b"{}")
    assert signed_digest("binding.status", "whitelist", b"u1", {"traceparent": traceparent}, b"{}") != signed_digest(
        "binding.status", "whitelist", b"u1", {}, b"{}")

