//! Projectors (Kafka consumer groups building read models) and projection replay.
//! Filled in by the read-side and replay issues.
