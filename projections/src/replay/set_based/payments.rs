//! `payments`: one `payments` row per payment, depending on that payment's events only.
//!
//! Refunds are kept as a JSONB array whose `refunded_at` text PostgreSQL formats (in the
//! session's time zone). The fold keeps the slice's refunds as typed values and lets the
//! upsert build their objects with the live statement's `jsonb_build_object`, appended to
//! what the stored row holds.

use std::collections::HashMap;

use aggregates::Money;
use aggregates::payment::PaymentEvent;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Prior, Refusal, Unfolded, aggregate_uuid, no_row};
use crate::event::SourceEvent;
use crate::replay::source::StoredEvent;

/// A `payments` row, but for `refunds`: [`PaymentRow::refunds`] holds only the refunds of
/// the slice, appended to the stored array when written.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
struct PaymentRow {
    payment_id: Uuid,
    order_id: Uuid,
    status: String,
    currency: String,
    amount_minor: i64,
    captured_minor: i64,
    refunded_minor: i64,
    authorization_code: Option<String>,
    decline_reason: Option<String>,
    void_reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
    #[sqlx(skip)]
    refunds: Vec<Refund>,
}

/// One element of `payments.refunds`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refund {
    refund_id: Uuid,
    amount_minor: i64,
    reason: String,
    refunded_at: DateTime<Utc>,
}

pub(super) async fn fold_and_write(
    connection: &mut PgConnection,
    events: &[&StoredEvent],
    prior: Prior<'_>,
) -> Result<(), Unfolded> {
    if !events
        .iter()
        .any(|e| matches!(e.event.event, SourceEvent::Payment(_)))
    {
        return Ok(());
    }
    let mut ids: Vec<Uuid> = events
        .iter()
        .filter(|e| matches!(e.event.event, SourceEvent::Payment(_)) && prior.may_hold_rows_of(e))
        .filter_map(|e| aggregate_uuid(e).ok())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let existing: Vec<PaymentRow> = if ids.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as(
            "SELECT payment_id, order_id, status, currency, amount_minor, captured_minor, \
                    refunded_minor, authorization_code, decline_reason, void_reason, \
                    created_at, updated_at, version \
             FROM payments WHERE payment_id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(&mut *connection)
        .await?
    };
    let existing = existing
        .into_iter()
        .map(|row| (row.payment_id, row))
        .collect();
    let rows = fold_payments(existing, events)?;
    write(connection, &rows).await?;
    Ok(())
}

/// The live `payments` apply, in memory: returns the rows the slice changed, in the order
/// they were first touched. `existing` holds the stored rows of the slice's payments.
fn fold_payments(
    mut existing: HashMap<Uuid, PaymentRow>,
    events: &[&StoredEvent],
) -> Result<Vec<PaymentRow>, Refusal> {
    let mut touched: Vec<PaymentRow> = Vec::new();
    let mut slots: HashMap<Uuid, usize> = HashMap::new();
    for (index, stored) in events.iter().enumerate() {
        let refuse = |reason: String| Refusal::new(index, reason);
        let SourceEvent::Payment(event) = &stored.event.event else {
            continue;
        };
        let payment_id = aggregate_uuid(stored).map_err(refuse)?;
        let slot = match slots.get(&payment_id) {
            Some(slot) => Some(*slot),
            None => existing.remove(&payment_id).map(|row| {
                slots.insert(payment_id, touched.len());
                touched.push(row);
                touched.len() - 1
            }),
        };
        let row = slot.map(|slot| &mut touched[slot]);
        // A refusal ends the fold: a row left half changed is never written.
        let row = match fold_event(row, payment_id, stored, event).map_err(refuse)? {
            Some(created) => {
                slots.insert(payment_id, touched.len());
                touched.push(created);
                touched.last_mut()
            }
            None => slot.map(|slot| &mut touched[slot]),
        };
        if let Some(row) = row {
            row.updated_at = stored.event.metadata.occurred_at;
            row.version = stored.event.sequence();
            check_constraints(row).map_err(refuse)?;
        }
    }
    Ok(touched)
}

/// One payment event on `row` (`None` if the read model holds no such payment). Returns
/// the new row an authorization or decline makes.
fn fold_event(
    row: Option<&mut PaymentRow>,
    payment_id: Uuid,
    stored: &StoredEvent,
    event: &PaymentEvent,
) -> Result<Option<PaymentRow>, String> {
    let at = stored.event.metadata.occurred_at;
    let missing = || no_row(stored, "a payment");
    let opened = |order_id: Uuid, amount: &Money, status: &str| PaymentRow {
        payment_id,
        order_id,
        status: status.to_owned(),
        currency: amount.currency.as_str().to_owned(),
        amount_minor: amount.amount_minor,
        captured_minor: 0,
        refunded_minor: 0,
        authorization_code: None,
        decline_reason: None,
        void_reason: None,
        created_at: at,
        updated_at: at,
        version: stored.event.sequence(),
        refunds: Vec::new(),
    };
    match event {
        PaymentEvent::PaymentAuthorized {
            payment_id: named,
            order_id,
            amount,
            authorization_code,
        } => {
            check_opened(payment_id, *named)?;
            if row.is_some() {
                return Err(duplicate(payment_id));
            }
            return Ok(Some(PaymentRow {
                authorization_code: Some(authorization_code.clone()),
                ..opened(*order_id, amount, "authorized")
            }));
        }
        PaymentEvent::PaymentDeclined {
            payment_id: named,
            order_id,
            amount,
            reason,
        } => {
            check_opened(payment_id, *named)?;
            if row.is_some() {
                return Err(duplicate(payment_id));
            }
            return Ok(Some(PaymentRow {
                decline_reason: Some(reason.as_str().to_owned()),
                ..opened(*order_id, amount, "declined")
            }));
        }
        PaymentEvent::PaymentCaptured { amount, .. } => {
            let row = row.ok_or_else(missing)?;
            row.status = "captured".to_owned();
            row.captured_minor = amount.amount_minor;
        }
        PaymentEvent::PaymentVoided { reason, .. } => {
            let row = row.ok_or_else(missing)?;
            row.status = "voided".to_owned();
            row.void_reason = Some(reason.clone());
        }
        PaymentEvent::PaymentRefunded {
            refund_id,
            amount,
            reason,
            ..
        } => {
            let row = row.ok_or_else(missing)?;
            let refunded = row
                .refunded_minor
                .checked_add(amount.amount_minor)
                .ok_or_else(|| format!("payments row of {payment_id}: bigint out of range"))?;
            // The live statement compares with the captured amount before its update.
            if refunded >= row.captured_minor {
                row.status = "refunded".to_owned();
            }
            row.refunded_minor = refunded;
            row.refunds.push(Refund {
                refund_id: *refund_id,
                amount_minor: amount.amount_minor,
                reason: reason.clone(),
                refunded_at: at,
            });
        }
    }
    Ok(None)
}

fn check_opened(aggregate: Uuid, named: Uuid) -> Result<(), String> {
    if aggregate == named {
        Ok(())
    } else {
        Err(format!(
            "payment event of aggregate {aggregate} names payment {named}"
        ))
    }
}

fn duplicate(payment_id: Uuid) -> String {
    format!("payment {payment_id} is already in the read model (duplicate key)")
}

/// The CHECK constraints of `payments`, as every statement of the live apply meets them.
fn check_constraints(row: &PaymentRow) -> Result<(), String> {
    if row.refunded_minor < 0 || row.refunded_minor > row.captured_minor || row.version < 1 {
        Err(format!(
            "payments row of {} would violate its check constraints: captured {}, \
             refunded {}, version {}",
            row.payment_id, row.captured_minor, row.refunded_minor, row.version
        ))
    } else {
        Ok(())
    }
}

/// One upsert for the rows, one JSON object per refund built by PostgreSQL.
async fn write(connection: &mut PgConnection, rows: &[PaymentRow]) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let n = rows.len();
    let mut payment_id = Vec::with_capacity(n);
    let mut order_id = Vec::with_capacity(n);
    let mut status = Vec::with_capacity(n);
    let mut currency = Vec::with_capacity(n);
    let mut amount_minor = Vec::with_capacity(n);
    let mut captured_minor = Vec::with_capacity(n);
    let mut refunded_minor = Vec::with_capacity(n);
    let mut authorization_code = Vec::with_capacity(n);
    let mut decline_reason = Vec::with_capacity(n);
    let mut void_reason = Vec::with_capacity(n);
    let mut created_at = Vec::with_capacity(n);
    let mut updated_at = Vec::with_capacity(n);
    let mut version = Vec::with_capacity(n);
    let mut refund_payment = Vec::new();
    let mut refund_id = Vec::new();
    let mut refund_amount = Vec::new();
    let mut refund_reason = Vec::new();
    let mut refunded_at = Vec::new();
    for row in rows {
        payment_id.push(row.payment_id);
        order_id.push(row.order_id);
        status.push(row.status.as_str());
        currency.push(row.currency.as_str());
        amount_minor.push(row.amount_minor);
        captured_minor.push(row.captured_minor);
        refunded_minor.push(row.refunded_minor);
        authorization_code.push(row.authorization_code.as_deref());
        decline_reason.push(row.decline_reason.as_deref());
        void_reason.push(row.void_reason.as_deref());
        created_at.push(row.created_at);
        updated_at.push(row.updated_at);
        version.push(row.version);
        for refund in &row.refunds {
            refund_payment.push(row.payment_id);
            refund_id.push(refund.refund_id);
            refund_amount.push(refund.amount_minor);
            refund_reason.push(refund.reason.as_str());
            refunded_at.push(refund.refunded_at);
        }
    }
    // The proposed rows are final states the fold already checked, so the CHECK
    // constraints that an upsert tests on them hold. `refunds` of a proposed row holds the
    // slice's refunds only; a stored row appends them to its own.
    sqlx::query(
        "WITH refunds AS ( \
             SELECT r.payment_id, \
                    jsonb_agg(jsonb_build_object( \
                        'refund_id', r.refund_id, 'amount_minor', r.amount_minor, \
                        'reason', r.reason, 'refunded_at', r.refunded_at) \
                        ORDER BY r.ordinal) AS refunds \
             FROM unnest($14::uuid[], $15::uuid[], $16::bigint[], $17::text[], \
                         $18::timestamptz[]) WITH ORDINALITY \
                  AS r(payment_id, refund_id, amount_minor, reason, refunded_at, ordinal) \
             GROUP BY r.payment_id \
         ) \
         INSERT INTO payments AS p (payment_id, order_id, status, currency, amount_minor, \
             captured_minor, refunded_minor, authorization_code, decline_reason, void_reason, \
             refunds, created_at, updated_at, version) \
         SELECT v.payment_id, v.order_id, v.status, v.currency, v.amount_minor, \
                v.captured_minor, v.refunded_minor, v.authorization_code, v.decline_reason, \
                v.void_reason, coalesce(r.refunds, '[]'::jsonb), v.created_at, v.updated_at, \
                v.version \
         FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[], \
                     $6::bigint[], $7::bigint[], $8::text[], $9::text[], $10::text[], \
                     $11::timestamptz[], $12::timestamptz[], $13::bigint[]) \
              AS v(payment_id, order_id, status, currency, amount_minor, captured_minor, \
                   refunded_minor, authorization_code, decline_reason, void_reason, \
                   created_at, updated_at, version) \
         LEFT JOIN refunds r ON r.payment_id = v.payment_id \
         ON CONFLICT (payment_id) DO UPDATE \
         SET status = EXCLUDED.status, captured_minor = EXCLUDED.captured_minor, \
             refunded_minor = EXCLUDED.refunded_minor, void_reason = EXCLUDED.void_reason, \
             refunds = p.refunds || EXCLUDED.refunds, updated_at = EXCLUDED.updated_at, \
             version = EXCLUDED.version",
    )
    .bind(&payment_id)
    .bind(&order_id)
    .bind(&status)
    .bind(&currency)
    .bind(&amount_minor)
    .bind(&captured_minor)
    .bind(&refunded_minor)
    .bind(&authorization_code)
    .bind(&decline_reason)
    .bind(&void_reason)
    .bind(&created_at)
    .bind(&updated_at)
    .bind(&version)
    .bind(&refund_payment)
    .bind(&refund_id)
    .bind(&refund_amount)
    .bind(&refund_reason)
    .bind(&refunded_at)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

#[cfg(test)]
// Tests make their own ids and instants (`clippy.toml` bans that in the code under test).
#[allow(clippy::disallowed_methods)]
mod tests {
    use aggregates::payment::DeclineReason;

    use super::*;
    use crate::replay::set_based::testing::{at, eur, stored_event};

    fn stored(payment: Uuid, sequence: u64, second: u32, event: PaymentEvent) -> StoredEvent {
        stored_event(
            "payment",
            &payment.to_string(),
            sequence,
            second,
            SourceEvent::Payment(event),
        )
    }

    fn authorized(payment: Uuid, order: Uuid, amount: i64) -> PaymentEvent {
        PaymentEvent::PaymentAuthorized {
            payment_id: payment,
            order_id: order,
            amount: eur(amount),
            authorization_code: "auth".into(),
        }
    }

    fn captured(amount: i64) -> PaymentEvent {
        PaymentEvent::PaymentCaptured {
            amount: eur(amount),
            gateway_reference: "cap".into(),
        }
    }

    fn refunded(refund: Uuid, amount: i64) -> PaymentEvent {
        PaymentEvent::PaymentRefunded {
            refund_id: refund,
            amount: eur(amount),
            reason: "returned".into(),
            gateway_reference: "ref".into(),
        }
    }

    fn fold(existing: Vec<PaymentRow>, events: &[StoredEvent]) -> Result<Vec<PaymentRow>, Refusal> {
        let refs: Vec<&StoredEvent> = events.iter().collect();
        fold_payments(
            existing
                .into_iter()
                .map(|row| (row.payment_id, row))
                .collect(),
            &refs,
        )
    }

    #[test]
    fn a_slice_folds_into_one_row_per_payment_with_its_refunds_in_order() {
        let (paid, declined, voided, order) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
        let events = [
            stored(paid, 1, 1, authorized(paid, order, 1_000)),
            stored(
                declined,
                1,
                2,
                PaymentEvent::PaymentDeclined {
                    payment_id: declined,
                    order_id: order,
                    amount: eur(500),
                    reason: DeclineReason::InsufficientFunds,
                },
            ),
            stored(paid, 2, 3, captured(900)),
            stored(voided, 1, 4, authorized(voided, order, 700)),
            stored(paid, 3, 5, refunded(first, 400)),
            stored(
                voided,
                2,
                6,
                PaymentEvent::PaymentVoided {
                    reason: "cancelled".into(),
                    gateway_reference: "void".into(),
                },
            ),
            stored(paid, 4, 7, refunded(second, 500)),
        ];
        let rows = fold(Vec::new(), &events).unwrap();
        let ids: Vec<Uuid> = rows.iter().map(|r| r.payment_id).collect();
        assert_eq!(ids, vec![paid, declined, voided]);
        assert_eq!(
            rows[0],
            PaymentRow {
                payment_id: paid,
                order_id: order,
                status: "refunded".into(),
                currency: "EUR".into(),
                amount_minor: 1_000,
                captured_minor: 900,
                refunded_minor: 900,
                authorization_code: Some("auth".into()),
                decline_reason: None,
                void_reason: None,
                created_at: at(1),
                updated_at: at(7),
                version: 4,
                refunds: vec![
                    Refund {
                        refund_id: first,
                        amount_minor: 400,
                        reason: "returned".into(),
                        refunded_at: at(5),
                    },
                    Refund {
                        refund_id: second,
                        amount_minor: 500,
                        reason: "returned".into(),
                        refunded_at: at(7),
                    },
                ],
            }
        );
        assert_eq!(rows[1].status, "declined");
        assert_eq!(
            rows[1].decline_reason.as_deref(),
            Some("insufficient_funds")
        );
        assert_eq!(rows[1].authorization_code, None);
        assert_eq!((rows[1].created_at, rows[1].version), (at(2), 1));
        assert_eq!(rows[2].status, "voided");
        assert_eq!(rows[2].void_reason.as_deref(), Some("cancelled"));
        assert_eq!((rows[2].updated_at, rows[2].version), (at(6), 2));
    }

    #[test]
    fn a_stored_row_is_continued_and_a_partial_refund_keeps_its_status() {
        let (payment, order) = (Uuid::new_v4(), Uuid::new_v4());
        let stored_row = PaymentRow {
            payment_id: payment,
            order_id: order,
            status: "captured".into(),
            currency: "EUR".into(),
            amount_minor: 1_000,
            captured_minor: 1_000,
            refunded_minor: 100,
            authorization_code: Some("auth".into()),
            decline_reason: None,
            void_reason: None,
            created_at: at(0),
            updated_at: at(1),
            version: 3,
            refunds: Vec::new(),
        };
        let refund = Uuid::new_v4();
        let rows = fold(
            vec![stored_row.clone()],
            &[stored(payment, 4, 9, refunded(refund, 200))],
        )
        .unwrap();
        assert_eq!(
            rows,
            vec![PaymentRow {
                refunded_minor: 300,
                updated_at: at(9),
                version: 4,
                refunds: vec![Refund {
                    refund_id: refund,
                    amount_minor: 200,
                    reason: "returned".into(),
                    refunded_at: at(9),
                }],
                ..stored_row
            }]
        );
    }

    #[test]
    fn what_the_live_apply_refuses_is_refused() {
        let (payment, order) = (Uuid::new_v4(), Uuid::new_v4());
        let refusal = |events: &[StoredEvent]| fold(Vec::new(), events).unwrap_err();

        // A capture of a payment never authorized: the live update finds no row.
        let unknown = refusal(&[stored(payment, 1, 1, captured(100))]);
        assert_eq!(unknown.index, 0);
        assert!(
            unknown.reason.contains("does not hold"),
            "{}",
            unknown.reason
        );

        // An authorization naming another payment.
        let other = refusal(&[stored(payment, 1, 1, authorized(Uuid::new_v4(), order, 1))]);
        assert!(other.reason.contains("names payment"), "{}", other.reason);

        // A second authorization of the same payment: the live insert hits the key.
        let twice = refusal(&[
            stored(payment, 1, 1, authorized(payment, order, 100)),
            stored(payment, 2, 2, authorized(payment, order, 100)),
        ]);
        assert_eq!(twice.index, 1);

        // A refund above what was captured breaks `refunded_minor <= captured_minor` at
        // that event, even though a later capture would make the final row valid.
        let over = refusal(&[
            stored(payment, 1, 1, authorized(payment, order, 1_000)),
            stored(payment, 2, 2, captured(100)),
            stored(payment, 3, 3, refunded(Uuid::new_v4(), 200)),
            stored(payment, 4, 4, captured(1_000)),
        ]);
        assert_eq!(over.index, 2);
        assert!(over.reason.contains("check"), "{}", over.reason);

        // A negative refund breaks `refunded_minor >= 0`.
        let negative = refusal(&[
            stored(payment, 1, 1, authorized(payment, order, 1_000)),
            stored(payment, 2, 2, captured(100)),
            stored(payment, 3, 3, refunded(Uuid::new_v4(), -1)),
        ]);
        assert_eq!(negative.index, 2);

        // An aggregate id that is no UUID.
        let events = [stored_event(
            "payment",
            "not-a-uuid",
            1,
            1,
            SourceEvent::Payment(captured(1)),
        )];
        let malformed = refusal(&events);
        assert!(
            malformed.reason.contains("not a UUID"),
            "{}",
            malformed.reason
        );
    }
}
