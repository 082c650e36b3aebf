"""How a service runs: settings, logging, the Kafka runtime (publishing, processing, lanes, subscriptions) and the app lifecycle."""
