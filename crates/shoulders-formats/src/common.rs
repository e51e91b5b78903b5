//! What the three exports share: the set of models and datasets one export covers, stable IRIs,
//! time formatting and licence-id helpers.

use serde_json::{Map, Value};
use shoulders_record::{Framework, Relation, TrainingRun};
use shoulders_state::{Dataset, Model, State};
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// The name and version tools are credited with in SPDX and CycloneDX output.
pub(crate) const TOOL_NAME: &str = "shoulders-formats";
pub(crate) const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The models and datasets one export describes.
pub(crate) struct Scope<'a> {
    pub state: &'a State,
    /// The exported model first, then its ancestors, nearest first (as [`State::ancestors`]).
    pub models: Vec<&'a Model>,
    /// The training datasets of every model in `models`, each once, in order of first mention.
    pub datasets: Vec<&'a Dataset>,
}

impl<'a> Scope<'a> {
    pub fn new(state: &'a State, model_id: &str) -> Option<Self> {
        let subject = state.model(model_id)?;
        let mut models = vec![subject];
        models.extend(
            state
                .ancestors(model_id)
                .iter()
                .filter_map(|id| state.model(id)),
        );
        let mut seen = BTreeSet::new();
        let datasets = models
            .iter()
            .flat_map(|m| m.datasets.iter())
            .filter(|id| seen.insert(id.as_str()))
            .filter_map(|id| state.dataset(id))
            .collect();
        Some(Scope {
            state,
            models,
            datasets,
        })
    }

    pub fn subject(&self) -> &'a Model {
        self.models[0]
    }

    /// Every actor the export mentions (model and dataset owners, data contributors), sorted.
    pub fn handles(&self) -> BTreeSet<&'a str> {
        let mut out = BTreeSet::new();
        for m in &self.models {
            out.insert(m.owner.as_str());
        }
        for d in &self.datasets {
            out.insert(d.owner.as_str());
            out.extend(d.contributors.keys().map(String::as_str));
        }
        out
    }

    /// The training frameworks the models name, each `(name, version)` once, in order of first
    /// mention (the exported model first).
    pub fn frameworks(&self) -> Vec<&'a Framework> {
        let mut out: Vec<&'a Framework> = Vec::new();
        for f in self
            .models
            .iter()
            .filter_map(|m| m.training.as_ref()?.framework.as_ref())
        {
            if !out.contains(&f) {
                out.push(f);
            }
        }
        out
    }

    /// An actor's display name, falling back to the handle.
    pub fn actor_name<'b>(&self, handle: &'b str) -> &'b str
    where
        'a: 'b,
    {
        match self.state.actor(handle) {
            Some(a) => a.name.as_str(),
            None => handle,
        }
    }

    pub fn actor_url(&self, handle: &str) -> Option<&'a str> {
        self.state.actor(handle).and_then(|a| a.url.as_deref())
    }
}

/// Percent-encode everything but RFC 3986 unreserved characters and `/`.
pub(crate) fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

pub(crate) fn model_iri(model_id: &str) -> String {
    format!("urn:shoulders:model:{}", pct(model_id))
}

pub(crate) fn file_iri(model_id: &str, path: &str) -> String {
    format!("urn:shoulders:model:{}:file:{}", pct(model_id), pct(path))
}

pub(crate) fn dataset_iri(dataset_id: &str) -> String {
    format!("urn:shoulders:dataset:{}", pct(dataset_id))
}

pub(crate) fn actor_iri(handle: &str) -> String {
    format!("urn:shoulders:actor:{}", pct(handle))
}

pub(crate) fn license_iri(license_id: &str) -> String {
    format!("urn:shoulders:license:{}", pct(license_id))
}

/// A training framework's IRI: one per `(name, version)`, shared by every model that used it.
pub(crate) fn framework_iri(f: &Framework) -> String {
    format!(
        "urn:shoulders:framework:{}@{}",
        pct(&f.name),
        pct(&f.version)
    )
}

/// Watt-hours as a decimal number of kWh (`2400` → `2.4`).
pub(crate) fn kwh(wh: u64) -> String {
    shoulders_record::kwh_text(wh)
}

/// The top-level scalar entries of a training configuration, sorted by key: strings as they
/// are, numbers and booleans as JSON writes them, `null` as no value. Nested objects and
/// arrays have no place in the standards' flat lists; they stay in the ledger's copy.
pub(crate) fn hyperparameters(config: &Map<String, Value>) -> Vec<(&str, Option<String>)> {
    let mut out: Vec<(&str, Option<String>)> = config
        .iter()
        .filter_map(|(k, v)| {
            let text = match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                Value::Null => None,
                Value::Array(_) | Value::Object(_) => return None,
            };
            Some((k.as_str(), text))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(b.0));
    out
}

/// A training run in words (SPDX `ai_informationAboutTraining`): framework, code, compute,
/// configuration and credits, each when stated.
pub(crate) fn training_text(scope: &Scope<'_>, t: &TrainingRun) -> String {
    let mut parts = Vec::new();
    if let Some(f) = &t.framework {
        parts.push(format!("Framework: {} {}.", f.name, f.version));
    }
    if let Some(c) = &t.code {
        parts.push(format!("Code: {} at commit {}.", c.repository, c.commit));
    }
    if let Some(c) = &t.compute {
        let mut compute = Vec::new();
        if let Some(h) = &c.hardware {
            compute.push(h.clone());
        }
        if let Some(h) = c.accelerator_hours {
            compute.push(format!("{h} accelerator hours"));
        }
        if let Some(e) = c.energy_wh {
            compute.push(format!("{} kWh", kwh(e)));
        }
        if let Some(r) = &c.region {
            compute.push(format!("region {r}"));
        }
        parts.push(format!("Compute: {}.", compute.join(", ")));
    }
    if let Some(h) = &t.config_hash {
        parts.push(format!(
            "Configuration: {h} (a JSON document in the ledger's content store)."
        ));
    }
    if !t.credits.is_empty() {
        let credits: Vec<String> = t
            .credits
            .iter()
            .map(|c| format!("{} ({})", scope.actor_name(&c.actor), c.role.as_str()))
            .collect();
        parts.push(format!("Credited: {}.", credits.join(", ")));
    }
    parts.join(" ")
}

/// The hex digest of a ledger `sha256:<hex>` reference.
pub(crate) fn sha256_hex(r: &str) -> &str {
    r.strip_prefix("sha256:").unwrap_or(r)
}

/// Unix milliseconds as `YYYY-MM-DDTHH:MM:SSZ` (UTC, whole seconds). Years past 9999 cannot be
/// written in this form and are clamped to the last second of 9999.
pub(crate) fn iso8601(ms: u64) -> String {
    const MAX_SECS: u64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    let secs = (ms / 1000).min(MAX_SECS);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day); Howard Hinnant's
/// `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The Hub's `base_model_relation` value for a ledger relation (`distilled` has none).
pub(crate) fn hf_relation(r: Relation) -> Option<&'static str> {
    match r {
        Relation::Finetune => Some("finetune"),
        Relation::Adapter => Some("adapter"),
        Relation::Merge => Some("merge"),
        Relation::Quantized => Some("quantized"),
        Relation::Distilled => None,
    }
}

/// `acme/community-1` as an SPDX `LicenseRef-` id (letters, digits, `.` and `-` only).
pub(crate) fn license_ref(license_id: &str) -> String {
    let idstring: String = license_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("LicenseRef-shoulders-{idstring}")
}

/// The licence facts as one sentence (SPDX comments).
pub(crate) fn license_terms_text(l: &crate::LicenseSummary) -> String {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    format!(
        "shoulders licence {}: commercial use {}; attribution required {}; share-alike {}",
        l.license_id,
        yes_no(l.commercial_use),
        yes_no(l.attribution_required),
        yes_no(l.share_alike)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_known_instants() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(999), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(1_767_225_599_000), "2025-12-31T23:59:59Z");
        assert_eq!(iso8601(1_767_225_600_000), "2026-01-01T00:00:00Z");
        assert_eq!(iso8601(4_107_542_400_000), "2100-03-01T00:00:00Z");
        assert_eq!(iso8601(u64::MAX), "9999-12-31T23:59:59Z");
        assert_eq!(iso8601((1 << 53) - 1), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn energy_and_hyperparameters_as_text() {
        assert_eq!(kwh(2400), "2.4");
        assert_eq!(kwh(1), "0.001");
        assert_eq!(kwh(12_000), "12");
        assert_eq!(kwh(0), "0");
        assert_eq!(kwh(1_050), "1.05");
        let config: Map<String, Value> = serde_json::from_str(
            r#"{"lr": 0.0002, "name": "run a", "fp16": true, "seed": null, "sched": {"t": 1}, "ids": [1], "epochs": 3}"#,
        )
        .unwrap();
        assert_eq!(
            hyperparameters(&config),
            vec![
                ("epochs", Some("3".to_string())),
                ("fp16", Some("true".to_string())),
                ("lr", Some("0.0002".to_string())),
                ("name", Some("run a".to_string())),
                ("seed", None),
            ]
        );
    }

    #[test]
    fn percent_encoding_and_license_refs() {
        assert_eq!(pct("acme/base-1.0_x~"), "acme/base-1.0_x~");
        assert_eq!(pct("a b:c#é"), "a%20b%3Ac%23%C3%A9");
        assert_eq!(
            license_ref("acme/community_1.0"),
            "LicenseRef-shoulders-acme-community-1.0"
        );
    }
}
