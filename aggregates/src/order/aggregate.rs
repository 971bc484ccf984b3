use std::sync::Arc;

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::commands::{
    AddOrderLine, CancelOrder, ChangeOrderLineQuantity, CreateOrder, OrderCommand, PlaceOrder,
    RemoveOrderLine, ShipOrder,
};
use super::errors::OrderError;
use super::events::{OrderEvent, OrderLine, order_total};
use super::status::{OrderAction, OrderStatus};
use crate::customer::PersonalDataVault;
use crate::payment::MAX_PAYMENT_METHOD_CHARS;
use crate::text::{is_valid_reason, is_valid_reference};
use crate::{Currency, Money, Sku};

/// Most lines one order may hold; bounds the size of `OrderPlaced` on the wire.
pub const MAX_ORDER_LINES: usize = 100;

/// Longest accepted carrier tracking reference, in characters.
pub const MAX_TRACKING_REFERENCE_CHARS: usize = 100;

/// An order. `Default` is "not created yet": every command but [`CreateOrder`] is then
/// `order.not_found`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    state: Option<OrderState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct OrderState {
    customer_id: Uuid,
    currency: Currency,
    status: OrderStatus,
    // Insertion order is kept: it is the order lines are shown and placed in.
    lines: Vec<OrderLine>,
}

impl Order {
    /// Current status; `None` before creation.
    pub fn status(&self) -> Option<OrderStatus> {
        self.state.as_ref().map(|s| s.status)
    }

    /// The buyer; `None` before creation.
    pub fn customer_id(&self) -> Option<Uuid> {
        self.state.as_ref().map(|s| s.customer_id)
    }

    /// The order's currency; `None` before creation.
    pub fn currency(&self) -> Option<Currency> {
        self.state.as_ref().map(|s| s.currency)
    }

    /// Lines in the order they were added (empty before creation).
    pub fn lines(&self) -> &[OrderLine] {
        self.state.as_ref().map_or(&[], |s| &s.lines)
    }

    /// Sum of the line totals; `None` before creation. Always representable: `handle`
    /// rejects any change that would overflow it.
    pub fn total(&self) -> Option<Money> {
        let state = self.state.as_ref()?;
        order_total(&state.lines, state.currency).ok()
    }

    fn existing(&self) -> Result<&OrderState, OrderError> {
        self.state.as_ref().ok_or(OrderError::NotFound)
    }

    /// The order, provided the status machine allows `action` now.
    fn for_action(&self, action: OrderAction) -> Result<&OrderState, OrderError> {
        let state = self.existing()?;
        if state.status.allows(action) {
            Ok(state)
        } else {
            Err(OrderError::InvalidTransition {
                action,
                status: state.status,
            })
        }
    }

    fn decide(&self, command: OrderCommand) -> Result<Option<OrderEvent>, OrderError> {
        let event = match command {
            OrderCommand::CreateOrder(CreateOrder {
                customer_id,
                currency,
                customer_details,
            }) => {
                if customer_id.is_nil() {
                    return Err(OrderError::InvalidCustomerId);
                }
                if let Some(details) = &customer_details {
                    details
                        .validate()
                        .map_err(OrderError::InvalidCustomerDetails)?;
                }
                if self.state.is_some() {
                    return Err(OrderError::AlreadyExists);
                }
                // Sealed by `handle`, the one step that needs the vault.
                OrderEvent::OrderCreated {
                    customer_id,
                    currency,
                    customer_details: None,
                }
            }
            OrderCommand::AddOrderLine(AddOrderLine {
                sku,
                quantity,
                unit_price,
            }) => {
                require_positive(quantity)?;
                if unit_price.amount_minor < 0 {
                    return Err(OrderError::InvalidUnitPrice);
                }
                let state = self.for_action(OrderAction::AddLine)?;
                if unit_price.currency != state.currency {
                    return Err(OrderError::CurrencyMismatch {
                        expected: state.currency,
                        actual: unit_price.currency,
                    });
                }
                if state.line(&sku).is_some() {
                    return Err(OrderError::DuplicateLine { sku });
                }
                if state.lines.len() >= MAX_ORDER_LINES {
                    return Err(OrderError::TooManyLines {
                        max: MAX_ORDER_LINES,
                    });
                }
                let line = OrderLine {
                    sku,
                    quantity,
                    unit_price,
                };
                state.ensure_total_fits(state.lines.iter().chain([&line]))?;
                OrderEvent::OrderLineAdded { line }
            }
            OrderCommand::ChangeOrderLineQuantity(ChangeOrderLineQuantity { sku, quantity }) => {
                require_positive(quantity)?;
                let state = self.for_action(OrderAction::ChangeLineQuantity)?;
                let Some(current) = state.line(&sku) else {
                    return Err(OrderError::LineNotFound { sku });
                };
                if current.quantity == quantity {
                    return Ok(None);
                }
                let changed = OrderLine {
                    quantity,
                    ..current.clone()
                };
                state.ensure_total_fits(
                    state
                        .lines
                        .iter()
                        .map(|line| if line.sku == sku { &changed } else { line }),
                )?;
                OrderEvent::OrderLineQuantityChanged { sku, quantity }
            }
            OrderCommand::RemoveOrderLine(RemoveOrderLine { sku }) => {
                let state = self.for_action(OrderAction::RemoveLine)?;
                if state.line(&sku).is_none() {
                    return Err(OrderError::LineNotFound { sku });
                }
                OrderEvent::OrderLineRemoved { sku }
            }
            OrderCommand::PlaceOrder(PlaceOrder { payment_method }) => {
                if let Some(token) = &payment_method
                    && !is_valid_reference(token, MAX_PAYMENT_METHOD_CHARS)
                {
                    return Err(OrderError::InvalidPaymentMethod);
                }
                let state = self.for_action(OrderAction::Place)?;
                if state.lines.is_empty() {
                    return Err(OrderError::EmptyOrder);
                }
                OrderEvent::OrderPlaced {
                    customer_id: state.customer_id,
                    total: state.ensure_total_fits(&state.lines)?,
                    lines: state.lines.clone(),
                    payment_method,
                }
            }
            OrderCommand::ConfirmOrder(_) => {
                self.for_action(OrderAction::Confirm)?;
                OrderEvent::OrderConfirmed {}
            }
            OrderCommand::CancelOrder(CancelOrder { reason }) => {
                if !is_valid_reason(&reason) {
                    return Err(OrderError::InvalidReason);
                }
                self.for_action(OrderAction::Cancel)?;
                OrderEvent::OrderCancelled { reason }
            }
            OrderCommand::ShipOrder(ShipOrder { tracking_reference }) => {
                if let Some(reference) = &tracking_reference
                    && !is_valid_reference(reference, MAX_TRACKING_REFERENCE_CHARS)
                {
                    return Err(OrderError::InvalidTrackingReference);
                }
                self.for_action(OrderAction::Ship)?;
                OrderEvent::OrderShipped { tracking_reference }
            }
            OrderCommand::DeliverOrder(_) => {
                self.for_action(OrderAction::Deliver)?;
                OrderEvent::OrderDelivered {}
            }
        };
        Ok(Some(event))
    }
}

impl OrderState {
    fn line(&self, sku: &Sku) -> Option<&OrderLine> {
        self.lines.iter().find(|line| &line.sku == sku)
    }

    fn line_mut(&mut self, sku: &Sku) -> Option<&mut OrderLine> {
        self.lines.iter_mut().find(|line| &line.sku == sku)
    }

    /// The total of `lines`, or `order.amount_overflow`; run before any line change so
    /// [`Order::total`] can never overflow later.
    fn ensure_total_fits<'a>(
        &self,
        lines: impl IntoIterator<Item = &'a OrderLine>,
    ) -> Result<Money, OrderError> {
        order_total(lines, self.currency).map_err(|_| OrderError::AmountOverflow)
    }
}

fn require_positive(quantity: u32) -> Result<(), OrderError> {
    if quantity == 0 {
        Err(OrderError::InvalidQuantity)
    } else {
        Ok(())
    }
}

impl Aggregate for Order {
    const TYPE: &'static str = "order";
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;
    type Services = Arc<dyn PersonalDataVault>;

    /// Decides on plaintext, then seals the customer's personal data (if any) under their
    /// data key, so that what is written is ciphertext only.
    async fn handle(
        &mut self,
        command: Self::Command,
        vault: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let details = match &command {
            OrderCommand::CreateOrder(create) => create.customer_details.clone(),
            _ => None,
        };
        let Some(mut event) = self.decide(command)? else {
            return Ok(());
        };
        if let (
            Some(details),
            OrderEvent::OrderCreated {
                customer_id,
                customer_details,
                ..
            },
        ) = (details, &mut event)
        {
            let sealed = vault
                .seal(*customer_id, &details)
                .await
                .map_err(|_| OrderError::PersonalDataUnavailable)?;
            *customer_details = Some(sealed);
        }
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        if let OrderEvent::OrderCreated {
            customer_id,
            currency,
            ..
        } = event
        {
            self.state = Some(OrderState {
                customer_id,
                currency,
                status: OrderStatus::Draft,
                lines: Vec::new(),
            });
            return;
        }
        // Every other event follows OrderCreated in a valid stream.
        let Some(state) = self.state.as_mut() else {
            return;
        };
        match event {
            OrderEvent::OrderCreated { .. } => {}
            OrderEvent::OrderLineAdded { line } => state.lines.push(line),
            OrderEvent::OrderLineQuantityChanged { sku, quantity } => {
                if let Some(line) = state.line_mut(&sku) {
                    line.quantity = quantity;
                }
            }
            OrderEvent::OrderLineRemoved { sku } => state.lines.retain(|line| line.sku != sku),
            OrderEvent::OrderPlaced { .. } => state.status = OrderStatus::Placed,
            OrderEvent::OrderConfirmed {} => state.status = OrderStatus::Confirmed,
            OrderEvent::OrderCancelled { .. } => state.status = OrderStatus::Cancelled,
            OrderEvent::OrderShipped { .. } => state.status = OrderStatus::Shipped,
            OrderEvent::OrderDelivered {} => state.status = OrderStatus::Delivered,
        }
    }
}
