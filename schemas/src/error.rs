/// An embedded schema file is broken. Only a defect in this crate produces one (the files
/// are compiled in and tested), so callers usually treat it as fatal at start-up.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The file is not JSON, or not a named Avro record.
    #[error("schema {file}: {reason}")]
    Malformed {
        /// The `.avsc` file.
        file: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Apache Avro rejected the (inlined) schema.
    #[error("schema {file} does not parse")]
    Avro {
        /// The `.avsc` file.
        file: &'static str,
        /// The parser's complaint.
        #[source]
        source: Box<apache_avro::Error>,
    },
}

/// A domain event could not be turned into its wire record, or a wire record into a domain
/// event. On the decoding side this means a poison message: retrying will not help.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    /// No schema (or no domain event) of this name in the catalog for this aggregate.
    #[error("unknown event type {event_type:?} for aggregate {aggregate}")]
    UnknownEventType {
        /// Aggregate type the decoder expected.
        aggregate: &'static str,
        /// The event type or record name that was asked for.
        event_type: String,
    },
    /// The metadata names another aggregate type than the event belongs to.
    #[error("metadata says aggregate {found:?}, event belongs to {expected:?}")]
    AggregateMismatch {
        /// The event's aggregate type.
        expected: &'static str,
        /// The metadata's aggregate type.
        found: String,
    },
    /// A record field is absent.
    #[error("{record}: missing field {field}")]
    MissingField {
        /// Record being decoded.
        record: String,
        /// Absent field.
        field: String,
    },
    /// A value has another Avro type than the contract says.
    #[error("{record}.{field}: expected {expected}, found {found}")]
    WrongType {
        /// Record being decoded.
        record: String,
        /// Offending field.
        field: String,
        /// Expected Avro type.
        expected: &'static str,
        /// Debug rendering of the value found (truncated).
        found: String,
    },
    /// A value has the right type but breaks a domain rule (bad currency, quantity out of
    /// range, invalid SKU, unknown enum symbol).
    #[error("{record}.{field}: {reason}")]
    InvalidValue {
        /// Record being decoded or encoded.
        record: String,
        /// Offending field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// Avro encoding, decoding or schema resolution failed.
    #[error("avro: {0}")]
    Avro(#[source] Box<apache_avro::Error>),
}

impl From<apache_avro::Error> for MappingError {
    fn from(error: apache_avro::Error) -> Self {
        Self::Avro(Box::new(error))
    }
}

/// The cqrs-es metadata map lacks a key or holds an unparsable value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// A required key is absent.
    #[error("metadata key {0:?} is missing")]
    Missing(&'static str),
    /// A value does not parse.
    #[error("metadata key {key:?}: {reason}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}
