//! The log's side of witnessing (C2SP `tlog-witness`): while the committed tree grows, send its
//! signed checkpoint to every witness of the policy, keep the cosignatures that verify with
//! each witness's key, and once a quorum of distinct witnesses cosigned one checkpoint, serve it
//! at `GET /log/checkpoint` (and persist it in `D/cosigned-checkpoint`, so a restart serves it
//! at once). `GET /api/witnesses` says which witnesses and quorum clients should demand.

use crate::{AppState, StartError};
use serde::Serialize;
use shoulders_log::{add_cosignatures, CosignatureVerifier, Hash, LogVerifier, WitnessPolicy};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The latest cosigned checkpoint note, in the data directory.
pub const COSIGNED_FILE: &str = "cosigned-checkpoint";
/// How often the committed size is polled.
pub const POLL_MS: u64 = 200;
/// Time one `add-checkpoint` request may take.
pub const REQUEST_TIMEOUT_MS: u64 = 5_000;
/// Least time between two tries at the same checkpoint while the quorum is missing.
pub const RETRY_MS: u64 = 1_000;
/// Largest witness answer read (a cosignature line is about 150 bytes).
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024;
/// Largest saved cosigned note read back.
const MAX_NOTE_BYTES: u64 = 64 * 1024;

/// One witness as `GET /api/witnesses` shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct WitnessInfo {
    pub name: String,
    pub vkey: String,
    pub url: String,
}

/// `GET /api/witnesses`: what a client should demand of `GET /log/checkpoint`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct WitnessesDoc {
    /// The log's verifier key (`D/log.pub`).
    pub log_vkey: String,
    /// Cosignatures needed (0 without a policy).
    pub quorum: usize,
    pub witnesses: Vec<WitnessInfo>,
}

/// A policy in force on a node: the witnesses, the log's own key, the current cosigned note.
pub struct Witnessing {
    pub policy: WitnessPolicy,
    pub log: LogVerifier,
    cosigned: Mutex<Option<(u64, Vec<u8>)>>,
    path: PathBuf,
}

impl Witnessing {
    /// The policy for the log `log_vkey` in `data_dir`, with the cosigned note saved there (a
    /// saved note that no longer meets the policy is ignored: it is re-earned). Every witness
    /// needs a URL: the log must reach it.
    pub fn open(
        policy: WitnessPolicy,
        log_vkey: &str,
        data_dir: &Path,
    ) -> Result<Self, StartError> {
        let log = LogVerifier::new(log_vkey)
            .map_err(|e| StartError::WitnessPolicy(format!("the log's key: {e}")))?;
        if let Some((w, _)) = policy.witnesses.iter().find(|(_, url)| url.is_none()) {
            return Err(StartError::WitnessPolicy(format!(
                "witness {} has no URL; the log needs one for every witness",
                w.vkey()
            )));
        }
        let path = data_dir.join(COSIGNED_FILE);
        let cosigned = read_saved(&path)
            .and_then(|note| policy.open(&log, &note).ok().map(|(v, _)| (v.size, note)));
        Ok(Self {
            policy,
            log,
            cosigned: Mutex::new(cosigned),
            path,
        })
    }

    /// The latest cosigned checkpoint note, if a quorum was ever reached.
    pub fn cosigned(&self) -> Option<Vec<u8>> {
        self.lock().as_ref().map(|(_, n)| n.clone())
    }

    fn cosigned_size(&self) -> Option<u64> {
        self.lock().as_ref().map(|(s, _)| *s)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(u64, Vec<u8>)>> {
        self.cosigned.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Make `note` (of tree `size`) the served one if it is newer: durable first. Blocking.
    fn publish(&self, size: u64, note: Vec<u8>) -> std::io::Result<()> {
        if self.cosigned_size().is_some_and(|s| s >= size) {
            return Ok(());
        }
        write_atomic(&self.path, &note)?;
        *self.lock() = Some((size, note));
        Ok(())
    }

    /// Reload the saved note (a read-only node: the writer saves it in the shared directory).
    fn reload(&self) {
        if let Some(note) = read_saved(&self.path) {
            if let Ok((v, _)) = self.policy.open(&self.log, &note) {
                if self.cosigned_size().is_none_or(|s| v.size > s) {
                    *self.lock() = Some((v.size, note));
                }
            }
        }
    }
}

fn read_saved(path: &Path) -> Option<Vec<u8>> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_NOTE_BYTES {
        return None;
    }
    std::fs::read(path).ok()
}

/// Write temp, fsync, rename, fsync the directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// What the policy's witnesses are asked to cosign, and what they answered so far.
struct Target {
    size: u64,
    note: Arc<Vec<u8>>,
    /// Witness index → its verified cosignature line.
    lines: BTreeMap<usize, Vec<u8>>,
    done: bool,
    tried: Option<Instant>,
}

/// What one witness did with one request.
enum Asked {
    Cosigned(Vec<u8>),
    Failed(String),
}

/// The witnessing loop of a writer (a read node only reloads the saved note). Returns at once
/// without a policy.
pub async fn run(state: Arc<AppState>) {
    let Some(w) = state.witnessing.as_ref() else {
        return;
    };
    let poll = Duration::from_millis(POLL_MS);
    if state.is_read_only() {
        return follow_saved(state, poll).await;
    }
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("witnessing stopped: cannot build the HTTP client: {e}");
            return;
        }
    };
    // The size each witness last cosigned, as far as this process knows (0 at first: a 409
    // tells the true one).
    let mut last_sizes = vec![0u64; w.policy.witnesses.len()];
    let mut target: Option<Target> = None;
    loop {
        tokio::time::sleep(poll).await;
        let size = state.view().size();
        if size == 0 || w.cosigned_size().is_some_and(|s| s >= size) {
            continue;
        }
        if target.as_ref().is_none_or(|t| t.size < size) {
            let st = Arc::clone(&state);
            let note = match tokio::task::spawn_blocking(move || st.view().checkpoint()).await {
                Ok(Ok(note)) => note,
                other => {
                    tracing::warn!("witnessing: cannot sign the checkpoint: {other:?}");
                    continue;
                }
            };
            let Ok(view) = w.log.open(&note) else {
                tracing::error!(
                    "witnessing stopped: the log's own checkpoint does not verify with D/log.pub"
                );
                return;
            };
            target = Some(Target {
                size: view.size,
                note: Arc::new(note),
                lines: BTreeMap::new(),
                done: false,
                tried: None,
            });
        }
        let Some(t) = target.as_mut() else { continue };
        if t.done
            || t.tried
                .is_some_and(|at| at.elapsed() < Duration::from_millis(RETRY_MS))
        {
            continue;
        }
        t.tried = Some(Instant::now());
        ask_all(&state, w, &http, t, &mut last_sizes).await;
        if t.lines.len() >= w.policy.quorum && publish(&state, w, t).await {
            t.done = true;
        }
    }
}

/// A read node: serve what the writer saved in the shared data directory.
async fn follow_saved(state: Arc<AppState>, poll: Duration) {
    loop {
        tokio::time::sleep(poll).await;
        let st = Arc::clone(&state);
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(w) = &st.witnessing {
                w.reload()
            }
        })
        .await;
    }
}

/// Add the quorum's lines to the checkpoint, check the note against the policy, save it and
/// serve it. Whether it is now served.
async fn publish(state: &Arc<AppState>, w: &Witnessing, t: &Target) -> bool {
    let lines: Vec<Vec<u8>> = t.lines.values().cloned().collect();
    let note = match add_cosignatures(&t.note, &lines) {
        Ok(n) if w.policy.open(&w.log, &n).is_ok() => n,
        other => {
            tracing::error!(
                "witnessing: the cosigned note does not meet the policy: {:?}",
                other.err()
            );
            return false;
        }
    };
    let (st, size) = (Arc::clone(state), t.size);
    let saved = tokio::task::spawn_blocking(move || match &st.witnessing {
        Some(w) => w.publish(size, note),
        None => Ok(()),
    })
    .await;
    match saved {
        Ok(Ok(())) => {
            tracing::info!(size, witnesses = t.lines.len(), "checkpoint cosigned");
            true
        }
        other => {
            tracing::error!("witnessing: cannot save {COSIGNED_FILE}: {other:?}");
            false
        }
    }
}

/// Ask, concurrently, every witness that has not cosigned `t` yet.
async fn ask_all(
    state: &Arc<AppState>,
    w: &Witnessing,
    http: &reqwest::Client,
    t: &mut Target,
    last_sizes: &mut [u64],
) {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (verifier, url)) in w.policy.witnesses.iter().enumerate() {
        if t.lines.contains_key(&i) {
            continue;
        }
        let job = Ask {
            state: Arc::clone(state),
            http: http.clone(),
            url: format!(
                "{}/add-checkpoint",
                url.as_deref().unwrap_or_default().trim_end_matches('/')
            ),
            verifier: verifier.clone(),
            note: Arc::clone(&t.note),
            size: t.size,
            old: last_sizes[i],
        };
        tasks.spawn(async move { (i, job.run().await) });
    }
    while let Some(joined) = tasks.join_next().await {
        let Ok((i, (asked, learned))) = joined else {
            continue;
        };
        let name = w.policy.witnesses[i].0.name();
        if let Some(size) = learned {
            last_sizes[i] = size;
        }
        match asked {
            Asked::Cosigned(line) => {
                state.metrics.witness_request(name, "cosigned");
                last_sizes[i] = t.size;
                t.lines.insert(i, line);
            }
            Asked::Failed(why) => {
                state.metrics.witness_request(name, "failed");
                tracing::warn!(
                    witness = name,
                    size = t.size,
                    "witness did not cosign: {why}"
                );
            }
        }
    }
}

/// One witness's request, retried once with the size a 409 names.
struct Ask {
    state: Arc<AppState>,
    http: reqwest::Client,
    url: String,
    verifier: CosignatureVerifier,
    note: Arc<Vec<u8>>,
    size: u64,
    old: u64,
}

impl Ask {
    /// The outcome, and the witness's latest size when a 409 told it.
    async fn run(self) -> (Asked, Option<u64>) {
        let mut old = self.old;
        let mut learned = None;
        for _ in 0..2 {
            if old > self.size {
                return (
                    Asked::Failed(format!(
                        "the witness holds size {old}, beyond this log's {}: a fork or a rollback",
                        self.size
                    )),
                    learned,
                );
            }
            let proof = match self.proof(old).await {
                Ok(p) => p,
                Err(e) => return (Asked::Failed(e), learned),
            };
            let body = shoulders_witness::protocol::encode_request(old, &proof, &self.note);
            let response = match self.http.post(&self.url).body(body).send().await {
                Ok(r) => r,
                Err(e) => return (Asked::Failed(format!("POST {}: {e}", self.url)), learned),
            };
            let status = response.status().as_u16();
            let bytes = match read_bounded(response).await {
                Ok(b) => b,
                Err(e) => return (Asked::Failed(e), learned),
            };
            match status {
                200 => return (self.verify(&bytes), learned),
                409 => {
                    let size = std::str::from_utf8(&bytes)
                        .ok()
                        .and_then(|s| s.trim().parse::<u64>().ok());
                    match size {
                        Some(s) if s != old => {
                            self.state
                                .metrics
                                .witness_request(self.verifier.name(), "conflict");
                            old = s;
                            learned = Some(s);
                        }
                        _ => {
                            return (
                                Asked::Failed(format!(
                                    "409: {}",
                                    String::from_utf8_lossy(&bytes).trim()
                                )),
                                learned,
                            )
                        }
                    }
                }
                _ => {
                    return (
                        Asked::Failed(format!(
                            "{status}: {}",
                            String::from_utf8_lossy(&bytes).trim()
                        )),
                        learned,
                    )
                }
            }
        }
        (
            Asked::Failed("still 409 after adopting the witness's size".into()),
            learned,
        )
    }

    async fn proof(&self, old: u64) -> Result<Vec<Hash>, String> {
        if old == 0 || old == self.size {
            return Ok(Vec::new());
        }
        let (st, size) = (Arc::clone(&self.state), self.size);
        let proof =
            tokio::task::spawn_blocking(move || st.view().consistency_proof(old, Some(size)))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("consistency proof {old}..{size}: {e}"))?;
        proof
            .hashes
            .iter()
            .map(|h| Hash::parse_hash(h).map_err(|e| e.to_string()))
            .collect()
    }

    /// Keep the answer's line by this witness if it verifies over this checkpoint.
    fn verify(&self, body: &[u8]) -> Asked {
        let name = self.verifier.name();
        let prefix = format!("\u{2014} {name} ");
        let lines: Vec<Vec<u8>> = body
            .split(|&b| b == b'\n')
            .filter(|l| l.starts_with(prefix.as_bytes()))
            .map(|l| {
                let mut line = l.to_vec();
                line.push(b'\n');
                line
            })
            .collect();
        let Some(line) = lines.first() else {
            return Asked::Failed("the answer holds no cosignature by this witness".into());
        };
        let single = WitnessPolicy {
            witnesses: vec![(self.verifier.clone(), None)],
            quorum: 1,
        };
        let checked = add_cosignatures(&self.note, std::slice::from_ref(line))
            .and_then(|note| single.open(&self.log_verifier()?, &note));
        match checked {
            Ok(_) => Asked::Cosigned(line.clone()),
            Err(e) => Asked::Failed(format!("error[{}]: {e}", e.code())),
        }
    }

    fn log_verifier(&self) -> Result<LogVerifier, shoulders_log::LogError> {
        LogVerifier::new(&self.state.log_vkey)
    }
}

async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if out.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(format!("answer over {MAX_RESPONSE_BYTES} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The routes in the OpenAPI document: `GET /api/witnesses`.
pub fn routes() -> utoipa_axum::router::OpenApiRouter<Arc<AppState>> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(witnesses))
}

/// The witness policy this log is cosigned under: its verifier key, the quorum and the
/// witnesses (an empty list and quorum 0 without a policy).
#[utoipa::path(get, path = "/api/witnesses", tag = "log",
    responses((status = 200, description = "the log's key, quorum and witnesses", body = WitnessesDoc)))]
async fn witnesses(
    axum::extract::State(st): axum::extract::State<Arc<AppState>>,
) -> axum::Json<WitnessesDoc> {
    let (quorum, witnesses) = match &st.witnessing {
        Some(w) => (
            w.policy.quorum,
            w.policy
                .witnesses
                .iter()
                .map(|(v, url)| WitnessInfo {
                    name: v.name().to_string(),
                    vkey: v.vkey().to_string(),
                    url: url.clone().unwrap_or_default(),
                })
                .collect(),
        ),
        None => (0, Vec::new()),
    };
    axum::Json(WitnessesDoc {
        log_vkey: st.log_vkey.clone(),
        quorum,
        witnesses,
    })
}
