//! Declaration macros shared by the aggregate modules.
//!
//! Why a macro for events: the list of event type names is a contract (every name needs an Avro schema
//! in `schemas/`). Generating the list from the enum means a new variant is listed the moment
//! it exists, so the downstream "every event has a schema" test cannot be bypassed by
//! forgetting to update a hand-written list.

/// Declares a past-tense event enum whose variants all have named fields (possibly none),
/// and generates:
/// - `EVENT_TYPES`: every variant name, in declaration order;
/// - `EVENT_VERSION`: the payload version, `"1"` for every event today;
/// - `event_type_name()`: the variant's name as a `&'static str`;
/// - `cqrs_es::DomainEvent` with `event_type` = variant name, `event_version` = `EVENT_VERSION`.
macro_rules! domain_events {
    (
        $(#[$enum_meta:meta])*
        pub enum $name:ident {
            $(
                $(#[$variant_meta:meta])*
                $variant:ident { $($fields:tt)* }
            ),+ $(,)?
        }
    ) => {
        $(#[$enum_meta])*
        pub enum $name {
            $(
                $(#[$variant_meta])*
                $variant { $($fields)* },
            )+
        }

        impl $name {
            /// Every event type name of this aggregate, in declaration order.
            pub const EVENT_TYPES: &'static [&'static str] = &[$(stringify!($variant)),+];
            /// Version of every payload shape in this enum; bumped with an upcaster, never silently.
            pub const EVENT_VERSION: &'static str = "1";

            /// The event type name (the variant name), without allocating.
            pub fn event_type_name(&self) -> &'static str {
                match self {
                    $(Self::$variant { .. } => stringify!($variant),)+
                }
            }
        }

        impl ::cqrs_es::DomainEvent for $name {
            fn event_type(&self) -> String {
                self.event_type_name().to_owned()
            }

            fn event_version(&self) -> String {
                Self::EVENT_VERSION.to_owned()
            }
        }
    };
}

pub(crate) use domain_events;

/// Implements `From<Command> for Enum` for every command struct, so adapters can write
/// `AddStock { quantity }.into()` and the enum variant is always named after its struct,
/// and [`NamedCommand`](crate::NamedCommand) (an exhaustive match: a variant missing from
/// the list does not compile).
macro_rules! command_enum_from {
    ($enum:ident: $($command:ident),+ $(,)?) => {
        $(
            impl From<$command> for $enum {
                fn from(command: $command) -> Self {
                    Self::$command(command)
                }
            }
        )+

        impl $crate::NamedCommand for $enum {
            fn command_name(&self) -> &'static str {
                match self {
                    $(Self::$command(_) => stringify!($command),)+
                }
            }
        }
    };
}

pub(crate) use command_enum_from;
