"""Adapters to the outside world: PostgreSQL, the event store, NATS, embedded servers, clock."""
