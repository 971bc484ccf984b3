//! The OpenAPI 3 document. Operations come from the handlers' `#[utoipa::path]` (registered
//! together with the routes, so the two cannot drift); the conventions every command
//! shares — its headers and its problem responses — are added here once.

use utoipa::OpenApi;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required, Response};

use super::problem::{FieldError, PROBLEM_JSON, Problem};
use super::response::{CommandResult, EventRef};

/// Root of the document; paths are added by the router.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "keel command API",
        description = "Write side of keel: one endpoint per domain command of the Order, \
Payment and Inventory aggregates, recorded in the PostgreSQL event store.\n\n\
Every successful command answers with the aggregate id, its new version (also the `ETag`) \
and the events it recorded. Send the version back in `If-Match` to make a command \
conditional (412 if the aggregate moved on); two commands racing on one aggregate never \
both win (409). Send an `Idempotency-Key` to make retries safe: a retry with the same key \
and body gets the original answer (`Idempotent-Replayed: true`) and records nothing. \
Errors are `application/problem+json` with a stable `code`."
    ),
    tags(
        (name = "orders", description = "Order aggregate: draft, lines, place, confirm, cancel, ship, deliver"),
        (name = "customers", description = "Customers: forgetting one destroys the keys of their personal data (crypto-shredding)"),
        (name = "payments", description = "Payment aggregate: authorize, capture, void, refund"),
        (name = "inventory", description = "Inventory aggregate (one per SKU): stock, adjustments, reservations"),
        (name = "health", description = "Liveness and readiness probes"),
    ),
    components(schemas(Problem, FieldError, CommandResult, EventRef))
)]
pub struct ApiDoc;

/// Adds the shared headers and problem responses to every command operation.
pub fn document_command_conventions(openapi: &mut utoipa::openapi::OpenApi) {
    for item in openapi.paths.paths.values_mut() {
        for operation in [
            &mut item.post,
            &mut item.patch,
            &mut item.put,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            document_operation(operation);
        }
    }
}

fn document_operation(operation: &mut Operation) {
    let parameters = operation.parameters.get_or_insert_with(Vec::new);
    for (name, description) in [
        (
            "If-Match",
            "Optimistic concurrency: `*` or the `ETag` (version) the command expects, e.g. `\"3\"`. \
             Another version → 412 with the current version.",
        ),
        (
            "Idempotency-Key",
            "Makes retries safe (1 to 255 printable ASCII characters, scoped to the actor). \
             Same key and body → the original response, nothing recorded again; same key, \
             different request → 422.",
        ),
        (
            "X-Correlation-Id",
            "UUID of the business flow; generated when absent; echoed on the response and \
             recorded on every event.",
        ),
        (
            "X-Causation-Id",
            "UUID of the message that caused this command; recorded on every event.",
        ),
        ("X-Actor", "Who issues the command (default `anonymous`)."),
        (
            "traceparent",
            "W3C trace context; recorded on every event when well-formed.",
        ),
    ] {
        parameters.push(RefOr::T(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(description))
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .build(),
        ));
    }

    for response in operation.responses.responses.values_mut() {
        if let RefOr::T(response) = response {
            add_success_headers(response);
        }
    }

    for (status, description) in [
        (
            "400",
            "Malformed JSON, or an invalid header or path parameter (`request.*`)",
        ),
        (
            "404",
            "The aggregate (or the line/reservation named) does not exist (domain `*.not_found` codes)",
        ),
        (
            "409",
            "Not allowed in the aggregate's current state (domain code), or lost a race with a \
             concurrent command (`concurrency.conflict`, with `current_version`)",
        ),
        (
            "412",
            "`If-Match` does not match the current version (`concurrency.version_mismatch`, with `current_version`)",
        ),
        ("413", "Body larger than the configured limit"),
        ("415", "A body that is not `application/json`"),
        (
            "422",
            "Body of the wrong shape (`request.invalid_body`, with `errors`), a domain validation \
             error, or an idempotency key reused for another request (`idempotency.key_reused`)",
        ),
        (
            "503",
            "The event store or the payment gateway is unavailable; `Retry-After` says when to retry",
        ),
    ] {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::T(problem_response(description)));
    }
}

fn add_success_headers(response: &mut Response) {
    for (name, description) in [
        (
            "ETag",
            "The aggregate's version after the command, e.g. `\"3\"`",
        ),
        ("X-Correlation-Id", "The request's correlation id"),
        ("Location", "On 201: the created resource"),
        (
            "Idempotent-Replayed",
            "`true` when this is the stored answer to an earlier request with the same key",
        ),
    ] {
        response.headers.entry(name.to_owned()).or_insert_with(|| {
            RefOr::T(
                HeaderBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                    .description(Some(description))
                    .build(),
            )
        });
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
