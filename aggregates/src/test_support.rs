//! Helpers for property tests, which drive `handle` directly (no `TestFramework`) to check
//! invariants after every step of a long command sequence.

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;

/// Runs `handle` the way cqrs-es does (events are applied as they are written) and returns
/// the events; a rejected command must leave `aggregate` untouched, which callers assert.
pub(crate) fn run<A: Aggregate>(
    runtime: &tokio::runtime::Runtime,
    aggregate: &mut A,
    command: A::Command,
    services: &A::Services,
) -> Result<Vec<A::Event>, A::Error> {
    runtime.block_on(async {
        let sink = EventSink::default();
        aggregate.handle(command, services, &sink).await?;
        Ok(sink.collect().await)
    })
}

/// A single-threaded runtime: `handle` never truly suspends with the in-memory gateway.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime builds")
}
