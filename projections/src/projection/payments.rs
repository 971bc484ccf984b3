//! Projection `payments`: `payments`, one row per payment, found by id or by order.

use aggregates::payment::PaymentEvent;
use sqlx::PgConnection;

use super::{ApplyError, aggregate_uuid, expect_row, inconsistent};
use crate::event::{ProjectedEvent, SourceEvent};

pub(super) async fn apply(
    connection: &mut PgConnection,
    event: &ProjectedEvent,
) -> Result<(), ApplyError> {
    let SourceEvent::Payment(payment_event) = &event.event else {
        return Ok(());
    };
    let payment_id = aggregate_uuid(event)?;
    let at = event.metadata.occurred_at;
    let version = event.sequence();
    let rows = match payment_event {
        PaymentEvent::PaymentAuthorized {
            payment_id: opened,
            order_id,
            amount,
            authorization_code,
        } => {
            check_opened(payment_id, *opened)?;
            sqlx::query(
                "INSERT INTO payments (payment_id, order_id, status, currency, \
                 amount_minor, authorization_code, created_at, updated_at, version) \
                 VALUES ($1, $2, 'authorized', $3, $4, $5, $6, $6, $7)",
            )
            .bind(payment_id)
            .bind(order_id)
            .bind(amount.currency.as_str())
            .bind(amount.amount_minor)
            .bind(authorization_code)
            .bind(at)
            .bind(version)
            .execute(&mut *connection)
            .await?
            .rows_affected()
        }
        PaymentEvent::PaymentDeclined {
            payment_id: opened,
            order_id,
            amount,
            reason,
        } => {
            check_opened(payment_id, *opened)?;
            sqlx::query(
                "INSERT INTO payments (payment_id, order_id, status, currency, \
                 amount_minor, decline_reason, created_at, updated_at, version) \
                 VALUES ($1, $2, 'declined', $3, $4, $5, $6, $6, $7)",
            )
            .bind(payment_id)
            .bind(order_id)
            .bind(amount.currency.as_str())
            .bind(amount.amount_minor)
            .bind(reason.as_str())
            .bind(at)
            .bind(version)
            .execute(&mut *connection)
            .await?
            .rows_affected()
        }
        PaymentEvent::PaymentCaptured { amount, .. } => sqlx::query(
            "UPDATE payments \
             SET status = 'captured', captured_minor = $2, updated_at = $3, version = $4 \
             WHERE payment_id = $1",
        )
        .bind(payment_id)
        .bind(amount.amount_minor)
        .bind(at)
        .bind(version)
        .execute(&mut *connection)
        .await?
        .rows_affected(),
        PaymentEvent::PaymentVoided { reason, .. } => sqlx::query(
            "UPDATE payments \
             SET status = 'voided', void_reason = $2, updated_at = $3, version = $4 \
             WHERE payment_id = $1",
        )
        .bind(payment_id)
        .bind(reason)
        .bind(at)
        .bind(version)
        .execute(&mut *connection)
        .await?
        .rows_affected(),
        PaymentEvent::PaymentRefunded {
            refund_id,
            amount,
            reason,
            ..
        } => sqlx::query(
            "UPDATE payments \
             SET refunded_minor = refunded_minor + $2, \
                 status = CASE WHEN refunded_minor + $2 >= captured_minor \
                               THEN 'refunded' ELSE status END, \
                 refunds = refunds || jsonb_build_array(jsonb_build_object( \
                     'refund_id', $3::uuid, 'amount_minor', $2::bigint, \
                     'reason', $4::text, 'refunded_at', $5::timestamptz)), \
                 updated_at = $5, version = $6 \
             WHERE payment_id = $1",
        )
        .bind(payment_id)
        .bind(amount.amount_minor)
        .bind(refund_id)
        .bind(reason)
        .bind(at)
        .bind(version)
        .execute(&mut *connection)
        .await?
        .rows_affected(),
    };
    expect_row(rows, event, "a payment")
}

fn check_opened(aggregate: uuid::Uuid, opened: uuid::Uuid) -> Result<(), ApplyError> {
    if aggregate == opened {
        Ok(())
    } else {
        Err(inconsistent(format!(
            "payment event of aggregate {aggregate} names payment {opened}"
        )))
    }
}
