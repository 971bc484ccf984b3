//! Where new ids come from: aggregate ids the server chooses and generated correlation ids.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use uuid::Uuid;

/// A source of fresh, unique ids.
pub trait IdSource: Send + Sync + fmt::Debug + 'static {
    /// A new id, never returned before.
    fn new_id(&self) -> Uuid;
}

/// UUIDv7: unique, and time-ordered so that new aggregates land together in B-tree indexes.
#[derive(Debug, Default, Clone, Copy)]
pub struct RandomIds;

impl IdSource for RandomIds {
    // The one source of random ids (`clippy.toml`).
    #[allow(clippy::disallowed_methods)]
    fn new_id(&self) -> Uuid {
        Uuid::now_v7()
    }
}

/// Predictable ids for tests: `prefix` in the high 64 bits, a counter from 1 in the low 64.
#[derive(Debug)]
pub struct SequentialIds {
    prefix: u64,
    next: AtomicU64,
}

impl SequentialIds {
    /// Ids `prefix:1`, `prefix:2`, … (as the two halves of a UUID).
    pub fn new(prefix: u64) -> Self {
        Self {
            prefix,
            next: AtomicU64::new(1),
        }
    }
}

impl IdSource for SequentialIds {
    fn new_id(&self) -> Uuid {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Uuid::from_u64_pair(self.prefix, n)
    }
}
