//! The fold's results in the store: how the ledger opens without replaying, what each batch
//! writes next to its records, and the history look-ups the fold needs during a batch.
//!
//! * **Open** ([`open_state`]): the store says which log size its state reflects; when it is
//!   the log's size, the bounded state is loaded from its rows (`O(entities)`, not
//!   `O(history)`) and the append frontier from `O(log n)` stored hashes. A store that never
//!   kept state (made before it did) is migrated once by a writer: the log is replayed and the
//!   state and history written in one transaction.
//! * **Write** ([`BatchWrites`]): every accepted record's effects become rows of the same
//!   transaction as the record.
//! * **Read during a batch** ([`BatchHistory`]): the client ids and usage ids the batch needs are
//!   fetched in one query each before folding, and the batch's own records are added as it goes.

use crate::{replay, LedgerError};
use shoulders_log::Frontier;
use shoulders_record::{PublicKey, SignedRecord};
use shoulders_state::{Effects, EntityKey, HistoryRead, Leg, Receipt, Seen, State};
use shoulders_store::{
    LegRow, ReceiptRow, SeenRow, StateRow, StateWrites, Store, StoreError, StoreHashes,
};
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// The state and append frontier of a store, without replaying it (see the module docs).
/// A writer (`writable`) migrates a store that has no state yet; a reader refuses it.
pub(crate) fn open_state(store: &mut dyn Store) -> Result<(State, Frontier), LedgerError> {
    match read_state(store) {
        Err(LedgerError::Store(StoreError::Schema(_))) if store.state_size()?.is_none() => {
            migrate_state(store)
        }
        other => other,
    }
}

/// [`open_state`] for a reader: a store without state is refused (a writer migrates it). A
/// writer may commit while a reader loads (records and state are one transaction, but the
/// reader's reads are several): the reader then follows it and loads again.
pub(crate) fn read_state(store: &mut dyn Store) -> Result<(State, Frontier), LedgerError> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let size = store.refresh()?;
        let state_size = store.state_size()?;
        if state_size.is_some_and(|n| n > size) && attempts < 10 {
            continue;
        }
        match read_state_at(&*store, size, state_size) {
            Err(LedgerError::Corrupt { .. }) if attempts < 10 => continue,
            other => return other,
        }
    }
}

fn read_state_at(
    store: &dyn Store,
    size: u64,
    state_size: Option<u64>,
) -> Result<(State, Frontier), LedgerError> {
    match state_size {
        Some(n) if n == size => load_state(store),
        None if size == 0 => Ok((State::without_history(), Frontier::new())),
        Some(n) => Err(LedgerError::Corrupt {
            index: n.min(size),
            reason: format!(
                "the stored state reflects {n} records but the log holds {size}; \
                 the store was changed outside shoulders"
            ),
        }),
        None => Err(LedgerError::Store(StoreError::Schema(
            "this ledger was made before its state was stored next to the log; \
             open it once with a writer (e.g. `shoulders submit`, `shoulders serve`) to migrate it"
                .into(),
        ))),
    }
}

/// Load the stored state (bounded: entities, balances, counters) and the frontier.
pub(crate) fn load_state(store: &dyn Store) -> Result<(State, Frontier), LedgerError> {
    let size = store.size()?;
    let mut rows = Vec::new();
    store.load_state(&mut |kind, key, value| {
        rows.push((kind, key, value));
        Ok(())
    })?;
    let state = State::from_rows(rows.into_iter()).map_err(|e| LedgerError::Corrupt {
        index: size,
        reason: e.to_string(),
    })?;
    if state.size() != size {
        return Err(LedgerError::Corrupt {
            index: size,
            reason: format!(
                "the stored state counts {} records, the log {size}",
                state.size()
            ),
        });
    }
    let frontier = Frontier::load(size, &StoreHashes(store))?;
    Ok((state, frontier))
}

/// Rebuild state and history by replaying the log once, and store them.
fn migrate_state(store: &mut dyn Store) -> Result<(State, Frontier), LedgerError> {
    let (replayed, _) = replay(&*store)?;
    let history = replayed.history().expect("replay keeps history");
    let mut writes = StateWrites {
        size: replayed.size(),
        rows: replayed.all_entity_rows().into_iter().map(row).collect(),
        ..StateWrites::default()
    };
    let mut seen: Vec<(PublicKey, String, Seen)> = history.seen_entries();
    seen.sort_by_key(|(_, _, s)| s.index);
    writes.seen = seen
        .into_iter()
        .map(|(signer, client_id, s)| seen_row(&signer, client_id, s))
        .collect();
    let mut seq: HashMap<u64, u32> = HashMap::new();
    for leg in history.legs() {
        let n = seq.entry(leg.index).or_insert(0);
        writes.legs.push(leg_row(leg, *n));
        *n += 1;
    }
    writes.receipts = history.receipts().map(receipt_row).collect();
    store.replace_state(&writes)?;
    load_state(store)
}

fn row(r: shoulders_state::EntityRow) -> StateRow {
    StateRow {
        kind: r.kind.to_string(),
        key: r.key,
        value: r.value,
    }
}

fn seen_row(signer: &PublicKey, client_id: String, s: Seen) -> SeenRow {
    SeenRow {
        signer: signer.0,
        client_id,
        index: s.index,
        leaf_hash: s.leaf_hash,
    }
}

fn leg_row(l: &Leg, seq: u32) -> LegRow {
    LegRow {
        index: l.index,
        seq,
        ts_ms: l.ts_ms,
        holder: Arc::clone(l.holder_shared()),
        account: l.account.clone(),
        currency: l.currency.clone(),
        amount_micros: l.amount_micros.to_string(),
        role: Cow::Borrowed(l.role.as_str()),
        model_id: l.model_id.clone(),
        dataset_id: l.dataset_id.clone(),
        contribution: l.contribution,
        beneficiary: l.beneficiary.clone(),
    }
}

fn receipt_row(r: &Receipt) -> ReceiptRow {
    ReceiptRow {
        index: r.index,
        ts_ms: r.ts_ms,
        usage_id: r.usage_id.clone(),
        model_id: r.model_id.clone(),
        payer: r.payer.clone(),
        use_category: r.use_category.clone(),
        currency: r.currency.to_string(),
        charge_micros: r.charge_micros.to_string(),
        input_tokens: r.input_tokens,
        output_tokens: r.output_tokens,
        unattributed: r.unattributed,
    }
}

/// What a batch writes next to its records: the history each accepted record added and the
/// keys of the bounded state it changed (rewritten once, at their final value, at the end).
///
/// The changed keys are kept in a set as they arrive: a batch of receipts repeats the same few
/// keys (the same balances, sources and counters) thousands of times, and sorting all of them
/// at the end cost more than the fold of a receipt's split.
#[derive(Default)]
pub(crate) struct BatchWrites {
    changed: BTreeSet<EntityKey>,
    writes: StateWrites,
}

impl BatchWrites {
    pub(crate) fn add(&mut self, effects: Effects) {
        let Effects {
            seen,
            legs,
            receipt,
            changed,
        } = effects;
        if let Some((signer, client_id, s)) = seen {
            self.writes.seen.push(seen_row(&signer, client_id, s));
        }
        for (seq, leg) in legs.iter().enumerate() {
            self.writes.legs.push(leg_row(leg, seq as u32));
        }
        if let Some(r) = receipt {
            self.writes.receipts.push(receipt_row(&r));
        }
        self.changed.extend(changed);
    }

    /// The writes for a batch that leaves the state at `state`.
    pub(crate) fn finish(mut self, state: &State) -> StateWrites {
        let changed: Vec<EntityKey> = self.changed.into_iter().collect();
        self.writes.rows = state.entity_rows(&changed).into_iter().map(row).collect();
        self.writes.size = state.size();
        self.writes
    }
}

/// History as the fold sees it during one batch: what the store answered for the batch's
/// client ids and usage ids, plus the batch's own accepted records. Client ids are kept per
/// signer, so a look-up by `(&PublicKey, &str)` allocates nothing.
pub(crate) struct BatchHistory {
    seen: HashMap<PublicKey, HashMap<String, Seen>>,
    usage: HashMap<String, u64>,
}

impl BatchHistory {
    /// Fetch, in one query each, whether the records' client ids and usage ids are in the
    /// store.
    pub(crate) fn prefetch<'a>(
        store: &dyn Store,
        records: impl Iterator<Item = &'a SignedRecord>,
    ) -> Result<Self, StoreError> {
        let mut keys: Vec<([u8; 32], String)> = Vec::new();
        let mut signers: Vec<PublicKey> = Vec::new();
        let mut usage_ids: Vec<String> = Vec::new();
        for rec in records {
            let r = rec.record();
            keys.push((r.signer.0, r.client_id.clone()));
            signers.push(r.signer);
            if let shoulders_record::Body::UsageReceipt(b) = &r.body {
                usage_ids.push(b.usage_id.clone());
            }
        }
        let found = store.seen_many(&keys)?;
        let mut seen: HashMap<PublicKey, HashMap<String, Seen>> = HashMap::new();
        for ((signer, (_, id)), f) in signers.into_iter().zip(keys).zip(found) {
            if let Some((index, leaf_hash)) = f {
                seen.entry(signer)
                    .or_default()
                    .insert(id, Seen { index, leaf_hash });
            }
        }
        let usage = usage_ids
            .iter()
            .cloned()
            .zip(store.usage_many(&usage_ids)?)
            .filter_map(|(u, i)| i.map(|i| (u, i)))
            .collect();
        Ok(BatchHistory { seen, usage })
    }

    /// [`BatchHistory::prefetch`] as of the log's first `before` records: what a read node
    /// folding records `before..` sees, although the writer already stored their history.
    pub(crate) fn prefetch_before<'a>(
        store: &dyn Store,
        records: impl Iterator<Item = &'a SignedRecord>,
        before: u64,
    ) -> Result<Self, StoreError> {
        let mut history = Self::prefetch(store, records)?;
        for ids in history.seen.values_mut() {
            ids.retain(|_, s| s.index < before);
        }
        history.usage.retain(|_, index| *index < before);
        Ok(history)
    }

    /// Add an accepted record's history, so later records of the batch see it.
    pub(crate) fn record(&mut self, effects: &Effects) {
        if let Some((signer, id, s)) = &effects.seen {
            self.seen.entry(*signer).or_default().insert(id.clone(), *s);
        }
        if let Some(r) = &effects.receipt {
            self.usage.insert(r.usage_id.clone(), r.index);
        }
    }
}

impl HistoryRead for BatchHistory {
    fn seen(&self, signer: &PublicKey, client_id: &str) -> Option<Seen> {
        self.seen.get(signer)?.get(client_id).copied()
    }
    fn usage(&self, usage_id: &str) -> Option<u64> {
        self.usage.get(usage_id).copied()
    }
}
