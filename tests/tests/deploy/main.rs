//! Offline validation of `deploy/`, part of the test gate (Docker and a cluster are not
//! needed, and nothing is fetched at test time):
//!
//! - every document under `deploy/k8s/` against the JSON schemas of Kubernetes
//!   [`KUBERNETES_VERSION`], in their strict flavour (an unknown or misspelt field is an
//!   error, as with `kubectl apply --validate=strict`); a kind without a schema fails, it is
//!   never skipped;
//! - `deploy/docker-compose.yml` against the Compose Specification schema;
//! - the rules the manifests promise: termination grace longer than the drain, the projector
//!   autoscaler bounded by the partition count, probes on the HTTP services, requests and
//!   limits, a disruption budget per workload, the database URL only from the Secret, and
//!   one image that ships every process the manifests run;
//! - the security and operations rules: both APIs require tokens, verified with a key that
//!   comes from a Secret and that their own configuration code (`ops`) accepts once the
//!   placeholder is replaced, and refuses as shipped; the saga has a token from a Secret
//!   (in Compose, one the APIs accept); every pod is scraped where its process serves
//!   `/metrics`; the ingress routes every API route but never `/metrics` or the probes.
//!
//! The schemas are files of registry packages, cached outside the repository: the PyPI
//! package `kubernetes-validate` ships the Kubernetes schemas, the npm package `dclint` the
//! Compose Specification's. `cargo xtask test` installs them; without them every test here
//! fails with the command that installs them by hand.

// Tests, benchmarks and tools draw fresh ids and read the clock directly; `clippy.toml`
// bans that only in the platform's own code.
#![allow(clippy::disallowed_methods)]

mod schemas;
mod security;
mod support;
mod workloads;
