//! Harnesses of the end-to-end tests: the whole platform in one process
//! ([`platform::Platform`]) and the saga against a real command API
//! ([`saga_harness`]). What every suite shares without running a service
//! (stack addresses, scratch databases, topics, tokens) is `test-support`, re-exported here.

pub mod platform;
pub mod saga_harness;

pub use platform::Platform;
pub use test_support::*;
