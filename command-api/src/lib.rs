//! Write side: HTTP commands, the PostgreSQL event store, the outbox relay and the saga.
//! Filled in by the command API, outbox and saga issues.
