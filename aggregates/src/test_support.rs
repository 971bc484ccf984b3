//! Helpers for property tests, which drive `handle` directly (no `TestFramework`) to check
//! invariants after every step of a long command sequence.

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;

/// Runs `handle` the way cqrs-es does (events are applied as they are written) and returns
/// the events; a rejected command must leave `aggregate` untouched, which callers assert.
pub(crate) fn run<A: Aggregate>(
    runtime: &tokio::runtime::Runtime,
    aggregate: &mut A,
    command: A::Command,
    services: &A::Services,
) -> Result<Vec<A::Event>, A::Error> {
    runtime.block_on(async {
        let sink = EventSink::default();
        aggregate.handle(command, services, &sink).await?;
        Ok(sink.collect().await)
    })
}

/// A single-threaded runtime: `handle` never truly suspends with the in-memory gateway.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime builds")
}

/// A stand-in for the event store's vault (this crate cannot reach it): "seals" by XOR, so
/// tests can tell sealed bytes from the plaintext and the vault was asked once per create.
#[derive(Debug, Default)]
pub(crate) struct XorVault;

impl XorVault {
    pub(crate) fn sealed(
        customer_id: uuid::Uuid,
        details: &crate::customer::CustomerDetails,
    ) -> crate::customer::SealedPersonalData {
        let plain = serde_json::to_vec(details).expect("details serialize");
        crate::customer::SealedPersonalData {
            key_id: uuid::Uuid::from_u128(customer_id.as_u128() ^ 1),
            ciphertext: plain.iter().map(|b| b ^ 0x5a).collect(),
        }
    }
}

#[async_trait::async_trait]
impl crate::customer::PersonalDataVault for XorVault {
    async fn seal(
        &self,
        customer_id: uuid::Uuid,
        details: &crate::customer::CustomerDetails,
    ) -> Result<crate::customer::SealedPersonalData, crate::customer::VaultError> {
        Ok(Self::sealed(customer_id, details))
    }

    async fn key_state(
        &self,
        _: uuid::Uuid,
    ) -> Result<crate::customer::CustomerKeyState, crate::customer::VaultError> {
        Ok(crate::customer::CustomerKeyState::Live)
    }
}

/// The order aggregate's services in tests.
pub(crate) fn vault() -> std::sync::Arc<dyn crate::customer::PersonalDataVault> {
    std::sync::Arc::new(XorVault)
}

/// Valid personal data.
pub(crate) fn details() -> crate::customer::CustomerDetails {
    crate::customer::CustomerDetails {
        name: "Ada Lovelace".into(),
        email: "ada@example.com".into(),
        shipping_address: crate::customer::ShippingAddress {
            line1: "12 St James's Square".into(),
            line2: None,
            city: "London".into(),
            postal_code: "SW1Y 4JH".into(),
            country: "GB".into(),
        },
    }
}
