//! Money: accounts, double-entry legs and the exact split of a usage charge.
//!
//! Every movement is a set of [`Leg`]s that sums to zero. Balances are `i128` micro-units per
//! `(account, currency)`; only [`EXTERNAL`] (the world outside the ledger, the other side of
//! deposits and withdrawals) may go below zero, so the sum of all other balances always equals
//! deposits minus withdrawals. Splits use [`split`]: largest-remainder rounding where each part
//! is the floor or the ceiling of its exact share, and a unit that would have to be given to one
//! of several parties with exactly equal claims goes to [`ROUNDING`] instead, so no party gains
//! from its position in a list.

use crate::history::EntityKey;
use serde::{Deserialize, Serialize, Serializer};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// Protocol fee account.
pub const PROTOCOL: &str = "@protocol";
/// Receives the indivisible units of tied splits.
pub const ROUNDING: &str = "@rounding";
/// Holds the earnings of contributors who have no payout address yet.
pub const UNCLAIMED: &str = "@unclaimed";
/// The world outside the ledger: debited by deposits, credited by withdrawals.
pub const EXTERNAL: &str = "@external";

/// Why a leg exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Deposit,
    Withdrawal,
    /// The payer's side of a usage charge.
    Charge,
    ProtocolFee,
    /// An upstream model owner's share (its licence's royalty, less its data pool).
    Royalty,
    /// A data contributor's share of a data pool.
    DataShare,
    /// The used model's owner: what is left after fee, royalties and its data pool.
    OwnerShare,
    Rounding,
    /// Earnings moved out of the unclaimed pool once the contributor set a payout address.
    Claim,
    /// A claimant's dispute bond: into the dispute's escrow, and out of it at the ruling.
    DisputeBond,
    /// Escrowed earnings returned to the disputed party (dispute dismissed).
    EscrowRelease,
    /// Escrowed earnings awarded to the rightful party (dispute upheld).
    EscrowAward,
    /// What a contribution ruled a copy earned before its dispute, taken back (as far as its
    /// contributor still holds it) and paid to the original's contributor.
    Clawback,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Deposit => "deposit",
            Role::Withdrawal => "withdrawal",
            Role::Charge => "charge",
            Role::ProtocolFee => "protocol_fee",
            Role::Royalty => "royalty",
            Role::DataShare => "data_share",
            Role::OwnerShare => "owner_share",
            Role::Rounding => "rounding",
            Role::Claim => "claim",
            Role::DisputeBond => "dispute_bond",
            Role::EscrowRelease => "escrow_release",
            Role::EscrowAward => "escrow_award",
            Role::Clawback => "clawback",
        }
    }
}

/// One side of a movement: `amount_micros` is added to the account (negative for a debit).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Leg {
    /// Log index of the record that caused it (receipt, deposit, withdrawal, update).
    pub index: u64,
    pub ts_ms: u64,
    pub account: Arc<str>,
    pub currency: Arc<str>,
    #[serde(serialize_with = "as_decimal")]
    pub amount_micros: i128,
    pub role: Role,
    /// For usage legs: the model whose level of the split paid this leg.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_id: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset_id: Option<Arc<str>>,
    /// The contribution credited (for data shares: the one the receipt named, or the earliest
    /// contribution of the same content when it named a copy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contribution: Option<u64>,
    /// For legs into or out of [`UNCLAIMED`] or a dispute's escrow (`@escrow/<id>`): whose
    /// money they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beneficiary: Option<Arc<str>>,
}

impl Leg {
    /// The actor (or system account) this leg belongs to: the beneficiary for unclaimed legs.
    pub fn holder(&self) -> &str {
        self.holder_shared()
    }

    /// [`Leg::holder`], shared (a stored leg row keeps it without copying).
    pub fn holder_shared(&self) -> &Arc<str> {
        self.beneficiary.as_ref().unwrap_or(&self.account)
    }
}

/// A settled `usage.receipt`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Receipt {
    pub index: u64,
    pub ts_ms: u64,
    pub usage_id: String,
    pub model_id: String,
    pub payer: String,
    pub use_category: String,
    pub currency: Arc<str>,
    #[serde(serialize_with = "as_decimal_u")]
    pub charge_micros: u128,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// True when some level with a data share had no attributed contribution in its own
    /// datasets, so its pool went to the level's owner (no pool is paid without evidence).
    pub unattributed: bool,
    /// Position of its legs in the ledger-wide leg list.
    #[serde(skip)]
    pub legs: std::ops::Range<usize>,
}

pub(crate) fn as_decimal<S: Serializer>(v: &i128, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

pub(crate) fn as_decimal_u<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// Split `amount` in proportion to `weights`: each part is the floor or ceiling of its exact
/// share (largest remainder). Units that would go to some but not all of a group of parties with
/// equal remainders are returned separately (for the rounding account). Always
/// `parts.sum() + rounding == amount`; all-zero weights give all zero parts and `rounding == 0`
/// only when `amount == 0` (callers never split a positive amount by zero weights).
pub fn split(amount: u128, weights: &[u128]) -> (Vec<u128>, u128) {
    let mut weights: Vec<u128> = weights.to_vec();
    let mut total: u128 = weights.iter().fold(0u128, |a, w| a.saturating_add(*w));
    if total == 0 {
        return (vec![0; weights.len()], amount);
    }
    // Keep amount × weight within u128: shift every weight right by the same number of bits,
    // which changes the proportions by less than one part in 2^(bits left).
    while total == u128::MAX || amount.checked_mul(total).is_none() {
        for w in &mut weights {
            *w >>= 1;
        }
        total = weights.iter().sum();
        if total == 0 {
            return (vec![0; weights.len()], amount);
        }
    }
    let mut parts = Vec::with_capacity(weights.len());
    let mut rems = Vec::with_capacity(weights.len());
    let mut given: u128 = 0;
    for w in &weights {
        let p = amount * w;
        parts.push(p / total);
        rems.push(p % total);
        given += p / total;
    }
    let mut left = amount - given;
    debug_assert!(left < weights.len() as u128 || weights.is_empty());
    if left > 0 {
        // Distinct remainders, largest first; give one unit to each party of a group only if
        // the whole group can have one.
        let mut order: Vec<usize> = (0..weights.len()).filter(|i| rems[*i] > 0).collect();
        order.sort_by(|a, b| rems[*b].cmp(&rems[*a]).then(a.cmp(b)));
        let mut i = 0;
        while i < order.len() && left > 0 {
            let r = rems[order[i]];
            let mut j = i;
            while j < order.len() && rems[order[j]] == r {
                j += 1;
            }
            let group = (j - i) as u128;
            if group > left {
                break;
            }
            for k in &order[i..j] {
                parts[*k] += 1;
            }
            left -= group;
            i = j;
        }
    }
    (parts, left)
}

/// Ledger-wide money state, part of [`crate::State`]: bounded by the number of accounts,
/// contributions and earning sources, never by the number of receipts (the legs themselves are
/// history, see [`crate::history`]).
#[derive(Clone, Debug, Default)]
pub struct Books {
    pub(crate) balances: BTreeMap<(Arc<str>, Arc<str>), i128>,
    pub(crate) deposits: BTreeMap<Arc<str>, i128>,
    pub(crate) withdrawals: BTreeMap<Arc<str>, i128>,
    /// Unclaimed earnings per `(beneficiary, currency)`; they sum to the [`UNCLAIMED`] balances.
    pub(crate) unclaimed: BTreeMap<(Arc<str>, Arc<str>), i128>,
    /// How many receipts named each contribution (after duplicate redirection).
    pub(crate) contribution_uses: HashMap<u64, u64>,
    /// Earliest contribution of each content hash: later copies are credited to it.
    pub(crate) content_first: HashMap<String, u64>,
    /// Every holder's legs summed by cause: statements' "by source" without a scan.
    pub(crate) sources: BTreeMap<SourceKey, SourceCount>,
    /// Receipts settled per model, and what they charged.
    pub(crate) model_calls: HashMap<String, ModelUsage>,
    /// Receipts that paid each holder a data share (outputs that used their data).
    pub(crate) data_share_receipts: HashMap<String, u64>,
    pub(crate) receipts_count: u64,
    pub(crate) legs_count: u64,
    names: HashSet<Arc<str>>,
}

/// A model's metered use so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelUsage {
    pub calls: u64,
    /// Charged per currency, in micro-units (decimal strings in JSON).
    pub charged_micros: BTreeMap<String, String>,
}

impl ModelUsage {
    pub(crate) fn add(&mut self, currency: &str, charge_micros: u128) {
        self.calls += 1;
        let e = self
            .charged_micros
            .entry(currency.to_string())
            .or_insert_with(|| "0".into());
        let v: u128 = e.parse().unwrap_or(0);
        *e = (v + charge_micros).to_string();
    }
}

/// Equal books hold equal money; the interned names are a cache and do not count.
impl PartialEq for Books {
    fn eq(&self, other: &Self) -> bool {
        self.balances == other.balances
            && self.deposits == other.deposits
            && self.withdrawals == other.withdrawals
            && self.unclaimed == other.unclaimed
            && self.contribution_uses == other.contribution_uses
            && self.content_first == other.content_first
            && self.sources == other.sources
            && self.model_calls == other.model_calls
            && self.data_share_receipts == other.data_share_receipts
            && self.receipts_count == other.receipts_count
            && self.legs_count == other.legs_count
    }
}

impl Eq for Books {}

/// A holder's earnings (or spending) from one cause: role, currency, the model whose level paid,
/// the dataset and contribution credited, and whether it is held in the unclaimed pool.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SourceKey {
    pub holder: Arc<str>,
    pub role: Role,
    pub currency: Arc<str>,
    pub model_id: Option<Arc<str>>,
    pub dataset_id: Option<Arc<str>>,
    pub contribution: Option<u64>,
    pub held: bool,
    /// Held in this dispute's escrow (rather than the unclaimed pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escrow: Option<u64>,
}

impl SourceKey {
    pub fn of(leg: &Leg) -> Self {
        SourceKey {
            holder: Arc::from(leg.holder()),
            role: leg.role,
            currency: leg.currency.clone(),
            model_id: leg.model_id.clone(),
            dataset_id: leg.dataset_id.clone(),
            contribution: leg.contribution,
            held: leg.beneficiary.is_some(),
            escrow: crate::governance::escrow_dispute(&leg.account),
        }
    }
}

/// Records and amount summed for one [`SourceKey`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCount {
    /// Distinct records (e.g. receipts: outputs that used a contribution).
    pub count: u64,
    pub amount_micros: i128,
    /// The last record counted (a record's legs for one holder and source are adjacent).
    pub last_index: u64,
}

impl SourceCount {
    fn add(&mut self, leg: &Leg) {
        if self.count == 0 || self.last_index != leg.index {
            self.count += 1;
            self.last_index = leg.index;
        }
        self.amount_micros += leg.amount_micros;
    }
}

/// Legs grouped by source, for a statement over a period (all-time statements read
/// [`Books`]' counters instead).
/// Credits and debits per currency, in micro-units.
pub(crate) type CurrencyFlows = BTreeMap<Arc<str>, (i128, i128)>;

#[derive(Default)]
pub(crate) struct SourceTotals {
    groups: BTreeMap<SourceKey, SourceCount>,
}

impl SourceTotals {
    pub(crate) fn add(&mut self, leg: &Leg) {
        self.groups.entry(SourceKey::of(leg)).or_default().add(leg);
    }

    /// The groups as statement lines, and credits/debits per currency (own account only).
    pub(crate) fn finish(self) -> (Vec<SourceTotal>, CurrencyFlows) {
        source_lines(self.groups.iter())
    }
}

/// Statement "by source" lines and per-currency credits/debits from grouped counts. Within a
/// group every leg has the same sign (a role always credits or always debits its holder).
fn source_lines<'a>(
    groups: impl Iterator<Item = (&'a SourceKey, &'a SourceCount)>,
) -> (Vec<SourceTotal>, CurrencyFlows) {
    let mut totals: CurrencyFlows = BTreeMap::new();
    let mut lines = Vec::new();
    for (k, c) in groups {
        if !k.held {
            let t = totals.entry(k.currency.clone()).or_insert((0, 0));
            if c.amount_micros >= 0 {
                t.0 += c.amount_micros;
            } else {
                t.1 += c.amount_micros;
            }
        }
        lines.push(SourceTotal {
            role: k.role,
            currency: k.currency.to_string(),
            model_id: k.model_id.as_ref().map(|m| m.to_string()),
            dataset_id: k.dataset_id.as_ref().map(|d| d.to_string()),
            contribution: k.contribution,
            held_in_unclaimed: k.held && k.escrow.is_none(),
            held_in_escrow: k.escrow,
            count: c.count,
            amount_micros: c.amount_micros,
        });
    }
    (lines, totals)
}

impl Books {
    /// A shared copy of `s` (interned, so millions of legs do not each own their strings).
    pub fn name(&self, s: &str) -> Arc<str> {
        self.names.get(s).cloned().unwrap_or_else(|| Arc::from(s))
    }

    pub fn balance(&self, account: &str, currency: &str) -> i128 {
        // BTreeMap<(Arc<str>, Arc<str>)> cannot be searched by (&str, &str) directly.
        self.balances
            .get(&(self.name(account), self.name(currency)))
            .copied()
            .unwrap_or(0)
    }

    /// Post a balanced set of legs: balances, the unclaimed pool and the source counters.
    /// Returns the legs (with interned names) and the keys they changed. Panics if they do not
    /// sum to zero or drive an account other than [`EXTERNAL`] below zero: the check phase
    /// must have made both impossible.
    pub(crate) fn post(&mut self, legs: Vec<Leg>, changed: &mut Vec<EntityKey>) -> Vec<Leg> {
        let sum: i128 = legs.iter().map(|l| l.amount_micros).sum();
        assert_eq!(sum, 0, "legs of one movement must sum to zero");
        let mut out = Vec::with_capacity(legs.len());
        for mut leg in legs {
            leg.account = self.intern(&leg.account);
            leg.currency = self.intern(&leg.currency);
            leg.model_id = leg.model_id.map(|m| self.intern(&m));
            leg.dataset_id = leg.dataset_id.map(|d| self.intern(&d));
            let bal = self
                .balances
                .entry((leg.account.clone(), leg.currency.clone()))
                .or_insert(0);
            *bal += leg.amount_micros;
            assert!(
                *bal >= 0 || &*leg.account == EXTERNAL,
                "account {} went below zero",
                leg.account
            );
            changed.push(EntityKey::Balance(
                leg.account.clone(),
                leg.currency.clone(),
            ));
            if let Some(b) = &leg.beneficiary {
                let b = self.intern(b);
                // Escrow legs name whose money they hold too, but only the unclaimed pool
                // keeps a per-beneficiary sub-ledger (an escrow account is one dispute's).
                if &*leg.account == UNCLAIMED {
                    *self
                        .unclaimed
                        .entry((b.clone(), leg.currency.clone()))
                        .or_insert(0) += leg.amount_micros;
                    changed.push(EntityKey::Unclaimed(b.clone(), leg.currency.clone()));
                }
                leg.beneficiary = Some(b);
            }
            let key = SourceKey::of(&leg);
            self.sources.entry(key.clone()).or_default().add(&leg);
            changed.push(EntityKey::Source(key));
            self.legs_count += 1;
            out.push(leg);
        }
        out
    }

    pub(crate) fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.names.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.names.insert(a.clone());
        a
    }

    /// Per-currency statement totals of `holder`, given its credits and debits.
    pub(crate) fn statement_totals(
        &self,
        holder: &str,
        credits_debits: &BTreeMap<Arc<str>, (i128, i128)>,
    ) -> Vec<StatementTotal> {
        let mut currencies: Vec<Arc<str>> = credits_debits.keys().cloned().collect();
        for ((acc, cur), _) in self.balances.iter() {
            if &**acc == holder && !currencies.contains(cur) {
                currencies.push(cur.clone());
            }
        }
        for ((b, cur), _) in self.unclaimed.iter() {
            if &**b == holder && !currencies.contains(cur) {
                currencies.push(cur.clone());
            }
        }
        currencies.sort();
        currencies
            .into_iter()
            .map(|cur| {
                let (credits, debits) = credits_debits.get(&cur).copied().unwrap_or((0, 0));
                StatementTotal {
                    currency: cur.to_string(),
                    credits_micros: credits,
                    debits_micros: debits,
                    balance_micros: self.balance(holder, &cur),
                    unclaimed_micros: self
                        .unclaimed
                        .get(&(self.name(holder), cur.clone()))
                        .copied()
                        .unwrap_or(0),
                }
            })
            .collect()
    }

    /// A holder's all-time earnings by source and totals, from the counters (no legs read).
    pub fn sources_of(&self, holder: &str) -> (Vec<SourceTotal>, Vec<StatementTotal>) {
        let h = self.name(holder);
        let groups = self
            .sources
            .range(
                SourceKey {
                    holder: h.clone(),
                    role: Role::Deposit,
                    currency: Arc::from(""),
                    model_id: None,
                    dataset_id: None,
                    contribution: None,
                    held: false,
                    escrow: None,
                }..,
            )
            .take_while(|(k, _)| k.holder == h);
        let (lines, credits_debits) = source_lines(groups);
        (lines, self.statement_totals(holder, &credits_debits))
    }

    /// What `holder` earned from `contribution` outside any escrow, per currency: its data
    /// shares and escrow releases credited for it (from the counters, no legs read).
    pub(crate) fn earned_from(&self, holder: &str, contribution: u64) -> BTreeMap<Arc<str>, i128> {
        let h = self.name(holder);
        let mut out = BTreeMap::new();
        let start = SourceKey {
            holder: h.clone(),
            role: Role::Deposit,
            currency: Arc::from(""),
            model_id: None,
            dataset_id: None,
            contribution: None,
            held: false,
            escrow: None,
        };
        for (k, c) in self
            .sources
            .range(start..)
            .take_while(|(k, _)| k.holder == h)
        {
            let earning = matches!(k.role, Role::DataShare | Role::EscrowRelease);
            if earning && k.contribution == Some(contribution) && k.escrow.is_none() {
                *out.entry(k.currency.clone()).or_insert(0) += c.amount_micros;
            }
        }
        out
    }

    /// What the unclaimed pool holds for `holder` in `currency`.
    pub(crate) fn unclaimed_of(&self, holder: &str, currency: &str) -> i128 {
        self.unclaimed
            .get(&(self.name(holder), self.name(currency)))
            .copied()
            .unwrap_or(0)
    }

    /// A holder's earnings by source and totals over some of its legs (a period).
    pub fn sources_over(
        &self,
        holder: &str,
        legs: &[Leg],
    ) -> (Vec<SourceTotal>, Vec<StatementTotal>) {
        let mut t = SourceTotals::default();
        for l in legs {
            t.add(l);
        }
        let (lines, credits_debits) = t.finish();
        (lines, self.statement_totals(holder, &credits_debits))
    }

    /// Every non-zero balance of `account`, per currency (one escrow account's holdings).
    pub fn balances_of(&self, account: &str) -> Vec<(Arc<str>, i128)> {
        let a = self.name(account);
        self.balances
            .range((a.clone(), Arc::from(""))..)
            .take_while(|((acc, _), _)| *acc == a)
            .filter(|(_, b)| **b != 0)
            .map(|((_, currency), b)| (currency.clone(), *b))
            .collect()
    }

    pub fn accounts(&self) -> Vec<AccountBalance> {
        self.balances
            .iter()
            .map(|((a, c), b)| AccountBalance {
                account: a.to_string(),
                currency: c.to_string(),
                balance_micros: *b,
            })
            .collect()
    }

    pub fn totals(&self) -> Vec<CurrencyTotals> {
        let mut currencies: Vec<&Arc<str>> = self.balances.keys().map(|(_, c)| c).collect();
        currencies.sort();
        currencies.dedup();
        currencies
            .into_iter()
            .map(|cur| {
                let deposits = self.deposits.get(cur).copied().unwrap_or(0);
                let withdrawals = self.withdrawals.get(cur).copied().unwrap_or(0);
                let mut held = 0i128;
                let mut external = 0i128;
                let mut negative = false;
                for ((acc, c), b) in &self.balances {
                    if c != cur {
                        continue;
                    }
                    if &**acc == EXTERNAL {
                        external += b;
                    } else {
                        held += b;
                        negative |= *b < 0;
                    }
                }
                let pool = self.balance(UNCLAIMED, cur);
                let owed: i128 = self
                    .unclaimed
                    .iter()
                    .filter(|((_, c), _)| c == cur)
                    .map(|(_, v)| *v)
                    .sum();
                CurrencyTotals {
                    currency: cur.to_string(),
                    deposits_micros: deposits,
                    withdrawals_micros: withdrawals,
                    held_micros: held,
                    conserved: held == deposits - withdrawals
                        && external == -held
                        && !negative
                        && pool == owed,
                }
            })
            .collect()
    }
}

/// One account's balance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccountBalance {
    pub account: String,
    pub currency: String,
    #[serde(serialize_with = "as_decimal")]
    pub balance_micros: i128,
}

/// The books' totals per currency, and whether they balance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CurrencyTotals {
    pub currency: String,
    #[serde(serialize_with = "as_decimal")]
    pub deposits_micros: i128,
    #[serde(serialize_with = "as_decimal")]
    pub withdrawals_micros: i128,
    /// Sum of every balance except [`EXTERNAL`].
    #[serde(serialize_with = "as_decimal")]
    pub held_micros: i128,
    /// `held == deposits − withdrawals`, `EXTERNAL == −held`, no other account negative, and
    /// the unclaimed pool equals the sum of what it holds for each contributor.
    pub conserved: bool,
}

/// One line of a statement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatementLine {
    #[serde(flatten)]
    pub leg: Leg,
    /// The `usage_id` of the receipt that caused the leg, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_id: Option<String>,
}

/// Earnings grouped by their cause: e.g. "contribution 12 was used in 100 outputs, earned Y".
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SourceTotal {
    pub role: Role,
    pub currency: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contribution: Option<u64>,
    /// Whether these legs moved money held for the holder in the unclaimed pool rather than
    /// its own account.
    pub held_in_unclaimed: bool,
    /// The dispute whose escrow holds these earnings, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_in_escrow: Option<u64>,
    /// Number of distinct records (e.g. receipts: outputs that used the contribution) in the
    /// period.
    pub count: u64,
    #[serde(serialize_with = "as_decimal")]
    pub amount_micros: i128,
}

/// Per-currency totals of a statement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatementTotal {
    pub currency: String,
    /// Credits to the holder's own account in the period (earnings held in the unclaimed pool
    /// count when they are claimed).
    #[serde(serialize_with = "as_decimal")]
    pub credits_micros: i128,
    #[serde(serialize_with = "as_decimal")]
    pub debits_micros: i128,
    /// Balance of the holder's own account now (not limited to the period).
    #[serde(serialize_with = "as_decimal")]
    pub balance_micros: i128,
    /// Earnings held for the holder in the unclaimed pool now.
    #[serde(serialize_with = "as_decimal")]
    pub unclaimed_micros: i128,
}

/// Every credit and debit of one holder in a period, with causes and totals.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Statement {
    pub holder: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_ms: Option<u64>,
    pub lines: Vec<StatementLine>,
    pub by_source: Vec<SourceTotal>,
    pub totals: Vec<StatementTotal>,
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn split_examples() {
        assert_eq!(split(10, &[1, 1]), (vec![5, 5], 0));
        // Three equal claims on one unit: nobody is preferred, the unit goes to rounding.
        assert_eq!(split(1, &[1, 1, 1]), (vec![0, 0, 0], 1));
        assert_eq!(split(2, &[1, 1, 1]), (vec![0, 0, 0], 2));
        // 7 × (0.5, 0.3, 0.2) = 3.5, 2.1, 1.4: floors 3, 2, 1, one unit left for the largest
        // remainder (0.5).
        assert_eq!(split(7, &[5, 3, 2]), (vec![4, 2, 1], 0));
        assert_eq!(split(0, &[5, 3, 2]), (vec![0, 0, 0], 0));
        assert_eq!(split(9, &[0, 0]), (vec![0, 0], 9));
        assert_eq!(split(100, &[1, 0, 3]), (vec![25, 0, 75], 0));
        let big = u128::MAX / 3;
        let (parts, r) = split(1_000_000_000_000_000_000, &[big, big, 1]);
        assert_eq!(parts.iter().sum::<u128>() + r, 1_000_000_000_000_000_000);
    }
}
