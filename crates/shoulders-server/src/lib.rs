//! The HTTP layer over the shoulders engine: a REST API (`/api/...`, described by the OpenAPI 3
//! document at `/openapi.json`) and an OpenAI-compatible gateway (`/v1/...`) that meters calls
//! to models registered on the ledger, answering with an embedded ∞-gram model over the model's
//! datasets or forwarding to a configured upstream.
//!
//! Thin by design: every fact comes from the engine's [`shoulders_ledger::View`] (state,
//! records, proofs, checkpoints) and writes go to [`shoulders_ledger::Ledger`]; blocking engine
//! calls run on tokio's blocking pool so the async workers never wait on an fsync or a
//! database round trip.
//!
//! A node is either the writer or a read-only node ([`ServerConfig::read_only`]): the latter
//! opens the log read-only as a [`shoulders_ledger::Follower`], folds what the writer commits
//! every [`ServerConfig::follow_interval_ms`], and refuses every write route with
//! `E_READ_ONLY` (403) before doing any work.

pub mod admin;
pub mod api;
pub mod apikeys;
pub mod audit;
pub mod conn;
pub mod error;
pub mod explorer;
pub mod gateway;
pub mod health;
pub mod keygate;
pub mod metrics;
pub mod preauth;
pub mod quota;
pub mod ratelimit;
mod streaming;
pub mod tlog;
pub mod witness;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;
use shoulders_attrib::budget::Budget;
use shoulders_attrib::dataset::{index_version, DatasetIndex};
use shoulders_ledger::{DataDir, Follower, Ledger, View};
use shoulders_record::ActorKey;
use tower::ServiceBuilder;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use error::{ApiError, ApiResult};

/// Default largest request body: an attribution text of 1 MiB and its JSON (a record is at most
/// 64 KiB, well inside it).
pub const DEFAULT_MAX_BODY_BYTES: usize = (1 << 20) + (64 << 10);
/// Default largest document `POST /api/contributions` takes (`--max-content-bytes`).
pub const DEFAULT_MAX_CONTENT_BYTES: usize = 16 << 20;
/// Default time a request may take before it is answered `E_TIMEOUT`.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;
/// Requests per second each client IP may make by default (loopback exempt).
pub const DEFAULT_RATE_LIMIT_PER_S: u32 = 200;
/// Default [`ServerConfig::attribute_timeout_ms`]: two thirds of the request timeout.
pub const DEFAULT_ATTRIBUTE_TIMEOUT_MS: u64 = 20_000;

/// How far a submitted record's signer timestamp may be from the server's clock (5 minutes).
pub const DEFAULT_ADMISSION_WINDOW_MS: u64 = 5 * 60 * 1000;
/// Most attribution indexes a node keeps open (memory-mapped) at once.
pub const MAX_OPEN_INDEXES: usize = 64;
/// Largest upstream answer the gateway reads, by default (`--max-upstream-body-bytes`): a
/// completion of 16 384 tokens is well under 1 MiB of JSON, and the body is read as a stream and
/// refused (`E_UPSTREAM_TOO_LARGE`) once over, so a hostile or broken upstream cannot make the
/// server buffer more.
pub const DEFAULT_MAX_UPSTREAM_BODY_BYTES: usize = 8 << 20;
/// Time allowed for one upstream call by default, from connecting to the last byte of the body.
pub const DEFAULT_UPSTREAM_TIMEOUT_MS: u64 = 20_000;
/// How often a read-only node polls the log for records the writer committed, by default.
pub const DEFAULT_FOLLOW_INTERVAL_MS: u64 = 250;

/// Operator key file in the data directory (written by `shoulders init` once metering lands).
pub const OPERATOR_KEY_FILE: &str = "operator.key";

/// Whether the gateway writes usage receipts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metering {
    /// Sign a `usage.receipt` with the operator key and append it before answering; a call
    /// whose receipt cannot be appended fails.
    On,
    /// Answer without a receipt (the response says `"metering": "off"`). For ledgers whose
    /// fold does not yet accept `usage.receipt`.
    Off,
}

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    /// Where the log lives when not what the data directory records (`--database`).
    pub database: Option<shoulders_ledger::StoreLocation>,
    /// Writer settings; the server sets an admission window on signer timestamps.
    pub ledger: shoulders_ledger::LedgerConfig,
    /// Model id → base URL of an OpenAI-compatible upstream (`http://host:port/v1`).
    pub upstreams: BTreeMap<String, String>,
    pub metering: Metering,
    pub max_body_bytes: usize,
    /// Largest document `POST /api/contributions` takes; its body may be this plus
    /// [`api::CONTRIBUTION_ENVELOPE_BYTES`] (the record), whatever `max_body_bytes` is.
    pub max_content_bytes: usize,
    pub request_timeout_ms: u64,
    /// Time allowed for one upstream call, from connecting to the last byte of its body.
    pub upstream_timeout_ms: u64,
    /// Largest upstream answer read ([`DEFAULT_MAX_UPSTREAM_BODY_BYTES`]).
    pub max_upstream_body_bytes: usize,
    /// Per-client-IP request rate limit (`None`: unlimited).
    pub rate_limit: Option<ratelimit::RateLimit>,
    /// Per-API-key rate of `POST /api/attribute` (`None`: unlimited); loopback included.
    pub attribute_rate_limit: Option<ratelimit::RateLimit>,
    /// Wall time one attribution (`POST /api/attribute`, the gateway's attribution of an
    /// output) may take before its search is cancelled (`504 E_ATTRIBUTION_TIMEOUT`). Below
    /// the request timeout, so the client gets this answer rather than `E_TIMEOUT`.
    pub attribute_timeout_ms: u64,
    /// Serve reads only: open the log read-only (no writer lock), follow the writer, refuse
    /// every write route with `E_READ_ONLY`. Metering is off and no operator key is loaded.
    pub read_only: bool,
    /// How often a read-only node polls the log for new records. A record the writer commits
    /// is served by a read node after at most this plus the time to read, check and fold it.
    pub follow_interval_ms: u64,
    /// Writer nodes: index new contributions of every indexed dataset as they commit
    /// (`--index-follow on|off`; see [`index_follow`]).
    pub index_follow: bool,
    /// Connection bounds: header-read and idle timeouts, most connections at once
    /// (`--header-timeout-ms`, `--idle-timeout-ms`, `--max-connections`; see [`conn`]).
    pub connections: conn::ConnLimits,
    /// Records and bytes each signer may append over HTTP per window (`None`: unlimited).
    pub write_quota: Option<quota::WriteQuota>,
    /// Byte budget of one list response (`--max-page-bytes`): a page ends early, with its
    /// cursor, once its items reach it (always holding at least one item).
    pub max_page_bytes: usize,
    /// Datasets whose attribution indexes the server loads when it starts (at most
    /// [`MAX_OPEN_INDEXES`]); `/readyz` fails until each is loaded.
    pub preload_indexes: Vec<String>,
    /// Witnesses to cosign the log's checkpoints and the quorum `GET /log/checkpoint` waits
    /// for (`--witness-policy`; see [`witness`]). Every witness needs a URL.
    pub witness_policy: Option<shoulders_log::WitnessPolicy>,
    /// Models whose metered outputs the gateway keeps in the content store (`--keep-outputs`),
    /// so receipts can be audited without the payer's copy. Opt-in: outputs may hold personal
    /// data (see SECURITY.md).
    pub keep_outputs: std::collections::BTreeSet<String>,
}

impl ServerConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            data_dir: data_dir.into(),
            database: None,
            ledger: shoulders_ledger::LedgerConfig {
                admission_window_ms: Some(DEFAULT_ADMISSION_WINDOW_MS),
                ..shoulders_ledger::LedgerConfig::default()
            },
            upstreams: BTreeMap::new(),
            metering: Metering::On,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_content_bytes: DEFAULT_MAX_CONTENT_BYTES,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            upstream_timeout_ms: DEFAULT_UPSTREAM_TIMEOUT_MS,
            max_upstream_body_bytes: DEFAULT_MAX_UPSTREAM_BODY_BYTES,
            rate_limit: Some(ratelimit::RateLimit {
                per_second: DEFAULT_RATE_LIMIT_PER_S,
                burst: 2 * DEFAULT_RATE_LIMIT_PER_S,
                limit_loopback: false,
            }),
            attribute_rate_limit: Some(ratelimit::RateLimit {
                per_second: ratelimit::DEFAULT_ATTRIBUTE_RATE_PER_S,
                burst: ratelimit::DEFAULT_ATTRIBUTE_BURST,
                limit_loopback: true,
            }),
            attribute_timeout_ms: DEFAULT_ATTRIBUTE_TIMEOUT_MS,
            read_only: false,
            follow_interval_ms: DEFAULT_FOLLOW_INTERVAL_MS,
            index_follow: true,
            connections: conn::ConnLimits::default(),
            write_quota: Some(quota::WriteQuota::default()),
            max_page_bytes: api::MAX_PAGE_BYTES,
            preload_indexes: Vec::new(),
            witness_policy: None,
            keep_outputs: std::collections::BTreeSet::new(),
        }
    }
}

/// The ledger a node serves: as its writer, or as a read-only follower of the writer.
enum Node {
    Writer(Ledger),
    ReadOnly(Box<Follower>),
}

/// Sets its flag when dropped: held by a request's future across the blocking attribution it
/// waits for, so when the request is abandoned (its timeout, a client gone) the search stops
/// at its next check instead of running on.
pub struct CancelOnDrop(pub Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Everything the handlers share.
pub struct AppState {
    /// Always `Some` until dropped (see the `Drop` impl).
    node: Option<Node>,
    pub config: ServerConfig,
    /// The gateway's keys, read from the store on every request (a revocation applies to the
    /// next one), with their rate buckets and budget admission (see [`keygate`]).
    pub api_keys: keygate::KeyGate,
    /// Signs usage receipts (from `D/operator.key`), when present.
    pub operator_key: Option<ActorKey>,
    pub http: reqwest::Client,
    indexes: Mutex<HashMap<String, (SystemTime, Arc<DatasetIndex>)>>,
    /// A background merge started by [`index_follow`] is running.
    merging: AtomicBool,
    rate_buckets: ratelimit::Buckets,
    /// Money held for metered calls in flight (see [`preauth`]).
    reservations: Arc<preauth::Reservations>,
    quotas: quota::Quotas,
    attribute_buckets: ratelimit::Buckets<String>,
    /// Steps the last attribution search had taken at its last check (it stops growing once
    /// a cancelled search has stopped).
    pub attribution_progress: Arc<std::sync::atomic::AtomicU64>,
    /// What `/metrics` exposes.
    pub metrics: metrics::Metrics,
    /// Set once a read-only node's follow loop has caught up with the log (`/readyz`).
    followed_once: AtomicBool,
    /// The log's verifier key (`D/log.pub`; empty when the file is missing and no policy
    /// needs it).
    pub log_vkey: String,
    /// The witness policy in force and the latest cosigned checkpoint, with a policy.
    pub witnessing: Option<witness::Witnessing>,
}

/// Failures while starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Ledger(#[from] shoulders_ledger::LedgerError),
    #[error(transparent)]
    ApiKeys(#[from] apikeys::ApiKeyError),
    #[error("{0}")]
    OperatorKey(String),
    #[error(
        "metering is on but {0} does not exist; create the operator key or serve with metering off"
    )]
    NoOperatorKey(String),
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
    #[error("{0}")]
    Preload(String),
    #[error("settling API key spend left pending by the last run: {0}")]
    KeySpend(String),
    #[error("witness policy: {0}")]
    WitnessPolicy(String),
}

impl StartError {
    pub fn code(&self) -> &'static str {
        match self {
            StartError::Ledger(e) => e.code(),
            StartError::ApiKeys(e) => e.code(),
            StartError::OperatorKey(_) | StartError::NoOperatorKey(_) => "E_KEY_FILE",
            StartError::Http(_) => "E_INTERNAL",
            StartError::Preload(_) => "E_PRELOAD_INDEXES",
            StartError::KeySpend(_) => "E_STORAGE",
            StartError::WitnessPolicy(_) => "E_WITNESS_POLICY",
        }
    }
}

impl AppState {
    /// The budget of one attribution: its steps ([`Budget::for_output`]), the deadline
    /// [`ServerConfig::attribute_timeout_ms`] from now, and `cancel` (set when the request is
    /// dropped).
    pub fn attribution_budget(&self, text_len: usize, cancel: Arc<AtomicBool>) -> Budget {
        Budget::for_output(text_len)
            .with_deadline(Instant::now() + Duration::from_millis(self.config.attribute_timeout_ms))
            .with_cancel(cancel)
            .with_progress(Arc::clone(&self.attribution_progress))
    }

    /// Open the ledger: for writing (taking the data directory's writer lock), or with
    /// `config.read_only` read-only as a follower (no lock; metering off). Then the key table
    /// and, on the writer, the operator key.
    ///
    /// Blocking, and on PostgreSQL it runs the blocking client: call it outside the async
    /// runtime (or on its blocking pool).
    pub fn open(mut config: ServerConfig) -> Result<Arc<Self>, StartError> {
        if config.preload_indexes.len() > MAX_OPEN_INDEXES {
            return Err(StartError::Preload(format!(
                "{} indexes to preload; at most {MAX_OPEN_INDEXES} are kept open",
                config.preload_indexes.len()
            )));
        }
        let mut dir = DataDir::new(&config.data_dir);
        if let Some(db) = &config.database {
            dir = dir.with_database(db.clone());
        }
        let node = if config.read_only {
            config.metering = Metering::Off;
            Node::ReadOnly(Box::new(Follower::open(&dir)?))
        } else {
            Node::Writer(Ledger::open_with(&dir, config.ledger.clone())?)
        };
        let metrics = metrics::Metrics::new();
        if let Node::Writer(ledger) = &node {
            ledger.observe_commits(metrics.commit_observer());
        }
        // The writer imports an old `api-keys.json` once; read nodes only read the keys.
        let api_keys = keygate::KeyGate::new(
            apikeys::open_store(
                &config.data_dir,
                config.database.as_ref(),
                !config.read_only,
            )?,
            // Where the ledger (and so the keys) lives: named by `--database` or the data
            // directory's own setting.
            matches!(
                dir.store_location()?,
                shoulders_ledger::StoreLocation::Sqlite(_)
            ),
        );
        let key_path = config.data_dir.join(OPERATOR_KEY_FILE);
        // A read node signs nothing but checkpoints: it needs no operator key.
        let operator_key = match std::fs::read_to_string(&key_path) {
            _ if config.read_only => None,
            Ok(text) => Some(
                ActorKey::from_file_text(&text)
                    .map_err(|e| StartError::OperatorKey(format!("{}: {e}", key_path.display())))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(StartError::OperatorKey(format!(
                    "{}: {e}",
                    key_path.display()
                )))
            }
        };
        if config.metering == Metering::On && operator_key.is_none() {
            return Err(StartError::NoOperatorKey(key_path.display().to_string()));
        }
        let log_vkey = read_log_vkey(&config.data_dir, config.witness_policy.is_some())?;
        let witnessing = match &config.witness_policy {
            Some(policy) => Some(witness::Witnessing::open(
                policy.clone(),
                &log_vkey,
                &config.data_dir,
            )?),
            None => None,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.upstream_timeout_ms))
            .build()
            .map_err(|e| StartError::Http(e.to_string()))?;
        let state = Arc::new(AppState {
            node: Some(node),
            config,
            api_keys,
            operator_key,
            http,
            indexes: Mutex::new(HashMap::new()),
            merging: AtomicBool::new(false),
            rate_buckets: ratelimit::Buckets::default(),
            reservations: Arc::default(),
            quotas: quota::Quotas::default(),
            attribute_buckets: ratelimit::Buckets::default(),
            attribution_progress: Arc::default(),
            metrics,
            followed_once: AtomicBool::new(false),
            log_vkey,
            witnessing,
        });
        // Spend left pending by a writer that stopped mid-call is settled from its receipt.
        if !state.config.read_only {
            state
                .api_keys
                .reconcile(&state)
                .map_err(|e| StartError::KeySpend(format!("{}: {}", e.code, e.message)))?;
        }
        Ok(state)
    }

    fn node(&self) -> &Node {
        self.node
            .as_ref()
            .expect("the node lives until AppState is dropped")
    }

    /// What this node serves reads from: the writer's committed records, or what a read-only
    /// node has folded so far.
    pub fn view(&self) -> &View {
        match self.node() {
            Node::Writer(ledger) => ledger.view(),
            Node::ReadOnly(follower) => follower.view(),
        }
    }

    /// The writer, for the write routes; `E_READ_ONLY` on a read-only node.
    pub fn writer(&self) -> ApiResult<&Ledger> {
        match self.node() {
            Node::Writer(ledger) => Ok(ledger),
            Node::ReadOnly(_) => Err(ApiError::read_only()),
        }
    }

    /// The follower, on a read-only node.
    pub fn follower(&self) -> Option<&Follower> {
        match self.node() {
            Node::Writer(_) => None,
            Node::ReadOnly(follower) => Some(follower),
        }
    }

    /// What metered calls in flight hold of `payer`'s balance in `currency` (micro-units).
    pub fn reserved_micros(&self, payer: &str, currency: &str) -> u128 {
        self.reservations.held_micros(payer, currency)
    }

    pub fn reservations(&self) -> &Arc<preauth::Reservations> {
        &self.reservations
    }

    /// Whether a read-only node's follow loop has caught up with the log at least once.
    pub fn followed_once(&self) -> bool {
        self.followed_once.load(Ordering::Relaxed)
    }

    /// Load [`ServerConfig::preload_indexes`], reporting each that cannot be loaded on stderr
    /// (`/readyz` names it until it can). Blocking.
    pub fn preload_indexes(&self) {
        for dataset in &self.config.preload_indexes {
            match self.dataset_index(dataset) {
                Ok(Some(_)) => tracing::info!(dataset = %dataset, "attribution index loaded"),
                Ok(None) => tracing::warn!(dataset = %dataset, "no attribution index is built"),
                Err(e) => {
                    tracing::warn!(dataset = %dataset, code = e.code, "cannot load the attribution index: {}", e.message)
                }
            }
        }
    }

    pub fn is_read_only(&self) -> bool {
        self.follower().is_some()
    }

    /// Count a verified record of `bytes` bytes (with its document, for a contribution)
    /// against its signer's write quota; the operator's key is exempt.
    pub fn charge_write(
        &self,
        signer: &shoulders_record::PublicKey,
        bytes: u64,
    ) -> Result<(), quota::Exceeded> {
        let Some(q) = &self.config.write_quota else {
            return Ok(());
        };
        if self
            .operator_key
            .as_ref()
            .is_some_and(|k| &k.public() == signer)
        {
            return Ok(());
        }
        self.quotas
            .charge(signer, bytes, q, std::time::Instant::now())
    }

    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// The data directory's content store (contributed documents, training configurations). A
    /// read-only node holds what its data directory holds: a copy of the writer's `content/`,
    /// or nothing.
    pub fn content(&self) -> shoulders_ledger::ContentStore {
        shoulders_ledger::ContentStore::new(&DataDir::new(&self.config.data_dir))
    }

    /// The dataset's attribution index, loaded once and reloaded when its manifest changes
    /// (`index build`, `index update`, a merge, or this server's index follow loop); segments
    /// already open are shared with the new one. `None` when no index was built. Blocking
    /// (reads files).
    pub fn dataset_index(&self, dataset_id: &str) -> ApiResult<Option<Arc<DatasetIndex>>> {
        let Some(modified) = index_version(self.data_dir(), dataset_id) else {
            return Ok(None);
        };
        let previous = {
            let cache = self.indexes.lock().unwrap_or_else(|p| p.into_inner());
            match cache.get(dataset_id) {
                Some((at, ix)) if *at == modified => return Ok(Some(Arc::clone(ix))),
                Some((_, ix)) => Some(Arc::clone(ix)),
                None => None,
            }
        };
        let ix = Arc::new(DatasetIndex::open_reusing(
            self.data_dir(),
            dataset_id,
            previous.as_deref(),
        )?);
        let mut cache = self.indexes.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_OPEN_INDEXES && !cache.contains_key(dataset_id) {
            // Bounded: drop the entry whose index was built longest ago (requests still using
            // it keep their Arc; it is reopened when asked for again).
            if let Some(oldest) = cache
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
            {
                cache.remove(&oldest);
            }
        }
        cache.insert(dataset_id.to_string(), (modified, Arc::clone(&ix)));
        Ok(Some(ix))
    }

    /// [`AppState::dataset_index`] without opening anything: `Some` when the manifest's time
    /// (one `stat`) and the cache answer it (no index, or the open one is current), `None`
    /// when the index must be opened or reopened first.
    pub fn dataset_index_if_open(&self, dataset_id: &str) -> Option<Option<Arc<DatasetIndex>>> {
        let Some(modified) = index_version(self.data_dir(), dataset_id) else {
            return Some(None);
        };
        let cache = self.indexes.lock().unwrap_or_else(|p| p.into_inner());
        match cache.get(dataset_id) {
            Some((at, ix)) if *at == modified => Some(Some(Arc::clone(ix))),
            _ => None,
        }
    }

    /// One pass of the index follow loop ([`index_follow`]): for every dataset with a
    /// segmented index under `D/indexes/`, append a segment over the contributions the ledger
    /// committed since (their documents from the content store), then start a background
    /// merge when the merge policy asks for one. Returns the segments appended. Blocking.
    pub fn index_follow_once(self: &Arc<Self>) -> Result<usize, String> {
        let root = self.data_dir().join("indexes");
        let Ok(entries) = std::fs::read_dir(&root) else {
            return Ok(0);
        };
        let mut appended = 0;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(dataset_id) = shoulders_attrib::dataset::dataset_of_index_name(&name) else {
                continue;
            };
            let Ok(Some(manifest)) = shoulders_attrib::segments::read_manifest(&e.path()) else {
                continue;
            };
            let size = self.view().size();
            if size > manifest.ledger_size {
                let docs: Vec<(u64, String, String)> = self.view().with_state(|s| {
                    s.dataset(&dataset_id)
                        .map(|d| {
                            // In log order: only the new tail is read, not every contribution.
                            let from = d
                                .contributions
                                .partition_point(|&c| c < manifest.ledger_size);
                            d.contributions[from..]
                                .iter()
                                .filter(|&&c| c < size)
                                .filter_map(|&c| {
                                    let k = s.contribution(c)?;
                                    Some((c, k.contributor.clone(), k.content_hash.clone()))
                                })
                                .collect()
                        })
                        .unwrap_or_default()
                });
                if !docs.is_empty() {
                    let current = self.dataset_index(&dataset_id).ok().flatten();
                    let store = self.content();
                    let report = shoulders_attrib::dataset::append_using(
                        self.data_dir(),
                        &dataset_id,
                        size,
                        |from| {
                            docs.into_iter().filter(move |d| d.0 >= from).map(
                                move |(c, who, hash)| {
                                    let bytes = store.get(&hash).map_err(|e| {
                                        shoulders_attrib::index::IndexError::Io {
                                            path: std::path::PathBuf::from(&hash),
                                            source: std::io::Error::other(e.to_string()),
                                        }
                                    })?;
                                    Ok(shoulders_attrib::dataset::BuildDoc {
                                        contribution: c,
                                        contributor: who,
                                        bytes,
                                    })
                                },
                            )
                        },
                        current.as_deref(),
                    )
                    .map_err(|e| format!("{dataset_id}: error[{}]: {e}", e.code()))?;
                    appended += usize::from(report.is_some());
                }
            }
            let plan = shoulders_attrib::segments::read_manifest(&e.path())
                .ok()
                .flatten()
                .and_then(|m| shoulders_attrib::segments::merge_plan(&m.segments));
            if plan.is_some() && !self.merging.swap(true, Ordering::AcqRel) {
                let st = Arc::clone(self);
                std::thread::spawn(move || {
                    if let Err(e) =
                        shoulders_attrib::dataset::merge(st.data_dir(), &dataset_id, false, false)
                    {
                        eprintln!(
                            "shoulders serve: merging the index of {dataset_id}: error[{}]: {e}",
                            e.code()
                        );
                    }
                    st.merging.store(false, Ordering::Release);
                });
            }
        }
        Ok(appended)
    }
}

/// The log's verifier key from `D/log.pub` (at most 4 KiB); required with a witness policy.
fn read_log_vkey(data_dir: &Path, required: bool) -> Result<String, StartError> {
    let path = DataDir::new(data_dir).verifier_key();
    let bad = |why: String| StartError::WitnessPolicy(format!("{}: {why}", path.display()));
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(String::new()),
        Err(e) => Err(bad(e.to_string())),
        Ok(m) if !m.is_file() || m.len() > 4096 => {
            Err(bad("not a regular file of at most 4096 bytes".into()))
        }
        Ok(_) => std::fs::read_to_string(&path)
            .map(|t| t.trim().to_string())
            .map_err(|e| bad(e.to_string())),
    }
}

impl Drop for AppState {
    /// The PostgreSQL client blocks on a runtime of its own, which panics on a thread that is
    /// running async tasks; and the writer commits what is still queued when it is dropped.
    /// So when the last reference goes away on a runtime's thread, the ledger is closed on a
    /// plain thread (and this one waits for it).
    fn drop(&mut self) {
        let Some(node) = self.node.take() else { return };
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|s| {
                s.spawn(move || drop(node));
            });
        } else {
            drop(node);
        }
    }
}

/// Extractor guarding the write routes: on a read-only node it refuses the request with
/// `E_READ_ONLY` before any other extractor or the handler runs, so the body is not even read
/// and nothing is appended.
pub struct WriterNode;

impl FromRequestParts<Arc<AppState>> for WriterNode {
    type Rejection = ApiError;

    async fn from_request_parts(_: &mut Parts, st: &Arc<AppState>) -> ApiResult<Self> {
        st.writer().map(|_| WriterNode)
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "shoulders",
        description = "A public, tamper-evident ledger for AI models: REST API and OpenAI-compatible metering gateway."
    ),
    components(schemas(error::ErrorBody, error::ErrorDetail))
)]
struct ApiDoc;

/// The routes and their OpenAPI document, built together so they cannot drift apart.
pub fn routes() -> (Router<Arc<AppState>>, utoipa::openapi::OpenApi) {
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(api::routes())
        .merge(gateway::routes())
        .merge(admin::routes())
        .merge(tlog::routes())
        .merge(witness::routes())
        .split_for_parts();
    (router, doc)
}

/// The full application: API, gateway, web explorer (`/`, HTML), `/openapi.json`, `/metrics`,
/// `/healthz`, `/readyz`, JSON errors for unknown routes, body size limit, request timeout, and
/// request ids and metrics around all of it ([`metrics::observe`]).
pub fn router(state: Arc<AppState>) -> Router {
    let (routes, doc) = routes();
    let doc = Arc::new(doc);
    let timeout = Duration::from_millis(state.config.request_timeout_ms);
    let limit = state.config.max_body_bytes;
    routes
        .merge(explorer::routes())
        .route("/metrics", axum::routing::get(metrics::metrics))
        .route("/healthz", axum::routing::get(health::healthz))
        .route("/readyz", axum::routing::get(health::readyz))
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = Arc::clone(&doc);
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "E_ROUTE_NOT_FOUND",
                "no such route; the routes are listed in /openapi.json",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "E_METHOD_NOT_ALLOWED",
                "this route does not accept that method; see /openapi.json",
            )
        })
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            ratelimit::limit,
        ))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|err: tower::BoxError| async move {
                    if err.is::<tower::timeout::error::Elapsed>() {
                        ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "E_TIMEOUT",
                            "the request took too long and was abandoned; a write it carried may still commit, so retry it with the same client id",
                        )
                        .into_response()
                    } else {
                        ApiError::internal(err.to_string()).into_response()
                    }
                }))
                .timeout(timeout),
        )
        // Outermost, so the request id and the metrics cover every answer, the rate limiter's,
        // the timeout's and the fallbacks' included.
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            metrics::observe,
        ))
        .with_state(state)
}

/// Serve until `shutdown` resolves, then stop accepting, let in-flight requests finish and
/// return. Connections are bounded in number and time ([`conn`]: `config.connections`). Writes are acknowledged only after they are durable, so nothing acknowledged can be
/// lost; dropping the returned-to caller's last [`AppState`] reference closes the ledger,
/// which commits anything still queued. A read-only node follows the writer meanwhile
/// ([`follow`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let follower = state
        .is_read_only()
        .then(|| tokio::spawn(follow(Arc::clone(&state))));
    let witnessing = state
        .witnessing
        .is_some()
        .then(|| tokio::spawn(witness::run(Arc::clone(&state))));
    let indexing = (!state.is_read_only() && state.config.index_follow)
        .then(|| tokio::spawn(index_follow(Arc::clone(&state))));
    if !state.config.preload_indexes.is_empty() {
        let st = Arc::clone(&state);
        // In the background: the server answers (and `/readyz` says not ready) meanwhile.
        drop(tokio::task::spawn_blocking(move || st.preload_indexes()));
    }
    let limits = state.config.connections;
    let app = router(state);
    let served = conn::serve_connections(listener, app, limits, shutdown).await;
    for task in [follower, witnessing, indexing].into_iter().flatten() {
        task.abort();
        let _ = task.await;
    }
    served
}

/// A read-only node's follow loop: every `follow_interval_ms` after the previous poll ended,
/// fold what the writer committed since ([`Follower::catch_up`], on the blocking pool). A
/// record committed at time `t` is served from `t + interval + one catch-up` at the latest
/// (while the database is reachable). Storage failures are reported once and retried at the
/// next poll; a log that no longer matches what the node verified (`E_STORE_CORRUPT`) stops
/// the loop, and the node keeps serving what it verified. Returns only then (or when
/// aborted); a writer node returns at once.
pub async fn follow(state: Arc<AppState>) {
    if !state.is_read_only() {
        return;
    }
    let interval = Duration::from_millis(state.config.follow_interval_ms);
    let mut failing: Option<String> = None;
    loop {
        tokio::time::sleep(interval).await;
        let st = Arc::clone(&state);
        let outcome = tokio::task::spawn_blocking(move || match st.follower() {
            Some(follower) => follower.catch_up(),
            None => Ok(0),
        })
        .await;
        match outcome {
            Ok(Ok(_)) => {
                state.followed_once.store(true, Ordering::Relaxed);
                if failing.take().is_some() {
                    eprintln!("shoulders serve: following the log again");
                }
            }
            Ok(Err(e)) if e.code() == "E_STORE_CORRUPT" => {
                eprintln!(
                    "shoulders serve: stopped following the log: error[{}]: {e}; still serving the {} records verified so far",
                    e.code(),
                    state.view().size()
                );
                return;
            }
            Ok(Err(e)) => {
                let message = format!("error[{}]: {e}", e.code());
                if failing.as_deref() != Some(message.as_str()) {
                    eprintln!(
                        "shoulders serve: cannot read new records ({message}); retrying every {} ms",
                        interval.as_millis()
                    );
                    failing = Some(message);
                }
            }
            Err(e) => {
                eprintln!("shoulders serve: the follow loop failed: {e}");
                return;
            }
        }
    }
}

/// How often a writer node's index follow loop looks for new contributions.
pub const INDEX_FOLLOW_INTERVAL_MS: u64 = 500;

/// A writer node's index follow loop ([`ServerConfig::index_follow`]): every
/// [`INDEX_FOLLOW_INTERVAL_MS`] after the previous pass ended, append a segment for every
/// indexed dataset whose ledger has new contributions and merge in the background
/// ([`AppState::index_follow_once`]). A contribution is attributable one interval plus one
/// small segment build after it commits. Failures are reported once and retried.
pub async fn index_follow(state: Arc<AppState>) {
    let interval = Duration::from_millis(INDEX_FOLLOW_INTERVAL_MS);
    let mut failing: Option<String> = None;
    loop {
        tokio::time::sleep(interval).await;
        let st = Arc::clone(&state);
        match tokio::task::spawn_blocking(move || st.index_follow_once()).await {
            Ok(Ok(_)) => {
                if failing.take().is_some() {
                    eprintln!("shoulders serve: indexing new contributions again");
                }
            }
            Ok(Err(message)) => {
                if failing.as_deref() != Some(message.as_str()) {
                    eprintln!(
                        "shoulders serve: cannot index new contributions ({message}); retrying every {} ms",
                        interval.as_millis()
                    );
                    failing = Some(message);
                }
            }
            Err(e) => {
                eprintln!("shoulders serve: the index follow loop failed: {e}");
                return;
            }
        }
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed by this call, not when the
/// future is first polled: a server polls its shutdown future only once it is serving, so a
/// SIGTERM sent as soon as the node answered used to find no handler and kill the process
/// instead of stopping it cleanly. Call it inside a Tokio runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        let wait = |s: std::io::Result<tokio::signal::unix::Signal>| async move {
            match s {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = wait(term) => {},
            _ = wait(int) => {},
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
