//! The signed envelope and its exact bytes.

use crate::canonical::{canonical_bytes, parse_integer_json};
use crate::{validate, ActorKey, Body, Kind, PublicKey, RecordError, MAX_RECORD_BYTES};
use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use serde::Deserialize;
use serde_json::{json, Value};

/// The envelope format this crate reads and writes. Version 2 added `log`, the origin of the
/// one ledger a record is signed for.
pub const FORMAT_VERSION: u64 = 2;
/// Prefix of every signed message, so a record signature can never be replayed as a signature
/// over anything else (a checkpoint, another protocol's message).
pub const SIGNING_DOMAIN: &[u8] = b"shoulders/record/v1\n";

/// A decoded record: envelope fields plus typed body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub kind: Kind,
    pub signer: PublicKey,
    /// The origin of the ledger this record is signed for (its checkpoints' first line). The
    /// signature covers it, so a record signed for one ledger cannot be replayed on another:
    /// the ledger refuses any other origin with `E_WRONG_LEDGER`.
    pub log: String,
    /// Client-chosen idempotency key, unique per signer.
    pub client_id: String,
    /// When the signer says it signed, in milliseconds since the Unix epoch.
    pub ts_ms: u64,
    pub body: Body,
    pub signature: [u8; 64],
}

impl Record {
    /// The canonical envelope as a JSON value (used to cross-check [`Record::encode`]).
    pub fn envelope(&self, with_sig: bool) -> Value {
        let mut v = json!({
            "v": FORMAT_VERSION,
            "kind": self.kind.as_str(),
            "log": self.log,
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

    /// `(signing payload, canonical record bytes)` from a single serialisation of the body.
    ///
    /// The envelope's keys in canonical (byte) order are `body, id, kind, log, sig, signer,
    /// ts_ms, v`, so both encodings are the same text with the `sig` member present or absent; the
    /// body is canonical on its own because its members are written in key order.
    pub fn encode(&self) -> (Vec<u8>, Vec<u8>) {
        let mut payload = Vec::with_capacity(512);
        let split = self.write_payload(&mut payload);
        let mut full = Vec::with_capacity(payload.len() + 100);
        full.extend_from_slice(&payload[SIGNING_DOMAIN.len()..split]);
        self.write_sig_member(&mut full);
        full.extend_from_slice(&payload[split..]);
        (payload, full)
    }

    /// Append [`SIGNING_DOMAIN`] and the canonical envelope without `sig` to `payload`; returns
    /// where the `sig` member goes in it (before `,"signer":`). The body is written straight
    /// from the typed struct ([`crate::fast::write_body`]), through `Value` only if that gives
    /// up (it never does for the bodies of this crate).
    fn write_payload(&self, payload: &mut Vec<u8>) -> usize {
        self.try_write_payload(payload, true)
            .expect("with the Value fallback the body always encodes")
    }

    /// [`Record::write_payload`]; without `fallback`, `None` where the fast body writer gives
    /// up (an integer above 2^53 − 1: bytes the reference decoder refuses).
    fn try_write_payload(&self, payload: &mut Vec<u8>, fallback: bool) -> Option<usize> {
        let json_str = |out: &mut Vec<u8>, s: &str| {
            serde_json::to_writer(out, s).expect("strings always serialise")
        };
        payload.extend_from_slice(SIGNING_DOMAIN);
        payload.extend_from_slice(b"{\"body\":");
        let mark = payload.len();
        if crate::fast::write_body(&self.body, payload).is_err() {
            if !fallback {
                return None;
            }
            payload.truncate(mark);
            payload.extend_from_slice(&canonical_bytes(&self.body.to_value()));
        }
        payload.extend_from_slice(b",\"id\":");
        json_str(payload, &self.client_id);
        payload.extend_from_slice(b",\"kind\":");
        json_str(payload, self.kind.as_str());
        payload.extend_from_slice(b",\"log\":");
        json_str(payload, &self.log);
        let split = payload.len();
        payload.extend_from_slice(b",\"signer\":");
        json_str(payload, &self.signer.to_base64());
        payload.extend_from_slice(b",\"ts_ms\":");
        serde_json::to_writer(&mut *payload, &self.ts_ms).expect("integers always serialise");
        payload.extend_from_slice(b",\"v\":");
        serde_json::to_writer(&mut *payload, &FORMAT_VERSION).expect("integers always serialise");
        payload.push(b'}');
        Some(split)
    }

    /// The `,"sig":"<base64>"` member.
    fn write_sig_member(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b",\"sig\":\"");
        out.extend_from_slice(B64.encode(self.signature).as_bytes());
        out.push(b'"');
    }

    /// The signing payload, if `bytes` are exactly the canonical record bytes of `self`: one
    /// encode and a compare, without building the full record bytes.
    fn payload_if_canonical(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let mut payload = Vec::with_capacity(bytes.len());
        let split = self.try_write_payload(&mut payload, false)?;
        let head = &payload[SIGNING_DOMAIN.len()..split];
        let tail = &payload[split..];
        let rest = bytes.strip_prefix(head)?;
        let mut sig = Vec::with_capacity(96);
        self.write_sig_member(&mut sig);
        let rest = rest.strip_prefix(sig.as_slice())?;
        (rest == tail).then_some(payload)
    }

    /// The encoding the reference decoder checks against: the body through `serde_json::Value`
    /// (kept to prove the fast encoder writes the same bytes).
    pub(crate) fn encode_reference(&self) -> (Vec<u8>, Vec<u8>) {
        let json_str = |s: &str| serde_json::to_vec(s).expect("strings always serialise");
        let body = canonical_bytes(&self.body.to_value());
        let mut head = Vec::with_capacity(body.len() + 256);
        head.extend_from_slice(b"{\"body\":");
        head.extend_from_slice(&body);
        head.extend_from_slice(b",\"id\":");
        head.extend_from_slice(&json_str(&self.client_id));
        head.extend_from_slice(b",\"kind\":");
        head.extend_from_slice(&json_str(self.kind.as_str()));
        head.extend_from_slice(b",\"log\":");
        head.extend_from_slice(&json_str(&self.log));
        let mut tail = Vec::with_capacity(96);
        tail.extend_from_slice(b",\"signer\":");
        tail.extend_from_slice(&json_str(&self.signer.to_base64()));
        tail.extend_from_slice(
            format!(",\"ts_ms\":{},\"v\":{FORMAT_VERSION}}}", self.ts_ms).as_bytes(),
        );

        let mut payload = Vec::with_capacity(SIGNING_DOMAIN.len() + head.len() + tail.len());
        payload.extend_from_slice(SIGNING_DOMAIN);
        payload.extend_from_slice(&head);
        payload.extend_from_slice(&tail);
        let mut full = head;
        full.extend_from_slice(b",\"sig\":\"");
        full.extend_from_slice(B64.encode(self.signature).as_bytes());
        full.push(b'"');
        full.extend_from_slice(&tail);
        (payload, full)
    }

    /// The exact message the signature covers: [`SIGNING_DOMAIN`] then the canonical envelope
    /// without `sig`.
    pub fn signing_payload(&self) -> Vec<u8> {
        self.encode().0
    }
}

/// A record together with the exact bytes that were signed and will be logged.
///
/// Small to move (about 64 bytes): the decoded record and key sit behind one box, because
/// submit paths move records through several vectors and channels on their way to the writer,
/// and moving the inline record (hundreds of bytes) dominated the submitting thread.
#[derive(Clone, Debug)]
pub struct SignedRecord {
    parsed: Box<Parsed>,
    bytes: Vec<u8>,
    /// Kept from decoding so signature checks neither re-encode nor re-decompress the key.
    payload: Vec<u8>,
    /// The signature was checked (or made here): submitting it again need not re-verify.
    verified: bool,
}

#[derive(Clone, Debug)]
struct Parsed {
    record: Record,
    key: ed25519_zebra::VerificationKey,
}

/// Two records are equal when their bytes are: the bytes determine everything else.
impl PartialEq for SignedRecord {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for SignedRecord {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvelope {
    v: u64,
    kind: String,
    log: String,
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
    ///
    /// Canonical records take the fast path ([`crate::fast`]: parsed straight into the typed
    /// structs, encoded once and compared); anything else goes to the reference decoder, which
    /// decides the verdict and the error. Both accept exactly the same bytes.
    pub fn decode(bytes: Vec<u8>) -> Result<SignedRecord, RecordError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(RecordError::TooLarge {
                size_bytes: bytes.len(),
                limit_bytes: MAX_RECORD_BYTES,
            });
        }
        if let Some((record, payload, key)) = Self::decode_fast(&bytes) {
            return Ok(SignedRecord {
                parsed: Box::new(Parsed { record, key }),
                bytes,
                payload,
                verified: false,
            });
        }
        Self::decode_reference(bytes)
    }

    /// Accept canonical record bytes without a `Value` tree: every check of
    /// [`SignedRecord::decode_reference`] holds when this returns `Some` (sizes aside, checked
    /// before): the bytes are the canonical encoding of the typed record (so they are UTF-8,
    /// JSON without repeated keys, and read back to that record) written by the body writer
    /// (which writes only safe integers), `ts_ms` is a safe integer, and the version, kind, key,
    /// id, origin, signature encoding and body rules hold.
    /// `None` says nothing: the reference decoder decides.
    pub(crate) fn decode_fast(
        bytes: &[u8],
    ) -> Option<(Record, Vec<u8>, ed25519_zebra::VerificationKey)> {
        let env = crate::fast::parse_envelope(bytes)?;
        // Every other number of the record is a body field, which the body writer only writes
        // when it is a safe integer.
        if env.v != FORMAT_VERSION || env.ts_ms > crate::MAX_SAFE_INTEGER {
            return None;
        }
        let signer = PublicKey::from_base64(env.signer)?;
        let key = signer.verifying_key()?;
        validate::client_id("id", &env.id).ok()?;
        validate::log_origin("log", &env.log).ok()?;
        let signature: [u8; 64] = B64.decode(env.sig).ok()?.try_into().ok()?;
        env.body.validate().ok()?;
        let record = Record {
            kind: env.body.kind(),
            signer,
            log: env.log,
            client_id: env.id,
            ts_ms: env.ts_ms,
            body: env.body,
            signature,
        };
        let payload = record.payload_if_canonical(bytes)?;
        Some((record, payload, key))
    }

    /// The reference decoder: bytes → `serde_json::Value` (refusing repeated keys and unsafe
    /// numbers) → typed record → canonical re-encode through `Value` → compare. Decides every
    /// refusal and its error code; [`SignedRecord::decode`] is proven against it.
    pub(crate) fn decode_reference(bytes: Vec<u8>) -> Result<SignedRecord, RecordError> {
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
        // The version first, so a record of another format gets that reason, not a schema error.
        if let Some(v) = value.get("v").and_then(Value::as_u64) {
            if v != FORMAT_VERSION {
                return Err(RecordError::UnsupportedVersion(v));
            }
        }
        let raw: RawEnvelope = serde_json::from_value(value)
            .map_err(|e| RecordError::Schema(format!("envelope: {e}")))?;
        if raw.v != FORMAT_VERSION {
            return Err(RecordError::UnsupportedVersion(raw.v));
        }
        let kind = Kind::parse(&raw.kind)?;
        let signer = PublicKey::from_base64(&raw.signer).ok_or(RecordError::BadPublicKey)?;
        let key = signer.verifying_key().ok_or(RecordError::BadPublicKey)?;
        validate::client_id("id", &raw.id)?;
        validate::log_origin("log", &raw.log)?;
        let signature: [u8; 64] = B64
            .decode(&raw.sig)
            .ok()
            .and_then(|s| s.try_into().ok())
            .ok_or(RecordError::BadSignature)?;
        let body = Body::from_value(kind, raw.body)?;
        let record = Record {
            kind,
            signer,
            log: raw.log,
            client_id: raw.id,
            ts_ms: raw.ts_ms,
            body,
            signature,
        };
        let (payload, canonical) = record.encode_reference();
        if canonical != bytes {
            return Err(RecordError::NotCanonical);
        }
        Ok(SignedRecord {
            parsed: Box::new(Parsed { record, key }),
            bytes,
            payload,
            verified: false,
        })
    }

    /// Check the signature under the rules of [`crate::sig`] (so a valid signature cannot be
    /// mutated into a second valid one, and a batch accepts exactly the same signatures).
    pub fn verify_signature(&mut self) -> Result<(), RecordError> {
        if !self.verified {
            let parsed = &self.parsed;
            if !crate::sig::verify(&parsed.key, &self.payload, &parsed.record.signature) {
                return Err(RecordError::BadSignature);
            }
            self.verified = true;
        }
        Ok(())
    }

    /// [`SignedRecord::verify_signature`] for many records at once, with one batch equation
    /// ([`crate::sig::verify_batch`]): the same verdicts, in order, at about a third of the
    /// cost when they verify.
    pub fn verify_signatures(records: &mut [SignedRecord]) -> Vec<Result<(), RecordError>> {
        let pending: Vec<usize> = (0..records.len())
            .filter(|&i| !records[i].verified)
            .collect();
        let items: Vec<crate::sig::BatchItem<'_>> = pending
            .iter()
            .map(|&i| crate::sig::BatchItem {
                key: &records[i].parsed.key,
                message: &records[i].payload,
                signature: &records[i].parsed.record.signature,
            })
            .collect();
        let verdicts = crate::sig::verify_batch(&items);
        let mut out = vec![Ok(()); records.len()];
        for (&i, ok) in pending.iter().zip(verdicts) {
            if ok {
                records[i].verified = true;
            } else {
                out[i] = Err(RecordError::BadSignature);
            }
        }
        out
    }

    /// Whether the signature has been checked (or the record was signed here).
    pub fn is_verified(&self) -> bool {
        self.verified
    }

    /// [`SignedRecord::decode`] then [`SignedRecord::verify_signature`].
    pub fn from_bytes(bytes: Vec<u8>) -> Result<SignedRecord, RecordError> {
        let mut rec = Self::decode(bytes)?;
        rec.verify_signature()?;
        Ok(rec)
    }

    /// [`SignedRecord::decode`] each, then verify every decoded one's signature in one batch.
    pub fn from_bytes_batch(batch: Vec<Vec<u8>>) -> Vec<Result<SignedRecord, RecordError>> {
        let mut decoded = Vec::with_capacity(batch.len());
        let mut out: Vec<Option<Result<SignedRecord, RecordError>>> =
            Vec::with_capacity(batch.len());
        let mut slots = Vec::with_capacity(batch.len());
        for (i, bytes) in batch.into_iter().enumerate() {
            match Self::decode(bytes) {
                Ok(rec) => {
                    decoded.push(rec);
                    slots.push(i);
                    out.push(None);
                }
                Err(e) => out.push(Some(Err(e))),
            }
        }
        let verdicts = Self::verify_signatures(&mut decoded);
        for ((slot, rec), verdict) in slots.into_iter().zip(decoded).zip(verdicts) {
            out[slot] = Some(verdict.map(|()| rec));
        }
        out.into_iter()
            .map(|r| r.expect("every record has a verdict"))
            .collect()
    }

    pub fn record(&self) -> &Record {
        &self.parsed.record
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The signing payload kept from decoding.
    #[cfg(test)]
    pub(crate) fn payload(&self) -> &[u8] {
        &self.payload
    }

    pub fn into_parts(self) -> (Record, Vec<u8>) {
        (self.parsed.record, self.bytes)
    }
}

/// Validate `body`, then sign it as `key` for the ledger whose origin is `log` and return the
/// canonical record bytes.
pub fn sign_record(
    key: &ActorKey,
    log: &str,
    client_id: &str,
    ts_ms: u64,
    body: Body,
) -> Result<SignedRecord, RecordError> {
    validate::client_id("id", client_id)?;
    validate::log_origin("log", log)?;
    validate::int_range("ts_ms", ts_ms, 0, crate::MAX_SAFE_INTEGER)?;
    body.validate()?;
    let mut record = Record {
        kind: body.kind(),
        signer: key.public(),
        log: log.to_string(),
        client_id: client_id.to_string(),
        ts_ms,
        body,
        signature: [0; 64],
    };
    let (payload, _) = record.encode();
    record.signature = key.sign(&payload);
    let (_, bytes) = record.encode();
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(RecordError::TooLarge {
            size_bytes: bytes.len(),
            limit_bytes: MAX_RECORD_BYTES,
        });
    }
    let verifying = record.signer.verifying_key().expect("our own key is valid");
    Ok(SignedRecord {
        parsed: Box::new(Parsed {
            record,
            key: verifying,
        }),
        bytes,
        payload,
        verified: true,
    })
}
