//! The money kinds of the fold: `ledger.config`, `funds.deposit`, `funds.withdraw`,
//! `actor.update` and `usage.receipt`. Each check computes the complete set of legs without
//! touching the state; the commit posts them.

use crate::money::{split, Leg, Receipt, Role, EXTERNAL, PROTOCOL, ROUNDING, UNCLAIMED};
use crate::{Reject, State};
use serde::Serialize;
use shoulders_record::{
    validate::MAX_AMOUNT_MICROS, ActorUpdate, FundsDeposit, FundsWithdraw, LedgerConfig,
    UsageReceipt, BPS_ONE,
};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Who operates the ledger and its fee, from the latest `ledger.config` record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Config {
    pub operator: String,
    pub protocol_fee_bps: u32,
    /// Log index of the record that set it.
    pub set_at: u64,
}

/// A settled receipt waiting for commit.
pub(crate) struct PendingReceipt {
    pub receipt: Receipt,
    pub legs: Vec<Leg>,
    /// Contributions named by the receipt (after duplicate redirection), each once.
    pub used: Vec<u64>,
}

/// Collects the legs of one movement; zero amounts are left out.
struct Legs<'a> {
    state: &'a State,
    index: u64,
    ts_ms: u64,
    currency: Arc<str>,
    legs: Vec<Leg>,
}

impl Legs<'_> {
    #[allow(clippy::too_many_arguments)]
    fn push(
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
    /// no payout address yet.
    fn credit_contributor(
        &mut self,
        contributor: &str,
        amount: u128,
        model_id: &str,
        dataset_id: &str,
        contribution: Option<u64>,
    ) {
        let has_address = self
            .state
            .actors
            .get(contributor)
            .is_some_and(|a| a.payout_address.is_some());
        let (account, beneficiary) = if has_address {
            (contributor, None)
        } else {
            (UNCLAIMED, Some(contributor))
        };
        self.push(
            account,
            amount as i128,
            Role::DataShare,
            Some(model_id),
            Some(dataset_id),
            contribution,
            beneficiary,
        );
    }
}

/// One pool participant: a contribution named by the receipt, or (fallback) a contributor's
/// first-seen bytes in a dataset.
struct Share<'a> {
    dataset_id: &'a str,
    contributor: &'a str,
    contribution: Option<u64>,
    weight: u128,
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

    fn new_legs(&self, index: u64, ts_ms: u64, currency: &str) -> Legs<'_> {
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
        self.config = Some(Config {
            operator: b.operator.clone(),
            protocol_fee_bps: b.protocol_fee_bps,
            set_at: index,
        });
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
    ) -> Result<PendingReceipt, Reject> {
        let config = self.operator(signer)?;
        if let Some(&at) = self.books.usage_ids.get(&b.usage_id) {
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
        let decision = shoulders_license::check_use(&model.effective, &b.use_category, None, ts_ms);
        if !decision.allowed {
            return Err(Reject::UseDenied {
                model_id: b.model_id.clone(),
                use_tag: b.use_category.clone(),
                reasons: decision.reasons.join("; "),
            });
        }
        let price = model
            .effective
            .price
            .as_ref()
            .ok_or_else(|| Reject::ModelNotPriced(b.model_id.clone()))?;
        // Token charges round up, so splitting one use into many small calls never pays less.
        let charge = price.per_call_micros
            + (u128::from(b.output_tokens) * price.per_1k_output_tokens_micros).div_ceil(1000);
        if charge > MAX_AMOUNT_MICROS {
            return Err(Reject::ChargeTooLarge {
                charge_micros: charge,
            });
        }
        let balance = self.books.balance(&b.payer, &price.currency);
        if balance < charge as i128 {
            return Err(Reject::InsufficientFunds {
                account: b.payer.clone(),
                currency: price.currency.clone(),
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
            let first = self.books.content_first[&c.content_hash];
            *named.entry((a.dataset_id.as_str(), first)).or_insert(0) += u128::from(a.ppm);
        }
        if !named.is_empty() {
            let mut lineage: Vec<&str> = model.datasets.iter().map(String::as_str).collect();
            let ancestors = self.ancestors(&model.model_id);
            for anc in &ancestors {
                lineage.extend(self.models[anc].datasets.iter().map(String::as_str));
            }
            if let Some((d, _)) = named.keys().find(|(d, _)| !lineage.contains(d)) {
                return Err(Reject::AttributionInvalid(format!(
                    "dataset {d:?} is not among the datasets of {} or its ancestors",
                    b.model_id
                )));
            }
        }

        let mut legs = self.new_legs(index, ts_ms, &price.currency);
        legs.push(
            &b.payer,
            -(charge as i128),
            Role::Charge,
            Some(&b.model_id),
            None,
            None,
            None,
        );

        // Stage 1: protocol fee off the top; each upstream royalty and the model's own level
        // share what is left. Weights are in units of 1/10^8 of the charge.
        let fee_bps = u128::from(config.protocol_fee_bps);
        let net_bps = u128::from(BPS_ONE) - fee_bps;
        let royalties = &model.effective.royalties;
        let royalty_bps: u128 = royalties.iter().map(|r| u128::from(r.bps)).sum();
        let mut weights = Vec::with_capacity(royalties.len() + 2);
        weights.push(fee_bps * u128::from(BPS_ONE));
        weights.extend(royalties.iter().map(|r| net_bps * u128::from(r.bps)));
        weights.push(net_bps * (u128::from(BPS_ONE) - royalty_bps));
        let (parts, mut rounding) = split(charge, &weights);
        legs.push(
            PROTOCOL,
            parts[0] as i128,
            Role::ProtocolFee,
            Some(&b.model_id),
            None,
            None,
            None,
        );

        // Stage 2 and 3, per level: the level model's licence gives its data pool a share,
        // divided among the contributors the receipt names in that model's own datasets, or
        // by first-seen bytes when it names none; the rest is the level owner's.
        let mut fallback = false;
        let levels = royalties
            .iter()
            .zip(&parts[1..])
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
                parts[parts.len() - 1],
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
                        contribution: Some(*first),
                        weight: *ppm,
                    });
                }
            }
            if shares.is_empty() && data_bps > 0 {
                for d in &level.datasets {
                    for (contributor, bytes) in
                        self.books.fallback_weights.get(d).into_iter().flatten()
                    {
                        shares.push(Share {
                            dataset_id: d,
                            contributor,
                            contribution: None,
                            weight: u128::from(*bytes),
                        });
                    }
                }
                fallback |= !shares.is_empty();
            }
            let (owner_part, pool) = if shares.is_empty() || data_bps == 0 {
                (amount, 0)
            } else {
                let (p, r) = split(amount, &[u128::from(BPS_ONE) - data_bps, data_bps]);
                rounding += r;
                (p[0], p[1])
            };
            legs.push(
                owner,
                owner_part as i128,
                role,
                Some(level_model_id),
                None,
                None,
                None,
            );
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
                fallback,
                legs: 0..0,
            },
            legs: legs.legs,
            used: named.keys().map(|(_, first)| *first).collect(),
        })
    }

    pub(crate) fn commit_receipt(&mut self, pending: PendingReceipt) {
        let PendingReceipt {
            mut receipt,
            legs,
            mut used,
        } = pending;
        receipt.legs = self.books.post(legs);
        used.sort_unstable();
        used.dedup();
        for c in used {
            *self.books.contribution_uses.entry(c).or_insert(0) += 1;
        }
        self.books
            .usage_ids
            .insert(receipt.usage_id.clone(), receipt.index);
        self.books.receipts.insert(receipt.index, receipt);
    }

    /// Keep the duplicate map and fallback weights current as contributions arrive.
    pub(crate) fn commit_contribution_money(
        &mut self,
        index: u64,
        contributor: &str,
        dataset_id: &str,
        content_hash: &str,
        byte_size: u64,
    ) {
        if self.books.content_first.contains_key(content_hash) {
            return;
        }
        self.books
            .content_first
            .insert(content_hash.to_string(), index);
        *self
            .books
            .fallback_weights
            .entry(dataset_id.to_string())
            .or_default()
            .entry(contributor.to_string())
            .or_insert(0) += byte_size;
    }
}

/// A validated amount (the record layer already parsed and bounded it).
fn amount(s: &str) -> i128 {
    let v: u128 = s.parse().expect("validated amount");
    assert!(v <= MAX_AMOUNT_MICROS);
    v as i128
}
