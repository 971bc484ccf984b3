//! Makes an event schema self-contained by inlining the shared named types it references.
//!
//! Why: the schema registry may not support schema references, so every registered schema
//! must stand alone; yet each shared type must be defined once in source. Avro allows a
//! named type to be defined once per document and referenced by name afterwards, so the
//! definition is inlined at its **first** use in document order (the order a parser
//! defines names) and later uses stay references.
//!
//! Event schemas must reference shared types by their full name (`io.keel.common.Money`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// Inlines, at first use, every type of `shared` (full name → definition) that `schema`
/// references, recursively (a shared type may use another one).
pub(crate) fn inline_shared_types(schema: &Value, shared: &BTreeMap<String, Value>) -> Value {
    let mut schema = schema.clone();
    let mut defined = BTreeSet::new();
    inline(&mut schema, shared, &mut defined);
    schema
}

fn inline(schema: &mut Value, shared: &BTreeMap<String, Value>, defined: &mut BTreeSet<String>) {
    match schema {
        Value::String(name) => {
            if let Some(definition) = shared.get(name.as_str())
                && defined.insert(name.clone())
            {
                let mut definition = definition.clone();
                inline(&mut definition, shared, defined);
                *schema = definition;
            }
        }
        // A union: branches in order.
        Value::Array(branches) => {
            for branch in branches {
                inline(branch, shared, defined);
            }
        }
        Value::Object(object) => {
            let kind = object
                .get("type")
                .and_then(Value::as_str)
                .map(str::to_owned);
            match kind.as_deref() {
                Some("record" | "error") => {
                    if let Some(Value::Array(fields)) = object.get_mut("fields") {
                        for field in fields {
                            if let Some(field_type) = field.get_mut("type") {
                                inline(field_type, shared, defined);
                            }
                        }
                    }
                }
                Some("array") => {
                    if let Some(items) = object.get_mut("items") {
                        inline(items, shared, defined);
                    }
                }
                Some("map") => {
                    if let Some(values) = object.get_mut("values") {
                        inline(values, shared, defined);
                    }
                }
                // `{"type": "io.keel.common.Money"}`, or a nested schema object/union.
                _ => {
                    if let Some(inner) = object.get_mut("type") {
                        inline(inner, shared, defined);
                    }
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn shared() -> BTreeMap<String, Value> {
        let money = json!({"type": "record", "name": "Money", "namespace": "c",
            "fields": [{"name": "amount", "type": "long"}]});
        let line = json!({"type": "record", "name": "Line", "namespace": "c",
            "fields": [{"name": "price", "type": "c.Money"}]});
        BTreeMap::from([("c.Money".to_owned(), money), ("c.Line".to_owned(), line)])
    }

    #[test]
    fn inlines_at_first_use_in_document_order_and_recursively() {
        let event = json!({"type": "record", "name": "E", "namespace": "e", "fields": [
            {"name": "lines", "type": {"type": "array", "items": "c.Line"}},
            {"name": "total", "type": "c.Money"},
            {"name": "maybe", "type": ["null", "c.Money"]},
            {"name": "plain", "type": "string"}
        ]});
        let inlined = inline_shared_types(&event, &shared());
        let fields = &inlined["fields"];
        assert_eq!(fields[0]["type"]["items"]["name"], "Line");
        assert_eq!(
            fields[0]["type"]["items"]["fields"][0]["type"]["name"],
            "Money"
        );
        assert_eq!(fields[1]["type"], "c.Money");
        assert_eq!(fields[2]["type"], json!(["null", "c.Money"]));
        assert_eq!(fields[3]["type"], "string");
        apache_avro::Schema::parse(&inlined).unwrap();
    }

    #[test]
    fn inlines_inside_unions_maps_and_wrapped_types() {
        let event = json!({"type": "record", "name": "E", "fields": [
            {"name": "a", "type": ["null", "c.Money"], "default": null},
            {"name": "b", "type": {"type": "map", "values": "c.Line"}}
        ]});
        let inlined = inline_shared_types(&event, &shared());
        assert_eq!(inlined["fields"][0]["type"][1]["name"], "Money");
        assert_eq!(inlined["fields"][1]["type"]["values"]["name"], "Line");
        assert_eq!(
            inlined["fields"][1]["type"]["values"]["fields"][0]["type"],
            "c.Money"
        );
        apache_avro::Schema::parse(&inlined).unwrap();
    }
}
