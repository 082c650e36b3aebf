"""Every Prometheus metric the system exports, in one place (the dashboard in deploy/observability/ and the alert
rules beside it name only these; tests/deploy/test_observability.py checks that they do).

Counters and histograms are updated where the thing happens (processing, publishing, the Vault and exchange clients,
the sweep). What a subscription holds (records in hand, the age of the oldest, lag) is read from the
subscriptions themselves at scrape time (`SubscriptionCollector`), so the hot path pays nothing for it.

Labels are bounded sets only: topics, partitions, operations, error classes, reason codes and states. Never a
user, a binding, an access key or any value from a record.
"""

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# Vault and the exchanges answer in milliseconds to seconds; the buckets cover a local Vault (1 ms) to an exchange
# timeout (10 s).
_CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

RECORDS_HANDLED = Counter(
    "hash7_records_handled", "Records a subscription finished, by topic and how they ended "
    "(handled, duplicate, dead_lettered).", ["topic", "result"])
RECORD_SECONDS = Histogram(
    "hash7_record_seconds", "From a record's admission to its outcome confirmed by the broker, by topic.",
    ["topic"], buckets=_CALL_BUCKETS)
RETRIES = Counter(
    "hash7_retries", "Transient failures retried in place, by cause (the error's class).", ["cause"])
HANDLER_FAILURES = Counter(
    "hash7_handler_failures", "Unexpected handler failures (each retried up to the dead-letter limit), by topic "
    "and the error's class.", ["topic", "error_class"])
DEAD_LETTERS = Counter(
    "hash7_dead_letters", "Records sent to the dead-letter topic, by the topic they came from and the cause "
    "(the error's class).", ["topic", "cause"])
STATUSES = Counter(
    "hash7_statuses", "Binding statuses published, by state and reason code (\"none\" without one): verdicts and "
    "final states. A redelivered record publishes its status again and counts again.", ["state", "reason_code"])
VAULT_SECONDS = Histogram(
    "hash7_vault_request_seconds", "Vault calls, by operation.", ["operation"], buckets=_CALL_BUCKETS)
VAULT_ERRORS = Counter(
    "hash7_vault_errors", "Vault calls that failed, by operation and the error's class.", ["operation", "error_class"])
EXCHANGE_SECONDS = Histogram(
    "hash7_exchange_request_seconds", "Exchange requests (one attempt each), by exchange and path.",
    ["exchange", "path"], buckets=_CALL_BUCKETS)
EXCHANGE_ERRORS = Counter(
    "hash7_exchange_errors", "Exchange requests that failed, by exchange, path and error kind.",
    ["exchange", "path", "kind"])
EXCHANGE_RATE_LIMIT_REMAINING = Gauge(
    "hash7_exchange_rate_limit_remaining",
    "What an exchange's last answer on a path said was left of its rate-limit window.", ["exchange", "path"])
VAULT_UNSEALED = Gauge(
    "hash7_vault_unsealed", "1 when Vault answered unsealed at the service's last readiness check (every 5 s), "
    "else 0.")
SWEEP_BINDINGS_FOUND = Gauge(
    "hash7_sweep_bindings_found", "Bindings the last key-health sweep this instance finished asked the validator to "
    "recheck; the validator's hash7_records_handled_total on binding.recheck-requested shows their progress.")
# A sweep's pages may be handled by any vault-writer instance (one after another): take the max across instances.
SWEEP_BINDINGS_SO_FAR = Gauge(
    "hash7_sweep_bindings_so_far", "Bindings the sweep in progress asked the validator to recheck so far, as of the "
    "last page this instance requested.")
SWEEP_AGE = Gauge(
    "hash7_sweep_age_seconds", "How long the sweep had been running (since its claim) when this instance requested "
    "its latest page.")
SWEEP_PAGES = Counter(
    "hash7_sweep_pages", "Pages of key-health sweeps requested (a page redone after a crash counts again).")
AUDIT_EVENTS = Counter(
    "hash7_audit_events", "Audit events published, by action and outcome (shared/contracts/audit.py): every decision "
    "counted, key-health sweeps (health_sweep) among them.", ["action", "outcome"])

@dataclass(frozen=True)
class PartitionLoad:
    """What one subscription holds of one partition right now."""

    topic: str
    partition: int
    in_hand: int  # admitted and not finished, waiting for room included
    oldest_age_s: float  # how long the oldest of them has been held (0 when none): its commits wait for it
    lag: int | None  # records on the partition past what this consumer has committed; None before it knows


class SubscriptionCollector(Collector):
    """Records in hand, the age of the oldest and consumer lag, per partition, as the service's event loop last
    noted them (shared/runtime/health.py, every second): a scrape runs on the HTTP server's thread and must not
    walk structures the loop is changing."""

    def __init__(self) -> None:
        self.loads: list[PartitionLoad] = []

    def note(self, loads: list[PartitionLoad]) -> None:
        self.loads = loads  # replaced whole: a scrape reads the old list or the new one, never half of either

    def collect(self) -> Iterator[GaugeMetricFamily]:
        in_hand = GaugeMetricFamily("hash7_records_in_hand", "Records admitted and not finished, by partition.",
                                    labels=["topic", "partition"])
        oldest = GaugeMetricFamily(
            "hash7_oldest_record_age_seconds", "How long the oldest record in hand has been held, by partition: "
            "the partition's commits cannot pass it.", labels=["topic", "partition"])
        lag = GaugeMetricFamily("hash7_consumer_lag", "Records on the partition past the offset this consumer "
                                "committed.", labels=["topic", "partition"])
        for load in self.loads:
            labels = [load.topic, str(load.partition)]
            in_hand.add_metric(labels, load.in_hand)
            oldest.add_metric(labels, load.oldest_age_s)
            if load.lag is not None:
                lag.add_metric(labels, load.lag)
        yield from (in_hand, oldest, lag)


SUBSCRIPTIONS = SubscriptionCollector()
REGISTRY.register(SUBSCRIPTIONS)
