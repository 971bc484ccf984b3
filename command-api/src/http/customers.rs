//! `/customers`: forgetting a customer (crypto-shredding, ADR 0009).

use aggregates::customer::{CustomerError, ForgetCustomer};
use axum::extract::State;
use tracing::instrument;

use super::extract::{ApiJson, CommandHeaders, IdPath};
use super::response::{CommandResponse, CommandResult};
use super::{AppState, NoFields};
use crate::store::CommandError;
use crate::store::idempotency::Fingerprint;

/// Errors of the `/customers` routes (statuses: see `http::problem`).
pub type CustomerApiError = CommandError<CustomerError>;

/// Forget a customer: destroys the keys of their personal data in the transaction that
/// records `CustomerForgotten`, so every copy of it (events, Kafka, backups) becomes
/// unreadable and the read models erase it. Forgetting again changes nothing (200, no event).
#[utoipa::path(
    post, path = "/customers/{customer_id}/forget", tag = "customers", operation_id = "forget_customer",
    params(("customer_id" = Uuid, Path, description = "The customer")),
    request_body(content = Option<NoFields>, description = "No fields; the body may be omitted"),
    responses(
        (status = 200, description = "Customer forgotten (`CustomerForgotten`), or already forgotten (no event)", body = CommandResult),
    )
)]
#[instrument(skip_all, fields(customer_id = %customer_id))]
pub async fn forget_customer(
    State(state): State<AppState>,
    IdPath(customer_id): IdPath,
    headers: CommandHeaders,
    ApiJson(body): ApiJson<NoFields>,
) -> Result<CommandResponse, CustomerApiError> {
    let target = customer_id.to_string();
    let idempotency =
        headers.idempotent_request(|| Fingerprint::of("customers.forget", &target, &body));
    let outcome = state
        .customers
        .execute(state.envelope(
            &headers,
            target,
            ForgetCustomer { customer_id },
            idempotency,
        ))
        .await?;
    Ok(CommandResponse::ok(outcome))
}
