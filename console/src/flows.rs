//! What an operator sees of the saga's flows: a list with the ones that need attention
//! first, and one order's flow as a timeline of the commands the saga sent and the events
//! that moved it. Read-only queries over the tables the `saga` crate owns and migrates
//! (`saga_instances`, `saga_commands`, `saga_processed_events`); the query API's tests run
//! them on tables migrated by the saga's own migrator.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{FromRow, PgPool};
use utoipa::ToSchema;
use uuid::Uuid;

/// Every status a flow can have, as the saga stores it.
pub const STATUSES: [&str; 9] = [
    "reserving",
    "authorizing",
    "completing",
    "completed",
    "compensating",
    "cancelled",
    "refunding",
    "refunded",
    "failed",
];

/// Statuses a flow does not leave by itself.
const SETTLED: [&str; 4] = ["completed", "cancelled", "refunded", "failed"];

/// One flow, as the list shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow, ToSchema)]
pub struct FlowSummary {
    /// The order the flow fulfils (its id is the flow's).
    pub order_id: Uuid,
    /// The payment it authorizes (derived from the order id).
    pub payment_id: Uuid,
    /// The business flow's correlation id (links to the global log).
    pub correlation_id: Uuid,
    /// `reserving`, `authorizing`, `completing`, `completed`, `compensating`,
    /// `cancelled`, `refunding`, `refunded` or `failed`.
    #[schema(example = "completed")]
    pub status: String,
    /// Not settled, and past its deadline or unchanged for longer than the stuck threshold.
    pub stuck: bool,
    /// When the current step gives up (`null` past the point of no return).
    pub deadline: Option<DateTime<Utc>>,
    /// When the order was placed and the flow began.
    pub started_at: DateTime<Utc>,
    /// When the flow last moved.
    pub updated_at: DateTime<Utc>,
    /// Commands queued and not yet accepted or refused.
    pub pending_commands: i64,
    /// The last error a command of this flow met (a refusal's problem code or a transport
    /// error), if any.
    pub last_error: Option<String>,
}

/// Where a page of flows ends: the ordering key of its last row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowsAfter {
    /// 0 failed, 1 stuck, 2 the rest.
    pub rank: i32,
    /// The last row's `updated_at`.
    pub updated_at: DateTime<Utc>,
    /// The last row's order id.
    pub order_id: Uuid,
}

/// A page of flows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowsPage {
    /// At most the limit asked for.
    pub flows: Vec<FlowSummary>,
    /// Where the next page starts, if there is one.
    pub next: Option<FlowsAfter>,
}

/// What to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowsQuery {
    /// Only flows in this status (one of [`STATUSES`]).
    pub status: Option<&'static str>,
    /// A flow not settled and unchanged for this long counts as stuck.
    pub stuck_after: std::time::Duration,
    /// Page size.
    pub limit: i64,
    /// After this row (keyset).
    pub after: Option<FlowsAfter>,
}

#[derive(FromRow)]
struct RankedFlow {
    #[sqlx(flatten)]
    flow: FlowSummary,
    rank: i32,
}

/// Flows, failed first, then stuck, then the others, each group most recently moved
/// first.
///
/// # Errors
/// Database errors.
pub async fn list(pool: &PgPool, query: &FlowsQuery) -> Result<FlowsPage, sqlx::Error> {
    let page_size = usize::try_from(query.limit).unwrap_or(usize::MAX);
    let mut rows = ranked(
        pool,
        query.status,
        None,
        query.stuck_after,
        query.after.as_ref(),
        query.limit + 1,
    )
    .await?;
    let more = rows.len() > page_size;
    rows.truncate(page_size);
    let next = more.then(|| rows.last()).flatten().map(|last| FlowsAfter {
        rank: last.rank,
        updated_at: last.flow.updated_at,
        order_id: last.flow.order_id,
    });
    Ok(FlowsPage {
        flows: rows.into_iter().map(|row| row.flow).collect(),
        next,
    })
}

/// Flows in list order, with their rank; narrowed to a status or to one order.
async fn ranked(
    pool: &PgPool,
    status: Option<&str>,
    order_id: Option<Uuid>,
    stuck_after: std::time::Duration,
    after: Option<&FlowsAfter>,
    limit: i64,
) -> Result<Vec<RankedFlow>, sqlx::Error> {
    let stuck_after_ms = i64::try_from(stuck_after.as_millis()).unwrap_or(i64::MAX);
    sqlx::query_as(
        "WITH ranked AS ( \
             SELECT i.order_id, i.payment_id, i.correlation_id, i.status, i.deadline, \
                    i.started_at, i.updated_at, \
                    i.status <> ALL($3) AND (coalesce(i.deadline < now(), false) \
                        OR i.updated_at < now() - $4 * interval '1 millisecond') AS stuck \
             FROM saga_instances i \
             WHERE ($1::text IS NULL OR i.status = $1) \
               AND ($2::uuid IS NULL OR i.order_id = $2)), \
         page AS ( \
             SELECT ranked.*, \
                    CASE WHEN status = 'failed' THEN 0 WHEN stuck THEN 1 ELSE 2 END AS rank \
             FROM ranked) \
         SELECT page.*, commands.pending_commands, commands.last_error \
         FROM page, LATERAL ( \
             SELECT count(*) FILTER (WHERE c.status = 'pending') AS pending_commands, \
                    (array_agg(c.last_error ORDER BY c.id DESC) \
                        FILTER (WHERE c.last_error IS NOT NULL))[1] AS last_error \
             FROM saga_commands c WHERE c.order_id = page.order_id) commands \
         WHERE $5::int IS NULL OR page.rank > $5 \
            OR (page.rank = $5 AND (page.updated_at < $6 \
                OR (page.updated_at = $6 AND page.order_id > $7))) \
         ORDER BY page.rank, page.updated_at DESC, page.order_id \
         LIMIT $8",
    )
    .bind(status)
    .bind(order_id)
    .bind(SETTLED.as_slice())
    .bind(stuck_after_ms)
    .bind(after.map(|after| after.rank))
    .bind(after.map(|after| after.updated_at))
    .bind(after.map(|after| after.order_id))
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// How many flows are in each status (every status, zeros included).
///
/// # Errors
/// Database errors.
pub async fn counts(pool: &PgPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let stored: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM saga_instances GROUP BY status")
            .fetch_all(pool)
            .await?;
    Ok(STATUSES
        .iter()
        .map(|status| {
            let count = stored
                .iter()
                .find(|(name, _)| name == status)
                .map_or(0, |(_, count)| *count);
            ((*status).to_owned(), count)
        })
        .collect())
}

/// One step of a flow: an event that moved it, or a command it sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FlowStep {
    /// An event the saga acted on.
    Event {
        /// When the saga processed it.
        at: DateTime<Utc>,
        /// The event (its stream is in the global log).
        event_id: Uuid,
        /// E.g. `StockReserved`.
        event_type: String,
    },
    /// A command the saga decided to send.
    Command {
        /// When it was decided.
        at: DateTime<Utc>,
        /// Queue id.
        command_id: i64,
        /// The command's kind, with its SKU when it has one: `reserve_stock:KEYBOARD-1`,
        /// `authorize_payment`, `confirm_order`.
        step: String,
        /// The command as queued.
        #[schema(value_type = Object)]
        command: Value,
        /// The event that caused it.
        causation_id: Uuid,
        /// `pending`, `accepted`, `rejected` or `superseded`.
        status: String,
        /// Failed attempts so far.
        attempts: i32,
        /// The last failure (problem code or transport error), if any.
        last_error: Option<String>,
        /// When it was accepted, refused or superseded.
        completed_at: Option<DateTime<Utc>>,
    },
}

impl FlowStep {
    fn at(&self) -> DateTime<Utc> {
        match self {
            Self::Event { at, .. } | Self::Command { at, .. } => *at,
        }
    }
}

/// One order's flow.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FlowDetail {
    /// The flow.
    pub flow: FlowSummary,
    /// The saga instance's whole state, as stored.
    #[schema(value_type = Object)]
    pub state: Value,
    /// Events and commands, oldest first.
    pub steps: Vec<FlowStep>,
}

#[derive(FromRow)]
struct CommandRow {
    id: i64,
    causation_id: Uuid,
    command: Value,
    status: String,
    attempts: i32,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
}

/// The flow of `order_id`, or `None` if the saga never saw that order.
///
/// # Errors
/// Database errors.
pub async fn detail(
    pool: &PgPool,
    order_id: Uuid,
    stuck_after: std::time::Duration,
) -> Result<Option<FlowDetail>, sqlx::Error> {
    let Some(state): Option<Value> =
        sqlx::query_scalar("SELECT state FROM saga_instances WHERE order_id = $1")
            .bind(order_id)
            .fetch_optional(pool)
            .await?
    else {
        return Ok(None);
    };
    let flow = ranked(pool, None, Some(order_id), stuck_after, None, 1)
        .await?
        .pop();
    let Some(RankedFlow { flow, .. }) = flow else {
        return Ok(None);
    };
    let events: Vec<(Uuid, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT event_id, event_type, processed_at FROM saga_processed_events \
         WHERE order_id = $1 ORDER BY processed_at, event_id",
    )
    .bind(order_id)
    .fetch_all(pool)
    .await?;
    let commands: Vec<CommandRow> = sqlx::query_as(
        "SELECT id, causation_id, command, status, attempts, last_error, created_at, \
                completed_at \
         FROM saga_commands WHERE order_id = $1 ORDER BY id",
    )
    .bind(order_id)
    .fetch_all(pool)
    .await?;
    let mut steps: Vec<FlowStep> = events
        .into_iter()
        .map(|(event_id, event_type, at)| FlowStep::Event {
            at,
            event_id,
            event_type,
        })
        .chain(commands.into_iter().map(|row| FlowStep::Command {
            at: row.created_at,
            command_id: row.id,
            step: step_name(&row.command),
            command: row.command,
            causation_id: row.causation_id,
            status: row.status,
            attempts: row.attempts,
            last_error: row.last_error,
            completed_at: row.completed_at,
        }))
        .collect();
    // Stable: an event and the commands it caused share a transaction's timestamp; the
    // event came first.
    steps.sort_by_key(FlowStep::at);
    Ok(Some(FlowDetail { flow, state, steps }))
}

/// A queued command's kind, with its SKU when it has one.
fn step_name(command: &Value) -> String {
    let kind = command
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    match command.get("sku").and_then(Value::as_str) {
        Some(sku) => format!("{kind}:{sku}"),
        None => kind.to_owned(),
    }
}
