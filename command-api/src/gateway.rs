//! [`GuardedGateway`]: the payment-gateway port wrapped in the protections a remote payment
//! provider needs — a timeout per call, retries with exponential backoff and full jitter,
//! and a circuit breaker that fails fast while the provider is down.
//!
//! # What is retried
//!
//! Only `Err` results: the port defines them as "no answer" ([`GatewayError::Timeout`],
//! [`GatewayError::Unavailable`]), always transient. An `Ok` is an answer — a decline
//! included — and is never retried. Retrying a call whose outcome is unknown is safe because
//! every request carries the idempotency key the port requires adapters to forward.
//!
//! # Circuit breaker
//!
//! ```text
//!  Closed ──(failure_threshold consecutive failed attempts)──► Open
//!    ▲                                                          │ open_for elapsed
//!    └──────────── trial call succeeds ◄── HalfOpen ◄───────────┘
//!                                            │ trial call fails
//!                                            └──────────────────► Open
//! ```
//!
//! While open, calls fail at once with [`GatewayError::Unavailable`] (no request leaves,
//! no retry waits), so HTTP workers are not tied up by a dead provider and the caller gets a
//! 503 with `Retry-After` straight away. In half-open state one trial call goes through;
//! concurrent calls keep failing fast until it settles. The fulfilment saga treats that 503
//! like any transient failure: it retries the step with backoff until the step's deadline,
//! then compensates (see `saga`).
//!
//! # Bulkhead
//!
//! At most `max_concurrent_calls` guarded calls are in flight at once. A call that finds
//! them all taken waits for one, but no longer than one call's timeout; then it fails with
//! [`GatewayError::Unavailable`] (503 to the client) without touching the breaker, since
//! the provider did nothing wrong. A slow provider so ties up a bounded number of tasks
//! and never the database pool or the HTTP workers of the other routes.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aggregates::payment::{
    AuthorizationOutcome, AuthorizationRequest, CaptureRequest, GatewayError, GatewayReceipt,
    PaymentGateway, RefundRequest, VoidRequest,
};
use async_trait::async_trait;
use rand::Rng;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Tuning of a [`GuardedGateway`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayGuardSettings {
    /// Upper bound on one call to the provider; a slower call counts as a timeout.
    pub call_timeout: Duration,
    /// Retries after the first attempt (0 = no retry).
    pub max_retries: u32,
    /// Backoff ceiling before the first retry; it doubles per retry (before jitter).
    pub backoff_base: Duration,
    /// Largest backoff ceiling.
    pub backoff_max: Duration,
    /// Consecutive failed attempts that open the circuit.
    pub failure_threshold: u32,
    /// How long the circuit stays open before a trial call is let through.
    pub open_for: Duration,
    /// Guarded calls (retries included) in flight at once: the bulkhead.
    pub max_concurrent_calls: usize,
}

impl Default for GatewayGuardSettings {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(2),
            max_retries: 2,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
            max_concurrent_calls: 32,
        }
    }
}

/// The breaker's position, for logs, health and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls go through.
    Closed,
    /// Calls fail fast.
    Open,
    /// One trial call is (or may be) in flight; others fail fast.
    HalfOpen,
}

#[derive(Debug)]
enum Breaker {
    Closed { consecutive_failures: u32 },
    Open { until: Instant },
    HalfOpen { trial_in_flight: bool },
}

/// Picks the actual sleep within a backoff ceiling. Full jitter: uniform in `0..=ceiling`.
pub type Jitter = Arc<dyn Fn(Duration) -> Duration + Send + Sync>;

/// Uniformly random in `0..=ceiling` ("full jitter"), so that callers that failed together
/// do not retry together.
pub fn full_jitter() -> Jitter {
    Arc::new(|ceiling: Duration| {
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=millis))
    })
}

/// A [`PaymentGateway`] decorator: timeout, retry with backoff and jitter, circuit breaker.
pub struct GuardedGateway {
    inner: Arc<dyn PaymentGateway>,
    settings: GatewayGuardSettings,
    breaker: Mutex<Breaker>,
    jitter: Jitter,
    bulkhead: Semaphore,
}

impl fmt::Debug for GuardedGateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedGateway")
            .field("settings", &self.settings)
            .field("circuit", &self.circuit_state())
            .finish_non_exhaustive()
    }
}

/// Whether the breaker lets a call through now.
enum Admission {
    Call,
    /// The half-open trial call: its outcome decides the breaker's next state.
    Trial,
    Reject,
}

impl GuardedGateway {
    /// Guards `inner` with random full jitter.
    pub fn new(inner: Arc<dyn PaymentGateway>, settings: GatewayGuardSettings) -> Self {
        Self::with_jitter(inner, settings, full_jitter())
    }

    /// Guards `inner`, choosing backoff sleeps with `jitter` (deterministic in tests).
    pub fn with_jitter(
        inner: Arc<dyn PaymentGateway>,
        settings: GatewayGuardSettings,
        jitter: Jitter,
    ) -> Self {
        Self {
            inner,
            bulkhead: Semaphore::new(settings.max_concurrent_calls.max(1)),
            settings,
            breaker: Mutex::new(Breaker::Closed {
                consecutive_failures: 0,
            }),
            jitter,
        }
    }

    /// The breaker's state now.
    pub fn circuit_state(&self) -> CircuitState {
        let breaker = self.lock();
        match *breaker {
            Breaker::Closed { .. } => CircuitState::Closed,
            Breaker::Open { until } if Instant::now() < until => CircuitState::Open,
            Breaker::Open { .. } | Breaker::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Breaker> {
        // A panic while holding this lock cannot leave the breaker inconsistent (every
        // update is a single assignment), so a poisoned lock is still usable.
        self.breaker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn admit(&self) -> Admission {
        let mut breaker = self.lock();
        match *breaker {
            Breaker::Closed { .. } => Admission::Call,
            Breaker::Open { until } if Instant::now() < until => Admission::Reject,
            Breaker::Open { .. } => {
                *breaker = Breaker::HalfOpen {
                    trial_in_flight: true,
                };
                Admission::Trial
            }
            Breaker::HalfOpen {
                trial_in_flight: true,
            } => Admission::Reject,
            Breaker::HalfOpen {
                trial_in_flight: false,
            } => {
                *breaker = Breaker::HalfOpen {
                    trial_in_flight: true,
                };
                Admission::Trial
            }
        }
    }

    fn record_success(&self) {
        let mut breaker = self.lock();
        if !matches!(*breaker, Breaker::Closed { .. }) {
            tracing::info!("payment gateway answered: circuit closed");
        }
        *breaker = Breaker::Closed {
            consecutive_failures: 0,
        };
    }

    /// Counts a failed attempt; returns whether the circuit is open now.
    fn record_failure(&self, trial: bool) -> bool {
        let mut breaker = self.lock();
        let open = |breaker: &mut Breaker| {
            *breaker = Breaker::Open {
                until: Instant::now() + self.settings.open_for,
            };
        };
        match &mut *breaker {
            _ if trial => {
                tracing::warn!(open_for = ?self.settings.open_for, "payment gateway trial call failed: circuit open again");
                open(&mut breaker);
            }
            Breaker::Closed {
                consecutive_failures,
            } => {
                *consecutive_failures += 1;
                if *consecutive_failures >= self.settings.failure_threshold {
                    tracing::warn!(
                        failures = *consecutive_failures,
                        open_for = ?self.settings.open_for,
                        "payment gateway failing: circuit open"
                    );
                    open(&mut breaker);
                }
            }
            // A call admitted before the circuit opened: the breaker already knows.
            Breaker::Open { .. } | Breaker::HalfOpen { .. } => {}
        }
        !matches!(*breaker, Breaker::Closed { .. })
    }

    /// Runs `call` under the guard: admission, timeout, retries.
    async fn guarded<T, F, Fut>(&self, operation: &'static str, call: F) -> Result<T, GatewayError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, GatewayError>>,
    {
        let Ok(Ok(_permit)) =
            tokio::time::timeout(self.settings.call_timeout, self.bulkhead.acquire()).await
        else {
            metrics::counter!("keel_gateway_bulkhead_rejections_total", "operation" => operation)
                .increment(1);
            tracing::warn!(
                operation,
                limit = self.settings.max_concurrent_calls,
                "payment gateway bulkhead full: call refused"
            );
            return Err(GatewayError::Unavailable {
                detail: "too many payment gateway calls in flight".into(),
            });
        };
        let mut retry = 0;
        loop {
            let trial = match self.admit() {
                Admission::Call => false,
                Admission::Trial => true,
                Admission::Reject => {
                    tracing::debug!(operation, "payment gateway circuit open: failing fast");
                    return Err(GatewayError::Unavailable {
                        detail: "circuit open: the payment gateway is failing".into(),
                    });
                }
            };
            let outcome = tokio::time::timeout(self.settings.call_timeout, call())
                .await
                .unwrap_or(Err(GatewayError::Timeout));
            let error = match outcome {
                Ok(answer) => {
                    self.record_success();
                    return Ok(answer);
                }
                Err(error) => error,
            };
            let open = self.record_failure(trial);
            if open || retry >= self.settings.max_retries {
                tracing::warn!(operation, attempts = retry + 1, %error, "payment gateway call failed");
                return Err(error);
            }
            let ceiling = self
                .settings
                .backoff_base
                .saturating_mul(2u32.saturating_pow(retry))
                .min(self.settings.backoff_max);
            let sleep = (self.jitter)(ceiling).min(ceiling);
            tracing::debug!(operation, retry = retry + 1, ?sleep, %error, "retrying payment gateway call");
            tokio::time::sleep(sleep).await;
            retry += 1;
        }
    }
}

#[async_trait]
impl PaymentGateway for GuardedGateway {
    async fn authorize(
        &self,
        request: AuthorizationRequest,
    ) -> Result<AuthorizationOutcome, GatewayError> {
        self.guarded("authorize", || self.inner.authorize(request.clone()))
            .await
    }

    async fn capture(&self, request: CaptureRequest) -> Result<GatewayReceipt, GatewayError> {
        self.guarded("capture", || self.inner.capture(request.clone()))
            .await
    }

    async fn void(&self, request: VoidRequest) -> Result<GatewayReceipt, GatewayError> {
        self.guarded("void", || self.inner.void(request.clone()))
            .await
    }

    async fn refund(&self, request: RefundRequest) -> Result<GatewayReceipt, GatewayError> {
        self.guarded("refund", || self.inner.refund(request.clone()))
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicU32, Ordering};

    use aggregates::payment::DeclineReason;
    use aggregates::{Currency, Money};
    use uuid::Uuid;

    use super::*;

    /// A test double of the port that answers from a script, then repeats its last entry.
    #[derive(Default)]
    struct ScriptedGateway {
        script: Mutex<VecDeque<Step>>,
        calls: AtomicU32,
    }

    #[derive(Clone)]
    enum Step {
        Approve,
        Decline,
        Fail(GatewayError),
        Hang,
    }

    impl ScriptedGateway {
        fn new(steps: impl IntoIterator<Item = Step>) -> Arc<Self> {
            Arc::new(Self {
                script: Mutex::new(steps.into_iter().collect()),
                calls: AtomicU32::new(0),
            })
        }

        fn calls(&self) -> u32 {
            self.calls.load(Ordering::SeqCst)
        }

        fn next(&self) -> Step {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let mut script = self.script.lock().unwrap();
            if script.len() > 1 {
                script.pop_front().unwrap()
            } else {
                script.front().cloned().unwrap()
            }
        }

        async fn answer<T>(&self, ok: T) -> Result<T, GatewayError> {
            match self.next() {
                Step::Approve | Step::Decline => Ok(ok),
                Step::Fail(error) => Err(error),
                Step::Hang => std::future::pending().await,
            }
        }
    }

    #[async_trait]
    impl PaymentGateway for ScriptedGateway {
        async fn authorize(
            &self,
            _request: AuthorizationRequest,
        ) -> Result<AuthorizationOutcome, GatewayError> {
            let step = self.next();
            match step {
                Step::Approve => Ok(AuthorizationOutcome::Approved {
                    authorization_code: "auth".into(),
                }),
                Step::Decline => Ok(AuthorizationOutcome::Declined {
                    reason: DeclineReason::CardDeclined,
                }),
                Step::Fail(error) => Err(error),
                Step::Hang => std::future::pending().await,
            }
        }

        async fn capture(&self, _request: CaptureRequest) -> Result<GatewayReceipt, GatewayError> {
            self.answer(GatewayReceipt {
                reference: "capture".into(),
            })
            .await
        }

        async fn void(&self, _request: VoidRequest) -> Result<GatewayReceipt, GatewayError> {
            self.answer(GatewayReceipt {
                reference: "void".into(),
            })
            .await
        }

        async fn refund(&self, _request: RefundRequest) -> Result<GatewayReceipt, GatewayError> {
            self.answer(GatewayReceipt {
                reference: "refund".into(),
            })
            .await
        }
    }

    fn unavailable() -> Step {
        Step::Fail(GatewayError::Unavailable {
            detail: "502".into(),
        })
    }

    fn settings() -> GatewayGuardSettings {
        GatewayGuardSettings {
            call_timeout: Duration::from_millis(500),
            max_retries: 2,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(150),
            failure_threshold: 4,
            open_for: Duration::from_secs(10),
            max_concurrent_calls: 8,
        }
    }

    /// Records every backoff ceiling and sleeps the whole ceiling.
    fn recording_jitter() -> (Jitter, Arc<Mutex<Vec<Duration>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let jitter: Jitter = Arc::new(move |ceiling| {
            record.lock().unwrap().push(ceiling);
            ceiling
        });
        (jitter, seen)
    }

    fn guard(inner: Arc<ScriptedGateway>) -> GuardedGateway {
        GuardedGateway::with_jitter(inner, settings(), recording_jitter().0)
    }

    fn authorization() -> AuthorizationRequest {
        AuthorizationRequest {
            payment_id: Uuid::from_u128(1),
            order_id: Uuid::from_u128(2),
            amount: Money::new(100, Currency::new("EUR").unwrap()),
            payment_method: "tok_visa".into(),
            idempotency_key: Uuid::from_u128(1).to_string(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_with_doubling_capped_backoff() {
        let inner = ScriptedGateway::new([
            unavailable(),
            Step::Fail(GatewayError::Timeout),
            Step::Approve,
        ]);
        let (jitter, ceilings) = recording_jitter();
        let gateway = GuardedGateway::with_jitter(inner.clone(), settings(), jitter);
        let started = Instant::now();

        let outcome = gateway.authorize(authorization()).await;

        assert!(matches!(outcome, Ok(AuthorizationOutcome::Approved { .. })));
        assert_eq!(inner.calls(), 3);
        assert_eq!(
            *ceilings.lock().unwrap(),
            [Duration::from_millis(100), Duration::from_millis(150)],
            "base, then doubled but capped at backoff_max"
        );
        assert_eq!(started.elapsed(), Duration::from_millis(250));
        assert_eq!(gateway.circuit_state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn the_bulkhead_bounds_calls_in_flight_and_spares_the_breaker() {
        let inner = ScriptedGateway::new([Step::Hang]);
        let gateway: Arc<GuardedGateway> = Arc::new(GuardedGateway::with_jitter(
            inner.clone(),
            GatewayGuardSettings {
                max_concurrent_calls: 1,
                // The slot is held across retries, so the hanging call outlasts one timeout.
                max_retries: 1,
                ..settings()
            },
            recording_jitter().0,
        ));
        let hanging = tokio::spawn({
            let gateway = Arc::clone(&gateway);
            async move { gateway.authorize(authorization()).await }
        });
        tokio::task::yield_now().await;
        assert_eq!(inner.calls(), 1, "the first call holds the only slot");

        let started = Instant::now();
        let refused = gateway.authorize(authorization()).await;

        assert!(
            matches!(refused, Err(GatewayError::Unavailable { ref detail }) if detail.contains("in flight")),
            "{refused:?}"
        );
        assert_eq!(
            started.elapsed(),
            settings().call_timeout,
            "waited one call timeout"
        );
        assert_eq!(
            inner.calls(),
            1,
            "the refused call never reached the provider"
        );
        assert_eq!(hanging.await.unwrap(), Err(GatewayError::Timeout));
        assert_eq!(gateway.circuit_state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_decline_is_an_answer_and_is_not_retried() {
        let inner = ScriptedGateway::new([Step::Decline]);
        let gateway = guard(inner.clone());

        let outcome = gateway.authorize(authorization()).await;

        assert_eq!(
            outcome,
            Ok(AuthorizationOutcome::Declined {
                reason: DeclineReason::CardDeclined
            })
        );
        assert_eq!(inner.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_after_max_retries_with_the_last_error() {
        let inner = ScriptedGateway::new([unavailable()]);
        let gateway = guard(inner.clone());

        let outcome = gateway.authorize(authorization()).await;

        assert!(matches!(outcome, Err(GatewayError::Unavailable { .. })));
        assert_eq!(inner.calls(), 3, "one attempt and two retries");
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_slower_than_the_timeout_counts_as_a_timeout() {
        let inner = ScriptedGateway::new([Step::Hang, Step::Approve]);
        let gateway = guard(inner.clone());
        let started = Instant::now();

        let outcome = gateway
            .capture(CaptureRequest {
                payment_id: Uuid::from_u128(1),
                authorization_code: "auth".into(),
                amount: Money::new(100, Currency::new("EUR").unwrap()),
                idempotency_key: "1:capture".into(),
            })
            .await;

        assert_eq!(
            outcome.map(|receipt| receipt.reference),
            Ok("capture".to_owned())
        );
        assert_eq!(inner.calls(), 2);
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(600),
            "timeout + first backoff"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_circuit_opens_fails_fast_then_half_opens_and_closes_on_success() {
        let inner = ScriptedGateway::new([
            unavailable(),
            unavailable(),
            unavailable(),
            unavailable(),
            Step::Approve,
        ]);
        let gateway = guard(inner.clone());

        // Three failed attempts, then one more: four consecutive failures open the circuit.
        assert!(gateway.authorize(authorization()).await.is_err());
        assert_eq!(gateway.circuit_state(), CircuitState::Closed);
        assert!(gateway.authorize(authorization()).await.is_err());
        assert_eq!(inner.calls(), 4, "no retry once the circuit is open");
        assert_eq!(gateway.circuit_state(), CircuitState::Open);

        // Open: fails fast, without calling and without waiting.
        let started = Instant::now();
        let error = gateway.authorize(authorization()).await.unwrap_err();
        assert!(error.to_string().contains("circuit open"), "{error}");
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(inner.calls(), 4);

        // After open_for, one trial call goes through and closes the circuit.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(gateway.circuit_state(), CircuitState::HalfOpen);
        assert!(gateway.authorize(authorization()).await.is_ok());
        assert_eq!(inner.calls(), 5);
        assert_eq!(gateway.circuit_state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_trial_call_opens_the_circuit_again() {
        let inner = ScriptedGateway::new([unavailable()]);
        let gateway = guard(inner.clone());
        for _ in 0..2 {
            let _ = gateway.authorize(authorization()).await;
        }
        assert_eq!(gateway.circuit_state(), CircuitState::Open);
        let calls = inner.calls();

        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(gateway.authorize(authorization()).await.is_err());
        assert_eq!(
            inner.calls(),
            calls + 1,
            "exactly one trial call, no retries"
        );
        assert_eq!(gateway.circuit_state(), CircuitState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn success_resets_the_failure_count() {
        let inner = ScriptedGateway::new([
            unavailable(),
            unavailable(),
            unavailable(),
            Step::Approve,
            unavailable(),
            unavailable(),
            Step::Approve,
        ]);
        let gateway = guard(inner.clone());
        assert!(gateway.authorize(authorization()).await.is_err());
        assert!(gateway.authorize(authorization()).await.is_ok());
        // Without the reset, the first failure here would be the fourth in a row.
        assert!(gateway.authorize(authorization()).await.is_ok());
        assert_eq!(gateway.circuit_state(), CircuitState::Closed);
        assert_eq!(inner.calls(), 7);
    }

    #[test]
    fn full_jitter_stays_within_the_ceiling() {
        let jitter = full_jitter();
        for _ in 0..1_000 {
            assert!(jitter(Duration::from_millis(50)) <= Duration::from_millis(50));
        }
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }
}
