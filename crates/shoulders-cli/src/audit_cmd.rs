//! `shoulders audit receipt`: re-derive a receipt's attribution and say whether it matches
//! (the engine is [`shoulders_server::audit`]).

use crate::{print_json, CliError};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use shoulders_attrib::dataset::{index_exists, DatasetIndex};
use shoulders_ledger::{ContentStore, LedgerError, Reader};
use shoulders_server::audit::{self, AuditError};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Re-derive the attribution of the receipt at log index N (or with usage id N) from its
    /// output and the contributions, rebuilding the index of the receipt's state when the
    /// built one differs; exits 0 when it matches, 1 with E_AUDIT_MISMATCH when not.
    Receipt(ReceiptArgs),
}

#[derive(Args)]
pub struct ReceiptArgs {
    /// The receipt's log index, or its usage id.
    pub receipt: String,
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The output the receipt was issued for (UTF-8, at most 1 MiB). Default: the output the
    /// gateway kept in the content store (`serve --keep-outputs`).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Print the whole verdict as JSON (default: a short summary, then the differences).
    #[arg(long)]
    pub json: bool,
}

pub fn run(command: AuditCommand) -> Result<()> {
    match command {
        AuditCommand::Receipt(args) => receipt(args),
    }
}

fn receipt(args: ReceiptArgs) -> Result<()> {
    let dir = crate::data_dir(&args.data_dir);
    let mut reader = Reader::open(&dir)?;
    let index = match args.receipt.parse::<u64>() {
        Ok(i) => i,
        Err(_) => reader
            .store()
            .usage_many(std::slice::from_ref(&args.receipt))
            .map_err(LedgerError::from)?
            .into_iter()
            .next()
            .flatten()
            .ok_or_else(|| {
                LedgerError::NotFound(format!("no usage.receipt with usage id {:?}", args.receipt))
            })?,
    };
    let receipt = audit::receipt_at(index, reader.record(index)?)?;
    let store = ContentStore::new(&dir);
    let output = match &args.output {
        Some(path) => {
            let bytes = shoulders_artifacts::files::read_regular_file(
                path,
                shoulders_attrib::index::MAX_OUTPUT_BYTES as u64,
            )
            .map_err(|e| CliError {
                code: "E_IO",
                message: format!("{}: {e}", path.display()),
            })?;
            String::from_utf8(bytes)
                .with_context(|| format!("{} is not UTF-8 text", path.display()))?
        }
        None => {
            if !store.contains(&receipt.output_hash) {
                return Err(CliError {
                    code: "E_OUTPUT_NOT_KEPT",
                    message: format!(
                        "the output of receipt {index} is not in this data directory's content store; pass it with --output FILE"
                    ),
                }
                .into());
            }
            String::from_utf8(store.get(&receipt.output_hash)?)
                .context("the kept output is not UTF-8 text")?
        }
    };
    audit::check_output(&receipt, &output)?;
    let state = reader.state()?;
    let plan = audit::plan(&state, index, receipt)?;
    drop(state);
    let live = if index_exists(&args.data_dir, &plan.dataset_id) {
        Some(Arc::new(DatasetIndex::open(
            &args.data_dir,
            &plan.dataset_id,
        )?))
    } else {
        None
    };
    let ix = audit::index_for_state(&plan, live, Some((&store, &args.data_dir)))?;
    let verdict = audit::run(&plan, &ix, &output)?;
    if args.json {
        print_json(&verdict)?;
    } else {
        println!(
            "receipt {} ({}): {} against {} {:?} ({} index), evidence hash {}",
            verdict.index,
            verdict.usage_id,
            if verdict.matches {
                "matches"
            } else {
                "DOES NOT MATCH"
            },
            verdict.dataset_id,
            verdict.receipt.index_state,
            verdict.index_source,
            if verdict.evidence_hash_matches {
                "matches"
            } else {
                "differs"
            },
        );
        for d in &verdict.differences {
            println!(
                "  contribution {}: receipt {} ppm, derived {} ppm",
                d.contribution, d.receipt_ppm, d.derived_ppm
            );
        }
    }
    if !verdict.matches {
        return Err(CliError {
            code: "E_AUDIT_MISMATCH",
            message: format!(
                "receipt {index} does not match its re-derived attribution ({} contributions differ, evidence hash {})",
                verdict.differences.len(),
                if verdict.evidence_hash_matches { "matches" } else { "differs" }
            ),
        }
        .into());
    }
    Ok(())
}

/// The code of an audit error in the chain, for `error_code`.
pub fn code_of(cause: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    cause.downcast_ref::<AuditError>().map(AuditError::code)
}
