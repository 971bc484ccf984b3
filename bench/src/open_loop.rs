//! The open-loop scheduler: request `i` is due at `start + i / rate` whatever happened to
//! earlier requests, and its latency is measured from that due time, not from when it was
//! actually sent. A stalled server therefore shows up as latency instead of as a lower
//! request rate (no coordinated omission).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::{Instant, sleep_until};

/// Longest latency the histograms track (longer ones are clamped to it).
const MAX_TRACKED: Duration = Duration::from_secs(120);
/// How long the in-flight requests may take to finish once the last one was sent.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(40);
/// Error messages kept as examples in the report.
const ERROR_EXAMPLES: usize = 5;

/// When and how many requests to send.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Offered load in requests per second.
    pub rate: f64,
    /// Requests due in this leading period are sent but not recorded.
    pub warmup: Duration,
    /// The measured period after the warm-up.
    pub duration: Duration,
    /// Most requests in flight at once; a request due while all slots are taken waits for
    /// one (its wait counts in its latency) and is counted as late.
    pub concurrency_limit: usize,
}

impl Schedule {
    /// Requests due during warm-up, then during the whole run.
    fn counts(&self) -> (u64, u64) {
        let due = |period: Duration| (period.as_secs_f64() * self.rate).floor() as u64;
        (due(self.warmup), due(self.warmup + self.duration))
    }
}

/// Where one request sits in the schedule.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    /// Whether the request is due in the measured period (not in warm-up).
    pub measured: bool,
}

/// What one request came to.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// The HTTP status of the final response, if there was one.
    pub status: Option<u16>,
    /// Transport failure, timeout, or an unreadable response.
    pub error: Option<String>,
    /// A second latency a scenario measures itself (e.g. command response → query
    /// response); recorded in its own histogram.
    pub secondary: Option<Duration>,
    /// A named outcome to count (e.g. `miss`).
    pub tag: Option<&'static str>,
}

impl Sample {
    /// A response with `status`.
    pub fn status(status: u16) -> Self {
        Self {
            status: Some(status),
            ..Self::default()
        }
    }

    /// A request that got no usable response.
    pub fn error(error: impl ToString) -> Self {
        Self {
            error: Some(error.to_string()),
            ..Self::default()
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// A latency histogram with microsecond resolution and 3 significant digits.
#[derive(Debug, Clone)]
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        let max_micros = u64::try_from(MAX_TRACKED.as_micros()).unwrap_or(u64::MAX);
        Self(Histogram::new_with_bounds(1, max_micros, 3).expect("valid histogram bounds"))
    }
}

impl Latencies {
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.0.saturating_record(micros.max(1));
    }

    pub fn len(&self) -> u64 {
        self.0.len()
    }

    pub fn add(&mut self, other: &Self) {
        // Same bounds on both sides, so this cannot fail.
        self.0.add(&other.0).expect("histograms with equal bounds");
    }

    pub fn summary(&self) -> LatencySummary {
        let ms = |micros: u64| micros as f64 / 1000.0;
        let at = |quantile: f64| {
            if self.0.is_empty() {
                0.0
            } else {
                ms(self.0.value_at_quantile(quantile))
            }
        };
        LatencySummary {
            count: self.0.len(),
            mean_ms: if self.0.is_empty() {
                0.0
            } else {
                self.0.mean() / 1000.0
            },
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: if self.0.is_empty() {
                0.0
            } else {
                ms(self.0.max())
            },
        }
    }
}

/// Responses by status class.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatusCounts {
    pub ok_2xx: u64,
    pub conflict_409: u64,
    /// Every other status, by code.
    pub other: BTreeMap<u16, u64>,
}

impl StatusCounts {
    pub fn count(&mut self, status: u16) {
        match status {
            200..=299 => self.ok_2xx += 1,
            409 => self.conflict_409 += 1,
            _ => *self.other.entry(status).or_default() += 1,
        }
    }

    pub fn other_total(&self) -> u64 {
        self.other.values().sum()
    }
}

/// What a run measured; only requests due in the measured period count.
#[derive(Debug, Clone, Serialize)]
pub struct OpenLoopResult {
    pub offered_rate: f64,
    /// Requests due in the measured period.
    pub scheduled: u64,
    /// Of those, the ones that finished (with a response or an error).
    pub completed: u64,
    /// `completed` over the measured period, or over the time from its start to the last
    /// completion when that is longer.
    pub achieved_rate: f64,
    /// From each request's due time to its completion.
    pub latency: LatencySummary,
    /// The scenario's own second latency, when it measures one.
    pub secondary: Option<LatencySummary>,
    pub statuses: StatusCounts,
    pub errors: u64,
    pub error_examples: Vec<String>,
    pub tags: BTreeMap<&'static str, u64>,
    /// Requests that found every in-flight slot taken at their due time.
    pub late: u64,
    /// Largest delay between a request's due time and its actual send.
    pub max_send_lag_ms: f64,
    /// Requests (warm-up included) still in flight when the drain timeout expired.
    pub unfinished: u64,
    /// Requests sent during warm-up (not recorded).
    pub warmup_requests: u64,
}

#[derive(Debug, Default)]
struct Recorder {
    latency: Latencies,
    secondary: Latencies,
    statuses: StatusCounts,
    errors: u64,
    error_examples: Vec<String>,
    tags: BTreeMap<&'static str, u64>,
    last_completion: Option<Instant>,
}

impl Recorder {
    fn record(&mut self, latency: Duration, sample: Sample, completed_at: Instant) {
        self.latency.record(latency);
        if let Some(secondary) = sample.secondary {
            self.secondary.record(secondary);
        }
        if let Some(status) = sample.status {
            self.statuses.count(status);
        }
        if let Some(error) = sample.error {
            self.errors += 1;
            if self.error_examples.len() < ERROR_EXAMPLES && !self.error_examples.contains(&error) {
                self.error_examples.push(error);
            }
        }
        if let Some(tag) = sample.tag {
            *self.tags.entry(tag).or_default() += 1;
        }
        self.last_completion = Some(
            self.last_completion
                .map_or(completed_at, |last| last.max(completed_at)),
        );
    }
}

/// Sends `request(slot)` at each due time of `schedule` and records the outcomes.
///
/// `request` is called in schedule order on the scheduling task, so a scenario can draw
/// from a seeded random generator in it and get the same sequence on every run; the
/// future it returns runs on its own task.
pub async fn run<F, Fut>(schedule: &Schedule, mut request: F) -> OpenLoopResult
where
    F: FnMut(Slot) -> Fut,
    Fut: Future<Output = Sample> + Send + 'static,
{
    let (warmup_count, total) = schedule.counts();
    let limit = schedule.concurrency_limit.max(1);
    let slots = Arc::new(Semaphore::new(limit));
    let recorder = Arc::new(Mutex::new(Recorder::default()));
    // A little head start so that the first due time is not already in the past.
    let start = Instant::now() + Duration::from_millis(20);
    let measured_from = start + schedule.warmup;
    let mut late = 0_u64;
    let mut max_send_lag = Duration::ZERO;

    for index in 0..total {
        let due = start + Duration::from_secs_f64(index as f64 / schedule.rate);
        if due > Instant::now() {
            sleep_until(due).await;
        }
        let measured = index >= warmup_count;
        let permit = match Arc::clone(&slots).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if measured {
                    late += 1;
                }
                Arc::clone(&slots)
                    .acquire_owned()
                    .await
                    .expect("the slot semaphore is never closed")
            }
        };
        if measured {
            max_send_lag = max_send_lag.max(Instant::now().saturating_duration_since(due));
        }
        let pending = request(Slot { measured });
        let recorder = Arc::clone(&recorder);
        tokio::spawn(async move {
            let sample = pending.await;
            let completed_at = Instant::now();
            if measured {
                recorder
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .record(completed_at - due, sample, completed_at);
            }
            drop(permit);
        });
    }

    let all = u32::try_from(limit).unwrap_or(u32::MAX);
    let unfinished = match tokio::time::timeout(DRAIN_TIMEOUT, slots.acquire_many(all)).await {
        Ok(_) => 0,
        Err(_) => (limit - slots.available_permits()) as u64,
    };

    let recorder = recorder.lock().unwrap_or_else(PoisonError::into_inner);
    let scheduled = total - warmup_count;
    let completed = recorder.latency.len();
    // Over the measured period, or longer when the last answers came after it.
    let answering_period = recorder
        .last_completion
        .map_or(Duration::ZERO, |last| {
            last.saturating_duration_since(measured_from)
        })
        .max(schedule.duration);
    let achieved_rate = completed as f64 / answering_period.as_secs_f64();
    OpenLoopResult {
        offered_rate: schedule.rate,
        scheduled,
        completed,
        achieved_rate,
        latency: recorder.latency.summary(),
        secondary: (recorder.secondary.len() > 0).then(|| recorder.secondary.summary()),
        statuses: recorder.statuses.clone(),
        errors: recorder.errors,
        error_examples: recorder.error_examples.clone(),
        tags: recorder.tags.clone(),
        late,
        max_send_lag_ms: max_send_lag.as_secs_f64() * 1000.0,
        unfinished,
        warmup_requests: warmup_count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn latency_counts_from_the_due_time_when_slots_run_out() {
        // One slot, 10 requests/s, each taking 250 ms: request i waits for the previous
        // ones, so its latency grows instead of the rate silently dropping.
        let schedule = Schedule {
            rate: 10.0,
            warmup: Duration::ZERO,
            duration: Duration::from_secs(1),
            concurrency_limit: 1,
        };
        let result = run(&schedule, |_| async {
            tokio::time::sleep(Duration::from_millis(250)).await;
            Sample::status(200)
        })
        .await;
        assert_eq!(result.scheduled, 10);
        assert_eq!(result.completed, 10);
        assert_eq!(result.statuses.ok_2xx, 10);
        assert_eq!(result.late, 9);
        // The last request is due at 0.9 s and finishes at 10 × 0.25 s = 2.5 s.
        assert!((result.latency.max_ms - 1600.0).abs() < 5.0, "{result:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn warmup_requests_are_sent_but_not_recorded() {
        let schedule = Schedule {
            rate: 100.0,
            warmup: Duration::from_millis(500),
            duration: Duration::from_secs(1),
            concurrency_limit: 8,
        };
        let result = run(&schedule, |slot| async move {
            Sample {
                status: Some(if slot.measured { 200 } else { 500 }),
                ..Sample::default()
            }
        })
        .await;
        assert_eq!(result.warmup_requests, 50);
        assert_eq!(result.scheduled, 100);
        assert_eq!(result.statuses.ok_2xx, 100);
        assert!(result.statuses.other.is_empty());
    }

    #[test]
    fn statuses_are_classed() {
        let mut counts = StatusCounts::default();
        for status in [200, 201, 409, 412, 503, 503] {
            counts.count(status);
        }
        assert_eq!(counts.ok_2xx, 2);
        assert_eq!(counts.conflict_409, 1);
        assert_eq!(counts.other.get(&503), Some(&2));
        assert_eq!(counts.other_total(), 3);
    }
}
