//! The bounded state as rows, so a ledger can store it next to its log and open without
//! replaying: [`State::entity_rows`] gives the rows a record changed (written in the same
//! transaction as the record), [`State::from_rows`] rebuilds the state from all of them.
//!
//! A row is `(kind, key, value)`, the value JSON. Lists that grow with history are not stored
//! inside rows (a dataset's contribution list, a model's children, the first contribution of
//! each content hash, the key → handle map, the training credits per actor): they are rebuilt on
//! load from the rows they derive from, so rewriting a row never costs more than the row itself.

use crate::history::EntityKey;
use crate::money::{SourceCount, SourceKey};
use crate::{Actor, Config, Contribution, Dataset, Grant, License, Model, State};
use serde::de::DeserializeOwned;

/// One stored row of the bounded state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntityRow {
    pub kind: &'static str,
    pub key: String,
    pub value: Vec<u8>,
}

/// A stored row that does not decode: the store is damaged or from another version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored state row {kind}/{key} is unreadable: {reason}")]
pub struct LoadError {
    pub kind: String,
    pub key: String,
    pub reason: String,
}

/// Global counters (receipts and legs so far).
#[derive(serde::Serialize, serde::Deserialize)]
struct Counters {
    receipts: u64,
    legs: u64,
    size: u64,
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("state values serialise")
}

fn pair_key(a: &str, b: &str) -> String {
    serde_json::to_string(&(a, b)).expect("strings serialise")
}

impl State {
    /// The rows for `keys` as they are now (a record's [`crate::Effects::changed`]), plus the
    /// global counters row.
    pub fn entity_rows(&self, keys: &[EntityKey]) -> Vec<EntityRow> {
        let mut out = Vec::with_capacity(keys.len() + 1);
        for k in keys {
            let row = |kind, key: String, value: Vec<u8>| EntityRow { kind, key, value };
            out.push(match k {
                EntityKey::Actor(h) => row("actor", h.clone(), json(&self.actors[h])),
                EntityKey::Dataset(id) => {
                    let mut d = self.datasets[id].clone();
                    d.contributions = Vec::new();
                    d.tdm_reserved = Vec::new();
                    row("dataset", id.clone(), json(&d))
                }
                EntityKey::Contribution(i) => {
                    row("contribution", i.to_string(), json(&self.contributions[i]))
                }
                EntityKey::Model(id) => {
                    let mut m = self.models[id].clone();
                    m.children = Vec::new();
                    row("model", id.clone(), json(&m))
                }
                EntityKey::License(id) => row("license", id.clone(), json(&self.licenses[id])),
                EntityKey::Grants(t, g) => row(
                    "grants",
                    pair_key(t, g),
                    json(&self.grants[&(t.clone(), g.clone())]),
                ),
                EntityKey::Config => row("config", String::new(), json(&self.config)),
                EntityKey::Balance(a, c) => row(
                    "balance",
                    pair_key(a, c),
                    json(&self.books.balances[&(a.clone(), c.clone())].to_string()),
                ),
                EntityKey::Unclaimed(b, c) => row(
                    "unclaimed",
                    pair_key(b, c),
                    json(&self.books.unclaimed[&(b.clone(), c.clone())].to_string()),
                ),
                EntityKey::Deposits(c) => row(
                    "deposits",
                    c.to_string(),
                    json(&self.books.deposits[c].to_string()),
                ),
                EntityKey::Withdrawals(c) => row(
                    "withdrawals",
                    c.to_string(),
                    json(&self.books.withdrawals[c].to_string()),
                ),
                EntityKey::ContributionUses(i) => row(
                    "uses",
                    i.to_string(),
                    json(&self.books.contribution_uses[i]),
                ),
                EntityKey::Source(s) => row(
                    "source",
                    serde_json::to_string(s).expect("keys serialise"),
                    json(&self.books.sources[s]),
                ),
                EntityKey::ModelCalls(m) => {
                    row("calls", m.clone(), json(&self.books.model_calls[m]))
                }
                EntityKey::DataShareReceipts(h) => row(
                    "data_share_receipts",
                    h.clone(),
                    json(&self.books.data_share_receipts[h]),
                ),
                EntityKey::Dispute(id) => row("dispute", id.to_string(), json(&self.disputes[id])),
                EntityKey::QuotaUse(d, h) => row(
                    "quota",
                    pair_key(d, h),
                    json(&self.quota_use[&(d.clone(), h.clone())]),
                ),
            });
        }
        out.push(EntityRow {
            kind: "counters",
            key: String::new(),
            value: json(&Counters {
                receipts: self.books.receipts_count,
                legs: self.books.legs_count,
                size: self.next_index,
            }),
        });
        out
    }

    /// Every row of the current state (to store a state built another way, e.g. by a
    /// migration's replay).
    pub fn all_entity_rows(&self) -> Vec<EntityRow> {
        let mut keys: Vec<EntityKey> = Vec::new();
        keys.extend(self.actors.keys().cloned().map(EntityKey::Actor));
        keys.extend(self.datasets.keys().cloned().map(EntityKey::Dataset));
        keys.extend(
            self.contributions
                .keys()
                .copied()
                .map(EntityKey::Contribution),
        );
        keys.extend(self.models.keys().cloned().map(EntityKey::Model));
        keys.extend(self.licenses.keys().cloned().map(EntityKey::License));
        keys.extend(
            self.grants
                .keys()
                .map(|(t, g)| EntityKey::Grants(t.clone(), g.clone())),
        );
        if self.config.is_some() {
            keys.push(EntityKey::Config);
        }
        let b = &self.books;
        keys.extend(
            b.balances
                .keys()
                .map(|(a, c)| EntityKey::Balance(a.clone(), c.clone())),
        );
        keys.extend(
            b.unclaimed
                .keys()
                .map(|(a, c)| EntityKey::Unclaimed(a.clone(), c.clone())),
        );
        keys.extend(b.deposits.keys().cloned().map(EntityKey::Deposits));
        keys.extend(b.withdrawals.keys().cloned().map(EntityKey::Withdrawals));
        keys.extend(
            b.contribution_uses
                .keys()
                .copied()
                .map(EntityKey::ContributionUses),
        );
        keys.extend(b.sources.keys().cloned().map(EntityKey::Source));
        keys.extend(b.model_calls.keys().cloned().map(EntityKey::ModelCalls));
        keys.extend(
            b.data_share_receipts
                .keys()
                .cloned()
                .map(EntityKey::DataShareReceipts),
        );
        keys.extend(self.disputes.keys().copied().map(EntityKey::Dispute));
        keys.extend(
            self.quota_use
                .keys()
                .map(|(d, h)| EntityKey::QuotaUse(d.clone(), h.clone())),
        );
        keys.sort();
        self.entity_rows(&keys)
    }

    /// Rebuild a state (without history) from every stored row. The counters row says how
    /// many records the rows reflect ([`State::size`]); the caller checks it against the log.
    pub fn from_rows(
        rows: impl Iterator<Item = (String, String, Vec<u8>)>,
    ) -> Result<State, LoadError> {
        let mut s = State::without_history();
        let mut models: Vec<Model> = Vec::new();
        for (kind, key, value) in rows {
            let bad = |reason: String| LoadError {
                kind: kind.clone(),
                key: key.clone(),
                reason,
            };
            fn de<T: DeserializeOwned>(v: &[u8]) -> Result<T, String> {
                serde_json::from_slice(v).map_err(|e| e.to_string())
            }
            fn amount(v: &[u8]) -> Result<i128, String> {
                de::<String>(v)?.parse().map_err(|e| format!("{e}"))
            }
            fn pair(k: &str) -> Result<(String, String), String> {
                serde_json::from_str(k).map_err(|e| e.to_string())
            }
            match kind.as_str() {
                "actor" => {
                    let a: Actor = de(&value).map_err(bad)?;
                    s.actor_by_key.insert(a.public_key, a.handle.clone());
                    s.actors.insert(key.clone(), a);
                }
                "dataset" => {
                    let d: Dataset = de(&value).map_err(bad)?;
                    s.datasets.insert(key.clone(), d);
                }
                "contribution" => {
                    let c: Contribution = de(&value).map_err(bad)?;
                    s.contributions.insert(c.index, c);
                }
                "model" => models.push(de(&value).map_err(bad)?),
                "license" => {
                    let l: License = de(&value).map_err(bad)?;
                    s.licenses.insert(key.clone(), l);
                }
                "grants" => {
                    let (t, g) = pair(&key).map_err(bad)?;
                    let v: Vec<Grant> = de(&value).map_err(bad)?;
                    s.grants.insert((t, g), v);
                }
                "config" => s.config = de::<Option<Config>>(&value).map_err(bad)?,
                "balance" | "unclaimed" => {
                    let (a, c) = pair(&key).map_err(bad)?;
                    let v = amount(&value).map_err(bad)?;
                    let k = (s.books.intern(&a), s.books.intern(&c));
                    if kind == "balance" {
                        s.books.balances.insert(k, v);
                    } else {
                        s.books.unclaimed.insert(k, v);
                    }
                }
                "deposits" | "withdrawals" => {
                    let v = amount(&value).map_err(bad)?;
                    let c = s.books.intern(&key);
                    if kind == "deposits" {
                        s.books.deposits.insert(c, v);
                    } else {
                        s.books.withdrawals.insert(c, v);
                    }
                }
                "uses" => {
                    let i: u64 = key.parse().map_err(|e| bad(format!("{e}")))?;
                    s.books
                        .contribution_uses
                        .insert(i, de(&value).map_err(bad)?);
                }
                "source" => {
                    let k: SourceKey =
                        serde_json::from_str(&key).map_err(|e| bad(e.to_string()))?;
                    let k = SourceKey {
                        holder: s.books.intern(&k.holder),
                        currency: s.books.intern(&k.currency),
                        model_id: k.model_id.map(|m| s.books.intern(&m[..])),
                        dataset_id: k.dataset_id.map(|d| s.books.intern(&d[..])),
                        ..k
                    };
                    let v: SourceCount = de(&value).map_err(bad)?;
                    s.books.sources.insert(k, v);
                }
                "data_share_receipts" => {
                    s.books
                        .data_share_receipts
                        .insert(key.clone(), de(&value).map_err(bad)?);
                }
                "calls" => {
                    s.books
                        .model_calls
                        .insert(key.clone(), de(&value).map_err(bad)?);
                }
                "dispute" => {
                    let d: crate::Dispute = de(&value).map_err(bad)?;
                    s.disputes.insert(d.id, d);
                }
                "quota" => {
                    let k = pair(&key).map_err(bad)?;
                    s.quota_use.insert(k, de(&value).map_err(bad)?);
                }
                "counters" => {
                    let c: Counters = de(&value).map_err(bad)?;
                    s.books.receipts_count = c.receipts;
                    s.books.legs_count = c.legs;
                    s.next_index = c.size;
                }
                other => return Err(bad(format!("unknown kind {other:?}"))),
            }
        }
        // Derived lists, in log order.
        for c in s.contributions.values() {
            s.contributions_by
                .entry(c.contributor.clone())
                .or_default()
                .push(c.index);
            s.books
                .content_first
                .entry(c.content_hash.clone())
                .or_insert(c.index);
            if let Some(d) = s.datasets.get_mut(&c.dataset_id) {
                d.contributions.push(c.index);
                if c.tdm_reservation {
                    d.tdm_reserved.push(c.index);
                }
            }
            if !State::creditable(c) {
                s.excluded
                    .entry(c.dataset_id.clone())
                    .or_default()
                    .insert(c.index);
            }
        }
        for d in s.disputes.values() {
            if d.status == crate::DisputeStatus::Open {
                s.open_disputes.insert(d.target(), d.id);
                *s.open_by_claimant.entry(d.claimant.clone()).or_insert(0) += 1;
            }
        }
        models.sort_by_key(|m| m.registered_at);
        for m in models {
            for p in &m.parents {
                if let Some(parent) = s.models.get_mut(&p.model_id) {
                    parent.children.push(m.model_id.clone());
                }
            }
            s.index_credits(&m.model_id, m.training.as_ref());
            s.models.insert(m.model_id.clone(), m);
        }
        Ok(s)
    }
}
