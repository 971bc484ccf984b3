//! What each event-store trigger costs per appended event. On a scratch event store, one
//! statement appends `--rows` events (`--events-per-aggregate` per aggregate, so the hash
//! chain looks up a previous event for most of them), with metadata like the command API's
//! and an idempotency key on each, under `EXPLAIN (ANALYZE, FORMAT JSON)`. PostgreSQL then
//! reports each trigger's time and calls; the rest of the statement's time is the insert
//! itself (heap, the three indexes). Each run is rolled back, so every run appends to the
//! same empty store. The figures are server time per row, without the round trips and the
//! commit that a command adds (those are the pgbench baseline's).

use std::collections::BTreeMap;

use anyhow::Context;
use chrono::Utc;
use clap::Args;
use serde::Serialize;
use serde_json::Value;
use sqlx::Connection;

use crate::report::{Machine, Report};
use crate::scratch::{ScratchArgs, ScratchDatabase};
use crate::suite::median;

const SMOKE_ROWS: u32 = 200;

#[derive(Debug, Clone, Args, Serialize)]
pub struct TriggersArgs {
    /// Events appended by each run's statement.
    #[arg(long, default_value_t = 20_000)]
    pub rows: u32,
    /// Events of each aggregate (sequence 1 seals from zero, the others look up their
    /// predecessor).
    #[arg(long, default_value_t = 5)]
    pub events_per_aggregate: u32,
    /// Runs; the report gives each figure's median.
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    #[command(flatten)]
    #[serde(flatten)]
    pub scratch: ScratchArgs,
    #[arg(long)]
    #[serde(skip)]
    pub json: Option<std::path::PathBuf>,
    /// A small append, one run: checks that the scenario still works.
    #[arg(long)]
    pub smoke: bool,
}

/// One run's figures, µs per appended event.
#[derive(Debug, Serialize)]
struct TriggerRun {
    /// The whole statement.
    statement_us: f64,
    /// Each trigger: its time over the statement's rows (a statement-level trigger fires
    /// once, so its share per row is tiny).
    triggers: BTreeMap<String, f64>,
    /// The statement without its triggers: the insert itself.
    insert_us: f64,
}

#[derive(Debug, Serialize)]
struct TriggerResults {
    rows: u32,
    runs: Vec<TriggerRun>,
    /// Medians over the runs, µs per event.
    median_statement_us: f64,
    median_insert_us: f64,
    median_triggers_us: BTreeMap<String, f64>,
}

/// The append: `rows` events of `OrderCreated`-like size, metadata as the command API writes
/// it (actor, correlation, time, trace context, an idempotency key and a request
/// fingerprint, which the idempotency trigger takes out again).
const APPEND: &str = "EXPLAIN (ANALYZE, FORMAT JSON) \
    INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
    SELECT 'order', 'bench-' || (g / $2), g % $2 + 1, 'OrderCreated', '1.0', \
           json_build_object('OrderCreated', json_build_object( \
               'customer_id', md5(g::text)::uuid, 'currency', 'EUR', 'customer_details', NULL)), \
           json_build_object( \
               'actor', 'bench', 'correlation_id', md5('c' || g)::uuid, \
               'occurred_at', '2026-12-07T12:00:00.000000Z', \
               'traceparent', '00-' || md5('t' || g) || '-' || left(md5('s' || g), 16) || '-01', \
               'idempotency_key', 'bench-' || g, 'request_fingerprint', md5('f' || g)) \
      FROM generate_series(0, $1 - 1) AS g ORDER BY g";

pub async fn run(args: &TriggersArgs) -> anyhow::Result<bool> {
    let (rows, runs) = if args.smoke {
        (SMOKE_ROWS, 1)
    } else {
        (args.rows.max(1), args.runs.max(1))
    };
    let per_aggregate = args.events_per_aggregate.max(1);
    let database = ScratchDatabase::create(&args.scratch, "triggers").await?;
    let outcome = run_on(args, &database, rows, runs, per_aggregate).await;
    database.drop().await;
    outcome
}

async fn run_on(
    args: &TriggersArgs,
    database: &ScratchDatabase,
    rows: u32,
    runs: u32,
    per_aggregate: u32,
) -> anyhow::Result<bool> {
    let started_at = Utc::now();
    let mut connection = sqlx::PgConnection::connect(database.url())
        .await
        .context("connecting to the scratch database")?;
    let mut results = Vec::new();
    for _ in 0..runs {
        let mut tx = connection.begin().await?;
        let plan: Value = sqlx::query_scalar(APPEND)
            .bind(i64::from(rows))
            .bind(i64::from(per_aggregate))
            .fetch_one(&mut *tx)
            .await
            .context("appending under EXPLAIN ANALYZE")?;
        tx.rollback().await?;
        let run = per_event(&plan, rows)?;
        eprintln!(
            "  {rows} events: {:.2} µs/event, insert {:.2}, {}",
            run.statement_us,
            run.insert_us,
            run.triggers
                .iter()
                .map(|(name, us)| format!("{name} {us:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        results.push(run);
    }
    connection.close().await.ok();

    let median_triggers_us = results[0]
        .triggers
        .keys()
        .map(|name| {
            let values = results
                .iter()
                .filter_map(|run| run.triggers.get(name).copied())
                .collect();
            (name.clone(), median(values).unwrap_or(f64::NAN))
        })
        .collect::<BTreeMap<_, _>>();
    let results = TriggerResults {
        rows,
        median_statement_us: median(results.iter().map(|r| r.statement_us).collect())
            .unwrap_or(f64::NAN),
        median_insert_us: median(results.iter().map(|r| r.insert_us).collect()).unwrap_or(f64::NAN),
        median_triggers_us,
        runs: results,
    };
    let summary = format!(
        "triggers: {} events per run, median µs/event: statement {:.2} = insert {:.2} + {}",
        rows,
        results.median_statement_us,
        results.median_insert_us,
        results
            .median_triggers_us
            .iter()
            .map(|(name, us)| format!("{name} {us:.2}"))
            .collect::<Vec<_>>()
            .join(" + ")
    );
    // Every row trigger of an append must have fired once per event.
    let passed = !results.median_triggers_us.is_empty();
    Report {
        scenario: "triggers",
        started_at,
        smoke: args.smoke,
        machine: Machine::current(),
        config: args,
        results: &results,
        summary,
        passed: Some(passed),
    }
    .emit(args.json.as_deref())?;
    Ok(passed)
}

/// µs per event of the statement, of each trigger and of the rest, from the plan.
fn per_event(plan: &Value, rows: u32) -> anyhow::Result<TriggerRun> {
    let top = plan.get(0).context("EXPLAIN returned no plan")?;
    let total_ms = top
        .get("Execution Time")
        .and_then(Value::as_f64)
        .context("the plan has no Execution Time")?;
    let per_row = |ms: f64| ms * 1000.0 / f64::from(rows);
    let mut triggers = BTreeMap::new();
    for trigger in top
        .get("Triggers")
        .and_then(Value::as_array)
        .context("the plan lists no triggers")?
    {
        let name = trigger
            .get("Trigger Name")
            .and_then(Value::as_str)
            .context("a trigger without a name")?;
        let time = trigger
            .get("Time")
            .and_then(Value::as_f64)
            .context("a trigger without a time")?;
        let calls = trigger.get("Calls").and_then(Value::as_u64).unwrap_or(0);
        anyhow::ensure!(
            calls == 1 || calls == u64::from(rows),
            "trigger {name} fired {calls} times for {rows} events"
        );
        triggers.insert(name.to_owned(), per_row(time));
    }
    let trigger_total: f64 = triggers.values().sum();
    Ok(TriggerRun {
        statement_us: per_row(total_ms),
        insert_us: per_row(total_ms) - trigger_total,
        triggers,
    })
}
