//! The audit trail over HTTP, under `/audit/…`: histories, the global log, time travel and
//! hash-chain verification, with their OpenAPI operations. The query API mounts
//! [`routes`] (behind its `auditor` role); any router whose state yields a [`PgPool`] on
//! the event store's database can.
//!
//! | method | path | notes |
//! |---|---|---|
//! | GET | `/audit/streams/{aggregate_type}/{aggregate_id}/events` | `?limit=&cursor=`; full history with metadata and hash |
//! | GET | `/audit/events` | `?correlation_id=&event_type=&aggregate_type=&actor=&from=&to=&limit=&cursor=`; commit order |
//! | GET | `/audit/streams/{aggregate_type}/{aggregate_id}/state` | `?version=` or `?at=`; folded with the domain's `apply` |
//! | GET | `/audit/streams/{aggregate_type}/{aggregate_id}/verify` | hash chain of one stream |
//! | GET | `/audit/verify` | `?limit=&cursor=`; hash chains of every stream, bounded per call |

pub mod cursor;
pub mod extract;
pub mod problem;

use axum::extract::{FromRef, State};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use ops::auth::{Principal, Role};
use ops::params::{NoParams, ParameterError};
use ops::problem::{PROBLEM_JSON, Problem};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use tracing::instrument;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::extract::{
    AsOf, AuditLogParams, StateParams, StreamEventsParams, StreamPath, VerifyParams,
};
pub use self::problem::AuditError;
use crate::personal_data::{self, AuditKeys, Viewer};
use crate::state::FoldableAggregate;
use crate::store::{self, AuditEvent, StreamRef};
use crate::verify::{self, Mismatch, Verification};

/// The audit routes with their OpenAPI operations (tag `audit`), for a router whose state
/// yields the event store's pool.
pub fn routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    PgPool: FromRef<S>,
    AuditKeys: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(get_stream_events))
        .routes(routes!(list_events))
        .routes(routes!(get_stream_state))
        .routes(routes!(verify_stream))
        .routes(routes!(verify_store))
}

/// A page of one stream's events, in sequence order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StreamHistoryPage {
    /// The stream's aggregate type.
    pub aggregate_type: String,
    /// The stream's aggregate id.
    pub aggregate_id: String,
    /// The stream's current version (its last sequence).
    pub version: i64,
    /// At most `limit` events.
    pub items: Vec<AuditEvent>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// A page of the global event log, in commit order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditLogPage {
    /// At most `limit` events.
    pub items: Vec<AuditEvent>,
    /// Pass as `cursor` (with the same filters) for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
    /// Where this page ends, also on the last page: pass it as `cursor` (with the same
    /// filters) later to read only what was appended since, as a live tail does. `null`
    /// only when the log held nothing to read at all.
    pub resume_cursor: Option<String>,
}

/// An aggregate as it was after one of its events.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AggregateStateView {
    /// The aggregate type.
    pub aggregate_type: String,
    /// The aggregate id.
    pub aggregate_id: String,
    /// The version the state is at: the sequence of the last event folded.
    pub version: i64,
    /// When that event was recorded.
    pub recorded_at: DateTime<Utc>,
    /// The stream's current version, for comparison.
    pub current_version: i64,
    /// The aggregate's state in the domain's own serialized form (as in snapshots).
    #[schema(value_type = Object)]
    pub state: Value,
}

/// The result of verifying one stream's hash chain.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StreamVerification {
    /// The stream's aggregate type.
    pub aggregate_type: String,
    /// The stream's aggregate id.
    pub aggregate_id: String,
    /// Events checked and found intact.
    pub verified: u64,
    /// Whether every event matches its link.
    pub ok: bool,
    /// The first event whose stored content no longer matches; `null` when `ok`.
    pub first_mismatch: Option<Mismatch>,
}

/// The result of verifying a bounded run of every stream's hash chain.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StoreVerification {
    /// Events checked in this call and found intact.
    pub verified: u64,
    /// Whether every event checked matches its link.
    pub ok: bool,
    /// The first event whose stored content no longer matches; `null` when `ok`.
    pub first_mismatch: Option<Mismatch>,
    /// Pass as `cursor` to verify the next run of events; `null` when the store has been
    /// checked to its end or a mismatch stopped the check.
    pub next_cursor: Option<String>,
}

/// Auditors see personal data; a caller without a verified `auditor` token does not.
fn viewer(principal: Option<&Extension<Principal>>) -> Viewer {
    match principal {
        Some(Extension(principal)) if principal.has(Role::Auditor) => Viewer::Auditor,
        _ => Viewer::Other,
    }
}

fn stream_not_found(stream: StreamRef<'_>) -> AuditError {
    AuditError::not_found(
        "audit.stream_not_found",
        format!(
            "the event store has no events of {} {}",
            stream.aggregate_type, stream.aggregate_id
        ),
    )
}

/// One aggregate's full history: every event with all its metadata, event id, global
/// position, recording time and hash-chain link, in sequence order, by keyset pagination.
#[utoipa::path(
    get, path = "/audit/streams/{aggregate_type}/{aggregate_id}/events", tag = "audit",
    operation_id = "get_stream_events",
    params(
        ("aggregate_type" = String, Path, description = "`order`, `payment`, `inventory`, …"),
        ("aggregate_id" = String, Path, description = "The aggregate id"),
        StreamEventsParams,
    ),
    responses(
        (status = 200, description = "One page of the stream", body = StreamHistoryPage),
        (status = 404, description = "The store has no events of this stream (`audit.stream_not_found`)", body = Problem, content_type = PROBLEM_JSON),
    )
)]
#[instrument(skip_all, fields(aggregate_type = %path.aggregate_type, aggregate_id = %path.aggregate_id))]
pub async fn get_stream_events(
    State(pool): State<PgPool>,
    State(keys): State<AuditKeys>,
    principal: Option<Extension<Principal>>,
    path: StreamPath,
    params: StreamEventsParams,
) -> Result<Json<StreamHistoryPage>, AuditError> {
    let stream = path.stream();
    let mut items = store::stream_events(
        &pool,
        stream,
        params.cursor.unwrap_or(0),
        params.limit.fetch(),
    )
    .await?;
    // Read after the events: a stream only grows, so the version covers every item.
    let version = store::stream_version(&pool, stream)
        .await?
        .ok_or_else(|| stream_not_found(stream))?;
    let page_size = params.limit.get() as usize;
    let next_cursor = if items.len() > page_size {
        items.truncate(page_size);
        items
            .last()
            .map(|last| cursor::encode_sequence(last.sequence))
    } else {
        None
    };
    personal_data::reveal(&pool, &keys, viewer(principal.as_ref()), &mut items).await?;
    Ok(Json(StreamHistoryPage {
        aggregate_type: path.aggregate_type,
        aggregate_id: path.aggregate_id,
        version,
        items,
        next_cursor,
    }))
}

/// The global event log in commit order (`transaction_id`, then `global_position`),
/// filtered, by keyset pagination: follow `next_cursor` until it is `null`, then, to follow
/// the log as it grows, `resume_cursor`. An event
/// appended by a transaction that commits late shows up after the cursor, never behind
/// it: events appear once every older transaction has finished.
#[utoipa::path(
    get, path = "/audit/events", tag = "audit", operation_id = "list_events",
    params(AuditLogParams),
    responses((status = 200, description = "One page", body = AuditLogPage))
)]
#[instrument(skip_all)]
pub async fn list_events(
    State(pool): State<PgPool>,
    State(keys): State<AuditKeys>,
    principal: Option<Extension<Principal>>,
    params: AuditLogParams,
) -> Result<Json<AuditLogPage>, AuditError> {
    let mut items =
        store::log_events(&pool, &params.filter(), params.cursor, params.limit.fetch()).await?;
    let page_size = params.limit.get() as usize;
    let next_cursor = if items.len() > page_size {
        items.truncate(page_size);
        items
            .last()
            .map(|last| cursor::encode_log_position(last.log_position()))
    } else {
        None
    };
    let resume_cursor = items
        .last()
        .map(AuditEvent::log_position)
        .or(params.cursor)
        .map(cursor::encode_log_position);
    personal_data::reveal(&pool, &keys, viewer(principal.as_ref()), &mut items).await?;
    Ok(Json(AuditLogPage {
        items,
        next_cursor,
        resume_cursor,
    }))
}

/// Time travel: the aggregate's state after the event with sequence `version`, or after
/// the last event recorded at or before `at`, rebuilt by folding its events with the
/// domain's own `apply`.
#[utoipa::path(
    get, path = "/audit/streams/{aggregate_type}/{aggregate_id}/state", tag = "audit",
    operation_id = "get_stream_state",
    params(
        ("aggregate_type" = String, Path, description = "`order`, `payment` or `inventory`"),
        ("aggregate_id" = String, Path, description = "The aggregate id"),
        StateParams,
    ),
    responses(
        (status = 200, description = "The state at that version", body = AggregateStateView),
        (status = 404, description = "The store has no events of this stream (`audit.stream_not_found`), \
            the stream has not reached `version` (`audit.version_not_found`), or it had no events yet at `at` \
            (`audit.no_state_at`)", body = Problem, content_type = PROBLEM_JSON),
    )
)]
#[instrument(skip_all, fields(aggregate_type = %path.aggregate_type, aggregate_id = %path.aggregate_id))]
pub async fn get_stream_state(
    State(pool): State<PgPool>,
    path: StreamPath,
    params: StateParams,
) -> Result<Json<AggregateStateView>, AuditError> {
    let stream = path.stream();
    let aggregate = FoldableAggregate::from_type(stream.aggregate_type).ok_or_else(|| {
        AuditError::from(ParameterError::path(
            "aggregate_type",
            format!(
                "the state of {:?} cannot be rebuilt; expected one of {}",
                stream.aggregate_type,
                FoldableAggregate::TYPES.join(", ")
            ),
        ))
    })?;
    let as_of = params.as_of().ok_or_else(|| {
        AuditError::parameter("version", "give either `version` or `at`, exactly one")
    })?;
    let current_version = store::stream_version(&pool, stream)
        .await?
        .ok_or_else(|| stream_not_found(stream))?;
    let version = match as_of {
        AsOf::Version(version) if version > current_version => {
            return Err(AuditError::not_found(
                "audit.version_not_found",
                format!(
                    "{} {} is at version {current_version}; version {version} does not exist (yet)",
                    stream.aggregate_type, stream.aggregate_id
                ),
            ));
        }
        AsOf::Version(version) => version,
        AsOf::Instant(at) => store::version_at(&pool, stream, at).await?.ok_or_else(|| {
            AuditError::not_found(
                "audit.no_state_at",
                format!(
                    "{} {} had no events yet at {}",
                    stream.aggregate_type,
                    stream.aggregate_id,
                    at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                ),
            )
        })?,
    };
    let events = store::events_up_to(&pool, stream, version).await?;
    let contiguous = events
        .iter()
        .zip(1..)
        .all(|(event, expected)| event.sequence == expected);
    let last = events
        .last()
        .filter(|last| contiguous && last.sequence == version);
    let Some(last) = last else {
        return Err(AuditError::Unreadable(format!(
            "{} {} lacks events before version {version}",
            stream.aggregate_type, stream.aggregate_id
        )));
    };
    let recorded_at = last.recorded_at;
    let folded = aggregate.fold(&events).map_err(|error| {
        AuditError::Unreadable(format!(
            "{} {}: {error}",
            stream.aggregate_type, stream.aggregate_id
        ))
    })?;
    Ok(Json(AggregateStateView {
        aggregate_type: path.aggregate_type,
        aggregate_id: path.aggregate_id,
        version,
        recorded_at,
        current_version,
        state: folded,
    }))
}

/// Verifies one stream's hash chain: recomputes every event's link from its stored
/// content and reports the first event that no longer matches.
#[utoipa::path(
    get, path = "/audit/streams/{aggregate_type}/{aggregate_id}/verify", tag = "audit",
    operation_id = "verify_stream",
    params(
        ("aggregate_type" = String, Path, description = "`order`, `payment`, `inventory`, …"),
        ("aggregate_id" = String, Path, description = "The aggregate id"),
    ),
    responses(
        (status = 200, description = "The verdict (a broken chain is `ok: false`, still 200)", body = StreamVerification),
        (status = 404, description = "The store has no events of this stream (`audit.stream_not_found`)", body = Problem, content_type = PROBLEM_JSON),
    )
)]
#[instrument(skip_all, fields(aggregate_type = %path.aggregate_type, aggregate_id = %path.aggregate_id))]
pub async fn verify_stream(
    State(pool): State<PgPool>,
    path: StreamPath,
    _: NoParams,
) -> Result<Json<StreamVerification>, AuditError> {
    let stream = path.stream();
    let Verification {
        verified,
        first_mismatch,
        ..
    } = verify::verify_stream(&pool, stream)
        .await?
        .ok_or_else(|| stream_not_found(stream))?;
    if let Some(mismatch) = &first_mismatch {
        tracing::warn!(mismatch = ?mismatch, "hash chain broken");
    }
    Ok(Json(StreamVerification {
        aggregate_type: path.aggregate_type,
        aggregate_id: path.aggregate_id,
        verified,
        ok: first_mismatch.is_none(),
        first_mismatch,
    }))
}

/// Verifies every stream's hash chain, `limit` events per call (stream by stream, in
/// sequence order): follow `next_cursor` until it is `null` to check the whole store.
#[utoipa::path(
    get, path = "/audit/verify", tag = "audit", operation_id = "verify_store",
    params(VerifyParams),
    responses(
        (status = 200, description = "The verdict on this run (a broken chain is `ok: false`, still 200)", body = StoreVerification),
    )
)]
#[instrument(skip_all, fields(limit = params.limit.get()))]
pub async fn verify_store(
    State(pool): State<PgPool>,
    params: VerifyParams,
) -> Result<Json<StoreVerification>, AuditError> {
    let run = verify::verify_range(&pool, params.cursor.as_ref(), params.limit.get()).await?;
    let Verification {
        verified,
        first_mismatch,
        ..
    } = run.verification;
    if let Some(mismatch) = &first_mismatch {
        tracing::warn!(mismatch = ?mismatch, "hash chain broken");
    }
    Ok(Json(StoreVerification {
        verified,
        ok: first_mismatch.is_none(),
        first_mismatch,
        next_cursor: run
            .resume_after
            .as_ref()
            .map(cursor::encode_stream_position),
    }))
}
