//! `/console/api/sagas`: the fulfilment flows, failed and stuck first, and one order's
//! flow as a timeline ([`crate::flows`]).

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use ops::params::{PageLimit, ParameterError, QueryParams, cursor};
use serde::Serialize;
use sqlx::PgPool;
use tracing::instrument;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::extract::PathId;
use crate::flows::{self, FlowDetail, FlowSummary, FlowsAfter, FlowsQuery};
use crate::{ConsoleError, ConsoleSettings};

/// Cursor kind and format of the flows listing.
const CURSOR_KIND: &str = "s1";

/// Which flows to list.
#[derive(Debug, Clone, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FlowParams {
    /// Only flows in this status: `reserving`, `authorizing`, `completing`, `completed`,
    /// `compensating`, `cancelled`, `refunding`, `refunded`, `failed`.
    #[param(value_type = Option<String>)]
    pub status: Option<&'static str>,
    /// Page size, 1 to 200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: PageLimit,
    /// `next_cursor` of the previous page (same filter).
    #[param(value_type = Option<String>)]
    pub cursor: Option<FlowsAfter>,
}

impl<S: Send + Sync> FromRequestParts<S> for FlowParams {
    type Rejection = ParameterError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mut params = QueryParams::from_parts(parts)?;
        let status = params
            .take("status")?
            .map(|name| {
                flows::STATUSES
                    .iter()
                    .copied()
                    .find(|status| *status == name)
                    .ok_or_else(|| {
                        ParameterError::parameter(
                            "status",
                            format!("{name:?} is not a saga status"),
                        )
                    })
            })
            .transpose()?;
        let limit = PageLimit::parse(params.take("limit")?)?;
        let cursor = params
            .take("cursor")?
            .map(|value| decode_cursor(&value))
            .transpose()?;
        params.finish()?;
        Ok(Self {
            status,
            limit,
            cursor,
        })
    }
}

fn encode_cursor(after: &FlowsAfter) -> String {
    cursor::encode(
        CURSOR_KIND,
        &format!(
            "{}|{}|{}",
            after.rank,
            after
                .updated_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            after.order_id
        ),
    )
}

fn decode_cursor(value: &str) -> Result<FlowsAfter, ParameterError> {
    let body = cursor::decode(CURSOR_KIND, value)?;
    let mut fields = body.splitn(3, '|');
    let (Some(rank), Some(updated_at), Some(order_id)) =
        (fields.next(), fields.next(), fields.next())
    else {
        return Err(cursor::invalid());
    };
    Ok(FlowsAfter {
        rank: rank.parse().map_err(|_| cursor::invalid())?,
        updated_at: DateTime::parse_from_rfc3339(updated_at)
            .map_err(|_| cursor::invalid())?
            .with_timezone(&Utc),
        order_id: order_id.parse().map_err(|_| cursor::invalid())?,
    })
}

/// A page of flows.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FlowList {
    /// Failed first, then stuck, then the others; most recently moved first in each.
    pub flows: Vec<FlowSummary>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
    /// Flows per status, every status (not only this page's).
    pub counts: std::collections::BTreeMap<String, i64>,
}

/// The fulfilment flows, the ones that need an operator first.
#[utoipa::path(
    get, path = "/console/api/sagas", tag = "console", operation_id = "console_sagas",
    params(FlowParams),
    responses(
        (status = 200, description = "A page of flows", body = FlowList),
        (status = 400, description = "Unusable parameter", content_type = "application/problem+json"),
    )
)]
#[instrument(skip_all)]
pub async fn list_flows(
    State(pool): State<PgPool>,
    State(settings): State<ConsoleSettings>,
    params: FlowParams,
) -> Result<Json<FlowList>, ConsoleError> {
    let page = flows::list(
        &pool,
        &FlowsQuery {
            status: params.status,
            stuck_after: settings.saga_stuck_after,
            limit: i64::from(params.limit.get()),
            after: params.cursor,
        },
    )
    .await?;
    Ok(Json(FlowList {
        flows: page.flows,
        next_cursor: page.next.as_ref().map(encode_cursor),
        counts: flows::counts(&pool).await?.into_iter().collect(),
    }))
}

/// One order's flow: its state and, oldest first, the events that moved it and the
/// commands it sent (with their status, attempts and last error).
#[utoipa::path(
    get, path = "/console/api/sagas/{order_id}", tag = "console", operation_id = "console_saga",
    params(("order_id" = Uuid, Path, description = "The order the flow fulfils")),
    responses(
        (status = 200, description = "The flow", body = FlowDetail),
        (status = 400, description = "Not a UUID", content_type = "application/problem+json"),
        (status = 404, description = "The saga never saw that order", content_type = "application/problem+json"),
    )
)]
#[instrument(skip_all, fields(order_id = %order_id))]
pub async fn get_flow(
    State(pool): State<PgPool>,
    State(settings): State<ConsoleSettings>,
    PathId(order_id): PathId<Uuid>,
) -> Result<Json<FlowDetail>, ConsoleError> {
    flows::detail(&pool, order_id, settings.saga_stuck_after)
        .await?
        .map(Json)
        .ok_or_else(|| ConsoleError::NotFound {
            code: "saga.flow_not_found",
            detail: format!("the saga has no flow for order {order_id}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_decodes_to_what_was_encoded() {
        let after = FlowsAfter {
            rank: 1,
            updated_at: DateTime::parse_from_rfc3339("2026-12-07T17:00:00.123456Z")
                .map(|at| at.with_timezone(&Utc))
                .unwrap_or_default(),
            order_id: Uuid::from_u128(7),
        };
        let decoded = decode_cursor(&encode_cursor(&after));
        assert_eq!(decoded.ok(), Some(after));
    }

    #[test]
    fn a_cursor_of_another_listing_or_garbage_is_refused() {
        assert!(decode_cursor(&cursor::encode("g1", "1|x|y")).is_err());
        assert!(decode_cursor(&cursor::encode(CURSOR_KIND, "1|not-a-time|x")).is_err());
        assert!(decode_cursor("%%%").is_err());
    }
}
