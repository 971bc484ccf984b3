//! The OpenAPI 3 document. Operations come from the handlers' `#[utoipa::path]` (registered
//! together with the routes, so the two cannot drift); the problem responses every query
//! shares are added here once.

use std::sync::Arc;

use axum::{Extension, Json};
use utoipa::OpenApi;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response};

use super::problem::{PROBLEM_JSON, Problem};
use read_model::orders::OrderStatus;

/// Root of the document; paths are added by the router.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "keel query API",
        description = "Read side of keel: GET endpoints over the read models that the \
projectors build from the event stream (orders, stock levels, payments).\n\n\
Read models are eventually consistent. For read-your-writes, pass the version a command \
returned as `min_version` to a single-aggregate read: the answer waits (bounded) until the \
read model has reached that version, or is 503 `not_yet_consistent` with `Retry-After`. \
Single-aggregate reads carry their version as `ETag`. Listings use keyset pagination: \
follow `next_cursor` until it is `null`. The audit routes read the event store itself: \
histories, a filterable global log, past states, and verification of each stream's hash \
chain. Errors are `application/problem+json` with a stable `code`."
    ),
    tags(
        (name = "orders", description = "Order views and each customer's orders"),
        (name = "payments", description = "Payments"),
        (name = "stock", description = "Stock levels per SKU"),
        (name = "audit", description = "The audit trail over the event store itself: histories, \
the global log, time travel, hash-chain verification"),
        (name = "operations", description = "Projection progress and dead letters"),
        (name = "health", description = "Liveness and readiness probes"),
    ),
    components(schemas(Problem, OrderStatus))
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(
    get, path = "/openapi.json", tag = "operations", operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI 3 document of this API", content_type = "application/json"))
)]
pub async fn document(
    Extension(openapi): Extension<Arc<utoipa::openapi::OpenApi>>,
) -> Json<utoipa::openapi::OpenApi> {
    Json(openapi.as_ref().clone())
}

/// Adds the problem responses shared by every query (not the probes) to its operation.
pub fn document_query_conventions(openapi: &mut utoipa::openapi::OpenApi) {
    for (path, item) in &mut openapi.paths.paths {
        if path.starts_with("/health/") || path == "/openapi.json" {
            continue;
        }
        if let Some(operation) = item.get.as_mut() {
            let waits = operation.parameters.iter().flatten().any(|parameter| {
                matches!(parameter, RefOr::T(parameter) if parameter.name == "min_version")
            });
            document_operation(operation, waits, path.starts_with("/audit/"));
        }
    }
}

fn document_operation(operation: &mut Operation, waits: bool, audit: bool) {
    let unavailable = if audit {
        "The event store is unavailable (`service.unavailable`); `Retry-After` says when to retry"
    } else if waits {
        "The read models are unavailable (`service.unavailable`), or the read model did not \
         reach `min_version` in time (`not_yet_consistent`, type \
         `urn:keel:problem:read-model-not-caught-up`, with `requested_version` and \
         `current_version`); `Retry-After` says when to retry"
    } else {
        "The read models are unavailable (`service.unavailable`); `Retry-After` says when to retry"
    };
    for (status, description) in [
        (
            "400",
            "A malformed path parameter (`request.invalid_path`) or a malformed, out-of-range, \
             repeated or unknown query parameter (`request.invalid_parameter`); `parameter` \
             names it",
        ),
        ("503", unavailable),
    ] {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::T(problem_response(description)));
    }
}

fn problem_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}
