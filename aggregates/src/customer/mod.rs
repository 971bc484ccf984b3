//! Customer (aggregate id = customer UUID): only what the right to be forgotten needs.
//!
//! Customers are not registered: they appear as the `customer_id` of their orders, and their
//! personal data travels sealed on those orders ([`SealedPersonalData`]). This aggregate
//! records the one fact about a customer as such, that they were forgotten; the event store
//! destroys their data keys in the transaction that appends [`CustomerEvent::CustomerForgotten`]
//! (`docs/adr/0009-crypto-shredding.md`).

mod personal_data;

use std::sync::Arc;

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::macros::{command_enum_from, domain_events};
use crate::{DomainError, ErrorCategory};

pub use personal_data::{
    CustomerDetails, CustomerKeyState, InvalidCustomerDetails, MAX_ADDRESS_LINE_CHARS,
    MAX_EMAIL_CHARS, MAX_NAME_CHARS, MAX_POSTAL_CODE_CHARS, NoVault, PersonalDataVault,
    SealedPersonalData, ShippingAddress, VaultError,
};

/// Erase the customer's personal data everywhere by destroying their keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForgetCustomer {
    /// The customer (= the aggregate id; the aggregate itself does not know its id).
    pub customer_id: Uuid,
}

/// Every command the customer aggregate accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum CustomerCommand {
    /// See [`ForgetCustomer`].
    ForgetCustomer(ForgetCustomer),
}

command_enum_from!(CustomerCommand: ForgetCustomer);

/// Forgetting decides on the key table's state, which a second decision reads afresh.
impl crate::Redecide for CustomerCommand {
    fn may_redecide(&self) -> bool {
        true
    }
}

domain_events! {
    /// Facts about a customer as such. They never carry personal data.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub enum CustomerEvent {
        /// The customer's data keys were destroyed with this event: their personal data is
        /// unreadable wherever it was copied, and every reader must erase what it derived.
        CustomerForgotten {},
    }
}

/// Why a customer command was rejected. Nothing is recorded when one is returned.
///
/// | code | category | when |
/// |---|---|---|
/// | `customer.not_found` | NotFound | the platform never held a key for this customer |
/// | `customer.vault_unavailable` | Transient | the key table could not be read |
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustomerError {
    /// No personal data of this customer was ever recorded.
    #[error("no personal data is held for this customer")]
    NotFound,
    /// The key table could not be read.
    #[error("the personal data vault is unavailable")]
    VaultUnavailable,
}

impl DomainError for CustomerError {
    fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "customer.not_found",
            Self::VaultUnavailable => "customer.vault_unavailable",
        }
    }

    fn category(&self) -> ErrorCategory {
        match self {
            Self::NotFound => ErrorCategory::NotFound,
            Self::VaultUnavailable => ErrorCategory::Transient,
        }
    }
}

/// A customer's erasure record. `Default` is "never forgotten".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    forgotten: u32,
}

impl Customer {
    /// How many times the customer was forgotten (a customer may come back, give new data
    /// and be forgotten again).
    pub fn times_forgotten(&self) -> u32 {
        self.forgotten
    }
}

impl Aggregate for Customer {
    const TYPE: &'static str = "customer";
    type Command = CustomerCommand;
    type Event = CustomerEvent;
    type Error = CustomerError;
    type Services = Arc<dyn PersonalDataVault>;

    async fn handle(
        &mut self,
        command: Self::Command,
        vault: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let CustomerCommand::ForgetCustomer(ForgetCustomer { customer_id }) = command;
        // The vault logs its own failure; the domain only classifies it.
        let state = vault
            .key_state(customer_id)
            .await
            .map_err(|_| CustomerError::VaultUnavailable)?;
        match state {
            CustomerKeyState::Unknown => Err(CustomerError::NotFound),
            // Every key is gone already: forgetting again changes nothing.
            CustomerKeyState::Destroyed => Ok(()),
            CustomerKeyState::Live => {
                sink.write(CustomerEvent::CustomerForgotten {}, self).await;
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            CustomerEvent::CustomerForgotten {} => self.forgotten += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use cqrs_es::test::TestFramework;

    use super::*;

    #[derive(Debug)]
    struct FixedVault(Mutex<Result<CustomerKeyState, VaultError>>);

    #[async_trait]
    impl PersonalDataVault for FixedVault {
        async fn seal(
            &self,
            _: Uuid,
            _: &CustomerDetails,
        ) -> Result<SealedPersonalData, VaultError> {
            Err(VaultError("not used".into()))
        }

        async fn key_state(&self, _: Uuid) -> Result<CustomerKeyState, VaultError> {
            self.0.lock().unwrap().clone()
        }
    }

    fn with(state: Result<CustomerKeyState, VaultError>) -> TestFramework<Customer> {
        let vault: Arc<dyn PersonalDataVault> = Arc::new(FixedVault(Mutex::new(state)));
        TestFramework::with(vault)
    }

    fn forget() -> CustomerCommand {
        ForgetCustomer {
            customer_id: Uuid::from_u128(7),
        }
        .into()
    }

    #[tokio::test]
    async fn a_customer_with_a_live_key_is_forgotten() {
        let result = with(Ok(CustomerKeyState::Live))
            .given_no_previous_events()
            .when_async(forget())
            .await;
        result.then_expect_events(vec![CustomerEvent::CustomerForgotten {}]);
    }

    #[tokio::test]
    async fn forgetting_twice_records_nothing_new() {
        let result = with(Ok(CustomerKeyState::Destroyed))
            .given(vec![CustomerEvent::CustomerForgotten {}])
            .when_async(forget())
            .await;
        result.then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn a_customer_who_came_back_is_forgotten_again() {
        let result = with(Ok(CustomerKeyState::Live))
            .given(vec![CustomerEvent::CustomerForgotten {}])
            .when_async(forget())
            .await;
        result.then_expect_events(vec![CustomerEvent::CustomerForgotten {}]);
    }

    #[tokio::test]
    async fn an_unknown_customer_is_not_found() {
        let result = with(Ok(CustomerKeyState::Unknown))
            .given_no_previous_events()
            .when_async(forget())
            .await;
        result.then_expect_error(CustomerError::NotFound);
    }

    #[tokio::test]
    async fn a_vault_outage_is_transient() {
        let result = with(Err(VaultError("down".into())))
            .given_no_previous_events()
            .when_async(forget())
            .await;
        result.then_expect_error(CustomerError::VaultUnavailable);
        assert_eq!(
            CustomerError::VaultUnavailable.category(),
            ErrorCategory::Transient
        );
    }
}
