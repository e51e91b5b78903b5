//! `shoulders license check | presets | preset`.

use crate::{print_json, CliError};
use anyhow::Result;
use serde_json::json;
use shoulders_ledger::{LedgerError, Reader};
use std::path::Path;

pub fn check(
    data_dir: &Path,
    model_id: &str,
    use_tag: &str,
    territory: Option<&str>,
    at_ms: Option<u64>,
    max_royalty_bps: Option<u32>,
) -> Result<()> {
    let state = Reader::open(&crate::data_dir(data_dir))?.state()?;
    let now = at_ms.unwrap_or_else(crate::now_ms);
    let decision = state
        .check_use(model_id, use_tag, territory, now, max_royalty_bps)
        .ok_or_else(|| LedgerError::NotFound(format!("no model {model_id:?} in this ledger")))?;
    let model = state.model(model_id).expect("checked above");
    print_json(&json!({
        "model_id": model_id,
        "use": use_tag,
        "territory": territory,
        "at_ms": now,
        "max_royalty_bps": max_royalty_bps,
        "allowed": decision.allowed,
        "reasons": decision.reasons,
        "notes": decision.notes,
        "price": decision.price,
        "royalties": decision.royalties,
        "licenses": model.effective.licenses,
    }))?;
    if decision.allowed {
        Ok(())
    } else {
        Err(CliError {
            code: "E_LICENSE_DENIED",
            message: format!(
                "{use_tag:?} use of {model_id} is not allowed: {}",
                decision.reasons.join("; ")
            ),
        }
        .into())
    }
}

pub fn presets() -> Result<()> {
    let list: Vec<_> = shoulders_license::PRESETS
        .iter()
        .map(|(name, display, spdx)| json!({"preset": name, "name": display, "spdx_id": spdx}))
        .collect();
    print_json(&list)
}

/// Print a `license.define` body for a preset, ready for `shoulders submit`.
pub fn preset(name: &str, license_id: &str) -> Result<()> {
    let (display, spdx, terms) = shoulders_license::preset(name).ok_or_else(|| CliError {
        code: "E_NOT_FOUND",
        message: format!(
            "no preset {name:?}; known: {}",
            shoulders_license::PRESETS
                .iter()
                .map(|p| p.0)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })?;
    print_json(&json!({"license_id": license_id, "name": display, "spdx_id": spdx, "terms": terms}))
}
