//! CycloneDX 1.6 ML-BOM.
//!
//! * `metadata.component`: the exported model (`machine-learning-model`), with its licence (an
//!   SPDX `expression`, so any SPDX id validates, or a named licence), its files as nested `file`
//!   components carrying SHA-256 hashes, `modelCard.modelParameters.datasets` referring to its
//!   training datasets, and `pedigree.ancestors` naming its direct parents.
//! * `components`: every ancestor model (nearest first, each once) built the same way, then every
//!   training dataset of the model and its ancestors (`data`, with a `dataset` entry in `data`).
//! * `dependencies`: each model depends on its direct parents, its datasets and its training
//!   framework; datasets and frameworks have no dependencies and are listed with just their
//!   `ref`, as the spec asks for leaves.
//! * A training run: the framework as a `framework` component (one per name and version),
//!   the training energy as `modelCard.considerations.environmentalConsiderations
//!   .energyConsumptions` (activity `training`, in kWh), the code as a `vcs` external reference,
//!   and everything without a CycloneDX field (configuration hash, hyperparameters, credits,
//!   compute) as `shoulders:training.*` / `shoulders:hyperparameter:*` model-card properties.
//!
//! `bom-ref`s are the `urn:shoulders:` IRIs. Ledger facts with no CycloneDX field are
//! `shoulders:`-namespaced `properties`.

use crate::common::{
    dataset_iri, framework_iri, hyperparameters, kwh, model_iri, sha256_hex, Scope, TOOL_NAME,
    TOOL_VERSION,
};
use crate::{Attachments, LicenseSummary};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use shoulders_state::{Dataset, Model, State};

const SCHEMA: &str = "http://cyclonedx.org/schema/bom-1.6.schema.json";

/// `urn:uuid:` of an RFC 9562 version-8 UUID built from SHA-256 of a domain tag and `seed`.
pub(crate) fn serial_number(seed: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"shoulders/cyclonedx/serial/v1\n");
    h.update(seed);
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn property(name: &str, value: impl ToString) -> Value {
    json!({"name": name, "value": value.to_string()})
}

fn supplier(scope: &Scope<'_>, handle: &str) -> Value {
    let mut o = Map::new();
    o.insert("name".into(), scope.actor_name(handle).into());
    if let Some(url) = scope.actor_url(handle) {
        o.insert("url".into(), json!([url]));
    }
    Value::Object(o)
}

fn licenses(l: &LicenseSummary) -> Value {
    match &l.spdx_id {
        Some(id) => json!([{"expression": id, "acknowledgement": "declared"}]),
        None => json!([{"license": {"name": l.name, "acknowledgement": "declared"}}]),
    }
}

/// The model card's training facts: the energy as an `energyConsumptions` entry, the rest as
/// properties (CycloneDX has no field for hyperparameters, credits or compute).
fn training_card(m: &Model, config: Option<&Map<String, Value>>) -> (Option<Value>, Vec<Value>) {
    let Some(t) = &m.training else {
        return (None, Vec::new());
    };
    let mut props = Vec::new();
    if let Some(h) = &t.config_hash {
        props.push(property("shoulders:training.config_hash", h));
    }
    if let Some(f) = &t.framework {
        props.push(property(
            "shoulders:training.framework",
            format!("{} {}", f.name, f.version),
        ));
    }
    if let Some(c) = &t.code {
        props.push(property(
            "shoulders:training.code.repository",
            &c.repository,
        ));
        props.push(property("shoulders:training.code.commit", &c.commit));
    }
    for c in &t.credits {
        props.push(property(
            "shoulders:training.credit",
            format!("{}:{}", c.actor, c.role.as_str()),
        ));
    }
    let mut energy = None;
    if let Some(c) = &t.compute {
        if let Some(h) = &c.hardware {
            props.push(property("shoulders:training.compute.hardware", h));
        }
        if let Some(h) = c.accelerator_hours {
            props.push(property("shoulders:training.compute.accelerator_hours", h));
        }
        if let Some(wh) = c.energy_wh {
            props.push(property("shoulders:training.compute.energy_wh", wh));
            // A JSON number of kWh, as the schema asks; written from the decimal text so the
            // output does not depend on float formatting.
            let value: Value = serde_json::from_str(&kwh(wh)).expect("a decimal is a JSON number");
            energy = Some(
                json!({"environmentalConsiderations": {"energyConsumptions": [{
                    "activity": "training",
                    "energyProviders": [],
                    "activityEnergyCost": {"value": value, "unit": "kWh"},
                }]}}),
            );
        }
        if let Some(r) = &c.region {
            props.push(property("shoulders:training.compute.region", r));
        }
    }
    for (k, v) in config.map(hyperparameters).unwrap_or_default() {
        let name = format!("shoulders:hyperparameter:{k}");
        props.push(match v {
            Some(v) => property(&name, v),
            None => json!({ "name": name }),
        });
    }
    (energy, props)
}

fn model_component(
    scope: &Scope<'_>,
    m: &Model,
    license: Option<&LicenseSummary>,
    config: Option<&Map<String, Value>>,
) -> Value {
    let mut c = Map::new();
    c.insert("type".into(), "machine-learning-model".into());
    c.insert("bom-ref".into(), model_iri(&m.model_id).into());
    c.insert("supplier".into(), supplier(scope, &m.owner));
    c.insert("name".into(), m.model_id.clone().into());
    if let Some(d) = &m.description {
        c.insert("description".into(), d.clone().into());
    }
    if let Some(l) = license {
        c.insert("licenses".into(), licenses(l));
    }
    if !m.parents.is_empty() {
        let ancestors: Vec<Value> = m
            .parents
            .iter()
            .map(|p| {
                json!({
                    "type": "machine-learning-model",
                    "name": p.model_id,
                    "properties": [property("shoulders:relation", p.relation.as_str())],
                })
            })
            .collect();
        let notes: Vec<String> = m
            .parents
            .iter()
            .map(|p| format!("{} of {}", p.relation.as_str(), p.model_id))
            .collect();
        c.insert(
            "pedigree".into(),
            json!({"ancestors": ancestors, "notes": notes.join("; ")}),
        );
    }
    let mut references = Vec::new();
    if let Some(url) = &m.url {
        references.push(json!({"type": "website", "url": url}));
    }
    if let Some(src) = &m.source {
        references.push(json!({"type": "distribution", "url": src.url(),
                               "comment": format!("downloaded from {} repository {} at commit {}",
                                                  src.hub.as_str(), src.repo, src.revision)}));
    }
    if let Some(code) = m.training.as_ref().and_then(|t| t.code.as_ref()) {
        references.push(json!({"type": "vcs", "url": code.repository,
                               "comment": format!("training code, commit {}", code.commit)}));
    }
    if !references.is_empty() {
        c.insert("externalReferences".into(), references.into());
    }
    if !m.artifacts.is_empty() {
        let files: Vec<Value> = m
            .artifacts
            .iter()
            .map(|a| {
                let mut props = vec![property("shoulders:size_bytes", a.size_bytes)];
                if !a.tensors.is_empty() {
                    props.push(property("shoulders:tensor_count", a.tensors.len()));
                }
                json!({
                    "type": "file",
                    "name": a.path,
                    "hashes": [{"alg": "SHA-256", "content": sha256_hex(&a.sha256)}],
                    "properties": props,
                })
            })
            .collect();
        c.insert("components".into(), files.into());
    }
    let mut card = Map::new();
    if !m.datasets.is_empty() {
        let refs: Vec<Value> = m
            .datasets
            .iter()
            .map(|d| json!({"ref": dataset_iri(d)}))
            .collect();
        card.insert("modelParameters".into(), json!({ "datasets": refs }));
    }
    let (energy, training_props) = training_card(m, config);
    if let Some(e) = energy {
        card.insert("considerations".into(), e);
    }
    if !training_props.is_empty() {
        card.insert("properties".into(), training_props.into());
    }
    if !card.is_empty() {
        c.insert("modelCard".into(), Value::Object(card));
    }
    let mut props = vec![
        property("shoulders:name", &m.name),
        property("shoulders:owner", &m.owner),
        property("shoulders:log_index", m.registered_at),
        property("shoulders:registered_ts_ms", m.registered_ts_ms),
    ];
    let license_id = license
        .map(|l| l.license_id.as_str())
        .or(m.license_id.as_deref());
    if let Some(id) = license_id {
        props.push(property("shoulders:license_id", id));
    }
    if let Some(l) = license {
        props.push(property(
            "shoulders:license.commercial_use",
            l.commercial_use,
        ));
        props.push(property(
            "shoulders:license.attribution_required",
            l.attribution_required,
        ));
        props.push(property("shoulders:license.share_alike", l.share_alike));
    }
    c.insert("properties".into(), props.into());
    Value::Object(c)
}

fn dataset_component(scope: &Scope<'_>, d: &Dataset) -> Value {
    let mut c = Map::new();
    c.insert("type".into(), "data".into());
    c.insert("bom-ref".into(), dataset_iri(&d.dataset_id).into());
    c.insert("supplier".into(), supplier(scope, &d.owner));
    if !d.contributors.is_empty() {
        let authors: Vec<Value> = d
            .contributors
            .keys()
            .map(|h| json!({"name": scope.actor_name(h)}))
            .collect();
        c.insert("authors".into(), authors.into());
    }
    c.insert("name".into(), d.dataset_id.clone().into());
    if let Some(desc) = &d.description {
        c.insert("description".into(), desc.clone().into());
    }
    c.insert(
        "data".into(),
        json!([{
            "type": "dataset",
            "name": d.name,
            "governance": {"owners": [{"organization": supplier(scope, &d.owner)}]},
        }]),
    );
    let mut props = vec![
        property("shoulders:owner", &d.owner),
        property("shoulders:log_index", d.created_at),
        property("shoulders:created_ts_ms", d.created_ts_ms),
        property("shoulders:contributions", d.contributions.len()),
        property("shoulders:total_bytes", d.total_bytes),
        property("shoulders:total_tokens", d.total_tokens),
    ];
    for (handle, n) in &d.contributors {
        props.push(property(&format!("shoulders:contributor:{handle}"), n));
    }
    c.insert("properties".into(), props.into());
    Value::Object(c)
}

pub(crate) fn bom(
    state: &State,
    model_id: &str,
    license: Option<&LicenseSummary>,
    serial_seed: &[u8],
    attachments: Attachments<'_>,
) -> Option<Value> {
    let scope = Scope::new(state, model_id)?;
    let subject = scope.subject();
    let mut components: Vec<Value> = scope.models[1..]
        .iter()
        .map(|m| model_component(&scope, m, None, None))
        .collect();
    components.extend(scope.datasets.iter().map(|d| dataset_component(&scope, d)));
    let frameworks = scope.frameworks();
    components.extend(frameworks.iter().map(|f| {
        json!({"type": "framework", "bom-ref": framework_iri(f), "name": f.name,
               "version": f.version,
               "properties": [property("shoulders:role", "training framework")]})
    }));

    let mut dependencies: Vec<Value> = scope
        .models
        .iter()
        .map(|m| {
            let on: Vec<String> = m
                .parents
                .iter()
                .map(|p| model_iri(&p.model_id))
                .chain(m.datasets.iter().map(|d| dataset_iri(d)))
                .chain(
                    m.training
                        .as_ref()
                        .and_then(|t| t.framework.as_ref())
                        .map(framework_iri),
                )
                .collect();
            if on.is_empty() {
                json!({"ref": model_iri(&m.model_id)})
            } else {
                json!({"ref": model_iri(&m.model_id), "dependsOn": on})
            }
        })
        .collect();
    dependencies.extend(
        scope
            .datasets
            .iter()
            .map(|d| json!({"ref": dataset_iri(&d.dataset_id)})),
    );
    dependencies.extend(
        frameworks
            .iter()
            .map(|f| json!({ "ref": framework_iri(f) })),
    );

    let mut bom = Map::new();
    bom.insert("$schema".into(), SCHEMA.into());
    bom.insert("bomFormat".into(), "CycloneDX".into());
    bom.insert("specVersion".into(), "1.6".into());
    bom.insert("serialNumber".into(), serial_number(serial_seed).into());
    bom.insert("version".into(), 1.into());
    bom.insert(
        "metadata".into(),
        json!({
            "tools": {"components": [{"type": "application", "name": TOOL_NAME, "version": TOOL_VERSION}]},
            "component": model_component(&scope, subject, license, attachments.training_config),
        }),
    );
    if !components.is_empty() {
        bom.insert("components".into(), components.into());
    }
    bom.insert("dependencies".into(), dependencies.into());
    Some(Value::Object(bom))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_numbers_are_version_8_uuids_fixed_by_the_seed() {
        let a = serial_number(b"7");
        assert_eq!(a, serial_number(b"7"));
        assert_ne!(a, serial_number(b"8"));
        let hex = a.strip_prefix("urn:uuid:").unwrap();
        assert_eq!(hex.len(), 36);
        assert_eq!(&hex[14..15], "8", "version nibble");
        assert!(
            matches!(&hex[19..20], "8" | "9" | "a" | "b"),
            "variant bits"
        );
    }
}
