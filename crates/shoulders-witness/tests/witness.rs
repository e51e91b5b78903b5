//! The witness over HTTP (`POST /add-checkpoint`): each C2SP status with its body, a
//! cosignature that verifies with the witness key, and state that survives a restart, so a
//! restarted witness still refuses an older or forked checkpoint.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use shoulders_log::{
    add_cosignatures, generate_log_key, CosignatureVerifier, LogSigner, LogVerifier, MemoryHashes,
    WitnessPolicy,
};
use shoulders_witness::protocol::{encode_request, MAX_REQUEST_BYTES};
use shoulders_witness::Witness;
use std::path::Path;
use std::sync::Arc;
use tower::ServiceExt;

struct Log {
    signer: LogSigner,
    tree: MemoryHashes,
}

impl Log {
    fn new(skey: &str, leaves: &[u8]) -> Self {
        let mut tree = MemoryHashes::new();
        for b in leaves {
            tree.append(&[*b]);
        }
        Log {
            signer: LogSigner::new(skey).unwrap(),
            tree,
        }
    }
    fn note(&self, n: u64) -> Vec<u8> {
        self.signer.sign(n, self.tree.root_at(n).unwrap()).unwrap()
    }
    fn body(&self, old: u64, n: u64) -> Vec<u8> {
        let proof = if old == 0 || old >= n {
            Vec::new()
        } else {
            shoulders_log::consistency_proof(old, n, &self.tree).unwrap()
        };
        encode_request(old, &proof, &self.note(n))
    }
}

async fn post(dir: &Path, logs: &[String], body: Vec<u8>) -> (StatusCode, String, String) {
    let w = Arc::new(Witness::open(dir, logs).unwrap());
    let response = shoulders_witness::router(w)
        .oneshot(
            Request::post("/add-checkpoint")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let ctype = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, ctype, String::from_utf8_lossy(&bytes).to_string())
}

#[tokio::test]
async fn statuses_cosignatures_and_state_across_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("w");
    let wvkey = shoulders_witness::init(&dir, "w.example", &mut rand_core::OsRng).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join(shoulders_witness::KEY_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // A second init never replaces the key.
    assert!(shoulders_witness::init(&dir, "w.example", &mut rand_core::OsRng).is_err());

    let (skey, vkey) = generate_log_key(&mut rand_core::OsRng, "example.org/log").unwrap();
    let (other_skey, _) = generate_log_key(&mut rand_core::OsRng, "other.example/log").unwrap();
    let (evil_skey, _) = generate_log_key(&mut rand_core::OsRng, "example.org/log").unwrap();
    let leaves: Vec<u8> = (0..20).collect();
    let forked: Vec<u8> = (0..20).map(|i| if i < 6 { i } else { i + 100 }).collect();
    let log = Log::new(&skey, &leaves);
    let fork = Log::new(&skey, &forked);
    let stranger = Log::new(&other_skey, &leaves);
    let evil = Log::new(&evil_skey, &leaves);
    let logs = vec![vkey.clone()];

    // Unknown log: 404. Wrong key for a known origin: 403. Garbage: 400. Too big: 413.
    assert_eq!(
        post(&dir, &logs, stranger.body(0, 5)).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        post(&dir, &logs, evil.body(0, 5)).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, ctype, body) = post(&dir, &logs, b"old x\n\nnote".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(ctype.starts_with("text/plain"), "{ctype}");
    assert!(
        body.starts_with("error[E_WITNESS_REQUEST_MALFORMED]"),
        "{body}"
    );
    let huge = vec![b'o'; MAX_REQUEST_BYTES + 1];
    assert_eq!(
        post(&dir, &logs, huge).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );

    // First checkpoint: 200 with a cosignature line that verifies with the witness's key.
    let (status, _, line) = post(&dir, &logs, log.body(0, 6)).await;
    assert_eq!(status, StatusCode::OK, "{line}");
    let policy = WitnessPolicy {
        witnesses: vec![(CosignatureVerifier::new(&wvkey).unwrap(), None)],
        quorum: 1,
    };
    let note = add_cosignatures(&log.note(6), &[line.into_bytes()]).unwrap();
    let (view, names) = policy
        .open(&LogVerifier::new(&vkey).unwrap(), &note)
        .unwrap();
    assert_eq!((view.size, names), (6, vec!["w.example".to_string()]));

    // Each call above opened the witness afresh: every one of these runs after a "restart".
    // A client that thinks the witness holds nothing: 409, the latest size as text/x.tlog.size.
    let (status, ctype, body) = post(&dir, &logs, log.body(0, 9)).await;
    assert_eq!(
        (status, ctype.as_str(), body.as_str()),
        (StatusCode::CONFLICT, "text/x.tlog.size", "6\n")
    );
    // An older checkpoint: 400. The same one again: cosigned again.
    assert_eq!(
        post(&dir, &logs, log.body(6, 4)).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(post(&dir, &logs, log.body(6, 6)).await.0, StatusCode::OK);
    // A fork at the same size: 409. A forked history with its own (valid) proof: 422.
    assert_eq!(
        post(&dir, &logs, fork.body(6, 6)).await.0,
        StatusCode::OK,
        "same first 6 leaves"
    );
    // The fork diverges at leaf 6: grow the honest log first, then show the fork.
    assert_eq!(post(&dir, &logs, log.body(6, 12)).await.0, StatusCode::OK);
    assert_eq!(
        post(&dir, &logs, fork.body(12, 12)).await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        post(&dir, &logs, fork.body(12, 15)).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // A proof that does not verify (the honest one from a wrong size): 422.
    let proof_from_10 = shoulders_log::consistency_proof(10, 15, &log.tree).unwrap();
    let wrong = encode_request(12, &proof_from_10, &log.note(15));
    assert_eq!(
        post(&dir, &logs, wrong).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(post(&dir, &logs, log.body(12, 15)).await.0, StatusCode::OK);

    // The state on disk says 15, and a damaged state file stops the witness from starting.
    let w = Witness::open(&dir, &logs).unwrap();
    assert_eq!(w.latest("example.org/log").unwrap().size, 15);
    drop(w);
    for e in std::fs::read_dir(dir.join(shoulders_witness::LOGS_DIR)).unwrap() {
        std::fs::write(e.unwrap().path(), "example.org/log\nfifteen\n").unwrap();
    }
    let err = Witness::open(&dir, &logs).err().unwrap();
    assert_eq!(err.code(), "E_WITNESS_STATE");
}
