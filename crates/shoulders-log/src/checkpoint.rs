//! C2SP `tlog-checkpoint` bodies signed as C2SP `signed-note`s with the log's ed25519 key.

use crate::{Hash, LogError};
use rand_core::CryptoRngCore;
use signed_note::{
    Note, Signer as _, StandardSigner, StandardVerifier, Verifier as _, VerifierList,
};
use tlog_tiles::Checkpoint;

/// Longest accepted origin line (the log's name). Keeps checkpoints small and printable.
pub const MAX_ORIGIN_BYTES: usize = 255;

/// A fresh log key pair for `origin`: `(signer_key, verifier_key)` in the signed-note encodings
/// (`PRIVATE+KEY+<name>+<hash>+<base64>` and `<name>+<hash>+<base64>`).
pub fn generate_log_key<R: CryptoRngCore + ?Sized>(
    rng: &mut R,
    origin: &str,
) -> Result<(String, String), LogError> {
    check_origin(origin)?;
    Ok(signed_note::generate_key(rng, origin))
}

/// The verifier key (`<name>+<hash>+<base64>`) for an ed25519 public key.
pub fn verifier_key_for(origin: &str, key: &ed25519_dalek::VerifyingKey) -> String {
    signed_note::new_ed25519_verifier_key(origin, key)
}

fn check_origin(origin: &str) -> Result<(), LogError> {
    if origin.is_empty() || origin.len() > MAX_ORIGIN_BYTES {
        return Err(LogError::MalformedKey(format!(
            "origin must be 1..={MAX_ORIGIN_BYTES} bytes"
        )));
    }
    if !signed_note::is_key_name_valid(origin) || origin.chars().any(|c| c.is_control()) {
        return Err(LogError::MalformedKey(
            "origin may not contain spaces, '+' or control characters".into(),
        ));
    }
    Ok(())
}

/// Signs checkpoints for one log.
#[derive(Clone)]
pub struct LogSigner {
    signer: StandardSigner,
}

impl LogSigner {
    /// Parse a signer key in signed-note encoding.
    pub fn new(signer_key: &str) -> Result<Self, LogError> {
        let signer = StandardSigner::new(signer_key.trim())
            .map_err(|e| LogError::MalformedKey(e.to_string()))?;
        check_origin(signer.name())?;
        Ok(Self { signer })
    }

    /// The log's origin (its key name and the checkpoint's first line).
    pub fn origin(&self) -> &str {
        self.signer.name()
    }

    /// The signed-note bytes of the checkpoint for `(size, root)`. Ed25519 is deterministic, so
    /// the same tree head always yields the same bytes.
    pub fn sign(&self, size: u64, root: Hash) -> Result<Vec<u8>, LogError> {
        let checkpoint = Checkpoint::new(self.origin(), size, root, "")
            .map_err(|e| LogError::MalformedCheckpoint(e.to_string()))?;
        let mut note = Note::new(&checkpoint.to_bytes(), &[])
            .map_err(|e| LogError::MalformedCheckpoint(e.to_string()))?;
        note.add_sigs(&[&self.signer])
            .map_err(|e| LogError::MalformedCheckpoint(e.to_string()))?;
        Ok(note.to_bytes())
    }
}

/// A checkpoint that parsed and whose signature verified.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointView {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

/// Verifies checkpoints of one log.
pub struct LogVerifier {
    key: String,
    name: String,
}

impl LogVerifier {
    /// Parse a verifier key `<name>+<hash>+<base64>`.
    pub fn new(verifier_key: &str) -> Result<Self, LogError> {
        let key = verifier_key.trim().to_string();
        let parsed =
            StandardVerifier::new(&key).map_err(|e| LogError::MalformedKey(e.to_string()))?;
        Ok(Self {
            name: parsed.name().to_string(),
            key,
        })
    }

    /// The log origin this key belongs to.
    pub fn origin(&self) -> &str {
        &self.name
    }

    /// The verifier key this was parsed from.
    pub fn vkey(&self) -> &str {
        &self.key
    }

    /// Parse a signed checkpoint note and check this key's signature over it.
    pub fn open(&self, note_bytes: &[u8]) -> Result<CheckpointView, LogError> {
        let note = Note::from_bytes(note_bytes)
            .map_err(|e| LogError::MalformedCheckpoint(e.to_string()))?;
        let verifier =
            StandardVerifier::new(&self.key).map_err(|e| LogError::MalformedKey(e.to_string()))?;
        let list = VerifierList::new(vec![Box::new(verifier)]);
        note.verify(&list)
            .map_err(|e| LogError::BadCheckpointSignature(e.to_string()))?;
        let checkpoint = Checkpoint::from_bytes(note.text())
            .map_err(|e| LogError::MalformedCheckpoint(e.to_string()))?;
        if checkpoint.origin() != self.name {
            return Err(LogError::MalformedCheckpoint(format!(
                "origin {:?} does not match the key name {:?}",
                checkpoint.origin(),
                self.name
            )));
        }
        Ok(CheckpointView {
            origin: checkpoint.origin().to_string(),
            size: checkpoint.size(),
            root: *checkpoint.hash(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FixedRng(u8);
    impl rand_core::RngCore for FixedRng {
        fn next_u32(&mut self) -> u32 {
            self.0 as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.0 as u64
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            dest.fill(self.0)
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            dest.fill(self.0);
            Ok(())
        }
    }
    impl rand_core::CryptoRng for FixedRng {}

    #[test]
    fn sign_then_open_round_trips_and_rejects_other_keys() {
        let (skey, vkey) = generate_log_key(&mut FixedRng(7), "example.org/log").unwrap();
        let signer = LogSigner::new(&skey).unwrap();
        let note = signer.sign(5, Hash([9; 32])).unwrap();
        let text = String::from_utf8(note.clone()).unwrap();
        assert!(text.starts_with("example.org/log\n5\nCQkJ"), "{text}");
        assert!(text.contains("\n\n\u{2014} example.org/log "), "{text}");
        let view = LogVerifier::new(&vkey).unwrap().open(&note).unwrap();
        assert_eq!(
            view,
            CheckpointView {
                origin: "example.org/log".into(),
                size: 5,
                root: Hash([9; 32])
            }
        );

        let (_, other) = generate_log_key(&mut FixedRng(8), "example.org/log").unwrap();
        let err = LogVerifier::new(&other).unwrap().open(&note).unwrap_err();
        assert_eq!(err.code(), "E_CHECKPOINT_SIGNATURE");

        let mut tampered = note.clone();
        tampered[16] = b'6';
        let err = LogVerifier::new(&vkey)
            .unwrap()
            .open(&tampered)
            .unwrap_err();
        assert_eq!(err.code(), "E_CHECKPOINT_SIGNATURE");
    }

    #[test]
    fn bad_origins_are_refused() {
        for bad in ["", "has space", "a+b", &"x".repeat(300)] {
            assert!(generate_log_key(&mut FixedRng(1), bad).is_err(), "{bad:?}");
        }
    }
}
