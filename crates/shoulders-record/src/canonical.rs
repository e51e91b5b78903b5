//! Canonical JSON: object keys sorted by their UTF-8 bytes, no insignificant whitespace,
//! strings escaped as `serde_json` does (which matches RFC 8785 for the characters it escapes),
//! and only non-negative integers up to 2^53 − 1. For records whose keys are ASCII — all keys
//! defined by this crate are — this is exactly RFC 8785 (JCS).

use crate::{RecordError, MAX_SAFE_INTEGER};
use serde_json::Value;

/// Canonical bytes of a JSON value. `serde_json`'s map is a `BTreeMap` (the `preserve_order`
/// feature is not enabled in this workspace), so serialisation already sorts keys.
pub fn canonical_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("serialising a serde_json::Value cannot fail")
}

/// Parse JSON that may only contain non-negative integers no larger than 2^53 − 1 and no
/// repeated object keys (which `serde_json::Value` would otherwise silently collapse).
pub fn parse_integer_json(bytes: &[u8]) -> Result<Value, RecordError> {
    let StrictValue(value) =
        serde_json::from_slice(bytes).map_err(|e| RecordError::MalformedJson(e.to_string()))?;
    check_numbers(&value, &mut String::from("$"))?;
    Ok(value)
}

/// A JSON value whose objects may not repeat a key.
struct StrictValue(Value);

impl<'de> serde::Deserialize<'de> for StrictValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let StrictValue(v) = map.next_value()?;
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
            }
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

fn check_numbers(value: &Value, path: &mut String) -> Result<(), RecordError> {
    match value {
        Value::Number(n) => match n.as_u64() {
            Some(v) if v <= MAX_SAFE_INTEGER => Ok(()),
            _ => Err(RecordError::BadNumber { path: path.clone() }),
        },
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                check_numbers(item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Object(map) => {
            for (k, item) in map {
                let len = path.len();
                path.push('.');
                path.push_str(k);
                check_numbers(item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sorted_and_whitespace_dropped() {
        let v = parse_integer_json(br#"{ "b": 1, "a": {"z": [1, 2], "y": "\u00e9\n"} }"#).unwrap();
        assert_eq!(
            canonical_bytes(&v),
            "{\"a\":{\"y\":\"é\\n\",\"z\":[1,2]},\"b\":1}".as_bytes()
        );
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        for bad in [
            r#"{"a":1,"a":1}"#,
            r#"{"x":{"b":1,"b":2}}"#,
            r#"[{"c":1,"c":1}]"#,
        ] {
            let err = parse_integer_json(bad.as_bytes()).unwrap_err();
            assert_eq!(err.code(), "E_RECORD_MALFORMED", "{bad}");
            assert!(err.to_string().contains("duplicate key"), "{err}");
        }
    }

    #[test]
    fn floats_negatives_and_huge_integers_are_refused() {
        for bad in [
            r#"{"a":1.5}"#,
            r#"{"a":-1}"#,
            r#"{"a":[9007199254740992]}"#,
            r#"{"a":1e3}"#,
        ] {
            let err = parse_integer_json(bad.as_bytes()).unwrap_err();
            assert_eq!(err.code(), "E_RECORD_BAD_NUMBER", "{bad}");
        }
        assert!(parse_integer_json(br#"{"a":9007199254740991}"#).is_ok());
    }
}
