"""Spans as tests see them: those of this process (`capture_spans`), and those services send over OTLP/HTTP
(`OtlpReceiver`, a collector's smallest part), both as `CollectedSpan`, so a test can check that they form one
trace."""

import gzip
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self

from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk.resources import SERVICE_NAME
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class CollectedSpan:
    trace_id: str
    span_id: str
    # None for a trace's root.
    parent_id: str | None
    name: str
    service: str
    kind: SpanKind
    attributes: dict[str, object]


def capture_spans() -> InMemorySpanExporter:
    """The spans this process ends from now on, until the exporter is shut down. The API takes one tracer
    provider per process, so the first call installs it and later ones add their exporter to it."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


def collected(spans: Iterable[ReadableSpan]) -> list[CollectedSpan]:
    return [CollectedSpan(
        trace_id=f"{span.context.trace_id:032x}",
        span_id=f"{span.context.span_id:016x}",
        parent_id=f"{span.parent.span_id:016x}" if span.parent is not None else None,
        name=span.name,
        service=str(span.resource.attributes.get(SERVICE_NAME)),
        kind=span.kind,
        attributes=dict(span.attributes or {}),
    ) for span in spans if span.context is not None]


def _value(value: AnyValue) -> object:
    field = value.WhichOneof("value")
    return getattr(value, field) if field is not None else None


def _spans_of(request: ExportTraceServiceRequest) -> Iterator[CollectedSpan]:
    for resource_spans in request.resource_spans:
        resource = {attribute.key: _value(attribute.value) for attribute in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield CollectedSpan(
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_id=span.parent_span_id.hex() or None,
                    name=span.name,
                    service=str(resource.get(SERVICE_NAME)),
                    # OTLP counts kinds from 1 (SPAN_KIND_INTERNAL), the API from 0.
                    kind=SpanKind(span.kind - 1),
                    attributes={attribute.key: _value(attribute.value) for attribute in span.attributes},
                )


class OtlpReceiver:
    """Takes what OTLP/HTTP exporters post to /v1/traces (protobuf), and keeps the spans. Use as a context
    manager; `endpoint` is what OTEL_EXPORTER_OTLP_ENDPOINT takes."""

    def __init__(self) -> None:
        self._spans: list[CollectedSpan] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 — http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.add(ExportTraceServiceRequest.FromString(body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 — http.server's signature
                """Quiet: every export would print a line."""

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.endpoint = f"http://{LOOPBACK}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-receiver", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add(self, request: ExportTraceServiceRequest) -> None:
        with self._lock:
            self._spans.extend(_spans_of(request))

    def spans(self) -> list[CollectedSpan]:
        with self._lock:
            return list(self._spans)
