//! `shoulders model import`, `shoulders model check` and `shoulders model diff`.

use crate::{load_key, print_json, random_id, CliError};
use anyhow::{Context, Result};
use serde_json::json;
use shoulders_artifacts::{compare, scan_dir, total_bytes, ModelDir};
use shoulders_ledger::{Ledger, LedgerError, Reader};
use shoulders_record::{sign_record, Body, ModelRegister, Parent, Relation};
use std::path::{Path, PathBuf};

/// Hash a directory with a progress bar on stderr (hidden when stderr is not a terminal).
fn hash_dir(dir: &Path) -> Result<ModelDir> {
    let total = total_bytes(dir)?;
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "hashing {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("static template"),
    );
    let mut progress = |n: u64| bar.inc(n);
    let scanned = scan_dir(dir, &mut (&mut progress as &mut dyn FnMut(u64)))?;
    bar.finish_and_clear();
    Ok(scanned)
}

fn parse_relation(s: &str) -> Result<Relation> {
    Ok(match s {
        "finetune" | "fine-tune" | "finetuned" => Relation::Finetune,
        "adapter" => Relation::Adapter,
        "merge" => Relation::Merge,
        "quantized" | "quantization" => Relation::Quantized,
        "distilled" | "distillation" => Relation::Distilled,
        other => {
            return Err(CliError {
                code: "E_FIELD_INVALID",
                message: format!(
                "unknown relation {other:?}; use finetune, adapter, merge, quantized or distilled"
            ),
            }
            .into())
        }
    })
}

/// Arguments of `shoulders model import`.
#[derive(clap::Args)]
pub struct ImportArgs {
    #[arg(long)]
    pub data_dir: PathBuf,
    #[arg(long)]
    pub key: PathBuf,
    /// The model directory. A Hugging Face cache snapshot
    /// (`…/models--ORG--NAME/snapshots/COMMIT`) is recognised by its layout: its links into the
    /// entry's `blobs/` are followed and checked, and the repository and commit recorded.
    #[arg(required_unless_present = "hf_cache")]
    pub dir: Option<PathBuf>,
    /// Import from a Hugging Face hub cache instead of DIR (e.g. ~/.cache/huggingface/hub):
    /// the snapshot of --repo at --revision.
    #[arg(long, conflicts_with = "dir", requires = "repo", value_name = "DIR")]
    pub hf_cache: Option<PathBuf>,
    /// The repository in --hf-cache, `ORG/NAME`.
    #[arg(long, requires = "hf_cache", value_name = "ORG/NAME")]
    pub repo: Option<String>,
    /// With --hf-cache: a commit hash, or a ref (`main`, `refs/pr/1`) resolved through the
    /// cache's `refs/` files. Default: main.
    #[arg(long, requires = "hf_cache", value_name = "REV")]
    pub revision: Option<String>,
    /// Model id `<your-handle>/<name>`; defaults to your handle and the directory name (for a
    /// Hugging Face snapshot, the repository's NAME).
    #[arg(long)]
    pub model_id: Option<String>,
    /// Display name; defaults to the directory name (for a Hugging Face snapshot, the
    /// repository's NAME).
    #[arg(long)]
    pub name: Option<String>,
    /// A parent model id (repeatable); defaults to the card's `base_model`.
    #[arg(long = "parent")]
    pub parents: Vec<String>,
    /// Relation to the parents: one for all, or one per --parent
    /// (finetune, adapter, merge, quantized, distilled).
    #[arg(long = "relation")]
    pub relations: Vec<String>,
    /// A training dataset id (repeatable); defaults to the card's `datasets`.
    #[arg(long = "dataset")]
    pub datasets: Vec<String>,
    /// The model's licence (a `license.define` id); checked against its lineage.
    #[arg(long)]
    pub license_id: Option<String>,
    /// The most stacked upstream royalty you accept, in basis points (0-10000): the
    /// registration is refused (E_LICENSE_ROYALTY_ABOVE_MAX, naming every ancestor of the
    /// stack) when the lineage's royalties total more.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub max_royalty_bps: Option<u32>,
    /// Client id (idempotency key); random when omitted.
    #[arg(long)]
    pub id: Option<String>,
    /// Signer timestamp in ms since the epoch; now when omitted. With the same --id and an
    /// unchanged directory, a re-run is then an idempotent no-op.
    #[arg(long)]
    pub ts_ms: Option<u64>,
    /// Ignore lineage hints in the model card and GGUF headers (base models, datasets),
    /// e.g. when they name models that are not on this ledger.
    #[arg(long)]
    pub no_hints: bool,
    /// How the model was trained and who is credited.
    #[command(flatten)]
    pub training: crate::training_args::TrainingArgs,
}

/// The directory `model import` reads: DIR, or the snapshot `--hf-cache/--repo/--revision` name.
fn import_dir(args: &ImportArgs) -> Result<PathBuf> {
    let dir = match (&args.dir, &args.hf_cache, &args.repo) {
        (Some(dir), None, _) => dir.clone(),
        (None, Some(cache), Some(repo)) => {
            shoulders_artifacts::resolve_snapshot(cache, repo, args.revision.as_deref())?
        }
        _ => {
            return Err(CliError {
                code: "E_USAGE",
                message: "give a model directory, or --hf-cache DIR with --repo ORG/NAME".into(),
            }
            .into())
        }
    };
    if !dir.is_dir() {
        return Err(CliError {
            code: "E_IO",
            message: format!("{} is not a directory", dir.display()),
        }
        .into());
    }
    Ok(dir)
}

pub fn import(args: ImportArgs) -> Result<()> {
    let key = load_key(&args.key)?;
    let dir = import_dir(&args)?;
    // A bad configuration file fails before the directory is hashed.
    let training_config = args.training.read_config()?;
    let scanned = hash_dir(&dir)?;
    let mut card = scanned.card.clone().unwrap_or_default();
    if args.no_hints {
        card.base_models.clear();
        card.base_model_relation = None;
        card.datasets.clear();
    }
    // GGUF `general.base_model.*` / `general.license` keys stand in for a missing card.
    if card.base_models.is_empty() && !args.no_hints {
        card.base_models = scanned.gguf_base_models.clone();
    }
    if card.license.is_none() {
        card.license = scanned.gguf_license.clone();
    }

    // Lineage: explicit flags win; otherwise the model card's (or GGUF header's) hints.
    let (parent_ids, relations) = if args.parents.is_empty() {
        let relation = card.base_model_relation.clone().unwrap_or_else(|| {
            if card.base_models.len() > 1 {
                "merge".into()
            } else {
                "finetune".into()
            }
        });
        (card.base_models.clone(), vec![relation])
    } else {
        (args.parents.clone(), args.relations.clone())
    };
    let relations: Vec<Relation> = match relations.len() {
        _ if parent_ids.is_empty() => Vec::new(),
        0 => {
            return Err(CliError {
                code: "E_USAGE",
                message: "give a --relation for the --parent models".into(),
            }
            .into())
        }
        1 => vec![parse_relation(&relations[0])?; parent_ids.len()],
        n if n == parent_ids.len() => relations
            .iter()
            .map(|r| parse_relation(r))
            .collect::<Result<_>>()?,
        _ => {
            return Err(CliError {
                code: "E_USAGE",
                message: "give one --relation for all parents, or one per --parent".into(),
            }
            .into())
        }
    };
    let parents: Vec<Parent> = parent_ids
        .into_iter()
        .zip(relations)
        .map(|(model_id, relation)| Parent { model_id, relation })
        .collect();
    let datasets = if args.datasets.is_empty() {
        card.datasets.clone()
    } else {
        args.datasets.clone()
    };

    let ledger = Ledger::open(&crate::data_dir(&args.data_dir))?;
    let handle = ledger
        .with_state(|s| s.actor_by_key(&key.public()).map(|a| a.handle.clone()))
        .ok_or_else(|| {
            LedgerError::Rejected(shoulders_state::Reject::SignerUnknown(
                key.public().to_base64(),
            ))
        })?;
    // A snapshot directory is named by its commit: the repository's name says more.
    let dir_name = match &scanned.source {
        Some(source) => source
            .repo
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string(),
        None => dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default(),
    };
    let model_id = args
        .model_id
        .unwrap_or_else(|| format!("{handle}/{dir_name}"));
    let training = args
        .training
        .training_run(&ledger, training_config.as_deref())?;
    let body = ModelRegister {
        model_id: model_id.clone(),
        name: args.name.unwrap_or(dir_name),
        description: None,
        parents,
        datasets,
        artifacts: scanned.artifacts,
        license_id: args.license_id,
        url: None,
        training,
        max_royalty_bps: args.max_royalty_bps,
        adapter: scanned.adapter,
        source: scanned.source.map(Box::new),
    };
    let files = body.artifacts.len();
    let adapter = body.adapter.clone();
    let source = body.source.clone();
    let tensors: usize = body.artifacts.iter().map(|a| a.tensors.len()).sum();
    let record = sign_record(
        &key,
        ledger.origin(),
        &args.id.unwrap_or_else(random_id),
        args.ts_ms.unwrap_or_else(crate::now_ms),
        Body::ModelRegister(body),
    )
    .with_context(|| format!("cannot register {model_id}"))?;
    let appended = ledger.submit(record.bytes().to_vec())?;
    print_json(&json!({
        "model_id": model_id,
        "index": appended.index,
        "leaf_hash": appended.leaf_hash.to_string(),
        "duplicate": appended.duplicate,
        "files": files,
        "tensors": tensors,
        "card_license": card.license,
        "adapter": adapter,
        "source": source,
    }))
}

pub fn check(data_dir: &Path, model_id: &str, dir: &Path) -> Result<()> {
    let state = Reader::open(&crate::data_dir(data_dir))?.state()?;
    let model = state
        .model(model_id)
        .ok_or_else(|| LedgerError::NotFound(format!("no model {model_id:?} in this ledger")))?;
    let scanned = hash_dir(dir)?;
    let report = compare(&model.artifacts, &scanned.artifacts);
    print_json(&report)?;
    if report.matches {
        Ok(())
    } else {
        Err(CliError {
            code: "E_ARTIFACTS_DIFFER",
            message: format!(
                "{} difference(s) between {} and the registered {model_id} (listed on stdout)",
                report.differences.len(),
                dir.display()
            ),
        }
        .into())
    }
}

/// `shoulders model diff`: what CHILD changed from PARENT, tensor by tensor, from the hashes on
/// the ledger (no files are read). Any two models may be compared; the relation is the child's
/// to that parent, or null.
pub fn diff(data_dir: &Path, parent: &str, child: &str) -> Result<()> {
    let state = Reader::open(&crate::data_dir(data_dir))?.state()?;
    let find = |id: &str| {
        state
            .model(id)
            .ok_or_else(|| LedgerError::NotFound(format!("no model {id:?} in this ledger")))
    };
    let diff = shoulders_state::model_diff(find(parent)?, find(child)?);
    print_json(&diff)
}
