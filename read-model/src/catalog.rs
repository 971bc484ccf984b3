//! The projections by name: the aggregate types each reads and the key of its advisory
//! locks. The projector's `Projection` enum is the behaviour; this table is what readers
//! of the schema (the console) need to know about each projection without linking the
//! projector. The projector's tests check that both agree.

/// One projection's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProjectionEntry {
    /// Its name in checkpoints, dead letters, consumer groups and notifications.
    pub name: &'static str,
    /// The aggregate types whose events it applies.
    pub sources: &'static [&'static str],
    /// The second key of its advisory locks ([`crate::locks`]).
    pub lock_key: i32,
}

/// Every projection.
pub const PROJECTIONS: [ProjectionEntry; 3] = [
    ProjectionEntry {
        name: "orders",
        sources: &["order", "inventory", "payment", "customer"],
        lock_key: 1,
    },
    ProjectionEntry {
        name: "stock",
        sources: &["inventory"],
        lock_key: 2,
    },
    ProjectionEntry {
        name: "payments",
        sources: &["payment"],
        lock_key: 3,
    },
];

/// The projection called `name`.
pub fn projection(name: &str) -> Option<&'static ProjectionEntry> {
    PROJECTIONS.iter().find(|entry| entry.name == name)
}
