//! `shoulders model export`: a model's ledger record as standard metadata: a Hugging Face
//! model-card YAML header, an SPDX 3.0.1 JSON-LD document or a CycloneDX 1.6 ML-BOM.

use anyhow::{bail, Result};
use shoulders_ledger::{ContentStore, LedgerError, Reader};
use shoulders_state::State;
use std::io::Write;
use std::path::Path;

/// The output formats `--format` accepts.
pub const FORMATS: [&str; 3] = ["hf-card", "spdx", "cyclonedx"];

/// Print `model_id` in `format` (`hf-card`, `spdx` or `cyclonedx`) on stdout.
pub fn run(data_dir: &Path, model_id: &str, format: &str) -> Result<()> {
    if !FORMATS.contains(&format) {
        bail!("unknown format {format:?}; use hf-card, spdx or cyclonedx");
    }
    let dir = crate::data_dir(data_dir);
    let mut reader = Reader::open(&dir)?;
    let state = reader.state()?;
    let config = training_config(&ContentStore::new(&dir), &state, model_id)?;
    let attachments = shoulders_formats::Attachments {
        training_config: config.as_ref(),
    };
    let text = render(&state, reader.origin(), model_id, format, attachments)?;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// The training configuration `model_id`'s run names, from the content store: `None` when it
/// names none, or when this data directory does not hold it (a copy made without its
/// `content/`; the export then lacks only the hyperparameters). A corrupt document fails.
fn training_config(
    content: &ContentStore,
    state: &State,
    model_id: &str,
) -> Result<Option<serde_json::Map<String, serde_json::Value>>> {
    let Some(hash) = state
        .model(model_id)
        .and_then(|m| m.training.as_ref()?.config_hash.clone())
    else {
        return Ok(None);
    };
    match content.training_config(&hash) {
        Ok(config) => Ok(Some(config)),
        Err(LedgerError::TrainingConfigMissing(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The text `run` prints: the YAML block, or pretty JSON with a final newline.
///
/// Times and seeds come from the ledger, never the clock, so the same ledger always exports the
/// same bytes: SPDX `created` is the model's registration time, and the CycloneDX serial number
/// is derived from the log's origin, the model id and the registering record's log index.
pub fn render(
    state: &State,
    origin: &str,
    model_id: &str,
    format: &str,
    attachments: shoulders_formats::Attachments<'_>,
) -> Result<String> {
    let Some(model) = state.model(model_id) else {
        return Err(LedgerError::NotFound(format!("no model {model_id:?} in this ledger")).into());
    };
    // The model's own licence, as recorded on the ledger.
    let summary = model
        .license_id
        .as_ref()
        .and_then(|id| state.license(id))
        .map(|l| shoulders_formats::LicenseSummary {
            license_id: l.license_id.clone(),
            spdx_id: l.spdx_id.clone(),
            name: l.name.clone(),
            commercial_use: l.terms.commercial_use,
            attribution_required: l.terms.attribution_required,
            share_alike: l.terms.share_alike,
        });
    let license = summary.as_ref();
    let missing = || LedgerError::NotFound(format!("no model {model_id:?} in this ledger"));
    Ok(match format {
        "hf-card" => {
            shoulders_formats::hf_card_yaml(state, model_id, license).ok_or_else(missing)?
        }
        "spdx" => {
            let doc = shoulders_formats::spdx3_json_with(
                state,
                model_id,
                license,
                model.registered_ts_ms,
                attachments,
            )
            .ok_or_else(missing)?;
            serde_json::to_string_pretty(&doc)? + "\n"
        }
        "cyclonedx" => {
            let seed = format!("{origin}\n{model_id}\n{}", model.registered_at).into_bytes();
            let bom = shoulders_formats::cyclonedx_json_with(
                state,
                model_id,
                license,
                &seed,
                attachments,
            )
            .ok_or_else(missing)?;
            serde_json::to_string_pretty(&bom)? + "\n"
        }
        other => bail!("unknown format {other:?}; use hf-card, spdx or cyclonedx"),
    })
}
