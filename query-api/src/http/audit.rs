//! `/audit/…`: the audit trail over the event store itself (see [`crate::audit`]).

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tracing::instrument;
use utoipa::ToSchema;

use super::AppState;
use super::cursor;
use super::extract::{
    AsOf, AuditLogParams, NoParams, StateParams, StreamEventsParams, StreamPath, VerifyParams,
};
use super::problem::{PROBLEM_JSON, Problem, QueryError};
use crate::audit::state::FoldableAggregate;
use crate::audit::store::{self, AuditEvent, StreamRef};
use crate::audit::verify::{self, Mismatch, Verification};

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

fn stream_not_found(stream: StreamRef<'_>) -> QueryError {
    QueryError::not_found(
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
    State(state): State<AppState>,
    path: StreamPath,
    params: StreamEventsParams,
) -> Result<Json<StreamHistoryPage>, QueryError> {
    let stream = path.stream();
    let mut items = store::stream_events(
        &state.pool,
        stream,
        params.cursor.unwrap_or(0),
        params.limit.fetch(),
    )
    .await?;
    // Read after the events: a stream only grows, so the version covers every item.
    let version = store::stream_version(&state.pool, stream)
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
    Ok(Json(StreamHistoryPage {
        aggregate_type: path.aggregate_type,
        aggregate_id: path.aggregate_id,
        version,
        items,
        next_cursor,
    }))
}

/// The global event log in commit order (`transaction_id`, then `global_position`),
/// filtered, by keyset pagination: follow `next_cursor` until it is `null`. An event
/// appended by a transaction that commits late shows up after the cursor, never behind
/// it: events appear once every older transaction has finished.
#[utoipa::path(
    get, path = "/audit/events", tag = "audit", operation_id = "list_events",
    params(AuditLogParams),
    responses((status = 200, description = "One page", body = AuditLogPage))
)]
#[instrument(skip_all)]
pub async fn list_events(
    State(state): State<AppState>,
    params: AuditLogParams,
) -> Result<Json<AuditLogPage>, QueryError> {
    let mut items = store::log_events(
        &state.pool,
        &params.filter(),
        params.cursor,
        params.limit.fetch(),
    )
    .await?;
    let page_size = params.limit.get() as usize;
    let next_cursor = if items.len() > page_size {
        items.truncate(page_size);
        items
            .last()
            .map(|last| cursor::encode_log_position(last.log_position()))
    } else {
        None
    };
    Ok(Json(AuditLogPage { items, next_cursor }))
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
    State(state): State<AppState>,
    path: StreamPath,
    params: StateParams,
) -> Result<Json<AggregateStateView>, QueryError> {
    let stream = path.stream();
    let aggregate = FoldableAggregate::from_type(stream.aggregate_type).ok_or_else(|| {
        QueryError::InvalidPath {
            parameter: "aggregate_type".into(),
            detail: format!(
                "the state of {:?} cannot be rebuilt; expected one of {}",
                stream.aggregate_type,
                FoldableAggregate::TYPES.join(", ")
            ),
        }
    })?;
    let as_of = params.as_of().ok_or_else(|| {
        QueryError::parameter("version", "give either `version` or `at`, exactly one")
    })?;
    let current_version = store::stream_version(&state.pool, stream)
        .await?
        .ok_or_else(|| stream_not_found(stream))?;
    let version = match as_of {
        AsOf::Version(version) if version > current_version => {
            return Err(QueryError::not_found(
                "audit.version_not_found",
                format!(
                    "{} {} is at version {current_version}; version {version} does not exist (yet)",
                    stream.aggregate_type, stream.aggregate_id
                ),
            ));
        }
        AsOf::Version(version) => version,
        AsOf::Instant(at) => store::version_at(&state.pool, stream, at)
            .await?
            .ok_or_else(|| {
                QueryError::not_found(
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
    let events = store::events_up_to(&state.pool, stream, version).await?;
    let contiguous = events
        .iter()
        .zip(1..)
        .all(|(event, expected)| event.sequence == expected);
    let last = events
        .last()
        .filter(|last| contiguous && last.sequence == version);
    let Some(last) = last else {
        return Err(QueryError::Unreadable(format!(
            "{} {} lacks events before version {version}",
            stream.aggregate_type, stream.aggregate_id
        )));
    };
    let recorded_at = last.recorded_at;
    let folded = aggregate.fold(&events).map_err(|error| {
        QueryError::Unreadable(format!(
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
    State(state): State<AppState>,
    path: StreamPath,
    _: NoParams,
) -> Result<Json<StreamVerification>, QueryError> {
    let stream = path.stream();
    let Verification {
        verified,
        first_mismatch,
        ..
    } = verify::verify_stream(&state.pool, stream)
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
    State(state): State<AppState>,
    params: VerifyParams,
) -> Result<Json<StoreVerification>, QueryError> {
    let run = verify::verify_range(&state.pool, params.cursor.as_ref(), params.limit.get()).await?;
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
