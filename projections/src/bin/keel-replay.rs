//! `keel-replay`: inspect projections and rebuild them without downtime.
//!
//! ```text
//! keel-replay list                                    position, lag, dead letters, rebuilds
//! keel-replay status                                  unfinished rebuilds only
//! keel-replay rebuild orders [--batch-size 5000] [--workers 2] [--keep-old] [--restart] [--per-event]
//! keel-replay rebuild stock --from kafka              in place, from the topics
//! keel-replay dead-letters [--projection stock] [--all]   unresolved (or all) dead letters
//! keel-replay retry-dead-letter 42 [--actor NAME]     put it (and its aggregate's) back
//! keel-replay skip-dead-letter 42 --reason "…" [--actor NAME]
//! ```
//!
//! Ctrl-C stops a rebuild after the batch in progress; running the same command again
//! resumes it. Databases: `--database-url` (read model; default `KEEL_READ_MODEL_DATABASE_URL`,
//! `KEEL_DATABASE_URL`, then the local stack) and `--event-store-url` (default: the same
//! database). Kafka settings come from the projector's environment variables.

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use projections::config::DatabaseUrl;
use projections::replay::source::EventStore;
use projections::replay::status::projection_status;
use projections::replay::{self, Fold, Phase, RebuildOptions, RebuildProgress, RebuildReport};
use projections::{Projection, Settings, db};
use read_model::dead_letters as operator;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "keel-replay",
    version,
    about = "Inspect and rebuild keel's read models, and answer their dead letters"
)]
struct Cli {
    /// Read-model database (default: KEEL_READ_MODEL_DATABASE_URL, KEEL_DATABASE_URL, then
    /// the local stack's).
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Event-store database, when it is not the read model's.
    #[arg(long, global = true, env = "KEEL_EVENT_STORE_URL")]
    event_store_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every projection: aggregates tracked, last checkpoint, events applied against the
    /// store, lag, dead letters, unfinished rebuild.
    List,
    /// Unfinished rebuilds: position and whether a process is working on them.
    Status,
    /// Rebuilds one projection.
    Rebuild {
        /// orders, stock or payments.
        projection: Projection,
        /// Where the events come from.
        #[arg(long, value_enum, default_value_t = Source::Store)]
        from: Source,
        /// Events per read (and per set of transactions).
        #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..))]
        batch_size: u32,
        /// Connections applying each batch in parallel.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
        workers: u32,
        /// Keep the replaced tables in read_model_old_<projection>_<time>.
        #[arg(long)]
        keep_old: bool,
        /// Discard an unfinished rebuild and start from the beginning.
        #[arg(long)]
        restart: bool,
        /// Apply event by event with the live apply code even where a set-based fold
        /// exists (slower; for comparison).
        #[arg(long)]
        per_event: bool,
    },
    /// Dead letters, newest first: id, where they were read, aggregate, reason, error and
    /// how they were answered.
    DeadLetters {
        /// Only this projection's.
        #[arg(long)]
        projection: Option<Projection>,
        /// Answered ones too.
        #[arg(long)]
        all: bool,
        /// Most rows shown.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        limit: i64,
    },
    /// Puts a dead letter, and every unanswered one of its aggregate, back for the
    /// projector to apply in order (within seconds; it is dead-lettered again if it still
    /// fails).
    RetryDeadLetter {
        /// The dead letter that parks its aggregate.
        id: i64,
        /// Who answers (recorded on the dead letters).
        #[arg(long, env = "USER", default_value = "keel-replay")]
        actor: String,
    },
    /// Gives up on one dead letter's event: its aggregate moves past it, the events held
    /// behind it are applied. The read model lacks its effect until the projection is
    /// rebuilt from the event store.
    SkipDeadLetter {
        /// The dead letter that parks its aggregate.
        id: i64,
        /// Why (recorded on the dead letter).
        #[arg(long)]
        reason: String,
        /// Who answers (recorded on the dead letters).
        #[arg(long, env = "USER", default_value = "keel-replay")]
        actor: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Source {
    /// The event store, into shadow tables swapped in at the end (zero downtime).
    Store,
    /// The Kafka topics, in place: the projection's tables are emptied first.
    Kafka,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging();
    let settings = Settings::from_env().context("reading the configuration")?;
    let read_model_url = cli
        .database_url
        .clone()
        .map_or_else(|| settings.database_url.clone(), DatabaseUrl::new);
    let read_model = db::connect(&read_model_url, 8)
        .await
        .with_context(|| format!("connecting to the read model at {read_model_url}"))?;
    read_model::migrate(&read_model)
        .await
        .context("read-model migrations")?;
    let store_pool = match &cli.event_store_url {
        Some(url) => {
            let url = DatabaseUrl::new(url.clone());
            db::connect(&url, 4)
                .await
                .with_context(|| format!("connecting to the event store at {url}"))?
        }
        None => read_model.clone(),
    };
    let store = EventStore::new(store_pool).with_keyring(settings.projector.keyring.clone());

    match cli.command {
        Command::List => list(&read_model, &store, false).await,
        Command::Status => list(&read_model, &store, true).await,
        Command::DeadLetters {
            projection,
            all,
            limit,
        } => dead_letters(&read_model, projection, all, limit).await,
        Command::RetryDeadLetter { id, actor } => {
            let resolved = operator::retry(&read_model, id, &actor).await?;
            print_resolved("retried", &resolved);
            Ok(())
        }
        Command::SkipDeadLetter { id, reason, actor } => {
            let resolved = operator::skip(&read_model, id, &actor, &reason).await?;
            print_resolved("skipped", &resolved);
            Ok(())
        }
        Command::Rebuild {
            projection,
            from,
            batch_size,
            workers,
            keep_old,
            restart,
            per_event,
        } => {
            // Without the key every customer's details would be rebuilt as `unavailable`.
            if projection == Projection::Orders && settings.projector.keyring.is_none() {
                anyhow::bail!(
                    "rebuilding orders opens the customers' personal data: give keel-replay the \
                     projector's master key (KEEL_MASTER_KEY or KEEL_MASTER_KEY_FILE; ADR 0009)"
                );
            }
            let options = RebuildOptions {
                batch_size: batch_size as usize,
                workers: workers as usize,
                keep_old,
                restart,
                fold: if per_event {
                    Fold::PerEvent
                } else {
                    Fold::SetBased
                },
            };
            match from {
                Source::Store => rebuild(&read_model, &store, projection, &options).await,
                Source::Kafka => rebuild_from_kafka(&read_model, &settings, projection).await,
            }
        }
    }
}

async fn dead_letters(
    read_model: &PgPool,
    projection: Option<Projection>,
    all: bool,
    limit: i64,
) -> anyhow::Result<()> {
    let letters = operator::list(read_model, projection.map(Projection::name), all, limit)
        .await
        .context("reading dead letters")?;
    if letters.is_empty() {
        println!("no dead letter");
        return Ok(());
    }
    println!(
        "{:>6} {:<10} {:<7} {:<40} {:>8} {:<28} answer / error",
        "id", "projection", "reason", "aggregate", "sequence", "read from"
    );
    for letter in letters {
        let aggregate = match (&letter.aggregate_type, &letter.aggregate_id) {
            (Some(kind), Some(id)) => format!("{kind}/{id}"),
            _ => "-".to_owned(),
        };
        let answer = match (&letter.resolution, &letter.resolved_by) {
            (Some(resolution), Some(by)) => format!(
                "{resolution} by {by}{}",
                letter
                    .resolution_reason
                    .as_deref()
                    .map_or_else(String::new, |r| format!(": {r}"))
            ),
            _ => format!("{} attempt(s): {}", letter.attempts, letter.error),
        };
        println!(
            "{:>6} {:<10} {:<7} {:<40} {:>8} {:<28} {answer}",
            letter.id,
            letter.projection,
            letter.reason,
            aggregate,
            letter
                .sequence
                .map_or_else(|| "-".to_owned(), |s| s.to_string()),
            format!(
                "{}[{}]@{}",
                letter.topic, letter.kafka_partition, letter.kafka_offset
            ),
        );
    }
    Ok(())
}

fn print_resolved(verb: &str, resolved: &operator::Resolved) {
    println!(
        "{verb} dead letter(s) {}; {} message(s) put back for the projector",
        resolved
            .dead_letters
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        resolved.requeued
    );
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn list(read_model: &PgPool, store: &EventStore, rebuilds_only: bool) -> anyhow::Result<()> {
    if !rebuilds_only {
        println!(
            "{:<10} {:>10} {:>7} {:>12} {:>12} {:>10}  {:<25} {:<22} rebuild",
            "projection",
            "aggregates",
            "parked",
            "applied",
            "in store",
            "lag",
            "last checkpoint",
            "dead letters"
        );
    }
    let mut unfinished = 0;
    for projection in Projection::ALL {
        let status = projection_status(read_model, store, projection)
            .await
            .with_context(|| format!("reading the status of {projection}"))?;
        let rebuild = status.rebuild.as_ref().map_or_else(
            || "-".to_owned(),
            |r| {
                format!(
                    "{} from {} at {} ({} events read, {})",
                    r.schema,
                    r.source,
                    r.position,
                    r.events_read,
                    if r.running {
                        "running"
                    } else {
                        "interrupted: run rebuild again to resume"
                    }
                )
            },
        );
        if rebuilds_only {
            if status.rebuild.is_some() {
                unfinished += 1;
                println!("{projection}: {rebuild}");
            }
            continue;
        }
        let dead_letters = if status.dead_letters.is_empty() {
            "none".to_owned()
        } else {
            status
                .dead_letters
                .iter()
                .map(|(reason, n)| format!("{reason}={n}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let last = status.last_checkpoint_at.map_or_else(
            || "never".to_owned(),
            |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        );
        println!(
            "{:<10} {:>10} {:>7} {:>12} {:>12} {:>10}  {:<25} {:<22} {rebuild}",
            projection.name(),
            status.aggregates,
            status.parked,
            status.events_applied,
            status.events_in_store,
            status.lag(),
            last,
            dead_letters,
        );
    }
    if rebuilds_only && unfinished == 0 {
        println!("no unfinished rebuild");
    }
    Ok(())
}

async fn rebuild(
    read_model: &PgPool,
    store: &EventStore,
    projection: Projection,
    options: &RebuildOptions,
) -> anyhow::Result<()> {
    let stop = stop_on_signal();
    let (progress, mut updates) = watch::channel(RebuildProgress::default());
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>9} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} events \
             {per_sec} ETA {eta} {msg}",
        )
        .context("progress bar template")?,
    );
    bar.set_prefix(projection.name());
    bar.enable_steady_tick(Duration::from_millis(200));
    let display = tokio::spawn({
        let bar = bar.clone();
        async move {
            let mut first = true;
            while updates.changed().await.is_ok() {
                let p = *updates.borrow_and_update();
                bar.set_length(p.events_total.max(p.events_read));
                if first && p.phase == Phase::Replaying {
                    bar.set_position(p.events_read_before);
                    bar.reset_eta();
                    first = false;
                }
                bar.set_position(p.events_read);
                bar.set_message(match p.phase {
                    Phase::Starting | Phase::Replaying => String::new(),
                    Phase::Indexing => "building indexes".to_owned(),
                    Phase::Swapping => "catching up and swapping".to_owned(),
                    Phase::Done => "swapped".to_owned(),
                    Phase::Interrupted => "interrupted".to_owned(),
                });
            }
        }
    });
    let outcome =
        replay::rebuild_from_store(projection, read_model, store, options, &stop, &progress).await;
    drop(progress);
    let _ = display.await;
    bar.finish();
    let report = outcome.with_context(|| format!("rebuilding {projection}"))?;
    print_report(&report);
    Ok(())
}

fn print_report(report: &RebuildReport) {
    let rate = report.events_per_second();
    if report.swapped {
        println!(
            "{}: rebuilt from the event store{}; {} events read, {} applied in {:.1} s \
             ({rate:.0} events/s); swapped in at position {}; {} aggregates ahead of the old \
             tables; old tables {}",
            report.projection,
            if report.resumed { " (resumed)" } else { "" },
            report.events_read,
            report.events_applied,
            report.elapsed.as_secs_f64(),
            report.position,
            report.advanced_at_swap,
            report
                .old_schema
                .as_deref()
                .map_or_else(|| "dropped".to_owned(), |s| format!("kept in {s}")),
        );
    } else {
        println!(
            "{}: interrupted at position {} after {} events in {:.1} s ({rate:.0} events/s); \
             run the same command again to resume",
            report.projection,
            report.position,
            report.events_read,
            report.elapsed.as_secs_f64(),
        );
    }
}

async fn rebuild_from_kafka(
    read_model: &PgPool,
    settings: &Settings,
    projection: Projection,
) -> anyhow::Result<()> {
    let stop = stop_on_signal();
    let report = replay::kafka::rebuild_from_kafka(
        projection,
        read_model,
        &settings.kafka,
        &settings.projector,
        &stop,
    )
    .await
    .with_context(|| format!("rebuilding {projection} from Kafka"))?;
    println!("{report}");
    Ok(())
}

/// Cancelled on Ctrl-C or SIGTERM: a rebuild stops after the batch in progress.
fn stop_on_signal() -> CancellationToken {
    let stop = CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            ops::lifecycle::shutdown_signal().await;
            eprintln!("stopping after the current batch…");
            stop.cancel();
        }
    });
    stop
}
