//! Which shards of the outbox this relay instance publishes. A shard is held through a
//! PostgreSQL session advisory lock on the relay's own connection: if the relay dies, its
//! session ends and the shard is free for another instance.

use std::collections::BTreeSet;

use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::OUTBOX_SHARDS;

/// First key of the two-key advisory lock space reserved for outbox shards ("keel").
const LOCK_CLASS: i32 = 0x6b65_656c;

/// A relay counts as alive while its heartbeat is younger than this.
const LIVENESS_WINDOW_SECS: i32 = 10;

/// Namespace of the relay ids derived from instance names.
const RELAY_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6b65_656c_2d6f_7574_626f_782d_7265_6c61);

/// The relay id of the instance named `instance` (`KEEL_RELAY_INSTANCE_ID`): the same on
/// every start, so a relay killed and started again under its name heartbeats in its own
/// row instead of leaving a dead one that counts as live for the liveness window, during
/// which the fair share would give it only part of the shards.
pub fn relay_id_for(instance: &str) -> Uuid {
    Uuid::new_v5(&RELAY_ID_NAMESPACE, instance.as_bytes())
}

#[derive(Debug)]
pub struct ShardLeases {
    relay_id: Uuid,
    held: BTreeSet<i16>,
}

impl ShardLeases {
    pub fn new(relay_id: Uuid) -> Self {
        Self {
            relay_id,
            held: BTreeSet::new(),
        }
    }

    pub fn relay_id(&self) -> Uuid {
        self.relay_id
    }

    pub fn held(&self) -> Vec<i16> {
        self.held.iter().copied().collect()
    }

    /// Sends a heartbeat and moves towards a fair share, `ceil(shards / live relays)`:
    /// releases shards beyond it, tries to lock free ones below it. Call only between
    /// batches, never while this relay has events of a shard in flight.
    pub async fn rebalance(&mut self, connection: &mut PgConnection) -> Result<(), sqlx::Error> {
        let held = self.held();
        sqlx::query(
            "INSERT INTO outbox_relays (relay_id, last_seen, shards) VALUES ($1, now(), $2) \
             ON CONFLICT (relay_id) DO UPDATE SET last_seen = now(), shards = $2",
        )
        .bind(self.relay_id)
        .bind(&held)
        .execute(&mut *connection)
        .await?;
        sqlx::query(
            "DELETE FROM outbox_relays WHERE last_seen < now() - make_interval(secs => $1 * 6)",
        )
        .bind(LIVENESS_WINDOW_SECS)
        .execute(&mut *connection)
        .await?;
        let live: i64 = sqlx::query(
            "SELECT count(*) AS live FROM outbox_relays WHERE last_seen > now() - make_interval(secs => $1)",
        )
        .bind(LIVENESS_WINDOW_SECS)
        .fetch_one(&mut *connection)
        .await?
        .try_get("live")?;
        let live = usize::try_from(live.max(1)).unwrap_or(1);
        let shards = usize::try_from(OUTBOX_SHARDS).unwrap_or(64);
        let fair_share = shards.div_ceil(live);

        while self.held.len() > fair_share {
            let Some(shard) = self.held.pop_last() else {
                break;
            };
            sqlx::query("SELECT pg_advisory_unlock($1, $2)")
                .bind(LOCK_CLASS)
                .bind(i32::from(shard))
                .execute(&mut *connection)
                .await?;
        }
        for shard in 0..OUTBOX_SHARDS {
            if self.held.len() >= fair_share {
                break;
            }
            if self.held.contains(&shard) {
                continue;
            }
            let locked: bool = sqlx::query("SELECT pg_try_advisory_lock($1, $2) AS locked")
                .bind(LOCK_CLASS)
                .bind(i32::from(shard))
                .fetch_one(&mut *connection)
                .await?
                .try_get("locked")?;
            if locked {
                self.held.insert(shard);
            }
        }
        Ok(())
    }

    /// Gives every shard back and removes this relay's heartbeat (clean shutdown).
    pub async fn release_all(&mut self, connection: &mut PgConnection) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_advisory_unlock_all()")
            .execute(&mut *connection)
            .await?;
        sqlx::query("DELETE FROM outbox_relays WHERE relay_id = $1")
            .bind(self.relay_id)
            .execute(&mut *connection)
            .await?;
        self.held.clear();
        Ok(())
    }

    /// Forgets the shards without talking to the database: the session that held them is
    /// gone, and with it the locks.
    pub fn forget(&mut self) {
        self.held.clear();
    }
}
