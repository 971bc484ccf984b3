//! How busy the store has been lately: events and commands recorded per time bucket, for
//! the console's overview. Reads the recent end of `events` through its BRIN index on
//! `recorded_at`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool};

/// What was recorded in one bucket.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ActivityBucket {
    /// The bucket's start.
    pub at: DateTime<Utc>,
    /// Events recorded in it.
    pub events: i64,
    /// Commands that recorded events in it: one command appends to one stream in one
    /// transaction, so these are the distinct (stream, transaction) pairs. Commands that
    /// recorded nothing (rejections, replays) are in the command API's metrics only.
    pub commands: i64,
}

/// Events and commands per `bucket` from `since` to now, oldest first; every bucket of
/// the window is present, empty ones with zeros.
///
/// # Errors
/// Database errors.
pub async fn recorded_since(
    pool: &PgPool,
    since: DateTime<Utc>,
    bucket: Duration,
) -> Result<Vec<ActivityBucket>, sqlx::Error> {
    let bucket_ms = i64::try_from(bucket.as_millis()).unwrap_or(i64::MAX).max(1);
    sqlx::query_as(
        "WITH recorded AS ( \
             SELECT date_bin($2 * interval '1 millisecond', recorded_at, $1) AS at, \
                    count(*) AS events, \
                    count(DISTINCT (aggregate_type, aggregate_id, transaction_id)) AS commands \
             FROM events WHERE recorded_at >= $1 GROUP BY 1) \
         SELECT buckets.at, coalesce(recorded.events, 0) AS events, \
                coalesce(recorded.commands, 0) AS commands \
         FROM generate_series($1, now(), $2 * interval '1 millisecond') AS buckets(at) \
         LEFT JOIN recorded USING (at) ORDER BY buckets.at",
    )
    .bind(since)
    .bind(bucket_ms)
    .fetch_all(pool)
    .await
}

/// The global position of the last event appended (0 for an empty store): the identity
/// sequence's last value, without scanning `events`.
///
/// # Errors
/// Database errors.
pub async fn log_head(pool: &PgPool) -> Result<i64, sqlx::Error> {
    let head: Option<i64> = sqlx::query_scalar(
        "SELECT pg_sequence_last_value(pg_get_serial_sequence('events', 'global_position'))",
    )
    .fetch_one(pool)
    .await?;
    Ok(head.unwrap_or(0))
}
