//! Read side over HTTP: GET endpoints on the read models and the audit trail.
//! Filled in by the read-side and audit issues.
