//! Small typed helpers to build and take apart Avro record values, so each aggregate's
//! mapping reads like its schema.

use aggregates::customer::SealedPersonalData;
use aggregates::order::OrderLine;
use aggregates::{Currency, Money, Sku};
use apache_avro::types::Value;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{EventMetadata, MappingError};

// --- Domain → Avro ---

pub(crate) fn uuid(id: Uuid) -> Value {
    Value::Uuid(id)
}

pub(crate) fn string(text: &str) -> Value {
    Value::String(text.to_owned())
}

pub(crate) fn long(n: i64) -> Value {
    Value::Long(n)
}

pub(crate) fn quantity(n: u32) -> Value {
    Value::Long(i64::from(n))
}

/// `["null", "string"]`: branch 0 is null, branch 1 the string.
pub(crate) fn optional_string(text: Option<&str>) -> Value {
    match text {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(text) => Value::Union(1, Box::new(string(text))),
    }
}

/// `["null", uuid]`.
fn optional_uuid(id: Option<Uuid>) -> Value {
    match id {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(id) => Value::Union(1, Box::new(uuid(id))),
    }
}

/// `["null", SealedPersonalData]`.
pub(crate) fn optional_sealed(sealed: Option<&SealedPersonalData>) -> Value {
    match sealed {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(sealed) => Value::Union(
            1,
            Box::new(Value::Record(vec![
                ("key_id".into(), uuid(sealed.key_id)),
                ("ciphertext".into(), Value::Bytes(sealed.ciphertext.clone())),
            ])),
        ),
    }
}

pub(crate) fn money(amount: Money) -> Value {
    Value::Record(vec![
        ("amount_minor".into(), long(amount.amount_minor)),
        ("currency".into(), string(amount.currency.as_str())),
    ])
}

pub(crate) fn order_line(line: &OrderLine) -> Value {
    Value::Record(vec![
        ("sku".into(), string(line.sku.as_str())),
        ("quantity".into(), quantity(line.quantity)),
        ("unit_price".into(), money(line.unit_price)),
    ])
}

fn metadata(metadata: &EventMetadata) -> Result<Value, MappingError> {
    let sequence = i64::try_from(metadata.sequence).map_err(|_| MappingError::InvalidValue {
        record: "EventMetadata".into(),
        field: "sequence".into(),
        reason: "does not fit an Avro long".into(),
    })?;
    Ok(Value::Record(vec![
        ("event_id".into(), uuid(metadata.event_id)),
        ("aggregate_type".into(), string(&metadata.aggregate_type)),
        ("aggregate_id".into(), string(&metadata.aggregate_id)),
        ("sequence".into(), long(sequence)),
        ("correlation_id".into(), uuid(metadata.correlation_id)),
        ("causation_id".into(), optional_uuid(metadata.causation_id)),
        ("actor".into(), string(&metadata.actor)),
        (
            "occurred_at".into(),
            Value::TimestampMicros(metadata.occurred_at.timestamp_micros()),
        ),
        (
            "idempotency_key".into(),
            optional_string(metadata.idempotency_key.as_deref()),
        ),
        (
            "traceparent".into(),
            optional_string(metadata.traceparent.as_deref()),
        ),
    ]))
}

/// An event record: `metadata` first, then the payload fields in schema order.
pub(crate) fn event_record(
    event_metadata: &EventMetadata,
    payload: Vec<(&'static str, Value)>,
) -> Result<Value, MappingError> {
    let mut fields = Vec::with_capacity(payload.len() + 1);
    fields.push(("metadata".to_owned(), metadata(event_metadata)?));
    fields.extend(
        payload
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value)),
    );
    Ok(Value::Record(fields))
}

// --- Avro → domain ---

/// The fields of one record value, taken out by name with their expected type.
pub(crate) struct Fields {
    record: String,
    fields: Vec<(String, Value)>,
}

impl Fields {
    pub(crate) fn of(record: &str, value: Value) -> Result<Self, MappingError> {
        match value {
            Value::Record(fields) => Ok(Self {
                record: record.to_owned(),
                fields,
            }),
            other => Err(MappingError::WrongType {
                record: record.to_owned(),
                field: "(record)".into(),
                expected: "record",
                found: found(&other),
            }),
        }
    }

    fn take(&mut self, field: &str) -> Result<Value, MappingError> {
        let index = self
            .fields
            .iter()
            .position(|(name, _)| name == field)
            .ok_or_else(|| MappingError::MissingField {
                record: self.record.clone(),
                field: field.to_owned(),
            })?;
        Ok(self.fields.swap_remove(index).1)
    }

    fn wrong_type(&self, field: &str, expected: &'static str, value: &Value) -> MappingError {
        MappingError::WrongType {
            record: self.record.clone(),
            field: field.to_owned(),
            expected,
            found: found(value),
        }
    }

    fn invalid(&self, field: &str, reason: impl ToString) -> MappingError {
        MappingError::InvalidValue {
            record: self.record.clone(),
            field: field.to_owned(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn uuid(&mut self, field: &str) -> Result<Uuid, MappingError> {
        match self.take(field)? {
            Value::Uuid(id) => Ok(id),
            Value::String(text) => Uuid::parse_str(&text).map_err(|e| self.invalid(field, e)),
            other => Err(self.wrong_type(field, "uuid", &other)),
        }
    }

    pub(crate) fn string(&mut self, field: &str) -> Result<String, MappingError> {
        match self.take(field)? {
            Value::String(text) => Ok(text),
            other => Err(self.wrong_type(field, "string", &other)),
        }
    }

    pub(crate) fn long(&mut self, field: &str) -> Result<i64, MappingError> {
        match self.take(field)? {
            Value::Long(n) => Ok(n),
            Value::Int(n) => Ok(i64::from(n)),
            other => Err(self.wrong_type(field, "long", &other)),
        }
    }

    pub(crate) fn quantity(&mut self, field: &str) -> Result<u32, MappingError> {
        let n = self.long(field)?;
        u32::try_from(n).map_err(|_| self.invalid(field, format!("{n} is not a quantity")))
    }

    pub(crate) fn optional_string(&mut self, field: &str) -> Result<Option<String>, MappingError> {
        match self.take(field)? {
            Value::Union(_, inner) => match *inner {
                Value::Null => Ok(None),
                Value::String(text) => Ok(Some(text)),
                other => Err(self.wrong_type(field, "null or string", &other)),
            },
            Value::Null => Ok(None),
            Value::String(text) => Ok(Some(text)),
            other => Err(self.wrong_type(field, "null or string", &other)),
        }
    }

    /// A `["null", SealedPersonalData]` field; absent (a writer schema from before the
    /// field existed) reads as null.
    pub(crate) fn optional_sealed(
        &mut self,
        field: &str,
    ) -> Result<Option<SealedPersonalData>, MappingError> {
        if !self.fields.iter().any(|(name, _)| name == field) {
            return Ok(None);
        }
        let value = match self.take(field)? {
            Value::Union(_, inner) => *inner,
            other => other,
        };
        if value == Value::Null {
            return Ok(None);
        }
        let mut sealed = Fields::of("SealedPersonalData", value)?;
        let key_id = sealed.uuid("key_id")?;
        let ciphertext = match sealed.take("ciphertext")? {
            Value::Bytes(bytes) => bytes,
            other => return Err(sealed.wrong_type("ciphertext", "bytes", &other)),
        };
        Ok(Some(SealedPersonalData { key_id, ciphertext }))
    }

    fn optional_uuid(&mut self, field: &str) -> Result<Option<Uuid>, MappingError> {
        let value = match self.take(field)? {
            Value::Union(_, inner) => *inner,
            other => other,
        };
        match value {
            Value::Null => Ok(None),
            Value::Uuid(id) => Ok(Some(id)),
            Value::String(text) => Uuid::parse_str(&text)
                .map(Some)
                .map_err(|e| self.invalid(field, e)),
            other => Err(self.wrong_type(field, "null or uuid", &other)),
        }
    }

    fn timestamp(&mut self, field: &str) -> Result<DateTime<Utc>, MappingError> {
        let micros = match self.take(field)? {
            Value::TimestampMicros(micros) | Value::Long(micros) => micros,
            other => return Err(self.wrong_type(field, "timestamp-micros", &other)),
        };
        DateTime::from_timestamp_micros(micros)
            .ok_or_else(|| self.invalid(field, format!("{micros} µs is out of range")))
    }

    pub(crate) fn currency(&mut self, field: &str) -> Result<Currency, MappingError> {
        let code = self.string(field)?;
        Currency::new(&code).map_err(|e| self.invalid(field, e))
    }

    pub(crate) fn sku(&mut self, field: &str) -> Result<Sku, MappingError> {
        let sku = self.string(field)?;
        Sku::new(sku).map_err(|e| self.invalid(field, e))
    }

    pub(crate) fn money(&mut self, field: &str) -> Result<Money, MappingError> {
        let mut money = Fields::of("Money", self.take(field)?)?;
        Ok(Money::new(
            money.long("amount_minor")?,
            money.currency("currency")?,
        ))
    }

    pub(crate) fn order_line(&mut self, field: &str) -> Result<OrderLine, MappingError> {
        order_line_from(self.take(field)?)
    }

    pub(crate) fn order_lines(&mut self, field: &str) -> Result<Vec<OrderLine>, MappingError> {
        match self.take(field)? {
            Value::Array(items) => items.into_iter().map(order_line_from).collect(),
            other => Err(self.wrong_type(field, "array", &other)),
        }
    }

    /// The symbol of an enum field.
    pub(crate) fn enum_symbol(&mut self, field: &str) -> Result<String, MappingError> {
        match self.take(field)? {
            Value::Enum(_, symbol) | Value::String(symbol) => Ok(symbol),
            other => Err(self.wrong_type(field, "enum", &other)),
        }
    }

    pub(crate) fn invalid_symbol(&self, field: &str, symbol: &str) -> MappingError {
        self.invalid(field, format!("unknown symbol {symbol:?}"))
    }
}

fn order_line_from(value: Value) -> Result<OrderLine, MappingError> {
    let mut line = Fields::of("OrderLine", value)?;
    Ok(OrderLine {
        sku: line.sku("sku")?,
        quantity: line.quantity("quantity")?,
        unit_price: line.money("unit_price")?,
    })
}

/// Splits an event record into its metadata and its payload fields.
pub(crate) fn split_event_record(
    event_type: &str,
    value: Value,
) -> Result<(EventMetadata, Fields), MappingError> {
    let mut fields = Fields::of(event_type, value)?;
    let mut meta = Fields::of("EventMetadata", fields.take("metadata")?)?;
    let sequence = meta.long("sequence")?;
    let metadata = EventMetadata {
        event_id: meta.uuid("event_id")?,
        aggregate_type: meta.string("aggregate_type")?,
        aggregate_id: meta.string("aggregate_id")?,
        sequence: u64::try_from(sequence)
            .map_err(|_| meta.invalid("sequence", format!("{sequence} is negative")))?,
        correlation_id: meta.uuid("correlation_id")?,
        causation_id: meta.optional_uuid("causation_id")?,
        actor: meta.string("actor")?,
        occurred_at: meta.timestamp("occurred_at")?,
        idempotency_key: meta.optional_string("idempotency_key")?,
        traceparent: meta.optional_string("traceparent")?,
    };
    Ok((metadata, fields))
}

fn found(value: &Value) -> String {
    let mut text = format!("{value:?}");
    if text.len() > 80 {
        let mut end = 80;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}
