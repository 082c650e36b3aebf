"""One binding request's trace, end to end: the app's span, then every service's processing of what it led to,
as real processes exporting over OTLP/HTTP, and a trading engine's order, a trace of its own linked to the span
that stored the binding. The services run with
tracing on, on topics of their own, beside the session's (untraced) pipeline."""

import asyncio
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from deploy.bootstrap.kafka_topics import TopicLayout, ensure_topics
from deploy.bootstrap.progress import Progress
from deploy.bootstrap.run import BOOTSTRAP_IDENTITY
from deploy.stack.services import SERVICE_PACKAGES, service_environment
from deploy.stack.services import ServiceProcesses as Pipeline
from shared.clients.binding_client import BindingClient
from shared.clients.trading import OrderRequest, order_gate
from shared.contracts.routing import Party
from shared.contracts.states import BindingState
from shared.runtime.config import EngineSettings
from shared.runtime.kafka_security import kafka_connection
from shared.runtime.tracing import ORDER_SPAN, OUTCOME, REQUEST_SPAN
from tests.e2e.helpers import WAIT_S, bind, fresh_key, new_user
from tests.fixtures.pipeline import TEST_SERVICE_SETTINGS
from tests.traces import CollectedSpan, OtlpReceiver, capture_spans, collected

pytestmark = pytest.mark.stack

TRACED_TOPIC_PREFIX = "traced."
SERVICES = {party.value for party in (Party.INTAKE, Party.VALIDATOR, Party.VAULT_WRITER, Party.WHITELIST)}


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as otlp_receiver:
        yield otlp_receiver


@pytest.fixture(scope="module")
def traced_pipeline(bootstrapped_stack, sandbox_urls, receiver, tmp_path_factory) -> Iterator[Pipeline]:
    """The four services exporting their spans to receiver, every 100 ms. Topics and consumer groups of their
    own: the session's services must not take these records, nor these services the session's."""
    settings = bootstrapped_stack.settings.model_copy(update={"topic_prefix": TRACED_TOPIC_PREFIX})
    asyncio.run(ensure_topics(kafka_connection(settings, BOOTSTRAP_IDENTITY), TRACED_TOPIC_PREFIX, TopicLayout(),
                              Progress()))
    running = Pipeline(
        settings=settings,
        env=service_environment(settings, sandbox_urls) | TEST_SERVICE_SETTINGS | {
            "HASH7_KAFKA_GROUP_SUFFIX": ".traced",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        },
        log_dir=tmp_path_factory.mktemp("traced-service-logs"),
    )
    try:
        running.start_all(SERVICE_PACKAGES)
        yield running
    finally:
        running.stop_all()


@pytest.fixture
def app_spans() -> Iterator[InMemorySpanExporter]:
    exporter = capture_spans()
    yield exporter
    exporter.shutdown()


async def services_spans(receiver: OtlpReceiver, trace_id: str) -> list[CollectedSpan]:
    """The services' spans of the trace, once every service's processing span is in (they export in batches)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        spans = [span for span in receiver.spans() if span.trace_id == trace_id]
        if {span.service for span in spans if span.kind is SpanKind.CONSUMER} >= SERVICES \
                or time.monotonic() > deadline:
            return spans
        await asyncio.sleep(0.2)


async def test_one_binding_requests_spans_form_one_trace_through_every_service_and_its_orders_link_to_it(
        traced_pipeline, receiver, app_spans, htx_sandbox):
    user, key = new_user(), fresh_key(htx_sandbox)
    async with BindingClient(traced_pipeline.settings) as client:
        timeline = await bind(client, user, key, trading_pairs=["btcusdt"])
    assert timeline[-1].state is BindingState.ACTIVE, timeline
    [request] = [span for span in collected(app_spans.get_finished_spans()) if span.name == REQUEST_SPAN]
    in_app = [span for span in collected(app_spans.get_finished_spans()) if span.trace_id == request.trace_id]
    # The app's Vault calls (the seal) are in the request's span.
    assert {span.name for span in in_app} >= {REQUEST_SPAN, "vault seal"}

    spans = [*in_app, *await services_spans(receiver, request.trace_id)]

    # A tree rooted at the app's span: every other span's parent is in the trace.
    by_id = {span.span_id: span for span in spans}
    assert len(by_id) == len(spans) and request.parent_id is None
    assert [span for span in spans if span.parent_id not in by_id] == [request]
    processing = [span for span in spans if span.kind is SpanKind.CONSUMER]
    assert {span.service for span in processing} == SERVICES
    assert all(span.attributes[OUTCOME] == "handled" for span in processing)
    # Nothing the request led to started a trace of its own: these topics carried only this request's records.
    assert all(span.trace_id == request.trace_id for span in receiver.spans() if span.kind is SpanKind.CONSUMER)
    # Each stage is a child of the one that published its input; the Vault and HTX calls are in the trace.
    chain = [request]
    while children := [span for span in processing if span.parent_id == chain[-1].span_id]:
        [child] = children
        chain.append(child)
    assert [(span.service, span.name) for span in chain[1:]] == [
        ("intake", "process binding.requested"), ("validator", "process binding.accepted"),
        ("vault-writer", "process binding.validated"), ("whitelist", "process binding.stored")]
    calls = {(span.service, span.name.split()[0]) for span in spans if span.kind is SpanKind.CLIENT}
    assert {("validator", "htx"), ("validator", "vault"), ("vault-writer", "vault")} <= calls

    engine_settings = EngineSettings(**traced_pipeline.settings.model_dump(exclude={"htx_base_url"}),
                                     htx_base_url=htx_sandbox.base_url)
    async with order_gate(engine_settings) as gate:
        await gate.place(user, timeline[-1].binding_id,
                         OrderRequest("btcusdt", "buy", "limit", Decimal("0.001"), Decimal("30000")))
    [order] = [span for span in app_spans.get_finished_spans() if span.name == ORDER_SPAN]
    assert order.parent is None and f"{order.context.trace_id:032x}" != request.trace_id
    # A trace of its own, linked to the vault-writer's span that stored the binding (its record's traceparent).
    [link] = order.links
    [stored_by] = [span for span in spans if span.span_id == f"{link.context.span_id:016x}"]
    assert (stored_by.service, stored_by.name) == ("vault-writer", "process binding.validated")
    assert f"{link.context.trace_id:032x}" == request.trace_id and link.attributes == {"hash7.link": "binding.stored"}
    assert order.attributes["hash7.binding_id"] == timeline[-1].binding_id
    assert order.attributes[OUTCOME] == "placed"
