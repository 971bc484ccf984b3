//! S1: the durable command path at a fixed offered rate.

use chrono::Utc;
use clap::{Args, ValueEnum};
use serde::Serialize;
use serde_json::json;

use crate::Common;
use crate::open_loop::{self, OpenLoopResult, Sample};
use crate::report::{Machine, Report, open_loop_line, percentiles};
use crate::rss::{Footprint, RssSampler};
use crate::workload::{KeyArgs, add_stock, error_chain, http_client, require_ready};

#[derive(Debug, Clone, Args, Serialize)]
pub struct CommandsArgs {
    /// Which command to send.
    #[arg(long, value_enum, default_value_t = CommandKind::AddStock)]
    pub scenario: CommandKind,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CommandKind {
    /// `POST /inventory/{sku}/stock` `{"quantity":1}` to a Zipf-chosen SKU (existing
    /// aggregates: load, decide, append).
    AddStock,
    /// `POST /orders`: a new order aggregate per request (no load, append only).
    CreateOrder,
    /// `POST /orders` with the customer's name, email and shipping address, for a new
    /// customer each time: the command API gets the customer a data key (one more INSERT)
    /// and seals the details before the append (ADR 0009). Against `create-order`, the cost
    /// of personal data.
    CreateOrderPersonal,
}

#[derive(Debug, Serialize)]
struct CommandsResults<'a> {
    #[serde(flatten)]
    run: &'a OpenLoopResult,
    /// Resident memory and CPU time of the platform's processes during the run.
    #[serde(flatten)]
    footprint: Footprint,
}

#[derive(Debug, Serialize)]
struct Config<'a> {
    common: &'a Common,
    commands: &'a CommandsArgs,
}

pub async fn run(common: &Common, args: &CommandsArgs) -> anyhow::Result<bool> {
    let client = http_client(common.concurrency_limit)?;
    require_ready(&client, &common.command_url).await?;
    let mut picker = args.keys.picker(common.seed)?;
    let started_at = Utc::now();
    let footprint = RssSampler::start();
    let result = open_loop::run(&common.schedule(), |_| {
        let request = match args.scenario {
            CommandKind::AddStock => {
                add_stock(&client, &common.command_url, &picker.next_sku(), None)
            }
            CommandKind::CreateOrder => client
                .post(format!("{}/orders", common.command_url))
                .json(&json!({"customer_id": picker.next_uuid(), "currency": "EUR"})),
            CommandKind::CreateOrderPersonal => client
                .post(format!("{}/orders", common.command_url))
                .json(&json!({
                    "customer_id": picker.next_uuid(),
                    "currency": "EUR",
                    "customer_details": {
                        "name": "Ada Lovelace",
                        "email": "ada@example.com",
                        "shipping_address": {
                            "line1": "12 St James's Square",
                            "line2": "Flat 2",
                            "city": "London",
                            "postal_code": "SW1Y 4JH",
                            "country": "GB"
                        }
                    }
                })),
        };
        async move {
            match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    // Read the body so the connection goes back to the pool.
                    match response.bytes().await {
                        Ok(_) => Sample::status(status),
                        Err(error) => Sample::error(error_chain(&error)),
                    }
                }
                Err(error) => Sample::error(error_chain(&error)),
            }
        }
    })
    .await;
    let footprint = footprint.finish().await;

    let summary = summary_line(args.scenario, &result, &footprint);
    Report {
        scenario: "commands",
        started_at,
        smoke: common.smoke,
        machine: Machine::current(),
        config: Config {
            common,
            commands: args,
        },
        results: CommandsResults {
            run: &result,
            footprint,
        },
        summary,
        passed: None,
    }
    .emit(common.json.as_deref())?;
    Ok(true)
}

fn summary_line(kind: CommandKind, result: &OpenLoopResult, footprint: &Footprint) -> String {
    let name = match kind {
        CommandKind::AddStock => "add-stock",
        CommandKind::CreateOrder => "create-order",
        CommandKind::CreateOrderPersonal => "create-order-personal",
    };
    // The CPU time covers the warm-up too.
    let commands = (result.completed + result.warmup_requests).max(1) as f64;
    let cpu: Vec<String> = footprint
        .cpu_seconds
        .iter()
        .map(|(process, seconds)| format!("{process} {:.0}", seconds * 1e6 / commands))
        .collect();
    format!(
        "commands {name}: {} latency(from due time) {} cpu µs/command: {}",
        open_loop_line(result),
        percentiles(&result.latency),
        cpu.join(", ")
    )
}
