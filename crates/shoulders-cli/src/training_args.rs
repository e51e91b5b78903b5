//! The training-run flags of `shoulders model import`: how the model was trained and who is
//! credited. They become the record's `training`; the configuration file goes to the ledger's
//! content store and only its hash is signed.

use crate::{read_limited, CliError};
use anyhow::Result;
use shoulders_ledger::{parse_training_config, Ledger, MAX_TRAINING_CONFIG_BYTES};
use shoulders_record::{CodeRef, Compute, Credit, CreditRole, Framework, TrainingRun};
use std::path::PathBuf;

/// Training-run provenance (all optional; nothing is recorded when none is given).
#[derive(clap::Args, Default)]
pub struct TrainingArgs {
    /// The training configuration (hyperparameters): a JSON object of at most 1 MiB. Stored in
    /// the ledger's content store; the record carries its hash (`training.config_hash`).
    #[arg(long, value_name = "FILE")]
    pub training_config: Option<PathBuf>,
    /// The training code's repository (an http(s) URL); give --code-commit with it.
    #[arg(long, value_name = "URL", requires = "code_commit")]
    pub code_repo: Option<String>,
    /// The commit of --code-repo the run used: the full 40 or 64 hex digits.
    #[arg(long, value_name = "HEX", requires = "code_repo")]
    pub code_commit: Option<String>,
    /// The training framework, e.g. PyTorch; give --framework-version with it.
    #[arg(long, value_name = "NAME", requires = "framework_version")]
    pub framework: Option<String>,
    /// The framework's version, e.g. 2.4.
    #[arg(long, value_name = "V", requires = "framework")]
    pub framework_version: Option<String>,
    /// Credit a registered actor for the run (repeatable): HANDLE:ROLE, ROLE one of
    /// framework_author, data_engineer, trainer, evaluator. Recognition, not payment.
    #[arg(long = "credit", value_name = "HANDLE:ROLE")]
    pub credits: Vec<String>,
    /// The hardware the run used, e.g. "8x NVIDIA H100 80GB".
    #[arg(long)]
    pub hardware: Option<String>,
    /// Accelerator (GPU/TPU) hours the run used, summed over accelerators.
    #[arg(long, value_name = "N")]
    pub accelerator_hours: Option<u64>,
    /// Energy the run used, in kWh (up to 3 decimals; recorded as whole watt-hours).
    #[arg(long, value_name = "KWH", value_parser = parse_kwh)]
    pub energy_kwh: Option<u64>,
    /// Where the run took place, e.g. a cloud region.
    #[arg(long)]
    pub region: Option<String>,
}

fn usage(message: impl Into<String>) -> anyhow::Error {
    CliError {
        code: "E_USAGE",
        message: message.into(),
    }
    .into()
}

/// `2.4` kWh → `2400` Wh: a decimal with at most 3 fractional digits, no floats.
fn parse_kwh(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not an energy in kWh with at most 3 decimals, e.g. 2.4");
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(frac) || frac.len() > 3 {
        return Err(bad());
    }
    let whole: u64 = whole.parse().map_err(|_| bad())?;
    let frac: u64 = format!("{frac:0<3}").parse().map_err(|_| bad())?;
    whole
        .checked_mul(1000)
        .and_then(|wh| wh.checked_add(frac))
        .ok_or_else(bad)
}

fn parse_credit(s: &str) -> Result<Credit> {
    let (actor, role) = s.rsplit_once(':').ok_or_else(|| {
        usage(format!(
            "--credit {s:?}: give HANDLE:ROLE, e.g. alice:evaluator"
        ))
    })?;
    let role: CreditRole = role
        .parse()
        .map_err(|e: String| usage(format!("--credit {s:?}: {e}")))?;
    Ok(Credit {
        actor: actor.to_string(),
        role,
    })
}

impl TrainingArgs {
    /// The configuration file, checked (`E_TRAINING_CONFIG_INVALID`: over 1 MiB or not a JSON
    /// object), before anything is hashed or signed.
    pub fn read_config(&self) -> Result<Option<Vec<u8>>> {
        let Some(path) = &self.training_config else {
            return Ok(None);
        };
        let bytes = read_limited(
            path,
            MAX_TRAINING_CONFIG_BYTES,
            "training configuration",
            "E_TRAINING_CONFIG_INVALID",
        )?;
        parse_training_config(&bytes)?;
        Ok(Some(bytes))
    }

    /// The record's `training`, or `None` when no flag was given. `config` (from
    /// [`TrainingArgs::read_config`]) is stored in `ledger`'s content store first, so the
    /// registration that names it is admitted. A registration the fold then refuses leaves the
    /// configuration stored: content-addressed and harmless, like a refused contribution's.
    pub fn training_run(
        &self,
        ledger: &Ledger,
        config: Option<&[u8]>,
    ) -> Result<Option<TrainingRun>> {
        let config_hash = match config {
            Some(bytes) => Some(ledger.content().put_training_config(bytes)?),
            None => None,
        };
        let code = match (&self.code_repo, &self.code_commit) {
            (Some(repository), Some(commit)) => Some(CodeRef {
                repository: repository.clone(),
                commit: commit.clone(),
            }),
            (None, None) => None,
            _ => return Err(usage("give --code-repo and --code-commit together")),
        };
        let framework = match (&self.framework, &self.framework_version) {
            (Some(name), Some(version)) => Some(Framework {
                name: name.clone(),
                version: version.clone(),
            }),
            (None, None) => None,
            _ => return Err(usage("give --framework and --framework-version together")),
        };
        let credits = self
            .credits
            .iter()
            .map(|c| parse_credit(c))
            .collect::<Result<Vec<_>>>()?;
        let compute = Compute {
            hardware: self.hardware.clone(),
            accelerator_hours: self.accelerator_hours,
            energy_wh: self.energy_kwh,
            region: self.region.clone(),
        };
        let compute = (compute.hardware.is_some()
            || compute.accelerator_hours.is_some()
            || compute.energy_wh.is_some()
            || compute.region.is_some())
        .then_some(compute);
        let run = TrainingRun {
            config_hash,
            code,
            framework,
            credits,
            compute,
        };
        let empty = run.config_hash.is_none()
            && run.code.is_none()
            && run.framework.is_none()
            && run.credits.is_empty()
            && run.compute.is_none();
        Ok((!empty).then_some(run))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kwh_is_parsed_to_watt_hours_without_floats() {
        assert_eq!(parse_kwh("2.4"), Ok(2400));
        assert_eq!(parse_kwh("12"), Ok(12_000));
        assert_eq!(parse_kwh("0.001"), Ok(1));
        assert_eq!(parse_kwh("7."), Ok(7000));
        for bad in ["", ".5", "0.0005", "-1", "1e3", "1,5", "18446744073709552"] {
            assert!(parse_kwh(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credits_are_handle_colon_role() {
        let c = parse_credit("carol-lab:framework_author").unwrap();
        assert_eq!(
            (c.actor.as_str(), c.role),
            ("carol-lab", CreditRole::FrameworkAuthor)
        );
        assert!(parse_credit("alice").is_err());
        assert!(parse_credit("alice:investor").is_err());
    }
}
