//! S4: the publish path.
//!
//! Latency mode (default): add-stock commands at `--rate` while an own consumer of
//! `{prefix}inventory` timestamps every message it receives. Afterwards the events'
//! `recorded_at` is read from the event store by the `event_id` header, and the latency
//! is receipt − `recorded_at`. `recorded_at` is `clock_timestamp()` at the INSERT, a few
//! milliseconds before the commit, so this is "append → consumer receipt" and slightly
//! over-states commit → receipt.
//!
//! Drain mode (`--drain N`): N events inserted straight into `events` in one transaction
//! (the outbox trigger queues them all at once), then the time until the running relays
//! have emptied the outbox.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Args;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Serialize;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use crate::Common;
use crate::open_loop::{self, Latencies, LatencySummary, OpenLoopResult, Sample};
use crate::report::{Machine, Report, open_loop_line, percentiles};
use crate::rss::{Footprint, RssSampler};
use crate::workload::{KeyArgs, add_stock, error_chain, http_client, read_answer, require_ready};

const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);
const OUTBOX_POLL: Duration = Duration::from_millis(20);
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
const SMOKE_DRAIN_EVENTS: u64 = 500;
/// Event ids per `= ANY($1)` query.
const LOOKUP_CHUNK: usize = 5_000;

#[derive(Debug, Clone, Args, Serialize)]
pub struct RelayArgs {
    /// Drain mode: insert this many events in one transaction and time the outbox drain.
    #[arg(long, value_name = "N")]
    pub drain: Option<u64>,
    /// Drain mode: events per (new) aggregate, sequences 1..=this.
    #[arg(long, default_value_t = 10)]
    pub events_per_aggregate: u64,
    /// Drain mode: give up after this many seconds.
    #[arg(long, default_value_t = 300.0)]
    pub drain_timeout: f64,
    #[arg(long, env = "KEEL_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,
    #[arg(long, env = "KEEL_TOPIC_PREFIX", default_value = "keel.")]
    pub topic_prefix: String,
    /// Consumer `fetch.wait.max.ms`: the broker may hold a fetch this long for more data.
    #[arg(long, default_value_t = 10)]
    pub fetch_wait_ms: u32,
    /// Latency mode: seconds to keep consuming after the load for events still in flight.
    #[arg(long, default_value_t = 15.0)]
    pub grace: f64,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Debug, Serialize)]
struct Config<'a> {
    common: &'a Common,
    relay: &'a RelayArgs,
    topic: String,
}

pub async fn run(common: &Common, args: &RelayArgs) -> anyhow::Result<bool> {
    match args.drain {
        Some(events) => drain(common, args, events).await,
        None => latency(common, args).await,
    }
}

async fn connect(common: &Common) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&common.database_url)
        .await
        .context("connecting to the event store (--database-url / KEEL_DATABASE_URL)")
}

#[derive(Debug, Serialize)]
struct LatencyResults {
    /// The add-stock commands that produced the events.
    commands: OpenLoopResult,
    /// Events acknowledged to measured commands.
    expected_events: u64,
    /// Of those, received by the consumer.
    received_events: u64,
    /// Not received within the grace period.
    missing_events: u64,
    /// `received_events` over the measured period (or up to the last receipt, if later).
    events_per_s: f64,
    /// Consumer receipt − the event's `recorded_at` (INSERT time, a few ms before commit).
    append_to_receipt: LatencySummary,
    /// Receipts stamped before `recorded_at` (clock trouble); recorded as 0.
    negative_latencies: u64,
    /// Every message the consumer saw on the topic, other traffic included.
    messages_consumed: u64,
    messages_without_event_id: u64,
    consumer_errors: u64,
    consumer_error_examples: Vec<String>,
    partitions: usize,
    /// Resident memory and CPU time of the platform's processes during the run.
    #[serde(flatten)]
    footprint: Footprint,
}

#[derive(Debug, Default)]
struct ConsumerTally {
    messages: u64,
    without_event_id: u64,
    errors: u64,
    error_examples: Vec<String>,
}

type Receipts = Arc<Mutex<HashMap<Uuid, DateTime<Utc>>>>;

async fn latency(common: &Common, args: &RelayArgs) -> anyhow::Result<bool> {
    let client = http_client(common.concurrency_limit)?;
    require_ready(&client, &common.command_url).await?;
    let database = connect(common).await?;
    let topic = format!("{}inventory", args.topic_prefix);

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.kafka_brokers)
        .set(
            "group.id",
            format!("bench-relay-{}", Uuid::new_v4().simple()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "latest")
        .set("fetch.wait.max.ms", args.fetch_wait_ms.to_string())
        .create()
        .context("creating the Kafka consumer")?;
    // Assigned explicitly at each partition's current end, before any load is sent, so
    // every event of the run is seen and no group rebalance can delay the start.
    let partitions = tokio::task::block_in_place(|| assign_at_end(&consumer, &topic))?;
    let consumer = Arc::new(consumer);
    let receipts: Receipts = Arc::default();
    let (stop, stopped) = watch::channel(false);
    let consuming = tokio::spawn(consume(
        Arc::clone(&consumer),
        Arc::clone(&receipts),
        stopped,
    ));

    let expected: Arc<Mutex<Vec<Uuid>>> = Arc::default();
    let mut picker = args.keys.picker(common.seed)?;
    let started_at = Utc::now();
    let footprint = RssSampler::start();
    let measured_from_wall = started_at
        + chrono::Duration::from_std(common.warmup_period()).context("warm-up period")?;
    let commands = open_loop::run(&common.schedule(), |slot| {
        let request = add_stock(&client, &common.command_url, &picker.next_sku(), None);
        let expected = Arc::clone(&expected);
        async move {
            let answer = match request.send().await {
                Ok(response) => read_answer(response).await,
                Err(error) => Err(error),
            };
            match answer {
                Ok((status, answer)) => {
                    if status.is_success() && slot.measured {
                        expected
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .extend(answer.events.iter().map(|event| event.event_id));
                    }
                    Sample::status(status.as_u16())
                }
                Err(error) => Sample::error(error_chain(&error)),
            }
        }
    })
    .await;
    let expected = std::mem::take(&mut *expected.lock().unwrap_or_else(PoisonError::into_inner));

    let deadline = Instant::now() + Duration::from_secs_f64(args.grace);
    while Instant::now() < deadline && missing(&expected, &receipts) > 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.send(true).ok();
    let footprint = footprint.finish().await;
    let tally = consuming.await.context("the consumer task panicked")?;

    let received: Vec<(Uuid, DateTime<Utc>)> = {
        let receipts = receipts.lock().unwrap_or_else(PoisonError::into_inner);
        expected
            .iter()
            .filter_map(|id| receipts.get(id).map(|at| (*id, *at)))
            .collect()
    };
    let recorded = recorded_at(&database, &received).await?;
    let mut append_to_receipt = Latencies::default();
    let mut negative_latencies = 0;
    let mut last_receipt = measured_from_wall;
    for (id, received_at) in &received {
        last_receipt = last_receipt.max(*received_at);
        let Some(recorded_at) = recorded.get(id) else {
            continue;
        };
        match (*received_at - *recorded_at).to_std() {
            Ok(latency) => append_to_receipt.record(latency),
            Err(_) => {
                negative_latencies += 1;
                append_to_receipt.record(Duration::ZERO);
            }
        }
    }
    let receiving_seconds = (last_receipt - measured_from_wall)
        .to_std()
        .unwrap_or_default()
        .as_secs_f64()
        .max(common.duration);
    let results = LatencyResults {
        expected_events: expected.len() as u64,
        received_events: received.len() as u64,
        missing_events: (expected.len() - received.len()) as u64,
        events_per_s: received.len() as f64 / receiving_seconds,
        append_to_receipt: append_to_receipt.summary(),
        negative_latencies,
        messages_consumed: tally.messages,
        messages_without_event_id: tally.without_event_id,
        consumer_errors: tally.errors,
        consumer_error_examples: tally.error_examples,
        partitions,
        commands,
        footprint,
    };
    let summary = format!(
        "relay latency: events received={}/{} ({:.1}/s) append→consumer-receipt {} | commands {}",
        results.received_events,
        results.expected_events,
        results.events_per_s,
        percentiles(&results.append_to_receipt),
        open_loop_line(&results.commands),
    );
    Report {
        scenario: "relay-latency",
        started_at,
        smoke: common.smoke,
        machine: Machine::current(),
        config: Config {
            common,
            relay: args,
            topic,
        },
        results: &results,
        summary,
        passed: None,
    }
    .emit(common.json.as_deref())?;
    Ok(true)
}

fn assign_at_end(consumer: &StreamConsumer, topic: &str) -> anyhow::Result<usize> {
    let metadata = consumer
        .fetch_metadata(Some(topic), KAFKA_TIMEOUT)
        .context("fetching topic metadata from Kafka (is the broker up?)")?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    anyhow::ensure!(
        !partitions.is_empty(),
        "topic {topic} has no partitions (has the relay created it?)"
    );
    let mut assignment = TopicPartitionList::new();
    for partition in &partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, *partition, KAFKA_TIMEOUT)
            .with_context(|| format!("reading the end offset of {topic}/{partition}"))?;
        assignment
            .add_partition_offset(topic, *partition, Offset::Offset(high))
            .context("building the assignment")?;
    }
    consumer
        .assign(&assignment)
        .context("assigning the partitions")?;
    Ok(partitions.len())
}

async fn consume(
    consumer: Arc<StreamConsumer>,
    receipts: Receipts,
    mut stopped: watch::Receiver<bool>,
) -> ConsumerTally {
    let mut tally = ConsumerTally::default();
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            message = consumer.recv() => match message {
                Ok(message) => {
                    let received_at = Utc::now();
                    tally.messages += 1;
                    let event_id = message.headers().and_then(|headers| {
                        headers
                            .iter()
                            .find(|header| header.key == "event_id")
                            .and_then(|header| header.value)
                            .and_then(|value| std::str::from_utf8(value).ok())
                            .and_then(|text| Uuid::parse_str(text).ok())
                    });
                    match event_id {
                        Some(id) => {
                            receipts
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .entry(id)
                                .or_insert(received_at);
                        }
                        None => tally.without_event_id += 1,
                    }
                }
                Err(error) => {
                    tally.errors += 1;
                    let error = error.to_string();
                    if tally.error_examples.len() < 5 && !tally.error_examples.contains(&error) {
                        tally.error_examples.push(error);
                    }
                }
            }
        }
    }
    tally
}

fn missing(expected: &[Uuid], receipts: &Receipts) -> usize {
    let receipts = receipts.lock().unwrap_or_else(PoisonError::into_inner);
    expected
        .iter()
        .filter(|id| !receipts.contains_key(id))
        .count()
}

async fn recorded_at(
    database: &PgPool,
    received: &[(Uuid, DateTime<Utc>)],
) -> anyhow::Result<HashMap<Uuid, DateTime<Utc>>> {
    let mut recorded = HashMap::with_capacity(received.len());
    for chunk in received.chunks(LOOKUP_CHUNK) {
        let ids: Vec<Uuid> = chunk.iter().map(|(id, _)| *id).collect();
        let rows: Vec<(Uuid, DateTime<Utc>)> =
            sqlx::query_as("SELECT event_id, recorded_at FROM events WHERE event_id = ANY($1)")
                .bind(&ids)
                .fetch_all(database)
                .await
                .context("reading recorded_at of the received events")?;
        recorded.extend(rows);
    }
    Ok(recorded)
}

#[derive(Debug, Serialize)]
struct DrainResults {
    events: u64,
    aggregates: u64,
    /// Rows in the outbox just before the insert (other traffic or an old backlog).
    backlog_before: i64,
    /// Relays that reported in the last 30 s.
    relays_alive: i64,
    /// The one-transaction INSERT, commit included.
    insert_seconds: f64,
    insert_events_per_s: f64,
    /// From the commit until `SELECT count(*) FROM outbox` was 0 (±20 ms polling).
    drain_seconds: Option<f64>,
    drained_events_per_s: Option<f64>,
    /// Outbox rows left when the drain timed out.
    left_at_timeout: Option<i64>,
}

async fn drain(common: &Common, args: &RelayArgs, events: u64) -> anyhow::Result<bool> {
    let events = if common.smoke {
        events.min(SMOKE_DRAIN_EVENTS)
    } else {
        events
    }
    .max(1);
    let per_aggregate = args.events_per_aggregate.max(1);
    let timeout = Duration::from_secs_f64(args.drain_timeout);
    let client = http_client(4)?;
    require_ready(&client, &common.command_url).await?;
    let database = connect(common).await?;
    let relays_alive: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox_relays WHERE last_seen > now() - interval '30 seconds'",
    )
    .fetch_one(&database)
    .await
    .context("reading outbox_relays")?;
    anyhow::ensure!(
        relays_alive > 0,
        "no outbox relay reported in the last 30 s; start one (`cargo xtask up`)"
    );

    let template = template_event(&client, common, args, &database).await?;
    // Start from an empty outbox (the template's own events included), so the drain
    // time is ours alone.
    if let Err(left) = wait_for_empty_outbox(&database, timeout).await? {
        anyhow::bail!("the outbox still holds {left} rows after {timeout:?}; is the relay stuck?");
    }
    let backlog_before = outbox_rows(&database).await?;

    let run_id = &Uuid::new_v4().simple().to_string()[..8];
    let prefix = format!("{}-DRAIN-{run_id}-", args.keys.sku_prefix);
    let started_at = Utc::now();
    let insert_started = Instant::now();
    let mut transaction = database.begin().await.context("BEGIN")?;
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata)
         SELECT 'inventory', $1 || lpad((g / $3)::text, 7, '0'), g % $3 + 1, $4, $5,
                $6::json, $7::json
           FROM generate_series(0, $2 - 1) AS g",
    )
    .bind(&prefix)
    .bind(i64::try_from(events).context("--drain")?)
    .bind(i64::try_from(per_aggregate).context("--events-per-aggregate")?)
    .bind(&template.event_type)
    .bind(&template.event_version)
    .bind(&template.payload)
    .bind(&template.metadata)
    .execute(&mut *transaction)
    .await
    .context("inserting the events")?;
    transaction.commit().await.context("COMMIT")?;
    let committed = Instant::now();
    // A writer rings the relays' doorbell after its commit, as the command API does, or an
    // idle relay would find the rows only at its next poll (up to a second later).
    event_store::doorbell::ring_now(&database)
        .await
        .context("ringing the outbox doorbell")?;
    let insert_seconds = (committed - insert_started).as_secs_f64();
    eprintln!("inserted {events} events in {insert_seconds:.2} s; waiting for the relay");

    let drained = wait_for_empty_outbox(&database, timeout).await?;
    let (drain_seconds, left_at_timeout) = match drained {
        Ok(at) => (Some((at - committed).as_secs_f64()), None),
        Err(left) => (None, Some(left)),
    };
    let results = DrainResults {
        events,
        aggregates: events.div_ceil(per_aggregate),
        backlog_before,
        relays_alive,
        insert_seconds,
        insert_events_per_s: events as f64 / insert_seconds,
        drain_seconds,
        drained_events_per_s: drain_seconds.map(|seconds| events as f64 / seconds.max(1e-3)),
        left_at_timeout,
    };
    let summary = match (results.drain_seconds, results.drained_events_per_s) {
        (Some(seconds), Some(rate)) => format!(
            "relay drain: {events} events drained in {seconds:.2} s = {rate:.0} events/s by {relays_alive} relay(s) (insert {insert_seconds:.2} s = {:.0} events/s, backlog before {backlog_before})",
            results.insert_events_per_s
        ),
        _ => format!(
            "relay drain: FAIL, {} of {events} events still in the outbox after {:.0} s",
            results.left_at_timeout.unwrap_or_default(),
            args.drain_timeout
        ),
    };
    let passed = results.drain_seconds.is_some();
    Report {
        scenario: "relay-drain",
        started_at,
        smoke: common.smoke,
        machine: Machine::current(),
        config: Config {
            common,
            relay: args,
            topic: format!("{}inventory", args.topic_prefix),
        },
        results: &results,
        summary,
        passed: Some(passed),
    }
    .emit(common.json.as_deref())?;
    Ok(passed)
}

/// A real `StockAdded` event as the command API writes it, to copy.
#[derive(Debug)]
struct TemplateEvent {
    event_type: String,
    event_version: String,
    payload: String,
    metadata: String,
}

async fn template_event(
    client: &reqwest::Client,
    common: &Common,
    args: &RelayArgs,
    database: &PgPool,
) -> anyhow::Result<TemplateEvent> {
    let sku = format!("{}-DRAIN-TEMPLATE", args.keys.sku_prefix);
    for _ in 0..3 {
        let (status, _) = read_answer(
            add_stock(client, &common.command_url, &sku, None)
                .send()
                .await
                .context("adding stock to the template SKU")?,
        )
        .await
        .context("adding stock to the template SKU")?;
        anyhow::ensure!(
            status.is_success(),
            "adding stock to {sku} answered {status}"
        );
    }
    // The trigger assigns every inserted event its own event_id (in the metadata too).
    let (event_type, event_version, payload, metadata) = sqlx::query_as(
        "SELECT event_type, event_version, payload::text, (metadata::jsonb - 'event_id')::text
           FROM events
          WHERE aggregate_type = 'inventory' AND aggregate_id = $1 AND event_type = 'StockAdded'
          ORDER BY sequence DESC
          LIMIT 1",
    )
    .bind(&sku)
    .fetch_one(database)
    .await
    .context("reading the template event")?;
    Ok(TemplateEvent {
        event_type,
        event_version,
        payload,
        metadata,
    })
}

async fn outbox_rows(database: &PgPool) -> anyhow::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(database)
        .await
        .context("counting the outbox")
}

/// `Ok(Ok(when))` once the outbox is empty, `Ok(Err(rows left))` at the timeout.
async fn wait_for_empty_outbox(
    database: &PgPool,
    timeout: Duration,
) -> anyhow::Result<Result<Instant, i64>> {
    let started = Instant::now();
    let mut next_progress = started + PROGRESS_EVERY;
    loop {
        let rows = outbox_rows(database).await?;
        let now = Instant::now();
        if rows == 0 {
            return Ok(Ok(now));
        }
        if now - started >= timeout {
            return Ok(Err(rows));
        }
        if now >= next_progress {
            eprintln!(
                "  outbox: {rows} rows left after {:.0} s",
                (now - started).as_secs_f64()
            );
            next_progress += PROGRESS_EVERY;
        }
        tokio::time::sleep(OUTBOX_POLL).await;
    }
}
