//! The answer to an accepted command.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract::IDEMPOTENT_REPLAYED;
use crate::store::{CommandOutcome, RecordedEvent};

/// Body of every successful command response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CommandResult {
    /// `order`, `payment` or `inventory`.
    #[schema(example = "order")]
    pub aggregate_type: String,
    /// The aggregate the command addressed (a UUID, or the SKU for inventory).
    pub aggregate_id: String,
    /// The aggregate's version after the command; also the `ETag`. Send it back in
    /// `If-Match` to make the next command conditional on nothing having changed.
    pub version: u64,
    /// The events the command recorded, in order. Empty when the command changed nothing
    /// (an idempotent repeat such as reserving the same quantity for the same order again).
    pub events: Vec<EventRef>,
}

/// One recorded event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct EventRef {
    /// Event type, e.g. `OrderPlaced`.
    pub event_type: String,
    /// Position in the aggregate's stream (from 1).
    pub sequence: u64,
    /// The event's unique id (assigned by the event store).
    pub event_id: Uuid,
    /// Position in the global event log.
    pub global_position: i64,
}

impl From<RecordedEvent> for EventRef {
    fn from(event: RecordedEvent) -> Self {
        Self {
            event_type: event.event_type,
            sequence: event.sequence,
            event_id: event.event_id,
            global_position: event.global_position,
        }
    }
}

/// A successful command response: status, `ETag`, optional `Location`, and
/// `Idempotent-Replayed: true` when it repeats the answer to an earlier request.
#[derive(Debug)]
pub struct CommandResponse {
    status: StatusCode,
    location: Option<String>,
    replayed: bool,
    body: CommandResult,
}

impl CommandResponse {
    /// 200 OK.
    pub fn ok(outcome: CommandOutcome) -> Self {
        Self::with_status(outcome, StatusCode::OK, None)
    }

    /// 201 Created with `Location`, when the command recorded events; 200 when it changed
    /// nothing (then nothing was created).
    pub fn created(outcome: CommandOutcome, location: String) -> Self {
        if outcome.events.is_empty() {
            Self::ok(outcome)
        } else {
            Self::with_status(outcome, StatusCode::CREATED, Some(location))
        }
    }

    fn with_status(outcome: CommandOutcome, status: StatusCode, location: Option<String>) -> Self {
        Self {
            status,
            location,
            replayed: outcome.replayed,
            body: CommandResult {
                aggregate_type: outcome.aggregate_type,
                aggregate_id: outcome.aggregate_id,
                version: outcome.version,
                events: outcome.events.into_iter().map(EventRef::from).collect(),
            },
        }
    }
}

impl IntoResponse for CommandResponse {
    fn into_response(self) -> Response {
        let etag = format!("\"{}\"", self.body.version);
        let mut response = (self.status, Json(self.body)).into_response();
        let headers = response.headers_mut();
        if let Ok(etag) = HeaderValue::from_str(&etag) {
            headers.insert(header::ETAG, etag);
        }
        if let Some(location) = self.location
            && let Ok(location) = HeaderValue::from_str(&location)
        {
            headers.insert(header::LOCATION, location);
        }
        if self.replayed {
            headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
        }
        response
    }
}
