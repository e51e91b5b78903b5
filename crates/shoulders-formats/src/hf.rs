//! Hugging Face model-card YAML front matter.
//!
//! Keys follow the Hub's model-card metadata: `license` (an identifier from the Hub's licence
//! list, or `other` with `license_name`), `base_model` (a list of model ids),
//! `base_model_relation` (`adapter`, `merge`, `quantized` or `finetune`), `datasets` and `tags`.
//! The `shoulders:` mapping carries what the Hub has no key for: the ledger id, log position,
//! every parent with its relation (including `distilled`) and each file's SHA-256.

use crate::common::hf_relation;
use crate::LicenseSummary;
use shoulders_state::State;
use std::fmt::Write as _;

/// Licence identifiers the Hub accepts in `license:` (its "Licenses" documentation page), less
/// `unknown` and `other`.
const HUB_LICENSES: &[&str] = &[
    "apache-2.0",
    "mit",
    "openrail",
    "bigscience-openrail-m",
    "creativeml-openrail-m",
    "bigscience-bloom-rail-1.0",
    "bigcode-openrail-m",
    "afl-3.0",
    "artistic-2.0",
    "bsl-1.0",
    "bsd",
    "bsd-2-clause",
    "bsd-3-clause",
    "bsd-3-clause-clear",
    "c-uda",
    "cc",
    "cc0-1.0",
    "cc-by-2.0",
    "cc-by-2.5",
    "cc-by-3.0",
    "cc-by-4.0",
    "cc-by-sa-3.0",
    "cc-by-sa-4.0",
    "cc-by-nc-2.0",
    "cc-by-nc-3.0",
    "cc-by-nc-4.0",
    "cc-by-nd-4.0",
    "cc-by-nc-nd-3.0",
    "cc-by-nc-nd-4.0",
    "cc-by-nc-sa-2.0",
    "cc-by-nc-sa-3.0",
    "cc-by-nc-sa-4.0",
    "cdla-sharing-1.0",
    "cdla-permissive-1.0",
    "cdla-permissive-2.0",
    "wtfpl",
    "ecl-2.0",
    "epl-1.0",
    "epl-2.0",
    "etalab-2.0",
    "eupl-1.1",
    "eupl-1.2",
    "agpl-3.0",
    "gfdl",
    "gpl",
    "gpl-2.0",
    "gpl-3.0",
    "lgpl",
    "lgpl-2.1",
    "lgpl-3.0",
    "isc",
    "h-research",
    "intel-research",
    "lppl-1.3c",
    "ms-pl",
    "apple-ascl",
    "apple-amlr",
    "mpl-2.0",
    "odc-by",
    "odbl",
    "openmdw-1.0",
    "openrail++",
    "osl-3.0",
    "postgresql",
    "ofl-1.1",
    "ncsa",
    "unlicense",
    "zlib",
    "pddl",
    "lgpl-lr",
    "deepfloyd-if-license",
    "fair-noncommercial-research-license",
    "llama2",
    "llama3",
    "llama3.1",
    "llama3.2",
    "llama3.3",
    "llama4",
    "grok2-community",
    "gemma",
];

/// The Hub identifier for an SPDX licence id, if the Hub lists it.
pub(crate) fn hub_license(spdx_id: &str) -> Option<String> {
    let mut id = spdx_id.to_ascii_lowercase();
    if ["gpl-", "lgpl-", "agpl-"].iter().any(|f| id.starts_with(f)) {
        for suffix in ["-only", "-or-later"] {
            if let Some(stripped) = id.strip_suffix(suffix) {
                id = stripped.to_string();
            }
        }
    }
    let id = match id.as_str() {
        "odc-by-1.0" => "odc-by".to_string(),
        "odbl-1.0" => "odbl".to_string(),
        "pddl-1.0" => "pddl".to_string(),
        _ => id,
    };
    HUB_LICENSES.contains(&id.as_str()).then_some(id)
}

/// A `license_name` for `license: other`: lowercase letters, digits, `.` and `-`.
fn license_name(l: &LicenseSummary) -> String {
    l.spdx_id
        .as_deref()
        .unwrap_or(&l.license_id)
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// A YAML scalar: plain when it cannot be misread (starts with a letter, only `A-Z a-z 0-9 . _
/// / -`, not a YAML 1.1 boolean or null word), otherwise double-quoted with JSON escapes (a JSON
/// string is a valid YAML double-quoted scalar).
fn scalar(s: &str) -> String {
    const WORDS: [&str; 9] = ["y", "n", "yes", "no", "true", "false", "on", "off", "null"];
    let plain = s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'))
        && !WORDS.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        s.to_string()
    } else {
        serde_json::Value::String(s.to_string()).to_string()
    }
}

pub(crate) fn card(
    state: &State,
    model_id: &str,
    license: Option<&LicenseSummary>,
) -> Option<String> {
    let m = state.model(model_id)?;
    let mut y = String::from("---\n");
    // `write!` into a String cannot fail.
    if let Some(l) = license {
        match l.spdx_id.as_deref().and_then(hub_license) {
            Some(id) => {
                let _ = writeln!(y, "license: {}", scalar(&id));
            }
            None => {
                y.push_str("license: other\n");
                let _ = writeln!(y, "license_name: {}", scalar(&license_name(l)));
            }
        }
    }
    if !m.parents.is_empty() {
        y.push_str("base_model:\n");
        for p in &m.parents {
            let _ = writeln!(y, "- {}", scalar(&p.model_id));
        }
        let first = m.parents[0].relation;
        if m.parents.iter().all(|p| p.relation == first) {
            if let Some(r) = hf_relation(first) {
                let _ = writeln!(y, "base_model_relation: {r}");
            }
        }
    }
    if !m.datasets.is_empty() {
        y.push_str("datasets:\n");
        for d in &m.datasets {
            let _ = writeln!(y, "- {}", scalar(d));
        }
    }
    y.push_str("tags:\n- shoulders\n");
    y.push_str("shoulders:\n");
    let _ = writeln!(y, "  model_id: {}", scalar(&m.model_id));
    let _ = writeln!(y, "  name: {}", scalar(&m.name));
    let _ = writeln!(y, "  owner: {}", scalar(&m.owner));
    let _ = writeln!(y, "  log_index: {}", m.registered_at);
    let _ = writeln!(y, "  registered_ts_ms: {}", m.registered_ts_ms);
    let license_id = license
        .map(|l| l.license_id.as_str())
        .or(m.license_id.as_deref());
    if let Some(id) = license_id {
        let _ = writeln!(y, "  license_id: {}", scalar(id));
    }
    if !m.parents.is_empty() {
        y.push_str("  parents:\n");
        for p in &m.parents {
            let _ = writeln!(y, "  - model_id: {}", scalar(&p.model_id));
            let _ = writeln!(y, "    relation: {}", p.relation.as_str());
        }
    }
    if !m.artifacts.is_empty() {
        y.push_str("  artifacts:\n");
        for a in &m.artifacts {
            let _ = writeln!(y, "  - path: {}", scalar(&a.path));
            let _ = writeln!(y, "    size_bytes: {}", a.size_bytes);
            let _ = writeln!(y, "    sha256: {}", scalar(&a.sha256));
            if !a.tensors.is_empty() {
                let _ = writeln!(y, "    tensors: {}", a.tensors.len());
            }
        }
    }
    y.push_str("---\n");
    Some(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_licence_mapping() {
        assert_eq!(hub_license("Apache-2.0").as_deref(), Some("apache-2.0"));
        assert_eq!(hub_license("MIT").as_deref(), Some("mit"));
        assert_eq!(hub_license("GPL-3.0-only").as_deref(), Some("gpl-3.0"));
        assert_eq!(
            hub_license("LGPL-2.1-or-later").as_deref(),
            Some("lgpl-2.1")
        );
        assert_eq!(hub_license("ODbL-1.0").as_deref(), Some("odbl"));
        assert_eq!(
            hub_license("CC-BY-NC-SA-4.0").as_deref(),
            Some("cc-by-nc-sa-4.0")
        );
        assert_eq!(hub_license("LicenseRef-acme"), None);
        assert_eq!(hub_license("0BSD"), None);
    }

    #[test]
    fn scalars_quote_what_yaml_could_misread() {
        assert_eq!(scalar("acme/base"), "acme/base");
        assert_eq!(scalar("model.safetensors"), "model.safetensors");
        assert_eq!(scalar("yes"), "\"yes\"");
        assert_eq!(scalar("No"), "\"No\"");
        assert_eq!(scalar("1.0"), "\"1.0\"");
        assert_eq!(scalar("2024-01-01"), "\"2024-01-01\"");
        assert_eq!(scalar("sha256:ab"), "\"sha256:ab\"");
        assert_eq!(scalar("a b # c"), "\"a b # c\"");
        assert_eq!(scalar("quote\"d\n"), "\"quote\\\"d\\n\"");
        assert_eq!(scalar(""), "\"\"");
    }
}
