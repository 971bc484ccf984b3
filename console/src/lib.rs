//! The operator console (ADR 0011): a web app served at `/console` and the JSON it reads
//! and acts on under `/console/api/…`. The query API mounts [`routes`] and [`assets`];
//! the streams and global-log pages read the audit trail's routes (`/audit/…`), mounted
//! beside them.
//!
//! | method | path | role | notes |
//! |---|---|---|---|
//! | GET | `/console/` | none | the web app (HTML, scripts, styles; no data) |
//! | GET | `/console/api/overview` | `auditor` | `?minutes=`; events and commands per bucket, the log's head |
//! | GET | `/console/api/projections` | `auditor` | per projection: position, lag, dead letters, rebuild |
//! | GET | `/console/api/dead-letters` | `auditor` | `?projection=&include_resolved=&limit=` |
//! | POST | `/console/api/dead-letters/{id}/retry` | `operator` | puts it (and its aggregate's) back |
//! | POST | `/console/api/dead-letters/{id}/skip` | `operator` | `{"reason": "…"}`; moves past it |
//! | GET | `/console/api/sagas` | `auditor` | `?status=&limit=&cursor=`; failed and stuck first |
//! | GET | `/console/api/sagas/{order_id}` | `auditor` | one flow as a timeline |
//!
//! The console links libraries only: `read-model` (each projection's progress, rebuilds,
//! and the answers to dead letters), `event-store` (the overview, the lag in events) and
//! `ops`; the saga's flows are read-only queries on the saga's tables ([`flows`]).
//!
//! Actions are recorded on what they change (`resolved_by` of the dead letters) with the
//! caller's token subject as the actor, and logged.

pub mod assets;
pub mod dead_letters;
mod extract;
pub mod flows;
pub mod overview;
mod problem;
pub mod projection_status;
pub mod sagas;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use ops::clock::{Clock, SystemClock};
use sqlx::PgPool;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use self::assets::assets;
pub use self::problem::ConsoleError;

/// The console's settings, reachable from the router's state.
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    /// A saga flow not settled and unchanged for this long is listed as stuck.
    pub saga_stuck_after: Duration,
    /// Where "now" comes from (the overview's window, the projections' sample time).
    pub clock: Arc<dyn Clock>,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            saga_stuck_after: Duration::from_secs(60),
            clock: Arc::new(SystemClock),
        }
    }
}

/// The console's JSON routes with their OpenAPI operations (tag `console`), for a router
/// whose state yields the database pool (event store, read models and saga tables) and
/// the console's settings.
pub fn routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    PgPool: FromRef<S>,
    ConsoleSettings: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(overview::get_overview))
        .routes(routes!(projection_status::get_projections))
        .routes(routes!(dead_letters::list_dead_letters))
        .routes(routes!(dead_letters::retry_dead_letter))
        .routes(routes!(dead_letters::skip_dead_letter))
        .routes(routes!(sagas::list_flows))
        .routes(routes!(sagas::get_flow))
}
