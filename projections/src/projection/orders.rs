//! Projection `orders`: `order_view` (+ `order_view_lines`), `order_reservations`,
//! `order_payments` and `customer_orders`.
//!
//! Reservations and payments are keyed by order but kept apart from `order_view`: the
//! inventory and payment topics are read independently of the order topic, so a
//! reservation may be projected before the order it names. The query side composes them.

use aggregates::customer::{CustomerDetails, CustomerEvent, SealedPersonalData};
use aggregates::inventory::InventoryEvent;
use aggregates::order::{OrderEvent, OrderLine};
use aggregates::payment::PaymentEvent;
use aggregates::{Money, MoneyError};
use event_store::customer_keys::{KeyError, Keyring, Opened};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{ApplyError, aggregate_uuid, expect_row, inconsistent};
use crate::event::{ProjectedEvent, SourceEvent};

pub(super) async fn apply(
    connection: &mut PgConnection,
    event: &ProjectedEvent,
    keys: Option<&Keyring>,
) -> Result<(), ApplyError> {
    match &event.event {
        SourceEvent::Order(order_event) => apply_order(connection, event, order_event, keys).await,
        SourceEvent::Customer(CustomerEvent::CustomerForgotten {}) => {
            erase_customer(connection, aggregate_uuid(event)?).await
        }
        SourceEvent::Inventory(inventory_event) => {
            apply_inventory(connection, event, inventory_event).await
        }
        SourceEvent::Payment(payment_event) => {
            apply_payment(connection, event, payment_event).await
        }
    }
}

/// The forget event: no personal column of the customer's orders keeps a value.
async fn erase_customer(
    connection: &mut PgConnection,
    customer_id: Uuid,
) -> Result<(), ApplyError> {
    sqlx::query(
        "UPDATE order_view SET personal_data = 'erased', customer_name = NULL, \
         customer_email = NULL, shipping_address = NULL \
         WHERE customer_id = $1 AND personal_data IN ('present', 'unavailable')",
    )
    .bind(customer_id)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// What the order view shows of the customer's personal data.
pub(crate) enum Personal {
    None,
    Present(CustomerDetails),
    Erased,
    Unavailable,
}

impl Personal {
    pub(crate) fn status(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Present(_) => "present",
            Self::Erased => "erased",
            Self::Unavailable => "unavailable",
        }
    }
}

/// Opens sealed details inside the batch's transaction (the key row is read `FOR SHARE`,
/// so a concurrent forget commits only after this transaction, and its event then erases
/// what this one wrote).
pub(crate) async fn open_details(
    connection: &mut PgConnection,
    customer_id: Uuid,
    sealed: Option<&SealedPersonalData>,
    keys: Option<&Keyring>,
) -> Result<Personal, ApplyError> {
    let Some(sealed) = sealed else {
        return Ok(Personal::None);
    };
    let Some(keys) = keys else {
        return Ok(Personal::Unavailable);
    };
    match keys
        .open(connection, customer_id, sealed.key_id, &sealed.ciphertext)
        .await
    {
        Ok(Opened::Plain(plaintext)) => serde_json::from_slice(&plaintext)
            .map(Personal::Present)
            .map_err(|_| {
                inconsistent(format!(
                    "sealed details under key {} are not customer details",
                    sealed.key_id
                ))
            }),
        Ok(Opened::Erased) => Ok(Personal::Erased),
        Err(KeyError::Database(error)) => Err(ApplyError::Database(error)),
        // Never the plaintext: the error names the key only.
        Err(error) => Err(inconsistent(error.to_string())),
    }
}

async fn apply_order(
    connection: &mut PgConnection,
    event: &ProjectedEvent,
    order_event: &OrderEvent,
    keys: Option<&Keyring>,
) -> Result<(), ApplyError> {
    let order_id = aggregate_uuid(event)?;
    let at = event.metadata.occurred_at;
    let rows = match order_event {
        OrderEvent::OrderCreated {
            customer_id,
            currency,
            customer_details,
        } => {
            let personal =
                open_details(connection, *customer_id, customer_details.as_ref(), keys).await?;
            for table in ["order_view", "customer_orders"] {
                sqlx::query(&format!(
                    "INSERT INTO {table} (order_id, customer_id, status, currency, \
                     total_minor, line_count, created_at, updated_at, version) \
                     VALUES ($1, $2, 'draft', $3, 0, 0, $4, $4, $5)"
                ))
                .bind(order_id)
                .bind(customer_id)
                .bind(currency.as_str())
                .bind(at)
                .bind(event.sequence())
                .execute(&mut *connection)
                .await?;
            }
            if !matches!(personal, Personal::None) {
                let (name, email, address) = match &personal {
                    Personal::Present(details) => (
                        Some(details.name.as_str()),
                        Some(details.email.as_str()),
                        Some(sqlx::types::Json(&details.shipping_address)),
                    ),
                    _ => (None, None, None),
                };
                sqlx::query(
                    "UPDATE order_view SET personal_data = $2, customer_name = $3, \
                     customer_email = $4, shipping_address = $5 WHERE order_id = $1",
                )
                .bind(order_id)
                .bind(personal.status())
                .bind(name)
                .bind(email)
                .bind(address)
                .execute(&mut *connection)
                .await?;
            }
            return Ok(());
        }
        OrderEvent::OrderLineAdded { line } => {
            let line_total = line_total(line)?;
            sqlx::query(
                "INSERT INTO order_view_lines \
                 (order_id, sku, position, quantity, unit_price_minor, line_total_minor) \
                 VALUES ($1, $2, (SELECT coalesce(max(position), 0) + 1 \
                                  FROM order_view_lines WHERE order_id = $1), \
                         $3, $4, $5)",
            )
            .bind(order_id)
            .bind(line.sku.as_str())
            .bind(i64::from(line.quantity))
            .bind(line.unit_price.amount_minor)
            .bind(line_total.amount_minor)
            .execute(&mut *connection)
            .await?
            .rows_affected()
        }
        OrderEvent::OrderLineQuantityChanged { sku, quantity } => sqlx::query(
            "UPDATE order_view_lines \
             SET quantity = $3, line_total_minor = unit_price_minor * $3 \
             WHERE order_id = $1 AND sku = $2",
        )
        .bind(order_id)
        .bind(sku.as_str())
        .bind(i64::from(*quantity))
        .execute(&mut *connection)
        .await?
        .rows_affected(),
        OrderEvent::OrderLineRemoved { sku } => {
            sqlx::query("DELETE FROM order_view_lines WHERE order_id = $1 AND sku = $2")
                .bind(order_id)
                .bind(sku.as_str())
                .execute(&mut *connection)
                .await?
                .rows_affected()
        }
        OrderEvent::OrderPlaced { lines, .. } => {
            replace_lines(connection, order_id, lines).await?;
            sqlx::query(
                "UPDATE order_view SET status = 'placed', placed_at = $2 \
                 WHERE order_id = $1",
            )
            .bind(order_id)
            .bind(at)
            .execute(&mut *connection)
            .await?
            .rows_affected()
        }
        OrderEvent::OrderConfirmed {} => sqlx::query(
            "UPDATE order_view SET status = 'confirmed', confirmed_at = $2 \
             WHERE order_id = $1",
        )
        .bind(order_id)
        .bind(at)
        .execute(&mut *connection)
        .await?
        .rows_affected(),
        OrderEvent::OrderCancelled { reason } => sqlx::query(
            "UPDATE order_view \
             SET status = 'cancelled', cancelled_at = $2, cancellation_reason = $3 \
             WHERE order_id = $1",
        )
        .bind(order_id)
        .bind(at)
        .bind(reason)
        .execute(&mut *connection)
        .await?
        .rows_affected(),
        OrderEvent::OrderShipped { tracking_reference } => sqlx::query(
            "UPDATE order_view \
             SET status = 'shipped', shipped_at = $2, tracking_reference = $3 \
             WHERE order_id = $1",
        )
        .bind(order_id)
        .bind(at)
        .bind(tracking_reference.as_deref())
        .execute(&mut *connection)
        .await?
        .rows_affected(),
        OrderEvent::OrderDelivered {} => sqlx::query(
            "UPDATE order_view SET status = 'delivered', delivered_at = $2 \
             WHERE order_id = $1",
        )
        .bind(order_id)
        .bind(at)
        .execute(&mut *connection)
        .await?
        .rows_affected(),
    };
    expect_row(rows, event, "an order line or order")?;
    refresh_order(connection, order_id, event).await
}

/// Recomputes the order's totals from its lines, stamps version and time, and copies the
/// listing columns to `customer_orders`.
async fn refresh_order(
    connection: &mut PgConnection,
    order_id: Uuid,
    event: &ProjectedEvent,
) -> Result<(), ApplyError> {
    let rows = sqlx::query(
        "WITH totals AS ( \
             SELECT coalesce(sum(line_total_minor), 0)::bigint AS total_minor, \
                    count(*)::integer AS line_count \
             FROM order_view_lines WHERE order_id = $1 \
         ), updated AS ( \
             UPDATE order_view o \
             SET total_minor = totals.total_minor, line_count = totals.line_count, \
                 updated_at = $2, version = $3 \
             FROM totals WHERE o.order_id = $1 \
             RETURNING o.order_id, o.status, o.total_minor, o.line_count, o.updated_at, o.version \
         ) \
         UPDATE customer_orders c \
         SET status = u.status, total_minor = u.total_minor, line_count = u.line_count, \
             updated_at = u.updated_at, version = u.version \
         FROM updated u WHERE c.order_id = u.order_id",
    )
    .bind(order_id)
    .bind(event.metadata.occurred_at)
    .bind(event.sequence())
    .execute(&mut *connection)
    .await?
    .rows_affected();
    expect_row(rows, event, "an order")
}

/// The placed lines are authoritative: they replace the draft's, in their order.
async fn replace_lines(
    connection: &mut PgConnection,
    order_id: Uuid,
    lines: &[OrderLine],
) -> Result<(), ApplyError> {
    sqlx::query("DELETE FROM order_view_lines WHERE order_id = $1")
        .bind(order_id)
        .execute(&mut *connection)
        .await?;
    let mut skus = Vec::with_capacity(lines.len());
    let mut positions = Vec::with_capacity(lines.len());
    let mut quantities = Vec::with_capacity(lines.len());
    let mut unit_prices = Vec::with_capacity(lines.len());
    let mut totals = Vec::with_capacity(lines.len());
    for (position, line) in (1_i32..).zip(lines) {
        skus.push(line.sku.as_str().to_owned());
        positions.push(position);
        quantities.push(i64::from(line.quantity));
        unit_prices.push(line.unit_price.amount_minor);
        totals.push(line_total(line)?.amount_minor);
    }
    sqlx::query(
        "INSERT INTO order_view_lines \
         (order_id, sku, position, quantity, unit_price_minor, line_total_minor) \
         SELECT $1, l.sku, l.position, l.quantity, l.unit_price_minor, l.line_total_minor \
         FROM unnest($2::text[], $3::integer[], $4::bigint[], $5::bigint[], $6::bigint[]) \
              AS l(sku, position, quantity, unit_price_minor, line_total_minor)",
    )
    .bind(order_id)
    .bind(&skus)
    .bind(&positions)
    .bind(&quantities)
    .bind(&unit_prices)
    .bind(&totals)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

fn line_total(line: &OrderLine) -> Result<Money, ApplyError> {
    line.line_total()
        .map_err(|e: MoneyError| inconsistent(format!("line {}: {e}", line.sku)))
}

async fn apply_inventory(
    connection: &mut PgConnection,
    event: &ProjectedEvent,
    inventory_event: &InventoryEvent,
) -> Result<(), ApplyError> {
    let (order_id, quantity, status) = match inventory_event {
        InventoryEvent::StockReserved { order_id, quantity } => (order_id, quantity, "reserved"),
        InventoryEvent::ReservationReleased { order_id, quantity } => {
            (order_id, quantity, "released")
        }
        InventoryEvent::ReservationCommitted { order_id, quantity } => {
            (order_id, quantity, "committed")
        }
        // Stock movements do not concern any order.
        InventoryEvent::StockAdded { .. } | InventoryEvent::StockAdjusted { .. } => return Ok(()),
    };
    sqlx::query(
        "INSERT INTO order_reservations (order_id, sku, quantity, status, updated_at) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (order_id, sku) DO UPDATE \
         SET quantity = EXCLUDED.quantity, status = EXCLUDED.status, \
             updated_at = EXCLUDED.updated_at",
    )
    .bind(order_id)
    .bind(&event.metadata.aggregate_id)
    .bind(i64::from(*quantity))
    .bind(status)
    .bind(event.metadata.occurred_at)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

async fn apply_payment(
    connection: &mut PgConnection,
    event: &ProjectedEvent,
    payment_event: &PaymentEvent,
) -> Result<(), ApplyError> {
    let payment_id = aggregate_uuid(event)?;
    let at = event.metadata.occurred_at;
    let rows = match payment_event {
        PaymentEvent::PaymentAuthorized {
            payment_id: opened,
            order_id,
            amount,
            ..
        }
        | PaymentEvent::PaymentDeclined {
            payment_id: opened,
            order_id,
            amount,
            ..
        } => {
            if *opened != payment_id {
                return Err(inconsistent(format!(
                    "payment event of aggregate {payment_id} names payment {opened}"
                )));
            }
            let status = match payment_event {
                PaymentEvent::PaymentAuthorized { .. } => "authorized",
                _ => "declined",
            };
            sqlx::query(
                "INSERT INTO order_payments \
                 (payment_id, order_id, status, currency, amount_minor, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6)",
            )
            .bind(payment_id)
            .bind(order_id)
            .bind(status)
            .bind(amount.currency.as_str())
            .bind(amount.amount_minor)
            .bind(at)
            .execute(&mut *connection)
            .await?
            .rows_affected()
        }
        PaymentEvent::PaymentCaptured { amount, .. } => sqlx::query(
            "UPDATE order_payments \
             SET status = 'captured', captured_minor = $2, updated_at = $3 \
             WHERE payment_id = $1",
        )
        .bind(payment_id)
        .bind(amount.amount_minor)
        .bind(at)
        .execute(&mut *connection)
        .await?
        .rows_affected(),
        PaymentEvent::PaymentVoided { .. } => sqlx::query(
            "UPDATE order_payments SET status = 'voided', updated_at = $2 \
             WHERE payment_id = $1",
        )
        .bind(payment_id)
        .bind(at)
        .execute(&mut *connection)
        .await?
        .rows_affected(),
        PaymentEvent::PaymentRefunded { amount, .. } => sqlx::query(
            "UPDATE order_payments \
             SET refunded_minor = refunded_minor + $2, \
                 status = CASE WHEN refunded_minor + $2 >= captured_minor \
                               THEN 'refunded' ELSE status END, \
                 updated_at = $3 \
             WHERE payment_id = $1",
        )
        .bind(payment_id)
        .bind(amount.amount_minor)
        .bind(at)
        .execute(&mut *connection)
        .await?
        .rows_affected(),
    };
    expect_row(rows, event, "a payment")
}
