//! Governance kinds of the fold: `dispute.open`, `dispute.rule` and `contribution.review`,
//! plus the rules they feed into contributions, receipts and registrations (quotas,
//! do-not-train marks, who is credited).
//!
//! * **Disputes.** Any actor contests a contribution or a model. While the dispute is open,
//!   what the disputed party earns from that item is held in a per-dispute escrow account
//!   ([`escrow_account`]); a ruling releases it to the disputed party (dismissed) or awards it
//!   to the rightful party (upheld), and settles the claimant's bond. An upheld dispute about a
//!   contribution either **redirects** its credit, past escrow and every future receipt, to the
//!   original it copies (when the dispute names one), or **takes it down**: excluded from
//!   attribution at once and earning nothing. An upheld dispute about a model sends the
//!   model's future owner earnings to the claimant.
//! * **Reviewed datasets.** Contributions of anyone but the owner stay pending until the owner
//!   accepts or rejects them, once; pending and rejected contributions earn nothing and are
//!   excluded from attribution.
//! * **Quotas** per contributor and fixed window; **do-not-train marks** refuse registrations.

use crate::money::{Leg, Role};
use crate::settle::{amount, Legs};
use crate::{Contribution, Reject, State};
use serde::{Deserialize, Serialize};
use shoulders_record::{
    Arbiter, Bond, ContributionReview, DataContribute, DisputeOpen, DisputeRule, ModelRegister,
    ReviewDecision, Verdict,
};
use std::collections::BTreeMap;

/// Most disputes one claimant may have open at once.
pub const MAX_OPEN_DISPUTES_PER_CLAIMANT: u32 = 64;
/// Most redirections followed from one contribution to the original it was ruled to copy.
/// Each upheld ruling resolves its original's own redirection, so chains grow only when an
/// original is itself later ruled against.
pub const MAX_REDIRECT_HOPS: usize = 64;
/// Most reserved contributions a `E_TDM_RESERVED` refusal names (it also gives the count).
pub const MAX_NAMED_RESERVED: usize = 16;

/// The escrow account of one dispute: a system account, so its balances are the money held.
pub fn escrow_account(dispute: u64) -> String {
    format!("@escrow/{dispute}")
}

/// The dispute id of an escrow account name.
pub fn escrow_dispute(account: &str) -> Option<u64> {
    account.strip_prefix("@escrow/")?.parse().ok()
}

/// Where a contribution stands in a reviewed dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewState {
    Pending,
    Accepted,
    Rejected,
}

/// A contribution's review (only in reviewed datasets, and not for the owner's own).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub state: ReviewState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Log index of the `contribution.review` record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewed_at: Option<u64>,
}

/// An upheld dispute against a contribution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContributionRuling {
    pub dispute: u64,
    /// The original its credit now goes to; `None`: taken down (credited to nobody).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_to: Option<u64>,
}

/// An upheld dispute against a model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRuling {
    pub dispute: u64,
    /// Who now receives the model owner's earnings from it.
    pub earnings_to: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisputeStatus {
    Open,
    Upheld,
    Dismissed,
}

/// What a dispute is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DisputeTarget {
    Contribution(u64),
    Model(String),
}

impl DisputeTarget {
    fn label(&self) -> String {
        match self {
            DisputeTarget::Contribution(c) => format!("contribution {c}"),
            DisputeTarget::Model(m) => format!("model {m}"),
        }
    }
}

/// A `dispute.open` record and what became of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispute {
    /// Log index of the `dispute.open` record.
    pub id: u64,
    pub claimant: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contribution: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// The disputed party: the contributor or the model's owner.
    pub respondent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<u64>,
    pub evidence: Vec<String>,
    pub statement: String,
    /// Who rules: the dataset's owner, or the operator (always for models, and when the owner
    /// is a party).
    pub arbiter: Arbiter,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bond: Option<Bond>,
    pub opened_at: u64,
    pub opened_ts_ms: u64,
    pub status: DisputeStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ruled_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ruled_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Earnings the ruling moved out of escrow, per currency (decimal micro-units), and to whom.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub escrow_released_micros: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escrow_to: Option<String>,
    /// Upheld with an original: what the copy earned before the dispute, taken back from its
    /// contributor's unclaimed earnings and account and paid to the original's contributor...
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub clawed_back_micros: BTreeMap<String, String>,
    /// ...and what could not be, because it had already been withdrawn or spent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub clawback_short_micros: BTreeMap<String, String>,
}

impl Dispute {
    pub fn target(&self) -> DisputeTarget {
        match (&self.contribution, &self.model_id) {
            (Some(c), _) => DisputeTarget::Contribution(*c),
            (None, Some(m)) => DisputeTarget::Model(m.clone()),
            (None, None) => unreachable!("validated: exactly one target"),
        }
    }
}

/// One contributor's use of a dataset's quota in its current window.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaUse {
    /// `floor(time / window_ms)` of the window counted; never goes back.
    pub window: u64,
    pub count: u64,
    pub bytes: u64,
}

/// What a ruling does, computed by the check phase.
pub(crate) struct Ruling {
    pub verdict: Verdict,
    pub legs: Vec<Leg>,
    pub released: BTreeMap<String, String>,
    pub escrow_to: Option<String>,
    /// For an upheld contribution dispute: the resolved original (None: taken down).
    pub redirect_to: Option<u64>,
    pub clawed_back: BTreeMap<String, String>,
    pub clawback_short: BTreeMap<String, String>,
}

/// What the check phase computed for a governance record's commit.
pub(crate) enum GovPending {
    Open(Box<Dispute>, Vec<Leg>),
    Rule(Box<Ruling>),
    Review,
}

impl State {
    /// A dispute by id (the log index of its `dispute.open`).
    pub fn dispute(&self, id: u64) -> Option<&Dispute> {
        self.disputes.get(&id)
    }

    /// Every dispute, in log order.
    pub fn disputes(&self) -> impl DoubleEndedIterator<Item = &Dispute> {
        self.disputes.values()
    }

    /// Disputes with an id below `before` (all when `None`), newest first: a range, so a deep
    /// page costs no more than the first.
    pub fn disputes_before(&self, before: Option<u64>) -> impl Iterator<Item = &Dispute> {
        self.disputes
            .range(..before.unwrap_or(u64::MAX))
            .rev()
            .map(|(_, d)| d)
    }

    pub fn dispute_count(&self) -> usize {
        self.disputes.len()
    }

    /// The open dispute about `target`, if any.
    pub fn open_dispute(&self, target: &DisputeTarget) -> Option<&Dispute> {
        self.open_disputes
            .get(target)
            .and_then(|id| self.disputes.get(id))
    }

    /// Contributions of `dataset_id` that attribution must skip right now: pending or rejected
    /// in review, or taken down by a ruling. A contribution redirected to an original stays
    /// attributable: its credit follows the redirection in the fold.
    pub fn attribution_excluded(&self, dataset_id: &str) -> std::collections::BTreeSet<u64> {
        self.excluded.get(dataset_id).cloned().unwrap_or_default()
    }

    /// The exclusions [`State::attribution_excluded`] gave when the log held `at` records: what
    /// the gateway applied to a receipt appended at `at` (an audit re-derives it with these).
    ///
    /// Exact because each change of standing keeps the log index it took effect at: a review is
    /// decided once (`reviewed_at`; pending before it), and an upheld ruling's dispute keeps
    /// `ruled_at`. Contributions appended at or after `at` are not listed (no index built
    /// before `at` holds them).
    pub fn attribution_excluded_at(
        &self,
        dataset_id: &str,
        at: u64,
    ) -> std::collections::BTreeSet<u64> {
        let Some(dataset) = self.datasets.get(dataset_id) else {
            return Default::default();
        };
        dataset
            .contributions
            .iter()
            .copied()
            .filter(|&i| i < at)
            .filter(|i| {
                let c = &self.contributions[i];
                let reviewed_out = c.review.as_ref().is_some_and(|r| match r.reviewed_at {
                    Some(when) if when < at => r.state != ReviewState::Accepted,
                    // Not yet decided at `at`: pending then.
                    _ => true,
                });
                let taken_down = c.ruled_against.as_ref().is_some_and(|r| {
                    r.redirect_to.is_none()
                        && self
                            .disputes
                            .get(&r.dispute)
                            .and_then(|d| d.ruled_at)
                            .is_some_and(|when| when < at)
                });
                reviewed_out || taken_down
            })
            .collect()
    }

    /// Which of `contributions` carry a text-and-data-mining reservation (sorted, each once):
    /// an attribution report lists them, so reserved content found in an output is visible.
    pub fn tdm_reserved_among(&self, contributions: impl IntoIterator<Item = u64>) -> Vec<u64> {
        let set: std::collections::BTreeSet<u64> = contributions
            .into_iter()
            .filter(|c| self.contributions.get(c).is_some_and(|c| c.tdm_reservation))
            .collect();
        set.into_iter().collect()
    }

    /// May `c` be credited at all (not pending, not rejected, not taken down)?
    pub(crate) fn creditable(c: &Contribution) -> bool {
        let reviewed_out = c
            .review
            .as_ref()
            .is_some_and(|r| r.state != ReviewState::Accepted);
        let taken_down = c
            .ruled_against
            .as_ref()
            .is_some_and(|r| r.redirect_to.is_none());
        !reviewed_out && !taken_down
    }

    /// Keep the attribution exclusions of `index`'s dataset in step with its standing (the
    /// same rule `from_rows` rebuilds them with).
    fn refresh_excluded(&mut self, index: u64) {
        let c = &self.contributions[&index];
        if !Self::creditable(c) {
            self.excluded
                .entry(c.dataset_id.clone())
                .or_default()
                .insert(index);
        } else if let Some(set) = self.excluded.get_mut(&c.dataset_id) {
            set.remove(&index);
            if set.is_empty() {
                self.excluded.remove(&c.dataset_id);
            }
        }
    }

    /// Follow upheld rulings from `index` to the contribution its credit goes to.
    fn follow_redirects(&self, mut index: u64) -> u64 {
        for _ in 0..MAX_REDIRECT_HOPS {
            match self.contributions[&index]
                .ruled_against
                .as_ref()
                .and_then(|r| r.redirect_to)
            {
                Some(next) => index = next,
                None => break,
            }
        }
        index
    }

    /// The contribution a receipt naming `named` credits, or `None` when it earns nothing.
    ///
    /// A byte-identical copy is credited to the earliest creditable contribution of its content
    /// (the named one itself if none earlier is); upheld rulings then redirect the credit to the
    /// original; pending, rejected and taken-down contributions earn nothing.
    pub(crate) fn credited_contribution(&self, named: &Contribution) -> Option<u64> {
        let first = self.books.content_first[&named.content_hash];
        // Nothing pending, rejected, disputed or ruled on anywhere: every contribution is
        // creditable and nothing is redirected (the common case, and the settlement hot path).
        if self.excluded.is_empty() && self.disputes.is_empty() {
            return Some(first);
        }
        let start = if Self::creditable(&self.contributions[&first]) {
            first
        } else {
            named.index
        };
        let end = self.follow_redirects(start);
        Self::creditable(&self.contributions[&end]).then_some(end)
    }

    /// The escrow a payment to `respondent` for `target` is held in, if a dispute is open.
    pub(crate) fn escrow_for(&self, target: &DisputeTarget) -> Option<u64> {
        self.open_disputes.get(target).copied()
    }

    /// The quota check for a new contribution by `signer` at rule time `now_ms`.
    pub(crate) fn check_quota(
        &self,
        signer: &str,
        now_ms: u64,
        b: &DataContribute,
    ) -> Result<Option<QuotaUse>, Reject> {
        let dataset = &self.datasets[&b.dataset_id];
        let Some(q) = &dataset.quota else {
            return Ok(None);
        };
        if dataset.owner == signer {
            return Ok(None);
        }
        let used = self
            .quota_use
            .get(&(b.dataset_id.clone(), signer.to_string()))
            .cloned()
            .unwrap_or_default();
        // Fixed windows that never go back: a back-dated record counts in the current window.
        let window = (now_ms / q.window_ms).max(used.window);
        let (count, bytes) = if window == used.window {
            (used.count, used.bytes)
        } else {
            (0, 0)
        };
        let next = QuotaUse {
            window,
            count: count + 1,
            bytes: bytes.saturating_add(b.byte_size),
        };
        let resets_at_ms = (window + 1).saturating_mul(q.window_ms);
        let over = |what: &'static str, used: u64, adding: u64, limit: u64| Reject::QuotaExceeded {
            dataset: b.dataset_id.clone(),
            contributor: signer.to_string(),
            what,
            used,
            adding,
            limit,
            window_ms: q.window_ms,
            resets_at_ms,
        };
        if let Some(max) = q.max_count {
            if next.count > max {
                return Err(over("contributions", count, 1, max));
            }
        }
        if let Some(max) = q.max_bytes {
            if next.bytes > max {
                return Err(over("bytes", bytes, b.byte_size, max));
            }
        }
        Ok(Some(next))
    }

    /// Refuse a registration that declares training on datasets holding contributions with a
    /// text-and-data-mining reservation (rejected and taken-down ones are not in the dataset).
    pub(crate) fn check_tdm(&self, b: &ModelRegister) -> Result<(), Reject> {
        for d in &b.datasets {
            let dataset = &self.datasets[d];
            let reserved: Vec<u64> = dataset
                .tdm_reserved
                .iter()
                .copied()
                .filter(|c| {
                    let c = &self.contributions[c];
                    let rejected = c
                        .review
                        .as_ref()
                        .is_some_and(|r| r.state == ReviewState::Rejected);
                    let taken_down = c.ruled_against.is_some();
                    !rejected && !taken_down
                })
                .collect();
            if !reserved.is_empty() {
                return Err(Reject::TdmReserved {
                    model_id: b.model_id.clone(),
                    dataset: d.clone(),
                    count: reserved.len(),
                    contributions: reserved.into_iter().take(MAX_NAMED_RESERVED).collect(),
                });
            }
        }
        Ok(())
    }

    /// The handle of whoever rules on `dispute` now.
    fn arbiter_handle(&self, arbiter: Arbiter, contribution: Option<u64>) -> Option<String> {
        match arbiter {
            Arbiter::Operator => self.config.as_ref().map(|c| c.operator.clone()),
            Arbiter::Owner => {
                let c = &self.contributions[&contribution?];
                Some(self.datasets[&c.dataset_id].owner.clone())
            }
        }
    }

    pub(crate) fn check_dispute_open(
        &self,
        signer: &str,
        index: u64,
        ts_ms: u64,
        b: &DisputeOpen,
    ) -> Result<GovPending, Reject> {
        let (target, respondent, policy) = match (&b.contribution, &b.model_id) {
            (Some(c), _) => {
                let contribution = self
                    .contributions
                    .get(c)
                    .ok_or(Reject::ContributionUnknown(*c))?;
                if contribution.ruled_against.is_some() {
                    return Err(Reject::DisputeInvalid(format!(
                        "contribution {c} was already ruled against"
                    )));
                }
                let dataset = &self.datasets[&contribution.dataset_id];
                (
                    DisputeTarget::Contribution(*c),
                    contribution.contributor.clone(),
                    dataset.disputes.clone(),
                )
            }
            (None, Some(m)) => {
                let model = self
                    .models
                    .get(m)
                    .ok_or_else(|| Reject::ModelUnknown(m.clone()))?;
                if model.ruled_against.is_some() {
                    return Err(Reject::DisputeInvalid(format!(
                        "model {m} was already ruled against"
                    )));
                }
                (DisputeTarget::Model(m.clone()), model.owner.clone(), None)
            }
            (None, None) => unreachable!("validated: exactly one target"),
        };
        if respondent == signer {
            return Err(Reject::DisputeInvalid(format!(
                "{signer} cannot dispute its own {}",
                target.label()
            )));
        }
        if let Some(id) = self.open_disputes.get(&target) {
            return Err(Reject::DisputeAlreadyOpen {
                target: target.label(),
                dispute: *id,
            });
        }
        if let Some(o) = b.original {
            let original = self
                .contributions
                .get(&o)
                .ok_or(Reject::ContributionUnknown(o))?;
            if original.ruled_against.is_some() {
                return Err(Reject::DisputeInvalid(format!(
                    "the original, contribution {o}, was itself ruled against"
                )));
            }
        }
        let open = self.open_by_claimant.get(signer).copied().unwrap_or(0);
        if open >= MAX_OPEN_DISPUTES_PER_CLAIMANT {
            return Err(Reject::TooManyDisputes {
                claimant: signer.to_string(),
                max: MAX_OPEN_DISPUTES_PER_CLAIMANT,
            });
        }
        // The arbiter: the dataset's policy (default: the operator); never a party.
        let mut arbiter = policy.as_ref().map_or(Arbiter::Operator, |p| p.arbiter);
        if arbiter == Arbiter::Owner {
            let owner = self
                .arbiter_handle(Arbiter::Owner, b.contribution)
                .expect("contribution disputes have an owner");
            if owner == signer || owner == respondent {
                arbiter = Arbiter::Operator;
            }
        }
        if arbiter == Arbiter::Operator && self.config.is_none() {
            return Err(Reject::NoOperator);
        }
        let expected = match &policy {
            Some(p) => p.bond.clone(),
            None => self.config.as_ref().and_then(|c| c.dispute_bond.clone()),
        };
        if expected != b.bond {
            return Err(Reject::DisputeBond {
                expected: bond_text(expected.as_ref()),
                given: bond_text(b.bond.as_ref()),
            });
        }
        let mut legs = Vec::new();
        if let Some(bond) = &b.bond {
            let amount = amount(&bond.amount_micros);
            let balance = self.books.balance(signer, &bond.currency);
            if balance < amount {
                return Err(Reject::InsufficientFunds {
                    account: signer.to_string(),
                    currency: bond.currency.clone(),
                    balance_micros: balance,
                    needed_micros: amount,
                });
            }
            let mut l = self.new_legs(index, ts_ms, &bond.currency);
            let escrow = escrow_account(index);
            let target_model = b.model_id.as_deref();
            l.push(
                signer,
                -amount,
                Role::DisputeBond,
                target_model,
                None,
                b.contribution,
                None,
            );
            l.push(
                &escrow,
                amount,
                Role::DisputeBond,
                target_model,
                None,
                b.contribution,
                Some(signer),
            );
            legs = l.legs;
        }
        let dispute = Dispute {
            id: index,
            claimant: signer.to_string(),
            contribution: b.contribution,
            model_id: b.model_id.clone(),
            respondent,
            original: b.original,
            evidence: b.evidence.clone(),
            statement: b.statement.clone(),
            arbiter,
            bond: b.bond.clone(),
            opened_at: index,
            opened_ts_ms: ts_ms,
            status: DisputeStatus::Open,
            ruled_at: None,
            ruled_by: None,
            reason: None,
            escrow_released_micros: BTreeMap::new(),
            escrow_to: None,
            clawed_back_micros: BTreeMap::new(),
            clawback_short_micros: BTreeMap::new(),
        };
        Ok(GovPending::Open(Box::new(dispute), legs))
    }

    pub(crate) fn check_dispute_rule(
        &self,
        signer: &str,
        index: u64,
        ts_ms: u64,
        b: &DisputeRule,
    ) -> Result<GovPending, Reject> {
        let d = self
            .disputes
            .get(&b.dispute)
            .ok_or(Reject::DisputeUnknown(b.dispute))?;
        if d.status != DisputeStatus::Open {
            return Err(Reject::DisputeClosed {
                dispute: d.id,
                ruled_at: d.ruled_at.unwrap_or(0),
            });
        }
        let arbiter = self
            .arbiter_handle(d.arbiter, d.contribution)
            .ok_or(Reject::NoOperator)?;
        if arbiter != signer {
            return Err(Reject::NotArbiter {
                dispute: d.id,
                arbiter,
            });
        }
        let upheld = b.verdict == Verdict::Upheld;
        // Upheld: the earnings go to the rightful party (the original's contributor, else the
        // claimant); dismissed: back to the disputed party.
        let redirect_to = match (upheld, d.original) {
            (true, Some(o)) => Some(self.follow_redirects(o)),
            _ => None,
        };
        let earnings_to = match (upheld, redirect_to) {
            (true, Some(o)) => self.contributions[&o].contributor.clone(),
            (true, None) => d.claimant.clone(),
            (false, _) => d.respondent.clone(),
        };
        let bond_to = if upheld { &d.claimant } else { &d.respondent };
        let escrow = escrow_account(d.id);
        let mut legs: Vec<Leg> = Vec::new();
        let mut released = BTreeMap::new();
        for (currency, balance) in self.books.balances_of(&escrow) {
            let bond = d
                .bond
                .as_ref()
                .filter(|bd| *bd.currency == *currency)
                .map_or(0, |bd| amount(&bd.amount_micros));
            debug_assert!(balance >= bond, "escrow holds at least the bond");
            let earnings = balance - bond;
            let mut l = self.new_legs(index, ts_ms, &currency);
            let model = d.model_id.as_deref();
            if earnings > 0 {
                let role = if upheld {
                    Role::EscrowAward
                } else {
                    Role::EscrowRelease
                };
                l.push(
                    &escrow,
                    -earnings,
                    role,
                    model,
                    None,
                    d.contribution,
                    Some(&d.respondent),
                );
                match (d.contribution, redirect_to) {
                    // Contributors' earnings follow the contributor rule (unclaimed pool
                    // without a payout address).
                    (Some(c), _) => l.credit_to(
                        &earnings_to,
                        earnings as u128,
                        role,
                        None,
                        None,
                        Some(redirect_to.unwrap_or(c)),
                    ),
                    (None, _) => l.push(&earnings_to, earnings, role, model, None, None, None),
                }
                released.insert(currency.to_string(), earnings.to_string());
            }
            if bond > 0 {
                l.push(
                    &escrow,
                    -bond,
                    Role::DisputeBond,
                    model,
                    None,
                    d.contribution,
                    Some(&d.claimant),
                );
                l.push(
                    bond_to,
                    bond,
                    Role::DisputeBond,
                    model,
                    None,
                    d.contribution,
                    None,
                );
            }
            legs.extend(l.legs);
        }
        // Past credit: what the copy earned before the dispute goes to the original too, as far
        // as its contributor still holds it (unclaimed earnings first, then its account).
        let mut clawed_back = BTreeMap::new();
        let mut clawback_short = BTreeMap::new();
        if let (Some(c), Some(o)) = (d.contribution, redirect_to) {
            let to = &self.contributions[&o].contributor;
            for (currency, earned) in self.books.earned_from(&d.respondent, c) {
                if earned <= 0 {
                    continue;
                }
                let from_pool = earned.min(self.books.unclaimed_of(&d.respondent, &currency));
                let from_account = (earned - from_pool)
                    .min(self.books.balance(&d.respondent, &currency))
                    .max(0);
                let taken = from_pool + from_account;
                let mut l = self.new_legs(index, ts_ms, &currency);
                l.push(
                    crate::money::UNCLAIMED,
                    -from_pool,
                    Role::Clawback,
                    None,
                    None,
                    Some(c),
                    Some(&d.respondent),
                );
                l.push(
                    &d.respondent,
                    -from_account,
                    Role::Clawback,
                    None,
                    None,
                    Some(c),
                    None,
                );
                l.credit_to(to, taken as u128, Role::Clawback, None, None, Some(o));
                legs.extend(l.legs);
                if taken > 0 {
                    clawed_back.insert(currency.to_string(), taken.to_string());
                }
                if earned > taken {
                    clawback_short.insert(currency.to_string(), (earned - taken).to_string());
                }
            }
        }
        Ok(GovPending::Rule(Box::new(Ruling {
            verdict: b.verdict,
            legs,
            escrow_to: (!released.is_empty()).then_some(earnings_to),
            released,
            redirect_to,
            clawed_back,
            clawback_short,
        })))
    }

    pub(crate) fn check_review(
        &self,
        signer: &str,
        b: &ContributionReview,
    ) -> Result<GovPending, Reject> {
        let c = self
            .contributions
            .get(&b.contribution)
            .ok_or(Reject::ContributionUnknown(b.contribution))?;
        let dataset = &self.datasets[&c.dataset_id];
        if dataset.owner != signer {
            return Err(Reject::NotOwner {
                what: crate::dataset_label(&dataset.dataset_id),
                owner: dataset.owner.clone(),
            });
        }
        match &c.review {
            None => Err(Reject::ReviewInvalid(format!(
                "contribution {} is not awaiting review (dataset {} {})",
                c.index,
                dataset.dataset_id,
                if dataset.review {
                    "is reviewed, but the owner's own contributions need no review"
                } else {
                    "is not reviewed"
                }
            ))),
            Some(r) if r.state != ReviewState::Pending => Err(Reject::ReviewInvalid(format!(
                "contribution {} was already {} at index {}",
                c.index,
                if r.state == ReviewState::Accepted {
                    "accepted"
                } else {
                    "rejected"
                },
                r.reviewed_at.unwrap_or(0)
            ))),
            Some(_) => Ok(GovPending::Review),
        }
    }

    pub(crate) fn commit_dispute_open(
        &mut self,
        dispute: Dispute,
        legs: Vec<Leg>,
        fx: &mut crate::Effects,
    ) {
        fx.legs = self.books.post(legs, &mut fx.changed);
        *self
            .open_by_claimant
            .entry(dispute.claimant.clone())
            .or_insert(0) += 1;
        self.open_disputes.insert(dispute.target(), dispute.id);
        fx.changed.push(crate::EntityKey::Dispute(dispute.id));
        self.disputes.insert(dispute.id, dispute);
    }

    pub(crate) fn commit_dispute_rule(
        &mut self,
        index: u64,
        signer: &str,
        b: &DisputeRule,
        ruling: Ruling,
        fx: &mut crate::Effects,
    ) {
        let Ruling {
            verdict,
            legs,
            released,
            escrow_to,
            redirect_to,
            clawed_back,
            clawback_short,
        } = ruling;
        fx.legs = self.books.post(legs, &mut fx.changed);
        let d = self.disputes.get_mut(&b.dispute).expect("checked");
        d.status = if verdict == Verdict::Upheld {
            DisputeStatus::Upheld
        } else {
            DisputeStatus::Dismissed
        };
        d.ruled_at = Some(index);
        d.ruled_by = Some(signer.to_string());
        d.reason = Some(b.reason.clone());
        d.escrow_released_micros = released;
        d.escrow_to = escrow_to;
        d.clawed_back_micros = clawed_back;
        d.clawback_short_micros = clawback_short;
        let d = d.clone();
        fx.changed.push(crate::EntityKey::Dispute(d.id));
        self.open_disputes.remove(&d.target());
        if let Some(n) = self.open_by_claimant.get_mut(&d.claimant) {
            *n -= 1;
            if *n == 0 {
                self.open_by_claimant.remove(&d.claimant);
            }
        }
        if verdict != Verdict::Upheld {
            return;
        }
        match d.target() {
            DisputeTarget::Contribution(c) => {
                let contribution = self.contributions.get_mut(&c).expect("checked");
                contribution.ruled_against = Some(ContributionRuling {
                    dispute: d.id,
                    redirect_to,
                });
                self.refresh_excluded(c);
                fx.changed.push(crate::EntityKey::Contribution(c));
            }
            DisputeTarget::Model(m) => {
                let model = self.models.get_mut(&m).expect("checked");
                model.ruled_against = Some(ModelRuling {
                    dispute: d.id,
                    earnings_to: d.claimant.clone(),
                });
                fx.changed.push(crate::EntityKey::Model(m));
            }
        }
    }

    pub(crate) fn commit_review(
        &mut self,
        index: u64,
        b: &ContributionReview,
        fx: &mut crate::Effects,
    ) {
        let c = self
            .contributions
            .get_mut(&b.contribution)
            .expect("checked");
        let accepted = b.decision == ReviewDecision::Accept;
        c.review = Some(Review {
            state: if accepted {
                ReviewState::Accepted
            } else {
                ReviewState::Rejected
            },
            quality: b.quality,
            note: b.note.clone(),
            reviewed_at: Some(index),
        });
        self.refresh_excluded(b.contribution);
        fx.changed
            .push(crate::EntityKey::Contribution(b.contribution));
    }
}

fn bond_text(b: Option<&Bond>) -> String {
    match b {
        Some(b) => format!("{} {} micro-units", b.amount_micros, b.currency),
        None => "no bond".into(),
    }
}

/// Keep the per-dispute escrow visible to the legs code.
impl Legs<'_> {
    /// Credit `who` with `amount` for `role`: into its account, or held in the unclaimed pool
    /// when it has no payout address yet (the rule every contributor payment follows).
    pub(crate) fn credit_to(
        &mut self,
        who: &str,
        amount: u128,
        role: Role,
        model_id: Option<&str>,
        dataset_id: Option<&str>,
        contribution: Option<u64>,
    ) {
        let has_address = self
            .state
            .actors
            .get(who)
            .is_some_and(|a| a.payout_address.is_some());
        let (account, beneficiary) = if has_address {
            (who, None)
        } else {
            (crate::money::UNCLAIMED, Some(who))
        };
        self.push(
            account,
            amount as i128,
            role,
            model_id,
            dataset_id,
            contribution,
            beneficiary,
        );
    }
}
