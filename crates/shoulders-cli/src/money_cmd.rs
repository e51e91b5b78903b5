//! Money commands: `deposit`, `withdraw`, `settle` (batch receipts), `statement`, `accounts`.

use crate::{load_key, now_ms, print_json, random_id, CliError};
use anyhow::{Context, Result};
use clap::Args;
use serde_json::{json, Value};
use shoulders_ledger::{DataDir, Ledger, Reader};
use shoulders_record::{sign_record, Body, Kind};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// Most receipts one `settle` file may hold.
const MAX_SETTLE_LINES: usize = 1_000_000;
/// Longest line of a `settle` file, in bytes.
const MAX_SETTLE_LINE_BYTES: usize = 64 * 1024;
/// Receipts handed to the ledger per batch (at most the ledger's batch limit).
const SETTLE_BATCH: usize = 10_000;

#[derive(Args)]
pub struct DepositArgs {
    #[arg(long)]
    data_dir: PathBuf,
    /// Actor handle to credit.
    #[arg(long)]
    account: String,
    #[arg(long)]
    amount_micros: String,
    #[arg(long, default_value = "USD")]
    currency: String,
    /// Free-text reference (e.g. the payment it records).
    #[arg(long)]
    reference: Option<String>,
    /// Operator key; `D/operator.key` when omitted.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Client id (idempotency key); random when omitted.
    #[arg(long)]
    id: Option<String>,
    #[arg(long)]
    ts_ms: Option<u64>,
}

#[derive(Args)]
pub struct WithdrawArgs {
    #[arg(long)]
    data_dir: PathBuf,
    /// The account owner's key.
    #[arg(long)]
    key: PathBuf,
    #[arg(long)]
    amount_micros: String,
    #[arg(long, default_value = "USD")]
    currency: String,
    /// Where to pay out; the actor's registered payout address when omitted.
    #[arg(long)]
    payout_address: Option<String>,
    #[arg(long)]
    id: Option<String>,
    #[arg(long)]
    ts_ms: Option<u64>,
}

#[derive(Args)]
pub struct SettleArgs {
    #[arg(long)]
    data_dir: PathBuf,
    /// JSON lines: each a `usage.receipt` body, or `{"id":..,"ts_ms":..,"body":{..}}`.
    /// Ids default to `receipt-<usage_id>`, so settling the same file twice charges nothing twice.
    receipts: PathBuf,
    /// Operator key; `D/operator.key` when omitted.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Signer timestamp for lines without one; now when omitted.
    #[arg(long)]
    ts_ms: Option<u64>,
}

#[derive(Args)]
pub struct StatementArgs {
    #[arg(long)]
    data_dir: PathBuf,
    /// Actor handle, or a system account such as @protocol, @rounding, @unclaimed.
    actor: String,
    /// Only lines with signer time >= this (ms since the epoch).
    #[arg(long)]
    from: Option<u64>,
    /// Only lines with signer time < this (ms since the epoch).
    #[arg(long)]
    to: Option<u64>,
    /// Add an inclusion proof of every line's record against the printed checkpoint.
    #[arg(long)]
    proofs: bool,
    /// Lines per page (1 to 1000; default 100). By source and totals cover every line.
    #[arg(long)]
    limit: Option<usize>,
    /// The `next` cursor a previous page printed.
    #[arg(long)]
    cursor: Option<String>,
}

#[derive(Args)]
pub struct AccountsArgs {
    #[arg(long)]
    data_dir: PathBuf,
}

fn operator_key(dir: &DataDir, key: Option<PathBuf>) -> Result<shoulders_record::ActorKey> {
    let path = key.unwrap_or_else(|| dir.operator_key());
    if !path.exists() {
        return Err(CliError {
            code: "E_KEY_FILE",
            message: format!(
                "no operator key at {}; create the ledger with `shoulders init --operator HANDLE` or pass --key",
                path.display()
            ),
        }
        .into());
    }
    load_key(&path)
}

fn submit_one(
    dir: &DataDir,
    key: &shoulders_record::ActorKey,
    kind: Kind,
    body: Value,
    id: Option<String>,
    ts_ms: Option<u64>,
) -> Result<()> {
    let body = Body::from_value(kind, body)?;
    let ledger = Ledger::open(dir)?;
    let record = sign_record(
        key,
        ledger.origin(),
        &id.unwrap_or_else(random_id),
        ts_ms.unwrap_or_else(now_ms),
        body,
    )?;
    let appended = ledger.submit(record.bytes().to_vec())?;
    print_json(&appended)
}

pub fn deposit(a: DepositArgs) -> Result<()> {
    let dir = crate::data_dir(&a.data_dir);
    let key = operator_key(&dir, a.key)?;
    let mut body =
        json!({"account": a.account, "currency": a.currency, "amount_micros": a.amount_micros});
    if let Some(r) = a.reference {
        body["reference"] = r.into();
    }
    submit_one(&dir, &key, Kind::FundsDeposit, body, a.id, a.ts_ms)
}

pub fn withdraw(a: WithdrawArgs) -> Result<()> {
    let dir = crate::data_dir(&a.data_dir);
    let key = load_key(&a.key)?;
    let mut body = json!({"currency": a.currency, "amount_micros": a.amount_micros});
    if let Some(p) = a.payout_address {
        body["payout_address"] = p.into();
    }
    submit_one(&dir, &key, Kind::FundsWithdraw, body, a.id, a.ts_ms)
}

/// Sign every receipt of the file with the operator key and submit them in batches; prints how
/// many were settled, already settled, or refused (by code).
pub fn settle(a: SettleArgs) -> Result<()> {
    let dir = crate::data_dir(&a.data_dir);
    let key = operator_key(&dir, a.key)?;
    let ledger = Ledger::open(&dir)?;
    let records = read_receipts(
        &a.receipts,
        &key,
        ledger.origin(),
        a.ts_ms.unwrap_or_else(now_ms),
    )?;
    let started = std::time::Instant::now();
    let (mut settled, mut duplicates) = (0u64, 0u64);
    let mut refused: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut first_error: Option<String> = None;
    let total = records.len();
    let mut rest = records.into_iter();
    loop {
        let batch: Vec<Vec<u8>> = rest.by_ref().take(SETTLE_BATCH).collect();
        if batch.is_empty() {
            break;
        }
        for outcome in ledger.submit_batch(batch) {
            match outcome {
                Ok(a) if a.duplicate => duplicates += 1,
                Ok(_) => settled += 1,
                Err(e) => {
                    *refused.entry(e.code()).or_insert(0) += 1;
                    first_error.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let legs = ledger.with_state(|s| s.legs_count());
    print_json(&json!({
        "receipts": total, "settled": settled, "already_settled": duplicates,
        "refused": refused, "first_refusal": first_error,
        "seconds": (elapsed * 1000.0).round() / 1000.0,
        "receipts_per_s": if elapsed > 0.0 { (total as f64 / elapsed).round() } else { 0.0 },
        "ledger_legs": legs,
    }))
}

/// Largest receipts file `settle` reads (JSON lines; a receipt line is under 2 KiB, so ~500k
/// receipts). Checked on the open file, and the reader stops there even if it grows.
const MAX_RECEIPTS_FILE_BYTES: u64 = 1 << 30;

fn read_receipts(
    path: &Path,
    key: &shoulders_record::ActorKey,
    log: &str,
    default_ts_ms: u64,
) -> Result<Vec<Vec<u8>>> {
    let file = crate::open_limited(
        path,
        MAX_RECEIPTS_FILE_BYTES,
        "receipts file",
        "E_RECEIPTS_FILE",
    )?;
    let mut out = Vec::new();
    let file = std::io::Read::take(file, MAX_RECEIPTS_FILE_BYTES);
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        let bad = |message: String| CliError {
            code: "E_RECEIPTS_FILE",
            message: format!("{} line {}: {message}", path.display(), n + 1),
        };
        if line.trim().is_empty() {
            continue;
        }
        if line.len() > MAX_SETTLE_LINE_BYTES {
            return Err(bad(format!("longer than {MAX_SETTLE_LINE_BYTES} bytes")).into());
        }
        if out.len() == MAX_SETTLE_LINES {
            return Err(bad(format!(
                "more than {MAX_SETTLE_LINES} receipts; split the file"
            ))
            .into());
        }
        let value = shoulders_record::parse_integer_json(line.as_bytes())
            .map_err(|e| bad(e.to_string()))?;
        let (id, ts_ms, body) = match value.get("body") {
            Some(body) => (
                value.get("id").and_then(Value::as_str).map(str::to_string),
                value.get("ts_ms").and_then(Value::as_u64),
                body.clone(),
            ),
            None => (None, None, value),
        };
        let body = Body::from_value(Kind::UsageReceipt, body).map_err(|e| bad(e.to_string()))?;
        let Body::UsageReceipt(r) = &body else {
            unreachable!("decoded as a receipt")
        };
        let id = id.unwrap_or_else(|| format!("receipt-{}", r.usage_id));
        let record = sign_record(key, log, &id, ts_ms.unwrap_or(default_ts_ms), body)
            .map_err(|e| bad(e.to_string()))?;
        out.push(record.bytes().to_vec());
    }
    Ok(out)
}

pub fn statement(a: StatementArgs) -> Result<()> {
    let dir = crate::data_dir(&a.data_dir);
    let mut reader = Reader::open(&dir)?;
    let limit = shoulders_ledger::query::page_size(a.limit)?;
    let state = reader.state()?;
    let size = state.size();
    let statement = shoulders_ledger::query::statement(
        reader.store(),
        &state,
        &a.actor,
        a.from,
        a.to,
        a.cursor.as_deref(),
        limit,
    )?;
    let known = state.actor(&a.actor).is_some() || a.actor.starts_with('@');
    if !known {
        return Err(shoulders_ledger::LedgerError::NotFound(format!(
            "no actor {:?} in this ledger",
            a.actor
        ))
        .into());
    }
    let checkpoint =
        String::from_utf8(reader.checkpoint_at(size)?).context("checkpoint is UTF-8")?;
    let mut out = json!({ "tree_size": size, "checkpoint": checkpoint, "statement": statement });
    if a.proofs {
        let mut proofs = serde_json::Map::new();
        for line in &statement.statement.lines {
            let key = line.leg.index.to_string();
            if !proofs.contains_key(&key) {
                let proof = reader.inclusion_proof(line.leg.index, size)?;
                let leaf = reader.leaf_hash(line.leg.index)?;
                proofs.insert(key, json!({"leaf_hash": leaf.to_string(), "proof": proof}));
            }
        }
        out["proofs"] = Value::Object(proofs);
    }
    print_json(&out)
}

pub fn accounts(a: AccountsArgs) -> Result<()> {
    let state = Reader::open(&crate::data_dir(&a.data_dir))?.state()?;
    let totals = state.totals();
    let conserved = totals.iter().all(|t| t.conserved);
    print_json(&json!({
        "tree_size": state.size(),
        "operator": state.config(),
        "accounts": state.accounts(),
        "totals": totals,
        "conserved": conserved,
    }))?;
    if !conserved {
        return Err(CliError {
            code: "E_BOOKS_UNBALANCED",
            message:
                "balances do not sum to deposits minus withdrawals: the ledger state is corrupt"
                    .into(),
        }
        .into());
    }
    Ok(())
}
