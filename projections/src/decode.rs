//! Kafka message → [`ProjectedEvent`], through the one consumer decoder of the event topics
//! (`schemas::consume`): the frame's schema id is looked up in the registry (cached), the
//! datum read with that writer schema into this build's reader schema, and the Kafka key must
//! be the event's aggregate id.

pub use schemas::consume::{DecodeError, EventDecoder};
