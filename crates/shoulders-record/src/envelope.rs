//! The signed envelope and its exact bytes.

use crate::canonical::{canonical_bytes, parse_integer_json};
use crate::{validate, ActorKey, Body, Kind, PublicKey, RecordError, MAX_RECORD_BYTES};
use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use serde::Deserialize;
use serde_json::{json, Value};

/// The envelope format this crate reads and writes.
pub const FORMAT_VERSION: u64 = 1;
/// Prefix of every signed message, so a record signature can never be replayed as a signature
/// over anything else (a checkpoint, another protocol's message).
pub const SIGNING_DOMAIN: &[u8] = b"shoulders/record/v1\n";

/// A decoded record: envelope fields plus typed body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub kind: Kind,
    pub signer: PublicKey,
    /// Client-chosen idempotency key, unique per signer.
    pub client_id: String,
    /// When the signer says it signed, in milliseconds since the Unix epoch.
    pub ts_ms: u64,
    pub body: Body,
    pub signature: [u8; 64],
}

impl Record {
    fn envelope(&self, with_sig: bool) -> Value {
        let mut v = json!({
            "v": FORMAT_VERSION,
            "kind": self.kind.as_str(),
            "signer": self.signer.to_base64(),
            "id": self.client_id,
            "ts_ms": self.ts_ms,
            "body": self.body.to_value(),
        });
        if with_sig {
            v["sig"] = Value::String(B64.encode(self.signature));
        }
        v
    }

    /// The exact message the signature covers.
    pub fn signing_payload(&self) -> Vec<u8> {
        let mut out = SIGNING_DOMAIN.to_vec();
        out.extend(canonical_bytes(&self.envelope(false)));
        out
    }
}

/// A record together with the exact bytes that were signed and will be logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedRecord {
    record: Record,
    bytes: Vec<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvelope {
    v: u64,
    kind: String,
    signer: String,
    id: String,
    ts_ms: u64,
    body: Value,
    sig: String,
}

impl SignedRecord {
    /// Decode and check everything but the signature: size, UTF-8, JSON, schema, field rules,
    /// canonical encoding. Split from [`SignedRecord::verify_signature`] so callers can verify
    /// signatures in parallel.
    pub fn decode(bytes: Vec<u8>) -> Result<SignedRecord, RecordError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(RecordError::TooLarge {
                size_bytes: bytes.len(),
                limit_bytes: MAX_RECORD_BYTES,
            });
        }
        if std::str::from_utf8(&bytes).is_err() {
            return Err(RecordError::NotUtf8);
        }
        let value = parse_integer_json(&bytes)?;
        let raw: RawEnvelope = serde_json::from_value(value)
            .map_err(|e| RecordError::Schema(format!("envelope: {e}")))?;
        if raw.v != FORMAT_VERSION {
            return Err(RecordError::UnsupportedVersion(raw.v));
        }
        let kind = Kind::parse(&raw.kind)?;
        let signer = PublicKey::from_base64(&raw.signer).ok_or(RecordError::BadPublicKey)?;
        signer.verifying_key().ok_or(RecordError::BadPublicKey)?;
        validate::client_id("id", &raw.id)?;
        let signature: [u8; 64] = B64
            .decode(&raw.sig)
            .ok()
            .and_then(|s| s.try_into().ok())
            .ok_or(RecordError::BadSignature)?;
        let body = Body::from_value(kind, raw.body)?;
        let record = Record {
            kind,
            signer,
            client_id: raw.id,
            ts_ms: raw.ts_ms,
            body,
            signature,
        };
        if canonical_bytes(&record.envelope(true)) != bytes {
            return Err(RecordError::NotCanonical);
        }
        Ok(SignedRecord { record, bytes })
    }

    /// Strict ed25519 verification (rejects small-order keys and non-canonical signatures, so a
    /// valid signature cannot be mutated into a second valid one).
    pub fn verify_signature(&self) -> Result<(), RecordError> {
        let key = self
            .record
            .signer
            .verifying_key()
            .ok_or(RecordError::BadPublicKey)?;
        let sig = ed25519_dalek::Signature::from_bytes(&self.record.signature);
        key.verify_strict(&self.record.signing_payload(), &sig)
            .map_err(|_| RecordError::BadSignature)
    }

    /// [`SignedRecord::decode`] then [`SignedRecord::verify_signature`].
    pub fn from_bytes(bytes: Vec<u8>) -> Result<SignedRecord, RecordError> {
        let rec = Self::decode(bytes)?;
        rec.verify_signature()?;
        Ok(rec)
    }

    pub fn record(&self) -> &Record {
        &self.record
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_parts(self) -> (Record, Vec<u8>) {
        (self.record, self.bytes)
    }
}

/// Validate `body`, then sign it as `key` and return the canonical record bytes.
pub fn sign_record(
    key: &ActorKey,
    client_id: &str,
    ts_ms: u64,
    body: Body,
) -> Result<SignedRecord, RecordError> {
    validate::client_id("id", client_id)?;
    validate::int_range("ts_ms", ts_ms, 0, crate::MAX_SAFE_INTEGER)?;
    body.validate()?;
    let mut record = Record {
        kind: body.kind(),
        signer: key.public(),
        client_id: client_id.to_string(),
        ts_ms,
        body,
        signature: [0; 64],
    };
    record.signature = key.sign(&record.signing_payload());
    let bytes = canonical_bytes(&record.envelope(true));
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(RecordError::TooLarge {
            size_bytes: bytes.len(),
            limit_bytes: MAX_RECORD_BYTES,
        });
    }
    Ok(SignedRecord { record, bytes })
}
