//! A Kafka message kept in a table as received (dead letters, held events), and the same
//! message rebuilt from its row.

use std::collections::BTreeMap;

use rdkafka::Message;
use rdkafka::Timestamp;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};

/// The message's headers as a JSON object of text values (`null` for a header without a
/// value); a header repeated keeps its last value.
pub fn headers_json(message: &OwnedMessage) -> serde_json::Value {
    let mut map = BTreeMap::new();
    if let Some(headers) = message.headers() {
        for header in headers.iter() {
            let value = header
                .value
                .map(|v| serde_json::Value::String(String::from_utf8_lossy(v).into_owned()))
                .unwrap_or(serde_json::Value::Null);
            map.insert(header.key.to_owned(), value);
        }
    }
    serde_json::Value::Object(map.into_iter().collect())
}

/// Headers from [`headers_json`]'s object (anything else gives none).
pub fn headers_from_json(json: &serde_json::Value) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new();
    if let serde_json::Value::Object(map) = json {
        for (key, value) in map {
            headers = headers.insert(Header {
                key,
                value: value.as_str(),
            });
        }
    }
    headers
}

/// Where a message came from and what it carried: a stored row's columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Kafka key.
    pub key: Option<Vec<u8>>,
    /// Value.
    pub payload: Option<Vec<u8>>,
    /// [`headers_json`].
    pub headers: serde_json::Value,
}

impl StoredMessage {
    /// From a row with the columns `topic`, `kafka_partition`, `kafka_offset`,
    /// `message_key`, `payload` and `headers` (as `dead_letters` and `retry_events` have).
    ///
    /// # Errors
    /// A column is missing or of another type.
    pub fn from_row(row: &sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row;
        Ok(Self {
            topic: row.try_get("topic")?,
            partition: row.try_get("kafka_partition")?,
            offset: row.try_get("kafka_offset")?,
            key: row.try_get("message_key")?,
            payload: row.try_get("payload")?,
            headers: row.try_get("headers")?,
        })
    }

    /// The message as the consumer had received it (without its timestamp).
    pub fn to_message(&self) -> OwnedMessage {
        OwnedMessage::new(
            self.payload.clone(),
            self.key.clone(),
            self.topic.clone(),
            Timestamp::NotAvailable,
            self.partition,
            self.offset,
            Some(headers_from_json(&self.headers)),
        )
    }
}
