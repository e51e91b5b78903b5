//! Ledger state as a deterministic fold over the log.
//!
//! [`State::apply`] takes one decoded, signature-checked record and its log position and either
//! updates the state or refuses the record with a [`Reject`]; on refusal the state is exactly as
//! before (every check runs before the first mutation). Replaying the same log always yields an
//! equal `State`, which is how restarts and independent verifiers recompute everything.
//!
//! Pure: no I/O, no clock. Time only enters through the records themselves.

pub mod diff;
mod entities;
pub mod governance;
pub mod history;
pub mod lineage;
pub mod money;
mod persist;
mod reject;
mod settle;

pub use diff::{model_diff, ModelDiff, TensorStatus};
pub use entities::{Actor, Contribution, Credited, Dataset, Grant, License, Model};
pub use governance::{
    ContributionRuling, Dispute, DisputeStatus, DisputeTarget, ModelRuling, QuotaUse, Review,
    ReviewState,
};
pub use history::{Effects, EntityKey, HistoryRead, MemoryHistory, NoHistory};
pub use lineage::{provenance, to_dot, to_mermaid, Provenance};
pub use money::{
    AccountBalance, Books, CurrencyTotals, Leg, Receipt, Role, SourceCount, SourceKey, SourceTotal,
    Statement, StatementLine, StatementTotal,
};
pub use persist::{EntityRow, LoadError};
pub use reject::Reject;
pub use settle::{Charge, Config};
pub use shoulders_license::{Decision, Effective};

use governance::GovPending;
use settle::PendingReceipt;
use shoulders_license::{check_derivation, check_max_royalty, Royalty, Source};
use shoulders_record::{
    Access, ActorRegister, Body, DataContribute, DatasetCreate, Kind, LicenseDefine, LicenseGrant,
    ModelRegister, PublicKey, Record, SignedRecord,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A 32-byte leaf hash, as the log computes it.
pub type LeafHash = [u8; 32];

/// Where an earlier record with a given (signer, client id) sits in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    pub index: u64,
    pub leaf_hash: LeafHash,
}

/// What an accepted record created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub index: u64,
    pub kind: Kind,
    /// The id of the thing created: handle, dataset id, model id or contribution index.
    pub subject: String,
}

/// Everything derived from the log so far.
///
/// The bounded part (entities, balances, counters) is always here. History (each record's
/// client id, receipts, legs) is kept in memory by [`State::new`] (`history` is `Some`), for
/// tests, `verify` and small tools; a ledger makes its state with [`State::without_history`]
/// and keeps history in its store, folding with [`State::apply_with`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    next_index: u64,
    actors: BTreeMap<String, Actor>,
    actor_by_key: HashMap<PublicKey, String>,
    datasets: BTreeMap<String, Dataset>,
    contributions: BTreeMap<u64, Contribution>,
    models: BTreeMap<String, Model>,
    licenses: BTreeMap<String, License>,
    /// `(target label, grantee handle)` → grants, where a target label is `model <id>` or
    /// `dataset <id>` (the same labels licence terms use to name their origin).
    grants: BTreeMap<(String, String), Vec<Grant>>,
    config: Option<Config>,
    books: Books,
    /// Contributions per contributor (derived; rebuilt on load).
    contributions_by: HashMap<String, Vec<u64>>,
    /// Every dispute by id (the log index of its `dispute.open`).
    disputes: BTreeMap<u64, governance::Dispute>,
    /// The open dispute of each target (derived; rebuilt on load).
    open_disputes: HashMap<governance::DisputeTarget, u64>,
    /// Open disputes per claimant (derived; rebuilt on load).
    open_by_claimant: HashMap<String, u32>,
    /// Per dataset: contributions attribution skips (pending or rejected in review, taken
    /// down). Derived; rebuilt on load.
    excluded: HashMap<String, BTreeSet<u64>>,
    /// `(dataset, contributor)` → quota used in the current window.
    quota_use: BTreeMap<(String, String), governance::QuotaUse>,
    /// Training credits per credited actor, in log order (derived from the models' training
    /// runs; rebuilt on load).
    credits_by: HashMap<String, Vec<Credited>>,
    history: Option<MemoryHistory>,
}

impl Default for State {
    fn default() -> Self {
        State::new()
    }
}

/// What the check phase computed for the commit phase.
enum Pending {
    Nothing,
    Dataset(Effective),
    Model(Effective),
    /// A balanced movement (deposit, withdrawal, claim).
    Legs(Vec<Leg>),
    Receipt(PendingReceipt),
    /// A contribution, with its quota use after it (when its dataset sets a quota).
    Contribute(Option<governance::QuotaUse>),
    Gov(GovPending),
}

/// The label licence terms use for a model or dataset.
pub fn model_label(id: &str) -> String {
    format!("model {id}")
}

/// The label licence terms use for a dataset.
pub fn dataset_label(id: &str) -> String {
    format!("dataset {id}")
}

impl State {
    /// An empty state that keeps its history in memory.
    pub fn new() -> Self {
        State {
            history: Some(MemoryHistory::default()),
            ..State::without_history()
        }
    }

    /// An empty state whose history lives elsewhere (a ledger's store): fold with
    /// [`State::apply_with`]; the history queries ([`State::statement`], [`State::receipts`],
    /// …) then answer from nothing.
    pub fn without_history() -> Self {
        State {
            next_index: 0,
            actors: BTreeMap::new(),
            actor_by_key: HashMap::new(),
            datasets: BTreeMap::new(),
            contributions: BTreeMap::new(),
            models: BTreeMap::new(),
            licenses: BTreeMap::new(),
            grants: BTreeMap::new(),
            config: None,
            books: Books::default(),
            contributions_by: HashMap::new(),
            disputes: BTreeMap::new(),
            open_disputes: HashMap::new(),
            open_by_claimant: HashMap::new(),
            excluded: HashMap::new(),
            quota_use: BTreeMap::new(),
            credits_by: HashMap::new(),
            history: None,
        }
    }

    /// The history kept in memory, if this state keeps it.
    pub fn history(&self) -> Option<&MemoryHistory> {
        self.history.as_ref()
    }

    /// The money books (balances and counters).
    pub fn books(&self) -> &Books {
        &self.books
    }

    /// Number of records folded (the log index the next record gets).
    pub fn size(&self) -> u64 {
        self.next_index
    }

    pub fn actor(&self, handle: &str) -> Option<&Actor> {
        self.actors.get(handle)
    }

    pub fn actor_by_key(&self, key: &PublicKey) -> Option<&Actor> {
        self.actor_by_key.get(key).and_then(|h| self.actors.get(h))
    }

    pub fn actors(&self) -> impl Iterator<Item = &Actor> {
        self.actors.values()
    }

    pub fn dataset(&self, id: &str) -> Option<&Dataset> {
        self.datasets.get(id)
    }

    pub fn datasets(&self) -> impl Iterator<Item = &Dataset> {
        self.datasets.values()
    }

    pub fn contribution(&self, index: u64) -> Option<&Contribution> {
        self.contributions.get(&index)
    }

    /// Every contribution, in log order.
    pub fn contributions(&self) -> impl Iterator<Item = &Contribution> {
        self.contributions.values()
    }

    pub fn model(&self, id: &str) -> Option<&Model> {
        self.models.get(id)
    }

    pub fn models(&self) -> impl Iterator<Item = &Model> {
        self.models.values()
    }

    /// Models in id order after `after` (exclusive; from the first when `None`).
    pub fn models_after<'a>(&'a self, after: Option<&str>) -> impl Iterator<Item = &'a Model> + 'a {
        after_key(&self.models, after)
    }

    pub fn model_count(&self) -> usize {
        self.models.len()
    }

    /// Actors in handle order after `after` (exclusive; from the first when `None`).
    pub fn actors_after<'a>(&'a self, after: Option<&str>) -> impl Iterator<Item = &'a Actor> + 'a {
        after_key(&self.actors, after)
    }

    pub fn actor_count(&self) -> usize {
        self.actors.len()
    }

    /// Datasets in id order after `after` (exclusive; from the first when `None`).
    pub fn datasets_after<'a>(
        &'a self,
        after: Option<&str>,
    ) -> impl Iterator<Item = &'a Dataset> + 'a {
        after_key(&self.datasets, after)
    }

    pub fn dataset_count(&self) -> usize {
        self.datasets.len()
    }

    pub fn license(&self, id: &str) -> Option<&License> {
        self.licenses.get(id)
    }

    pub fn licenses(&self) -> impl Iterator<Item = &License> {
        self.licenses.values()
    }

    /// Grants on `target_label` (`model <id>` / `dataset <id>`) to `grantee`.
    pub fn grants(&self, target_label: &str, grantee: &str) -> &[Grant] {
        self.grants
            .get(&(target_label.to_string(), grantee.to_string()))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Whether `grantee` holds an unexpired grant on `target_label` covering `use_tag`
    /// (a grant listing no uses covers every use).
    /// Does a licence time rule (an expiry of terms or of a grant) apply to `rec`? The writer
    /// puts a `ledger.clock` before such a record when the log's clock is stale, so the rule is
    /// judged at the time the log admitted it, not only at the signer's claim.
    pub fn needs_log_time(&self, rec: &Record) -> bool {
        let expires = |e: &Effective| e.expires.is_some();
        match &rec.body {
            Body::UsageReceipt(b) => self
                .models
                .get(&b.model_id)
                .is_some_and(|m| expires(&m.effective)),
            Body::ModelRegister(b) => {
                let signer = self.actor_by_key.get(&rec.signer);
                let grant_expires = |label: String| {
                    signer.is_some_and(|s| {
                        self.grants(&label, s)
                            .iter()
                            .any(|g| g.expires_at_ms.is_some())
                    })
                };
                b.parents.iter().any(|p| {
                    self.models
                        .get(&p.model_id)
                        .is_some_and(|m| expires(&m.effective))
                        || grant_expires(model_label(&p.model_id))
                }) || b.datasets.iter().any(|d| {
                    self.datasets.get(d).is_some_and(|d| expires(&d.effective))
                        || grant_expires(dataset_label(d))
                }) || b.license_id.as_ref().is_some_and(|l| {
                    self.licenses
                        .get(l)
                        .is_some_and(|l| l.terms.expires_at_ms.is_some())
                })
            }
            _ => false,
        }
    }

    pub fn has_grant(&self, target_label: &str, grantee: &str, use_tag: &str, now_ms: u64) -> bool {
        self.grants(target_label, grantee).iter().any(|g| {
            (g.uses.is_empty() || g.uses.iter().any(|u| u == use_tag))
                && g.expires_at_ms.is_none_or(|at| at > now_ms)
        })
    }

    /// May `actor` use model `model_id` for `use_tag` at `now_ms`, accepting at most
    /// `max_royalty_bps` of stacked upstream royalties (`None`: any)? Effective licence terms
    /// of the whole lineage, plus the price and royalties.
    pub fn check_use(
        &self,
        model_id: &str,
        use_tag: &str,
        territory: Option<&str>,
        now_ms: u64,
        max_royalty_bps: Option<u32>,
    ) -> Option<Decision> {
        let model = self.models.get(model_id)?;
        Some(shoulders_license::check_use(
            &model.effective,
            use_tag,
            territory,
            now_ms,
            max_royalty_bps,
        ))
    }

    /// The earlier record a signer sent under `client_id`, if any (idempotency look-up; from
    /// the history kept in memory).
    pub fn seen(&self, signer: &PublicKey, client_id: &str) -> Option<Seen> {
        self.history.as_ref()?.seen(signer, client_id)
    }

    /// Every ancestor of `model_id` (breadth-first, each once), nearest first.
    pub fn ancestors(&self, model_id: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        let mut queue: std::collections::VecDeque<&str> = std::collections::VecDeque::new();
        queue.push_back(model_id);
        while let Some(id) = queue.pop_front() {
            let Some(model) = self.models.get(id) else {
                continue;
            };
            for p in &model.parents {
                if seen.insert(p.model_id.clone()) {
                    out.push(p.model_id.clone());
                    queue.push_back(&p.model_id);
                }
            }
        }
        out
    }

    /// Every descendant of `model_id` (breadth-first, each once), nearest first: the models
    /// registered on top of it, directly or not. Costs O(descendants), not O(all models).
    pub fn descendants(&self, model_id: &str) -> Vec<String> {
        let Some(model) = self.models.get(model_id) else {
            return Vec::new();
        };
        lineage::walk(self, model, lineage::child_ids)
            .into_iter()
            .map(|(m, _)| m.model_id.clone())
            .collect()
    }

    /// Balance of `account` (an actor handle or a system account such as
    /// [`money::PROTOCOL`]) in `currency`, in micro-units.
    pub fn balance(&self, account: &str, currency: &str) -> i128 {
        self.books.balance(account, currency)
    }

    /// Every account with a balance, in account order.
    pub fn accounts(&self) -> Vec<AccountBalance> {
        self.books.accounts()
    }

    /// Deposits, withdrawals and holdings per currency, with the conservation check.
    pub fn totals(&self) -> Vec<CurrencyTotals> {
        self.books.totals()
    }

    /// Every credit and debit of `holder` with `from_ms <= ts < to_ms`, with causes and totals
    /// (from the history kept in memory; a ledger's statements come from its store).
    pub fn statement(&self, holder: &str, from_ms: Option<u64>, to_ms: Option<u64>) -> Statement {
        match &self.history {
            Some(h) => h.statement(&self.books, holder, from_ms, to_ms),
            None => {
                let (by_source, totals) = self.books.sources_of(holder);
                Statement {
                    holder: holder.to_string(),
                    from_ms,
                    to_ms,
                    lines: Vec::new(),
                    by_source,
                    totals,
                }
            }
        }
    }

    /// The settled receipt appended at `index` (history kept in memory).
    pub fn receipt(&self, index: u64) -> Option<&Receipt> {
        self.history.as_ref()?.receipt(index)
    }

    /// Settled receipts in log order (history kept in memory).
    pub fn receipts(&self) -> impl Iterator<Item = &Receipt> {
        self.history.iter().flat_map(|h| h.receipts())
    }

    /// The legs of a settled receipt (history kept in memory).
    pub fn receipt_legs(&self, index: u64) -> &[Leg] {
        self.history
            .as_ref()
            .map_or(&[][..], |h| h.receipt_legs(index))
    }

    /// Every leg posted so far, in log order (history kept in memory).
    pub fn legs(&self) -> &[Leg] {
        self.history.as_ref().map_or(&[][..], |h| h.legs())
    }

    /// Receipts settled so far (a counter).
    pub fn receipts_count(&self) -> u64 {
        self.books.receipts_count
    }

    /// Legs posted so far (a counter).
    pub fn legs_count(&self) -> u64 {
        self.books.legs_count
    }

    /// Receipts settled for `model_id` (a counter).
    pub fn model_calls(&self, model_id: &str) -> u64 {
        self.books.model_calls.get(model_id).map_or(0, |u| u.calls)
    }

    /// Calls of `model_id` and what they charged (counters).
    pub fn model_usage(&self, model_id: &str) -> Option<&money::ModelUsage> {
        self.books.model_calls.get(model_id)
    }

    /// Receipts that paid `holder` a data share: outputs that used their data (a counter).
    pub fn data_share_receipts(&self, holder: &str) -> u64 {
        self.books
            .data_share_receipts
            .get(holder)
            .copied()
            .unwrap_or(0)
    }

    /// Contributions of `handle`, in log order (an index kept with the state).
    pub fn contributions_of(&self, handle: &str) -> &[u64] {
        self.contributions_by
            .get(handle)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The training runs that credit `handle`, in log order: each model and the role it is
    /// credited for (an index kept with the state). Credits are recognition, not payment.
    pub fn credits_of(&self, handle: &str) -> &[Credited] {
        self.credits_by
            .get(handle)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Number of receipts that named `contribution` (copies credited to the original).
    pub fn contribution_uses(&self, contribution: u64) -> u64 {
        self.books
            .contribution_uses
            .get(&contribution)
            .copied()
            .unwrap_or(0)
    }

    /// Fold one record appended at log position `index` with leaf hash `leaf_hash`, keeping
    /// its history in memory (a state made by [`State::new`]).
    ///
    /// `record` must already have passed signature verification. `index` must equal
    /// [`State::size`]: the fold is strictly sequential.
    pub fn apply(
        &mut self,
        index: u64,
        leaf_hash: LeafHash,
        record: &SignedRecord,
    ) -> Result<Applied, Reject> {
        let mut history = self
            .history
            .take()
            .expect("State::apply keeps history in memory: use apply_with");
        let result = self.apply_with(index, leaf_hash, record, &history);
        let applied = result.map(|(applied, effects)| {
            history.absorb(effects);
            applied
        });
        self.history = Some(history);
        applied
    }

    /// Fold one record, reading history through `history`; returns what the record adds to
    /// history and which bounded-state keys it changed, for the caller to store.
    pub fn apply_with(
        &mut self,
        index: u64,
        leaf_hash: LeafHash,
        record: &SignedRecord,
        history: &dyn HistoryRead,
    ) -> Result<(Applied, Effects), Reject> {
        assert_eq!(
            index, self.next_index,
            "records must be folded in log order"
        );
        let rec = record.record();
        let (signer_handle, subject, pending) = self.check_phase(index, rec, history)?;
        // Commit phase: infallible.
        let mut effects = self.commit(index, &signer_handle, rec, pending);
        effects.seen = Some((rec.signer, rec.client_id.clone(), Seen { index, leaf_hash }));
        effects.changed.sort();
        effects.changed.dedup();
        self.next_index += 1;
        Ok((
            Applied {
                index,
                kind: rec.kind,
                subject,
            },
            effects,
        ))
    }

    /// Would `record` be accepted if it were folded next? Runs exactly the checks of
    /// [`State::apply`] and changes nothing, so a caller can refuse a record early (e.g. before
    /// storing the content a contribution names); the fold itself still decides.
    pub fn check(&self, record: &SignedRecord) -> Result<(), Reject> {
        match &self.history {
            Some(h) => self.check_with(record, h),
            None => self.check_with(record, &NoHistory),
        }
    }

    /// [`State::check`] reading history through `history`.
    pub fn check_with(
        &self,
        record: &SignedRecord,
        history: &dyn HistoryRead,
    ) -> Result<(), Reject> {
        self.check_phase(self.next_index, record.record(), history)
            .map(|_| ())
    }

    /// The check phase of [`State::apply`]: the signer's handle, the subject and what the commit
    /// phase will do. Nothing here mutates `self`.
    fn check_phase(
        &self,
        index: u64,
        rec: &Record,
        history: &dyn HistoryRead,
    ) -> Result<(String, String, Pending), Reject> {
        if let Some(seen) = history.seen(&rec.signer, &rec.client_id) {
            return Err(Reject::DuplicateId {
                client_id: rec.client_id.clone(),
                index: seen.index,
            });
        }
        let signer_handle = match &rec.body {
            Body::ActorRegister(b) => {
                self.check_actor_register(&rec.signer, b)?;
                b.handle.clone()
            }
            _ => match self.actor_by_key.get(&rec.signer) {
                Some(h) => h.clone(),
                None => return Err(Reject::SignerUnknown(rec.signer.to_base64())),
            },
        };
        let (subject, pending) = match &rec.body {
            Body::ActorRegister(b) => (b.handle.clone(), Pending::Nothing),
            Body::DatasetCreate(b) => {
                let effective = self.check_dataset_create(&signer_handle, b)?;
                (b.dataset_id.clone(), Pending::Dataset(effective))
            }
            Body::DataContribute(b) => {
                self.check_contribute(&signer_handle, b)?;
                let quota = self.check_quota(&signer_handle, self.rule_time_ms(rec.ts_ms), b)?;
                (index.to_string(), Pending::Contribute(quota))
            }
            Body::ModelRegister(b) => {
                let rule_ms = self.rule_time_ms(rec.ts_ms);
                let effective = self.check_model_register(&signer_handle, rule_ms, b)?;
                (b.model_id.clone(), Pending::Model(effective))
            }
            Body::LicenseDefine(b) => {
                self.check_license_define(&signer_handle, b)?;
                (b.license_id.clone(), Pending::Nothing)
            }
            Body::LicenseGrant(b) => {
                self.check_license_grant(&signer_handle, b)?;
                (b.license_id.clone(), Pending::Nothing)
            }
            Body::LedgerConfig(b) => {
                self.check_config(&signer_handle, b)?;
                (b.operator.clone(), Pending::Nothing)
            }
            Body::LedgerClock(b) => {
                self.check_clock(&signer_handle, b)?;
                (signer_handle.clone(), Pending::Nothing)
            }
            Body::ActorUpdate(b) => {
                let legs = self.check_actor_update(&signer_handle, index, rec.ts_ms, b);
                (signer_handle.clone(), Pending::Legs(legs))
            }
            Body::FundsDeposit(b) => {
                let legs = self.check_deposit(&signer_handle, index, rec.ts_ms, b)?;
                (b.account.clone(), Pending::Legs(legs))
            }
            Body::FundsWithdraw(b) => {
                let legs = self.check_withdraw(&signer_handle, index, rec.ts_ms, b)?;
                (signer_handle.clone(), Pending::Legs(legs))
            }
            Body::UsageReceipt(b) => {
                let pending = self.check_receipt(&signer_handle, index, rec.ts_ms, b, history)?;
                (b.usage_id.clone(), Pending::Receipt(pending))
            }
            Body::DisputeOpen(b) => {
                let p = self.check_dispute_open(&signer_handle, index, rec.ts_ms, b)?;
                (index.to_string(), Pending::Gov(p))
            }
            Body::DisputeRule(b) => {
                let p = self.check_dispute_rule(&signer_handle, index, rec.ts_ms, b)?;
                (b.dispute.to_string(), Pending::Gov(p))
            }
            Body::ContributionReview(b) => {
                let p = self.check_review(&signer_handle, b)?;
                (b.contribution.to_string(), Pending::Gov(p))
            }
        };
        Ok((signer_handle, subject, pending))
    }

    fn check_actor_register(&self, key: &PublicKey, b: &ActorRegister) -> Result<(), Reject> {
        if let Some(h) = self.actor_by_key.get(key) {
            return Err(Reject::ActorKeyExists(h.clone()));
        }
        if self.actors.contains_key(&b.handle) {
            return Err(Reject::HandleTaken(b.handle.clone()));
        }
        Ok(())
    }

    fn check_namespace(signer: &str, id: &str) -> Result<(), Reject> {
        match id.split_once('/') {
            Some((ns, _)) if ns == signer => Ok(()),
            _ => Err(Reject::NamespaceMismatch {
                id: id.to_string(),
                expected: signer.to_string(),
            }),
        }
    }

    fn check_dataset_create(&self, signer: &str, b: &DatasetCreate) -> Result<Effective, Reject> {
        Self::check_namespace(signer, &b.dataset_id)?;
        if self.datasets.contains_key(&b.dataset_id) {
            return Err(Reject::DatasetExists(b.dataset_id.clone()));
        }
        if let Some(unknown) = b.allowlist.iter().find(|h| !self.actors.contains_key(*h)) {
            return Err(Reject::ActorUnknown(unknown.clone()));
        }
        let label = dataset_label(&b.dataset_id);
        match &b.license_id {
            None => Ok(Effective::unlicensed(&label)),
            Some(id) => {
                let license = self
                    .licenses
                    .get(id)
                    .ok_or_else(|| Reject::LicenseUnknown(id.clone()))?;
                Ok(Effective::from_terms(&label, id, &license.terms))
            }
        }
    }

    fn check_license_define(&self, signer: &str, b: &LicenseDefine) -> Result<(), Reject> {
        Self::check_namespace(signer, &b.license_id)?;
        if self.licenses.contains_key(&b.license_id) {
            return Err(Reject::LicenseExists(b.license_id.clone()));
        }
        Ok(())
    }

    fn check_license_grant(&self, signer: &str, b: &LicenseGrant) -> Result<(), Reject> {
        if !self.licenses.contains_key(&b.license_id) {
            return Err(Reject::LicenseUnknown(b.license_id.clone()));
        }
        if !self.actors.contains_key(&b.grantee) {
            return Err(Reject::ActorUnknown(b.grantee.clone()));
        }
        let (what, owner) = match (&b.model_id, &b.dataset_id) {
            (Some(m), _) => {
                let model = self
                    .models
                    .get(m)
                    .ok_or_else(|| Reject::ModelUnknown(m.clone()))?;
                (model_label(m), &model.owner)
            }
            (None, Some(d)) => {
                let dataset = self
                    .datasets
                    .get(d)
                    .ok_or_else(|| Reject::DatasetUnknown(d.clone()))?;
                (dataset_label(d), &dataset.owner)
            }
            (None, None) => unreachable!("validated: exactly one target"),
        };
        if owner != signer {
            return Err(Reject::NotOwner {
                what,
                owner: owner.clone(),
            });
        }
        Ok(())
    }

    fn check_contribute(&self, signer: &str, b: &DataContribute) -> Result<(), Reject> {
        let dataset = self
            .datasets
            .get(&b.dataset_id)
            .ok_or_else(|| Reject::DatasetUnknown(b.dataset_id.clone()))?;
        if !dataset.accepts(signer) {
            return Err(Reject::ContributionForbidden {
                dataset: b.dataset_id.clone(),
                contributor: signer.to_string(),
                access: dataset.access_name(),
            });
        }
        Ok(())
    }

    fn check_model_register(
        &self,
        signer: &str,
        ts_ms: u64,
        b: &ModelRegister,
    ) -> Result<Effective, Reject> {
        Self::check_namespace(signer, &b.model_id)?;
        if self.models.contains_key(&b.model_id) {
            return Err(Reject::ModelExists(b.model_id.clone()));
        }
        for p in &b.parents {
            if p.model_id == b.model_id {
                return Err(Reject::LineageCycle(b.model_id.clone()));
            }
            if !self.models.contains_key(&p.model_id) {
                return Err(Reject::ModelUnknown(p.model_id.clone()));
            }
        }
        // Parents must already exist and models are immutable, so a new model can never be an
        // ancestor of its parents: the lineage graph stays acyclic by construction.
        debug_assert!(b
            .parents
            .iter()
            .all(|p| !self.ancestors(&p.model_id).contains(&b.model_id)));
        if let Some(d) = b.datasets.iter().find(|d| !self.datasets.contains_key(*d)) {
            return Err(Reject::DatasetUnknown(d.clone()));
        }
        // Credits name actors, so a credit always leads to someone's page.
        if let Some(c) = b
            .training
            .iter()
            .flat_map(|t| &t.credits)
            .find(|c| !self.actors.contains_key(&c.actor))
        {
            return Err(Reject::ActorUnknown(c.actor.clone()));
        }
        self.check_tdm(b)?;
        let own = match &b.license_id {
            None => None,
            Some(id) => {
                let license = self
                    .licenses
                    .get(id)
                    .ok_or_else(|| Reject::LicenseUnknown(id.clone()))?;
                Some((id.as_str(), &license.terms))
            }
        };
        // Flow-down: every parent's effective terms and every dataset's licence constrain the
        // new model; its own licence may not be more permissive where they forbid.
        let mut sources = Vec::with_capacity(b.parents.len() + b.datasets.len());
        for p in &b.parents {
            let parent = &self.models[&p.model_id];
            let royalty = parent
                .license_id
                .as_ref()
                .and_then(|l| self.licenses.get(l))
                .map(|l| {
                    Royalty::from_terms(&parent.model_id, &parent.owner, &l.license_id, &l.terms)
                });
            sources.push(Source {
                label: model_label(&p.model_id),
                effective: &parent.effective,
                royalty,
            });
        }
        for d in &b.datasets {
            sources.push(Source {
                label: dataset_label(d),
                effective: &self.datasets[d].effective,
                royalty: None,
            });
        }
        let approved = |label: &str| self.has_grant(label, signer, "derivative", ts_ms);
        let effective =
            check_derivation(&model_label(&b.model_id), own, &sources, ts_ms, &approved)?;
        if let Some(max) = b.max_royalty_bps {
            check_max_royalty(&effective, max)?;
        }
        Ok(effective)
    }

    fn commit(
        &mut self,
        index: u64,
        signer: &str,
        rec: &shoulders_record::Record,
        pending: Pending,
    ) -> Effects {
        let mut fx = Effects::default();
        match &rec.body {
            Body::ActorRegister(b) => {
                self.actor_by_key.insert(rec.signer, b.handle.clone());
                self.actors
                    .insert(b.handle.clone(), Actor::new(index, rec, b));
                fx.changed.push(EntityKey::Actor(b.handle.clone()));
            }
            Body::DatasetCreate(b) => {
                let Pending::Dataset(effective) = pending else {
                    unreachable!("checked")
                };
                self.datasets.insert(
                    b.dataset_id.clone(),
                    Dataset::new(index, signer, rec, b, effective),
                );
                fx.changed.push(EntityKey::Dataset(b.dataset_id.clone()));
            }
            Body::DataContribute(b) => {
                self.commit_contribution_money(index, &b.content_hash);
                let dataset = self.datasets.get_mut(&b.dataset_id).expect("checked");
                dataset.add(index, signer, b);
                let reviewed = dataset.review && dataset.owner != signer;
                if reviewed {
                    self.excluded
                        .entry(b.dataset_id.clone())
                        .or_default()
                        .insert(index);
                }
                if let Pending::Contribute(Some(used)) = pending {
                    let key = (b.dataset_id.clone(), signer.to_string());
                    fx.changed
                        .push(EntityKey::QuotaUse(key.0.clone(), key.1.clone()));
                    self.quota_use.insert(key, used);
                }
                self.contributions
                    .insert(index, Contribution::new(index, signer, rec, b, reviewed));
                self.contributions_by
                    .entry(signer.to_string())
                    .or_default()
                    .push(index);
                fx.changed.push(EntityKey::Dataset(b.dataset_id.clone()));
                fx.changed.push(EntityKey::Contribution(index));
            }
            Body::ModelRegister(b) => {
                for p in &b.parents {
                    let parent = self.models.get_mut(&p.model_id).expect("checked");
                    parent.children.push(b.model_id.clone());
                }
                let Pending::Model(effective) = pending else {
                    unreachable!("checked")
                };
                self.models.insert(
                    b.model_id.clone(),
                    Model::new(index, signer, rec, b, effective),
                );
                self.index_credits(&b.model_id, b.training.as_ref());
                fx.changed.push(EntityKey::Model(b.model_id.clone()));
            }
            Body::LicenseDefine(b) => {
                self.licenses
                    .insert(b.license_id.clone(), License::new(index, signer, rec, b));
                fx.changed.push(EntityKey::License(b.license_id.clone()));
            }
            Body::LicenseGrant(b) => {
                let target = match (&b.model_id, &b.dataset_id) {
                    (Some(m), _) => model_label(m),
                    (None, Some(d)) => dataset_label(d),
                    (None, None) => unreachable!("validated"),
                };
                fx.changed
                    .push(EntityKey::Grants(target.clone(), b.grantee.clone()));
                self.grants
                    .entry((target, b.grantee.clone()))
                    .or_default()
                    .push(Grant::new(index, signer, b));
            }
            Body::LedgerConfig(b) => {
                self.commit_config(index, b);
                fx.changed.push(EntityKey::Config);
            }
            Body::LedgerClock(b) => {
                self.commit_clock(b);
                fx.changed.push(EntityKey::Config);
            }
            Body::ActorUpdate(b) => {
                let actor = self.actors.get_mut(signer).expect("signer is registered");
                actor.update(index, b);
                fx.changed.push(EntityKey::Actor(signer.to_string()));
                let Pending::Legs(legs) = pending else {
                    unreachable!("checked")
                };
                fx.legs = self.books.post(legs, &mut fx.changed);
            }
            Body::FundsDeposit(b) => {
                let Pending::Legs(legs) = pending else {
                    unreachable!("checked")
                };
                fx.legs = self.books.post(legs, &mut fx.changed);
                let currency = self.books.intern(&b.currency);
                *self.books.deposits.entry(currency.clone()).or_insert(0) +=
                    settle_amount(&b.amount_micros);
                fx.changed.push(EntityKey::Deposits(currency));
            }
            Body::FundsWithdraw(b) => {
                let Pending::Legs(legs) = pending else {
                    unreachable!("checked")
                };
                fx.legs = self.books.post(legs, &mut fx.changed);
                let currency = self.books.intern(&b.currency);
                *self.books.withdrawals.entry(currency.clone()).or_insert(0) +=
                    settle_amount(&b.amount_micros);
                fx.changed.push(EntityKey::Withdrawals(currency));
            }
            Body::UsageReceipt(_) => {
                let Pending::Receipt(p) = pending else {
                    unreachable!("checked")
                };
                self.commit_receipt(p, &mut fx);
            }
            Body::DisputeOpen(_) => {
                let Pending::Gov(GovPending::Open(d, legs)) = pending else {
                    unreachable!("checked")
                };
                self.commit_dispute_open(*d, legs, &mut fx);
            }
            Body::DisputeRule(b) => {
                let Pending::Gov(GovPending::Rule(ruling)) = pending else {
                    unreachable!("checked")
                };
                self.commit_dispute_rule(index, signer, b, *ruling, &mut fx);
            }
            Body::ContributionReview(b) => {
                self.commit_review(index, b, &mut fx);
            }
        }
        fx
    }
}

impl State {
    /// Add a model's training credits to the per-actor index (the fold and `from_rows` both
    /// call this, in log order, so a loaded state has the same index).
    fn index_credits(&mut self, model_id: &str, training: Option<&shoulders_record::TrainingRun>) {
        for c in training.iter().flat_map(|t| &t.credits) {
            self.credits_by
                .entry(c.actor.clone())
                .or_default()
                .push(Credited {
                    model_id: model_id.to_string(),
                    role: c.role,
                });
        }
    }
}

/// A validated amount string as `i128` micro-units.
fn settle_amount(s: &str) -> i128 {
    let v: u128 = s.parse().expect("validated amount");
    i128::try_from(v).expect("amounts are at most 10^18")
}

impl Dataset {
    fn accepts(&self, handle: &str) -> bool {
        match self.access {
            Access::Open => true,
            Access::Owner => self.owner == handle,
            Access::Allowlist => self.owner == handle || self.allowlist.iter().any(|h| h == handle),
        }
    }

    fn access_name(&self) -> &'static str {
        match self.access {
            Access::Open => "open",
            Access::Owner => "owner only",
            Access::Allowlist => "owner and allowlist",
        }
    }
}

/// The values of `map` whose keys sort after `after` (all of them when `None`).
fn after_key<'a, V>(
    map: &'a BTreeMap<String, V>,
    after: Option<&str>,
) -> impl Iterator<Item = &'a V> + 'a {
    use std::ops::Bound;
    let start = match after {
        Some(a) => Bound::Excluded(a.to_string()),
        None => Bound::Unbounded,
    };
    map.range::<String, _>((start, Bound::Unbounded))
        .map(|(_, v)| v)
}
