//! The gateway's admission and settlement hook for API keys: who a bearer token is, whether
//! its key is within its per-minute request and token limits (`429 E_KEY_RATE_LIMITED` with
//! `Retry-After`) and its spend budget for the current UTC day or month
//! (`402 E_KEY_BUDGET_EXCEEDED`), all **before** any model runs; and, once the call's receipt
//! is committed, its actual charge added to the key's spend.
//!
//! Budgets reuse the balance pre-authorisation ([`crate::preauth`]): the call's maximum charge
//! is held in memory against `budget - spent` (spent read from the store under the
//! reservations' lock), so concurrent calls can together overspend by nothing beyond what the
//! held maxima allow. The spend itself is durable: before the call runs, a pending row names
//! its usage id ([`shoulders_store::KeyStore::begin_spend`]); after the receipt append, the
//! charge the **ledger** recorded for that usage id (the receipt row, not a number computed
//! here) is added and the pending row removed in one store transaction, and only then is the
//! hold released. A crash between the receipt's commit and the settlement leaves the pending
//! row, which [`KeyGate::reconcile`] settles from the receipt at the next start: every
//! committed charge is counted exactly once, and a restart never resets a spend.
//!
//! Rate limits are token buckets per key id in this process (a restart refills them): the
//! request bucket holds `requests_per_minute` and refills at that rate; the token bucket holds
//! `tokens_per_minute`, a call takes its prompt bytes plus `max_tokens` up front and gets back
//! what it did not use.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use shoulders_store::{KeyRow, KeyStore, PendingSpend};

use crate::apikeys::{self, ApiKeyError, BudgetPeriod};
use crate::error::{ApiError, ApiResult};
use crate::{preauth, AppState};

/// Most keys whose rate buckets are tracked at once (one per stored key at most).
const MAX_TRACKED_KEYS: usize = apikeys::MAX_API_KEYS as usize;
const MINUTE_MS: f64 = 60_000.0;

/// A key's two buckets, as of `last_ms`.
struct Buckets {
    requests: f64,
    tokens: f64,
    last_ms: u64,
}

/// The server's view of the key store, and the per-key rate buckets.
pub struct KeyGate {
    store: Arc<Mutex<Box<dyn KeyStore>>>,
    /// Whether the keys are in a local SQLite file (a look-up is a few µs of page-cache
    /// reads), not on a PostgreSQL server (a network round trip).
    local: bool,
    buckets: Mutex<HashMap<String, Buckets>>,
    /// When non-zero, the time budgets and rate limits read instead of the system clock (tests
    /// move it across a period boundary or a minute without sleeping).
    pinned_now_ms: AtomicU64,
}

impl KeyGate {
    pub fn new(store: Box<dyn KeyStore>, local: bool) -> Self {
        KeyGate {
            store: Arc::new(Mutex::new(store)),
            local,
            buckets: Mutex::new(HashMap::new()),
            pinned_now_ms: AtomicU64::new(0),
        }
    }

    /// Pin the clock budgets and key rate limits read (`None`: the system clock again). For
    /// tests: a period boundary is crossed by setting the time, not by waiting.
    pub fn pin_clock_ms(&self, now_ms: Option<u64>) {
        self.pinned_now_ms
            .store(now_ms.unwrap_or(0), Ordering::Relaxed);
    }

    pub fn now_ms(&self) -> u64 {
        match self.pinned_now_ms.load(Ordering::Relaxed) {
            0 => crate::now_ms(),
            pinned => pinned,
        }
    }

    /// Run `f` on the key store (blocking: call it off the async workers).
    pub fn with_store<T>(&self, f: impl FnOnce(&mut dyn KeyStore) -> T) -> T {
        let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut **store)
    }

    /// The active key `token` names, read from the store now (blocking).
    pub fn authenticate(&self, token: &str) -> Result<Option<KeyRow>, ApiKeyError> {
        self.with_store(|s| apikeys::lookup(s, token))
    }

    /// [`KeyGate::authenticate`], but only if it cannot wait: the store is local and no other
    /// thread is using it (one may be writing a spend, fsync included). `None` otherwise, and
    /// the caller goes to the blocking pool. Safe on an async worker.
    pub fn try_authenticate(&self, token: &str) -> Option<Result<Option<KeyRow>, ApiKeyError>> {
        if !self.local {
            return None;
        }
        let store = self.store.try_lock().ok()?;
        Some(apikeys::lookup(&**store, token))
    }

    /// Take one request and `call_tokens` tokens from `key`'s buckets, or neither:
    /// `Err((seconds until both would be there, which limit))`.
    fn take_rate(
        &self,
        key: &KeyRow,
        call_tokens: u64,
        now_ms: u64,
    ) -> Result<(), (u64, &'static str)> {
        if key.requests_per_minute.is_none() && key.tokens_per_minute.is_none() {
            return Ok(());
        }
        let rpm = key.requests_per_minute.map(|r| r as f64);
        let tpm = key.tokens_per_minute.map(|t| t as f64);
        let mut all = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if all.len() >= MAX_TRACKED_KEYS && !all.contains_key(&key.id) {
            all.clear();
        }
        let b = all.entry(key.id.clone()).or_insert(Buckets {
            requests: rpm.unwrap_or(0.0),
            tokens: tpm.unwrap_or(0.0),
            last_ms: now_ms,
        });
        let elapsed_ms = now_ms.saturating_sub(b.last_ms) as f64;
        b.last_ms = b.last_ms.max(now_ms);
        if let Some(rpm) = rpm {
            b.requests = (b.requests + elapsed_ms * rpm / MINUTE_MS).min(rpm);
        }
        if let Some(tpm) = tpm {
            b.tokens = (b.tokens + elapsed_ms * tpm / MINUTE_MS).min(tpm);
        }
        let mut wait_s = 0u64;
        let mut which = "";
        if let Some(rpm) = rpm.filter(|_| b.requests < 1.0) {
            wait_s = ((1.0 - b.requests) * MINUTE_MS / rpm / 1000.0).ceil() as u64;
            which = "requests_per_minute";
        }
        if let Some(tpm) = tpm.filter(|_| b.tokens < call_tokens as f64) {
            let w = ((call_tokens as f64 - b.tokens) * MINUTE_MS / tpm / 1000.0).ceil() as u64;
            if w >= wait_s {
                wait_s = w;
                which = "tokens_per_minute";
            }
        }
        if !which.is_empty() {
            return Err((wait_s.max(1), which));
        }
        if rpm.is_some() {
            b.requests -= 1.0;
        }
        if tpm.is_some() {
            b.tokens -= call_tokens as f64;
        }
        Ok(())
    }

    /// Give back tokens a call reserved but did not use.
    fn refund_tokens(&self, key: &KeyRow, unused: u64) {
        let Some(tpm) = key.tokens_per_minute else {
            return;
        };
        let mut all = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = all.get_mut(&key.id) {
            b.tokens = (b.tokens + unused as f64).min(tpm as f64);
        }
    }

    /// Settle every pending spend left by a process that stopped mid-call: from the receipt the
    /// ledger holds for its usage id (its charge is added), or dropped when there is none (the
    /// call charged nothing). Run by the writer at start, before it serves a call.
    pub fn reconcile(&self, st: &AppState) -> Result<usize, ApiError> {
        let mut settled = 0;
        loop {
            let pending =
                self.with_store(|s| s.pending_spends(shoulders_store::MAX_KEY_PAGE_ROWS))?;
            if pending.is_empty() {
                return Ok(settled);
            }
            for p in pending {
                settle_from_ledger(st, &p.usage_id)?;
                settled += 1;
            }
        }
    }
}

impl From<ApiKeyError> for ApiError {
    fn from(e: ApiKeyError) -> Self {
        let status = match &e {
            ApiKeyError::Unknown(_) => StatusCode::NOT_FOUND,
            ApiKeyError::Ambiguous(_) | ApiKeyError::BadLimits(_) | ApiKeyError::BadActor(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiKeyError::TooMany => StatusCode::CONFLICT,
            ApiKeyError::Store(_) | ApiKeyError::File { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<shoulders_store::StoreError> for ApiError {
    fn from(e: shoulders_store::StoreError) -> Self {
        ApiError::from(ApiKeyError::Store(e))
    }
}

/// Add the charge the ledger recorded for `usage_id` to its key's spend (or drop its pending
/// row when no receipt has that id). Blocking.
fn settle_from_ledger(st: &AppState, usage_id: &str) -> ApiResult<()> {
    let charge: Option<u128> = st.view().with_history(|_, store| {
        let Some(index) = store.usage_many(&[usage_id.to_string()])?.pop().flatten() else {
            return Ok(None);
        };
        Ok(store
            .receipt(index)?
            .map(|r| r.charge_micros.parse::<u128>().unwrap_or(0)))
    })?;
    st.api_keys.with_store(|s| match charge {
        Some(c) => s.settle_spend(usage_id, c).map(drop),
        None => s.cancel_spend(usage_id),
    })?;
    Ok(())
}

/// What an admitted call holds: tokens taken from its key's bucket, and, for a key with a
/// budget, the maximum charge held against it and a durable pending spend row. Settle it with
/// [`Admission::settle`] after the receipt append; dropped unsettled (a failed or cancelled
/// call), it releases the hold and removes the pending row.
pub struct Admission {
    st: Arc<AppState>,
    key: KeyRow,
    tokens_taken: u64,
    /// The usage id whose pending spend row exists, until settled.
    pending: Option<String>,
    hold: Option<preauth::Hold>,
}

impl Admission {
    /// The call is over: `used_tokens` (prompt plus output) counted against the token limit;
    /// the charge the ledger recorded for the call's usage id added to the key's spend. Then the
    /// budget hold is released. Blocking; call it after the receipt append, whatever its outcome.
    pub fn settle(mut self, used_tokens: u64) -> ApiResult<()> {
        let st = Arc::clone(&self.st);
        st.api_keys
            .refund_tokens(&self.key, self.tokens_taken.saturating_sub(used_tokens));
        self.tokens_taken = 0;
        let out = match self.pending.take() {
            Some(usage_id) => settle_from_ledger(&st, &usage_id),
            None => Ok(()),
        };
        drop(self.hold.take());
        out
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let Some(usage_id) = self.pending.take() else {
            return;
        };
        // Settled from the ledger, not simply cancelled: a call abandoned after its receipt
        // was appended is still counted. Off the async workers when there are some.
        let st = Arc::clone(&self.st);
        let hold = self.hold.take();
        let work = move || {
            if let Err(e) = settle_from_ledger(&st, &usage_id) {
                eprintln!(
                    "shoulders serve: error[{}]: settling API key spend of {usage_id}: {}; \
                     the next start settles it",
                    e.code, e.message
                );
            }
            drop(hold);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(work)),
            Err(_) => work(),
        }
    }
}

/// Admit one call by `key` to `model_id` asking for `prompt_tokens + max_tokens` tokens, under
/// usage id `usage_id`: rate limits first, then (with metering on) the key's budget. Blocking.
pub fn admit(
    st: &Arc<AppState>,
    key: &KeyRow,
    model_id: &str,
    prompt_tokens: u64,
    max_tokens: u64,
    usage_id: &str,
) -> ApiResult<Admission> {
    let gate = &st.api_keys;
    let now_ms = gate.now_ms();
    let call_tokens = prompt_tokens.saturating_add(max_tokens);
    if let Some(tpm) = key.tokens_per_minute.filter(|t| call_tokens > *t) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "E_GENERATE_PARAMS",
            format!(
                "this call may use {call_tokens} tokens (prompt {prompt_tokens} + max_tokens \
                 {max_tokens}), more than API key {}'s tokens_per_minute {tpm}; lower max_tokens \
                 or shorten the prompt",
                key.id
            ),
        ));
    }
    gate.take_rate(key, call_tokens, now_ms)
        .map_err(|(wait_s, which)| {
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "E_KEY_RATE_LIMITED",
                format!(
                    "API key {} is over its {which} limit; retry after {wait_s} s",
                    key.id
                ),
            );
            e.retry_after_s = Some(wait_s);
            e
        })?;
    let mut admission = Admission {
        st: Arc::clone(st),
        key: key.clone(),
        tokens_taken: call_tokens,
        pending: None,
        hold: None,
    };
    let budget = apikeys::limits_of(key).budget;
    let (Some(budget), crate::Metering::On) = (budget, st.config.metering) else {
        return Ok(admission);
    };
    // A call refused for its budget still counts as a request, but uses no tokens.
    let (hold, start_ms) = hold_budget(st, key, &budget, model_id, max_tokens, now_ms)
        .inspect_err(|_| gate.refund_tokens(key, call_tokens))?;
    admission.hold = Some(hold);
    gate.with_store(|s| {
        s.begin_spend(&PendingSpend {
            usage_id: usage_id.to_string(),
            key_id: key.id.clone(),
            period_start_ms: start_ms,
        })
    })?;
    admission.pending = Some(usage_id.to_string());
    Ok(admission)
}

/// Hold the call's maximum charge against `key`'s budget for the period holding `now_ms`
/// (`402 E_KEY_BUDGET_EXCEEDED` when the spend so far and the holds of calls in flight leave
/// too little); returns the hold and the period's start. Blocking.
fn hold_budget(
    st: &Arc<AppState>,
    key: &KeyRow,
    budget: &apikeys::Budget,
    model_id: &str,
    max_tokens: u64,
    now_ms: u64,
) -> ApiResult<(preauth::Hold, u64)> {
    let gate = &st.api_keys;
    let over = |m: String| ApiError::new(StatusCode::PAYMENT_REQUIRED, "E_KEY_BUDGET_EXCEEDED", m);
    let max = st
        .view()
        .with_state(|s| s.max_charge(model_id, max_tokens))
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.code(), e.to_string()))?;
    if max.currency != budget.currency {
        return Err(over(format!(
            "API key {}'s budget is in {}, and {model_id} charges in {}; use a key with a {} \
             budget or none",
            key.id, budget.currency, max.currency, max.currency
        )));
    }
    let (start_ms, end_ms) = budget.period.bounds_ms(now_ms);
    let scope = format!("api key {} from {start_ms}", key.id);
    let mut read_err = None;
    let hold = st
        .reservations()
        .reserve(&scope, &budget.currency, max.total_micros, || {
            match gate.with_store(|s| s.spent(&key.id, start_ms)) {
                Ok(spent) => {
                    i128::try_from(budget.amount_micros.saturating_sub(spent)).unwrap_or(0)
                }
                Err(e) => {
                    read_err = Some(e);
                    0
                }
            }
        });
    if let Some(e) = read_err {
        return Err(e.into());
    }
    let hold = hold.map_err(|short| {
        over(format!(
            "API key {} has {} of its {} {} micro-unit budget left this {} ({} of it held by \
             calls in flight); a call to {model_id} with max_tokens {max_tokens} may cost up \
             to {}; the budget resets at {} (Unix ms, UTC {})",
            key.id,
            short.balance_micros,
            budget.amount_micros,
            budget.currency,
            budget.period.as_str(),
            short.held_micros,
            max.total_micros,
            end_ms,
            match budget.period {
                BudgetPeriod::Day => "midnight",
                BudgetPeriod::Month => "first of the month",
            }
        ))
    })?;
    Ok((hold, start_ms))
}
