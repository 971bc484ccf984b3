//! The chaos load: whole orders (create, one line, place with a card token), so that the
//! saga, the payment gateway and every projection work under the faults too, and a
//! ledger of what the platform acknowledged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use tokio::time::Instant;
use uuid::Uuid;

use crate::open_loop::Sample;
use crate::workload::{error_chain, read_answer};

/// A card token the payment gateway simulator always authorizes.
const CARD: &str = "tok_visa";
/// The saga's statuses from which a flow moves no further.
pub const TERMINAL_SAGA: [&str; 4] = ["completed", "cancelled", "refunded", "failed"];
/// Tag of a flow whose request timed out: the platform hung instead of answering.
pub const TIMED_OUT: &str = "timed out";
/// Tag of a 503 without `Retry-After`.
pub const NO_RETRY_AFTER: &str = "503 without Retry-After";

/// What the platform acknowledged during a segment.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Every event a 2xx answer named.
    pub acknowledged_events: Vec<Uuid>,
    /// Orders whose `place` was answered 2xx, with when.
    pub placed: Vec<(Uuid, Instant)>,
}

pub type SharedLedger = Arc<Mutex<Ledger>>;

pub fn lock(ledger: &SharedLedger) -> std::sync::MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One order through the command API. The sample's status is the first refusal, or the
/// place command's 200; a transport failure is an error.
pub async fn order_flow(
    client: reqwest::Client,
    command_url: String,
    sku: String,
    ledger: SharedLedger,
) -> Sample {
    let steps = [
        (
            "/orders".to_owned(),
            json!({"customer_id": Uuid::new_v4(), "currency": "EUR"}),
        ),
        (
            "/lines".to_owned(),
            json!({"sku": sku, "quantity": 1, "unit_price": {"amount_minor": 1250, "currency": "EUR"}}),
        ),
        ("/place".to_owned(), json!({ "payment_method": CARD })),
    ];
    let mut order_id: Option<String> = None;
    let mut status = 0;
    for (index, (path, body)) in steps.into_iter().enumerate() {
        let url = match &order_id {
            None => format!("{command_url}{path}"),
            Some(id) => format!("{command_url}/orders/{id}{path}"),
        };
        let answer = match client.post(url).json(&body).send().await {
            Ok(response) => {
                let unavailable = response.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE;
                let retry_after = response
                    .headers()
                    .contains_key(reqwest::header::RETRY_AFTER);
                read_answer(response)
                    .await
                    .map(|answer| (answer, unavailable && !retry_after))
            }
            Err(error) => Err(error),
        };
        let ((code, answer), no_retry_after) = match answer {
            Ok(answer) => answer,
            Err(error) => {
                return Sample {
                    tag: error.is_timeout().then_some(TIMED_OUT),
                    ..Sample::error(error_chain(&error))
                };
            }
        };
        status = code.as_u16();
        if !code.is_success() {
            return Sample {
                tag: no_retry_after.then_some(NO_RETRY_AFTER),
                ..Sample::status(status)
            };
        }
        lock(&ledger)
            .acknowledged_events
            .extend(answer.events.iter().map(|event| event.event_id));
        if index == 0 {
            match answer.aggregate_id {
                Some(id) => order_id = Some(id),
                None => return Sample::error("a created order's answer named no aggregate_id"),
            }
        }
    }
    let placed = order_id
        .as_deref()
        .and_then(|id| Uuid::parse_str(id).ok())
        .expect("the order id came from the create answer");
    lock(&ledger).placed.push((placed, Instant::now()));
    Sample::status(status)
}

/// When each placed order settled: its saga flow terminal and its order view at the
/// matching status, as seen by polling the database.
#[derive(Debug, Default)]
pub struct Settlements {
    pub settled: HashMap<Uuid, Instant>,
}

pub type SharedSettlements = Arc<Mutex<Settlements>>;

/// One look: marks the orders of `pending` that have settled since the last look. Errors
/// (the database may be the fault) count as "not yet".
pub async fn look(pool: &PgPool, pending: &[Uuid], settlements: &SharedSettlements) -> usize {
    if pending.is_empty() {
        return 0;
    }
    let settled: Vec<Uuid> = sqlx::query_scalar(
        "SELECT s.order_id FROM saga_instances s \
         JOIN read_model.order_view o ON o.order_id = s.order_id \
         WHERE s.order_id = ANY($1) AND s.status = ANY($2) \
           AND o.status IN ('confirmed', 'cancelled')",
    )
    .bind(pending)
    .bind(&TERMINAL_SAGA[..])
    .fetch_all(pool)
    .await
    .unwrap_or_default();
    let now = Instant::now();
    let mut settlements = settlements.lock().unwrap_or_else(PoisonError::into_inner);
    for order in &settled {
        settlements.settled.entry(*order).or_insert(now);
    }
    settled.len()
}

/// Polls every `every` until `stop` fires.
pub async fn watch_settlements(
    pool: PgPool,
    ledger: SharedLedger,
    settlements: SharedSettlements,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let pending = unsettled(&ledger, &settlements);
        look(&pool, &pending, &settlements).await;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Placed orders that have not settled yet.
pub fn unsettled(ledger: &SharedLedger, settlements: &SharedSettlements) -> Vec<Uuid> {
    let settled = settlements.lock().unwrap_or_else(PoisonError::into_inner);
    lock(ledger)
        .placed
        .iter()
        .map(|(order, _)| *order)
        .filter(|order| !settled.settled.contains_key(order))
        .collect()
}
