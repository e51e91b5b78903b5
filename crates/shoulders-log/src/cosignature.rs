//! Witness cosignatures (C2SP `tlog-cosignature`, <https://c2sp.org/tlog-cosignature>) and the
//! k-of-n policy a client demands before it trusts a checkpoint.
//!
//! A witness signs `cosignature/v1\ntime <T>\n` followed by the checkpoint text with its ed25519
//! key, after checking that the checkpoint is consistent with every earlier one it signed for
//! that log. The signature line is `— <name> base64(key id ‖ T as u64 BE ‖ signature)`; the
//! witness key is `<name>+<hex id>+base64(0x04 ‖ public key)`, its id the first 4 bytes of
//! `SHA-256(name ‖ "\n" ‖ 0x04 ‖ public key)`. A log that showed one witness a different tree
//! than another would need those witnesses to sign two inconsistent checkpoints, so a quorum of
//! independent witnesses turns a split view from "undetectable" into "needs collusion".

use crate::{CheckpointView, LogError, LogVerifier};
use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};
use signed_note::{Note, Signature, Verifier, VerifierList};

/// Signature type byte of a `cosignature/v1` key (C2SP signed-note registry).
pub const COSIGNATURE_ALG: u8 = 0x04;
/// Most witnesses one policy may name (a checkpoint note carries at most 100 signatures).
pub const MAX_POLICY_WITNESSES: usize = 64;

fn key_id(name: &str, public: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([COSIGNATURE_ALG]);
    h.update(public);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// The message a witness signs for `checkpoint_text` at `timestamp_s`.
pub fn cosigned_message(checkpoint_text: &[u8], timestamp_s: u64) -> Vec<u8> {
    let mut msg = format!("cosignature/v1\ntime {timestamp_s}\n").into_bytes();
    msg.extend_from_slice(checkpoint_text);
    msg
}

/// Split `<name>+<8 hex id>+<base64(0x04 ‖ 32 bytes)>` (the part of a signing key after
/// `PRIVATE+KEY+`, or a verifier key) into its name, id text and 32 key bytes.
fn split_key<'a>(
    text: &'a str,
    bad: &dyn Fn(&str) -> LogError,
) -> Result<(&'a str, &'a str, [u8; 32]), LogError> {
    let mut parts = text.splitn(3, '+');
    let (name, id_hex, key_b64) = match (parts.next(), parts.next(), parts.next()) {
        (Some(n), Some(i), Some(k)) => (n, i, k),
        _ => return Err(bad("must be <name>+<id>+<key>")),
    };
    check_name(name)?;
    let raw = B64.decode(key_b64).map_err(|_| bad("key is not base64"))?;
    if raw.len() != 33 || raw[0] != COSIGNATURE_ALG {
        return Err(bad("not a cosignature/v1 (0x04) ed25519 key"));
    }
    let bytes: [u8; 32] = raw[1..].try_into().expect("33 - 1 bytes");
    Ok((name, id_hex, bytes))
}

fn check_name(name: &str) -> Result<(), LogError> {
    if name.is_empty()
        || name.len() > crate::MAX_ORIGIN_BYTES
        || !signed_note::is_key_name_valid(name)
        || name.chars().any(|c| c.is_control())
    {
        return Err(LogError::MalformedKey(format!(
            "witness name {name:?} must be 1..={} bytes without spaces, '+' or control characters",
            crate::MAX_ORIGIN_BYTES
        )));
    }
    Ok(())
}

/// A witness's signing key.
pub struct Cosigner {
    name: String,
    id: u32,
    key: SigningKey,
}

impl Cosigner {
    /// A fresh witness key pair: `(PRIVATE+KEY+<name>+<id>+<base64(0x04 ‖ seed)>, verifier key)`.
    pub fn generate<R: CryptoRngCore + ?Sized>(
        rng: &mut R,
        name: &str,
    ) -> Result<(String, String), LogError> {
        check_name(name)?;
        let key = SigningKey::generate(rng);
        let public = key.verifying_key().to_bytes();
        let id = key_id(name, &public);
        let mut secret = vec![COSIGNATURE_ALG];
        secret.extend_from_slice(&key.to_bytes());
        let skey = format!("PRIVATE+KEY+{name}+{id:08x}+{}", B64.encode(secret));
        Ok((skey, cosigner_verifier_key(name, &key.verifying_key())))
    }

    /// Parse a witness signing key (the first string [`Cosigner::generate`] returns).
    pub fn new(signer_key: &str) -> Result<Self, LogError> {
        let bad = |why: &str| LogError::MalformedKey(format!("witness signing key: {why}"));
        let rest = signer_key
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| bad("must start with PRIVATE+KEY+"))?;
        let (name, id_hex, seed) = split_key(rest, &bad)?;
        let key = SigningKey::from_bytes(&seed);
        let id = key_id(name, &key.verifying_key().to_bytes());
        if format!("{id:08x}") != id_hex {
            return Err(bad("key id does not match the name and key"));
        }
        Ok(Self {
            name: name.to_string(),
            id,
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// This witness's verifier key.
    pub fn verifier_key(&self) -> String {
        cosigner_verifier_key(&self.name, &self.key.verifying_key())
    }

    /// The signature line (`— <name> <base64>\n`) cosigning `checkpoint_text` (the note text:
    /// origin, size, root and any extension lines, each ending in a newline) at `timestamp_s`.
    pub fn cosign(&self, checkpoint_text: &[u8], timestamp_s: u64) -> Vec<u8> {
        let sig = self
            .key
            .sign(&cosigned_message(checkpoint_text, timestamp_s));
        let mut blob = Vec::with_capacity(4 + 8 + 64);
        blob.extend_from_slice(&self.id.to_be_bytes());
        blob.extend_from_slice(&timestamp_s.to_be_bytes());
        blob.extend_from_slice(&sig.to_bytes());
        format!("\u{2014} {} {}\n", self.name, B64.encode(blob)).into_bytes()
    }
}

/// The verifier key `<name>+<hex id>+<base64(0x04 ‖ public key)>` of a witness.
pub fn cosigner_verifier_key(name: &str, key: &VerifyingKey) -> String {
    let public = key.to_bytes();
    let mut raw = vec![COSIGNATURE_ALG];
    raw.extend_from_slice(&public);
    format!("{name}+{:08x}+{}", key_id(name, &public), B64.encode(raw))
}

/// Verifies one witness's cosignatures; usable wherever `signed_note` takes a [`Verifier`].
#[derive(Clone, Debug)]
pub struct CosignatureVerifier {
    name: String,
    id: u32,
    key: VerifyingKey,
    vkey: String,
}

impl CosignatureVerifier {
    /// Parse a witness verifier key.
    pub fn new(vkey: &str) -> Result<Self, LogError> {
        let vkey = vkey.trim();
        let bad = |why: &str| LogError::MalformedKey(format!("witness key {vkey:?}: {why}"));
        let (name, id_hex, public) = split_key(vkey, &bad)?;
        let key = VerifyingKey::from_bytes(&public).map_err(|_| bad("not an ed25519 point"))?;
        if key.is_weak() {
            return Err(bad("a small-order key verifies forged signatures"));
        }
        let id = key_id(name, &public);
        if format!("{id:08x}") != id_hex {
            return Err(bad("key id does not match the name and key"));
        }
        Ok(Self {
            name: name.to_string(),
            id,
            key,
            vkey: vkey.to_string(),
        })
    }

    /// The verifier key this was parsed from.
    pub fn vkey(&self) -> &str {
        &self.vkey
    }

    /// The witness's name (the first field of its key and of its signature lines).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The timestamp in a cosignature's bytes (after the key id), if it is well formed.
    pub fn timestamp_of(sig: &[u8]) -> Option<u64> {
        (sig.len() == 72).then(|| u64::from_be_bytes(sig[..8].try_into().expect("8 bytes")))
    }
}

impl Verifier for CosignatureVerifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Some(timestamp_s) = Self::timestamp_of(sig) else {
            return false;
        };
        let Ok(signature) = ed25519_dalek::Signature::from_slice(&sig[8..]) else {
            return false;
        };
        self.key
            .verify_strict(&cosigned_message(msg, timestamp_s), &signature)
            .is_ok()
    }
}

/// Which witnesses a client trusts and how many of them must have cosigned a checkpoint.
///
/// Text form, one directive per line (`#` starts a comment):
///
/// ```text
/// witness <verifier key> [<url>]
/// quorum <k>
/// ```
#[derive(Clone, Debug)]
pub struct WitnessPolicy {
    pub witnesses: Vec<(CosignatureVerifier, Option<String>)>,
    pub quorum: usize,
}

impl WitnessPolicy {
    pub fn parse(text: &str) -> Result<Self, LogError> {
        let bad =
            |line: usize, why: String| LogError::MalformedPolicy(format!("line {line}: {why}"));
        let mut witnesses: Vec<(CosignatureVerifier, Option<String>)> = Vec::new();
        let mut quorum = None;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["witness", vkey] | ["witness", vkey, _] => {
                    let v =
                        CosignatureVerifier::new(vkey).map_err(|e| bad(i + 1, e.to_string()))?;
                    if witnesses
                        .iter()
                        .any(|(w, _)| w.name == v.name || w.key == v.key)
                    {
                        return Err(bad(i + 1, format!("witness {} is named twice", v.name)));
                    }
                    let url = words.get(2).map(|u| u.to_string());
                    if let Some(u) = &url {
                        if !(u.starts_with("http://") || u.starts_with("https://")) {
                            return Err(bad(i + 1, format!("{u:?} is not an http(s) URL")));
                        }
                    }
                    witnesses.push((v, url));
                }
                ["quorum", k] => {
                    if quorum.is_some() {
                        return Err(bad(i + 1, "quorum is given twice".into()));
                    }
                    let k: usize = k
                        .parse()
                        .map_err(|_| bad(i + 1, format!("quorum {k:?} is not a number")))?;
                    quorum = Some(k);
                }
                _ => {
                    return Err(bad(
                        i + 1,
                        "expected `witness <key> [url]` or `quorum <k>`".into(),
                    ))
                }
            }
        }
        if witnesses.len() > MAX_POLICY_WITNESSES {
            return Err(LogError::MalformedPolicy(format!(
                "{} witnesses; at most {MAX_POLICY_WITNESSES}",
                witnesses.len()
            )));
        }
        let quorum = quorum.ok_or_else(|| LogError::MalformedPolicy("no quorum line".into()))?;
        if quorum == 0 || quorum > witnesses.len() {
            return Err(LogError::MalformedPolicy(format!(
                "quorum {quorum} must be 1..={} (the witnesses named)",
                witnesses.len()
            )));
        }
        Ok(Self { witnesses, quorum })
    }

    /// Open a checkpoint note: the log's signature must verify, every cosignature from a
    /// witness of this policy must verify (a bad one is refused, not skipped: it is evidence of
    /// tampering), and at least `quorum` distinct policy witnesses must have cosigned. Returns
    /// the checkpoint and the names of the witnesses that cosigned it.
    pub fn open(
        &self,
        log: &LogVerifier,
        note_bytes: &[u8],
    ) -> Result<(CheckpointView, Vec<String>), LogError> {
        let view = log.open(note_bytes)?;
        let note = Note::from_bytes(note_bytes)
            .map_err(|e| LogError::MalformedCheckpoint(e.to_string()))?;
        let mut list: Vec<Box<dyn Verifier>> = self
            .witnesses
            .iter()
            .map(|(w, _)| Box::new(w.clone()) as Box<dyn Verifier>)
            .collect();
        list.push(Box::new(
            signed_note::StandardVerifier::new(log.vkey())
                .map_err(|e| LogError::MalformedKey(e.to_string()))?,
        ));
        let (verified, _) = note
            .verify(&VerifierList::new(list))
            .map_err(|e| LogError::BadCosignature(e.to_string()))?;
        let names: Vec<String> = verified
            .iter()
            .filter(|s| s.name() != log.origin())
            .map(|s| s.name().to_string())
            .collect();
        if names.len() < self.quorum {
            return Err(LogError::WitnessQuorum {
                have: names.len(),
                need: self.quorum,
            });
        }
        Ok((view, names))
    }
}

/// Append cosignature lines to a signed checkpoint note, skipping a line the note already
/// holds. Lines come from [`Cosigner::cosign`] or a witness's response; a second line by the
/// same key counts once when a policy opens the note.
pub fn add_cosignatures(note_bytes: &[u8], lines: &[Vec<u8>]) -> Result<Vec<u8>, LogError> {
    let note =
        Note::from_bytes(note_bytes).map_err(|e| LogError::MalformedCheckpoint(e.to_string()))?;
    let mut extra = Vec::new();
    for line in lines {
        let sig = Signature::from_bytes(line.strip_suffix(b"\n").unwrap_or(line))
            .map_err(|e| LogError::BadCosignature(e.to_string()))?;
        extra.push(sig);
    }
    let mut text = note.to_bytes();
    for sig in &extra {
        let bytes = sig.to_bytes();
        if !text.windows(bytes.len()).any(|w| w == bytes.as_slice()) {
            text.extend_from_slice(&bytes);
        }
    }
    Note::from_bytes(&text).map_err(|e| LogError::MalformedCheckpoint(e.to_string()))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{generate_log_key, Hash, LogSigner};
    use rand_core::OsRng;

    fn text_of(note: &[u8]) -> Vec<u8> {
        Note::from_bytes(note).unwrap().text().to_vec()
    }

    #[test]
    fn cosignatures_verify_and_a_quorum_is_required() {
        let (skey, vkey) = generate_log_key(&mut OsRng, "example.org/log").unwrap();
        let log = LogVerifier::new(&vkey).unwrap();
        let note = LogSigner::new(&skey)
            .unwrap()
            .sign(9, Hash([3; 32]))
            .unwrap();
        let keys: Vec<(String, String)> = (0..3)
            .map(|i| Cosigner::generate(&mut OsRng, &format!("w{i}.example")).unwrap())
            .collect();
        let policy = WitnessPolicy::parse(&format!(
            "# three witnesses, two must sign\nwitness {}\nwitness {} https://w1.example/\nwitness {}\nquorum 2\n",
            keys[0].1, keys[1].1, keys[2].1
        ))
        .unwrap();
        let sign = |i: usize| {
            Cosigner::new(&keys[i].0)
                .unwrap()
                .cosign(&text_of(&note), 1_700_000_000 + i as u64)
        };

        let one = add_cosignatures(&note, &[sign(0)]).unwrap();
        assert_eq!(
            policy.open(&log, &one).unwrap_err().code(),
            "E_WITNESS_QUORUM"
        );
        let two = add_cosignatures(&one, &[sign(2)]).unwrap();
        let (view, names) = policy.open(&log, &two).unwrap();
        assert_eq!(view.size, 9);
        assert_eq!(names, vec!["w0.example", "w2.example"]);
        // The same cosignature twice still counts once.
        let dup = add_cosignatures(&one, &[sign(0)]).unwrap();
        assert_eq!(
            policy.open(&log, &dup).unwrap_err().code(),
            "E_WITNESS_QUORUM"
        );

        // A cosignature over another checkpoint (same witness key) is refused outright.
        let other = LogSigner::new(&skey)
            .unwrap()
            .sign(10, Hash([4; 32]))
            .unwrap();
        let wrong = Cosigner::new(&keys[1].0)
            .unwrap()
            .cosign(&text_of(&other), 5);
        let forged = add_cosignatures(&two, &[wrong]).unwrap();
        assert_eq!(
            policy.open(&log, &forged).unwrap_err().code(),
            "E_COSIGNATURE_INVALID"
        );

        // An unknown witness's cosignature does not count.
        let (stranger, _) = Cosigner::generate(&mut OsRng, "stranger.example").unwrap();
        let s = Cosigner::new(&stranger).unwrap().cosign(&text_of(&note), 1);
        let with_stranger = add_cosignatures(&one, &[s]).unwrap();
        assert_eq!(
            policy.open(&log, &with_stranger).unwrap_err().code(),
            "E_WITNESS_QUORUM"
        );
    }

    #[test]
    fn keys_round_trip_and_bad_policies_are_refused() {
        let (skey, vkey) = Cosigner::generate(&mut OsRng, "w.example").unwrap();
        assert_eq!(Cosigner::new(&skey).unwrap().verifier_key(), vkey);
        assert!(CosignatureVerifier::new(&vkey).is_ok());
        // A log (0x01) key is not a witness key.
        let (_, log_vkey) = generate_log_key(&mut OsRng, "w.example").unwrap();
        assert!(CosignatureVerifier::new(&log_vkey).is_err());
        for bad in [
            format!("witness {vkey}\n"),
            format!("witness {vkey}\nquorum 2\n"),
            format!("witness {vkey}\nwitness {vkey}\nquorum 1\n"),
            format!("witness {vkey} ftp://x\nquorum 1\n"),
            "quorum 1\n".to_string(),
            format!("witness {vkey}\nquorum 0\n"),
            format!("witnesses {vkey}\nquorum 1\n"),
        ] {
            assert_eq!(
                WitnessPolicy::parse(&bad).unwrap_err().code(),
                "E_WITNESS_POLICY",
                "{bad}"
            );
        }
    }
}
