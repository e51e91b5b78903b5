use crate::FORMAT_VERSION;

/// Why record bytes were refused before they reach the state fold. Each variant has a stable
/// code (see [`RecordError::code`]) that API clients and scripts can rely on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record is {size_bytes} bytes; the limit is {limit_bytes}")]
    TooLarge {
        size_bytes: usize,
        limit_bytes: usize,
    },
    #[error("record is not valid UTF-8")]
    NotUtf8,
    #[error("record is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("record has a non-integer or out-of-range number at {path}; use integers up to 2^53-1 and decimal strings for money")]
    BadNumber { path: String },
    #[error("record does not match the schema: {0}")]
    Schema(String),
    #[error("unsupported record format version {0}; this ledger reads version {FORMAT_VERSION}")]
    UnsupportedVersion(u64),
    #[error("unknown record kind {0:?}")]
    UnknownKind(String),
    #[error("field `{field}` is invalid: {reason}")]
    InvalidField { field: String, reason: String },
    #[error("record bytes are not canonical (sorted keys, no whitespace, absent optional fields omitted); re-encode with the canonical encoder before signing")]
    NotCanonical,
    #[error("signer public key is not a valid ed25519 key (a canonical encoding of a point not of small order)")]
    BadPublicKey,
    #[error("signature does not verify for the signer's key")]
    BadSignature,
}

impl RecordError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            RecordError::TooLarge { .. } => "E_RECORD_TOO_LARGE",
            RecordError::NotUtf8 => "E_RECORD_NOT_UTF8",
            RecordError::MalformedJson(_) => "E_RECORD_MALFORMED",
            RecordError::BadNumber { .. } => "E_RECORD_BAD_NUMBER",
            RecordError::Schema(_) => "E_RECORD_SCHEMA",
            RecordError::UnsupportedVersion(_) => "E_RECORD_VERSION",
            RecordError::UnknownKind(_) => "E_KIND_UNKNOWN",
            RecordError::InvalidField { .. } => "E_FIELD_INVALID",
            RecordError::NotCanonical => "E_RECORD_NOT_CANONICAL",
            RecordError::BadPublicKey => "E_KEY_INVALID",
            RecordError::BadSignature => "E_SIG_INVALID",
        }
    }

    pub(crate) fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        RecordError::InvalidField {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
