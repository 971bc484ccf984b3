//! `/console/api/dead-letters`: the projections' dead letters, and an operator's answers
//! to them (retry, or skip with a reason), recorded with the caller as the actor. The
//! answers themselves are `read_model::dead_letters`, the same that `keel-replay
//! retry-dead-letter` / `skip-dead-letter` give.

use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::{Extension, Json};
use ops::auth::{ANONYMOUS_ACTOR, Principal};
use ops::params::{PageLimit, ParameterError, QueryParams};
use read_model::catalog;
use read_model::dead_letters::{self as operator, DeadLetterSummary, OperatorError, Resolved};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tracing::instrument;
use utoipa::{IntoParams, ToSchema};

use crate::ConsoleError;
use crate::extract::{PathId, parse_bool};

/// Which dead letters to list.
#[derive(Debug, Clone, Copy, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterParams {
    /// Only this projection's: `orders`, `stock` or `payments`.
    #[param(value_type = Option<String>)]
    pub projection: Option<&'static str>,
    /// Also the ones answered already (default false).
    #[param(value_type = Option<bool>)]
    pub include_resolved: bool,
    /// At most this many, newest first, 1 to 200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: PageLimit,
}

impl<S: Send + Sync> FromRequestParts<S> for DeadLetterParams {
    type Rejection = ParameterError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mut params = QueryParams::from_parts(parts)?;
        let projection = params
            .take("projection")?
            .map(|name| {
                catalog::projection(&name)
                    .map(|entry| entry.name)
                    .ok_or_else(|| {
                        ParameterError::parameter(
                            "projection",
                            format!("must be orders, stock or payments, not {name:?}"),
                        )
                    })
            })
            .transpose()?;
        let include_resolved = parse_bool("include_resolved", params.take("include_resolved")?)?;
        let limit = PageLimit::parse(params.take("limit")?)?;
        params.finish()?;
        Ok(Self {
            projection,
            include_resolved,
            limit,
        })
    }
}

/// A list of dead letters.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeadLetterList {
    /// Newest first.
    pub dead_letters: Vec<DeadLetterSummary>,
}

/// What an answer did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Answered {
    /// The dead letters it resolved: the one asked for, then the ones of its aggregate held
    /// behind it.
    pub dead_letters: Vec<i64>,
    /// Messages put back for the projector to apply, in order.
    pub requeued: u64,
    /// Who answered (recorded on the dead letters).
    pub actor: String,
}

/// A skip's body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SkipRequest {
    /// Why the event is given up (1 to 1,000 characters), recorded on the dead letter.
    pub reason: String,
}

/// Dead letters, newest first.
#[utoipa::path(
    get, path = "/console/api/dead-letters", tag = "console", operation_id = "console_dead_letters",
    params(DeadLetterParams),
    responses(
        (status = 200, description = "Dead letters", body = DeadLetterList),
        (status = 400, description = "Unusable parameter", content_type = "application/problem+json"),
    )
)]
#[instrument(skip_all)]
pub async fn list_dead_letters(
    State(pool): State<PgPool>,
    params: DeadLetterParams,
) -> Result<Json<DeadLetterList>, ConsoleError> {
    let letters = operator::list(
        &pool,
        params.projection,
        params.include_resolved,
        i64::from(params.limit.get()),
    )
    .await?;
    Ok(Json(DeadLetterList {
        dead_letters: letters,
    }))
}

/// Retries a dead letter: it and every unanswered letter of its aggregate go back to the
/// projector, in order, due at once (dead-lettered again if it still fails).
#[utoipa::path(
    post, path = "/console/api/dead-letters/{id}/retry", tag = "console",
    operation_id = "console_retry_dead_letter",
    params(("id" = i64, Path, description = "The dead letter that parks its aggregate")),
    responses(
        (status = 200, description = "Put back", body = Answered),
        (status = 400, description = "Unusable id or body", content_type = "application/problem+json"),
        (status = 404, description = "No such dead letter", content_type = "application/problem+json"),
        (status = 409, description = "Answered already, held behind another letter, or without an aggregate", content_type = "application/problem+json"),
    )
)]
#[instrument(skip_all, fields(dead_letter = id))]
pub async fn retry_dead_letter(
    State(pool): State<PgPool>,
    principal: Option<Extension<Principal>>,
    PathId(id): PathId<i64>,
    body: Bytes,
) -> Result<Json<Answered>, ConsoleError> {
    // An empty body or `{}`: a retry takes no input, and refuses any it would ignore.
    if !body.iter().all(u8::is_ascii_whitespace) {
        let fields: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&body)
            .map_err(|error| ConsoleError::Body(format!("not a JSON object: {error}")))?;
        if let Some(field) = fields.keys().next() {
            return Err(ConsoleError::Body(format!(
                "a retry takes no fields; unknown field {field:?}"
            )));
        }
    }
    let actor = actor(principal.as_ref());
    let resolved = operator::retry(&pool, id, &actor)
        .await
        .map_err(answer_error)?;
    tracing::info!(dead_letter = id, %actor, requeued = resolved.requeued, "dead letter retried");
    Ok(Json(answered(resolved, actor)))
}

/// Skips a dead letter for a reason: its aggregate moves past that one event (the read
/// model lacks its effect until a rebuild), the letters held behind it are put back.
#[utoipa::path(
    post, path = "/console/api/dead-letters/{id}/skip", tag = "console",
    operation_id = "console_skip_dead_letter",
    params(("id" = i64, Path, description = "The dead letter that parks its aggregate")),
    request_body = SkipRequest,
    responses(
        (status = 200, description = "Skipped", body = Answered),
        (status = 400, description = "Unusable id or body", content_type = "application/problem+json"),
        (status = 404, description = "No such dead letter", content_type = "application/problem+json"),
        (status = 409, description = "Answered already, or held behind another letter", content_type = "application/problem+json"),
        (status = 422, description = "A blank or overlong reason", content_type = "application/problem+json"),
    )
)]
#[instrument(skip_all, fields(dead_letter = id))]
pub async fn skip_dead_letter(
    State(pool): State<PgPool>,
    principal: Option<Extension<Principal>>,
    PathId(id): PathId<i64>,
    body: Bytes,
) -> Result<Json<Answered>, ConsoleError> {
    let request: SkipRequest = serde_json::from_slice(&body)
        .map_err(|error| ConsoleError::Body(format!("expected {{\"reason\": \"…\"}}: {error}")))?;
    let actor = actor(principal.as_ref());
    let resolved = operator::skip(&pool, id, &actor, &request.reason)
        .await
        .map_err(answer_error)?;
    tracing::info!(dead_letter = id, %actor, reason = %request.reason.trim(), "dead letter skipped");
    Ok(Json(answered(resolved, actor)))
}

fn actor(principal: Option<&Extension<Principal>>) -> String {
    principal.map_or_else(
        || ANONYMOUS_ACTOR.to_owned(),
        |Extension(principal)| principal.subject.clone(),
    )
}

fn answered(resolved: Resolved, actor: String) -> Answered {
    Answered {
        dead_letters: resolved.dead_letters,
        requeued: resolved.requeued,
        actor,
    }
}

fn answer_error(error: OperatorError) -> ConsoleError {
    let detail = error.to_string();
    match error {
        OperatorError::NotFound(_) => ConsoleError::NotFound {
            code: "dead_letter.not_found",
            detail,
        },
        OperatorError::AlreadyResolved { .. } => ConsoleError::Conflict {
            code: "dead_letter.already_resolved",
            detail,
        },
        OperatorError::HeldBehind { .. } => ConsoleError::Conflict {
            code: "dead_letter.held_behind",
            detail,
        },
        OperatorError::NoAggregate(_) => ConsoleError::Conflict {
            code: "dead_letter.no_aggregate",
            detail,
        },
        OperatorError::Invalid(_) => ConsoleError::Unprocessable {
            code: "dead_letter.invalid_answer",
            detail,
        },
        OperatorError::Database(error) => ConsoleError::Database(error),
    }
}
