//! The fold's results as the store keeps them, next to the log and written in the same
//! transaction as the records that caused them: the bounded state as `(kind, key, value)` rows,
//! and history (each record's client id, receipts, legs) in indexed tables, so that opening a
//! ledger reads the state instead of replaying the log and every history query is an index
//! range. The store does not interpret rows: the ledger hands them over and reads them back.

use std::borrow::Cow;
use std::sync::Arc;

/// One row of the bounded state (its value is opaque to the store).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateRow {
    pub kind: String,
    pub key: String,
    pub value: Vec<u8>,
}

/// Where a `(signer, client id)` pair was first used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenRow {
    pub signer: [u8; 32],
    pub client_id: String,
    pub index: u64,
    pub leaf_hash: [u8; 32],
}

/// A settled usage receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptRow {
    pub index: u64,
    pub ts_ms: u64,
    pub usage_id: String,
    pub model_id: String,
    pub payer: String,
    pub use_category: String,
    pub currency: String,
    /// Decimal micro-units.
    pub charge_micros: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub unattributed: bool,
}

/// One leg of a money movement.
///
/// Names are shared (`Arc<str>`, a `'static` role): a batch of receipts writes about eight
/// legs each, and copying every name into fresh strings was a tenth of the writer thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegRow {
    /// Log index of the record that caused it.
    pub index: u64,
    /// Position among that record's legs.
    pub seq: u32,
    pub ts_ms: u64,
    /// Whose leg it is: the account, or the beneficiary of an unclaimed-pool leg.
    pub holder: Arc<str>,
    pub account: Arc<str>,
    pub currency: Arc<str>,
    /// Decimal micro-units, negative for a debit.
    pub amount_micros: String,
    pub role: Cow<'static, str>,
    pub model_id: Option<Arc<str>>,
    pub dataset_id: Option<Arc<str>>,
    pub contribution: Option<u64>,
    pub beneficiary: Option<Arc<str>>,
}

/// What one batch adds to the stored state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateWrites {
    /// The log size the state reflects once this batch is committed.
    pub size: u64,
    /// Bounded-state rows to insert or replace.
    pub rows: Vec<StateRow>,
    pub seen: Vec<SeenRow>,
    pub receipts: Vec<ReceiptRow>,
    pub legs: Vec<LegRow>,
}

/// A page of one holder's legs, in log order after `after` (exclusive), or newest first before
/// it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegQuery {
    pub holder: String,
    pub from_ms: Option<u64>,
    pub to_ms: Option<u64>,
    /// Only legs of this role (e.g. `data_share`).
    pub role: Option<String>,
    /// Cursor: `(index, seq)` of the last leg already seen.
    pub after: Option<(u64, u32)>,
    pub limit: usize,
    /// Newest first (the cursor then bounds from above).
    pub newest_first: bool,
}

/// A page of receipts, newest first, before `before` (exclusive).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptQuery {
    pub model_id: Option<String>,
    pub payer: Option<String>,
    /// Cursor: the log index of the last receipt already seen.
    pub before: Option<u64>,
    pub limit: usize,
}

impl ReceiptQuery {
    /// The `WHERE` clause for the filters this query sets, numbering its placeholders with
    /// `param(1..)` in the order model, payer, cursor (the page size takes the next number).
    /// Each combination is its own statement, so the planner uses the matching index
    /// (`receipts_by_model`, `receipts_by_payer`); a generic `(x IS NULL OR col = x)` hides it
    /// and turns a rare model's page into a scan of every receipt.
    pub(crate) fn where_sql(&self, param: impl Fn(usize) -> String) -> (String, usize) {
        let mut clauses = Vec::new();
        let mut n = 0;
        for (set, column) in [
            (self.model_id.is_some(), "model_id ="),
            (self.payer.is_some(), "payer ="),
            (self.before.is_some(), "idx <"),
        ] {
            if set {
                n += 1;
                clauses.push(format!("{column} {}", param(n)));
            }
        }
        let sql = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        (sql, n + 1)
    }
}

/// Most rows one history query returns.
pub const MAX_PAGE_ROWS: usize = 10_000;
