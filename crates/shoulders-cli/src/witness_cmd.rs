//! `shoulders witness init|key|serve`: run a C2SP tlog-witness (`shoulders-witness`) for the
//! logs named by their verifier keys; and the witness policy file that `serve`, `watch` and
//! `verify` read.

use crate::{key_text, print_json, read_limited, CliError};
use anyhow::{Context, Result};
use clap::Subcommand;
use shoulders_log::WitnessPolicy;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest witness policy file read (64 witnesses fit in about 10 KiB).
pub const MAX_POLICY_FILE_BYTES: u64 = 64 * 1024;

#[derive(Subcommand)]
pub enum WitnessCommand {
    /// Create a witness directory with a new cosigning key (W/witness.key, mode 0600); prints
    /// the verifier key to put in witness policies.
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// The witness's name (its key name), e.g. witness.example.org.
        #[arg(long)]
        name: String,
    },
    /// Print the witness's verifier key.
    Key {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Serve `POST /add-checkpoint` (C2SP tlog-witness) for the given logs.
    Serve {
        #[arg(long)]
        dir: PathBuf,
        /// Address to listen on (port 0 picks a free port; the address is printed).
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: String,
        /// A log to witness: its verifier key, or a file holding it (e.g. D/log.pub).
        /// Repeatable; at least one.
        #[arg(long = "log", required = true)]
        logs: Vec<String>,
    },
}

pub fn run(command: WitnessCommand) -> Result<()> {
    match command {
        WitnessCommand::Init { dir, name } => {
            let vkey = shoulders_witness::init(&dir, &name, &mut rand_core::OsRng)?;
            println!("{vkey}");
        }
        WitnessCommand::Key { dir } => {
            println!("{}", shoulders_witness::load_cosigner(&dir)?.verifier_key());
        }
        WitnessCommand::Serve { dir, listen, logs } => serve(&dir, &listen, &logs)?,
    }
    Ok(())
}

fn serve(dir: &Path, listen: &str, logs: &[String]) -> Result<()> {
    let vkeys = logs
        .iter()
        .map(|k| key_text(k))
        .collect::<Result<Vec<_>>>()?;
    let witness = Arc::new(shoulders_witness::Witness::open(dir, &vkeys)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(async move {
        // Before the witness can answer anyone: a SIGTERM from then on is a clean stop.
        let stop = shoulders_server::shutdown_signal();
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listen on {listen}"))?;
        let addr = listener.local_addr()?;
        print_json(&serde_json::json!({
            "listening": format!("http://{addr}"),
            "vkey": witness.verifier_key(),
            "logs": vkeys.len(),
        }))?;
        axum::serve(listener, shoulders_witness::router(witness))
            .with_graceful_shutdown(stop)
            .await?;
        anyhow::Ok(())
    })?;
    eprintln!("shoulders witness: stopped cleanly");
    Ok(())
}

/// Read and parse a witness policy file (at most [`MAX_POLICY_FILE_BYTES`]).
pub fn read_policy(path: &Path) -> Result<WitnessPolicy> {
    let bytes = read_limited(
        path,
        MAX_POLICY_FILE_BYTES,
        "witness policy",
        "E_WITNESS_POLICY",
    )?;
    let text = String::from_utf8(bytes).map_err(|_| CliError {
        code: "E_WITNESS_POLICY",
        message: format!("{} is not UTF-8", path.display()),
    })?;
    WitnessPolicy::parse(&text).with_context(|| format!("witness policy {}", path.display()))
}
