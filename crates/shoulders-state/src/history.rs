//! History: what grows with every record (each record's client id, each receipt and its legs),
//! kept apart from the bounded state (entities, balances, counters) so that a ledger can keep
//! it in its store instead of in memory.
//!
//! The fold reads history through [`HistoryRead`] only — two look-ups, both for idempotency —
//! and hands what it adds back as [`Effects`]. [`MemoryHistory`] keeps history in memory (tests,
//! `verify`, small tools); the ledger keeps it in its store, written in the same transaction as
//! the records, so history never has to be replayed or held.

use crate::money::{Books, Leg, Receipt, SourceTotal, Statement, StatementLine, StatementTotal};
use crate::Seen;
use shoulders_record::PublicKey;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// What the fold needs to know about history: has this signer used this client id, and has
/// this usage id been charged. Both answers must include records already folded in the same
/// batch.
pub trait HistoryRead {
    fn seen(&self, signer: &PublicKey, client_id: &str) -> Option<Seen>;
    /// Log index of the receipt that charged `usage_id`.
    fn usage(&self, usage_id: &str) -> Option<u64>;
}

/// No history at all (every look-up misses): for checks that only need the bounded state.
pub struct NoHistory;

impl HistoryRead for NoHistory {
    fn seen(&self, _: &PublicKey, _: &str) -> Option<Seen> {
        None
    }
    fn usage(&self, _: &str) -> Option<u64> {
        None
    }
}

/// A bounded-state key whose value a record changed: what a store must rewrite after it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntityKey {
    Actor(String),
    Dataset(String),
    Contribution(u64),
    Model(String),
    License(String),
    /// `(target label, grantee)`: the list of grants.
    Grants(String, String),
    Config,
    /// `(account, currency)`.
    Balance(Arc<str>, Arc<str>),
    /// `(beneficiary, currency)`.
    Unclaimed(Arc<str>, Arc<str>),
    Deposits(Arc<str>),
    Withdrawals(Arc<str>),
    ContributionUses(u64),
    /// A holder's earnings from one source (see [`crate::money::SourceKey`]).
    Source(crate::money::SourceKey),
    ModelCalls(String),
    DataShareReceipts(String),
    /// A dispute (by the log index of its `dispute.open`).
    Dispute(u64),
    /// `(dataset, contributor)`: quota used in the current window.
    QuotaUse(String, String),
}

/// What one accepted record adds to history, and which bounded-state keys it changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// `(signer, client id)` → where the record sits.
    pub seen: Option<(PublicKey, String, Seen)>,
    /// The legs it posted (deposits, withdrawals, claims, a receipt's split), in order.
    pub legs: Vec<Leg>,
    /// The receipt it settled (its `legs` range is meaningless outside [`MemoryHistory`]).
    pub receipt: Option<Receipt>,
    /// Bounded-state keys to rewrite, each once.
    pub changed: Vec<EntityKey>,
}

/// History held in memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryHistory {
    seen: HashMap<(PublicKey, String), Seen>,
    usage: HashMap<String, u64>,
    legs: Vec<Leg>,
    /// Leg positions per holder (the beneficiary for unclaimed legs).
    legs_by_holder: HashMap<Arc<str>, Vec<usize>>,
    receipts: BTreeMap<u64, Receipt>,
}

impl HistoryRead for MemoryHistory {
    fn seen(&self, signer: &PublicKey, client_id: &str) -> Option<Seen> {
        self.seen.get(&(*signer, client_id.to_string())).copied()
    }
    fn usage(&self, usage_id: &str) -> Option<u64> {
        self.usage.get(usage_id).copied()
    }
}

impl MemoryHistory {
    /// Add what one record did.
    pub fn absorb(&mut self, effects: Effects) {
        let Effects {
            seen,
            legs,
            receipt,
            changed: _,
        } = effects;
        if let Some((signer, client_id, at)) = seen {
            self.seen.insert((signer, client_id), at);
        }
        let start = self.legs.len();
        for leg in legs {
            self.legs_by_holder
                .entry(Arc::from(leg.holder()))
                .or_default()
                .push(self.legs.len());
            self.legs.push(leg);
        }
        if let Some(mut r) = receipt {
            r.legs = start..self.legs.len();
            self.usage.insert(r.usage_id.clone(), r.index);
            self.receipts.insert(r.index, r);
        }
    }

    pub fn legs(&self) -> &[Leg] {
        &self.legs
    }

    /// Every `(signer, client id)` seen, with where (in no particular order).
    pub fn seen_entries(&self) -> Vec<(PublicKey, String, Seen)> {
        self.seen
            .iter()
            .map(|((k, id), s)| (*k, id.clone(), *s))
            .collect()
    }

    pub fn receipt(&self, index: u64) -> Option<&Receipt> {
        self.receipts.get(&index)
    }

    pub fn receipts(&self) -> impl Iterator<Item = &Receipt> {
        self.receipts.values()
    }

    /// The legs of the money record at `index` (a receipt's split).
    pub fn receipt_legs(&self, index: u64) -> &[Leg] {
        self.receipts
            .get(&index)
            .map(|r| &self.legs[r.legs.clone()])
            .unwrap_or(&[])
    }

    /// Every leg of `holder` with `from_ms <= ts < to_ms`, grouped by cause, with totals
    /// (balances and unclaimed earnings come from `books`).
    pub fn statement(
        &self,
        books: &Books,
        holder: &str,
        from_ms: Option<u64>,
        to_ms: Option<u64>,
    ) -> Statement {
        let positions: &[usize] = self
            .legs_by_holder
            .get(holder)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let in_period =
            |l: &Leg| from_ms.is_none_or(|f| l.ts_ms >= f) && to_ms.is_none_or(|t| l.ts_ms < t);
        let mut lines = Vec::new();
        let mut sources = crate::money::SourceTotals::default();
        for &p in positions {
            let leg = &self.legs[p];
            if !in_period(leg) {
                continue;
            }
            sources.add(leg);
            lines.push(StatementLine {
                leg: leg.clone(),
                usage_id: self.receipts.get(&leg.index).map(|r| r.usage_id.clone()),
            });
        }
        let (by_source, credits_debits) = sources.finish();
        let totals: Vec<StatementTotal> = books.statement_totals(holder, &credits_debits);
        let by_source: Vec<SourceTotal> = by_source;
        Statement {
            holder: holder.to_string(),
            from_ms,
            to_ms,
            lines,
            by_source,
            totals,
        }
    }
}
