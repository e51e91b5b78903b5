//! `shoulders serve` and `shoulders apikey new|list|revoke`.

use crate::print_json;
use anyhow::{Context, Result};
use serde_json::json;
use shoulders_server::apikeys::{self, Revoke};
use shoulders_server::{AppState, Metering, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Arguments of `shoulders serve`.
#[derive(clap::Args)]
#[command(
    after_help = "Topology: one writer (`serve` without --read-only; it takes the writer lock, E_WRITER_LOCKED or E_LOCKED while another writer holds it) and any number of `serve --read-only` nodes on the same log (the same PostgreSQL database, or the same SQLite data directory). A read node needs log.key, log.pub and, for PostgreSQL, database.url in its data directory; it serves the API reads, proofs, checkpoints (signed with its copy of log.key), the explorer, /api/attribute (indexes built in its own data directory) and GET /v1/models, and refuses writes and metered calls with E_READ_ONLY (403). It lags the writer by at most --follow-interval-ms plus the time to fold the new records, and keeps serving what is committed while the writer is down."
)]
pub struct ServeArgs {
    /// Read the flags from a TOML file: each key is a flag's name in snake_case
    /// (`data_dir`, `max_body_bytes`, `upstream = ["MODEL_ID=URL", ...]`, `read_only = true`);
    /// a flag given here replaces its key. Examples: deploy/ in the repository.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The ledger's data directory (required, here or as `data_dir` in --config).
    #[arg(long, required = false, required_unless_present = "config")]
    pub data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Forward a model's gateway calls to an OpenAI-compatible upstream: `MODEL_ID=BASE_URL`
    /// (e.g. `alice/chat=http://127.0.0.1:9000/v1`). Repeatable.
    #[arg(long = "upstream", value_parser = parse_upstream)]
    pub upstreams: Vec<(String, String)>,
    /// `on`: every gateway call appends a usage receipt signed with `D/operator.key` before it
    /// is answered; `off`: no receipts; `auto`: on when `D/operator.key` exists.
    #[arg(long, default_value = "auto", value_parser = ["on", "off", "auto"])]
    pub metering: String,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = shoulders_server::DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Largest document `POST /api/contributions` takes, in bytes (413 `E_BODY_TOO_LARGE`
    /// beyond; its body may be this plus 2 MiB + 64 KiB for the record); at most 1 GiB.
    #[arg(long, default_value_t = shoulders_server::DEFAULT_MAX_CONTENT_BYTES as u64,
          value_parser = clap::value_parser!(u64).range(1..=shoulders_ledger::content::MAX_CONTENT_BYTES))]
    pub max_content_bytes: u64,
    /// Largest upstream answer the gateway reads, in bytes: the body is read as a stream and
    /// the call fails with 502 `E_UPSTREAM_TOO_LARGE` (nothing charged) once over; a relayed
    /// stream (`stream: true`) ends there with that error event, charging the text delivered;
    /// at most 1 GiB.
    #[arg(long, default_value_t = shoulders_server::DEFAULT_MAX_UPSTREAM_BODY_BYTES as u64,
          value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
    pub max_upstream_body_bytes: u64,
    /// Time one upstream call may take, from connecting to the last byte of its answer
    /// (502 `E_UPSTREAM` beyond; a relayed stream ends with `E_UPSTREAM_TIMEOUT`, charging the
    /// text delivered), in milliseconds.
    #[arg(long, default_value_t = shoulders_server::DEFAULT_UPSTREAM_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub upstream_timeout_ms: u64,
    /// Time a request may take before it is abandoned with `E_TIMEOUT`.
    #[arg(long, default_value_t = shoulders_server::DEFAULT_REQUEST_TIMEOUT_MS)]
    pub timeout_ms: u64,
    /// Refuse new records whose signer timestamp is further than this from the server's clock
    /// (`E_TIMESTAMP_OUTSIDE_WINDOW`); 0 turns the check off.
    #[arg(long, default_value_t = shoulders_server::DEFAULT_ADMISSION_WINDOW_MS)]
    pub admission_window_ms: u64,
    /// Requests per second each client IP may make (`E_RATE_LIMITED` beyond; bursts of twice
    /// that); 0 turns the limit off. Loopback clients are exempt unless --rate-limit-loopback.
    #[arg(long, default_value_t = shoulders_server::DEFAULT_RATE_LIMIT_PER_S)]
    pub rate_limit_per_s: u32,
    #[arg(long)]
    pub rate_limit_loopback: bool,
    /// `POST /api/attribute` calls each API key may make per second (`E_RATE_LIMITED` beyond;
    /// bursts of at least 5), loopback included; 0 turns the per-key limit off (benchmarks).
    #[arg(long, default_value_t = shoulders_server::ratelimit::DEFAULT_ATTRIBUTE_RATE_PER_S)]
    pub attribute_rate_per_s: u32,
    /// Serve reads only: open the log read-only (no writer lock, so any number of read nodes
    /// run next to the one writer), build the state from it, then follow the writer; writes
    /// and metered gateway calls are refused with `E_READ_ONLY` (403).
    #[arg(long, conflicts_with_all = ["metering", "upstreams"])]
    pub read_only: bool,
    /// With --read-only: how often to poll the log for records the writer committed, in
    /// milliseconds. A committed record is served after at most this plus the time to fold it.
    #[arg(long, default_value_t = shoulders_server::DEFAULT_FOLLOW_INTERVAL_MS,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000), requires = "read_only")]
    pub follow_interval_ms: u64,
    /// `on`: a writer node appends a segment to every indexed dataset's attribution index as
    /// new contributions commit (checked every 500 ms) and merges segments in the background,
    /// so they are attributable within seconds without `index build`; `off`: indexes change
    /// only with `shoulders index build|update|merge`.
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    pub index_follow: String,
    /// Time a client has to send a request's complete headers, from when the server starts
    /// waiting for them (the connection's start, or the end of the previous response on a
    /// keep-alive connection); the connection is closed after it (slowloris).
    #[arg(long, default_value_t = shoulders_server::conn::DEFAULT_HEADER_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub header_timeout_ms: u64,
    /// Close a connection on which no byte has moved for this long while no handler runs
    /// (e.g. a client that stopped reading its response).
    #[arg(long, default_value_t = shoulders_server::conn::DEFAULT_IDLE_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub idle_timeout_ms: u64,
    /// Most connections open at once; further clients wait in the accept queue until one
    /// closes. Keep it below the process's file descriptor limit (`ulimit -n`).
    #[arg(long, default_value_t = shoulders_server::conn::DEFAULT_MAX_CONNECTIONS as u64,
          value_parser = clap::value_parser!(u64).range(1..=shoulders_server::conn::MAX_CONNECTIONS_LIMIT as u64))]
    pub max_connections: u64,
    /// Records each signer key may append over HTTP per --quota-window-ms
    /// (`429 E_QUOTA_EXCEEDED` with Retry-After beyond); 0 turns write quotas off.
    #[arg(long, default_value_t = shoulders_server::quota::DEFAULT_QUOTA_RECORDS)]
    pub quota_records: u64,
    /// Bytes each signer key may append per window: its records plus its contributions'
    /// documents.
    #[arg(long, default_value_t = shoulders_server::quota::DEFAULT_QUOTA_BYTES,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub quota_bytes: u64,
    /// Length of a write-quota window, in milliseconds.
    #[arg(long, default_value_t = shoulders_server::quota::DEFAULT_QUOTA_WINDOW_MS,
          value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub quota_window_ms: u64,
    /// Byte budget of one list response: a page ends early, with its cursor, once its items
    /// reach it (it always holds at least one item).
    #[arg(long, default_value_t = shoulders_server::api::MAX_PAGE_BYTES as u64,
          value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
    pub max_page_bytes: u64,
    /// Log lines on stderr: `text` for people, `json` for one JSON object per line (each
    /// request's line carries its `request_id`, as returned in `x-request-id`).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Load this dataset's attribution index at start-up (repeatable; at most 64): `/readyz`
    /// answers 503 `E_NOT_READY` until each is loaded, so a load balancer sends no attribution
    /// to a node that would first have to read its index.
    #[arg(long = "preload-index", value_name = "DATASET_ID")]
    pub preload_indexes: Vec<String>,
    /// Have the log's checkpoints cosigned by witnesses (C2SP tlog-witness): a file of
    /// `witness <vkey> <url>` lines and `quorum <k>`. The writer sends every new checkpoint to
    /// each witness and serves at `GET /log/checkpoint` the latest one a quorum cosigned (503
    /// `E_NOT_COSIGNED` before the first); `GET /api/witnesses` publishes the policy.
    #[arg(long, value_name = "FILE")]
    pub witness_policy: Option<PathBuf>,
    /// Keep every metered output of MODEL_ID in the content store (under the receipt's
    /// `output_hash`, before the receipt is acknowledged), so its receipts can be audited
    /// without the payer's copy. Repeatable. Outputs may hold personal data: see SECURITY.md.
    #[arg(
        long = "keep-outputs",
        value_name = "MODEL_ID",
        conflicts_with = "read_only"
    )]
    pub keep_outputs: Vec<String>,
}

fn parse_upstream(s: &str) -> Result<(String, String), String> {
    let (model, url) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not MODEL_ID=URL"))?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("{url:?} is not an http(s) URL"));
    }
    Ok((model.to_string(), url.to_string()))
}

/// Serve until SIGINT/SIGTERM, then finish in-flight requests and close the ledger.
pub fn serve(args: ServeArgs) -> Result<()> {
    init_logging(&args.log_format);
    serve_unlogged(args)
}

/// [`serve`] without request log lines: `shoulders demo`, whose terminal output is its
/// walkthrough (and whose stderr a caller may stop reading once it is listening).
pub fn serve_unlogged(args: ServeArgs) -> Result<()> {
    let mut config = ServerConfig::new(&args.data_dir);
    config.database = crate::database_override();
    config.ledger.admission_window_ms =
        (args.admission_window_ms > 0).then_some(args.admission_window_ms);
    config.rate_limit =
        (args.rate_limit_per_s > 0).then_some(shoulders_server::ratelimit::RateLimit {
            per_second: args.rate_limit_per_s,
            burst: args.rate_limit_per_s.saturating_mul(2),
            limit_loopback: args.rate_limit_loopback,
        });
    config.attribute_rate_limit =
        (args.attribute_rate_per_s > 0).then_some(shoulders_server::ratelimit::RateLimit {
            per_second: args.attribute_rate_per_s,
            burst: args
                .attribute_rate_per_s
                .max(shoulders_server::ratelimit::DEFAULT_ATTRIBUTE_BURST),
            limit_loopback: true,
        });
    config.upstreams = args.upstreams.into_iter().collect();
    config.max_body_bytes = args.max_body_bytes;
    config.max_content_bytes = usize::try_from(args.max_content_bytes)?;
    config.request_timeout_ms = args.timeout_ms;
    config.max_upstream_body_bytes = usize::try_from(args.max_upstream_body_bytes)?;
    config.upstream_timeout_ms = args.upstream_timeout_ms;
    config.read_only = args.read_only;
    config.follow_interval_ms = args.follow_interval_ms;
    config.index_follow = args.index_follow == "on";
    config.connections = shoulders_server::conn::ConnLimits {
        header_timeout_ms: args.header_timeout_ms,
        idle_timeout_ms: args.idle_timeout_ms,
        max_connections: usize::try_from(args.max_connections)?,
    };
    config.write_quota = (args.quota_records > 0).then_some(shoulders_server::quota::WriteQuota {
        records: args.quota_records,
        bytes: args.quota_bytes,
        window_ms: args.quota_window_ms,
    });
    config.max_page_bytes = usize::try_from(args.max_page_bytes)?;
    config.preload_indexes = args.preload_indexes;
    config.keep_outputs = args.keep_outputs.into_iter().collect();
    config.witness_policy = args
        .witness_policy
        .as_deref()
        .map(crate::witness_cmd::read_policy)
        .transpose()?;
    config.metering = match args.metering.as_str() {
        "on" => Metering::On,
        "off" => Metering::Off,
        _ if args
            .data_dir
            .join(shoulders_server::OPERATOR_KEY_FILE)
            .exists() =>
        {
            Metering::On
        }
        _ => Metering::Off,
    };
    // Opened before the async runtime starts: the PostgreSQL client is blocking and runs a
    // runtime of its own, which cannot start on a runtime's thread.
    let state = AppState::open(config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let served = runtime.block_on({
        let state = Arc::clone(&state);
        async move {
            // Before the node can answer anyone: a SIGTERM from then on is a clean stop.
            let stop = shoulders_server::shutdown_signal();
            let listener = tokio::net::TcpListener::bind(&args.listen)
                .await
                .with_context(|| format!("listen on {}", args.listen))?;
            let addr = listener.local_addr()?;
            print_json(&json!({
                "listening": format!("http://{addr}"),
                "explorer": format!("http://{addr}/"),
                "metering": if state.config.metering == Metering::On { "on" } else { "off" },
                "read_only": state.is_read_only(),
                "openapi": format!("http://{addr}/openapi.json"),
            }))?;
            shoulders_server::serve(listener, state, stop).await?;
            anyhow::Ok(())
        }
    });
    // Shutting the runtime down waits for its blocking tasks, so this is the last reference:
    // the ledger closes here, off the runtime, and its writer commits anything still queued.
    drop(runtime);
    drop(state);
    served?;
    eprintln!("shoulders serve: stopped cleanly");
    Ok(())
}

/// Route `tracing` events (one per answered request, inside its `request` span) to stderr as
/// text or JSON lines, at level INFO and above.
fn init_logging(format: &str) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing_subscriber::filter::LevelFilter::INFO);
    // `try_init`: a second subscriber (never set by this binary) is not worth failing over.
    let _ = if format == "json" {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.with_ansi(false).try_init()
    };
}

/// Limits for `apikey new`, as given on the command line.
pub struct NewKeyLimits {
    pub budget_micros: Option<String>,
    pub budget_currency: Option<String>,
    pub budget_period: Option<String>,
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
}

/// The key tables of the ledger in `data_dir` (an old `api-keys.json` is imported first).
fn key_store(data_dir: &Path) -> Result<Box<dyn apikeys::KeyStore>> {
    let dir = crate::data_dir(data_dir);
    let location = dir.store_location()?;
    Ok(apikeys::open_store(data_dir, Some(&location), true)?)
}

/// Issue a gateway API key paying as `actor`; prints the token (shown once).
pub fn apikey_new(data_dir: PathBuf, actor: String, limits: NewKeyLimits) -> Result<()> {
    let period = limits
        .budget_period
        .as_deref()
        .map(apikeys::BudgetPeriod::parse)
        .transpose()?;
    let limits = shoulders_server::admin::limits_from(
        limits.budget_micros.as_deref(),
        limits.budget_currency.as_deref(),
        period,
        limits.requests_per_minute,
        limits.tokens_per_minute,
    )?;
    let state = shoulders_ledger::Reader::open(&crate::data_dir(&data_dir))?.state()?;
    if state.actor(&actor).is_none() {
        return Err(shoulders_ledger::LedgerError::NotFound(format!(
            "no actor {actor:?} in this ledger; register it first"
        ))
        .into());
    }
    let mut store = key_store(&data_dir)?;
    let (token, key) = apikeys::issue(
        &mut *store,
        &actor,
        &limits,
        crate::now_ms(),
        &mut rand_core::OsRng,
    )?;
    let mut out = serde_json::to_value(&key)?;
    out["api_key"] = json!(token);
    print_json(&out)
}

/// The keys (ids, payers and limits; the tokens themselves are not stored), by pages.
pub fn apikey_list(
    data_dir: PathBuf,
    actor: Option<String>,
    after: Option<String>,
    limit: usize,
) -> Result<()> {
    if limit == 0 || limit > apikeys::MAX_LIST_LIMIT {
        return Err(apikeys::ApiKeyError::BadLimits(format!(
            "--limit {limit} must be 1-{}",
            apikeys::MAX_LIST_LIMIT
        ))
        .into());
    }
    let store = key_store(&data_dir)?;
    let keys = apikeys::list(&*store, actor.as_deref(), after.as_deref(), limit)?;
    let next = (keys.len() == limit)
        .then(|| keys.last().map(|k| k.key_id.clone()))
        .flatten();
    print_json(&json!({ "keys": keys, "next": next }))
}

/// Revoke keys in the store; a running server refuses them from its next request on.
pub fn apikey_revoke(data_dir: PathBuf, key: Option<String>, actor: Option<String>) -> Result<()> {
    // clap requires one of the two.
    let which = match (key, actor) {
        (Some(k), _) => Revoke::Key(k),
        (None, a) => Revoke::Actor(a.unwrap_or_default()),
    };
    let mut store = key_store(&data_dir)?;
    let revoked = apikeys::revoke(&mut *store, &which, crate::now_ms())?;
    print_json(&json!({ "revoked": revoked }))
}

/// Make a new admin token for `/api/admin/keys` (the previous one stops working at once).
pub fn apikey_admin_token(data_dir: PathBuf) -> Result<()> {
    let mut store = key_store(&data_dir)?;
    let token = apikeys::set_admin_token(&mut *store, crate::now_ms(), &mut rand_core::OsRng)?;
    print_json(&json!({ "admin_token": token }))
}
