"""How a service runs: settings (config.py), logging (logging.py), the app lifecycle (service.py) and the Kafka
runtime, one concern a module: the broker (broker.py), publishing (publishing.py), subscriptions
(subscriptions.py), their lanes and commits (lanes.py), processing one record (processing.py), dead letters
(dead_letters.py) and the retry backoff (backoff.py; the HTX client's deadline-bounded retries keep their own,
with an injected clock and random source for its scripted tests). Processes that are not services publish with
producer.py.

Delivery rules, each kept where it is implemented:
- a subscription is one consumer whose records are handled as they arrive, in order for one message key (a
  user) and concurrently across keys (lanes.py, wired by subscriptions.py);
- a partition's offset is committed only up to its first record whose handler has not returned with everything
  it produced confirmed by the broker, acks=all (lanes.py, processing.py, publishing.py), so a crash anywhere
  redelivers, never loses;
- transient trouble (Vault down, a broker hiccup) is retried in place with capped, jittered backoff, for as long
  as it lasts, and never dead-lettered: the record's lane waits, the consumer keeps polling (processing.py);
- a message that cannot be parsed, or that keeps failing for another reason, goes to the dead-letter topic with
  headers saying where it came from and why (shared/contracts/dead_letters.py), and the consumer moves on
  (processing.py, dead_letters.py);
- at shutdown each service closes its subscriptions before the broker stops: the records in hand finish and are
  committed (subscriptions.py, service.py).
"""
