//! Typed record bodies, one per kind, with validation and explicit limits.
//!
//! Unknown fields are refused (`deny_unknown_fields`), optional fields are omitted when absent
//! and empty lists are omitted, so each body has exactly one canonical encoding.

use crate::validate::{self as v, MAX_DESCRIPTION_BYTES, MAX_NAME_BYTES};
use crate::{RecordError, MAX_SAFE_INTEGER};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// Most parents one model may name.
pub const MAX_PARENTS: usize = 16;
/// Most datasets one model may name.
pub const MAX_MODEL_DATASETS: usize = 256;
/// Most artifact files one model record may list. An entry is at least about 110 bytes, so more
/// could never fit in a record of [`crate::MAX_RECORD_BYTES`].
pub const MAX_ARTIFACTS: usize = 512;
/// Most tensors one model record may list (across all artifacts). An entry is at least about
/// 108 bytes (its `sha256:` hash alone is 71), so more could never fit in one record.
pub const MAX_TENSORS: usize = 512;
/// Most dimensions of one tensor shape.
pub const MAX_TENSOR_DIMS: usize = 8;
/// Most handles in a dataset's allowlist.
pub const MAX_ALLOWLIST: usize = 1024;
/// Largest single contribution, in bytes (1 TiB).
pub const MAX_CONTRIBUTION_BYTES: u64 = 1 << 40;
/// Most entries in a usage receipt's attribution.
pub const MAX_ATTRIBUTION_ENTRIES: usize = 1024;
/// Most index segments a receipt's `index_state` may name: an index is rebuilt (merged) long
/// before it has this many, and an audit rebuilds each one.
pub const MAX_INDEX_SEGMENTS: usize = 64;
/// Parts per million that make a whole.
pub const PPM_ONE: u32 = 1_000_000;
/// Most use categories / territories listed in licence terms.
pub const MAX_TERM_TAGS: usize = 64;
/// Basis points that make a whole.
pub const BPS_ONE: u32 = 10_000;
/// Most evidence hashes one dispute may carry.
pub const MAX_EVIDENCE: usize = 16;
/// Longest quota window: a year and a day.
pub const MAX_QUOTA_WINDOW_MS: u64 = 366 * 24 * 3600 * 1000;
/// Highest review quality score.
pub const MAX_QUALITY: u32 = 100;
/// Most target modules an adapter's configuration may name: 128 of the longest names still fit
/// in one record of [`crate::MAX_RECORD_BYTES`].
pub const MAX_ADAPTER_TARGETS: usize = 128;
/// Longest adapter target module name (or pattern), in bytes.
pub const MAX_ADAPTER_TARGET_BYTES: usize = 256;
/// Most people one training run credits.
pub const MAX_CREDITS: usize = 64;
/// Longest framework name or version, hardware description or region, in bytes.
pub const MAX_TRAINING_LABEL_BYTES: usize = 100;
/// Most accelerator hours one training run may state: far beyond any run, and small enough that
/// sums over many runs stay below 2^53.
pub const MAX_ACCELERATOR_HOURS: u64 = 1_000_000_000_000;
/// Most energy one training run may state, in watt-hours (10^15 Wh = 1 PWh).
pub const MAX_ENERGY_WH: u64 = 1_000_000_000_000_000;

/// A receipt's `index_state`: 1..=[`MAX_INDEX_SEGMENTS`] strictly ascending, non-zero
/// segment bounds ending at `ledger_size`, itself a safe integer.
fn validate_index_state(st: &IndexState) -> Result<(), RecordError> {
    v::int_range(
        "index_state.ledger_size",
        st.ledger_size,
        1,
        MAX_SAFE_INTEGER,
    )?;
    if st.segments.is_empty() || st.segments.len() > MAX_INDEX_SEGMENTS {
        return Err(RecordError::field(
            "index_state.segments",
            format!("must have 1 to {MAX_INDEX_SEGMENTS} entries"),
        ));
    }
    let mut prev = 0u64;
    for &s in &st.segments {
        if s <= prev {
            return Err(RecordError::field(
                "index_state.segments",
                "must be strictly ascending and above 0",
            ));
        }
        prev = s;
    }
    if prev != st.ledger_size {
        return Err(RecordError::field(
            "index_state.segments",
            "the last segment must end at ledger_size",
        ));
    }
    Ok(())
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The record kinds. The string form is what appears in the envelope's `kind` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    ActorRegister,
    DatasetCreate,
    DataContribute,
    ModelRegister,
    LicenseDefine,
    LicenseGrant,
    UsageReceipt,
    FundsDeposit,
    FundsWithdraw,
    LedgerConfig,
    ActorUpdate,
    LedgerClock,
    DisputeOpen,
    DisputeRule,
    ContributionReview,
}

impl Kind {
    pub const ALL: [Kind; 15] = [
        Kind::ActorRegister,
        Kind::DatasetCreate,
        Kind::DataContribute,
        Kind::ModelRegister,
        Kind::LicenseDefine,
        Kind::LicenseGrant,
        Kind::UsageReceipt,
        Kind::FundsDeposit,
        Kind::FundsWithdraw,
        Kind::LedgerConfig,
        Kind::ActorUpdate,
        Kind::LedgerClock,
        Kind::DisputeOpen,
        Kind::DisputeRule,
        Kind::ContributionReview,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ActorRegister => "actor.register",
            Kind::DatasetCreate => "dataset.create",
            Kind::DataContribute => "data.contribute",
            Kind::ModelRegister => "model.register",
            Kind::LicenseDefine => "license.define",
            Kind::LicenseGrant => "license.grant",
            Kind::UsageReceipt => "usage.receipt",
            Kind::FundsDeposit => "funds.deposit",
            Kind::FundsWithdraw => "funds.withdraw",
            Kind::LedgerConfig => "ledger.config",
            Kind::ActorUpdate => "actor.update",
            Kind::LedgerClock => "ledger.clock",
            Kind::DisputeOpen => "dispute.open",
            Kind::DisputeRule => "dispute.rule",
            Kind::ContributionReview => "contribution.review",
        }
    }

    pub fn parse(s: &str) -> Result<Kind, RecordError> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| RecordError::UnknownKind(s.chars().take(64).collect()))
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `actor.register`: binds the signing key to a unique handle. Self-signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActorRegister {
    pub handle: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Where earnings are paid out (opaque to the ledger: an IBAN, a wallet address, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payout_address: Option<String>,
}

/// Who may add contributions to a dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Any registered actor.
    Open,
    /// Only the dataset's owner.
    Owner,
    /// The owner and the handles in `allowlist`.
    Allowlist,
}

/// `dataset.create`: a named collection that contributions are added to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetCreate {
    /// `<owner-handle>/<name>`; the namespace must be the signer's handle.
    pub dataset_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub access: Access,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowlist: Vec<String>,
    /// The `license.define` record whose terms apply to the dataset's contents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_id: Option<String>,
    /// Reviewed dataset: every contribution but the owner's stays pending (earning nothing,
    /// attributed to nobody) until the owner accepts or rejects it (`contribution.review`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub review: bool,
    /// Per-contributor limits per time window (the owner is exempt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
    /// Who rules on disputes about the dataset's contributions, and the bond a claimant puts
    /// up. Absent: the operator rules, with the ledger's bond.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disputes: Option<DisputePolicy>,
}

/// How much one contributor may add to a dataset per window of `window_ms` (fixed windows
/// counted from the epoch). At least one limit is set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    pub window_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_count: Option<u64>,
}

/// Who may rule on a dispute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arbiter {
    /// The dataset's owner (the operator instead when the owner is a party to the dispute).
    Owner,
    /// The ledger operator.
    Operator,
}

/// An amount of money, in micro-units of `currency`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bond {
    pub currency: String,
    pub amount_micros: String,
}

/// A dataset's dispute policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisputePolicy {
    pub arbiter: Arbiter,
    /// Put up by whoever opens a dispute; returned if it is upheld, paid to the disputed party
    /// if it is dismissed (so freezing someone's earnings with a baseless dispute costs money).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bond: Option<Bond>,
}

/// `data.contribute`: one document added to a dataset. The ledger holds its hash and sizes; the
/// content itself is stored off-log, addressed by `content_hash`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataContribute {
    pub dataset_id: String,
    /// `sha256:<hex>` of the exact content bytes.
    pub content_hash: String,
    pub byte_size: u64,
    pub token_count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Text-and-data-mining reservation (as W3C TDMRep's `tdm-reservation: 1`): no model may
    /// be registered as trained on a dataset holding it. Attribution still finds it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub tdm_reservation: bool,
}

/// How a model derives from a parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    Finetune,
    Adapter,
    Merge,
    Quantized,
    Distilled,
}

impl Relation {
    pub fn as_str(self) -> &'static str {
        match self {
            Relation::Finetune => "finetune",
            Relation::Adapter => "adapter",
            Relation::Merge => "merge",
            Relation::Quantized => "quantized",
            Relation::Distilled => "distilled",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parent {
    pub model_id: String,
    pub relation: Relation,
}

/// One tensor of a weights file, hashed on its own so a claim can be checked tensor by tensor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tensor {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    pub sha256: String,
}

/// One file of a model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    pub path: String,
    pub size_bytes: u64,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tensors: Vec<Tensor>,
}

/// `model.register`: a model with its lineage (parents and relation), training datasets and
/// content hashes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRegister {
    /// `<owner-handle>/<name>`; the namespace must be the signer's handle.
    pub model_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<Parent>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datasets: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The most stacked upstream royalty, in basis points, the registrant accepts (0..=10000):
    /// the registration is refused (`E_LICENSE_ROYALTY_ABOVE_MAX`) when the royalty stack of
    /// its effective terms totals more. Absent: any stack up to 10000. Omitted when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_royalty_bps: Option<u32>,
    /// What a PEFT adapter's `adapter_config.json` says it adapts (`model import` fills it when
    /// the directory has one). Omitted when absent, so records without it keep their bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<AdapterConfig>,
    /// How the model was trained and who is credited for it. Absent: not stated. Omitted when
    /// absent, so records without it keep their bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<TrainingRun>,
    /// Where the registered files were downloaded from: a hub repository at one commit
    /// (`model import` of a Hugging Face cache snapshot fills it). Omitted when absent, so
    /// records without it keep their bytes. Boxed to keep [`Body`]'s variants close in size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Box<ModelSource>>,
}

/// Longest segment (owner or name) of a hub repository id, in bytes (the Hugging Face Hub's
/// own limit).
pub const MAX_HUB_REPO_SEGMENT_BYTES: usize = 96;

/// A model hub a [`ModelSource`] names. A closed list, so a record cannot name a hub no reader
/// knows how to link to; a new hub is a new variant (old records still decode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ModelHub {
    /// huggingface.co.
    #[serde(rename = "huggingface")]
    HuggingFace,
}

impl ModelHub {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelHub::HuggingFace => "huggingface",
        }
    }
}

/// A hub repository at one commit: what the registered artifacts were downloaded as. A claim
/// of the registrant like the rest of the record; `model import` takes it from the cache
/// layout and checks every file against the blob name the hub gave it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSource {
    pub hub: ModelHub,
    /// The hub's repository id, `ORG/NAME` (or `NAME` for the hub's unowned legacy models).
    pub repo: String,
    /// The commit: 40 or 64 lowercase hex digits.
    pub revision: String,
}

impl ModelSource {
    /// The page of the repository at this revision, for people and for SBOM references.
    pub fn url(&self) -> String {
        match self.hub {
            ModelHub::HuggingFace => {
                format!(
                    "https://huggingface.co/{}/tree/{}",
                    self.repo, self.revision
                )
            }
        }
    }
}

/// A Hugging Face repository id: `NAME` or `ORG/NAME`, each segment 1-96 characters of
/// `[A-Za-z0-9._-]`, not starting or ending with `-` or `.`, without `--` or `..` (the Hub's
/// rules; `--` is what its cache directory names use as the separator).
pub fn validate_hub_repo(field: &str, repo: &str) -> Result<(), RecordError> {
    let segment_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= MAX_HUB_REPO_SEGMENT_BYTES
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            && !s.starts_with(['-', '.'])
            && !s.ends_with(['-', '.'])
            && !s.contains("--")
            && !s.contains("..")
    };
    let segments: Vec<&str> = repo.split('/').collect();
    if segments.len() <= 2 && segments.iter().all(|s| segment_ok(s)) {
        Ok(())
    } else {
        Err(RecordError::field(
            field,
            format!("must be a hub repository id NAME or ORG/NAME: each 1-{MAX_HUB_REPO_SEGMENT_BYTES} characters of A-Z, a-z, 0-9, '.', '_' or '-', not starting or ending with '-' or '.', without '--' or '..'"),
        ))
    }
}

/// A full commit id: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits, so it names one tree.
pub fn is_commit_id(s: &str) -> bool {
    matches!(s.len(), 40 | 64)
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The part of a PEFT `adapter_config.json` a parameter diff needs: which base modules the
/// adapter targets and its rank. The adapter's tensors say the same thing by their names; the
/// configuration is kept as well because it is what the adapter's author declared (and it
/// names modules, such as regular expressions or `all-linear`, that no tensor name spells).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterConfig {
    /// `peft_type`, e.g. `LORA`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peft_type: Option<String>,
    /// `target_modules`: module names (sorted, without duplicates) or one pattern, as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_modules: Vec<String>,
    /// `r`, the LoRA rank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r: Option<u64>,
    /// `lora_alpha`, the LoRA scaling numerator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora_alpha: Option<u64>,
}

/// The provenance of a training run: its configuration, code, framework, compute and the people
/// credited for it. Every part is a claim of the registrant, signed like the rest of the record;
/// only the configuration is checked against something (its document must be in the ledger's
/// content store when the record is admitted, so it can always be shown).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingRun {
    /// `sha256:<hex>` of the training configuration (hyperparameters): the exact bytes of a
    /// JSON object of at most 1 MiB, kept in the ledger's content store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// The training code, pinned to one commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<CodeRef>,
    /// The training framework, e.g. `PyTorch` `2.4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework: Option<Framework>,
    /// The people and organisations credited for the run, each `(actor, role)` once. Credits are
    /// recognition, not payment: no money follows them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credits: Vec<Credit>,
    /// What the run used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute: Option<Compute>,
}

/// Source code at one commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeRef {
    /// The repository's `http(s)://` URL.
    pub repository: String,
    /// The commit: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits, so it names one tree.
    pub commit: String,
}

/// A software framework and its version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Framework {
    pub name: String,
    pub version: String,
}

/// What a credited actor did for a training run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CreditRole {
    /// Built the framework or library the run used.
    FrameworkAuthor,
    /// Collected, cleaned or added training data.
    DataEngineer,
    /// Ran the training: chose the configuration, launched and watched the run.
    Trainer,
    /// Evaluated the trained model.
    Evaluator,
}

impl CreditRole {
    pub const ALL: [CreditRole; 4] = [
        CreditRole::FrameworkAuthor,
        CreditRole::DataEngineer,
        CreditRole::Trainer,
        CreditRole::Evaluator,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CreditRole::FrameworkAuthor => "framework_author",
            CreditRole::DataEngineer => "data_engineer",
            CreditRole::Trainer => "trainer",
            CreditRole::Evaluator => "evaluator",
        }
    }
}

impl fmt::Display for CreditRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for CreditRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        CreditRole::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!("unknown credit role {s:?}; use framework_author, data_engineer, trainer or evaluator")
            })
    }
}

/// One credited actor and what it did.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credit {
    /// A registered actor's handle.
    pub actor: String,
    pub role: CreditRole,
}

/// Watt-hours as a decimal number of kWh, without floats: `2400` → `2.4`, `1` → `0.001`,
/// `12000` → `12` (how exports and pages show [`Compute::energy_wh`]).
pub fn kwh_text(wh: u64) -> String {
    let (whole, frac) = (wh / 1000, wh % 1000);
    if frac == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{frac:03}")
            .trim_end_matches('0')
            .to_string()
    }
}

/// The compute a training run used. Integers only (records carry no floats): energy in
/// watt-hours, so a run of 2.4 kWh is `2400`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compute {
    /// E.g. `8x NVIDIA H100 80GB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware: Option<String>,
    /// Accelerator (GPU/TPU) hours, summed over accelerators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accelerator_hours: Option<u64>,
    /// Energy the run used, in watt-hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_wh: Option<u64>,
    /// Where it ran, e.g. a cloud region (`eu-west-1`) or a country code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// Which descendants owe a licence's royalty (share and floor).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoyaltyReach {
    /// Every descendant of a model under the licence, however deep (the default).
    #[default]
    AllAncestors,
    /// Only the direct children of a model under the licence; grandchildren and further
    /// descendants owe it nothing.
    DirectParent,
}

impl RoyaltyReach {
    pub fn as_str(self) -> &'static str {
        match self {
            RoyaltyReach::AllAncestors => "all_ancestors",
            RoyaltyReach::DirectParent => "direct_parent",
        }
    }

    /// The default reach, which is left out of every encoding that has it.
    pub fn is_all_ancestors(&self) -> bool {
        *self == RoyaltyReach::AllAncestors
    }
}

impl fmt::Display for RoyaltyReach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RoyaltyReach {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all_ancestors" => Ok(RoyaltyReach::AllAncestors),
            "direct_parent" => Ok(RoyaltyReach::DirectParent),
            other => Err(format!(
                "unknown royalty reach {other:?}; use all_ancestors or direct_parent"
            )),
        }
    }
}

/// Whether derivatives of licensed work may be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Derivatives {
    Allowed,
    ApprovalRequired,
    Forbidden,
}

/// Machine-readable licence terms. Money amounts are micro-units of `currency`, as canonical
/// decimal strings of at most [`crate::validate::MAX_AMOUNT_MICROS`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenseTerms {
    pub commercial_use: bool,
    pub derivatives: Derivatives,
    pub attribution_required: bool,
    pub share_alike: bool,
    /// Share of each charge of every descendant owed upstream to the licensor (the owner of a
    /// model under this licence), in basis points.
    pub royalty_bps: u32,
    /// Share of each charge paid to the data contributors, in basis points.
    pub data_share_bps: u32,
    pub currency: String,
    pub price_per_call_micros: String,
    pub price_per_1k_output_tokens_micros: String,
    pub registration_fee_micros: String,
    /// Royalty floor: the least the licensor is owed on every use of every descendant, per
    /// call, whatever the descendant charges (so a free derivative still pays its ancestors).
    /// Absent: no floor. Omitted when absent, so records without floors keep their bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub royalty_floor_per_call_micros: Option<String>,
    /// Royalty floor per 1,000 output tokens of every use of every descendant (rounded up per
    /// use, like prices). Absent: no floor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub royalty_floor_per_1k_output_tokens_micros: Option<String>,
    /// Which descendants owe the royalty share and floor: `all_ancestors` (every descendant)
    /// or `direct_parent` (only the direct children of a model under this licence). Absent:
    /// all ancestors, so records without it keep their bytes and meaning. Other clauses flow
    /// to every descendant whatever the reach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub royalty_reach: Option<RoyaltyReach>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_uses: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forbidden_uses: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub territories: Vec<String>,
}

/// `license.define`: a named set of terms that models and datasets can reference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenseDefine {
    pub license_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spdx_id: Option<String>,
    pub terms: LicenseTerms,
}

/// `license.grant`: the owner of a model or dataset grants an actor the right to use it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenseGrant {
    pub license_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_id: Option<String>,
    pub grantee: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uses: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
}

/// One contribution's share of an output, in parts per million.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributionShare {
    pub dataset_id: String,
    /// Log index of the `data.contribute` record.
    pub contribution: u64,
    pub ppm: u32,
}

/// The attribution index state a receipt was attributed against, so anyone can rebuild exactly
/// that index from the log and re-derive the attribution (`shoulders audit receipt`).
///
/// Segment `i` holds the contributions with log index in `[segments[i-1], segments[i])` (the
/// first from 0); an index built in one piece is one segment, `[ledger_size]`. Checked at
/// decode: 1..=[`MAX_INDEX_SEGMENTS`] strictly ascending bounds, the last equal to
/// `ledger_size`; and by the fold: `ledger_size` is at most the receipt's own log index (an
/// index cannot hold the future).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexState {
    /// Log size the index covers: contributions with log index below it.
    pub ledger_size: u64,
    /// Ascending end bounds (ledger sizes) of the index segments.
    pub segments: Vec<u64>,
}

impl IndexState {
    /// An index built in one piece over the log's first `ledger_size` records.
    pub fn single(ledger_size: u64) -> Self {
        IndexState {
            ledger_size,
            segments: vec![ledger_size],
        }
    }
}

/// `usage.receipt`: one metered use of a model, signed by the serving operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageReceipt {
    pub usage_id: String,
    pub model_id: String,
    pub payer: String,
    pub use_category: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub output_hash: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attribution: Vec<AttributionShare>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_hash: Option<String>,
    /// The most stacked upstream royalty, in basis points, the payer accepts for this use
    /// (0..=10000): the fold refuses the receipt (`E_USE_DENIED`) when the model's royalty
    /// stack totals more. Absent: no limit. Omitted when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_royalty_bps: Option<u32>,
    /// The index state the attribution ran against (see [`IndexState`]). Absent on receipts
    /// from before it was recorded and on receipts without attribution. Omitted when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_state: Option<IndexState>,
}

/// `funds.deposit`: the operator credits an actor's account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FundsDeposit {
    pub account: String,
    pub currency: String,
    pub amount_micros: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// `funds.withdraw`: an actor moves money out of its own account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FundsWithdraw {
    pub currency: String,
    pub amount_micros: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payout_address: Option<String>,
}

/// `ledger.config`: who operates the ledger and the protocol fee. The first one in a log is
/// self-designating (its signer must name itself); later ones must be signed by the current
/// operator. The operator signs deposits and usage receipts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerConfig {
    /// Handle of the operator actor.
    pub operator: String,
    /// Share of every usage charge paid to the protocol account, in basis points.
    pub protocol_fee_bps: u32,
    /// The bond for disputes the operator rules on (about models, and about datasets without
    /// a policy of their own). Absent: no bond.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispute_bond: Option<Bond>,
}

/// `ledger.clock`: the log's time, signed by the operator's writer when it admits a record that
/// a licence time rule (an expiry) applies to. Licence time rules are judged at the later of
/// the signer's timestamp and the last clock before the record, so back-dating a record never
/// moves it before an expiry that the log has already passed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerClock {
    /// The writer's clock when it admitted the records that follow, in ms since the epoch.
    pub now_ms: u64,
}

/// `actor.update`: an actor changes its own public details. Setting a payout address releases
/// the earnings held for it in the unclaimed pool into its account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActorUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payout_address: Option<String>,
}

/// `dispute.open`: any actor contests a contribution or a model, with evidence. While it is
/// open, the disputed party's earnings from that item are held in escrow. Its id is its log
/// index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisputeOpen {
    /// The contribution contested (exactly one of `contribution` and `model_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contribution: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// For a contribution: the contribution it is said to copy. If the dispute is upheld, the
    /// contested contribution's credit goes to this one's contributor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<u64>,
    /// Content hashes (`sha256:<hex>`) backing the claim.
    pub evidence: Vec<String>,
    pub statement: String,
    /// The bond the policy asks for, stated so the claimant signs the amount it puts up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bond: Option<Bond>,
}

/// The outcome of a dispute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Upheld,
    Dismissed,
}

/// `dispute.rule`: the arbiter closes a dispute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisputeRule {
    /// Log index of the `dispute.open` record.
    pub dispute: u64,
    pub verdict: Verdict,
    pub reason: String,
}

/// A reviewed dataset owner's decision on a pending contribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewDecision {
    Accept,
    Reject,
}

/// `contribution.review`: the owner of a reviewed dataset accepts or rejects a pending
/// contribution, once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContributionReview {
    pub contribution: u64,
    pub decision: ReviewDecision,
    /// Quality score 0–100 (accepted contributions only); shown, not used in any payout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A typed body of any kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    ActorRegister(ActorRegister),
    DatasetCreate(DatasetCreate),
    DataContribute(DataContribute),
    ModelRegister(ModelRegister),
    LicenseDefine(LicenseDefine),
    LicenseGrant(LicenseGrant),
    UsageReceipt(UsageReceipt),
    FundsDeposit(FundsDeposit),
    FundsWithdraw(FundsWithdraw),
    LedgerConfig(LedgerConfig),
    ActorUpdate(ActorUpdate),
    LedgerClock(LedgerClock),
    DisputeOpen(DisputeOpen),
    DisputeRule(DisputeRule),
    ContributionReview(ContributionReview),
}

fn decode<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, RecordError> {
    serde_json::from_value(value).map_err(|e| RecordError::Schema(format!("body: {e}")))
}

impl Body {
    pub fn kind(&self) -> Kind {
        match self {
            Body::ActorRegister(_) => Kind::ActorRegister,
            Body::DatasetCreate(_) => Kind::DatasetCreate,
            Body::DataContribute(_) => Kind::DataContribute,
            Body::ModelRegister(_) => Kind::ModelRegister,
            Body::LicenseDefine(_) => Kind::LicenseDefine,
            Body::LicenseGrant(_) => Kind::LicenseGrant,
            Body::UsageReceipt(_) => Kind::UsageReceipt,
            Body::FundsDeposit(_) => Kind::FundsDeposit,
            Body::FundsWithdraw(_) => Kind::FundsWithdraw,
            Body::LedgerConfig(_) => Kind::LedgerConfig,
            Body::ActorUpdate(_) => Kind::ActorUpdate,
            Body::LedgerClock(_) => Kind::LedgerClock,
            Body::DisputeOpen(_) => Kind::DisputeOpen,
            Body::DisputeRule(_) => Kind::DisputeRule,
            Body::ContributionReview(_) => Kind::ContributionReview,
        }
    }

    /// Decode and validate a body of `kind` from JSON.
    pub fn from_value(kind: Kind, value: Value) -> Result<Body, RecordError> {
        // serde would also read a struct from a JSON array; a body is always an object.
        if !value.is_object() {
            return Err(RecordError::Schema("body must be a JSON object".into()));
        }
        let body = match kind {
            Kind::ActorRegister => Body::ActorRegister(decode(value)?),
            Kind::DatasetCreate => Body::DatasetCreate(decode(value)?),
            Kind::DataContribute => Body::DataContribute(decode(value)?),
            Kind::ModelRegister => Body::ModelRegister(decode(value)?),
            Kind::LicenseDefine => Body::LicenseDefine(decode(value)?),
            Kind::LicenseGrant => Body::LicenseGrant(decode(value)?),
            Kind::UsageReceipt => Body::UsageReceipt(decode(value)?),
            Kind::FundsDeposit => Body::FundsDeposit(decode(value)?),
            Kind::FundsWithdraw => Body::FundsWithdraw(decode(value)?),
            Kind::LedgerConfig => Body::LedgerConfig(decode(value)?),
            Kind::ActorUpdate => Body::ActorUpdate(decode(value)?),
            Kind::LedgerClock => Body::LedgerClock(decode(value)?),
            Kind::DisputeOpen => Body::DisputeOpen(decode(value)?),
            Kind::DisputeRule => Body::DisputeRule(decode(value)?),
            Kind::ContributionReview => Body::ContributionReview(decode(value)?),
        };
        body.validate()?;
        Ok(body)
    }

    /// The body as JSON (its canonical form once serialised).
    pub fn to_value(&self) -> Value {
        let v = match self {
            Body::ActorRegister(b) => serde_json::to_value(b),
            Body::DatasetCreate(b) => serde_json::to_value(b),
            Body::DataContribute(b) => serde_json::to_value(b),
            Body::ModelRegister(b) => serde_json::to_value(b),
            Body::LicenseDefine(b) => serde_json::to_value(b),
            Body::LicenseGrant(b) => serde_json::to_value(b),
            Body::UsageReceipt(b) => serde_json::to_value(b),
            Body::FundsDeposit(b) => serde_json::to_value(b),
            Body::FundsWithdraw(b) => serde_json::to_value(b),
            Body::LedgerConfig(b) => serde_json::to_value(b),
            Body::ActorUpdate(b) => serde_json::to_value(b),
            Body::LedgerClock(b) => serde_json::to_value(b),
            Body::DisputeOpen(b) => serde_json::to_value(b),
            Body::DisputeRule(b) => serde_json::to_value(b),
            Body::ContributionReview(b) => serde_json::to_value(b),
        };
        v.expect("plain structs always serialise")
    }

    /// Check every field against its rule and limit. Pure syntax: references to other records
    /// are checked by the state fold.
    pub fn validate(&self) -> Result<(), RecordError> {
        match self {
            Body::ActorRegister(b) => {
                v::handle("handle", &b.handle)?;
                v::line("name", &b.name, MAX_NAME_BYTES)?;
                if let Some(u) = &b.url {
                    v::url("url", u)?;
                }
                if let Some(p) = &b.payout_address {
                    v::line("payout_address", p, v::MAX_URL_BYTES)?;
                }
            }
            Body::DatasetCreate(b) => {
                v::namespaced_id("dataset_id", &b.dataset_id)?;
                v::line("name", &b.name, MAX_NAME_BYTES)?;
                if let Some(d) = &b.description {
                    v::text("description", d, MAX_DESCRIPTION_BYTES)?;
                }
                v::unique_list("allowlist", &b.allowlist, MAX_ALLOWLIST)?;
                for h in &b.allowlist {
                    v::handle("allowlist", h)?;
                }
                if b.access != Access::Allowlist && !b.allowlist.is_empty() {
                    return Err(RecordError::field(
                        "allowlist",
                        "only allowed when access is \"allowlist\"",
                    ));
                }
                if let Some(l) = &b.license_id {
                    v::namespaced_id("license_id", l)?;
                }
                if let Some(q) = &b.quota {
                    v::int_range("quota.window_ms", q.window_ms, 1, MAX_QUOTA_WINDOW_MS)?;
                    if q.max_bytes.is_none() && q.max_count.is_none() {
                        return Err(RecordError::field(
                            "quota",
                            "set max_bytes, max_count or both",
                        ));
                    }
                    if let Some(m) = q.max_bytes {
                        v::int_range("quota.max_bytes", m, 1, MAX_CONTRIBUTION_BYTES)?;
                    }
                    if let Some(m) = q.max_count {
                        v::int_range("quota.max_count", m, 1, u64::from(u32::MAX))?;
                    }
                }
                if let Some(p) = &b.disputes {
                    if let Some(bond) = &p.bond {
                        validate_bond("disputes.bond", bond)?;
                    }
                }
            }
            Body::DataContribute(b) => {
                v::namespaced_id("dataset_id", &b.dataset_id)?;
                v::sha256_ref("content_hash", &b.content_hash)?;
                v::int_range("byte_size", b.byte_size, 1, MAX_CONTRIBUTION_BYTES)?;
                v::int_range("token_count", b.token_count, 0, MAX_CONTRIBUTION_BYTES)?;
                if let Some(m) = &b.media_type {
                    v::line("media_type", m, 100)?;
                }
                if let Some(t) = &b.title {
                    v::line("title", t, MAX_NAME_BYTES)?;
                }
            }
            Body::ModelRegister(b) => validate_model(b)?,
            Body::LicenseDefine(b) => {
                v::namespaced_id("license_id", &b.license_id)?;
                v::line("name", &b.name, MAX_NAME_BYTES)?;
                if let Some(s) = &b.spdx_id {
                    v::tag("spdx_id", s, 64)?;
                }
                validate_terms(&b.terms)?;
            }
            Body::LicenseGrant(b) => {
                v::namespaced_id("license_id", &b.license_id)?;
                match (&b.model_id, &b.dataset_id) {
                    (Some(m), None) => drop(v::namespaced_id("model_id", m)?),
                    (None, Some(d)) => drop(v::namespaced_id("dataset_id", d)?),
                    _ => {
                        return Err(RecordError::field(
                            "model_id",
                            "exactly one of model_id and dataset_id is required",
                        ))
                    }
                }
                v::handle("grantee", &b.grantee)?;
                v::unique_list("uses", &b.uses, MAX_TERM_TAGS)?;
                for u in &b.uses {
                    v::tag("uses", u, 64)?;
                }
                if let Some(t) = b.expires_at_ms {
                    v::int_range("expires_at_ms", t, 0, MAX_SAFE_INTEGER)?;
                }
            }
            Body::UsageReceipt(b) => {
                v::client_id("usage_id", &b.usage_id)?;
                v::namespaced_id("model_id", &b.model_id)?;
                v::handle("payer", &b.payer)?;
                v::tag("use_category", &b.use_category, 64)?;
                v::int_range("input_tokens", b.input_tokens, 0, MAX_CONTRIBUTION_BYTES)?;
                v::int_range("output_tokens", b.output_tokens, 0, MAX_CONTRIBUTION_BYTES)?;
                v::sha256_ref("output_hash", &b.output_hash)?;
                if b.attribution.len() > MAX_ATTRIBUTION_ENTRIES {
                    return Err(RecordError::field(
                        "attribution",
                        format!("must have at most {MAX_ATTRIBUTION_ENTRIES} entries"),
                    ));
                }
                let mut total: u64 = 0;
                for a in &b.attribution {
                    v::namespaced_id("attribution.dataset_id", &a.dataset_id)?;
                    if a.ppm == 0 || a.ppm > PPM_ONE {
                        return Err(RecordError::field(
                            "attribution.ppm",
                            "must be between 1 and 1000000",
                        ));
                    }
                    total += u64::from(a.ppm);
                }
                if !b.attribution.is_empty() && total != u64::from(PPM_ONE) {
                    return Err(RecordError::field(
                        "attribution",
                        format!("shares must sum to exactly 1000000 ppm (got {total})"),
                    ));
                }
                let keys: Vec<(&str, u64)> = b
                    .attribution
                    .iter()
                    .map(|a| (a.dataset_id.as_str(), a.contribution))
                    .collect();
                v::unique_list("attribution", &keys, MAX_ATTRIBUTION_ENTRIES)?;
                if let Some(e) = &b.evidence_hash {
                    v::sha256_ref("evidence_hash", e)?;
                }
                if let Some(m) = b.max_royalty_bps {
                    v::int_range("max_royalty_bps", u64::from(m), 0, u64::from(BPS_ONE))?;
                }
                if let Some(st) = &b.index_state {
                    validate_index_state(st)?;
                }
            }
            Body::FundsDeposit(b) => {
                v::handle("account", &b.account)?;
                v::currency("currency", &b.currency)?;
                if v::amount_micros("amount_micros", &b.amount_micros)? == 0 {
                    return Err(RecordError::field(
                        "amount_micros",
                        "must be greater than zero",
                    ));
                }
                if let Some(r) = &b.reference {
                    v::line("reference", r, 128)?;
                }
            }
            Body::FundsWithdraw(b) => {
                v::currency("currency", &b.currency)?;
                if v::amount_micros("amount_micros", &b.amount_micros)? == 0 {
                    return Err(RecordError::field(
                        "amount_micros",
                        "must be greater than zero",
                    ));
                }
                if let Some(p) = &b.payout_address {
                    v::line("payout_address", p, v::MAX_URL_BYTES)?;
                }
            }
            Body::LedgerClock(b) => {
                v::int_range("now_ms", b.now_ms, 0, crate::MAX_SAFE_INTEGER)?;
            }
            Body::LedgerConfig(b) => {
                v::handle("operator", &b.operator)?;
                v::int_range(
                    "protocol_fee_bps",
                    u64::from(b.protocol_fee_bps),
                    0,
                    u64::from(BPS_ONE),
                )?;
                if let Some(bond) = &b.dispute_bond {
                    validate_bond("dispute_bond", bond)?;
                }
            }
            Body::DisputeOpen(b) => {
                match (&b.contribution, &b.model_id) {
                    (Some(_), None) => {}
                    (None, Some(m)) => {
                        v::namespaced_id("model_id", m)?;
                        if b.original.is_some() {
                            return Err(RecordError::field(
                                "original",
                                "only a dispute about a contribution names an original",
                            ));
                        }
                    }
                    _ => {
                        return Err(RecordError::field(
                            "contribution",
                            "exactly one of contribution and model_id is required",
                        ))
                    }
                }
                if let (Some(c), Some(o)) = (b.contribution, b.original) {
                    if c == o {
                        return Err(RecordError::field(
                            "original",
                            "a contribution cannot copy itself",
                        ));
                    }
                }
                if b.evidence.is_empty() {
                    return Err(RecordError::field(
                        "evidence",
                        "give at least one content hash",
                    ));
                }
                v::unique_list("evidence", &b.evidence, MAX_EVIDENCE)?;
                for e in &b.evidence {
                    v::sha256_ref("evidence", e)?;
                }
                v::text("statement", &b.statement, MAX_DESCRIPTION_BYTES)?;
                if b.statement.trim().is_empty() {
                    return Err(RecordError::field("statement", "must not be empty"));
                }
                if let Some(bond) = &b.bond {
                    validate_bond("bond", bond)?;
                }
            }
            Body::DisputeRule(b) => {
                v::text("reason", &b.reason, MAX_DESCRIPTION_BYTES)?;
                if b.reason.trim().is_empty() {
                    return Err(RecordError::field("reason", "must not be empty"));
                }
            }
            Body::ContributionReview(b) => {
                if let Some(q) = b.quality {
                    v::int_range("quality", u64::from(q), 0, u64::from(MAX_QUALITY))?;
                    if b.decision != ReviewDecision::Accept {
                        return Err(RecordError::field(
                            "quality",
                            "only an accepted contribution gets a quality score",
                        ));
                    }
                }
                if let Some(n) = &b.note {
                    v::text("note", n, MAX_DESCRIPTION_BYTES)?;
                }
            }
            Body::ActorUpdate(b) => {
                if b.name.is_none() && b.url.is_none() && b.payout_address.is_none() {
                    return Err(RecordError::field(
                        "payout_address",
                        "an update must set at least one of name, url and payout_address",
                    ));
                }
                if let Some(n) = &b.name {
                    v::line("name", n, MAX_NAME_BYTES)?;
                }
                if let Some(u) = &b.url {
                    v::url("url", u)?;
                }
                if let Some(p) = &b.payout_address {
                    v::line("payout_address", p, v::MAX_URL_BYTES)?;
                }
            }
        }
        Ok(())
    }
}

fn validate_bond(field: &str, b: &Bond) -> Result<(), RecordError> {
    v::currency(field, &b.currency)?;
    if v::amount_micros(field, &b.amount_micros)? == 0 {
        return Err(RecordError::field(
            field,
            "a bond must be greater than zero",
        ));
    }
    Ok(())
}

fn validate_model(b: &ModelRegister) -> Result<(), RecordError> {
    v::namespaced_id("model_id", &b.model_id)?;
    v::line("name", &b.name, MAX_NAME_BYTES)?;
    if let Some(d) = &b.description {
        v::text("description", d, MAX_DESCRIPTION_BYTES)?;
    }
    if b.parents.len() > MAX_PARENTS {
        return Err(RecordError::field(
            "parents",
            format!("must have at most {MAX_PARENTS} entries"),
        ));
    }
    let parent_ids: Vec<&str> = b.parents.iter().map(|p| p.model_id.as_str()).collect();
    v::unique_list("parents", &parent_ids, MAX_PARENTS)?;
    for p in &b.parents {
        v::namespaced_id("parents.model_id", &p.model_id)?;
    }
    // Relation shape: a merge combines two or more parents and nothing else; otherwise at most
    // one parent is the base the weights come from (finetune/adapter/quantized), and any number
    // may be distillation teachers.
    let merges = b
        .parents
        .iter()
        .filter(|p| p.relation == Relation::Merge)
        .count();
    if merges > 0 && (merges != b.parents.len() || merges < 2) {
        return Err(RecordError::field(
            "parents",
            "a merge needs at least two parents, all with relation \"merge\"",
        ));
    }
    let bases = b
        .parents
        .iter()
        .filter(|p| {
            matches!(
                p.relation,
                Relation::Finetune | Relation::Adapter | Relation::Quantized
            )
        })
        .count();
    if bases > 1 {
        return Err(RecordError::field("parents", "at most one parent may be a finetune/adapter/quantized base; use \"merge\" for several"));
    }
    v::unique_list("datasets", &b.datasets, MAX_MODEL_DATASETS)?;
    for d in &b.datasets {
        v::namespaced_id("datasets", d)?;
    }
    if b.artifacts.len() > MAX_ARTIFACTS {
        return Err(RecordError::field(
            "artifacts",
            format!("must have at most {MAX_ARTIFACTS} entries"),
        ));
    }
    let paths: Vec<&str> = b.artifacts.iter().map(|a| a.path.as_str()).collect();
    v::unique_list("artifacts.path", &paths, MAX_ARTIFACTS)?;
    let mut tensors = 0usize;
    for a in &b.artifacts {
        v::relative_path("artifacts.path", &a.path)?;
        v::int_range("artifacts.size_bytes", a.size_bytes, 0, MAX_SAFE_INTEGER)?;
        v::sha256_ref("artifacts.sha256", &a.sha256)?;
        tensors += a.tensors.len();
        if tensors > MAX_TENSORS {
            return Err(RecordError::field(
                "artifacts.tensors",
                format!("at most {MAX_TENSORS} tensors in one record"),
            ));
        }
        let names: Vec<&str> = a.tensors.iter().map(|t| t.name.as_str()).collect();
        v::unique_list("artifacts.tensors.name", &names, MAX_TENSORS)?;
        for t in &a.tensors {
            v::line("artifacts.tensors.name", &t.name, 256)?;
            v::tag("artifacts.tensors.dtype", &t.dtype, 16)?;
            if t.shape.len() > MAX_TENSOR_DIMS {
                return Err(RecordError::field(
                    "artifacts.tensors.shape",
                    format!("at most {MAX_TENSOR_DIMS} dimensions"),
                ));
            }
            v::sha256_ref("artifacts.tensors.sha256", &t.sha256)?;
        }
    }
    if let Some(l) = &b.license_id {
        v::namespaced_id("license_id", l)?;
    }
    if let Some(u) = &b.url {
        v::url("url", u)?;
    }
    if let Some(m) = b.max_royalty_bps {
        v::int_range("max_royalty_bps", u64::from(m), 0, u64::from(BPS_ONE))?;
    }
    if let Some(a) = &b.adapter {
        validate_adapter(a)?;
    }
    if let Some(t) = &b.training {
        validate_training(t)?;
    }
    if let Some(src) = &b.source {
        validate_hub_repo("source.repo", &src.repo)?;
        if !is_commit_id(&src.revision) {
            return Err(RecordError::field(
                "source.revision",
                "must be a full commit id: 40 or 64 lowercase hex digits",
            ));
        }
    }
    Ok(())
}

fn validate_adapter(a: &AdapterConfig) -> Result<(), RecordError> {
    if let Some(t) = &a.peft_type {
        v::tag("adapter.peft_type", t, 64)?;
    }
    v::unique_list(
        "adapter.target_modules",
        &a.target_modules,
        MAX_ADAPTER_TARGETS,
    )?;
    for m in &a.target_modules {
        v::line("adapter.target_modules", m, MAX_ADAPTER_TARGET_BYTES)?;
    }
    if let Some(r) = a.r {
        v::int_range("adapter.r", r, 0, MAX_SAFE_INTEGER)?;
    }
    if let Some(alpha) = a.lora_alpha {
        v::int_range("adapter.lora_alpha", alpha, 0, MAX_SAFE_INTEGER)?;
    }
    Ok(())
}

/// A training run states something (an empty one would be a second encoding of "not stated"),
/// and every part within its limit.
fn validate_training(t: &TrainingRun) -> Result<(), RecordError> {
    if t.config_hash.is_none()
        && t.code.is_none()
        && t.framework.is_none()
        && t.credits.is_empty()
        && t.compute.is_none()
    {
        return Err(RecordError::field(
            "training",
            "set at least one of config_hash, code, framework, credits and compute, or leave training out",
        ));
    }
    if let Some(h) = &t.config_hash {
        v::sha256_ref("training.config_hash", h)?;
    }
    if let Some(c) = &t.code {
        v::url("training.code.repository", &c.repository)?;
        if !is_commit_id(&c.commit) {
            return Err(RecordError::field(
                "training.code.commit",
                "must be a full commit id: 40 or 64 lowercase hex digits",
            ));
        }
    }
    if let Some(f) = &t.framework {
        v::line("training.framework.name", &f.name, MAX_TRAINING_LABEL_BYTES)?;
        v::line(
            "training.framework.version",
            &f.version,
            MAX_TRAINING_LABEL_BYTES,
        )?;
    }
    v::unique_list("training.credits", &t.credits, MAX_CREDITS)?;
    for c in &t.credits {
        v::handle("training.credits.actor", &c.actor)?;
    }
    if let Some(c) = &t.compute {
        if c.hardware.is_none()
            && c.accelerator_hours.is_none()
            && c.energy_wh.is_none()
            && c.region.is_none()
        {
            return Err(RecordError::field(
                "training.compute",
                "set at least one of hardware, accelerator_hours, energy_wh and region, or leave compute out",
            ));
        }
        if let Some(h) = &c.hardware {
            v::line("training.compute.hardware", h, MAX_TRAINING_LABEL_BYTES)?;
        }
        if let Some(h) = c.accelerator_hours {
            v::int_range(
                "training.compute.accelerator_hours",
                h,
                0,
                MAX_ACCELERATOR_HOURS,
            )?;
        }
        if let Some(e) = c.energy_wh {
            v::int_range("training.compute.energy_wh", e, 0, MAX_ENERGY_WH)?;
        }
        if let Some(r) = &c.region {
            v::line("training.compute.region", r, MAX_TRAINING_LABEL_BYTES)?;
        }
    }
    Ok(())
}

fn validate_terms(t: &LicenseTerms) -> Result<(), RecordError> {
    if t.royalty_bps > BPS_ONE {
        return Err(RecordError::field(
            "terms.royalty_bps",
            "must be at most 10000",
        ));
    }
    if t.data_share_bps > BPS_ONE || t.royalty_bps + t.data_share_bps > BPS_ONE {
        return Err(RecordError::field(
            "terms.data_share_bps",
            "royalty_bps + data_share_bps must be at most 10000",
        ));
    }
    v::currency("terms.currency", &t.currency)?;
    v::amount_micros("terms.price_per_call_micros", &t.price_per_call_micros)?;
    v::amount_micros(
        "terms.price_per_1k_output_tokens_micros",
        &t.price_per_1k_output_tokens_micros,
    )?;
    v::amount_micros("terms.registration_fee_micros", &t.registration_fee_micros)?;
    if let Some(f) = &t.royalty_floor_per_call_micros {
        v::amount_micros("terms.royalty_floor_per_call_micros", f)?;
    }
    if let Some(f) = &t.royalty_floor_per_1k_output_tokens_micros {
        v::amount_micros("terms.royalty_floor_per_1k_output_tokens_micros", f)?;
    }
    for (field, list) in [
        ("terms.allowed_uses", &t.allowed_uses),
        ("terms.forbidden_uses", &t.forbidden_uses),
        ("terms.territories", &t.territories),
    ] {
        v::unique_list(field, list, MAX_TERM_TAGS)?;
        for item in list {
            v::tag(field, item, 64)?;
        }
    }
    Ok(())
}
