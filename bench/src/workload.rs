//! What the scenarios send: keys drawn from a seeded Zipf distribution, the HTTP client,
//! and the few parts of the command API's answers they read.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Zipf};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Which SKUs a scenario addresses.
#[derive(Debug, Clone, Args, Serialize)]
pub struct KeyArgs {
    /// Number of distinct SKUs.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Zipf exponent of the SKU popularity (0 = uniform; 1 = rank 1 gets ~10 % of 10 000 keys).
    #[arg(long, default_value_t = 1.0)]
    pub zipf_s: f64,
    /// SKUs are `{prefix}-{rank:06}`.
    #[arg(long, default_value = "BENCH")]
    pub sku_prefix: String,
}

impl KeyArgs {
    pub fn picker(&self, seed: u64) -> anyhow::Result<SkuPicker> {
        SkuPicker::new(&self.sku_prefix, self.keys, self.zipf_s, seed)
    }
}

/// SKUs `{prefix}-{rank}` for ranks 1..=keys, rank `k` drawn with weight `1 / k^s`.
#[derive(Debug, Clone)]
pub struct SkuPicker {
    prefix: String,
    zipf: Zipf<f64>,
    rng: StdRng,
}

impl SkuPicker {
    pub fn new(prefix: &str, keys: u64, exponent: f64, seed: u64) -> anyhow::Result<Self> {
        let zipf = Zipf::new(keys.max(1) as f64, exponent)
            .map_err(|error| anyhow::anyhow!("--keys {keys} --zipf-s {exponent}: {error}"))?;
        Ok(Self {
            prefix: prefix.to_owned(),
            zipf,
            rng: StdRng::seed_from_u64(seed),
        })
    }

    pub fn next_sku(&mut self) -> String {
        let rank = self.zipf.sample(&mut self.rng) as u64;
        format!("{}-{rank:06}", self.prefix)
    }

    /// A random (version 4) UUID from the same seeded generator.
    pub fn next_uuid(&mut self) -> Uuid {
        uuid::Builder::from_random_bytes(rand::Rng::random(&mut self.rng)).into_uuid()
    }
}

/// One client for a whole run; its pool holds up to `connections` idle connections.
pub fn http_client(connections: usize) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(connections)
        .tcp_nodelay(true)
        .build()
        .context("building the HTTP client")
}

/// The fields of a command API answer the scenarios use: a success body (`version`,
/// `events`) or a problem document (`current_version`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CommandAnswer {
    pub aggregate_id: Option<String>,
    pub version: Option<u64>,
    #[serde(default)]
    pub events: Vec<EventRef>,
    pub current_version: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventRef {
    pub event_id: Uuid,
}

/// Reads a whole answer; a body that is not the expected JSON counts as empty.
pub async fn read_answer(
    response: reqwest::Response,
) -> Result<(StatusCode, CommandAnswer), reqwest::Error> {
    let status = response.status();
    let body = response.bytes().await?;
    Ok((status, serde_json::from_slice(&body).unwrap_or_default()))
}

/// `POST {command_url}/inventory/{sku}/stock` with `{"quantity": 1}`.
pub fn add_stock(
    client: &reqwest::Client,
    command_url: &str,
    sku: &str,
    if_match: Option<u64>,
) -> reqwest::RequestBuilder {
    let request = client
        .post(format!("{command_url}/inventory/{sku}/stock"))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(r#"{"quantity":1}"#);
    match if_match {
        Some(version) => request.header(reqwest::header::IF_MATCH, format!("\"{version}\"")),
        None => request,
    }
}

/// An error with its causes (reqwest's own message rarely names the cause).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Checks that a service answers before a scenario starts.
pub async fn require_ready(client: &reqwest::Client, base_url: &str) -> anyhow::Result<()> {
    let url = format!("{base_url}/health/ready");
    let response = client.get(&url).send().await.with_context(|| {
        format!("{url} does not answer; is the platform up (`cargo xtask up`)?")
    })?;
    anyhow::ensure!(
        response.status().is_success(),
        "{url} answered {}; the platform is not ready",
        response.status()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_keys() {
        let draw = |seed| {
            let mut picker = SkuPicker::new("B", 100, 1.0, seed).expect("picker");
            (0..50).map(|_| picker.next_sku()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn low_ranks_are_hot() {
        let mut picker = SkuPicker::new("B", 10_000, 1.0, 1).expect("picker");
        let hottest = (0..10_000)
            .filter(|_| picker.next_sku() == "B-000001")
            .count();
        // 1 / H(10 000) ≈ 10.2 % of draws.
        assert!((800..1_300).contains(&hottest), "{hottest}");
    }

    #[test]
    fn answers_parse_both_shapes() {
        let success: CommandAnswer = serde_json::from_str(
            r#"{"aggregate_type":"inventory","aggregate_id":"X","version":3,
                "events":[{"event_type":"StockAdded","sequence":3,
                "event_id":"0190f5a4-0000-7000-8000-000000000001","global_position":9}]}"#,
        )
        .expect("success body");
        assert_eq!(success.version, Some(3));
        assert_eq!(success.events.len(), 1);
        let conflict: CommandAnswer = serde_json::from_str(
            r#"{"type":"urn:keel:problem:concurrency.version_mismatch","title":"t","status":412,
                "detail":"d","code":"concurrency.version_mismatch","current_version":7}"#,
        )
        .expect("problem body");
        assert_eq!(conflict.current_version, Some(7));
        assert_eq!(conflict.version, None);
    }
}
