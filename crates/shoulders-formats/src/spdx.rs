//! SPDX 3.0.1 JSON-LD with the AI and Dataset profiles.
//!
//! The graph holds, in this order: the shared `CreationInfo` (blank node `_:creationinfo`), the
//! `SpdxDocument` (root element: the model), the `SoftwareAgent` and `Tool` that made it, one
//! `Agent` per ledger actor mentioned, an `ai_AIPackage` per model (the exported one first, then
//! its ancestors nearest first) followed by its `software_File`s, a `dataset_DatasetPackage` per
//! training dataset, the declared licence (a `simplelicensing_LicenseExpression`) when one is
//! given, and the `Relationship`s:
//!
//! * model `contains` its files;
//! * model `descendantOf` each parent, one relationship per parent edge, the ledger relation
//!   (`finetune`, `adapter`, `merge`, `quantized`, `distilled`) in its `comment`;
//! * model `trainedOn` its datasets;
//! * for every `ai_AIPackage` and `dataset_DatasetPackage` exactly one `hasDeclaredLicense` and
//!   one `hasConcludedLicense`, as both profiles require. The declared licence is the given
//!   [`LicenseSummary`] for the exported model and `NoAssertion` otherwise; the ledger does not
//!   conclude licences, so the concluded licence is always `NoAssertion`;
//! * model `usesTool` its training framework, a `software_Package` (primary purpose
//!   `framework`) shared by every model naming the same name and version.
//!
//! A model's training run also fills `ai_energyConsumption` (training energy, in kWh),
//! `ai_hyperparameter` (the exported model's configuration, when given), `ai_informationAboutTraining`
//! (the run in words), `software_sourceInfo` and a `vcs` `externalRef` (the code and commit),
//! and `software_attributionText` (one line per credit).

use crate::common::{
    actor_iri, dataset_iri, file_iri, framework_iri, hyperparameters, iso8601, kwh, license_iri,
    license_ref, license_terms_text, model_iri, pct, sha256_hex, training_text, Scope, TOOL_NAME,
    TOOL_VERSION,
};
use crate::{Attachments, LicenseSummary};
use serde_json::{json, Map, Value};
use shoulders_state::{Dataset, Model, State};

pub(crate) const CONTEXT: &str = "https://spdx.org/rdf/3.0.1/spdx-context.jsonld";
const CREATION_INFO: &str = "_:creationinfo";
const NO_ASSERTION_LICENSE: &str = "expandedlicensing_NoAssertionLicense";
const LEDGER_AGENT: &str = "urn:shoulders:agent:ledger";
const TOOL: &str = "urn:shoulders:tool:shoulders-formats";

struct Graph {
    doc_iri: String,
    nodes: Vec<Value>,
    relationships: Vec<Value>,
}

impl Graph {
    /// Add an element: `type`, `spdxId`, `creationInfo`, then `fields` in order.
    fn element(&mut self, ty: &str, iri: &str, fields: Vec<(&str, Value)>) {
        let mut o = Map::new();
        o.insert("type".into(), ty.into());
        o.insert("spdxId".into(), iri.into());
        o.insert("creationInfo".into(), CREATION_INFO.into());
        for (k, v) in fields {
            o.insert(k.into(), v);
        }
        self.nodes.push(Value::Object(o));
    }

    fn relationship(&mut self, from: &str, ty: &str, to: Vec<String>, comment: Option<String>) {
        let iri = format!(
            "{}:relationship:{}",
            self.doc_iri,
            self.relationships.len() + 1
        );
        let mut o = Map::new();
        o.insert("type".into(), "Relationship".into());
        o.insert("spdxId".into(), iri.into());
        o.insert("creationInfo".into(), CREATION_INFO.into());
        o.insert("from".into(), from.into());
        o.insert("relationshipType".into(), ty.into());
        o.insert("to".into(), to.into());
        if let Some(c) = comment {
            o.insert("comment".into(), c.into());
        }
        self.relationships.push(Value::Object(o));
    }
}

/// Optional string fields, skipped when absent.
fn opt(fields: &mut Vec<(&str, Value)>, key: &'static str, v: Option<&str>) {
    if let Some(v) = v {
        fields.push((key, v.into()));
    }
}

pub(crate) fn document(
    state: &State,
    model_id: &str,
    license: Option<&LicenseSummary>,
    created_ms: u64,
    attachments: Attachments<'_>,
) -> Option<Value> {
    let scope = Scope::new(state, model_id)?;
    let subject = scope.subject();
    let mut g = Graph {
        doc_iri: format!("urn:shoulders:spdx:{}", pct(model_id)),
        nodes: Vec::new(),
        relationships: Vec::new(),
    };

    g.element(
        "SoftwareAgent",
        LEDGER_AGENT,
        vec![
            ("name", "shoulders ledger".into()),
            (
                "description",
                "Exports facts recorded in a shoulders ledger: signed, append-only records of \
                 actors, datasets and models."
                    .into(),
            ),
        ],
    );
    g.element(
        "Tool",
        TOOL,
        vec![("name", format!("{TOOL_NAME} {TOOL_VERSION}").into())],
    );
    for handle in scope.handles() {
        let mut f = vec![
            ("name", scope.actor_name(handle).into()),
            ("comment", format!("shoulders actor {handle}").into()),
        ];
        if let Some(url) = scope.actor_url(handle) {
            f.push((
                "externalRef",
                json!([{"type": "ExternalRef", "externalRefType": "altWebPage", "locator": [url]}]),
            ));
        }
        g.element("Agent", &actor_iri(handle), f);
    }

    for (i, m) in scope.models.iter().enumerate() {
        // Only the exported model's configuration is passed in.
        let config = if i == 0 {
            attachments.training_config
        } else {
            None
        };
        model_elements(&mut g, &scope, m, config);
    }
    for f in scope.frameworks() {
        g.element(
            "software_Package",
            &framework_iri(f),
            vec![
                ("name", f.name.clone().into()),
                (
                    "comment",
                    "A training framework named by a shoulders training run.".into(),
                ),
                ("software_packageVersion", f.version.clone().into()),
                ("software_primaryPurpose", "framework".into()),
            ],
        );
    }
    for d in &scope.datasets {
        dataset_element(&mut g, state, d);
    }

    let declared = license.map(|l| {
        let iri = license_iri(&l.license_id);
        let expression = l
            .spdx_id
            .clone()
            .unwrap_or_else(|| license_ref(&l.license_id));
        let mut f = vec![
            ("name", l.name.clone().into()),
            ("comment", license_terms_text(l).into()),
            (
                "simplelicensing_licenseExpression",
                expression.clone().into(),
            ),
        ];
        if expression.starts_with("LicenseRef-") {
            f.push((
                "simplelicensing_customIdToUri",
                json!([{"type": "DictionaryEntry", "key": expression, "value": iri}]),
            ));
        }
        g.element("simplelicensing_LicenseExpression", &iri, f);
        iri
    });

    for (i, m) in scope.models.iter().enumerate() {
        let from = model_iri(&m.model_id);
        if !m.artifacts.is_empty() {
            let files = m
                .artifacts
                .iter()
                .map(|a| file_iri(&m.model_id, &a.path))
                .collect();
            g.relationship(&from, "contains", files, None);
        }
        for p in &m.parents {
            g.relationship(
                &from,
                "descendantOf",
                vec![model_iri(&p.model_id)],
                Some(format!("shoulders relation: {}", p.relation.as_str())),
            );
        }
        if !m.datasets.is_empty() {
            let to = m.datasets.iter().map(|d| dataset_iri(d)).collect();
            g.relationship(&from, "trainedOn", to, None);
        }
        if let Some(f) = m.training.as_ref().and_then(|t| t.framework.as_ref()) {
            g.relationship(
                &from,
                "usesTool",
                vec![framework_iri(f)],
                Some("training framework".into()),
            );
        }
        let declared_here = if i == 0 { declared.clone() } else { None };
        license_relationships(&mut g, &from, declared_here);
    }
    for d in &scope.datasets {
        license_relationships(&mut g, &dataset_iri(&d.dataset_id), None);
    }

    let root = model_iri(&subject.model_id);
    let elements: Vec<Value> = g
        .nodes
        .iter()
        .chain(&g.relationships)
        .map(|n| n["spdxId"].clone())
        .collect();
    let document = json!({
        "type": "SpdxDocument",
        "spdxId": g.doc_iri,
        "creationInfo": CREATION_INFO,
        "name": format!("shoulders provenance of {}", subject.model_id),
        "comment": format!(
            "Model {} as registered in a shoulders ledger at log index {}, with its ancestors, \
             artifacts and training datasets.",
            subject.model_id, subject.registered_at
        ),
        "profileConformance": ["core", "software", "simpleLicensing", "ai", "dataset"],
        "rootElement": [root],
        "element": elements,
    });
    let creation_info = json!({
        "type": "CreationInfo",
        "@id": CREATION_INFO,
        "specVersion": "3.0.1",
        "created": iso8601(created_ms),
        "createdBy": [LEDGER_AGENT],
        "createdUsing": [TOOL],
    });

    let mut graph = vec![creation_info, document];
    graph.append(&mut g.nodes);
    graph.append(&mut g.relationships);
    Some(json!({"@context": CONTEXT, "@graph": graph}))
}

fn license_relationships(g: &mut Graph, from: &str, declared: Option<String>) {
    let declared = declared.unwrap_or_else(|| NO_ASSERTION_LICENSE.to_string());
    g.relationship(from, "hasDeclaredLicense", vec![declared], None);
    g.relationship(
        from,
        "hasConcludedLicense",
        vec![NO_ASSERTION_LICENSE.to_string()],
        None,
    );
}

fn model_elements(
    g: &mut Graph,
    scope: &Scope<'_>,
    m: &Model,
    config: Option<&Map<String, Value>>,
) {
    let mut f = vec![
        ("name", m.model_id.clone().into()),
        ("summary", m.name.clone().into()),
    ];
    opt(&mut f, "description", m.description.as_deref());
    f.push((
        "comment",
        format!(
            "Registered in the shoulders ledger at log index {} by {}.",
            m.registered_at, m.owner
        )
        .into(),
    ));
    f.push(("suppliedBy", actor_iri(&m.owner).into()));
    f.push(("releaseTime", iso8601(m.registered_ts_ms).into()));
    f.push(("software_primaryPurpose", "model".into()));
    opt(&mut f, "software_homePage", m.url.as_deref());
    // Where the registered files were downloaded from: the hub repository at its commit.
    let download = m.source.as_ref().map(|s| s.url());
    opt(&mut f, "software_downloadLocation", download.as_deref());
    if let Some(t) = &m.training {
        if let Some(c) = &t.code {
            f.push((
                "software_sourceInfo",
                format!(
                    "Trained with the code of {} at commit {}.",
                    c.repository, c.commit
                )
                .into(),
            ));
            f.push((
                "externalRef",
                json!([{"type": "ExternalRef", "externalRefType": "vcs",
                        "locator": [c.repository], "comment": format!("training code, commit {}", c.commit)}]),
            ));
        }
        if !t.credits.is_empty() {
            let lines: Vec<String> = t
                .credits
                .iter()
                .map(|c| {
                    format!(
                        "{} (shoulders actor {}): {} of the training run",
                        scope.actor_name(&c.actor),
                        c.actor,
                        c.role.as_str().replace('_', " ")
                    )
                })
                .collect();
            f.push(("software_attributionText", lines.into()));
        }
        if let Some(wh) = t.compute.as_ref().and_then(|c| c.energy_wh) {
            f.push((
                "ai_energyConsumption",
                json!({"type": "ai_EnergyConsumption", "ai_trainingEnergyConsumption": [
                    {"type": "ai_EnergyConsumptionDescription", "ai_energyQuantity": kwh(wh),
                     "ai_energyUnit": "kilowattHour"}]}),
            ));
        }
        if let Some(config) = config {
            let entries: Vec<Value> = hyperparameters(config)
                .into_iter()
                .map(|(k, v)| match v {
                    Some(v) => json!({"type": "DictionaryEntry", "key": k, "value": v}),
                    None => json!({"type": "DictionaryEntry", "key": k}),
                })
                .collect();
            if !entries.is_empty() {
                f.push(("ai_hyperparameter", entries.into()));
            }
        }
        f.push((
            "ai_informationAboutTraining",
            training_text(scope, t).into(),
        ));
    }
    g.element("ai_AIPackage", &model_iri(&m.model_id), f);

    for a in &m.artifacts {
        let mut comment = format!("{} bytes", a.size_bytes);
        if !a.tensors.is_empty() {
            let n = a.tensors.len();
            let s = if n == 1 { "" } else { "s" };
            comment.push_str(&format!(
                "; {n} tensor{s}, each hashed in the shoulders ledger"
            ));
        }
        let mut f = vec![
            ("name", a.path.clone().into()),
            ("comment", comment.into()),
            (
                "verifiedUsing",
                json!([{"type": "Hash", "algorithm": "sha256", "hashValue": sha256_hex(&a.sha256)}]),
            ),
        ];
        if !a.tensors.is_empty() {
            f.push(("software_primaryPurpose", "model".into()));
        }
        f.push(("software_fileKind", "file".into()));
        g.element("software_File", &file_iri(&m.model_id, &a.path), f);
    }
}

/// `dataset_datasetType` from the contributions' media types (`text/*` → `text`, `image/*` →
/// `image`, `audio/*` → `audio`, `video/*` → `video`); `noAssertion` when none of them says.
fn dataset_types(state: &State, d: &Dataset) -> Vec<&'static str> {
    let mut types = Vec::new();
    for c in d
        .contributions
        .iter()
        .filter_map(|i| state.contribution(*i))
    {
        let major = c
            .media_type
            .as_deref()
            .and_then(|t| t.split('/').next())
            .unwrap_or("");
        let t = match major {
            "text" => "text",
            "image" => "image",
            "audio" => "audio",
            "video" => "video",
            _ => continue,
        };
        if !types.contains(&t) {
            types.push(t);
        }
    }
    if types.is_empty() {
        types.push("noAssertion");
    }
    types.sort_unstable();
    types
}

fn dataset_element(g: &mut Graph, state: &State, d: &Dataset) {
    let mut f = vec![
        ("name", d.dataset_id.clone().into()),
        ("summary", d.name.clone().into()),
    ];
    opt(&mut f, "description", d.description.as_deref());
    f.push((
        "comment",
        format!(
            "Created in the shoulders ledger at log index {} by {}; {} contributions, {} bytes, \
             {} tokens.",
            d.created_at,
            d.owner,
            d.contributions.len(),
            d.total_bytes,
            d.total_tokens
        )
        .into(),
    ));
    f.push(("suppliedBy", actor_iri(&d.owner).into()));
    if !d.contributors.is_empty() {
        let by: Vec<String> = d.contributors.keys().map(|h| actor_iri(h)).collect();
        f.push(("originatedBy", by.into()));
    }
    f.push(("releaseTime", iso8601(d.created_ts_ms).into()));
    f.push(("software_primaryPurpose", "data".into()));
    f.push(("dataset_datasetSize", d.total_bytes.into()));
    f.push(("dataset_datasetType", dataset_types(state, d).into()));
    g.element("dataset_DatasetPackage", &dataset_iri(&d.dataset_id), f);
}
