//! One query layer for every list a front end shows: the CLI commands and the HTTP handlers
//! (API and explorer) call these typed functions; JSON is made only at the edges.
//!
//! Every list is paged with an opaque cursor and a page size of at most [`MAX_PAGE`]; totals
//! come from the state's counters, never from a scan. History (legs, receipts, records) is read
//! from the store by index range; entities come from the bounded state.

use crate::LedgerError;
use serde::Serialize;
use shoulders_state::money::{Leg, Role, StatementLine};
use shoulders_state::{
    Actor, Contribution, Dataset, Model, SourceTotal, State, Statement, StatementTotal,
};
use shoulders_store::{LegQuery, LegRow, ReceiptQuery, ReceiptRow, Store};

/// Largest page any list returns.
pub const MAX_PAGE: usize = 1_000;
/// Page size when none is asked for.
pub const DEFAULT_PAGE: usize = 100;
/// Most legs a period statement sums ("by source" over a period is a scan of the period; an
/// all-time statement reads counters instead).
pub const MAX_PERIOD_LEGS: usize = 1_000_000;

/// A page of a list: its items and the cursor of the next page (absent on the last page).
#[derive(Clone, Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// The list's length, when a counter knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

/// A page size, checked.
pub fn page_size(limit: Option<usize>) -> Result<usize, LedgerError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(0) => Err(LedgerError::PageSize {
            limit: 0,
            max: MAX_PAGE,
        }),
        Some(n) if n > MAX_PAGE => Err(LedgerError::PageSize {
            limit: n,
            max: MAX_PAGE,
        }),
        Some(n) => Ok(n),
    }
}

fn bad_cursor(cursor: &str) -> LedgerError {
    LedgerError::Cursor(format!(
        "{cursor:?} is not a cursor this list gave out; start again without one"
    ))
}

/// A log index cursor (`r<index>`).
fn index_cursor(cursor: Option<&str>) -> Result<Option<u64>, LedgerError> {
    cursor
        .map(|c| {
            c.strip_prefix('r')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| bad_cursor(c))
        })
        .transpose()
}

/// A leg cursor (`l<index>.<seq>`).
fn leg_cursor(cursor: Option<&str>) -> Result<Option<(u64, u32)>, LedgerError> {
    cursor
        .map(|c| {
            let (i, s) = c
                .strip_prefix('l')
                .and_then(|x| x.split_once('.'))
                .ok_or_else(|| bad_cursor(c))?;
            Ok((
                i.parse().map_err(|_| bad_cursor(c))?,
                s.parse().map_err(|_| bad_cursor(c))?,
            ))
        })
        .transpose()
}

/// A name cursor (`n<name>`), for lists of entities in name order.
fn name_cursor(cursor: Option<&str>) -> Result<Option<&str>, LedgerError> {
    cursor
        .map(|c| c.strip_prefix('n').ok_or_else(|| bad_cursor(c)))
        .transpose()
}

fn role(s: &str) -> Role {
    match s {
        "deposit" => Role::Deposit,
        "withdrawal" => Role::Withdrawal,
        "charge" => Role::Charge,
        "protocol_fee" => Role::ProtocolFee,
        "royalty" => Role::Royalty,
        "data_share" => Role::DataShare,
        "owner_share" => Role::OwnerShare,
        "rounding" => Role::Rounding,
        "dispute_bond" => Role::DisputeBond,
        "escrow_release" => Role::EscrowRelease,
        "escrow_award" => Role::EscrowAward,
        "clawback" => Role::Clawback,
        _ => Role::Claim,
    }
}

/// A stored leg as the state's type.
pub fn leg(r: &LegRow) -> Result<Leg, LedgerError> {
    let amount = r.amount_micros.parse().map_err(|_| LedgerError::Corrupt {
        index: r.index,
        reason: format!("stored leg amount {:?}", r.amount_micros),
    })?;
    Ok(Leg {
        index: r.index,
        ts_ms: r.ts_ms,
        account: r.account.clone(),
        currency: r.currency.clone(),
        amount_micros: amount,
        role: role(&r.role),
        model_id: r.model_id.clone(),
        dataset_id: r.dataset_id.clone(),
        contribution: r.contribution,
        beneficiary: r.beneficiary.clone(),
    })
}

/// One holder's statement: a page of lines, and by source and totals (all-time from the
/// counters; over a period, summed from the period's legs).
#[derive(Clone, Debug, Serialize)]
pub struct StatementPage {
    /// Its `lines` are this page's only.
    #[serde(flatten)]
    pub statement: Statement,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// The statement of `holder` (see [`StatementPage`]).
pub fn statement(
    store: &dyn Store,
    state: &State,
    holder: &str,
    from_ms: Option<u64>,
    to_ms: Option<u64>,
    cursor: Option<&str>,
    limit: usize,
) -> Result<StatementPage, LedgerError> {
    let after = leg_cursor(cursor)?;
    let rows = store.legs_of_holder(&LegQuery {
        holder: holder.to_string(),
        from_ms,
        to_ms,
        role: None,
        after,
        limit: limit + 1,
        newest_first: false,
    })?;
    let more = rows.len() > limit;
    let rows = &rows[..rows.len().min(limit)];
    // The page's receipts in one round trip, not one look-up per line.
    let indexes: Vec<u64> = rows.iter().map(|r| r.index).collect();
    let usage: std::collections::HashMap<u64, String> = store
        .receipts_at(&indexes)?
        .into_iter()
        .map(|r| (r.index, r.usage_id))
        .collect();
    let mut lines = Vec::with_capacity(rows.len());
    for r in rows {
        lines.push(StatementLine {
            leg: leg(r)?,
            usage_id: usage.get(&r.index).cloned(),
        });
    }
    let next = more.then(|| {
        let last = rows.last().expect("a full page");
        format!("l{}.{}", last.index, last.seq)
    });
    let (by_source, totals) = if from_ms.is_none() && to_ms.is_none() {
        state.books().sources_of(holder)
    } else {
        period_sources(store, state, holder, from_ms, to_ms)?
    };
    Ok(StatementPage {
        statement: Statement {
            holder: holder.to_string(),
            from_ms,
            to_ms,
            lines,
            by_source,
            totals,
        },
        next,
    })
}

/// By source and totals over a period: the period's legs, summed (at most
/// [`MAX_PERIOD_LEGS`]).
fn period_sources(
    store: &dyn Store,
    state: &State,
    holder: &str,
    from_ms: Option<u64>,
    to_ms: Option<u64>,
) -> Result<(Vec<SourceTotal>, Vec<StatementTotal>), LedgerError> {
    let mut legs = Vec::new();
    let mut after = None;
    loop {
        let rows = store.legs_of_holder(&LegQuery {
            holder: holder.to_string(),
            from_ms,
            to_ms,
            role: None,
            after,
            limit: shoulders_store::MAX_PAGE_ROWS,
            newest_first: false,
        })?;
        let Some(last) = rows.last() else { break };
        after = Some((last.index, last.seq));
        for r in &rows {
            legs.push(leg(r)?);
        }
        if legs.len() > MAX_PERIOD_LEGS {
            return Err(LedgerError::PeriodTooLarge {
                limit: MAX_PERIOD_LEGS,
            });
        }
    }
    Ok(state.books().sources_over(holder, &legs))
}

/// A page of receipts (newest first), optionally of one model or payer.
pub fn receipts(
    store: &dyn Store,
    model_id: Option<&str>,
    payer: Option<&str>,
    cursor: Option<&str>,
    limit: usize,
    total: Option<u64>,
) -> Result<Page<ReceiptRow>, LedgerError> {
    let before = index_cursor(cursor)?;
    let mut items = store.receipts(&ReceiptQuery {
        model_id: model_id.map(str::to_string),
        payer: payer.map(str::to_string),
        before,
        limit: limit + 1,
    })?;
    let more = items.len() > limit;
    items.truncate(limit);
    let next = more.then(|| format!("r{}", items.last().expect("full page").index));
    Ok(Page { items, next, total })
}

/// A page of one holder's legs, optionally of one role (e.g. the outputs that paid a
/// contributor a data share), in log order or newest first.
pub fn legs_of(
    store: &dyn Store,
    holder: &str,
    role_name: Option<&str>,
    newest_first: bool,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<Leg>, LedgerError> {
    let after = leg_cursor(cursor)?;
    let rows = store.legs_of_holder(&LegQuery {
        holder: holder.to_string(),
        from_ms: None,
        to_ms: None,
        role: role_name.map(str::to_string),
        after,
        limit: limit + 1,
        newest_first,
    })?;
    let more = rows.len() > limit;
    let rows = &rows[..rows.len().min(limit)];
    let next = more.then(|| {
        let last = rows.last().expect("full page");
        format!("l{}.{}", last.index, last.seq)
    });
    Ok(Page {
        items: rows.iter().map(leg).collect::<Result<_, _>>()?,
        next,
        total: None,
    })
}

/// A page of records, newest first: `(index, exact bytes)`.
pub fn records(
    store: &dyn Store,
    size: u64,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<(u64, Vec<u8>)>, LedgerError> {
    let before = index_cursor(cursor)?.unwrap_or(size).min(size);
    let from = before.saturating_sub(limit as u64);
    let mut items = Vec::with_capacity((before - from) as usize);
    store.scan(from, before, &mut |i, bytes| {
        items.push((i, bytes.to_vec()));
        Ok(())
    })?;
    items.reverse();
    let next = (from > 0).then(|| format!("r{from}"));
    Ok(Page {
        items,
        next,
        total: Some(size),
    })
}

/// A page of entities in name order, from an iterator that starts after the cursor's name.
fn named_page<'a, T>(
    items: impl Iterator<Item = &'a T>,
    name: impl Fn(&T) -> &str,
    limit: usize,
    total: usize,
) -> Page<&'a T> {
    let mut items: Vec<&T> = items.take(limit + 1).collect();
    let more = items.len() > limit;
    items.truncate(limit);
    let next = more.then(|| format!("n{}", name(items.last().expect("full page"))));
    Page {
        items,
        next,
        total: Some(total as u64),
    }
}

/// A page of models in id order.
pub fn models<'a>(
    state: &'a State,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<&'a Model>, LedgerError> {
    let after = name_cursor(cursor)?;
    Ok(named_page(
        state.models_after(after),
        |m| &m.model_id,
        limit,
        state.model_count(),
    ))
}

/// A page of disputes, newest first (cursor: the last id shown, `r<id>`).
pub fn disputes<'a>(
    state: &'a State,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<&'a shoulders_state::Dispute>, LedgerError> {
    let before = index_cursor(cursor)?;
    let mut items: Vec<&shoulders_state::Dispute> =
        state.disputes_before(before).take(limit + 1).collect();
    let next = (items.len() > limit).then(|| {
        items.truncate(limit);
        format!("r{}", items[limit - 1].id)
    });
    Ok(Page {
        items,
        next,
        total: Some(state.dispute_count() as u64),
    })
}

/// A page of actors in handle order.
pub fn actors<'a>(
    state: &'a State,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<&'a Actor>, LedgerError> {
    let after = name_cursor(cursor)?;
    Ok(named_page(
        state.actors_after(after),
        |a| &a.handle,
        limit,
        state.actor_count(),
    ))
}

/// A page of datasets in id order.
pub fn datasets<'a>(
    state: &'a State,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<&'a Dataset>, LedgerError> {
    let after = name_cursor(cursor)?;
    Ok(named_page(
        state.datasets_after(after),
        |d| &d.dataset_id,
        limit,
        state.dataset_count(),
    ))
}

/// A page of a dataset's contributions, in log order.
pub fn dataset_contributions<'a>(
    state: &'a State,
    dataset_id: &str,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<&'a Contribution>, LedgerError> {
    let dataset = state
        .dataset(dataset_id)
        .ok_or_else(|| LedgerError::NotFound(format!("no dataset {dataset_id:?}")))?;
    let after = index_cursor(cursor)?;
    let start = after.map_or(0, |a| dataset.contributions.partition_point(|&c| c <= a));
    let slice = &dataset.contributions[start..];
    let items: Vec<&Contribution> = slice
        .iter()
        .take(limit)
        .filter_map(|&c| state.contribution(c))
        .collect();
    let next = (slice.len() > limit).then(|| format!("r{}", slice[limit - 1]));
    Ok(Page {
        items,
        next,
        total: Some(dataset.contributions.len() as u64),
    })
}
