//! The request headers of the command API's HTTP contract: what the command API reads and
//! what every client (the saga among them) sends. Lower case, as HTTP/2 carries them.

/// `X-Correlation-Id`: read (a UUID) or generated, echoed on every response.
pub const CORRELATION_ID: &str = "x-correlation-id";
/// `X-Causation-Id`: the message that caused this command (a UUID), optional.
pub const CAUSATION_ID: &str = "x-causation-id";
/// `X-Actor`: who issues the command (until authentication provides it).
pub const ACTOR: &str = "x-actor";
/// `Idempotency-Key`: makes a retried command safe.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
