use aggregates::payment::{DeclineReason, PaymentEvent};
use apache_avro::types::Value;

use super::fields::{Fields, event_record, money, split_event_record, string, uuid};
use super::{AvroEvent, check_aggregate, unknown_event_type};
use crate::{AggregateKind, EventMetadata, MappingError};

/// Symbols of `io.keel.payment.DeclineReason`, in schema order (the index is the position).
const DECLINE_REASON_SYMBOLS: [(DeclineReason, &str); 3] = [
    (DeclineReason::CardDeclined, "CARD_DECLINED"),
    (DeclineReason::InsufficientFunds, "INSUFFICIENT_FUNDS"),
    (DeclineReason::ExpiredCard, "EXPIRED_CARD"),
];

fn decline_reason(reason: DeclineReason) -> Value {
    // The table covers every variant (tested), so the fallback is never taken.
    let (index, symbol) = DECLINE_REASON_SYMBOLS
        .iter()
        .zip(0u32..)
        .find_map(|((r, symbol), index)| (*r == reason).then_some((index, *symbol)))
        .unwrap_or((0, DECLINE_REASON_SYMBOLS[0].1));
    Value::Enum(index, symbol.to_owned())
}

impl AvroEvent for PaymentEvent {
    const AGGREGATE: AggregateKind = AggregateKind::Payment;

    fn to_avro(&self, metadata: &EventMetadata) -> Result<Value, MappingError> {
        check_aggregate(Self::AGGREGATE, metadata)?;
        let payload = match self {
            Self::PaymentAuthorized {
                payment_id,
                order_id,
                amount,
                authorization_code,
            } => vec![
                ("payment_id", uuid(*payment_id)),
                ("order_id", uuid(*order_id)),
                ("amount", money(*amount)),
                ("authorization_code", string(authorization_code)),
            ],
            Self::PaymentDeclined {
                payment_id,
                order_id,
                amount,
                reason,
            } => vec![
                ("payment_id", uuid(*payment_id)),
                ("order_id", uuid(*order_id)),
                ("amount", money(*amount)),
                ("reason", decline_reason(*reason)),
            ],
            Self::PaymentCaptured {
                amount,
                gateway_reference,
            } => vec![
                ("amount", money(*amount)),
                ("gateway_reference", string(gateway_reference)),
            ],
            Self::PaymentVoided {
                reason,
                gateway_reference,
            } => vec![
                ("reason", string(reason)),
                ("gateway_reference", string(gateway_reference)),
            ],
            Self::PaymentRefunded {
                refund_id,
                amount,
                reason,
                gateway_reference,
            } => vec![
                ("refund_id", uuid(*refund_id)),
                ("amount", money(*amount)),
                ("reason", string(reason)),
                ("gateway_reference", string(gateway_reference)),
            ],
        };
        event_record(metadata, payload)
    }

    fn from_avro(event_type: &str, value: Value) -> Result<(EventMetadata, Self), MappingError> {
        let (metadata, mut f) = split_event_record(event_type, value)?;
        check_aggregate(Self::AGGREGATE, &metadata)?;
        let event = decode(event_type, &mut f)?;
        Ok((metadata, event))
    }
}

fn decode(event_type: &str, f: &mut Fields) -> Result<PaymentEvent, MappingError> {
    Ok(match event_type {
        "PaymentAuthorized" => PaymentEvent::PaymentAuthorized {
            payment_id: f.uuid("payment_id")?,
            order_id: f.uuid("order_id")?,
            amount: f.money("amount")?,
            authorization_code: f.string("authorization_code")?,
        },
        "PaymentDeclined" => PaymentEvent::PaymentDeclined {
            payment_id: f.uuid("payment_id")?,
            order_id: f.uuid("order_id")?,
            amount: f.money("amount")?,
            reason: {
                let symbol = f.enum_symbol("reason")?;
                DECLINE_REASON_SYMBOLS
                    .iter()
                    .find_map(|(reason, s)| (*s == symbol).then_some(*reason))
                    .ok_or_else(|| f.invalid_symbol("reason", &symbol))?
            },
        },
        "PaymentCaptured" => PaymentEvent::PaymentCaptured {
            amount: f.money("amount")?,
            gateway_reference: f.string("gateway_reference")?,
        },
        "PaymentVoided" => PaymentEvent::PaymentVoided {
            reason: f.string("reason")?,
            gateway_reference: f.string("gateway_reference")?,
        },
        "PaymentRefunded" => PaymentEvent::PaymentRefunded {
            refund_id: f.uuid("refund_id")?,
            amount: f.money("amount")?,
            reason: f.string("reason")?,
            gateway_reference: f.string("gateway_reference")?,
        },
        other => return Err(unknown_event_type(AggregateKind::Payment, other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_decline_reason_has_a_symbol_matching_the_schema() {
        let schema = crate::catalog().by_event_type("PaymentDeclined").unwrap();
        let json: serde_json::Value = serde_json::from_str(schema.source()).unwrap();
        let symbols = &json["fields"][4]["type"]["symbols"];
        for (index, reason) in DeclineReason::ALL.into_iter().enumerate() {
            let Value::Enum(i, symbol) = decline_reason(reason) else {
                panic!("not an enum value");
            };
            assert_eq!(i as usize, index);
            assert_eq!(symbols[index], symbol.as_str());
        }
        assert_eq!(symbols.as_array().unwrap().len(), DeclineReason::ALL.len());
    }
}
