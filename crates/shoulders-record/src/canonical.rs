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

/// Parse JSON that may only contain non-negative integers no larger than 2^53 − 1.
pub fn parse_integer_json(bytes: &[u8]) -> Result<Value, RecordError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| RecordError::MalformedJson(e.to_string()))?;
    check_numbers(&value, &mut String::from("$"))?;
    Ok(value)
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
