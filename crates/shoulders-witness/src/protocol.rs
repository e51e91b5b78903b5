//! The pure core of C2SP `tlog-witness` (<https://c2sp.org/tlog-witness>): the
//! `add-checkpoint` request body, and the verdict on it given what the witness last cosigned
//! for that log. No I/O and no clock: the server and the log-side client both call this.

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use shoulders_log::{verify_consistency, CheckpointView, Hash, LogError, LogVerifier};

/// Largest `add-checkpoint` body read: a checkpoint note (a few hundred bytes, at most 100
/// signatures) and 63 proof lines fit many times over.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Most consistency-proof hashes a request may carry: a proof between two trees of at most
/// 2^63 leaves has at most 2·63 hashes, but C2SP caps it at 63, as every real tree needs.
pub const MAX_PROOF_HASHES: usize = 63;
/// Content type of a 409 answer whose body is the witness's latest size for the log.
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// A parsed `add-checkpoint` request.
#[derive(Clone, Debug, PartialEq)]
pub struct AddCheckpoint {
    /// The size the client believes the witness last cosigned for this log (0: none).
    pub old_size: u64,
    /// Consistency proof from `old_size` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, exactly as sent.
    pub note: Vec<u8>,
}

/// What the witness last cosigned for one log: the tree it must see grow.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Latest {
    pub size: u64,
    pub root: Hash,
}

/// Why a request is refused, each with its HTTP status (C2SP tlog-witness) and a stable code.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("this witness does not witness the log {0:?}")]
    UnknownLog(String),
    #[error("the log's signature does not verify: {0}")]
    BadSignature(String),
    #[error("old size {old} is not this witness's latest size {latest} for the log")]
    SizeMismatch { old: u64, latest: u64 },
    #[error("the checkpoint's size {size} is smaller than old size {old}")]
    OldBeyondCheckpoint { old: u64, size: u64 },
    #[error("fork: size {size} was cosigned with another root")]
    Fork { size: u64, latest: u64 },
    #[error("the consistency proof from size {old} to {size} does not verify")]
    Inconsistent { old: u64, size: u64 },
}

impl Refusal {
    /// HTTP status of the answer.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Malformed(_) | Refusal::OldBeyondCheckpoint { .. } => 400,
            Refusal::UnknownLog(_) => 404,
            Refusal::BadSignature(_) => 403,
            Refusal::SizeMismatch { .. } | Refusal::Fork { .. } => 409,
            Refusal::Inconsistent { .. } => 422,
        }
    }

    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Malformed(_) => "E_WITNESS_REQUEST_MALFORMED",
            Refusal::UnknownLog(_) => "E_WITNESS_UNKNOWN_LOG",
            Refusal::BadSignature(_) => "E_CHECKPOINT_SIGNATURE",
            Refusal::SizeMismatch { .. } => "E_WITNESS_OLD_SIZE",
            Refusal::OldBeyondCheckpoint { .. } => "E_WITNESS_OLD_SIZE",
            Refusal::Fork { .. } => "E_WITNESS_FORK",
            Refusal::Inconsistent { .. } => "E_PROOF_INVALID",
        }
    }

    /// The witness's latest size, for a 409 answer's `text/x.tlog.size` body.
    pub fn latest_size(&self) -> Option<u64> {
        match self {
            Refusal::SizeMismatch { latest, .. } | Refusal::Fork { latest, .. } => Some(*latest),
            _ => None,
        }
    }
}

fn malformed(why: impl Into<String>) -> Refusal {
    Refusal::Malformed(why.into())
}

/// The next header line of `rest` (without its newline), and what follows it.
fn next_line(rest: &[u8]) -> Result<(String, &[u8]), Refusal> {
    let end = rest
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| malformed("no empty line before the checkpoint"))?;
    let line = std::str::from_utf8(&rest[..end])
        .map_err(|_| malformed("a header line is not UTF-8"))?
        .to_string();
    Ok((line, &rest[end + 1..]))
}

/// The request body: `old <size>\n`, one base64 proof hash per line, an empty line, the note.
pub fn encode_request(old_size: u64, proof: &[Hash], note: &[u8]) -> Vec<u8> {
    let mut body = format!("old {old_size}\n").into_bytes();
    for h in proof {
        body.extend_from_slice(format!("{h}\n").as_bytes());
    }
    body.push(b'\n');
    body.extend_from_slice(note);
    body
}

/// Parse a request body (at most [`MAX_REQUEST_BYTES`], at most [`MAX_PROOF_HASHES`] hashes).
pub fn parse_request(body: &[u8]) -> Result<AddCheckpoint, Refusal> {
    if body.len() > MAX_REQUEST_BYTES {
        return Err(malformed(format!(
            "body of {} bytes; at most {MAX_REQUEST_BYTES}",
            body.len()
        )));
    }
    let (first, mut rest) = next_line(body)?;
    let old_size = first
        .strip_prefix("old ")
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|n| *n == 0 || !first.starts_with("old 0"))
        .ok_or_else(|| malformed("the first line must be `old <size>` in decimal"))?;
    let mut proof = Vec::new();
    loop {
        let (line, after) = next_line(rest)?;
        rest = after;
        if line.is_empty() {
            break;
        }
        if proof.len() == MAX_PROOF_HASHES {
            return Err(malformed(format!(
                "more than {MAX_PROOF_HASHES} proof hashes"
            )));
        }
        let raw = B64
            .decode(&line)
            .map_err(|_| malformed("a proof line is not base64"))?;
        let hash: [u8; 32] = raw
            .try_into()
            .map_err(|_| malformed("a proof hash is not 32 bytes"))?;
        proof.push(Hash(hash));
    }
    if rest.is_empty() {
        return Err(malformed("no checkpoint after the empty line"));
    }
    Ok(AddCheckpoint {
        old_size,
        proof,
        note: rest.to_vec(),
    })
}

/// The origin (first line) of a note, to find the log's key before anything is verified.
pub fn note_origin(note: &[u8]) -> Result<&str, Refusal> {
    let end = note
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| malformed("the checkpoint has no origin line"))?;
    std::str::from_utf8(&note[..end]).map_err(|_| malformed("the origin is not UTF-8"))
}

/// The text a witness cosigns: the note without its signatures.
pub fn note_text(note: &[u8]) -> Result<Vec<u8>, Refusal> {
    signed_note::Note::from_bytes(note)
        .map(|n| n.text().to_vec())
        .map_err(|e| malformed(format!("the checkpoint is not a signed note: {e}")))
}

/// The verdict on `req` for the log `log`, given what the witness last cosigned for it
/// (`None`: nothing yet). `Ok` is the checkpoint to cosign and to keep as the new latest.
///
/// Order follows C2SP tlog-witness: the log's signature (403), `old` against the latest size
/// (409 with that size), `old` against the checkpoint's size (400), a fork at the same size
/// (409), the consistency proof (422).
pub fn check(
    log: &LogVerifier,
    latest: Option<Latest>,
    req: &AddCheckpoint,
) -> Result<CheckpointView, Refusal> {
    let view = log.open(&req.note).map_err(|e| match e {
        LogError::BadCheckpointSignature(m) => Refusal::BadSignature(m),
        other => malformed(other.to_string()),
    })?;
    let latest_size = latest.map_or(0, |l| l.size);
    if req.old_size != latest_size {
        return Err(Refusal::SizeMismatch {
            old: req.old_size,
            latest: latest_size,
        });
    }
    if view.size < req.old_size {
        return Err(Refusal::OldBeyondCheckpoint {
            old: req.old_size,
            size: view.size,
        });
    }
    let Some(latest) = latest.filter(|l| l.size > 0) else {
        return if req.proof.is_empty() {
            Ok(view)
        } else {
            Err(malformed("a proof from size 0 must be empty"))
        };
    };
    if view.size == latest.size {
        if view.root != latest.root {
            return Err(Refusal::Fork {
                size: view.size,
                latest: latest.size,
            });
        }
        if !req.proof.is_empty() {
            return Err(malformed("a proof between equal sizes must be empty"));
        }
        return Ok(view);
    }
    verify_consistency(&req.proof, latest.size, latest.root, view.size, view.root).map_err(
        |_| Refusal::Inconsistent {
            old: latest.size,
            size: view.size,
        },
    )?;
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoulders_log::{generate_log_key, LogSigner, MemoryHashes};

    #[test]
    fn requests_round_trip_and_bad_bodies_are_refused() {
        let note = b"o\n1\nAAAA\n\n\xe2\x80\x94 o sig\n".to_vec();
        let proof = vec![Hash([1; 32]), Hash([2; 32])];
        let body = encode_request(7, &proof, &note);
        assert_eq!(
            parse_request(&body).unwrap(),
            AddCheckpoint {
                old_size: 7,
                proof,
                note: note.clone()
            }
        );
        let too_many = encode_request(1, &vec![Hash([0; 32]); 64], &note);
        for bad in [
            b"".to_vec(),
            b"old 1\n".to_vec(),
            b"old x\n\nnote".to_vec(),
            b"old -1\n\nnote".to_vec(),
            b"old 01\n\nnote".to_vec(),
            b"new 1\n\nnote".to_vec(),
            b"old 1\n\n".to_vec(),
            b"old 1\nnot base64!\n\nnote".to_vec(),
            b"old 1\nAAAA\n\nnote".to_vec(),
            too_many,
            vec![b'x'; MAX_REQUEST_BYTES + 1],
        ] {
            let e = parse_request(&bad).unwrap_err();
            assert_eq!(e.status(), 400, "{:?}", String::from_utf8_lossy(&bad));
        }
    }

    /// One table of (what the witness holds, what the client sends) → status.
    #[test]
    fn every_verdict() {
        let mut rng = rand_core::OsRng;
        let (skey, vkey) = generate_log_key(&mut rng, "example.org/log").unwrap();
        let (other_skey, _) = generate_log_key(&mut rng, "example.org/log").unwrap();
        let log = LogVerifier::new(&vkey).unwrap();
        let signer = LogSigner::new(&skey).unwrap();
        let mut tree = MemoryHashes::new();
        let mut fork = MemoryHashes::new();
        for i in 0..10u8 {
            tree.append(&[i]);
            fork.append(&[i + if i >= 4 { 100 } else { 0 }]);
        }
        let root = |t: &MemoryHashes, n: u64| t.root_at(n).unwrap();
        let note = |t: &MemoryHashes, n: u64| signer.sign(n, root(t, n)).unwrap();
        let proof =
            |t: &MemoryHashes, a: u64, b: u64| shoulders_log::consistency_proof(a, b, t).unwrap();
        let at = |n: u64| {
            Some(Latest {
                size: n,
                root: root(&tree, n),
            })
        };
        let req = |old: u64, proof: Vec<Hash>, note: Vec<u8>| AddCheckpoint {
            old_size: old,
            proof,
            note,
        };
        let foreign = LogSigner::new(&other_skey)
            .unwrap()
            .sign(5, root(&tree, 5))
            .unwrap();
        /// (what it is, what the witness holds, the request, the size cosigned or the status).
        type Case = (
            &'static str,
            Option<Latest>,
            AddCheckpoint,
            Result<u64, u16>,
        );
        let cases: Vec<Case> = vec![
            (
                "first checkpoint",
                None,
                req(0, vec![], note(&tree, 5)),
                Ok(5),
            ),
            (
                "grows with a proof",
                at(5),
                req(5, proof(&tree, 5, 8), note(&tree, 8)),
                Ok(8),
            ),
            (
                "same tree again",
                at(5),
                req(5, vec![], note(&tree, 5)),
                Ok(5),
            ),
            ("wrong key", at(5), req(5, vec![], foreign), Err(403)),
            (
                "stale old size",
                at(8),
                req(5, proof(&tree, 5, 9), note(&tree, 9)),
                Err(409),
            ),
            (
                "old ahead of the witness",
                at(5),
                req(8, vec![], note(&tree, 9)),
                Err(409),
            ),
            (
                "older checkpoint",
                at(8),
                req(8, vec![], note(&tree, 5)),
                Err(400),
            ),
            (
                "fork at the same size",
                at(8),
                req(8, vec![], note(&fork, 8)),
                Err(409),
            ),
            (
                "forked history",
                at(5),
                req(5, proof(&fork, 5, 9), note(&fork, 9)),
                Err(422),
            ),
            ("no proof", at(5), req(5, vec![], note(&tree, 9)), Err(422)),
            (
                "proof from 0",
                None,
                req(0, vec![Hash([0; 32])], note(&tree, 5)),
                Err(400),
            ),
            (
                "not a note",
                at(5),
                req(5, vec![], b"junk".to_vec()),
                Err(400),
            ),
        ];
        for (name, latest, request, want) in cases {
            let got = check(&log, latest, &request)
                .map(|v| v.size)
                .map_err(|e| e.status());
            assert_eq!(got, want, "{name}");
        }
        let e = check(&log, at(8), &req(5, vec![], note(&tree, 9))).unwrap_err();
        assert_eq!(e.latest_size(), Some(8));
        assert_eq!(e.code(), "E_WITNESS_OLD_SIZE");
    }
}
