"""The contract between the Hash7 app, the services and ops: topics, events, states and reason codes."""
