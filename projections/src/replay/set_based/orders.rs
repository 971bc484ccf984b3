//! `orders`: `order_view` with its `order_view_lines` and its `customer_orders` listing row
//! (an order's events), `order_reservations` (a SKU's events, keyed by order and SKU) and
//! `order_payments` (a payment's events).
//!
//! - Sealed customer details of the slice's `OrderCreated` events are opened before the
//!   fold with the live code ([`open_details`]: the key row is read `FOR SHARE` in the
//!   slice's transaction, as the live apply reads it), and written with the new rows only:
//!   no other event of an order changes its personal columns.
//! - `CustomerForgotten` erases the personal columns of every order of its customer, rows
//!   the fold may hold or not: the fold writes what it holds before it, the live code
//!   applies it, and a new fold starts after it (reading the rows again). Forget events are
//!   rare; exactness wins over speed there.
//! - Lines: the fold keeps an order's lines with their positions (a new line goes after the
//!   highest, as the live statement places it) and rewrites the lines of each order whose
//!   lines changed. Totals and line counts are recomputed from them after every event, as
//!   the live apply refreshes them.

use std::collections::HashMap;

use aggregates::inventory::InventoryEvent;
use aggregates::order::{OrderEvent, OrderLine};
use aggregates::payment::PaymentEvent;
use chrono::{DateTime, Utc};
use event_store::customer_keys::Keyring;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Prior, Refusal, Unfolded, aggregate_uuid, fold_or_live, no_row};
use crate::Projection;
use crate::event::SourceEvent;
use crate::projection::{ApplyError, Personal, is_data_error, open_details};
use crate::replay::ReplayError;
use crate::replay::apply::apply_one;
use crate::replay::source::StoredEvent;

/// Folds the events between two customer events, and applies each customer event with the
/// live code (see the module docs).
pub(super) async fn apply(
    connection: &mut PgConnection,
    events: &[&StoredEvent],
    keys: Option<&Keyring>,
    mut prior: Prior<'_>,
) -> Result<(), ReplayError> {
    let mut start = 0;
    for (index, stored) in events.iter().enumerate() {
        if let SourceEvent::Customer(_) = &stored.event.event {
            let before = &events[start..index];
            fold_or_live(connection, Projection::Orders, before, keys, prior).await?;
            apply_one(connection, Projection::Orders, stored, keys).await?;
            start = index + 1;
            // The folds before wrote rows of aggregates that were new to the slice.
            prior = Prior::Any;
        }
    }
    fold_or_live(
        connection,
        Projection::Orders,
        &events[start..],
        keys,
        prior,
    )
    .await
}

/// An `order_view` row, but for the personal columns (see [`PersonalColumns`]).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
struct OrderRow {
    order_id: Uuid,
    customer_id: Uuid,
    status: String,
    currency: String,
    total_minor: i64,
    line_count: i32,
    cancellation_reason: Option<String>,
    tracking_reference: Option<String>,
    created_at: DateTime<Utc>,
    placed_at: Option<DateTime<Utc>>,
    confirmed_at: Option<DateTime<Utc>>,
    cancelled_at: Option<DateTime<Utc>>,
    shipped_at: Option<DateTime<Utc>>,
    delivered_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
    version: i64,
}

/// An `order_view_lines` row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
struct LineRow {
    order_id: Uuid,
    sku: String,
    position: i32,
    quantity: i64,
    unit_price_minor: i64,
    line_total_minor: i64,
}

/// The personal columns of an order the slice creates (`shipping_address` as JSON text).
/// Those of a stored order are never rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PersonalColumns {
    personal_data: &'static str,
    customer_name: Option<String>,
    customer_email: Option<String>,
    shipping_address: Option<String>,
}

impl PersonalColumns {
    const NONE: Self = Self {
        personal_data: "none",
        customer_name: None,
        customer_email: None,
        shipping_address: None,
    };

    fn of(personal: &Personal) -> Result<Self, String> {
        let Personal::Present(details) = personal else {
            return Ok(Self {
                personal_data: personal.status(),
                ..Self::NONE
            });
        };
        let address = serde_json::to_string(&details.shipping_address)
            .map_err(|e| format!("shipping address does not encode: {e}"))?;
        Ok(Self {
            personal_data: personal.status(),
            customer_name: Some(details.name.clone()),
            customer_email: Some(details.email.clone()),
            shipping_address: Some(address),
        })
    }
}

/// An order as the fold holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OrderState {
    row: OrderRow,
    /// In position order.
    lines: Vec<LineRow>,
    lines_changed: bool,
    /// Set for an order the slice creates.
    personal: Option<PersonalColumns>,
}

/// An `order_reservations` row.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ReservationRow {
    order_id: Uuid,
    sku: String,
    quantity: i64,
    status: &'static str,
    updated_at: DateTime<Utc>,
}

/// An `order_payments` row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
struct OrderPaymentRow {
    payment_id: Uuid,
    order_id: Uuid,
    status: String,
    currency: String,
    amount_minor: i64,
    captured_minor: i64,
    refunded_minor: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// The stored rows of a slice's orders and payments (reservations are overwritten whole).
#[derive(Debug, Default)]
struct Stored {
    orders: HashMap<Uuid, OrderRow>,
    lines: HashMap<Uuid, Vec<LineRow>>,
    payments: HashMap<Uuid, OrderPaymentRow>,
}

/// The rows a slice changed, each in the order first touched.
#[derive(Debug, Default, PartialEq, Eq)]
struct Folded {
    orders: Vec<OrderState>,
    reservations: Vec<ReservationRow>,
    payments: Vec<OrderPaymentRow>,
}

/// Opened personal data of the slice's `OrderCreated` events that carry some, by index;
/// `Err` is the live apply's refusal.
type OpenedDetails = HashMap<usize, Result<PersonalColumns, String>>;

pub(super) async fn fold_and_write(
    connection: &mut PgConnection,
    events: &[&StoredEvent],
    keys: Option<&Keyring>,
    prior: Prior<'_>,
) -> Result<(), Unfolded> {
    let stored = load(connection, events, prior).await?;
    let opened = open_all(connection, events, keys).await?;
    let folded = fold_orders(stored, events, &opened)?;
    write(connection, &folded).await?;
    Ok(())
}

async fn load(
    connection: &mut PgConnection,
    events: &[&StoredEvent],
    prior: Prior<'_>,
) -> Result<Stored, sqlx::Error> {
    let mut order_ids = Vec::new();
    let mut payment_ids = Vec::new();
    for stored in events.iter().filter(|e| prior.may_hold_rows_of(e)) {
        match &stored.event.event {
            SourceEvent::Order(_) => order_ids.extend(aggregate_uuid(stored).ok()),
            SourceEvent::Payment(_) => payment_ids.extend(aggregate_uuid(stored).ok()),
            SourceEvent::Inventory(_) | SourceEvent::Customer(_) => {}
        }
    }
    order_ids.sort_unstable();
    order_ids.dedup();
    payment_ids.sort_unstable();
    payment_ids.dedup();
    let mut stored = Stored::default();
    if !order_ids.is_empty() {
        let orders: Vec<OrderRow> = sqlx::query_as(
            "SELECT order_id, customer_id, status, currency, total_minor, line_count, \
                    cancellation_reason, tracking_reference, created_at, placed_at, \
                    confirmed_at, cancelled_at, shipped_at, delivered_at, updated_at, version \
             FROM order_view WHERE order_id = ANY($1)",
        )
        .bind(&order_ids)
        .fetch_all(&mut *connection)
        .await?;
        stored.orders = orders.into_iter().map(|row| (row.order_id, row)).collect();
        let lines: Vec<LineRow> = sqlx::query_as(
            "SELECT order_id, sku, position, quantity, unit_price_minor, line_total_minor \
             FROM order_view_lines WHERE order_id = ANY($1) ORDER BY order_id, position",
        )
        .bind(&order_ids)
        .fetch_all(&mut *connection)
        .await?;
        for line in lines {
            stored.lines.entry(line.order_id).or_default().push(line);
        }
    }
    if !payment_ids.is_empty() {
        let payments: Vec<OrderPaymentRow> = sqlx::query_as(
            "SELECT payment_id, order_id, status, currency, amount_minor, captured_minor, \
                    refunded_minor, created_at, updated_at \
             FROM order_payments WHERE payment_id = ANY($1)",
        )
        .bind(&payment_ids)
        .fetch_all(&mut *connection)
        .await?;
        stored.payments = payments
            .into_iter()
            .map(|row| (row.payment_id, row))
            .collect();
    }
    Ok(stored)
}

/// Opens the sealed details of the slice's new orders with the live code.
async fn open_all(
    connection: &mut PgConnection,
    events: &[&StoredEvent],
    keys: Option<&Keyring>,
) -> Result<OpenedDetails, Unfolded> {
    let mut opened = HashMap::new();
    for (index, stored) in events.iter().enumerate() {
        let SourceEvent::Order(OrderEvent::OrderCreated {
            customer_id,
            customer_details: Some(sealed),
            ..
        }) = &stored.event.event
        else {
            continue;
        };
        let columns = match open_details(connection, *customer_id, Some(sealed), keys).await {
            Ok(personal) => PersonalColumns::of(&personal),
            Err(ApplyError::Database(error)) if !is_data_error(&error) => {
                return Err(Unfolded::Failed(ReplayError::Database(error)));
            }
            Err(error) => Err(error.to_string()),
        };
        opened.insert(index, columns);
    }
    Ok(opened)
}

/// The live `orders` apply (but for `CustomerForgotten`), in memory.
fn fold_orders(
    mut stored: Stored,
    events: &[&StoredEvent],
    opened: &OpenedDetails,
) -> Result<Folded, Refusal> {
    let mut folded = Folded::default();
    let mut order_slots: HashMap<Uuid, usize> = HashMap::new();
    let mut reservation_slots: HashMap<(Uuid, &str), usize> = HashMap::new();
    let mut payment_slots: HashMap<Uuid, usize> = HashMap::new();
    for (index, event) in events.iter().enumerate() {
        let refuse = |reason: String| Refusal::new(index, reason);
        match &event.event.event {
            SourceEvent::Order(order_event) => {
                let order_id = aggregate_uuid(event).map_err(refuse)?;
                let slot = match order_slots.get(&order_id) {
                    Some(slot) => Some(*slot),
                    None => stored.orders.remove(&order_id).map(|row| {
                        let lines = stored.lines.remove(&order_id).unwrap_or_default();
                        order_slots.insert(order_id, folded.orders.len());
                        folded.orders.push(OrderState {
                            row,
                            lines,
                            lines_changed: false,
                            personal: None,
                        });
                        folded.orders.len() - 1
                    }),
                };
                let order = slot.map(|slot| &mut folded.orders[slot]);
                if let Some(created) =
                    fold_order_event(order, order_id, event, order_event, index, opened)
                        .map_err(refuse)?
                {
                    order_slots.insert(order_id, folded.orders.len());
                    folded.orders.push(created);
                }
            }
            SourceEvent::Inventory(inventory_event) => {
                let (order_id, quantity, status) = match inventory_event {
                    InventoryEvent::StockReserved { order_id, quantity } => {
                        (order_id, quantity, "reserved")
                    }
                    InventoryEvent::ReservationReleased { order_id, quantity } => {
                        (order_id, quantity, "released")
                    }
                    InventoryEvent::ReservationCommitted { order_id, quantity } => {
                        (order_id, quantity, "committed")
                    }
                    InventoryEvent::StockAdded { .. } | InventoryEvent::StockAdjusted { .. } => {
                        continue;
                    }
                };
                let sku = event.event.metadata.aggregate_id.as_str();
                let quantity = i64::from(*quantity);
                if quantity <= 0 {
                    return Err(refuse(format!(
                        "order_reservations row of {order_id} {sku} would violate its check \
                         constraints: quantity {quantity}"
                    )));
                }
                let row = ReservationRow {
                    order_id: *order_id,
                    sku: sku.to_owned(),
                    quantity,
                    status,
                    updated_at: event.event.metadata.occurred_at,
                };
                match reservation_slots.get(&(*order_id, sku)) {
                    Some(slot) => folded.reservations[*slot] = row,
                    None => {
                        reservation_slots.insert((*order_id, sku), folded.reservations.len());
                        folded.reservations.push(row);
                    }
                }
            }
            SourceEvent::Payment(payment_event) => {
                let payment_id = aggregate_uuid(event).map_err(refuse)?;
                let slot = match payment_slots.get(&payment_id) {
                    Some(slot) => Some(*slot),
                    None => stored.payments.remove(&payment_id).map(|row| {
                        payment_slots.insert(payment_id, folded.payments.len());
                        folded.payments.push(row);
                        folded.payments.len() - 1
                    }),
                };
                let payment = slot.map(|slot| &mut folded.payments[slot]);
                if let Some(created) =
                    fold_payment_event(payment, payment_id, event, payment_event).map_err(refuse)?
                {
                    payment_slots.insert(payment_id, folded.payments.len());
                    folded.payments.push(created);
                }
            }
            // The caller applies these with the live code, between folds.
            SourceEvent::Customer(_) => {
                return Err(refuse(
                    "a customer event cannot be folded with the orders of its slice".to_owned(),
                ));
            }
        }
    }
    Ok(folded)
}

/// One order event on `order` (the state the fold holds, `None` if the read model holds no
/// such order). Returns the new order an `OrderCreated` makes.
fn fold_order_event(
    order: Option<&mut OrderState>,
    order_id: Uuid,
    stored: &StoredEvent,
    event: &OrderEvent,
    index: usize,
    opened: &OpenedDetails,
) -> Result<Option<OrderState>, String> {
    let at = stored.event.metadata.occurred_at;
    let version = stored.event.sequence();
    let missing = || no_row(stored, "an order line or order");
    match event {
        OrderEvent::OrderCreated {
            customer_id,
            currency,
            customer_details,
        } => {
            // The live apply opens the details before it inserts.
            let personal = match customer_details {
                None => PersonalColumns::NONE,
                Some(_) => opened
                    .get(&index)
                    .cloned()
                    .unwrap_or_else(|| Err("sealed details were not opened".to_owned()))?,
            };
            if order.is_some() {
                return Err(format!(
                    "order {order_id} is already in the read model (duplicate key)"
                ));
            }
            check_version(order_id, version)?;
            return Ok(Some(OrderState {
                row: OrderRow {
                    order_id,
                    customer_id: *customer_id,
                    status: "draft".to_owned(),
                    currency: currency.as_str().to_owned(),
                    total_minor: 0,
                    line_count: 0,
                    cancellation_reason: None,
                    tracking_reference: None,
                    created_at: at,
                    placed_at: None,
                    confirmed_at: None,
                    cancelled_at: None,
                    shipped_at: None,
                    delivered_at: None,
                    updated_at: at,
                    version,
                },
                lines: Vec::new(),
                lines_changed: false,
                personal: Some(personal),
            }));
        }
        OrderEvent::OrderLineAdded { line } => {
            let line_total = line_total(line)?;
            let Some(order) = order else {
                return Err(format!(
                    "order_view_lines of {order_id}: the order is not in the read model \
                     (foreign key)"
                ));
            };
            if order.lines.iter().any(|l| l.sku == line.sku.as_str()) {
                return Err(format!(
                    "order_view_lines of {order_id}: line {} already exists (duplicate key)",
                    line.sku
                ));
            }
            let position = match order.lines.iter().map(|l| l.position).max() {
                None => 1,
                Some(max) => max.checked_add(1).ok_or_else(|| {
                    format!("order_view_lines of {order_id}: integer out of range")
                })?,
            };
            let new = line_row(order_id, position, line, line_total)?;
            order.lines.push(new);
            order.lines_changed = true;
            refresh(order, at, version)
        }
        OrderEvent::OrderLineQuantityChanged { sku, quantity } => {
            let order = order.ok_or_else(missing)?;
            let line = order
                .lines
                .iter_mut()
                .find(|l| l.sku == sku.as_str())
                .ok_or_else(missing)?;
            let quantity = i64::from(*quantity);
            let total = line.unit_price_minor.checked_mul(quantity).ok_or_else(|| {
                format!("order_view_lines of {order_id} {sku}: bigint out of range")
            })?;
            check_line(order_id, sku.as_str(), quantity, line.unit_price_minor)?;
            line.quantity = quantity;
            line.line_total_minor = total;
            order.lines_changed = true;
            refresh(order, at, version)
        }
        OrderEvent::OrderLineRemoved { sku } => {
            let order = order.ok_or_else(missing)?;
            let at_index = order
                .lines
                .iter()
                .position(|l| l.sku == sku.as_str())
                .ok_or_else(missing)?;
            order.lines.remove(at_index);
            order.lines_changed = true;
            refresh(order, at, version)
        }
        OrderEvent::OrderPlaced { lines, .. } => {
            let mut placed: Vec<LineRow> = Vec::with_capacity(lines.len());
            for (position, line) in (1_i32..).zip(lines) {
                let line_total = line_total(line)?;
                if placed.iter().any(|l| l.sku == line.sku.as_str()) {
                    return Err(format!(
                        "order_view_lines of {order_id}: line {} already exists (duplicate key)",
                        line.sku
                    ));
                }
                placed.push(line_row(order_id, position, line, line_total)?);
            }
            let order = order.ok_or_else(missing)?;
            order.lines = placed;
            order.lines_changed = true;
            order.row.status = "placed".to_owned();
            order.row.placed_at = Some(at);
            refresh(order, at, version)
        }
        OrderEvent::OrderConfirmed {} => {
            let order = order.ok_or_else(missing)?;
            order.row.status = "confirmed".to_owned();
            order.row.confirmed_at = Some(at);
            refresh(order, at, version)
        }
        OrderEvent::OrderCancelled { reason } => {
            let order = order.ok_or_else(missing)?;
            order.row.status = "cancelled".to_owned();
            order.row.cancelled_at = Some(at);
            order.row.cancellation_reason = Some(reason.clone());
            refresh(order, at, version)
        }
        OrderEvent::OrderShipped { tracking_reference } => {
            let order = order.ok_or_else(missing)?;
            order.row.status = "shipped".to_owned();
            order.row.shipped_at = Some(at);
            order.row.tracking_reference.clone_from(tracking_reference);
            refresh(order, at, version)
        }
        OrderEvent::OrderDelivered {} => {
            let order = order.ok_or_else(missing)?;
            order.row.status = "delivered".to_owned();
            order.row.delivered_at = Some(at);
            refresh(order, at, version)
        }
    }?;
    Ok(None)
}

fn line_total(line: &OrderLine) -> Result<i64, String> {
    line.line_total()
        .map(|total| total.amount_minor)
        .map_err(|e| format!("line {}: {e}", line.sku))
}

fn line_row(
    order_id: Uuid,
    position: i32,
    line: &OrderLine,
    line_total_minor: i64,
) -> Result<LineRow, String> {
    let quantity = i64::from(line.quantity);
    check_line(
        order_id,
        line.sku.as_str(),
        quantity,
        line.unit_price.amount_minor,
    )?;
    Ok(LineRow {
        order_id,
        sku: line.sku.as_str().to_owned(),
        position,
        quantity,
        unit_price_minor: line.unit_price.amount_minor,
        line_total_minor,
    })
}

/// The CHECK constraints of `order_view_lines`.
fn check_line(
    order_id: Uuid,
    sku: &str,
    quantity: i64,
    unit_price_minor: i64,
) -> Result<(), String> {
    if quantity > 0 && unit_price_minor >= 0 {
        Ok(())
    } else {
        Err(format!(
            "order_view_lines row of {order_id} {sku} would violate its check constraints: \
             quantity {quantity}, unit price {unit_price_minor}"
        ))
    }
}

/// `order_view.version >= 1`.
fn check_version(order_id: Uuid, version: i64) -> Result<(), String> {
    if version >= 1 {
        Ok(())
    } else {
        Err(format!(
            "order_view row of {order_id} would violate its check constraints: version {version}"
        ))
    }
}

/// The live apply's refresh: totals and line count from the lines, time and version.
fn refresh(order: &mut OrderState, at: DateTime<Utc>, version: i64) -> Result<(), String> {
    let order_id = order.row.order_id;
    let total: i128 = order
        .lines
        .iter()
        .map(|l| i128::from(l.line_total_minor))
        .sum();
    order.row.total_minor = i64::try_from(total)
        .map_err(|_| format!("order_view row of {order_id}: bigint out of range"))?;
    order.row.line_count = i32::try_from(order.lines.len())
        .map_err(|_| format!("order_view row of {order_id}: integer out of range"))?;
    check_version(order_id, version)?;
    order.row.updated_at = at;
    order.row.version = version;
    Ok(())
}

/// One payment event on `payment` (`None` if the read model holds no such payment).
/// Returns the new row an authorization or decline makes.
fn fold_payment_event(
    payment: Option<&mut OrderPaymentRow>,
    payment_id: Uuid,
    stored: &StoredEvent,
    event: &PaymentEvent,
) -> Result<Option<OrderPaymentRow>, String> {
    let at = stored.event.metadata.occurred_at;
    let missing = || no_row(stored, "a payment");
    match event {
        PaymentEvent::PaymentAuthorized {
            payment_id: named,
            order_id,
            amount,
            ..
        }
        | PaymentEvent::PaymentDeclined {
            payment_id: named,
            order_id,
            amount,
            ..
        } => {
            if *named != payment_id {
                return Err(format!(
                    "payment event of aggregate {payment_id} names payment {named}"
                ));
            }
            if payment.is_some() {
                return Err(format!(
                    "payment {payment_id} is already in the read model (duplicate key)"
                ));
            }
            let status = match event {
                PaymentEvent::PaymentAuthorized { .. } => "authorized",
                _ => "declined",
            };
            return Ok(Some(OrderPaymentRow {
                payment_id,
                order_id: *order_id,
                status: status.to_owned(),
                currency: amount.currency.as_str().to_owned(),
                amount_minor: amount.amount_minor,
                captured_minor: 0,
                refunded_minor: 0,
                created_at: at,
                updated_at: at,
            }));
        }
        PaymentEvent::PaymentCaptured { amount, .. } => {
            let payment = payment.ok_or_else(missing)?;
            payment.status = "captured".to_owned();
            payment.captured_minor = amount.amount_minor;
            payment.updated_at = at;
        }
        PaymentEvent::PaymentVoided { .. } => {
            let payment = payment.ok_or_else(missing)?;
            payment.status = "voided".to_owned();
            payment.updated_at = at;
        }
        PaymentEvent::PaymentRefunded { amount, .. } => {
            let payment = payment.ok_or_else(missing)?;
            let refunded = payment
                .refunded_minor
                .checked_add(amount.amount_minor)
                .ok_or_else(|| {
                    format!("order_payments row of {payment_id}: bigint out of range")
                })?;
            if refunded >= payment.captured_minor {
                payment.status = "refunded".to_owned();
            }
            payment.refunded_minor = refunded;
            payment.updated_at = at;
        }
    }
    Ok(None)
}

async fn write(connection: &mut PgConnection, folded: &Folded) -> Result<(), sqlx::Error> {
    write_orders(connection, &folded.orders).await?;
    write_lines(connection, &folded.orders).await?;
    write_reservations(connection, &folded.reservations).await?;
    write_payments(connection, &folded.payments).await
}

/// `order_view` and `customer_orders`. The proposed rows are final states the fold already
/// checked; a stored order keeps its personal columns.
async fn write_orders(
    connection: &mut PgConnection,
    orders: &[OrderState],
) -> Result<(), sqlx::Error> {
    if orders.is_empty() {
        return Ok(());
    }
    let n = orders.len();
    let mut order_id = Vec::with_capacity(n);
    let mut customer_id = Vec::with_capacity(n);
    let mut status = Vec::with_capacity(n);
    let mut currency = Vec::with_capacity(n);
    let mut total_minor = Vec::with_capacity(n);
    let mut line_count = Vec::with_capacity(n);
    let mut cancellation_reason = Vec::with_capacity(n);
    let mut tracking_reference = Vec::with_capacity(n);
    let mut created_at = Vec::with_capacity(n);
    let mut placed_at = Vec::with_capacity(n);
    let mut confirmed_at = Vec::with_capacity(n);
    let mut cancelled_at = Vec::with_capacity(n);
    let mut shipped_at = Vec::with_capacity(n);
    let mut delivered_at = Vec::with_capacity(n);
    let mut updated_at = Vec::with_capacity(n);
    let mut version = Vec::with_capacity(n);
    let mut personal_data = Vec::with_capacity(n);
    let mut customer_name = Vec::with_capacity(n);
    let mut customer_email = Vec::with_capacity(n);
    let mut shipping_address = Vec::with_capacity(n);
    for order in orders {
        let row = &order.row;
        let personal = order.personal.as_ref().unwrap_or(&PersonalColumns::NONE);
        order_id.push(row.order_id);
        customer_id.push(row.customer_id);
        status.push(row.status.as_str());
        currency.push(row.currency.as_str());
        total_minor.push(row.total_minor);
        line_count.push(row.line_count);
        cancellation_reason.push(row.cancellation_reason.as_deref());
        tracking_reference.push(row.tracking_reference.as_deref());
        created_at.push(row.created_at);
        placed_at.push(row.placed_at);
        confirmed_at.push(row.confirmed_at);
        cancelled_at.push(row.cancelled_at);
        shipped_at.push(row.shipped_at);
        delivered_at.push(row.delivered_at);
        updated_at.push(row.updated_at);
        version.push(row.version);
        personal_data.push(personal.personal_data);
        customer_name.push(personal.customer_name.as_deref());
        customer_email.push(personal.customer_email.as_deref());
        shipping_address.push(personal.shipping_address.as_deref());
    }
    sqlx::query(
        "INSERT INTO order_view AS o (order_id, customer_id, status, currency, total_minor, \
             line_count, cancellation_reason, tracking_reference, created_at, placed_at, \
             confirmed_at, cancelled_at, shipped_at, delivered_at, updated_at, version, \
             personal_data, customer_name, customer_email, shipping_address) \
         SELECT v.order_id, v.customer_id, v.status, v.currency, v.total_minor, v.line_count, \
                v.cancellation_reason, v.tracking_reference, v.created_at, v.placed_at, \
                v.confirmed_at, v.cancelled_at, v.shipped_at, v.delivered_at, v.updated_at, \
                v.version, v.personal_data, v.customer_name, v.customer_email, \
                v.shipping_address::jsonb \
         FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[], \
                     $6::integer[], $7::text[], $8::text[], $9::timestamptz[], \
                     $10::timestamptz[], $11::timestamptz[], $12::timestamptz[], \
                     $13::timestamptz[], $14::timestamptz[], $15::timestamptz[], \
                     $16::bigint[], $17::text[], $18::text[], $19::text[], $20::text[]) \
              AS v(order_id, customer_id, status, currency, total_minor, line_count, \
                   cancellation_reason, tracking_reference, created_at, placed_at, \
                   confirmed_at, cancelled_at, shipped_at, delivered_at, updated_at, version, \
                   personal_data, customer_name, customer_email, shipping_address) \
         ON CONFLICT (order_id) DO UPDATE \
         SET status = EXCLUDED.status, total_minor = EXCLUDED.total_minor, \
             line_count = EXCLUDED.line_count, \
             cancellation_reason = EXCLUDED.cancellation_reason, \
             tracking_reference = EXCLUDED.tracking_reference, \
             placed_at = EXCLUDED.placed_at, confirmed_at = EXCLUDED.confirmed_at, \
             cancelled_at = EXCLUDED.cancelled_at, shipped_at = EXCLUDED.shipped_at, \
             delivered_at = EXCLUDED.delivered_at, updated_at = EXCLUDED.updated_at, \
             version = EXCLUDED.version",
    )
    .bind(&order_id)
    .bind(&customer_id)
    .bind(&status)
    .bind(&currency)
    .bind(&total_minor)
    .bind(&line_count)
    .bind(&cancellation_reason)
    .bind(&tracking_reference)
    .bind(&created_at)
    .bind(&placed_at)
    .bind(&confirmed_at)
    .bind(&cancelled_at)
    .bind(&shipped_at)
    .bind(&delivered_at)
    .bind(&updated_at)
    .bind(&version)
    .bind(&personal_data)
    .bind(&customer_name)
    .bind(&customer_email)
    .bind(&shipping_address)
    .execute(&mut *connection)
    .await?;
    sqlx::query(
        "INSERT INTO customer_orders AS c (order_id, customer_id, status, currency, \
             total_minor, line_count, created_at, updated_at, version) \
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[], \
                              $6::integer[], $7::timestamptz[], $8::timestamptz[], \
                              $9::bigint[]) \
         ON CONFLICT (order_id) DO UPDATE \
         SET status = EXCLUDED.status, total_minor = EXCLUDED.total_minor, \
             line_count = EXCLUDED.line_count, updated_at = EXCLUDED.updated_at, \
             version = EXCLUDED.version",
    )
    .bind(&order_id)
    .bind(&customer_id)
    .bind(&status)
    .bind(&currency)
    .bind(&total_minor)
    .bind(&line_count)
    .bind(&created_at)
    .bind(&updated_at)
    .bind(&version)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// The lines of every order whose lines changed, replaced.
async fn write_lines(
    connection: &mut PgConnection,
    orders: &[OrderState],
) -> Result<(), sqlx::Error> {
    let changed: Vec<Uuid> = orders
        .iter()
        .filter(|o| o.lines_changed)
        .map(|o| o.row.order_id)
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    sqlx::query("DELETE FROM order_view_lines WHERE order_id = ANY($1)")
        .bind(&changed)
        .execute(&mut *connection)
        .await?;
    let lines = orders
        .iter()
        .filter(|o| o.lines_changed)
        .flat_map(|o| &o.lines);
    let mut order_id = Vec::new();
    let mut sku = Vec::new();
    let mut position = Vec::new();
    let mut quantity = Vec::new();
    let mut unit_price_minor = Vec::new();
    let mut line_total_minor = Vec::new();
    for line in lines {
        order_id.push(line.order_id);
        sku.push(line.sku.as_str());
        position.push(line.position);
        quantity.push(line.quantity);
        unit_price_minor.push(line.unit_price_minor);
        line_total_minor.push(line.line_total_minor);
    }
    if order_id.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO order_view_lines \
             (order_id, sku, position, quantity, unit_price_minor, line_total_minor) \
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::integer[], $4::bigint[], \
                              $5::bigint[], $6::bigint[])",
    )
    .bind(&order_id)
    .bind(&sku)
    .bind(&position)
    .bind(&quantity)
    .bind(&unit_price_minor)
    .bind(&line_total_minor)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

async fn write_reservations(
    connection: &mut PgConnection,
    reservations: &[ReservationRow],
) -> Result<(), sqlx::Error> {
    if reservations.is_empty() {
        return Ok(());
    }
    let order_id: Vec<Uuid> = reservations.iter().map(|r| r.order_id).collect();
    let sku: Vec<&str> = reservations.iter().map(|r| r.sku.as_str()).collect();
    let quantity: Vec<i64> = reservations.iter().map(|r| r.quantity).collect();
    let status: Vec<&str> = reservations.iter().map(|r| r.status).collect();
    let updated_at: Vec<DateTime<Utc>> = reservations.iter().map(|r| r.updated_at).collect();
    sqlx::query(
        "INSERT INTO order_reservations (order_id, sku, quantity, status, updated_at) \
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[], \
                              $5::timestamptz[]) \
         ON CONFLICT (order_id, sku) DO UPDATE \
         SET quantity = EXCLUDED.quantity, status = EXCLUDED.status, \
             updated_at = EXCLUDED.updated_at",
    )
    .bind(&order_id)
    .bind(&sku)
    .bind(&quantity)
    .bind(&status)
    .bind(&updated_at)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

async fn write_payments(
    connection: &mut PgConnection,
    payments: &[OrderPaymentRow],
) -> Result<(), sqlx::Error> {
    if payments.is_empty() {
        return Ok(());
    }
    let payment_id: Vec<Uuid> = payments.iter().map(|p| p.payment_id).collect();
    let order_id: Vec<Uuid> = payments.iter().map(|p| p.order_id).collect();
    let status: Vec<&str> = payments.iter().map(|p| p.status.as_str()).collect();
    let currency: Vec<&str> = payments.iter().map(|p| p.currency.as_str()).collect();
    let amount_minor: Vec<i64> = payments.iter().map(|p| p.amount_minor).collect();
    let captured_minor: Vec<i64> = payments.iter().map(|p| p.captured_minor).collect();
    let refunded_minor: Vec<i64> = payments.iter().map(|p| p.refunded_minor).collect();
    let created_at: Vec<DateTime<Utc>> = payments.iter().map(|p| p.created_at).collect();
    let updated_at: Vec<DateTime<Utc>> = payments.iter().map(|p| p.updated_at).collect();
    sqlx::query(
        "INSERT INTO order_payments AS p (payment_id, order_id, status, currency, \
             amount_minor, captured_minor, refunded_minor, created_at, updated_at) \
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[], \
                              $6::bigint[], $7::bigint[], $8::timestamptz[], \
                              $9::timestamptz[]) \
         ON CONFLICT (payment_id) DO UPDATE \
         SET status = EXCLUDED.status, captured_minor = EXCLUDED.captured_minor, \
             refunded_minor = EXCLUDED.refunded_minor, updated_at = EXCLUDED.updated_at",
    )
    .bind(&payment_id)
    .bind(&order_id)
    .bind(&status)
    .bind(&currency)
    .bind(&amount_minor)
    .bind(&captured_minor)
    .bind(&refunded_minor)
    .bind(&created_at)
    .bind(&updated_at)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

#[cfg(test)]
// Tests make their own ids and instants (`clippy.toml` bans that in the code under test).
#[allow(clippy::disallowed_methods)]
mod tests {
    use aggregates::customer::SealedPersonalData;
    use aggregates::{Currency, Sku};

    use super::*;
    use crate::replay::set_based::testing::{at, eur, stored_event};

    fn line(sku: &str, quantity: u32, unit_price: i64) -> OrderLine {
        OrderLine {
            sku: Sku::new(sku).unwrap(),
            quantity,
            unit_price: eur(unit_price),
        }
    }

    fn order(id: Uuid, sequence: u64, second: u32, event: OrderEvent) -> StoredEvent {
        stored_event(
            "order",
            &id.to_string(),
            sequence,
            second,
            SourceEvent::Order(event),
        )
    }

    fn created(customer: Uuid) -> OrderEvent {
        OrderEvent::OrderCreated {
            customer_id: customer,
            currency: Currency::new("EUR").unwrap(),
            customer_details: None,
        }
    }

    fn added(sku: &str, quantity: u32, unit_price: i64) -> OrderEvent {
        OrderEvent::OrderLineAdded {
            line: line(sku, quantity, unit_price),
        }
    }

    fn fold(stored: Stored, events: &[StoredEvent]) -> Result<Folded, Refusal> {
        fold_with(stored, events, &OpenedDetails::new())
    }

    fn fold_with(
        stored: Stored,
        events: &[StoredEvent],
        opened: &OpenedDetails,
    ) -> Result<Folded, Refusal> {
        let refs: Vec<&StoredEvent> = events.iter().collect();
        fold_orders(stored, &refs, opened)
    }

    fn lines(state: &OrderState) -> Vec<(&str, i32, i64, i64)> {
        state
            .lines
            .iter()
            .map(|l| (l.sku.as_str(), l.position, l.quantity, l.line_total_minor))
            .collect()
    }

    #[test]
    fn a_draft_keeps_positions_and_totals_as_the_live_statements_do() {
        let (id, customer) = (Uuid::new_v4(), Uuid::new_v4());
        let events = [
            order(id, 1, 1, created(customer)),
            order(id, 2, 2, added("A", 1, 100)),
            order(id, 3, 3, added("B", 2, 50)),
            order(id, 4, 4, added("C", 1, 7)),
            order(
                id,
                5,
                5,
                OrderEvent::OrderLineQuantityChanged {
                    sku: Sku::new("C").unwrap(),
                    quantity: 3,
                },
            ),
            order(
                id,
                6,
                6,
                OrderEvent::OrderLineRemoved {
                    sku: Sku::new("B").unwrap(),
                },
            ),
            // After the highest position (3), not after the line count (2).
            order(id, 7, 7, added("D", 1, 1)),
        ];
        let folded = fold(Stored::default(), &events).unwrap();
        assert_eq!(folded.orders.len(), 1);
        let state = &folded.orders[0];
        assert_eq!(
            lines(state),
            vec![("A", 1, 1, 100), ("C", 3, 3, 21), ("D", 4, 1, 1)]
        );
        assert!(state.lines_changed);
        assert_eq!(state.personal, Some(PersonalColumns::NONE));
        let row = &state.row;
        assert_eq!(
            (row.status.as_str(), row.total_minor, row.line_count),
            ("draft", 122, 3)
        );
        assert_eq!(
            (row.created_at, row.updated_at, row.version),
            (at(1), at(7), 7)
        );
    }

    #[test]
    fn a_stored_order_is_placed_shipped_and_delivered_with_its_stamps() {
        let (id, customer) = (Uuid::new_v4(), Uuid::new_v4());
        let row = OrderRow {
            order_id: id,
            customer_id: customer,
            status: "draft".into(),
            currency: "EUR".into(),
            total_minor: 100,
            line_count: 1,
            cancellation_reason: None,
            tracking_reference: None,
            created_at: at(0),
            placed_at: None,
            confirmed_at: None,
            cancelled_at: None,
            shipped_at: None,
            delivered_at: None,
            updated_at: at(1),
            version: 2,
        };
        let stored_line = LineRow {
            order_id: id,
            sku: "OLD".into(),
            position: 5,
            quantity: 1,
            unit_price_minor: 100,
            line_total_minor: 100,
        };
        let stored = Stored {
            orders: HashMap::from([(id, row.clone())]),
            lines: HashMap::from([(id, vec![stored_line])]),
            payments: HashMap::new(),
        };
        let placed = vec![line("P", 2, 30), line("Q", 1, 5)];
        let events = [
            order(
                id,
                3,
                3,
                OrderEvent::OrderPlaced {
                    customer_id: customer,
                    lines: placed,
                    total: eur(65),
                    payment_method: None,
                },
            ),
            order(id, 4, 4, OrderEvent::OrderConfirmed {}),
            order(
                id,
                5,
                5,
                OrderEvent::OrderShipped {
                    tracking_reference: Some("T-1".into()),
                },
            ),
            order(id, 6, 6, OrderEvent::OrderDelivered {}),
        ];
        let folded = fold(stored, &events).unwrap();
        let state = &folded.orders[0];
        // The placed lines replace the draft's, numbered from 1.
        assert_eq!(lines(state), vec![("P", 1, 2, 60), ("Q", 2, 1, 5)]);
        assert_eq!(
            state.personal, None,
            "a stored order keeps its personal columns"
        );
        assert_eq!(
            state.row,
            OrderRow {
                status: "delivered".into(),
                total_minor: 65,
                line_count: 2,
                tracking_reference: Some("T-1".into()),
                placed_at: Some(at(3)),
                confirmed_at: Some(at(4)),
                shipped_at: Some(at(5)),
                delivered_at: Some(at(6)),
                updated_at: at(6),
                version: 6,
                ..row
            }
        );

        // A status-only change leaves the lines alone.
        let stored = Stored {
            orders: HashMap::from([(id, state.row.clone())]),
            ..Stored::default()
        };
        let cancelled = fold(
            stored,
            &[order(
                id,
                7,
                9,
                OrderEvent::OrderCancelled {
                    reason: "late".into(),
                },
            )],
        )
        .unwrap();
        let state = &cancelled.orders[0];
        assert!(!state.lines_changed);
        assert_eq!(
            (
                state.row.status.as_str(),
                state.row.cancelled_at,
                state.row.cancellation_reason.as_deref(),
                state.row.line_count,
                state.row.total_minor
            ),
            ("cancelled", Some(at(9)), Some("late"), 0, 0),
            "totals come from the lines the read model holds, as the live refresh has them"
        );
    }

    #[test]
    fn reservations_take_their_last_state_and_order_payments_fold_per_payment() {
        let (first, second, payment) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let inventory = |sequence: u64, second: u32, event: InventoryEvent| {
            stored_event(
                "inventory",
                "SKU-1",
                sequence,
                second,
                SourceEvent::Inventory(event),
            )
        };
        let paid = |sequence: u64, second: u32, event: PaymentEvent| {
            stored_event(
                "payment",
                &payment.to_string(),
                sequence,
                second,
                SourceEvent::Payment(event),
            )
        };
        let events = [
            inventory(1, 1, InventoryEvent::StockAdded { quantity: 9 }),
            inventory(
                2,
                2,
                InventoryEvent::StockReserved {
                    order_id: first,
                    quantity: 2,
                },
            ),
            inventory(
                3,
                3,
                InventoryEvent::StockReserved {
                    order_id: second,
                    quantity: 1,
                },
            ),
            inventory(
                4,
                4,
                InventoryEvent::ReservationCommitted {
                    order_id: first,
                    quantity: 2,
                },
            ),
            paid(
                1,
                5,
                PaymentEvent::PaymentAuthorized {
                    payment_id: payment,
                    order_id: first,
                    amount: eur(500),
                    authorization_code: "a".into(),
                },
            ),
            paid(
                2,
                6,
                PaymentEvent::PaymentCaptured {
                    amount: eur(500),
                    gateway_reference: "c".into(),
                },
            ),
            paid(
                3,
                7,
                PaymentEvent::PaymentRefunded {
                    refund_id: Uuid::new_v4(),
                    amount: eur(200),
                    reason: "r".into(),
                    gateway_reference: "r".into(),
                },
            ),
        ];
        let folded = fold(Stored::default(), &events).unwrap();
        assert_eq!(
            folded.reservations,
            vec![
                ReservationRow {
                    order_id: first,
                    sku: "SKU-1".into(),
                    quantity: 2,
                    status: "committed",
                    updated_at: at(4),
                },
                ReservationRow {
                    order_id: second,
                    sku: "SKU-1".into(),
                    quantity: 1,
                    status: "reserved",
                    updated_at: at(3),
                },
            ]
        );
        assert_eq!(
            folded.payments,
            vec![OrderPaymentRow {
                payment_id: payment,
                order_id: first,
                status: "captured".into(),
                currency: "EUR".into(),
                amount_minor: 500,
                captured_minor: 500,
                refunded_minor: 200,
                created_at: at(5),
                updated_at: at(7),
            }]
        );
    }

    #[test]
    fn opened_details_go_to_the_new_order_and_a_refused_opening_refuses_its_event() {
        let (id, customer) = (Uuid::new_v4(), Uuid::new_v4());
        let sealed = OrderEvent::OrderCreated {
            customer_id: customer,
            currency: Currency::new("EUR").unwrap(),
            customer_details: Some(SealedPersonalData {
                key_id: Uuid::new_v4(),
                ciphertext: vec![1, 2, 3],
            }),
        };
        let events = [order(id, 1, 1, sealed)];
        let erased = PersonalColumns {
            personal_data: "erased",
            ..PersonalColumns::NONE
        };
        let opened = OpenedDetails::from([(0, Ok(erased.clone()))]);
        let folded = fold_with(Stored::default(), &events, &opened).unwrap();
        assert_eq!(folded.orders[0].personal, Some(erased));

        let opened = OpenedDetails::from([(0, Err("key does not open".to_owned()))]);
        let refusal = fold_with(Stored::default(), &events, &opened).unwrap_err();
        assert_eq!(refusal, Refusal::new(0, "key does not open"));
    }

    #[test]
    fn what_the_live_apply_refuses_is_refused() {
        let (id, customer) = (Uuid::new_v4(), Uuid::new_v4());
        let refusal = |events: &[StoredEvent]| fold(Stored::default(), events).unwrap_err();

        // A line of an order the read model does not hold (the live insert breaks the
        // foreign key), and a status change of one (the live update finds no row).
        assert_eq!(refusal(&[order(id, 2, 1, added("A", 1, 1))]).index, 0);
        let unknown = refusal(&[order(id, 2, 1, OrderEvent::OrderConfirmed {})]);
        assert!(
            unknown.reason.contains("does not hold"),
            "{}",
            unknown.reason
        );

        // Created twice: the live insert hits the key.
        let twice = refusal(&[
            order(id, 1, 1, created(customer)),
            order(id, 2, 2, created(customer)),
        ]);
        assert_eq!(twice.index, 1);

        // The same SKU added twice, and a change of a line the order does not have.
        let duplicate = refusal(&[
            order(id, 1, 1, created(customer)),
            order(id, 2, 2, added("A", 1, 1)),
            order(id, 3, 3, added("A", 1, 1)),
        ]);
        assert_eq!(duplicate.index, 2);
        let no_line = refusal(&[
            order(id, 1, 1, created(customer)),
            order(
                id,
                2,
                2,
                OrderEvent::OrderLineRemoved {
                    sku: Sku::new("A").unwrap(),
                },
            ),
        ]);
        assert_eq!(no_line.index, 1);

        // The lines' CHECK constraints: a quantity of 0, a negative price, and a quantity
        // change whose total leaves bigint.
        for bad in [added("A", 0, 1), added("A", 1, -1)] {
            let events = [order(id, 1, 1, created(customer)), order(id, 2, 2, bad)];
            assert_eq!(refusal(&events).index, 1);
        }
        let overflow = refusal(&[
            order(id, 1, 1, created(customer)),
            order(id, 2, 2, added("A", 1, i64::MAX / 2)),
            order(
                id,
                3,
                3,
                OrderEvent::OrderLineQuantityChanged {
                    sku: Sku::new("A").unwrap(),
                    quantity: 3,
                },
            ),
        ]);
        assert_eq!(overflow.index, 2);
        assert!(
            overflow.reason.contains("out of range"),
            "{}",
            overflow.reason
        );

        // Totals that leave bigint (the live refresh casts the sum).
        let total = refusal(&[
            order(id, 1, 1, created(customer)),
            order(id, 2, 2, added("A", 1, i64::MAX)),
            order(id, 3, 3, added("B", 1, 1)),
        ]);
        assert_eq!(total.index, 2);

        // A reservation of nothing breaks `quantity > 0`.
        let reservation = [stored_event(
            "inventory",
            "SKU-1",
            1,
            1,
            SourceEvent::Inventory(InventoryEvent::StockReserved {
                order_id: id,
                quantity: 0,
            }),
        )];
        assert_eq!(refusal(&reservation).index, 0);

        // A capture of a payment never authorized.
        let capture = [stored_event(
            "payment",
            &Uuid::new_v4().to_string(),
            2,
            1,
            SourceEvent::Payment(PaymentEvent::PaymentCaptured {
                amount: eur(1),
                gateway_reference: "c".into(),
            }),
        )];
        assert!(refusal(&capture).reason.contains("does not hold"));

        // An order id that is no UUID.
        let malformed = [stored_event(
            "order",
            "not-a-uuid",
            1,
            1,
            SourceEvent::Order(created(customer)),
        )];
        assert!(refusal(&malformed).reason.contains("not a UUID"));
    }
}
