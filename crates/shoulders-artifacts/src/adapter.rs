//! A PEFT adapter's `adapter_config.json`: which base modules the adapter targets, its rank
//! and scale, as the record's [`AdapterConfig`] keeps them.
//!
//! Only the four fields a parameter diff uses are read; everything else in the file (paths,
//! dropout, task type, …) is ignored. The file is read with an explicit size limit
//! ([`MAX_ADAPTER_CONFIG_BYTES`]) and a file that is not the JSON PEFT writes is refused with
//! `E_ADAPTER_CONFIG_INVALID` rather than half-read: a record states what the adapter is.

use crate::files::{read_regular_file, FileError};
use crate::ArtifactError;
use serde_json::Value;
use shoulders_record::{
    validate, AdapterConfig, MAX_ADAPTER_TARGETS, MAX_ADAPTER_TARGET_BYTES, MAX_SAFE_INTEGER,
};
use std::path::Path;

/// Largest `adapter_config.json` read (PEFT writes about 1 KiB).
pub const MAX_ADAPTER_CONFIG_BYTES: u64 = 1024 * 1024;

/// The file name PEFT gives an adapter's configuration, at the top of the directory.
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";

/// Read an `adapter_config.json` at `path` (a regular file, not a link); `Ok(None)` when there
/// is none.
pub fn read_adapter_config(path: &Path) -> Result<Option<AdapterConfig>, ArtifactError> {
    let bad = |reason: String| ArtifactError::BadAdapterConfig {
        path: path.display().to_string(),
        reason,
    };
    let bytes = match read_regular_file(path, MAX_ADAPTER_CONFIG_BYTES) {
        Err(FileError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(None)
        }
        Err(FileError::TooLarge { .. }) => {
            return Err(bad(format!(
                "larger than the {MAX_ADAPTER_CONFIG_BYTES}-byte limit"
            )))
        }
        Err(e) => return Err(e.into()),
        Ok(bytes) => bytes,
    };
    parse_adapter_config(&bytes).map(Some).map_err(bad)
}

/// Parse the JSON of an `adapter_config.json`.
///
/// * `peft_type`: a string such as `LORA` (up to 64 characters of `[A-Za-z0-9._:-]`) or absent;
/// * `target_modules`: a list of module names (kept sorted, duplicates dropped), or one string
///   (a regular expression or `all-linear`, kept as written), or absent; at most
///   [`MAX_ADAPTER_TARGETS`] entries of at most [`MAX_ADAPTER_TARGET_BYTES`] bytes, no control
///   characters;
/// * `r`: a non-negative integer or absent;
/// * `lora_alpha`: a non-negative integer or absent. PEFT types it as an integer, but Python
///   does not enforce that: a fractional value is not an error, it is left out of the record
///   (which holds integers only).
///
/// Integers may be written as `16` or `16.0`; anything else of the wrong type is an error.
pub fn parse_adapter_config(bytes: &[u8]) -> Result<AdapterConfig, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Object(obj) = value else {
        return Err("must be a JSON object".into());
    };
    let peft_type = match obj.get("peft_type") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            validate::tag("peft_type", s, 64).map_err(|e| e.to_string())?;
            Some(s.clone())
        }
        Some(_) => return Err("`peft_type` must be a string".into()),
    };
    let mut target_modules: Vec<String> = match obj.get("target_modules") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => {
            if items.len() > MAX_ADAPTER_TARGETS {
                return Err(format!(
                    "`target_modules` names {} modules; the limit is {MAX_ADAPTER_TARGETS}",
                    items.len()
                ));
            }
            items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| "`target_modules` entries must be strings".to_string())
                })
                .collect::<Result<_, _>>()?
        }
        Some(_) => return Err("`target_modules` must be a string or a list of strings".into()),
    };
    target_modules.sort();
    target_modules.dedup();
    for m in &target_modules {
        validate::line("target_modules", m, MAX_ADAPTER_TARGET_BYTES).map_err(|e| e.to_string())?;
    }
    let r = match integer(&obj, "r")? {
        Integer::Absent => None,
        Integer::Whole(n) => Some(n),
        Integer::Fraction => return Err("`r` must be a non-negative integer".into()),
    };
    let lora_alpha = match integer(&obj, "lora_alpha")? {
        Integer::Whole(n) => Some(n),
        Integer::Absent | Integer::Fraction => None,
    };
    Ok(AdapterConfig {
        peft_type,
        target_modules,
        r,
        lora_alpha,
    })
}

enum Integer {
    Absent,
    Whole(u64),
    /// A number that is not a whole number within `0..=2^53-1`.
    Fraction,
}

fn integer(obj: &serde_json::Map<String, Value>, key: &str) -> Result<Integer, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(Integer::Absent),
        Some(Value::Number(n)) => {
            if let Some(u) = n.as_u64() {
                return Ok(if u <= MAX_SAFE_INTEGER {
                    Integer::Whole(u)
                } else {
                    Integer::Fraction
                });
            }
            // 16.0 is 16; the bound keeps the conversion exact.
            match n.as_f64() {
                Some(f) if f >= 0.0 && f.fract() == 0.0 && f <= MAX_SAFE_INTEGER as f64 => {
                    Ok(Integer::Whole(f as u64))
                }
                _ => Ok(Integer::Fraction),
            }
        }
        Some(_) => Err(format!("`{key}` must be a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_peft_writes() {
        let c = parse_adapter_config(
            br#"{"peft_type":"LORA","target_modules":["v_proj","q_proj","q_proj"],"r":8,"lora_alpha":16.0,"lora_dropout":0.05,"task_type":"CAUSAL_LM"}"#,
        )
        .unwrap();
        assert_eq!(
            c,
            AdapterConfig {
                peft_type: Some("LORA".into()),
                target_modules: vec!["q_proj".into(), "v_proj".into()],
                r: Some(8),
                lora_alpha: Some(16),
            }
        );
        let c =
            parse_adapter_config(br#"{"target_modules":"all-linear","lora_alpha":0.5}"#).unwrap();
        assert_eq!(c.target_modules, vec!["all-linear".to_string()]);
        assert_eq!((c.r, c.lora_alpha, c.peft_type), (None, None, None));
    }

    #[test]
    fn refuses_what_is_not_a_peft_config() {
        for bad in [
            &b"not json"[..],
            b"[1,2]",
            br#"{"peft_type":3}"#,
            br#"{"peft_type":"LO RA"}"#,
            br#"{"target_modules":[1]}"#,
            br#"{"target_modules":{"a":1}}"#,
            br#"{"target_modules":["a\nb"]}"#,
            br#"{"target_modules":[""]}"#,
            br#"{"r":-1}"#,
            br#"{"r":1.5}"#,
            br#"{"r":"8"}"#,
            br#"{"lora_alpha":"16"}"#,
        ] {
            assert!(
                parse_adapter_config(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let many: Vec<String> = (0..=MAX_ADAPTER_TARGETS).map(|i| format!("m{i}")).collect();
        let text = serde_json::json!({ "target_modules": many }).to_string();
        assert!(parse_adapter_config(text.as_bytes())
            .unwrap_err()
            .contains("limit"));
        let long = "x".repeat(MAX_ADAPTER_TARGET_BYTES + 1);
        let text = serde_json::json!({ "target_modules": [long] }).to_string();
        assert!(parse_adapter_config(text.as_bytes()).is_err());
    }
}
