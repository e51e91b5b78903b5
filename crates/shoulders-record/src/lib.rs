//! The shoulders record: a versioned, signed envelope around a typed body.
//!
//! A record's bytes are canonical JSON (sorted keys, no whitespace, integers only) so two
//! implementations produce the same bytes and every accepted record has exactly one encoding.
//! The signature is ed25519 (the rule set of [`sig`]: ZIP-215 with canonical encodings, the same
//! for single and batch verification) over a domain-separated encoding of the
//! envelope without its `sig` field. The log stores the exact bytes; nothing is re-serialised.
//!
//! Pure: no filesystem, clock or network. The caller passes the timestamp and randomness.

mod body;
mod canonical;
mod envelope;
#[cfg(test)]
mod equiv_tests;
mod error;
mod fast;
mod keys;
pub mod sig;
pub mod validate;

pub use body::*;
pub use canonical::{canonical_bytes, parse_integer_json};
pub use envelope::{sign_record, Record, SignedRecord, FORMAT_VERSION, SIGNING_DOMAIN};
pub use error::RecordError;
pub use keys::{ActorKey, PublicKey};

/// Largest accepted record, in bytes: 65 535, the most a C2SP `tlog-tiles` entry bundle can
/// frame (a big-endian `u16` length), so every record of the log can be served as a tile and
/// read back by any tlog client. Larger documents (contributions, training configurations) live
/// in the content store and the record carries their hash.
pub const MAX_RECORD_BYTES: usize = 65_535;
/// Longest client id (idempotency key), in bytes.
pub const MAX_CLIENT_ID_BYTES: usize = 128;
/// Longest ledger origin a record may name (the C2SP note origin limit the log uses).
pub const MAX_LOG_ORIGIN_BYTES: usize = 255;
/// Largest integer accepted in a record: 2^53 − 1, so every JSON reader (JavaScript included)
/// reads the same value. Money amounts are decimal strings instead.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
