//! S7: aggregate load time against stream length. For each length, one inventory stream is
//! written through the command API's own event store code (cqrs-es `PersistedEventStore`
//! over postgres-es, so every trigger fires and, in snapshot mode, snapshots are taken every
//! `--snapshot-every` events as the API takes them) into a scratch database; then the
//! aggregate is loaded `--loads` times and each load is timed. A load must rebuild the
//! right state: the stock on hand equals the units the stream added.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aggregates::inventory::{InventoryEvent, InventoryItem};
use chrono::Utc;
use clap::Args;
use cqrs_es::EventStore;
use cqrs_es::persist::PersistedEventStore;
use postgres_es::PostgresEventRepository;
use serde::Serialize;
use uuid::Uuid;

use crate::open_loop::{Latencies, LatencySummary};
use crate::report::{Machine, Report};
use crate::scratch::{ScratchArgs, ScratchDatabase};

/// Events per commit while writing a stream (one transaction each).
const WRITE_CHUNK: usize = 100;
const WARMUP_LOADS: usize = 2;

#[derive(Debug, Clone, Args, Serialize)]
pub struct LoadArgs {
    /// Stream lengths to measure (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000,10000")]
    pub lengths: Vec<usize>,
    /// Timed loads per stream.
    #[arg(long, default_value_t = 50)]
    pub loads: usize,
    /// Snapshot interval of the snapshotted streams (the API's default for inventory).
    #[arg(long, default_value_t = 100)]
    pub snapshot_every: usize,
    #[command(flatten)]
    #[serde(flatten)]
    pub scratch: ScratchArgs,
    #[arg(long)]
    #[serde(skip)]
    pub json: Option<PathBuf>,
    /// Streams of 10 and 100 events, 5 loads each.
    #[arg(long)]
    pub smoke: bool,
}

#[derive(Debug, Serialize)]
struct StreamLoad {
    length: usize,
    snapshots: bool,
    /// Events read on load: after the latest snapshot, or all of them.
    events_after_snapshot: usize,
    write_seconds: f64,
    loads: LatencySummary,
    /// `length` / median load time.
    events_per_s_at_p50: f64,
    /// Every load rebuilt the state the stream describes.
    state_correct: bool,
}

#[derive(Debug, Serialize)]
struct LoadResults {
    streams: Vec<StreamLoad>,
}

type Store = PersistedEventStore<PostgresEventRepository, InventoryItem>;

pub async fn run(args: &LoadArgs) -> anyhow::Result<bool> {
    let (lengths, loads) = if args.smoke {
        (vec![10, 100], 5)
    } else {
        (args.lengths.clone(), args.loads.max(1))
    };
    anyhow::ensure!(
        args.snapshot_every > 0,
        "--snapshot-every must be at least 1"
    );
    let database = ScratchDatabase::create(&args.scratch, "load").await?;
    let outcome = run_on(args, &database, &lengths, loads).await;
    database.drop().await;
    outcome
}

async fn run_on(
    args: &LoadArgs,
    database: &ScratchDatabase,
    lengths: &[usize],
    loads: usize,
) -> anyhow::Result<bool> {
    let pool = database.pool(2).await?;
    let started_at = Utc::now();
    let mut streams = Vec::new();
    for &length in lengths {
        for snapshots in [false, true] {
            let store: Store = if snapshots {
                PersistedEventStore::new_snapshot_store(
                    PostgresEventRepository::new(pool.clone()),
                    args.snapshot_every,
                )
            } else {
                PersistedEventStore::new_event_store(PostgresEventRepository::new(pool.clone()))
            };
            let id = format!(
                "S7-{}-{length}-{}",
                if snapshots { "SNAP" } else { "FULL" },
                &Uuid::new_v4().simple().to_string()[..8]
            );
            let written = Instant::now();
            write_stream(&store, &id, length).await?;
            let write_seconds = written.elapsed().as_secs_f64();
            let mut latencies = Latencies::default();
            let mut state_correct = true;
            for attempt in 0..WARMUP_LOADS + loads {
                let begun = Instant::now();
                let context = store
                    .load_aggregate(&id)
                    .await
                    .map_err(|error| anyhow::anyhow!("loading {id}: {error}"))?;
                let took = begun.elapsed();
                state_correct &= context.aggregate.on_hand() == length as u64
                    && context.current_sequence == length;
                if attempt >= WARMUP_LOADS {
                    latencies.record(took);
                }
            }
            let events_after_snapshot = if snapshots {
                length % args.snapshot_every
            } else {
                length
            };
            let loads = latencies.summary();
            let p50 = Duration::from_secs_f64(loads.p50_ms / 1000.0);
            eprintln!(
                "  {length:>6} events, snapshots {snapshots:>5}: load p50={:.2} p99={:.2} ms",
                loads.p50_ms, loads.p99_ms
            );
            streams.push(StreamLoad {
                length,
                snapshots,
                events_after_snapshot,
                write_seconds,
                events_per_s_at_p50: if p50.is_zero() {
                    0.0
                } else {
                    length as f64 / p50.as_secs_f64()
                },
                loads,
                state_correct,
            });
        }
    }
    pool.close().await;
    let passed = streams.iter().all(|stream| stream.state_correct);
    let summary = format!(
        "aggregate load: {}{}",
        streams
            .iter()
            .map(|s| format!(
                "{}{}: p50={:.2} p99={:.2}ms",
                s.length,
                if s.snapshots { "+snap" } else { "" },
                s.loads.p50_ms,
                s.loads.p99_ms
            ))
            .collect::<Vec<_>>()
            .join("; "),
        if passed {
            ""
        } else {
            " | FAIL: a load rebuilt the wrong state"
        }
    );
    Report {
        scenario: "load",
        started_at,
        smoke: args.smoke,
        machine: Machine::current(),
        config: args,
        results: &LoadResults { streams },
        summary,
        passed: Some(passed),
    }
    .emit(args.json.as_deref())?;
    Ok(passed)
}

/// Appends `length` `StockAdded {quantity: 1}` events, `WRITE_CHUNK` per commit.
async fn write_stream(store: &Store, id: &str, length: usize) -> anyhow::Result<()> {
    let mut written = 0;
    while written < length {
        let chunk = WRITE_CHUNK.min(length - written);
        let context = store
            .load_aggregate(id)
            .await
            .map_err(|error| anyhow::anyhow!("loading {id}: {error}"))?;
        let metadata = HashMap::from([
            ("actor".to_owned(), "bench-load".to_owned()),
            ("correlation_id".to_owned(), Uuid::new_v4().to_string()),
            (
                "occurred_at".to_owned(),
                Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            ),
        ]);
        let events = vec![InventoryEvent::StockAdded { quantity: 1 }; chunk];
        store
            .commit(events, context, metadata)
            .await
            .map_err(|error| anyhow::anyhow!("appending to {id}: {error}"))?;
        written += chunk;
    }
    Ok(())
}
