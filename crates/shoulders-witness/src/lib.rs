//! A C2SP `tlog-witness` (<https://c2sp.org/tlog-witness>) for shoulders logs, and anyone
//! else's: it holds a cosigning key, knows the logs it witnesses by their verifier keys,
//! remembers the latest tree it cosigned for each, and cosigns a new checkpoint only when a
//! consistency proof shows it extends that tree.
//!
//! Layers: [`protocol`] is pure (the request format and the verdict); [`store`] persists the
//! latest tree per log durably before an answer; [`Witness`] joins them with the key; the
//! [`router`] answers `POST /add-checkpoint` over HTTP.
//!
//! Directory layout (`shoulders witness init --dir W`): `W/witness.key` (the signing key,
//! mode 0600), `W/witness.pub` (its verifier key), `W/logs/*.state` ([`store`]).

pub mod protocol;
pub mod store;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use protocol::{Latest, Refusal};
use shoulders_log::{Cosigner, LogVerifier};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The witness's signing key, in `W`.
pub const KEY_FILE: &str = "witness.key";
/// Its verifier key, in `W`.
pub const PUB_FILE: &str = "witness.pub";
/// The per-log state files, in `W`.
pub const LOGS_DIR: &str = "logs";
/// Most logs one witness process witnesses.
pub const MAX_LOGS: usize = 1024;
/// Largest key file read.
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// Failures of the witness outside the protocol's verdicts, each with a stable code.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error("{0}")]
    Io(String),
    #[error("witness state: {0}")]
    State(String),
    #[error("witness key: {0}")]
    Key(String),
    #[error("witness configuration: {0}")]
    Config(String),
}

impl WitnessError {
    pub fn code(&self) -> &'static str {
        match self {
            WitnessError::Io(_) => "E_IO",
            WitnessError::State(_) => "E_WITNESS_STATE",
            WitnessError::Key(_) => "E_KEY_FILE",
            WitnessError::Config(_) => "E_WITNESS_CONFIG",
        }
    }
}

/// Create `dir` with a fresh witness key named `name` (never overwriting one); returns the
/// verifier key, which logs and clients put in their witness policies.
pub fn init<R: rand_core::CryptoRngCore + ?Sized>(
    dir: &Path,
    name: &str,
    rng: &mut R,
) -> Result<String, WitnessError> {
    let (skey, vkey) =
        Cosigner::generate(rng, name).map_err(|e| WitnessError::Key(e.to_string()))?;
    let io = |p: &Path, e: std::io::Error| WitnessError::Io(format!("{}: {e}", p.display()));
    std::fs::create_dir_all(dir.join(LOGS_DIR)).map_err(|e| io(dir, e))?;
    let key_path = dir.join(KEY_FILE);
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_path)
            .map_err(|e| io(&key_path, e))?
    };
    file.write_all(format!("{skey}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| io(&key_path, e))?;
    let pub_path = dir.join(PUB_FILE);
    std::fs::write(&pub_path, format!("{vkey}\n")).map_err(|e| io(&pub_path, e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))?;
    Ok(vkey)
}

/// The signing key in `dir`.
pub fn load_cosigner(dir: &Path) -> Result<Cosigner, WitnessError> {
    let path = dir.join(KEY_FILE);
    let meta = std::fs::symlink_metadata(&path)
        .map_err(|e| WitnessError::Key(format!("{}: {e}", path.display())))?;
    if !meta.is_file() || meta.len() > MAX_KEY_FILE_BYTES {
        return Err(WitnessError::Key(format!(
            "{} is not a regular file of at most {MAX_KEY_FILE_BYTES} bytes",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| WitnessError::Key(format!("{}: {e}", path.display())))?;
    Cosigner::new(&text).map_err(|e| WitnessError::Key(format!("{}: {e}", path.display())))
}

/// Why an `add-checkpoint` got no cosignature.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Storage(#[from] WitnessError),
}

/// A running witness: its key, the logs it knows, and their latest cosigned trees.
pub struct Witness {
    cosigner: Cosigner,
    logs: HashMap<String, LogVerifier>,
    /// Held across check, persist and cosign, so two requests for one log cannot both
    /// advance from the same latest tree.
    store: Mutex<store::StateStore>,
}

impl Witness {
    /// Open the witness in `dir` for the logs with these verifier keys (one per origin).
    pub fn open(dir: &Path, log_vkeys: &[String]) -> Result<Self, WitnessError> {
        if log_vkeys.is_empty() || log_vkeys.len() > MAX_LOGS {
            return Err(WitnessError::Config(format!(
                "{} logs; a witness witnesses 1..={MAX_LOGS}",
                log_vkeys.len()
            )));
        }
        let mut logs = HashMap::new();
        for vkey in log_vkeys {
            let v = LogVerifier::new(vkey)
                .map_err(|e| WitnessError::Config(format!("log key {vkey:?}: {e}")))?;
            if logs.contains_key(v.origin()) {
                return Err(WitnessError::Config(format!(
                    "two log keys for the origin {:?}",
                    v.origin()
                )));
            }
            logs.insert(v.origin().to_string(), v);
        }
        Ok(Self {
            cosigner: load_cosigner(dir)?,
            logs,
            store: Mutex::new(store::StateStore::open(&dir.join(LOGS_DIR))?),
        })
    }

    /// This witness's verifier key.
    pub fn verifier_key(&self) -> String {
        self.cosigner.verifier_key()
    }

    /// What this witness last cosigned for `origin`.
    pub fn latest(&self, origin: &str) -> Option<Latest> {
        self.store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .latest(origin)
    }

    /// Answer one request body: on success the cosignature line, after the new latest tree
    /// is durable. Blocking (fsync).
    pub fn add_checkpoint(&self, body: &[u8], now_s: u64) -> Result<Vec<u8>, AddError> {
        let req = protocol::parse_request(body)?;
        let origin = protocol::note_origin(&req.note)?;
        let log = self
            .logs
            .get(origin)
            .ok_or_else(|| Refusal::UnknownLog(origin.to_string()))?;
        let text = protocol::note_text(&req.note)?;
        let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        let view = protocol::check(log, store.latest(origin), &req)?;
        let new = Latest {
            size: view.size,
            root: view.root,
        };
        if store.latest(origin) != Some(new) {
            store.record(origin, new)?;
        }
        Ok(self.cosigner.cosign(&text, now_s))
    }
}

/// The witness's HTTP interface: `POST /add-checkpoint`. Refusals are `text/plain`
/// `error[E_CODE]: message` lines, except a 409 whose body is the latest size
/// (`text/x.tlog.size`), as C2SP asks.
pub fn router(witness: Arc<Witness>) -> Router {
    Router::new()
        .route("/add-checkpoint", axum::routing::post(add_checkpoint))
        .layer(DefaultBodyLimit::max(protocol::MAX_REQUEST_BYTES))
        .with_state(witness)
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn text_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("error[{code}]: {message}\n"),
    )
        .into_response()
}

async fn add_checkpoint(State(witness): State<Arc<Witness>>, body: Bytes) -> Response {
    let w = Arc::clone(&witness);
    let outcome = tokio::task::spawn_blocking(move || w.add_checkpoint(&body, now_s())).await;
    match outcome {
        Ok(Ok(line)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            line,
        )
            .into_response(),
        Ok(Err(AddError::Refused(r))) => {
            tracing::info!(code = r.code(), "add-checkpoint refused: {r}");
            let status =
                StatusCode::from_u16(r.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            match r.latest_size() {
                Some(size) => (
                    status,
                    [(header::CONTENT_TYPE, protocol::SIZE_CONTENT_TYPE)],
                    format!("{size}\n"),
                )
                    .into_response(),
                None => text_error(status, r.code(), &r.to_string()),
            }
        }
        Ok(Err(AddError::Storage(e))) => {
            tracing::error!(code = e.code(), "add-checkpoint: {e}");
            text_error(StatusCode::INTERNAL_SERVER_ERROR, e.code(), &e.to_string())
        }
        Err(e) => text_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "E_INTERNAL",
            &e.to_string(),
        ),
    }
}
