//! Harnesses of the end-to-end tests: the whole platform in one process
//! ([`platform::Platform`]) and the saga against a real command API
//! ([`saga_harness`]). What every suite shares without running a service
//! (stack addresses, scratch databases, topics, tokens) is `test-support`, re-exported here.

// Tests, benchmarks and tools draw fresh ids and read the clock directly; `clippy.toml`
// bans that only in the platform's own code.
#![allow(clippy::disallowed_methods)]

pub mod platform;
pub mod saga_harness;

pub use platform::Platform;
pub use test_support::*;
