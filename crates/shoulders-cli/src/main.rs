//! `shoulders`: the command line over the ledger engine.
//!
//! Output for scripts is JSON on stdout; errors go to stderr as `error[CODE]: message` with
//! exit status 1 (2 for usage errors, from clap).

mod attrib_cmd;
mod audit_cmd;
mod demo;
mod export_cmd;
mod license_cmd;
mod lineage_cmd;
mod model_cmd;
mod money_cmd;
mod serve_cmd;
mod serve_config;
mod tiles_cmd;
mod training_args;
mod watch_cmd;
mod witness_cmd;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use rand_core::{OsRng, RngCore};
use shoulders_ledger::{
    init_with, verify_content, DataDir, Ledger, LedgerError, OperatorInit, Reader, StoreLocation,
    VerifyFailure,
};
use shoulders_record::{sign_record, ActorKey, Body, Kind, RecordError};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Largest body file `submit` reads, in bytes (the record limit bounds it anyway).
const MAX_BODY_FILE_BYTES: u64 = shoulders_record::MAX_RECORD_BYTES as u64;
/// Time `verify --tiles` allows one tile request over HTTP.
const VERIFY_TILES_TIMEOUT_MS: u64 = 30_000;
/// Largest export `verify` reads into memory, in bytes.
const MAX_EXPORT_FILE_BYTES: u64 = 16 * 1024 * 1024 * 1024;

#[derive(Parser)]
#[command(
    name = "shoulders",
    version,
    about = "A public, tamper-evident ledger for AI models"
)]
struct Cli {
    /// Where the log lives, overriding what the data directory records:
    /// postgres://USER@HOST:PORT/DB or sqlite:PATH. `init` records it in the data directory, so
    /// later commands need it only to point elsewhere (e.g. after `migrate`).
    #[arg(
        long,
        global = true,
        env = "SHOULDERS_DATABASE_URL",
        hide_env_values = true
    )]
    database: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// The `--database` override, set once at start-up.
static DATABASE: std::sync::OnceLock<StoreLocation> = std::sync::OnceLock::new();

/// The `--database` override, if given.
pub(crate) fn database_override() -> Option<StoreLocation> {
    DATABASE.get().cloned()
}

/// The data directory at `path`, with the `--database` override applied.
pub(crate) fn data_dir(path: impl AsRef<Path>) -> DataDir {
    let dir = DataDir::new(path.as_ref());
    match DATABASE.get() {
        Some(location) => dir.with_database(location.clone()),
        None => dir,
    }
}

#[derive(Subcommand)]
enum Command {
    /// Create a new ledger and log key; prints the verifier key.
    Init {
        #[arg(long)]
        data_dir: PathBuf,
        /// The log's name: first line of every checkpoint and the key name, and signed into
        /// every record (`log`), so it must be unique to this ledger. Default
        /// `shoulders.local/log-<16 random hex digits>`.
        #[arg(long)]
        origin: Option<String>,
        /// Register an operator actor with this handle (key in D/operator.key) and configure it
        /// in the log; deposits and usage receipts need one.
        #[arg(long)]
        operator: Option<String>,
        /// Share of every usage charge paid to @protocol, in basis points (with --operator).
        #[arg(long, default_value_t = 0, requires = "operator")]
        protocol_fee_bps: u32,
    },
    /// Credit an actor's account (signed with the operator key).
    Deposit(money_cmd::DepositArgs),
    /// Move money out of your own account to a payout address.
    Withdraw(money_cmd::WithdrawArgs),
    /// Sign and settle a file of usage receipts (JSON lines) in batches, idempotently.
    Settle(money_cmd::SettleArgs),
    /// Every credit and debit of an actor with its cause, totals, and optional proofs.
    Statement(money_cmd::StatementArgs),
    /// Every balance, and the check that they sum to deposits minus withdrawals.
    Accounts(money_cmd::AccountsArgs),
    /// Monitor a server's log: verify each checkpoint and its consistency with the last one;
    /// exit 1 on a bad signature, a rollback or a fork.
    Watch(watch_cmd::WatchArgs),
    /// Audit a usage receipt: re-derive its attribution from the output and the contributions.
    Audit {
        #[command(subcommand)]
        command: audit_cmd::AuditCommand,
    },
    /// Run a C2SP tlog-witness: it cosigns a log's checkpoints only while the log only grows.
    Witness {
        #[command(subcommand)]
        command: witness_cmd::WitnessCommand,
    },
    /// Actor signing keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Sign a record body with an actor key and append it; prints index and leaf hash as JSON.
    Submit {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        key: PathBuf,
        /// Record kind, e.g. actor.register, dataset.create, data.contribute, model.register.
        #[arg(long)]
        kind: String,
        /// JSON file with the body.
        #[arg(long)]
        body: PathBuf,
        /// Client id (idempotency key); random when omitted.
        #[arg(long)]
        id: Option<String>,
        /// Signer timestamp in ms since the epoch; now when omitted.
        #[arg(long)]
        ts_ms: Option<u64>,
    },
    /// Sign a record body without appending it: prints the record's exact bytes (canonical
    /// JSON), e.g. to POST to a server's /api/records or to sign offline.
    Sign {
        #[arg(long)]
        key: PathBuf,
        /// Origin of the ledger the record is for (the first line of its checkpoint, e.g. from
        /// `GET /api/checkpoint`); the signature covers it, so no other ledger accepts the
        /// record (`E_WRONG_LEDGER`).
        #[arg(
            long,
            required_unless_present = "data_dir",
            conflicts_with = "data_dir"
        )]
        log: Option<String>,
        /// Or read the origin from this ledger's data directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        kind: String,
        /// JSON file with the body.
        #[arg(long)]
        body: PathBuf,
        /// Client id (idempotency key); random when omitted.
        #[arg(long)]
        id: Option<String>,
        /// Signer timestamp in ms since the epoch; now when omitted.
        #[arg(long)]
        ts_ms: Option<u64>,
    },
    /// Store a UTF-8 document (content-addressed, durable) and append its `data.contribute`
    /// record to DATASET; prints the record's index, leaf hash and content hash as JSON.
    Contribute {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        dataset: String,
        /// The document (UTF-8 text).
        file: PathBuf,
        #[arg(long)]
        title: Option<String>,
        /// Reserve text and data mining (W3C TDMRep `tdm-reservation`): no model may be
        /// registered as trained on a dataset holding this contribution (`E_TDM_RESERVED`).
        #[arg(long)]
        tdm_reservation: bool,
        /// Client id (idempotency key); random when omitted.
        #[arg(long)]
        id: Option<String>,
        /// Signer timestamp in ms since the epoch; now when omitted.
        #[arg(long)]
        ts_ms: Option<u64>,
    },
    /// Print the current signed checkpoint (byte-exact C2SP signed note).
    Checkpoint {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Inclusion and consistency proofs as JSON.
    Proof {
        #[command(subcommand)]
        command: ProofCommand,
    },
    /// Write the log as a static C2SP tlog-tiles directory (`OUT/checkpoint`, `OUT/tile/...`),
    /// the same files `serve` answers under `/log/`. Run again to add only the new tiles.
    Publish {
        #[arg(long)]
        data_dir: PathBuf,
        /// The directory to write (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Publish the tree of the witness-cosigned checkpoint that `serve --witness-policy`
        /// keeps in `D/cosigned-checkpoint`, with its cosignatures, instead of the whole
        /// ledger under a log-signed checkpoint: a static mirror of a witnessed log.
        #[arg(long)]
        cosigned: bool,
    },
    /// Write the whole log (every record's exact bytes) and its checkpoint to a file.
    Export {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Replay an export (or a log published as tiles) from scratch and check it against the
    /// log's verifier key.
    Verify {
        /// Export file written by `shoulders export`.
        #[arg(required_unless_present = "tiles", conflicts_with = "tiles")]
        file: Option<PathBuf>,
        /// Read the log from C2SP tiles instead: a directory written by `shoulders publish`, or
        /// a server's `http(s)://HOST/log/` prefix. Every tile is checked against the signed
        /// checkpoint.
        #[arg(long, value_name = "URL_OR_DIR")]
        tiles: Option<String>,
        /// Verifier key `<name>+<hash>+<base64>`, or a path to a file holding it.
        #[arg(long)]
        key: String,
        /// Also check that every contribution's content is in DIR (a data directory, its
        /// `content/` or its `content/sha256/`), hashing to its hash, with the record's sizes.
        #[arg(long, value_name = "DIR")]
        content: Option<PathBuf>,
        /// Also print how long verification took and receipts verified per second.
        #[arg(long)]
        timing: bool,
        /// Demand witness cosignatures (a file of `witness <vkey> [url]` lines and
        /// `quorum <k>`) on the checkpoint given with --checkpoint, and that the export holds
        /// exactly that tree.
        #[arg(long, value_name = "FILE", requires = "checkpoint")]
        witness_policy: Option<PathBuf>,
        /// A cosigned checkpoint note (e.g. saved from the server's GET /log/checkpoint).
        #[arg(long, value_name = "FILE", requires = "witness_policy")]
        checkpoint: Option<PathBuf>,
    },
    /// Print current derived state as JSON.
    Show {
        #[arg(long)]
        data_dir: PathBuf,
        what: ShowWhat,
        id: String,
    },
    /// A model's provenance: ancestors, descendants, and the datasets (with contributors) of
    /// its whole ancestry, as JSON, Graphviz DOT or a Mermaid flowchart.
    Lineage {
        #[arg(long)]
        data_dir: PathBuf,
        model_id: String,
        #[arg(long, default_value = "json", value_parser = lineage_cmd::FORMATS)]
        format: String,
    },
    /// Attribution indexes over a dataset's contributed documents.
    Index {
        #[command(subcommand)]
        command: IndexCommand,
    },
    /// Which contributed documents a text draws on: maximal matching spans, the contributions
    /// and contributors they occur in, and contributor shares in ppm (JSON).
    Attribute(attrib_cmd::AttributeArgs),
    /// Licence presets and use checks.
    License {
        #[command(subcommand)]
        command: LicenseCommand,
    },
    /// Register a model directory, or check a directory against a registered model.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Copy a ledger's log to another store (e.g. SQLite to PostgreSQL), in order, and check
    /// that the Merkle root matches; the target must be empty. Prints a JSON report. Stop the
    /// writer first, then point the data directory at the target with `--database`.
    Migrate {
        /// Source: sqlite:PATH (e.g. sqlite:D/ledger.sqlite) or postgres://...
        #[arg(long)]
        from: String,
        /// Target: postgres://... or sqlite:PATH
        #[arg(long)]
        to: String,
    },
    /// Serve the REST API (/api), the OpenAI-compatible gateway (/v1), the web explorer and
    /// /openapi.json: as the ledger's writer, or with --read-only as a read node following it.
    Serve(serve_cmd::ServeArgs),
    /// Gateway API keys (each names the actor that pays for its calls).
    Apikey {
        #[command(subcommand)]
        command: ApikeyCommand,
    },
    /// Build a demo ledger (actors, datasets, contributions, a base model, fine-tunes, metered
    /// calls), verify it, then serve the web explorer, API and gateway on it.
    Demo {
        /// Where to create the ledger; a new temporary directory when omitted.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Address to serve on (port 0 picks a free port; the URL is printed).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Build and verify the ledger, then exit without serving (tests, CI).
        #[arg(long)]
        no_serve: bool,
    },
}

#[derive(Subcommand)]
enum ApikeyCommand {
    /// Issue a new key; prints it once (only its SHA-256 is stored, in the ledger's store).
    /// Takes effect at once, also on a running server.
    New {
        #[arg(long)]
        data_dir: PathBuf,
        /// The actor handle that pays for calls made with this key.
        #[arg(long)]
        actor: String,
        /// Spend allowed per period, in micro-units (needs --budget-period); over it the
        /// gateway answers 402 E_KEY_BUDGET_EXCEEDED before any model runs.
        #[arg(long)]
        budget_micros: Option<String>,
        /// Currency of the budget.
        #[arg(long, requires = "budget_micros")]
        budget_currency: Option<String>,
        /// `day` or `month` (UTC calendar periods; the spend resets at their boundary).
        #[arg(long, requires = "budget_micros")]
        budget_period: Option<String>,
        /// Requests per minute (over it: 429 E_KEY_RATE_LIMITED with Retry-After).
        #[arg(long)]
        requests_per_minute: Option<u64>,
        /// Tokens (prompt bytes plus max_tokens) per minute (over it: 429 E_KEY_RATE_LIMITED).
        #[arg(long)]
        tokens_per_minute: Option<u64>,
    },
    /// List the keys, revoked ones included: id (the first 16 hex digits of the token's
    /// SHA-256), actor, created_ms, revoked_ms and limits; pages of --limit after --after.
    List {
        #[arg(long)]
        data_dir: PathBuf,
        /// Only this actor's keys.
        #[arg(long)]
        actor: Option<String>,
        /// Cursor: the `next` of the previous page.
        #[arg(long)]
        after: Option<String>,
        #[arg(long, default_value_t = shoulders_server::apikeys::DEFAULT_LIST_LIMIT)]
        limit: usize,
    },
    /// Revoke keys: a running server refuses them (401) from its next request on.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["key", "actor"])))]
    Revoke {
        #[arg(long)]
        data_dir: PathBuf,
        /// The token itself, or its key id (at least 8 leading hex digits, as `apikey list`
        /// shows; E_API_KEY_AMBIGUOUS if it matches several keys).
        key: Option<String>,
        /// Revoke every key paying as this actor instead.
        #[arg(long)]
        actor: Option<String>,
    },
    /// Make a new admin token for the /api/admin/keys routes (replacing the previous one at
    /// once); prints it once (only its SHA-256 is stored).
    AdminToken {
        #[arg(long)]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Write a new actor signing key (file mode 0600); prints the public key.
    New {
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum IndexCommand {
    /// (Re)build the suffix-array index of DATASET_ID from its stored contributions, as one
    /// segment; the new index replaces the old one atomically.
    Build {
        #[arg(long)]
        data_dir: PathBuf,
        dataset_id: String,
    },
    /// Check every byte of DATASET_ID's index (document offsets, every suffix-array pointer,
    /// the copy map and offset map): what opening an index no longer does. Prints a JSON
    /// report; a damaged index fails with E_INDEX_CORRUPT (rebuild it with `index build`).
    Verify {
        #[arg(long)]
        data_dir: PathBuf,
        dataset_id: String,
    },
    /// Make the contributions since the last build or update attributable: one new segment
    /// over them alone (no rebuild), then merge segments as the merge policy says.
    Update {
        #[arg(long)]
        data_dir: PathBuf,
        dataset_id: String,
    },
    /// Merge every segment of DATASET_ID's index into one.
    Merge {
        #[arg(long)]
        data_dir: PathBuf,
        dataset_id: String,
    },
    /// Index a directory of UTF-8 files (one document each, ordered by path) without a ledger,
    /// for cross-checks against infini-gram and benchmarks.
    BuildFiles {
        #[arg(long)]
        out: PathBuf,
        /// Build an attribution index (normalised text, originals, copy map) instead of the
        /// plain infini-gram layout.
        #[arg(long)]
        attribution: bool,
        docs_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum LicenseCommand {
    /// May MODEL_ID be used for USE? Prints the reasons, obligations and price; exits 1 if not.
    Check {
        #[arg(long)]
        data_dir: PathBuf,
        model_id: String,
        /// Use category, e.g. commercial, research, chat.
        #[arg(long = "use")]
        use_tag: String,
        /// Territory code, checked when the licences restrict territories.
        #[arg(long)]
        territory: Option<String>,
        /// Check at this time (ms since the epoch) instead of now.
        #[arg(long)]
        at_ms: Option<u64>,
        /// The most stacked upstream royalty you accept, in basis points (0-10000): the use is
        /// denied when the model's royalty stack totals more.
        #[arg(long, value_parser = clap::value_parser!(u32).range(0..=10_000))]
        max_royalty_bps: Option<u32>,
    },
    /// List the licence presets and their SPDX ids.
    Presets,
    /// Print a license.define body for a preset (edit prices, then `shoulders submit` it).
    Preset {
        name: String,
        /// The licence id to define, `<your-handle>/<name>`.
        #[arg(long)]
        license_id: String,
    },
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Hash a Hugging Face-style model directory (per tensor for *.safetensors) and register it.
    Import(Box<model_cmd::ImportArgs>),
    /// Print a model's lineage, datasets, licence and hashes as a Hugging Face model-card
    /// header, an SPDX 3.0.1 document (AI and Dataset profiles) or a CycloneDX 1.6 ML-BOM.
    Export {
        #[arg(long)]
        data_dir: PathBuf,
        model_id: String,
        #[arg(long, value_parser = export_cmd::FORMATS)]
        format: String,
    },
    /// Re-hash DIR and report exactly which files and tensors differ from the registered MODEL_ID.
    Check {
        #[arg(long)]
        data_dir: PathBuf,
        model_id: String,
        dir: PathBuf,
    },
    /// What CHILD changed from PARENT, tensor by tensor (identical, changed, added, removed),
    /// with totals per layer and a one-line summary, from the registered hashes; JSON.
    Diff {
        #[arg(long)]
        data_dir: PathBuf,
        parent: String,
        child: String,
    },
}

#[derive(Subcommand)]
enum ProofCommand {
    /// Prove record INDEX is in the tree of SIZE (default: current size).
    Inclusion {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        index: u64,
        #[arg(long)]
        size: Option<u64>,
    },
    /// Prove the tree of size OLD is a prefix of the tree of size NEW (default: current size).
    Consistency {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        old: u64,
        #[arg(long)]
        new: Option<u64>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ShowWhat {
    Actor,
    Dataset,
    Model,
    /// By log index of its `data.contribute` record.
    Contribution,
}

impl ShowWhat {
    fn name(self) -> &'static str {
        match self {
            ShowWhat::Actor => "actor",
            ShowWhat::Dataset => "dataset",
            ShowWhat::Model => "model",
            ShowWhat::Contribution => "contribution",
        }
    }
}

fn main() {
    let cli = match serve_config::parse_cli::<Cli>(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(serve_config::ParseFailure::Clap(e)) => e.exit(),
        Err(serve_config::ParseFailure::Config(e)) => {
            eprintln!("error[{}]: {e}", e.code());
            std::process::exit(1);
        }
    };
    if let Err(err) = run(cli) {
        eprintln!("error[{}]: {err:#}", error_code(&err));
        std::process::exit(1);
    }
}

/// The stable code of an error, found by walking the chain for a typed library error.
fn error_code(err: &anyhow::Error) -> &'static str {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<CliError>() {
            return e.code;
        }
        if let Some(code) = audit_cmd::code_of(cause) {
            return code;
        }
        if let Some(e) = cause.downcast_ref::<shoulders_artifacts::ArtifactError>() {
            return e.code();
        }
        if let Some(e) = cause.downcast_ref::<shoulders_attrib::index::IndexError>() {
            return e.code();
        }
        if let Some(e) = cause.downcast_ref::<shoulders_server::StartError>() {
            return e.code();
        }
        if let Some(e) = cause.downcast_ref::<shoulders_server::apikeys::ApiKeyError>() {
            return e.code();
        }
        if let Some(e) = cause.downcast_ref::<LedgerError>() {
            return e.code();
        }
        if let Some(e) = cause.downcast_ref::<RecordError>() {
            return e.code();
        }
        if let Some(e) = cause.downcast_ref::<VerifyFailure>() {
            return e.code;
        }
        if let Some(e) = cause.downcast_ref::<shoulders_log::LogError>() {
            return e.code();
        }
        if let Some(e) = cause.downcast_ref::<shoulders_witness::WitnessError>() {
            return e.code();
        }
        if cause.downcast_ref::<std::io::Error>().is_some() {
            return "E_IO";
        }
    }
    "E_USAGE"
}

pub(crate) fn print_json(value: &impl serde::Serialize) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `<prefix>-<16 random hex digits>`: an origin no other ledger has, so a record signed for
/// one ledger never verifies on another (records sign their ledger's origin).
pub(crate) fn unique_origin(prefix: &str) -> String {
    let mut bytes = [0u8; 8];
    OsRng.fill_bytes(&mut bytes);
    format!("{prefix}-{}", hex::encode(bytes))
}

pub(crate) fn random_id() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// An error the CLI itself raises, with its stable code.
#[derive(Debug)]
pub(crate) struct CliError {
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// Read a whole file of at most `limit` bytes: a regular file only (not a symbolic link,
/// device or FIFO: `E_NOT_A_REGULAR_FILE`), its size checked on the open file before anything
/// is allocated, a larger one failing with `too_large_code` (see
/// [`shoulders_artifacts::files`]).
pub(crate) fn read_limited(
    path: &Path,
    limit: u64,
    what: &str,
    too_large_code: &'static str,
) -> Result<Vec<u8>> {
    shoulders_artifacts::files::read_regular_file(path, limit)
        .map_err(|e| file_error(e, what, too_large_code).into())
}

/// [`shoulders_artifacts::files::open_regular`] for a streamed input, with the CLI's codes.
pub(crate) fn open_limited(
    path: &Path,
    limit: u64,
    what: &str,
    too_large_code: &'static str,
) -> Result<std::fs::File> {
    shoulders_artifacts::files::open_regular(path, limit)
        .map(|(f, _)| f)
        .map_err(|e| file_error(e, what, too_large_code).into())
}

fn file_error(
    e: shoulders_artifacts::files::FileError,
    what: &str,
    too_large_code: &'static str,
) -> CliError {
    use shoulders_artifacts::files::FileError;
    let code = match &e {
        FileError::TooLarge { .. } => too_large_code,
        other => other.code(),
    };
    CliError {
        code,
        message: format!("{what}: {e}"),
    }
}

/// A key given as a file (when `key` names an existing path) or inline: the file is read as
/// [`read_limited`] (at most [`MAX_KEY_FILE_BYTES`]).
pub(crate) fn key_text(key: &str) -> Result<String> {
    let path = Path::new(key);
    if std::fs::symlink_metadata(path).is_ok() {
        let bytes = read_limited(path, MAX_KEY_FILE_BYTES, "key file", "E_KEY_FILE")?;
        Ok(String::from_utf8(bytes)
            .map_err(|_| CliError {
                code: "E_KEY_FILE",
                message: format!("key file {key} is not UTF-8"),
            })?
            .trim()
            .to_string())
    } else {
        Ok(key.trim().to_string())
    }
}

/// Largest key file read (a public or private key in its text form is under 200 bytes).
pub(crate) const MAX_KEY_FILE_BYTES: u64 = 4096;

pub(crate) fn load_key(path: &Path) -> Result<ActorKey> {
    let text = String::from_utf8(read_limited(
        path,
        MAX_KEY_FILE_BYTES,
        "key file",
        "E_KEY_FILE",
    )?)
    .map_err(|_| LedgerError::KeyFile(format!("{} is not UTF-8", path.display())))?;
    ActorKey::from_file_text(&text)
        .map_err(|e| LedgerError::KeyFile(format!("{}: {e}", path.display())).into())
}

/// Sign the body in file `body` as a record of `kind` with the key in file `key`, for the
/// ledger whose origin is `log`.
fn sign_body(
    log: &str,
    key: &Path,
    kind: &str,
    body: &Path,
    id: Option<String>,
    ts_ms: Option<u64>,
) -> Result<shoulders_record::SignedRecord> {
    let key = load_key(key)?;
    let kind = Kind::parse(kind)?;
    let body_bytes = read_limited(body, MAX_BODY_FILE_BYTES, "body file", "E_RECORD_TOO_LARGE")?;
    let value = shoulders_record::parse_integer_json(&body_bytes)?;
    let body = Body::from_value(kind, value)?;
    let id = id.unwrap_or_else(random_id);
    Ok(sign_record(
        &key,
        log,
        &id,
        ts_ms.unwrap_or_else(now_ms),
        body,
    )?)
}

fn run(cli: Cli) -> Result<()> {
    if let Some(database) = &cli.database {
        let location = StoreLocation::parse(database).map_err(LedgerError::from)?;
        DATABASE
            .set(location)
            .expect("the database override is set once");
    }
    match cli.command {
        Command::Init {
            data_dir,
            origin,
            operator,
            protocol_fee_bps,
        } => {
            let operator = operator.map(|handle| OperatorInit {
                name: format!("{handle} (ledger operator)"),
                handle,
                protocol_fee_bps,
                ts_ms: now_ms(),
            });
            let origin = origin.unwrap_or_else(|| unique_origin("shoulders.local/log"));
            let vkey = init_with(
                &crate::data_dir(&data_dir),
                &origin,
                operator.as_ref(),
                &mut OsRng,
            )?;
            println!("{vkey}");
        }
        Command::Deposit(a) => money_cmd::deposit(a)?,
        Command::Withdraw(a) => money_cmd::withdraw(a)?,
        Command::Settle(a) => money_cmd::settle(a)?,
        Command::Statement(a) => money_cmd::statement(a)?,
        Command::Accounts(a) => money_cmd::accounts(a)?,
        Command::Watch(a) => watch_cmd::run(a)?,
        Command::Audit { command } => audit_cmd::run(command)?,
        Command::Witness { command } => witness_cmd::run(command)?,
        Command::Key {
            command: KeyCommand::New { out },
        } => {
            let key = ActorKey::generate(&mut OsRng);
            shoulders_ledger::write_new_file(&out, key.to_file_text().as_bytes(), 0o600)?;
            print_json(&serde_json::json!({ "public_key": key.public(), "file": out }))?;
        }
        Command::Submit {
            data_dir,
            key,
            kind,
            body,
            id,
            ts_ms,
        } => {
            let ledger = Ledger::open(&crate::data_dir(&data_dir))?;
            let record = sign_body(ledger.origin(), &key, &kind, &body, id, ts_ms)?;
            let appended = ledger.submit(record.bytes().to_vec())?;
            print_json(&appended)?;
        }
        Command::Sign {
            key,
            log,
            data_dir,
            kind,
            body,
            id,
            ts_ms,
        } => {
            let log = match (log, data_dir) {
                (Some(log), _) => log,
                (None, Some(dir)) => Reader::open(&crate::data_dir(&dir))?.origin().to_string(),
                (None, None) => unreachable!("clap requires --log or --data-dir"),
            };
            let record = sign_body(&log, &key, &kind, &body, id, ts_ms)?;
            std::io::stdout().write_all(record.bytes())?;
        }
        Command::Contribute {
            data_dir,
            key,
            dataset,
            file,
            title,
            tdm_reservation,
            id,
            ts_ms,
        } => {
            let key = load_key(&key)?;
            let bytes = read_limited(
                &file,
                shoulders_ledger::content::MAX_CONTENT_BYTES,
                "document",
                "E_CONTENT_TOO_LARGE",
            )?;
            if bytes.is_empty() {
                return Err(CliError {
                    code: "E_FIELD_INVALID",
                    message: format!("{} is empty", file.display()),
                }
                .into());
            }
            if std::str::from_utf8(&bytes).is_err() {
                return Err(CliError {
                    code: "E_CONTENT_NOT_UTF8",
                    message: format!(
                        "{} is not UTF-8 text; contributions are indexed as UTF-8 bytes",
                        file.display()
                    ),
                }
                .into());
            }
            let size = bytes.len() as u64;
            let mut body = serde_json::json!({
                "dataset_id": dataset, "content_hash": shoulders_ledger::content_ref(&bytes),
                "byte_size": size, "token_count": shoulders_ledger::content::token_count(size),
                "media_type": "text/plain"
            });
            if tdm_reservation {
                body["tdm_reservation"] = true.into();
            }
            if let Some(t) = title {
                body["title"] = t.into();
            }
            let body = Body::from_value(Kind::DataContribute, body)?;
            let ledger = Ledger::open(&crate::data_dir(&data_dir))?;
            let record = sign_record(
                &key,
                ledger.origin(),
                &id.unwrap_or_else(random_id),
                ts_ms.unwrap_or_else(now_ms),
                body,
            )?;
            // Content first: the ledger stores it durably, then appends the record.
            print_json(&ledger.contribute(record.bytes().to_vec(), &bytes)?)?;
        }
        Command::Checkpoint { data_dir } => {
            let reader = Reader::open(&crate::data_dir(&data_dir))?;
            std::io::stdout().write_all(&reader.checkpoint()?)?;
        }
        Command::Proof { command } => match command {
            ProofCommand::Inclusion {
                data_dir,
                index,
                size,
            } => {
                let reader = Reader::open(&crate::data_dir(&data_dir))?;
                let proof = reader.inclusion_proof(index, size.unwrap_or(reader.size()))?;
                print_json(&proof)?;
            }
            ProofCommand::Consistency { data_dir, old, new } => {
                let reader = Reader::open(&crate::data_dir(&data_dir))?;
                let proof = reader.consistency_proof(old, new.unwrap_or(reader.size()))?;
                print_json(&proof)?;
            }
        },
        Command::Export { data_dir, out } => {
            let reader = Reader::open(&crate::data_dir(&data_dir))?;
            // Write beside the target under a fresh hidden name, then rename: a reader never
            // sees a half-written export and no other file is touched.
            let name = out
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let tmp = out.with_file_name(format!(".{name}.{}.partial", random_id()));
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .with_context(|| format!("cannot create {}", tmp.display()))?;
            let mut writer = std::io::BufWriter::new(file);
            reader.export(reader.size(), &mut writer)?;
            let file = writer.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            std::fs::rename(&tmp, &out)?;
            print_json(&serde_json::json!({ "file": out, "tree_size": reader.size() }))?;
        }
        Command::Publish {
            data_dir,
            out,
            cosigned,
        } => {
            tiles_cmd::publish(&crate::data_dir(&data_dir), &out, cosigned)?;
        }
        Command::Verify {
            file,
            tiles,
            key,
            content,
            timing,
            witness_policy,
            checkpoint,
        } => {
            let key = key_text(&key)?;
            // The policy and the cosigned checkpoint are checked first: a bad one fails fast.
            let cosigned = match (witness_policy, checkpoint) {
                (Some(policy), Some(note)) => {
                    let policy = witness_cmd::read_policy(&policy)?;
                    let note = read_limited(&note, 64 * 1024, "checkpoint", "E_FILE_TOO_LARGE")?;
                    Some(policy.open(&shoulders_log::LogVerifier::new(&key)?, &note)?)
                }
                _ => None,
            };
            let started = std::time::Instant::now();
            let (report, state) = match (file, tiles) {
                (_, Some(location)) => {
                    tiles_cmd::verify(&location, key.trim(), VERIFY_TILES_TIMEOUT_MS)?
                }
                (Some(file), None) => {
                    // Streamed: memory stays bounded whatever the size of the export; a regular
                    // file only, its size checked on the open file (a FIFO or /dev/zero never
                    // ends).
                    let input =
                        open_limited(&file, MAX_EXPORT_FILE_BYTES, "export", "E_EXPORT_TOO_LARGE")?;
                    shoulders_ledger::export::verify_export_from(input, key.trim())?
                }
                (None, None) => unreachable!("clap requires a file or --tiles"),
            };
            let seconds = started.elapsed().as_secs_f64();
            let mut json = serde_json::to_value(&report)?;
            if timing {
                json["timing"] = serde_json::json!({
                    "seconds": (seconds * 1000.0).round() / 1000.0,
                    "receipts_per_s": (report.receipts as f64 / seconds.max(1e-9)).round(),
                });
            }
            if let Some((view, witnesses)) = cosigned {
                if view.size != report.tree_size || view.root.to_string() != report.root_hash {
                    return Err(CliError {
                        code: "E_WITNESS_CHECKPOINT_MISMATCH",
                        message: format!(
                            "the export holds the tree of size {} and root {}, the cosigned checkpoint size {} and root {}; verify against the checkpoint cosigned for the exported tree",
                            report.tree_size, report.root_hash, view.size, view.root
                        ),
                    }
                    .into());
                }
                json["witnesses"] = serde_json::json!(witnesses);
            }
            if let Some(dir) = content {
                let store = shoulders_ledger::ContentStore::at(&dir);
                json["content"] = serde_json::to_value(verify_content(&state, &store)?)?;
            }
            print_json(&json)?;
        }
        Command::Show { data_dir, what, id } => {
            let state = Reader::open(&crate::data_dir(&data_dir))?.state()?;
            let missing =
                || LedgerError::NotFound(format!("no {} {id:?} in this ledger", what.name()));
            let json = match what {
                ShowWhat::Actor => serde_json::to_value(state.actor(&id).ok_or_else(missing)?)?,
                ShowWhat::Dataset => serde_json::to_value(state.dataset(&id).ok_or_else(missing)?)?,
                ShowWhat::Model => {
                    let mut value = serde_json::to_value(state.model(&id).ok_or_else(missing)?)?;
                    value["ancestors"] = serde_json::to_value(state.ancestors(&id))?;
                    value
                }
                ShowWhat::Contribution => {
                    let contribution = id.parse::<u64>().ok().and_then(|i| state.contribution(i));
                    serde_json::to_value(contribution.ok_or_else(missing)?)?
                }
            };
            print_json(&json)?;
        }
        Command::Lineage {
            data_dir,
            model_id,
            format,
        } => lineage_cmd::run(&data_dir, &model_id, &format)?,
        Command::Index {
            command:
                IndexCommand::Build {
                    data_dir,
                    dataset_id,
                },
        } => attrib_cmd::build(&data_dir, &dataset_id)?,
        Command::Index {
            command:
                IndexCommand::Verify {
                    data_dir,
                    dataset_id,
                },
        } => attrib_cmd::verify(&data_dir, &dataset_id)?,
        Command::Index {
            command:
                IndexCommand::Update {
                    data_dir,
                    dataset_id,
                },
        } => attrib_cmd::update(&data_dir, &dataset_id)?,
        Command::Index {
            command:
                IndexCommand::Merge {
                    data_dir,
                    dataset_id,
                },
        } => attrib_cmd::merge(&data_dir, &dataset_id)?,
        Command::Index {
            command:
                IndexCommand::BuildFiles {
                    out,
                    docs_dir,
                    attribution,
                },
        } => attrib_cmd::build_files(&docs_dir, &out, attribution)?,
        Command::Attribute(args) => attrib_cmd::attribute(args)?,
        Command::License { command } => match command {
            LicenseCommand::Check {
                data_dir,
                model_id,
                use_tag,
                territory,
                at_ms,
                max_royalty_bps,
            } => license_cmd::check(
                &data_dir,
                &model_id,
                &use_tag,
                territory.as_deref(),
                at_ms,
                max_royalty_bps,
            )?,
            LicenseCommand::Presets => license_cmd::presets()?,
            LicenseCommand::Preset { name, license_id } => license_cmd::preset(&name, &license_id)?,
        },
        Command::Model { command } => match command {
            ModelCommand::Import(args) => model_cmd::import(*args)?,
            ModelCommand::Export {
                data_dir,
                model_id,
                format,
            } => export_cmd::run(&data_dir, &model_id, &format)?,
            ModelCommand::Check {
                data_dir,
                model_id,
                dir,
            } => model_cmd::check(&data_dir, &model_id, &dir)?,
            ModelCommand::Diff {
                data_dir,
                parent,
                child,
            } => model_cmd::diff(&data_dir, &parent, &child)?,
        },
        Command::Migrate { from, to } => {
            let from = StoreLocation::parse(&from).map_err(LedgerError::from)?;
            let to = StoreLocation::parse(&to).map_err(LedgerError::from)?;
            print_json(&shoulders_ledger::migrate(&from, &to)?)?;
        }
        Command::Demo {
            data_dir,
            listen,
            no_serve,
        } => demo::run(data_dir, (!no_serve).then_some(listen))?,
        Command::Serve(args) => serve_cmd::serve(args)?,
        Command::Apikey { command } => match command {
            ApikeyCommand::New {
                data_dir,
                actor,
                budget_micros,
                budget_currency,
                budget_period,
                requests_per_minute,
                tokens_per_minute,
            } => serve_cmd::apikey_new(
                data_dir,
                actor,
                serve_cmd::NewKeyLimits {
                    budget_micros,
                    budget_currency,
                    budget_period,
                    requests_per_minute,
                    tokens_per_minute,
                },
            )?,
            ApikeyCommand::List {
                data_dir,
                actor,
                after,
                limit,
            } => serve_cmd::apikey_list(data_dir, actor, after, limit)?,
            ApikeyCommand::AdminToken { data_dir } => serve_cmd::apikey_admin_token(data_dir)?,
            ApikeyCommand::Revoke {
                data_dir,
                key,
                actor,
            } => serve_cmd::apikey_revoke(data_dir, key, actor)?,
        },
    }
    Ok(())
}
