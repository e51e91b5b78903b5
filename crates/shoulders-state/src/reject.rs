use shoulders_record::RecordError;

/// Why the fold refused a record. A refused record is never appended; each variant has a
/// stable code (see [`Reject::code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    #[error(transparent)]
    Record(#[from] RecordError),
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
    #[error("this ledger has no operator yet: its first ledger.config record (written by `shoulders init`) names one")]
    NoOperator,
    #[error("only the ledger operator {operator:?} may sign this record")]
    NotOperator { operator: String },
    #[error("the log's clock may not go back: {now_ms} ms is before {log_time_ms} ms")]
    ClockBackwards { now_ms: u64, log_time_ms: u64 },
    #[error("the first ledger.config must name its own signer as operator, not {operator:?}")]
    OperatorSelf { operator: String },
    #[error("usage id {usage_id:?} was already charged by the receipt at index {index}")]
    UsageDuplicate { usage_id: String, index: u64 },
    #[error("the licence terms of {model_id} do not allow the use {use_tag:?}: {reasons}")]
    UseDenied {
        model_id: String,
        use_tag: String,
        reasons: String,
    },
    #[error("model {0:?} has no licence with a price, so it cannot be metered; its owner registers it with a license_id")]
    ModelNotPriced(String),
    #[error(
        "the charge of {charge_micros} micro-units is over the limit of 10^18 for one receipt"
    )]
    ChargeTooLarge { charge_micros: u128 },
    #[error("account {account:?} holds {balance_micros} {currency} micro-units, {needed_micros} are needed; deposit more first")]
    InsufficientFunds {
        account: String,
        currency: String,
        balance_micros: i128,
        needed_micros: i128,
    },
    #[error("no contribution at log index {0}")]
    ContributionUnknown(u64),
    #[error("attribution: {0}")]
    AttributionInvalid(String),
    #[error("index_state.ledger_size {ledger_size} is beyond the receipt's own log index {index}: an index cannot hold records appended after the receipt")]
    IndexStateFuture { ledger_size: u64, index: u64 },
    #[error(
        "actor {0:?} has no payout address: give one in the withdrawal or set it with actor.update"
    )]
    NoPayoutAddress(String),
    #[error("signer already used client id {client_id:?} for the record at index {index}")]
    DuplicateId { client_id: String, index: u64 },
    #[error("dispute: {0}")]
    DisputeInvalid(String),
    #[error("{target} already has an open dispute (index {dispute}); add evidence there or wait for its ruling")]
    DisputeAlreadyOpen { target: String, dispute: u64 },
    #[error("no dispute opened at log index {0}")]
    DisputeUnknown(u64),
    #[error("dispute {dispute} was already ruled on at index {ruled_at}")]
    DisputeClosed { dispute: u64, ruled_at: u64 },
    #[error("only {arbiter:?} may rule on dispute {dispute}")]
    NotArbiter { dispute: u64, arbiter: String },
    #[error("the dispute policy asks for a bond of {expected}, the record puts up {given}; state exactly the policy's bond")]
    DisputeBond { expected: String, given: String },
    #[error("{claimant:?} already has {max} open disputes, the most one actor may have; wait for rulings")]
    TooManyDisputes { claimant: String, max: u32 },
    #[error("review: {0}")]
    ReviewInvalid(String),
    #[error("{contributor:?} has used {used} of the {limit} {what} it may add to {dataset:?} per {window_ms} ms window (this adds {adding}); the window resets at {resets_at_ms} ms")]
    QuotaExceeded {
        dataset: String,
        contributor: String,
        what: &'static str,
        used: u64,
        adding: u64,
        limit: u64,
        window_ms: u64,
        resets_at_ms: u64,
    },
    #[error("{model_id} declares training on {dataset:?}, which holds {count} contribution(s) with a text-and-data-mining reservation: {contributions:?}")]
    TdmReserved {
        model_id: String,
        dataset: String,
        count: usize,
        contributions: Vec<u64>,
    },
}

impl Reject {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Reject::Record(e) => e.code(),
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
            Reject::NoOperator => "E_NO_OPERATOR",
            Reject::NotOperator { .. } => "E_NOT_OPERATOR",
            Reject::ClockBackwards { .. } => "E_CLOCK_BACKWARDS",
            Reject::OperatorSelf { .. } => "E_OPERATOR_SELF",
            Reject::UsageDuplicate { .. } => "E_USAGE_DUPLICATE",
            Reject::UseDenied { .. } => "E_USE_DENIED",
            Reject::ModelNotPriced(_) => "E_MODEL_NOT_PRICED",
            Reject::ChargeTooLarge { .. } => "E_CHARGE_TOO_LARGE",
            Reject::InsufficientFunds { .. } => "E_INSUFFICIENT_FUNDS",
            Reject::ContributionUnknown(_) => "E_CONTRIBUTION_UNKNOWN",
            Reject::AttributionInvalid(_) => "E_ATTRIBUTION_INVALID",
            Reject::IndexStateFuture { .. } => "E_INDEX_STATE_FUTURE",
            Reject::NoPayoutAddress(_) => "E_NO_PAYOUT_ADDRESS",
            Reject::DisputeInvalid(_) => "E_DISPUTE_INVALID",
            Reject::DisputeAlreadyOpen { .. } => "E_DISPUTE_ALREADY_OPEN",
            Reject::DisputeUnknown(_) => "E_DISPUTE_UNKNOWN",
            Reject::DisputeClosed { .. } => "E_DISPUTE_CLOSED",
            Reject::NotArbiter { .. } => "E_NOT_ARBITER",
            Reject::DisputeBond { .. } => "E_DISPUTE_BOND",
            Reject::TooManyDisputes { .. } => "E_TOO_MANY_DISPUTES",
            Reject::ReviewInvalid(_) => "E_REVIEW_INVALID",
            Reject::QuotaExceeded { .. } => "E_DATASET_QUOTA_EXCEEDED",
            Reject::TdmReserved { .. } => "E_TDM_RESERVED",
        }
    }
}
