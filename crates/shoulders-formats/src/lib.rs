//! Standard metadata exports of a model's ledger record.
//!
//! * [`hf_card_yaml`]: the YAML front matter of a Hugging Face model card (`license`,
//!   `base_model`, `base_model_relation`, `datasets`, `tags`) plus a `shoulders:` mapping with
//!   the ledger provenance (model id, log index, per-file SHA-256).
//! * [`spdx3_json`]: an SPDX 3.0.1 JSON-LD document conforming to the AI and Dataset profiles:
//!   an `ai_AIPackage` for the model and each ancestor, a `dataset_DatasetPackage` for each
//!   dataset they were trained on, `software_File`s with SHA-256 hashes, and `Relationship`s for
//!   lineage (`descendantOf`), training data (`trainedOn`), files (`contains`) and licences
//!   (`hasDeclaredLicense` / `hasConcludedLicense`).
//! * [`cyclonedx_json`]: a CycloneDX 1.6 ML-BOM: the model as `metadata.component`
//!   (`machine-learning-model`), ancestors and datasets (`data`) as components, lineage as
//!   `pedigree` and `dependencies`.
//!
//! A model's training run (`training` of its `model.register`) goes where each standard has a
//! place for it: the framework as a package / component the model uses, the training energy as
//! SPDX `ai_energyConsumption` / CycloneDX `environmentalConsiderations.energyConsumptions`
//! (activity `training`), the configuration's top-level scalar entries as SPDX
//! `ai_hyperparameter` / CycloneDX model-card properties (when the caller passes the document
//! in [`Attachments`]), the code as a `vcs` reference, credits as SPDX
//! `software_attributionText`, and the rest in SPDX `ai_informationAboutTraining` and
//! `shoulders:training.*` properties.
//!
//! Pure and deterministic: the same state and arguments always give the same bytes. Nothing here
//! reads a clock, a file or the network; the SPDX creation time and the CycloneDX serial-number
//! seed are arguments.
//!
//! Identifiers: every exported thing gets a stable IRI in the `urn:shoulders:` namespace, used as
//! SPDX `spdxId` and CycloneDX `bom-ref` alike: `urn:shoulders:model:<model_id>`,
//! `urn:shoulders:dataset:<dataset_id>`, `urn:shoulders:actor:<handle>`,
//! `urn:shoulders:license:<license_id>`, and `urn:shoulders:model:<model_id>:file:<path>` (the
//! path percent-encoded).

mod common;
mod cyclonedx;
mod hf;
mod spdx;

use shoulders_state::State;

/// Documents a model's record names only by hash (the ledger keeps them in its content store,
/// not on the log). The caller reads them; this crate reads no files.
#[derive(Clone, Copy, Debug, Default)]
pub struct Attachments<'a> {
    /// The exported model's training configuration: the JSON object its
    /// `training.config_hash` names. Its top-level scalar entries become SPDX
    /// `ai_hyperparameter` entries and CycloneDX model-card properties.
    pub training_config: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

/// The licence facts an export needs. The licence subsystem owns the real records; callers
/// build this from them (or pass `None` when the model has no licence).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LicenseSummary {
    /// The ledger's licence id, `<owner-handle>/<name>`.
    pub license_id: String,
    /// An SPDX licence identifier (`Apache-2.0`, `LicenseRef-...`), when the licence has one.
    pub spdx_id: Option<String>,
    /// Human-readable name.
    pub name: String,
    pub commercial_use: bool,
    pub attribution_required: bool,
    pub share_alike: bool,
}

/// The Hugging Face model-card YAML front matter for `model_id`: a block that starts and ends
/// with a `---` line (and a final newline), ready to put at the top of a `README.md`. `None` if
/// the model is unknown.
///
/// `license` is the SPDX id lowercased when it is one of the Hub's licence identifiers (with the
/// GPL family's `-only`/`-or-later` suffix dropped, as the Hub lists `gpl-3.0`), otherwise
/// `other` with a `license_name`. `base_model` lists every parent; `base_model_relation` is given
/// only when all parents share one relation the Hub knows (`adapter`, `merge`, `quantized`,
/// `finetune`); `datasets` are the model's own training datasets.
pub fn hf_card_yaml(
    state: &State,
    model_id: &str,
    license: Option<&LicenseSummary>,
) -> Option<String> {
    hf::card(state, model_id, license)
}

/// An SPDX 3.0.1 JSON-LD document (`@context` + `@graph`) describing `model_id`, its ancestors,
/// their artifacts and datasets. `created_ms` (Unix milliseconds) becomes
/// `CreationInfo.created`, to the second. `None` if the model is unknown.
pub fn spdx3_json(
    state: &State,
    model_id: &str,
    license: Option<&LicenseSummary>,
    created_ms: u64,
) -> Option<serde_json::Value> {
    spdx::document(state, model_id, license, created_ms, Attachments::default())
}

/// [`spdx3_json`] with the documents the record names by hash (its training configuration).
pub fn spdx3_json_with(
    state: &State,
    model_id: &str,
    license: Option<&LicenseSummary>,
    created_ms: u64,
    attachments: Attachments<'_>,
) -> Option<serde_json::Value> {
    spdx::document(state, model_id, license, created_ms, attachments)
}

/// A CycloneDX 1.6 ML-BOM for `model_id`. `serialNumber` is a `urn:uuid:` derived from
/// SHA-256 of `serial_seed` (an RFC 9562 version-8 UUID), so the same seed always gives the same
/// serial number. `None` if the model is unknown.
pub fn cyclonedx_json(
    state: &State,
    model_id: &str,
    license: Option<&LicenseSummary>,
    serial_seed: &[u8],
) -> Option<serde_json::Value> {
    cyclonedx::bom(
        state,
        model_id,
        license,
        serial_seed,
        Attachments::default(),
    )
}

/// [`cyclonedx_json`] with the documents the record names by hash (its training
/// configuration).
pub fn cyclonedx_json_with(
    state: &State,
    model_id: &str,
    license: Option<&LicenseSummary>,
    serial_seed: &[u8],
    attachments: Attachments<'_>,
) -> Option<serde_json::Value> {
    cyclonedx::bom(state, model_id, license, serial_seed, attachments)
}
