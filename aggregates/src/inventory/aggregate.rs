use std::collections::BTreeMap;

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::commands::{
    AddStock, AdjustStock, CommitReservation, InventoryCommand, ReleaseReservation, ReserveStock,
};
use super::errors::InventoryError;
use super::events::InventoryEvent;
use crate::text::is_valid_reason;

/// Largest `on_hand` accepted, so stock levels always fit a signed 64-bit column or Avro `long`.
pub const MAX_ON_HAND: u64 = i64::MAX as u64;

/// Stock of one SKU: what is on the shelf and what is promised to orders.
///
/// State is only ever changed by [`Aggregate::apply`]; see the [module docs](super) for the
/// invariants `handle` protects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryItem {
    known: bool,
    on_hand: u64,
    reserved: u64,
    // BTreeMap rather than HashMap so snapshots serialize deterministically.
    reservations: BTreeMap<Uuid, u32>,
}

impl InventoryItem {
    /// Whether the SKU ever received stock.
    pub fn is_known(&self) -> bool {
        self.known
    }

    /// Units physically in the warehouse, reserved ones included.
    pub fn on_hand(&self) -> u64 {
        self.on_hand
    }

    /// Units promised to orders and not yet shipped or released.
    pub fn reserved(&self) -> u64 {
        self.reserved
    }

    /// Units that can still be reserved: `on_hand - reserved`, never negative.
    pub fn available(&self) -> u64 {
        self.on_hand.saturating_sub(self.reserved)
    }

    /// Units reserved for `order_id`, if it holds an open reservation.
    pub fn reservation(&self, order_id: Uuid) -> Option<u32> {
        self.reservations.get(&order_id).copied()
    }

    /// Open reservations by order id.
    pub fn reservations(&self) -> &BTreeMap<Uuid, u32> {
        &self.reservations
    }

    fn require_known(&self) -> Result<(), InventoryError> {
        if self.known {
            Ok(())
        } else {
            Err(InventoryError::UnknownSku)
        }
    }

    fn open_reservation(&self, order_id: Uuid) -> Result<u32, InventoryError> {
        self.reservation(order_id)
            .ok_or(InventoryError::ReservationNotFound { order_id })
    }

    fn decide(&self, command: InventoryCommand) -> Result<Option<InventoryEvent>, InventoryError> {
        match command {
            InventoryCommand::AddStock(AddStock { quantity }) => {
                require_positive(quantity)?;
                self.on_hand
                    .checked_add(u64::from(quantity))
                    .filter(|level| *level <= MAX_ON_HAND)
                    .ok_or(InventoryError::QuantityOverflow)?;
                Ok(Some(InventoryEvent::StockAdded { quantity }))
            }
            InventoryCommand::AdjustStock(AdjustStock { delta, reason }) => {
                if delta == 0 {
                    return Err(InventoryError::InvalidQuantity);
                }
                if !is_valid_reason(&reason) {
                    return Err(InventoryError::InvalidReason);
                }
                self.require_known()?;
                let below_reserved = InventoryError::AdjustmentBelowReserved {
                    delta,
                    on_hand: self.on_hand,
                    reserved: self.reserved,
                };
                let level = match self.on_hand.checked_add_signed(delta) {
                    Some(level) => level,
                    None if delta < 0 => return Err(below_reserved),
                    None => return Err(InventoryError::QuantityOverflow),
                };
                if level > MAX_ON_HAND {
                    return Err(InventoryError::QuantityOverflow);
                }
                if level < self.reserved {
                    return Err(below_reserved);
                }
                Ok(Some(InventoryEvent::StockAdjusted { delta, reason }))
            }
            InventoryCommand::ReserveStock(ReserveStock { order_id, quantity }) => {
                require_positive(quantity)?;
                self.require_known()?;
                if let Some(reserved) = self.reservation(order_id) {
                    return if reserved == quantity {
                        // A retried reservation: already true, nothing new happened.
                        Ok(None)
                    } else {
                        Err(InventoryError::ReservationConflict {
                            order_id,
                            reserved,
                            requested: quantity,
                        })
                    };
                }
                let available = self.available();
                if u64::from(quantity) > available {
                    return Err(InventoryError::InsufficientStock {
                        requested: quantity,
                        available,
                    });
                }
                Ok(Some(InventoryEvent::StockReserved { order_id, quantity }))
            }
            InventoryCommand::ReleaseReservation(ReleaseReservation { order_id }) => {
                self.require_known()?;
                let quantity = self.open_reservation(order_id)?;
                Ok(Some(InventoryEvent::ReservationReleased {
                    order_id,
                    quantity,
                }))
            }
            InventoryCommand::CommitReservation(CommitReservation { order_id }) => {
                self.require_known()?;
                let quantity = self.open_reservation(order_id)?;
                Ok(Some(InventoryEvent::ReservationCommitted {
                    order_id,
                    quantity,
                }))
            }
        }
    }
}

fn require_positive(quantity: u32) -> Result<(), InventoryError> {
    if quantity == 0 {
        Err(InventoryError::InvalidQuantity)
    } else {
        Ok(())
    }
}

impl Aggregate for InventoryItem {
    const TYPE: &'static str = "inventory";
    type Command = InventoryCommand;
    type Event = InventoryEvent;
    type Error = InventoryError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        if let Some(event) = self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    // Saturating arithmetic: `handle` already proved every event keeps the invariants, and
    // replaying history must never panic.
    fn apply(&mut self, event: Self::Event) {
        match event {
            InventoryEvent::StockAdded { quantity } => {
                self.known = true;
                self.on_hand = self.on_hand.saturating_add(u64::from(quantity));
            }
            InventoryEvent::StockAdjusted { delta, .. } => {
                self.on_hand = self.on_hand.saturating_add_signed(delta);
            }
            InventoryEvent::StockReserved { order_id, quantity } => {
                self.reservations.insert(order_id, quantity);
                self.reserved = self.reserved.saturating_add(u64::from(quantity));
            }
            InventoryEvent::ReservationReleased { order_id, quantity } => {
                self.reservations.remove(&order_id);
                self.reserved = self.reserved.saturating_sub(u64::from(quantity));
            }
            InventoryEvent::ReservationCommitted { order_id, quantity } => {
                self.reservations.remove(&order_id);
                self.reserved = self.reserved.saturating_sub(u64::from(quantity));
                self.on_hand = self.on_hand.saturating_sub(u64::from(quantity));
            }
        }
    }
}
