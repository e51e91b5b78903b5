use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use ed25519_dalek::{Signer as _, SigningKey};
use rand_core::CryptoRngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// An ed25519 public key, written as standard base64 of its 32 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// Parse the base64 form.
    pub fn from_base64(s: &str) -> Option<Self> {
        let bytes = B64.decode(s).ok()?;
        let arr: [u8; 32] = bytes.try_into().ok()?;
        Some(PublicKey(arr))
    }

    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }

    /// The decompressed key signatures are checked against, if these bytes are an acceptable
    /// signer key ([`crate::sig::acceptable_key`]: a canonical encoding of a point not of small
    /// order).
    ///
    /// Decompressing the point is about a third of a signature check, and a ledger's records
    /// come from few signers (the operator signs every receipt), so each thread keeps the last
    /// [`VERIFYING_KEY_CACHE`] keys it decompressed. Only acceptable keys are cached; the cache
    /// changes no answer.
    pub fn verifying_key(&self) -> Option<ed25519_zebra::VerificationKey> {
        thread_local! {
            static CACHE: std::cell::RefCell<Vec<([u8; 32], ed25519_zebra::VerificationKey)>> =
                const { std::cell::RefCell::new(Vec::new()) };
        }
        CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            if let Some(at) = cache.iter().position(|(bytes, _)| *bytes == self.0) {
                // Move to the front: the most used keys are found first.
                let hit = cache.remove(at);
                let key = hit.1;
                cache.insert(0, hit);
                return Some(key);
            }
            let key = crate::sig::acceptable_key(&self.0)?;
            cache.insert(0, (self.0, key));
            cache.truncate(VERIFYING_KEY_CACHE);
            Some(key)
        })
    }
}

/// Decompressed verifying keys each thread keeps (see [`PublicKey::verifying_key`]).
pub const VERIFYING_KEY_CACHE: usize = 16;

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PublicKey::from_base64(&s)
            .ok_or_else(|| serde::de::Error::custom("expected base64 of a 32-byte ed25519 key"))
    }
}

/// An actor's signing key. Never printed: `Debug` shows only the public half.
#[derive(Clone)]
pub struct ActorKey(SigningKey);

impl ActorKey {
    pub fn generate<R: CryptoRngCore + ?Sized>(rng: &mut R) -> Self {
        ActorKey(SigningKey::generate(rng))
    }

    pub fn from_seed(seed: [u8; 32]) -> Self {
        ActorKey(SigningKey::from_bytes(&seed))
    }

    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    pub(crate) fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.0.sign(msg).to_bytes()
    }

    /// The key file text: a small JSON object. The file must be kept private (mode 0600).
    pub fn to_file_text(&self) -> String {
        format!(
            "{{\"format\":\"shoulders-actor-key/v1\",\"public_key\":\"{}\",\"secret_seed\":\"{}\"}}\n",
            self.public(),
            B64.encode(self.seed())
        )
    }

    /// Parse the key file text written by [`ActorKey::to_file_text`].
    pub fn from_file_text(text: &str) -> Result<Self, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct KeyFile {
            format: String,
            public_key: PublicKey,
            secret_seed: String,
        }
        let file: KeyFile = serde_json::from_str(text.trim())
            .map_err(|e| format!("not a shoulders key file: {e}"))?;
        if file.format != "shoulders-actor-key/v1" {
            return Err(format!("unsupported key file format {:?}", file.format));
        }
        let seed: [u8; 32] = B64
            .decode(&file.secret_seed)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("secret_seed must be base64 of 32 bytes")?;
        let key = ActorKey::from_seed(seed);
        if key.public() != file.public_key {
            return Err("public_key does not match secret_seed".into());
        }
        Ok(key)
    }
}

impl fmt::Debug for ActorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActorKey(public: {})", self.public())
    }
}
