//! `shoulders watch`: a log monitor. It polls a server's signed checkpoint, checks the signature
//! with the log's verifier key, and checks every new checkpoint against the last one it
//! verified (never smaller; same size, same root; larger: a consistency proof that verifies).
//! A bad signature, a rollback or a fork is reported as `error[CODE]` and exit status 1.
//!
//! With `--tiles` it follows a log published as C2SP tiles (a `shoulders publish` directory or a
//! server's `/log/` prefix) instead: the consistency proofs are computed locally from tiles,
//! each authenticated against the new checkpoint, so no proof endpoint is needed.
//!
//! With `--witness-policy FILE` it reads `GET /log/checkpoint` (or the tiles' checkpoint) and accepts only a
//! checkpoint cosigned by the policy's quorum (`E_WITNESS_QUORUM`, `E_COSIGNATURE_INVALID`
//! otherwise). Every checkpoint it accepts is then cosigned, so one that does not extend the
//! last is `E_WITNESS_SPLIT_VIEW`: the monitor holds witness-cosigned evidence of two
//! histories (the saved `--state` note and the served one), which the witnesses should have
//! made impossible without collusion.

use crate::{print_json, CliError};
use anyhow::{Context, Result};
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use clap::Args;
use shoulders_log::{check_advance, needs_proof, CheckpointView, Hash, LogVerifier, WitnessPolicy};
use std::path::PathBuf;
use std::time::Duration;

/// Largest checkpoint or proof response read, in bytes.
const MAX_RESPONSE_BYTES: u64 = 1024 * 1024;

#[derive(Args)]
pub struct WatchArgs {
    /// Base URL of a shoulders server, e.g. http://127.0.0.1:8080.
    #[arg(long, required_unless_present = "tiles", conflicts_with = "tiles")]
    url: Option<String>,
    /// Follow a log published as C2SP tiles: a `shoulders publish` directory or an
    /// `http(s)://HOST/log/` prefix.
    #[arg(long, value_name = "URL_OR_DIR")]
    tiles: Option<String>,
    /// The log's verifier key, or a file holding it (e.g. D/log.pub).
    #[arg(long)]
    key: String,
    /// Time between polls.
    #[arg(long, default_value_t = 5000)]
    interval_ms: u64,
    /// Stop after this many polls (0: run until an alert or Ctrl-C).
    #[arg(long, default_value_t = 0)]
    polls: u64,
    /// File keeping the last verified checkpoint, so a restarted monitor still sees a rollback.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Per-request timeout.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Demand witness cosignatures: a file of `witness <vkey> [url]` lines and `quorum <k>`.
    /// The monitor then reads GET /log/checkpoint and refuses a checkpoint without the quorum.
    #[arg(long, value_name = "FILE")]
    witness_policy: Option<PathBuf>,
}

fn alert(code: &'static str, message: String) -> anyhow::Error {
    CliError { code, message }.into()
}

fn get(agent: &ureq::Agent, url: &str) -> Result<Vec<u8>> {
    let response = agent
        .get(url)
        .call()
        .map_err(|e| alert("E_WATCH_FETCH", format!("GET {url}: {e}")))?;
    let mut body = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(response.into_reader(), MAX_RESPONSE_BYTES + 1),
        &mut body,
    )
    .map_err(|e| alert("E_WATCH_FETCH", format!("GET {url}: {e}")))?;
    if body.len() as u64 > MAX_RESPONSE_BYTES {
        return Err(alert(
            "E_WATCH_FETCH",
            format!("GET {url}: response over {MAX_RESPONSE_BYTES} bytes"),
        ));
    }
    Ok(body)
}

fn open(
    verifier: &LogVerifier,
    policy: Option<&WitnessPolicy>,
    note: &[u8],
    what: &str,
) -> Result<(CheckpointView, Vec<String>)> {
    let opened = match policy {
        Some(p) => p.open(verifier, note),
        None => verifier.open(note).map(|v| (v, Vec::new())),
    };
    opened.map_err(|e| {
        alert(
            e.code(),
            format!("{what} checkpoint rejected: {e}; the server is not serving this log, or its key was misused"),
        )
    })
}

fn consistency(agent: &ureq::Agent, base: &str, old: u64, new: u64) -> Result<Vec<Hash>> {
    let url = format!("{base}/api/proofs/consistency?old={old}&new={new}");
    let v: serde_json::Value = serde_json::from_slice(&get(agent, &url)?)
        .map_err(|e| alert("E_WATCH_FETCH", format!("GET {url}: not JSON: {e}")))?;
    v["hashes"]
        .as_array()
        .ok_or_else(|| alert("E_WATCH_FETCH", format!("GET {url}: no hashes")))?
        .iter()
        .map(|h| {
            let bytes = h
                .as_str()
                .and_then(|s| B64.decode(s).ok())
                .and_then(|b| <[u8; 32]>::try_from(b).ok());
            bytes.map(Hash).ok_or_else(|| {
                alert(
                    "E_WATCH_FETCH",
                    format!("GET {url}: a hash is not 32 bytes of base64"),
                )
            })
        })
        .collect()
}

fn read_key(key: &str) -> Result<String> {
    crate::key_text(key)
}

/// Largest saved checkpoint note read back (a note is a few hundred bytes).
const MAX_STATE_FILE_BYTES: u64 = 64 * 1024;

/// Keep `note` as the last verified checkpoint. Called only after the checks, so the saved
/// checkpoint is always a verified one.
fn save(a: &WatchArgs, note: &[u8]) -> Result<()> {
    if let Some(p) = &a.state {
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, note)
            .and_then(|()| std::fs::rename(&tmp, p))
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(())
}

pub fn run(a: WatchArgs) -> Result<()> {
    let verifier = LogVerifier::new(&read_key(&a.key)?)?;
    let policy = a
        .witness_policy
        .as_deref()
        .map(crate::witness_cmd::read_policy)
        .transpose()?;
    let checkpoint_path = if policy.is_some() {
        "/log/checkpoint"
    } else {
        "/api/checkpoint"
    };
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_millis(a.timeout_ms))
        .build();
    let tiles = a
        .tiles
        .as_deref()
        .map(|t| crate::tiles_cmd::TileSource::parse(t, a.timeout_ms));
    let base = a
        .url
        .as_deref()
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_string();
    let mut last: Option<(CheckpointView, Vec<u8>)> = match &a.state {
        Some(p) if p.exists() => {
            let note =
                crate::read_limited(p, MAX_STATE_FILE_BYTES, "state file", "E_FILE_TOO_LARGE")?;
            Some((
                open(&verifier, policy.as_ref(), &note, "the saved")?.0,
                note,
            ))
        }
        _ => None,
    };
    let mut n = 0u64;
    loop {
        n += 1;
        let note = match &tiles {
            Some(source) => source.checkpoint()?,
            None => get(&agent, &format!("{base}{checkpoint_path}"))?,
        };
        let (new, witnesses) = open(&verifier, policy.as_ref(), &note, "the served")?;
        if let Some((old, _)) = &last {
            let proof = match &tiles {
                _ if !needs_proof(old, &new) => Vec::new(),
                Some(source) => crate::tiles_cmd::tiled_consistency(source, old, &new)?,
                None => consistency(&agent, &base, old.size, new.size)?,
            };
            check_advance(old, &new, &proof).map_err(|e| match policy {
                Some(_) => alert(
                    "E_WITNESS_SPLIT_VIEW",
                    format!("{e}; both checkpoints carry a quorum of witness cosignatures: the log showed two histories and the witnesses signed both"),
                ),
                None => alert(e.code(), e.to_string()),
            })?;
        }
        save(&a, &note)?;
        let mut report = serde_json::json!({"poll": n, "ok": true, "size": new.size, "root": new.root.to_string()});
        if policy.is_some() {
            report["witnesses"] = serde_json::json!(witnesses);
        }
        print_json(&report)?;
        last = Some((new, note));
        if a.polls != 0 && n >= a.polls {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(a.interval_ms));
    }
}
