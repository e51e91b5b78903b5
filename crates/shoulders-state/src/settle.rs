//! The money kinds of the fold: `ledger.config`, `funds.deposit`, `funds.withdraw`,
//! `actor.update` and `usage.receipt`. Each check computes the complete set of legs without
//! touching the state; the commit posts them.

use crate::governance::{escrow_account, DisputeTarget};
use crate::money::{split, Leg, Receipt, Role, EXTERNAL, PROTOCOL, ROUNDING, UNCLAIMED};
use crate::{Reject, State};
use serde::Serialize;
use shoulders_record::{
    validate::MAX_AMOUNT_MICROS, ActorUpdate, FundsDeposit, FundsWithdraw, LedgerClock,
    LedgerConfig, UsageReceipt, BPS_ONE,
};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Who operates the ledger and its fee, from the latest `ledger.config` record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Config {
    pub operator: String,
    pub protocol_fee_bps: u32,
    /// Log index of the record that set it.
    pub set_at: u64,
    /// The log's time: `now_ms` of the latest `ledger.clock` record (0 before the first).
    /// Licence time rules are judged at `max(signer's ts_ms, log_time_ms)`.
    #[serde(default)]
    pub log_time_ms: u64,
    /// The bond for disputes the operator rules on (see `ledger.config`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispute_bond: Option<shoulders_record::Bond>,
}

/// A settled receipt waiting for commit.
pub(crate) struct PendingReceipt {
    pub receipt: Receipt,
    pub legs: Vec<Leg>,
    /// Contributions named by the receipt (after duplicate redirection), each once.
    pub used: Vec<u64>,
}

/// Collects the legs of one movement; zero amounts are left out.
pub(crate) struct Legs<'a> {
    pub(crate) state: &'a State,
    index: u64,
    ts_ms: u64,
    pub(crate) currency: Arc<str>,
    pub(crate) legs: Vec<Leg>,
}

impl Legs<'_> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn push(
        &mut self,
        account: &str,
        amount_micros: i128,
        role: Role,
        model_id: Option<&str>,
        dataset_id: Option<&str>,
        contribution: Option<u64>,
        beneficiary: Option<&str>,
    ) {
        if amount_micros == 0 {
            return;
        }
        let books = &self.state.books;
        self.legs.push(Leg {
            index: self.index,
            ts_ms: self.ts_ms,
            account: books.name(account),
            currency: self.currency.clone(),
            amount_micros,
            role,
            model_id: model_id.map(|m| books.name(m)),
            dataset_id: dataset_id.map(|d| books.name(d)),
            contribution,
            beneficiary: beneficiary.map(|b| books.name(b)),
        });
    }

    /// Credit a data contributor: into its account, or held in the unclaimed pool when it has
    /// no payout address yet; into the dispute's escrow while the contribution is disputed.
    fn credit_contributor(
        &mut self,
        contributor: &str,
        amount: u128,
        model_id: &str,
        dataset_id: &str,
        contribution: u64,
    ) {
        let target = DisputeTarget::Contribution(contribution);
        let escrow = if self.state.open_disputes.is_empty() {
            None
        } else {
            self.state.escrow_for(&target)
        };
        match escrow {
            Some(d) => self.push(
                &escrow_account(d),
                amount as i128,
                Role::DataShare,
                Some(model_id),
                Some(dataset_id),
                Some(contribution),
                Some(contributor),
            ),
            None => self.credit_to(
                contributor,
                amount,
                Role::DataShare,
                Some(model_id),
                Some(dataset_id),
                Some(contribution),
            ),
        }
    }

    /// Pay a model level's owner: whoever an upheld dispute gave the model's earnings to, into
    /// the dispute's escrow while the model is disputed.
    fn pay_level_owner(&mut self, model_id: &str, owner: &str, amount: u128, role: Role) {
        if self.state.disputes.is_empty() {
            // No dispute was ever opened: no escrow, no ruling to follow.
            self.push(
                owner,
                amount as i128,
                role,
                Some(model_id),
                None,
                None,
                None,
            );
            return;
        }
        let model = &self.state.models[model_id];
        let owner = model
            .ruled_against
            .as_ref()
            .map_or(owner, |r| r.earnings_to.as_str());
        match self
            .state
            .escrow_for(&DisputeTarget::Model(model_id.to_string()))
        {
            Some(d) => self.push(
                &escrow_account(d),
                amount as i128,
                role,
                Some(model_id),
                None,
                None,
                Some(owner),
            ),
            None => self.push(
                owner,
                amount as i128,
                role,
                Some(model_id),
                None,
                None,
                None,
            ),
        }
    }
}

/// One pool participant: a contribution the receipt names (after duplicate redirection), with
/// its ppm.
struct Share<'a> {
    dataset_id: &'a str,
    contributor: &'a str,
    contribution: u64,
    weight: u128,
}

/// What one use of a model costs, as the fold computes it for a receipt ([`State::charge_for`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Charge {
    pub model_id: String,
    pub output_tokens: u64,
    pub currency: String,
    /// What the payer is charged: at least the price, and enough that every ancestor is paid
    /// its royalty floor after the protocol fee.
    #[serde(serialize_with = "crate::money::as_decimal_u")]
    pub total_micros: u128,
    /// The model's own price for this use (0 without a licence of its own).
    #[serde(serialize_with = "crate::money::as_decimal_u")]
    pub price_micros: u128,
    /// The royalty floors along the lineage for this use, summed.
    #[serde(serialize_with = "crate::money::as_decimal_u")]
    pub floors_micros: u128,
}

/// Stage 1 of a receipt's split: the charge, the protocol fee, what each ancestor of the
/// royalty stack is paid (`max(royalty share, floor)`), the model's own level and the units of
/// tied remainders. `fee + Σ royalties + own + rounding == charge`.
struct Stage1 {
    currency: String,
    price: u128,
    floors: u128,
    charge: u128,
    fee: u128,
    royalties: Vec<u128>,
    own: u128,
    rounding: u128,
}

/// The stage-1 split of `charge`: `None` when the floors leave the own level negative.
///
/// The protocol fee (`parts[0]`) is rounded **up**: it is at least `ceil(charge × w_fee / W)`,
/// so any charge with a non-zero fee rate pays at least one unit of fee (otherwise a price of
/// a few units per call, or a use split into many tiny calls, would pay none). The unit that
/// rounding up adds comes from the tied-remainder units first, then from the own level.
fn split_stage1(charge: u128, weights: &[u128], floors: &[u128]) -> Option<(Vec<u128>, u128)> {
    let (mut parts, mut rounding) = split(charge, weights);
    let last = parts.len() - 1;
    let total: u128 = weights.iter().sum();
    if total > 0 && weights[0] > 0 {
        // charge ≤ 10^18 and weights ≤ 10^8: no overflow.
        let fee_least = (charge * weights[0]).div_ceil(total);
        if parts[0] < fee_least {
            let mut short = fee_least - parts[0];
            debug_assert!(short <= 1, "largest remainder is within one unit of exact");
            parts[0] = fee_least;
            let from_rounding = short.min(rounding);
            rounding -= from_rounding;
            short -= from_rounding;
            parts[last] = parts[last].checked_sub(short)?;
        }
    }
    let mut topped_up: u128 = 0;
    for (part, floor) in parts[1..last].iter_mut().zip(floors) {
        if *part < *floor {
            topped_up += floor - *part;
            *part = *floor;
        }
    }
    parts[last] = parts[last].checked_sub(topped_up)?;
    Some((parts, rounding))
}

impl State {
    /// The current operator and fee, if a `ledger.config` record has been folded.
    pub fn config(&self) -> Option<&Config> {
        self.config.as_ref()
    }

    fn operator(&self, signer: &str) -> Result<&Config, Reject> {
        let config = self.config.as_ref().ok_or(Reject::NoOperator)?;
        if config.operator != signer {
            return Err(Reject::NotOperator {
                operator: config.operator.clone(),
            });
        }
        Ok(config)
    }

    pub(crate) fn new_legs(&self, index: u64, ts_ms: u64, currency: &str) -> Legs<'_> {
        Legs {
            state: self,
            index,
            ts_ms,
            currency: self.books.name(currency),
            legs: Vec::new(),
        }
    }

    pub(crate) fn check_config(&self, signer: &str, b: &LedgerConfig) -> Result<(), Reject> {
        match &self.config {
            // The first configuration designates its own signer: whoever runs `init`.
            None if b.operator != signer => Err(Reject::OperatorSelf {
                operator: b.operator.clone(),
            }),
            None => Ok(()),
            Some(_) => {
                self.operator(signer)?;
                if !self.actors.contains_key(&b.operator) {
                    return Err(Reject::ActorUnknown(b.operator.clone()));
                }
                Ok(())
            }
        }
    }

    pub(crate) fn commit_config(&mut self, index: u64, b: &LedgerConfig) {
        let log_time_ms = self.config.as_ref().map_or(0, |c| c.log_time_ms);
        self.config = Some(Config {
            operator: b.operator.clone(),
            protocol_fee_bps: b.protocol_fee_bps,
            set_at: index,
            log_time_ms,
            dispute_bond: b.dispute_bond.clone(),
        });
    }

    /// A `ledger.clock` must be the operator's and may not go back.
    pub(crate) fn check_clock(&self, signer: &str, b: &LedgerClock) -> Result<(), Reject> {
        let config = self.operator(signer)?;
        if b.now_ms < config.log_time_ms {
            return Err(Reject::ClockBackwards {
                now_ms: b.now_ms,
                log_time_ms: config.log_time_ms,
            });
        }
        Ok(())
    }

    pub(crate) fn commit_clock(&mut self, b: &LedgerClock) {
        let config = self.config.as_mut().expect("checked: an operator exists");
        config.log_time_ms = b.now_ms;
    }

    /// The log's time (`now_ms` of the latest `ledger.clock`), 0 before the first.
    pub fn log_time_ms(&self) -> u64 {
        self.config.as_ref().map_or(0, |c| c.log_time_ms)
    }

    /// The time licence rules judge a record signed at `ts_ms` by: the later of the signer's
    /// claim and the log's clock, so back-dating never moves a record before an expiry the log
    /// has already passed (and post-dating only brings expiry closer).
    pub fn rule_time_ms(&self, ts_ms: u64) -> u64 {
        ts_ms.max(self.log_time_ms())
    }

    pub(crate) fn check_deposit(
        &self,
        signer: &str,
        index: u64,
        ts_ms: u64,
        b: &FundsDeposit,
    ) -> Result<Vec<Leg>, Reject> {
        self.operator(signer)?;
        if !self.actors.contains_key(&b.account) {
            return Err(Reject::ActorUnknown(b.account.clone()));
        }
        let amount = amount(&b.amount_micros);
        let mut legs = self.new_legs(index, ts_ms, &b.currency);
        legs.push(EXTERNAL, -amount, Role::Deposit, None, None, None, None);
        legs.push(&b.account, amount, Role::Deposit, None, None, None, None);
        Ok(legs.legs)
    }

    pub(crate) fn check_withdraw(
        &self,
        signer: &str,
        index: u64,
        ts_ms: u64,
        b: &FundsWithdraw,
    ) -> Result<Vec<Leg>, Reject> {
        let actor = &self.actors[signer];
        if b.payout_address.is_none() && actor.payout_address.is_none() {
            return Err(Reject::NoPayoutAddress(signer.to_string()));
        }
        let amount = amount(&b.amount_micros);
        let balance = self.books.balance(signer, &b.currency);
        if balance < amount {
            return Err(Reject::InsufficientFunds {
                account: signer.to_string(),
                currency: b.currency.clone(),
                balance_micros: balance,
                needed_micros: amount,
            });
        }
        let mut legs = self.new_legs(index, ts_ms, &b.currency);
        legs.push(signer, -amount, Role::Withdrawal, None, None, None, None);
        legs.push(EXTERNAL, amount, Role::Withdrawal, None, None, None, None);
        Ok(legs.legs)
    }

    /// Setting a payout address releases what the unclaimed pool holds for the actor.
    pub(crate) fn check_actor_update(
        &self,
        signer: &str,
        index: u64,
        ts_ms: u64,
        b: &ActorUpdate,
    ) -> Vec<Leg> {
        let mut out = Vec::new();
        if b.payout_address.is_none() {
            return out;
        }
        for ((holder, currency), held) in &self.books.unclaimed {
            if &**holder != signer || *held == 0 {
                continue;
            }
            let mut legs = self.new_legs(index, ts_ms, currency);
            legs.push(
                UNCLAIMED,
                -held,
                Role::Claim,
                None,
                None,
                None,
                Some(signer),
            );
            legs.push(signer, *held, Role::Claim, None, None, None, None);
            out.extend(legs.legs);
        }
        out
    }

    /// Price, licence, balance and attribution checks, and the complete split of the charge.
    pub(crate) fn check_receipt(
        &self,
        signer: &str,
        index: u64,
        ts_ms: u64,
        b: &UsageReceipt,
        history: &dyn crate::HistoryRead,
    ) -> Result<PendingReceipt, Reject> {
        let config = self.operator(signer)?;
        // The index a receipt was attributed against was built from records before it.
        if let Some(st) = b.index_state.as_ref().filter(|st| st.ledger_size > index) {
            return Err(Reject::IndexStateFuture {
                ledger_size: st.ledger_size,
                index,
            });
        }
        if let Some(at) = history.usage(&b.usage_id) {
            return Err(Reject::UsageDuplicate {
                usage_id: b.usage_id.clone(),
                index: at,
            });
        }
        let model = self
            .models
            .get(&b.model_id)
            .ok_or_else(|| Reject::ModelUnknown(b.model_id.clone()))?;
        if !self.actors.contains_key(&b.payer) {
            return Err(Reject::ActorUnknown(b.payer.clone()));
        }
        // The payer's maximum royalty stack is a condition of the use, refused like the
        // licence's own clauses (`E_USE_DENIED`, the stack named in the reasons).
        let decision = shoulders_license::check_use(
            &model.effective,
            &b.use_category,
            None,
            self.rule_time_ms(ts_ms),
            b.max_royalty_bps,
        );
        if !decision.allowed {
            return Err(Reject::UseDenied {
                model_id: b.model_id.clone(),
                use_tag: b.use_category.clone(),
                reasons: decision.reasons.join("; "),
            });
        }
        let charged = stage1(config.protocol_fee_bps, model, b.output_tokens)?;
        let charge = charged.charge;
        let balance = self.books.balance(&b.payer, &charged.currency);
        if balance < charge as i128 {
            return Err(Reject::InsufficientFunds {
                account: b.payer.clone(),
                currency: charged.currency.clone(),
                balance_micros: balance,
                needed_micros: charge as i128,
            });
        }

        // Attribution: each entry must name an existing contribution of the named dataset, in
        // the model's lineage; a copy is credited to the earliest contribution of its content.
        let mut named: BTreeMap<(&str, u64), u128> = BTreeMap::new();
        for a in &b.attribution {
            let c = self
                .contributions
                .get(&a.contribution)
                .ok_or(Reject::ContributionUnknown(a.contribution))?;
            if c.dataset_id != a.dataset_id {
                return Err(Reject::AttributionInvalid(format!(
                    "contribution {} belongs to dataset {:?}, not {:?}",
                    a.contribution, c.dataset_id, a.dataset_id
                )));
            }
            // Pending, rejected and taken-down contributions earn nothing: their weight is
            // dropped, so the pool follows the remaining evidence (or, with none, the owner).
            if let Some(credited) = self.credited_contribution(c) {
                *named.entry((a.dataset_id.as_str(), credited)).or_insert(0) += u128::from(a.ppm);
            }
        }
        // Every entry must be in the lineage, credited or not (a dropped entry is still a claim
        // the receipt makes).
        if !b.attribution.is_empty() {
            let mut lineage: Vec<&str> = model.datasets.iter().map(String::as_str).collect();
            let ancestors = self.ancestors(&model.model_id);
            for anc in &ancestors {
                lineage.extend(self.models[anc].datasets.iter().map(String::as_str));
            }
            if let Some(d) = b
                .attribution
                .iter()
                .map(|a| a.dataset_id.as_str())
                .find(|d| !lineage.contains(d))
            {
                return Err(Reject::AttributionInvalid(format!(
                    "dataset {d:?} is not among the datasets of {} or its ancestors",
                    b.model_id
                )));
            }
        }

        let mut legs = self.new_legs(index, ts_ms, &charged.currency);
        legs.push(
            &b.payer,
            -(charge as i128),
            Role::Charge,
            Some(&b.model_id),
            None,
            None,
            None,
        );

        // Stage 1 (see `stage1`): the protocol fee, each ancestor's royalty (at least its
        // floor) and the model's own level.
        let mut rounding = charged.rounding;
        legs.push(
            PROTOCOL,
            charged.fee as i128,
            Role::ProtocolFee,
            Some(&b.model_id),
            None,
            None,
            None,
        );

        // Stages 2 and 3, per level: the level model's licence gives its data pool a share,
        // divided among the contributions the receipt names in that model's own datasets; the
        // rest is the level owner's. A level whose datasets the receipt names nothing in pays
        // its whole amount to its owner: no pool is paid without evidence, so adding bytes,
        // junk or copies can never raise anyone's share.
        let mut unattributed = false;
        let levels = model
            .effective
            .royalties
            .iter()
            .zip(&charged.royalties)
            .map(|(r, amount)| {
                (
                    r.model_id.as_str(),
                    r.owner.as_str(),
                    *amount,
                    Role::Royalty,
                )
            })
            .chain(std::iter::once((
                model.model_id.as_str(),
                model.owner.as_str(),
                charged.own,
                Role::OwnerShare,
            )));
        for (level_model_id, owner, amount, role) in levels {
            let level = &self.models[level_model_id];
            let data_bps = level
                .license_id
                .as_ref()
                .and_then(|l| self.licenses.get(l))
                .map_or(0, |l| u128::from(l.terms.data_share_bps));
            let mut shares: Vec<Share<'_>> = Vec::new();
            for ((d, first), ppm) in &named {
                if level.datasets.iter().any(|x| x == d) {
                    shares.push(Share {
                        dataset_id: d,
                        contributor: &self.contributions[first].contributor,
                        contribution: *first,
                        weight: *ppm,
                    });
                }
            }
            unattributed |= shares.is_empty() && data_bps > 0;
            let (owner_part, pool) = if shares.is_empty() || data_bps == 0 {
                (amount, 0)
            } else {
                let (p, r) = split(amount, &[u128::from(BPS_ONE) - data_bps, data_bps]);
                rounding += r;
                (p[0], p[1])
            };
            legs.pay_level_owner(level_model_id, owner, owner_part, role);
            if pool > 0 {
                let weights: Vec<u128> = shares.iter().map(|s| s.weight).collect();
                let (parts, r) = split(pool, &weights);
                rounding += r;
                for (s, part) in shares.iter().zip(parts) {
                    legs.credit_contributor(
                        s.contributor,
                        part,
                        level_model_id,
                        s.dataset_id,
                        s.contribution,
                    );
                }
            }
        }
        legs.push(
            ROUNDING,
            rounding as i128,
            Role::Rounding,
            Some(&b.model_id),
            None,
            None,
            None,
        );
        debug_assert_eq!(legs.legs.iter().map(|l| l.amount_micros).sum::<i128>(), 0);
        let currency = legs.currency.clone();
        Ok(PendingReceipt {
            receipt: Receipt {
                index,
                ts_ms,
                usage_id: b.usage_id.clone(),
                model_id: b.model_id.clone(),
                payer: b.payer.clone(),
                use_category: b.use_category.clone(),
                currency,
                charge_micros: charge,
                input_tokens: b.input_tokens,
                output_tokens: b.output_tokens,
                unattributed,
                legs: 0..0,
            },
            legs: legs.legs,
            used: named.keys().map(|(_, first)| *first).collect(),
        })
    }

    pub(crate) fn commit_receipt(&mut self, pending: PendingReceipt, fx: &mut crate::Effects) {
        let PendingReceipt {
            receipt,
            legs,
            mut used,
        } = pending;
        fx.legs = self.books.post(legs, &mut fx.changed);
        let mut paid: Vec<&str> = fx
            .legs
            .iter()
            .filter(|l| l.role == Role::DataShare)
            .map(|l| l.holder())
            .collect();
        paid.sort_unstable();
        paid.dedup();
        for holder in paid {
            *self
                .books
                .data_share_receipts
                .entry(holder.to_string())
                .or_insert(0) += 1;
            fx.changed
                .push(crate::EntityKey::DataShareReceipts(holder.to_string()));
        }
        used.sort_unstable();
        used.dedup();
        for c in used {
            *self.books.contribution_uses.entry(c).or_insert(0) += 1;
            fx.changed.push(crate::EntityKey::ContributionUses(c));
        }
        self.books
            .model_calls
            .entry(receipt.model_id.clone())
            .or_default()
            .add(&receipt.currency, receipt.charge_micros);
        fx.changed
            .push(crate::EntityKey::ModelCalls(receipt.model_id.clone()));
        self.books.receipts_count += 1;
        fx.receipt = Some(receipt);
    }

    /// Keep the duplicate map current as contributions arrive: the first contribution of each
    /// content is the one credited for every copy. Declared sizes play no part in any payout.
    pub(crate) fn commit_contribution_money(&mut self, index: u64, content_hash: &str) {
        self.books
            .content_first
            .entry(content_hash.to_string())
            .or_insert(index);
    }

    /// What one use of `model_id` producing `output_tokens` costs now, in the model's currency:
    /// exactly the charge a receipt would carry (the same computation as the fold's).
    pub fn charge_for(&self, model_id: &str, output_tokens: u64) -> Result<Charge, Reject> {
        let config = self.config.as_ref().ok_or(Reject::NoOperator)?;
        let model = self
            .models
            .get(model_id)
            .ok_or_else(|| Reject::ModelUnknown(model_id.to_string()))?;
        let s = stage1(config.protocol_fee_bps, model, output_tokens)?;
        Ok(Charge {
            model_id: model_id.to_string(),
            output_tokens,
            currency: s.currency,
            total_micros: s.charge,
            price_micros: s.price,
            floors_micros: s.floors,
        })
    }

    /// The most one call to `model_id` can cost when its output is at most `max_output_tokens`:
    /// what a caller must hold (and the gateway reserves) before the call runs, so a payer who
    /// cannot pay for the longest allowed answer never gets one.
    ///
    /// It is the charge of the longest output, `charge_for(model_id, max_output_tokens)`: the
    /// price and every floor grow with the tokens, and a charge that covers larger floors covers
    /// smaller ones (each part of the split is independent of the floors), so the least covering
    /// charge of a shorter output is never above it. The proptest
    /// `max_charge_bounds_every_receipt_up_to_its_tokens` (`tests/money.rs`) checks the fold's
    /// own receipts against it. (Where [`least_charge`] keeps its bisection's answer, a window
    /// over [`MAX_SCAN`] units that only fee and royalties taking nearly all of a charge make,
    /// the bound is not proven; the fold's own balance check still refuses any receipt the
    /// payer cannot cover.)
    pub fn max_charge(&self, model_id: &str, max_output_tokens: u64) -> Result<Charge, Reject> {
        self.charge_for(model_id, max_output_tokens)
    }
}

/// Most charges [`least_charge`] tries one by one below the bisection's answer.
const MAX_SCAN: u128 = 4096;

/// The least charge `≥ price` (at most [`MAX_AMOUNT_MICROS`]) whose stage-1 split covers the
/// floors, with that split; `None` when no charge up to the limit does.
///
/// Each part of a split is the floor or the ceiling of its exact share, so the own level is not
/// quite monotone in the charge (largest remainder's "Alabama paradox"): a charge may cover the
/// floors and the next one not. So: bisection finds a boundary `hi` (covers, `hi − 1` does not);
/// [`lower_bound`] gives the charge below which none can cover whatever the rounding; the
/// charges between are tried in order. That window is a few units wide unless fee and royalties
/// take nearly all of a charge; above [`MAX_SCAN`] units the bisection's boundary is kept.
fn least_charge(price: u128, weights: &[u128], floors: &[u128]) -> Option<(u128, Vec<u128>, u128)> {
    let covers = |c: u128| split_stage1(c, weights, floors);
    if let Some((parts, rounding)) = covers(price) {
        return Some((price, parts, rounding));
    }
    // A covering charge pays at least every floor.
    if floors.iter().sum::<u128>() > MAX_AMOUNT_MICROS {
        return None;
    }
    let mut best = covers(MAX_AMOUNT_MICROS)?;
    let (mut lo, mut hi) = (price, MAX_AMOUNT_MICROS);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match covers(mid) {
            Some(split) => (hi, best) = (mid, split),
            None => lo = mid,
        }
    }
    let low = lower_bound(price, hi, weights, floors);
    if hi - low <= MAX_SCAN {
        for c in low..hi {
            if let Some((parts, rounding)) = covers(c) {
                return Some((c, parts, rounding));
            }
        }
    }
    Some((hi, best.0, best.1))
}

/// The least charge in `price..=hi` below which no charge covers the floors. With exact shares
/// (no rounding) the own level after floors would be `g(C) = C·w_own/W − Σ max(0, F_i −
/// C·w_i/W)`, nondecreasing in `C`; rounding moves the own level and each royalty by less than
/// one unit each, so with `k` floors the rounded own level is below `g(C) + k + 1`, negative
/// wherever `g(C) ≤ −(k + 1)`. Bisection on `W·g` (exact integers) finds where that ends.
/// `hi` must cover the floors (so `g(hi) > −(k + 1)`); the floors must sum to at most 10^18.
fn lower_bound(price: u128, hi: u128, weights: &[u128], floors: &[u128]) -> u128 {
    let total = weights.iter().sum::<u128>() as i128;
    let last = weights.len() - 1;
    let k = floors.iter().filter(|f| **f > 0).count() as i128;
    // W·g(C): C ≤ 10^18 and weights ≤ 10^8, floors ≤ 10^18 each: far within i128.
    let scaled_g = |c: u128| -> i128 {
        let c = c as i128;
        let own = c * weights[last] as i128;
        let short: i128 = weights[1..last]
            .iter()
            .zip(floors)
            .map(|(w, f)| (*f as i128 * total - c * *w as i128).max(0))
            .sum();
        own - short
    };
    let possible = |c: u128| scaled_g(c) > -(k + 1) * total;
    debug_assert!(possible(hi));
    if possible(price) {
        return price;
    }
    let (mut lo, mut hi) = (price, hi);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if possible(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

/// The charge of one use of `model` and its first split.
///
/// * `price = per_call + ceil(tokens × per_1k / 1000)` from the model's own licence (0 without
///   one; token charges round up, so splitting one use into many small calls never pays less);
/// * `floor_i = floor_per_call_i + ceil(tokens × floor_per_1k_i / 1000)` for each ancestor `i`
///   of the royalty stack whose licence sets a floor;
/// * for a charge `C`, [`split`] gives the protocol fee (`fee_bps` of `C`), each ancestor's
///   royalty `r_i` (`(1 − fee) × bps_i` of `C`) and the own level (the rest), each exact to the
///   unit; ancestor `i` is paid `R_i = max(r_i, floor_i)` and the own level `own − Σ (R_i − r_i)`;
/// * `C` is the smallest amount `≥ price` for which that own level is not negative, found over
///   the exact split by [`least_charge`] (so replay finds the same `C`), at most
///   `MAX_AMOUNT_MICROS`.
///
/// Without floors `C = price` and the split is the plain stage-1 split.
fn stage1(fee_bps: u32, model: &crate::Model, output_tokens: u64) -> Result<Stage1, Reject> {
    let e = &model.effective;
    let (currency, price) = match (&e.price, e.floor_currency()) {
        (Some(p), _) => (
            p.currency.clone(),
            p.per_call_micros
                + (u128::from(output_tokens) * p.per_1k_output_tokens_micros).div_ceil(1000),
        ),
        (None, Some(currency)) => (currency.to_string(), 0),
        (None, None) => return Err(Reject::ModelNotPriced(model.model_id.clone())),
    };
    if price > MAX_AMOUNT_MICROS {
        return Err(Reject::ChargeTooLarge {
            charge_micros: price,
        });
    }
    let floors: Vec<u128> = e
        .royalties
        .iter()
        .map(|r| {
            // Registration refuses floors in another currency than the price or each other.
            debug_assert!(r.floor.as_ref().is_none_or(|f| f.currency == currency));
            r.floor.as_ref().map_or(0, |f| f.for_use(output_tokens))
        })
        .collect();
    let floors_total: u128 = floors.iter().sum();

    // Weights in units of 1/10^8 of the charge: the fee, each royalty, the own level.
    let fee_bps = u128::from(fee_bps);
    let net_bps = u128::from(BPS_ONE) - fee_bps;
    let royalty_bps: u128 = e.royalties.iter().map(|r| u128::from(r.bps)).sum();
    let mut weights = Vec::with_capacity(e.royalties.len() + 2);
    weights.push(fee_bps * u128::from(BPS_ONE));
    weights.extend(e.royalties.iter().map(|r| net_bps * u128::from(r.bps)));
    weights.push(net_bps * (u128::from(BPS_ONE) - royalty_bps));

    let Some((charge, parts, rounding)) = least_charge(price, &weights, &floors) else {
        return Err(Reject::ChargeTooLarge {
            charge_micros: floors_total.max(MAX_AMOUNT_MICROS + 1),
        });
    };
    let last = parts.len() - 1;
    debug_assert_eq!(parts.iter().sum::<u128>() + rounding, charge);
    Ok(Stage1 {
        currency,
        price,
        floors: floors_total,
        charge,
        fee: parts[0],
        royalties: parts[1..last].to_vec(),
        own: parts[last],
        rounding,
    })
}

/// A validated amount (the record layer already parsed and bounded it).
pub(crate) fn amount(s: &str) -> i128 {
    let v: u128 = s.parse().expect("validated amount");
    assert!(v <= MAX_AMOUNT_MICROS);
    v as i128
}

#[cfg(test)]
mod tests {
    use super::{least_charge, split_stage1};

    /// splitmix64, for reproducible random cases.
    fn next(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn weights(fee: u128, bps: &[u128]) -> Vec<u128> {
        let mut w = vec![fee * 10_000];
        w.extend(bps.iter().map(|b| (10_000 - fee) * b));
        w.push((10_000 - fee) * (10_000 - bps.iter().sum::<u128>()));
        w
    }

    fn brute_force(price: u128, weights: &[u128], floors: &[u128]) -> u128 {
        (price..)
            .find(|c| split_stage1(*c, weights, floors).is_some())
            .unwrap()
    }

    #[test]
    fn least_charge_is_the_least_covering_charge() {
        // Cases where a bisection alone lands 2 or 4 units above the least charge (the own
        // level rounds down while a royalty or the rounded-up fee rounds up, so covering is
        // not monotone in the charge).
        for (fee, bps, floors, price, least) in [
            (
                1654,
                vec![2296, 526, 1898, 2257],
                vec![0, 0, 415, 107],
                69,
                1009,
            ),
            (
                664,
                vec![69, 1832, 98, 1416],
                vec![242, 23, 0, 201],
                11,
                587,
            ),
            (
                613,
                vec![796, 1174, 1510, 2140],
                vec![130, 891, 0, 156],
                206,
                1712,
            ),
        ] {
            let w = weights(fee, &bps);
            assert_eq!(least_charge(price, &w, &floors).unwrap().0, least);
            assert_eq!(brute_force(price, &w, &floors), least);
        }
        let mut rng = 7u64;
        for case in 0..5_000 {
            // Every tenth case: fee and royalties take nearly everything.
            let extreme = case % 10 == 0;
            let fee = u128::from(next(&mut rng) % if extreme { 9_000 } else { 2_001 });
            let n = 1 + (next(&mut rng) % 4) as usize;
            let bps: Vec<u128> = (0..n)
                .map(|_| u128::from(next(&mut rng) % if extreme { 2_400 } else { 2_500 }))
                .collect();
            let floors: Vec<u128> = (0..n)
                .map(|_| u128::from(next(&mut rng) % 3) * u128::from(next(&mut rng) % 500))
                .collect();
            let price = u128::from(next(&mut rng) % 300);
            let w = weights(fee, &bps);
            let (c, parts, rounding) = least_charge(price, &w, &floors).unwrap();
            assert_eq!(
                c,
                brute_force(price, &w, &floors),
                "fee {fee} bps {bps:?} floors {floors:?} price {price}"
            );
            assert_eq!(parts.iter().sum::<u128>() + rounding, c);
            for (part, floor) in parts[1..parts.len() - 1].iter().zip(&floors) {
                assert!(part >= floor);
            }
        }
    }
}
