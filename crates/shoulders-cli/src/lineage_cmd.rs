//! `shoulders lineage`: a model's provenance (ancestors, descendants, the datasets of its whole
//! ancestry and their contributors) as JSON, Graphviz DOT or a Mermaid flowchart.

use anyhow::{bail, Result};
use shoulders_ledger::{LedgerError, Reader};
use shoulders_state::State;
use std::io::Write;
use std::path::Path;

/// The output formats `--format` accepts.
pub const FORMATS: [&str; 3] = ["json", "dot", "mermaid"];

/// Print the provenance of `model_id` in `format` (`json`, `dot` or `mermaid`) on stdout.
pub fn run(data_dir: &Path, model_id: &str, format: &str) -> Result<()> {
    if !FORMATS.contains(&format) {
        bail!("unknown format {format:?}; use json, dot or mermaid");
    }
    let state = Reader::open(&crate::data_dir(data_dir))?.state()?;
    let text = render(&state, model_id, format)?;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// The text `run` prints: pretty JSON (with a final newline), DOT or Mermaid.
pub fn render(state: &State, model_id: &str, format: &str) -> Result<String> {
    let Some(p) = shoulders_state::provenance(state, model_id) else {
        return Err(LedgerError::NotFound(format!("no model {model_id:?} in this ledger")).into());
    };
    Ok(match format {
        "json" => serde_json::to_string_pretty(&p)? + "\n",
        "dot" => shoulders_state::to_dot(&p),
        "mermaid" => shoulders_state::to_mermaid(&p),
        other => bail!("unknown format {other:?}; use json, dot or mermaid"),
    })
}
