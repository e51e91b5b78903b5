use shoulders_record::{Kind, RecordError};

/// Why the fold refused a record. A refused record is never appended; each variant has a
/// stable code (see [`Reject::code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("kind {0} is defined but not yet accepted by this ledger version")]
    KindNotEnabled(Kind),
    #[error("signer {0} is not a registered actor; register it with actor.register first")]
    SignerUnknown(String),
    #[error("this key is already registered as actor {0:?}")]
    ActorKeyExists(String),
    #[error("handle {0:?} is already taken")]
    HandleTaken(String),
    #[error("no actor with handle {0:?}")]
    ActorUnknown(String),
    #[error("id {id:?} must be in the signer's namespace {expected:?}/...")]
    NamespaceMismatch { id: String, expected: String },
    #[error("dataset {0:?} already exists")]
    DatasetExists(String),
    #[error("no dataset {0:?}")]
    DatasetUnknown(String),
    #[error(
        "dataset {dataset:?} does not accept contributions from {contributor:?} (access: {access})"
    )]
    ContributionForbidden {
        dataset: String,
        contributor: String,
        access: &'static str,
    },
    #[error("model {0:?} already exists")]
    ModelExists(String),
    #[error("no model {0:?}")]
    ModelUnknown(String),
    #[error("model {0:?} would be its own ancestor")]
    LineageCycle(String),
    #[error("no licence {0:?}")]
    LicenseUnknown(String),
    #[error("licence {0:?} already exists")]
    LicenseExists(String),
    #[error("only {owner:?}, the owner of {what}, may do this")]
    NotOwner { what: String, owner: String },
    #[error(transparent)]
    License(#[from] shoulders_license::Conflict),
    #[error("signer already used client id {client_id:?} for the record at index {index}")]
    DuplicateId { client_id: String, index: u64 },
}

impl Reject {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Reject::Record(e) => e.code(),
            Reject::KindNotEnabled(_) => "E_KIND_NOT_ENABLED",
            Reject::SignerUnknown(_) => "E_SIGNER_UNKNOWN",
            Reject::ActorKeyExists(_) => "E_ACTOR_KEY_EXISTS",
            Reject::HandleTaken(_) => "E_HANDLE_TAKEN",
            Reject::ActorUnknown(_) => "E_ACTOR_UNKNOWN",
            Reject::NamespaceMismatch { .. } => "E_NAMESPACE_MISMATCH",
            Reject::DatasetExists(_) => "E_DATASET_EXISTS",
            Reject::DatasetUnknown(_) => "E_DATASET_UNKNOWN",
            Reject::ContributionForbidden { .. } => "E_CONTRIBUTION_FORBIDDEN",
            Reject::ModelExists(_) => "E_MODEL_EXISTS",
            Reject::ModelUnknown(_) => "E_MODEL_UNKNOWN",
            Reject::LineageCycle(_) => "E_LINEAGE_CYCLE",
            Reject::LicenseUnknown(_) => "E_LICENSE_UNKNOWN",
            Reject::DuplicateId { .. } => "E_DUPLICATE_ID",
            Reject::LicenseExists(_) => "E_LICENSE_EXISTS",
            Reject::NotOwner { .. } => "E_NOT_OWNER",
            Reject::License(c) => c.code(),
        }
    }
}
