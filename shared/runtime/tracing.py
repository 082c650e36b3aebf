"""Traces (OpenTelemetry): the one place that starts spans and carries their context across Kafka.

Off by default: without an exporter named in the environment no tracer provider is installed, every span below
is the API's no-op one (nothing recorded, nothing exported), and a record's processing skips tracing altogether:
what a service publishes carries no trace context. `configure_tracing` installs the SDK when the environment
asks for it, through the variables the OpenTelemetry SDK defines, read by the SDK itself wherever it reads them:

- `OTEL_TRACES_EXPORTER`: `otlp` (OTLP over HTTP/protobuf), `console` (spans as JSON on stdout), or any
  exporter registered under the entry point group `opentelemetry_traces_exporter`; several, comma-separated;
  `none` or unset means off, unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is
  set, which alone means `otlp`;
- the OTLP exporter's `OTEL_EXPORTER_OTLP_[TRACES_]{ENDPOINT,HEADERS,TIMEOUT,COMPRESSION,CERTIFICATE}`;
- the batch span processor's `OTEL_BSP_{SCHEDULE_DELAY,MAX_QUEUE_SIZE,MAX_EXPORT_BATCH_SIZE,EXPORT_TIMEOUT}`;
- `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` (default: parent-based, always on);
- `OTEL_RESOURCE_ATTRIBUTES` (`service.name` is always the program's own party, whatever it says);
- `OTEL_SDK_DISABLED=true`: off, whatever else is set.

A record carries its trace context in W3C `traceparent`/`tracestate` headers, signed with the rest of the record
(shared.contracts.provenance.is_signed_header): a record whose trace context was rewritten on the broker is
unauthentic, and nothing decides anything by it. The vault-writer stores the context of the span that stored a
binding in its record (shared/adapters/vault/records.py), and each of that binding's orders links to it.
"""

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import entry_points

from aiokafka import ConsumerRecord
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_SDK_DISABLED,
)
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_NAMESPACE, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from shared.contracts.routing import Party, Topic
from shared.runtime.errors import ClientError

OTEL_TRACES_EXPORTER = "OTEL_TRACES_EXPORTER"
_EXPORTER_ENTRY_POINTS = "opentelemetry_traces_exporter"
# The OTLP exporter installed (pyproject.toml): HTTP with protobuf.
_OTLP = "otlp_proto_http"
_NAMESPACE = "hash7"
# Records carry W3C trace context only, whatever OTEL_PROPAGATORS says: no baggage, which would forward whatever an
# unsigned header held through every hop.
_W3C = TraceContextTextMapPropagator()
_tracer = trace.get_tracer("hash7")

# Span and attribute names (README.md#traces-opentelemetry lists them for people).
REQUEST_SPAN = "binding.request"
ORDER_SPAN = "order.place"
REQUEST_ID = "hash7.request_id"
REQUEST_KIND = "hash7.request_kind"
BINDING_ID = "hash7.binding_id"
EVENT_TYPE = "hash7.event_type"
OUTCOME = "hash7.outcome"
ERROR_CLASS = "hash7.error_class"
LINK_KIND = "hash7.link"
BINDING_STORED_LINK = "binding.stored"
TRACEPARENT = "traceparent"


class TracingMisconfigured(ClientError):
    """OTEL_TRACES_EXPORTER names an exporter that is not installed."""


def configure_tracing(party: Party) -> None:
    """Install the SDK as the global tracer provider when the environment names an exporter (it flushes the
    spans it holds at exit); otherwise leave the API's no-op one."""
    provider = tracer_provider(party)
    if provider is not None:
        trace.set_tracer_provider(provider)


def tracer_provider(party: Party) -> TracerProvider | None:
    """The SDK's provider, exporting in batches to the exporters the environment names; None when it names none
    (the SDK reads the rest of its variables itself)."""
    exporters = _exporters()
    if not exporters:
        return None
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: party.value, SERVICE_NAMESPACE: _NAMESPACE}))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _exporters() -> list[SpanExporter]:
    if os.environ.get(OTEL_SDK_DISABLED, "").strip().lower() == "true":
        return []
    endpoints = (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
    endpoint_set = any(os.environ.get(name) for name in endpoints)
    named = os.environ.get(OTEL_TRACES_EXPORTER, "otlp" if endpoint_set else "none")
    names = [_OTLP if name == "otlp" else name for name in (part.strip() for part in named.split(","))
             if name and name != "none"]
    return [_exporter(name) for name in names]


def _exporter(name: str) -> SpanExporter:
    found = entry_points(group=_EXPORTER_ENTRY_POINTS, name=name)
    if not found:
        installed = ", ".join(sorted(["otlp", "none", *entry_points(group=_EXPORTER_ENTRY_POINTS).names]))
        raise TracingMisconfigured(f"{OTEL_TRACES_EXPORTER}: no exporter named {name!r} is installed "
                                   f"(installed: {installed})")
    exporter: SpanExporter = next(iter(found)).load()()
    return exporter


def with_trace_context(headers: Mapping[str, str]) -> dict[str, str]:
    """headers plus the current span's context (none when no span is current: tracing off, nothing to carry)."""
    carried = dict(headers)
    _W3C.inject(carried)
    return carried


@contextmanager
def consuming(record: ConsumerRecord, topic: Topic, event_type: str) -> Iterator[Span]:
    """The CONSUMER span of one record's processing, a child of the span that published it (from its headers).
    With tracing off, nothing at all: this runs for every record."""
    if _tracing_off():
        yield INVALID_SPAN
        return
    carrier = {name: value.decode(errors="replace") for name, value in record.headers or () if name in _W3C.fields}
    attributes: dict[str, AttributeValue] = {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": record.topic,
        "messaging.destination.partition.id": str(record.partition),
        "messaging.kafka.offset": record.offset,
        EVENT_TYPE: event_type,
    }
    with _span(f"process {topic.value}", SpanKind.CONSUMER, attributes, _W3C.extract(carrier)) as span:
        yield span


def note_ids(request_id: str | None, binding_id: str | None) -> None:
    """Name the current span's request and binding, so a trace can be found by either."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes({name: value for name, value in ((REQUEST_ID, request_id), (BINDING_ID, binding_id))
                             if value is not None})


def note_outcome(outcome: str, error_class: str | None = None) -> None:
    """How the current span's work ended; an error class marks it failed."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    span.set_attribute(OUTCOME, outcome)
    if error_class is not None:
        span.set_attribute(ERROR_CLASS, error_class)
        span.set_status(Status(StatusCode.ERROR, error_class))


@contextmanager
def requesting(request_kind: str, request_id: str) -> Iterator[Span]:
    """The app's PRODUCER span for one request it publishes: the root of the request's trace, unless the app
    itself has a span current (its own HTTP request, say), which it then continues."""
    with _span(REQUEST_SPAN, SpanKind.PRODUCER, {REQUEST_KIND: request_kind, REQUEST_ID: request_id}) as span:
        yield span


def current_traceparent() -> str | None:
    """The current span's context as a W3C traceparent, for a record that outlives the span; None with tracing off."""
    return with_trace_context({}).get(TRACEPARENT)


@contextmanager
def placing_order(binding_id: str) -> Iterator[Span]:
    """A trading engine's span for one order: the root of a trace of its own, which link_to_binding joins to the
    trace of the request that stored the binding. Not a child of it: a binding places orders for months, and one
    trace holding them all would outgrow what tracing backends keep of a trace, and be sampled with the request."""
    with _span(ORDER_SPAN, SpanKind.INTERNAL, {BINDING_ID: binding_id}) as span:
        yield span


def link_to_binding(stored_traceparent: str | None) -> None:
    """Link the current span to the span that stored the binding (its record's traceparent, when it has one)."""
    span = trace.get_current_span()
    if stored_traceparent is None or not span.is_recording():
        return
    stored = trace.get_current_span(_W3C.extract({TRACEPARENT: stored_traceparent})).get_span_context()
    if stored.is_valid:
        span.add_link(stored, {LINK_KIND: BINDING_STORED_LINK})


@contextmanager
def calling(peer: str, operation: str) -> Iterator[Span]:
    """A CLIENT span around one call to another system (Vault, an exchange)."""
    with _span(f"{peer} {operation}", SpanKind.CLIENT, {"peer.service": peer, "hash7.operation": operation}) as span:
        yield span


def _tracing_off() -> bool:
    """No tracer provider installed (configure_tracing, or an embedding app's own): every span would be a no-op."""
    return isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


@contextmanager
def _span(name: str, kind: SpanKind, attributes: Mapping[str, AttributeValue],
          parent: Context | None = None) -> Iterator[Span]:
    """A span that an exception fails by its class alone: the SDK's own handling would copy its message, which
    may quote what a user or an exchange sent, into the trace. With tracing off, none at all: this runs around every
    Vault and HTX call."""
    if _tracing_off():
        yield INVALID_SPAN
        return
    with _tracer.start_as_current_span(name, context=parent, kind=kind, attributes=attributes,
                                       record_exception=False, set_status_on_exception=False) as span:
        try:
            yield span
        except Exception as exc:
            note_outcome("failed", type(exc).__name__)
            raise
