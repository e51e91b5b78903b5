//! The OpenAI-compatible gateway: `GET /v1/models`, `POST /v1/completions` and
//! `POST /v1/chat/completions` (with `stream: true` as server-sent events), so the official
//! `openai` clients work unchanged with `base_url` pointed here.
//!
//! For each call: the bearer token names the payer (see [`crate::apikeys`]); the payer's use
//! (`"use"` in the request, default `commercial`) must be allowed by the model's effective
//! licence; with metering on, the most the call can cost is reserved against the payer's
//! balance before any model runs ([`crate::preauth`]; 402 when short); the completion comes
//! from the model's configured upstream (its answer read under a byte cap), or else from the
//! embedded ∞-gram model over the first of the model's (then its ancestors') datasets that has
//! an attribution index; its output tokens are counted here ([`counted_tokens`]), never taken
//! from an upstream; the output is attributed against that dataset; a `usage.receipt`
//! signed with the operator key is appended (when metering is on) **before** anything is
//! returned; and the answer carries an extra `shoulders` field with the receipt, the
//! attribution and the price. Streaming responses of the embedded model are produced from the
//! finished, metered completion, so a client never sees text whose receipt is not durable; an
//! upstream's stream is relayed as it arrives and settled at its end ([`crate::streaming`]).
//!
//! A request may also bound the royalty stack the payer accepts (`max_royalty_bps`, basis
//! points): a model whose stack totals more is refused with 403 `E_LICENSE_DENIED` before
//! anything is reserved or run, and the receipt carries the bound.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shoulders_attrib::dataset::{AttributeOptions, AttributionReport, DatasetIndex};
use shoulders_attrib::generate::{generate, GenerateParams};
use shoulders_record::{sign_record, AttributionShare, Body, IndexState, UsageReceipt};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::body_bytes;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::metrics::AdmittedOn;
use crate::{keygate, preauth, AppState, Metering, WriterNode};
use shoulders_store::KeyRow;

/// Default and largest `max_tokens` (bytes: the embedded model's tokens are bytes).
pub const DEFAULT_MAX_TOKENS: usize = 256;
pub const MAX_MAX_TOKENS: usize = 16_384;
/// Largest prompt used as the embedded model's context, in bytes (the end of it is kept).
pub const MAX_PROMPT_BYTES: usize = 1 << 20;
/// Bytes per streamed chunk (cut at character boundaries).
const STREAM_CHUNK_BYTES: usize = 24;

pub(crate) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_models))
        .routes(routes!(completions))
        .routes(routes!(chat_completions))
}

/// Models the gateway serves: every registered model (an upstream-backed one or one with an
/// indexed dataset answers; others fail with `E_NO_INDEX`).
#[utoipa::path(get, path = "/v1/models", tag = "gateway", responses((status = 200, body = Object)))]
async fn list_models(State(st): State<Arc<AppState>>) -> Json<Value> {
    let data = st.view().with_state(|s| {
        s.models()
            .map(|m| {
                json!({
                    "id": m.model_id,
                    "object": "model",
                    "created": m.registered_ts_ms / 1000,
                    "owned_by": m.owner,
                })
            })
            .collect::<Vec<_>>()
    });
    Json(json!({"object": "list", "data": data}))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StopField {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PromptField {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Value>),
}

#[derive(Deserialize)]
struct Message {
    role: String,
    content: Option<Content>,
}

/// The fields we read; others (temperature, user, ...) are accepted and passed upstream.
#[derive(Deserialize)]
struct GatewayRequest {
    model: String,
    messages: Option<Vec<Message>>,
    prompt: Option<PromptField>,
    max_tokens: Option<usize>,
    max_completion_tokens: Option<usize>,
    #[serde(default)]
    stream: bool,
    seed: Option<u64>,
    stop: Option<StopField>,
    #[serde(rename = "use")]
    use_tag: Option<String>,
    /// The most stacked upstream royalty the payer accepts, in basis points (0-10000): a model
    /// whose royalty stack totals more is refused (403 `E_LICENSE_DENIED`) before it runs; the
    /// receipt carries it, so every verifier sees the limit the use was accepted under and the
    /// fold checks it again.
    max_royalty_bps: Option<u32>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    Chat,
    Completions,
}

impl Api {
    pub(crate) fn operation(self) -> crate::metrics::Operation {
        match self {
            Api::Chat => crate::metrics::Operation::Chat,
            Api::Completions => crate::metrics::Operation::TextCompletion,
        }
    }
}

/// Counts a call to a known model as failed when dropped before it was answered: every `?`
/// after the model was found, and a call cancelled (client gone, request timeout).
pub(crate) struct CallCounted {
    st: Arc<AppState>,
    operation: crate::metrics::Operation,
    model: String,
    pub(crate) answered: bool,
}

impl Drop for CallCounted {
    fn drop(&mut self) {
        if !self.answered {
            self.st.metrics.gateway_failed(self.operation, &self.model);
        }
    }
}

/// Create a chat completion (OpenAI Chat Completions API). The embedded model continues the
/// last user message.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "gateway",
    request_body(content = Object, description = "OpenAI chat completion request; optional `use` (default `commercial`) and `max_royalty_bps` (the most stacked upstream royalty the payer accepts, 0-10000; put in the receipt)"),
    responses((status = 200, description = "chat.completion (or text/event-stream chunks when stream is true), with a `shoulders` field", body = Object),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 402, description = "E_INSUFFICIENT_FUNDS: the payer cannot cover the call; E_KEY_BUDGET_EXCEEDED: the API key's budget for this UTC day or month cannot", body = ErrorBody),
        (status = 403, description = "E_LICENSE_DENIED: the use is not allowed (or the model's royalty stack is over `max_royalty_bps`); E_READ_ONLY: this node serves reads only, send metered calls to the writer node", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 429, description = "E_KEY_RATE_LIMITED: the API key is over its requests or tokens per minute (see Retry-After)", body = ErrorBody),
        (status = 502, body = ErrorBody)))]
async fn chat_completions(
    State(st): State<Arc<AppState>>,
    _: WriterNode,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    handle(st, headers, body, Api::Chat).await
}

/// Create a completion (OpenAI legacy Completions API): the embedded model continues `prompt`.
#[utoipa::path(post, path = "/v1/completions", tag = "gateway",
    request_body(content = Object, description = "OpenAI completion request; optional `use` (default `commercial`) and `max_royalty_bps` (the most stacked upstream royalty the payer accepts, 0-10000; put in the receipt)"),
    responses((status = 200, description = "text_completion (or text/event-stream chunks when stream is true), with a `shoulders` field", body = Object),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 402, description = "E_INSUFFICIENT_FUNDS: the payer cannot cover the call; E_KEY_BUDGET_EXCEEDED: the API key's budget for this UTC day or month cannot", body = ErrorBody),
        (status = 403, description = "E_LICENSE_DENIED: the use is not allowed (or the model's royalty stack is over `max_royalty_bps`); E_READ_ONLY: this node serves reads only, send metered calls to the writer node", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 429, description = "E_KEY_RATE_LIMITED: the API key is over its requests or tokens per minute (see Retry-After)", body = ErrorBody),
        (status = 502, body = ErrorBody)))]
async fn completions(
    State(st): State<Arc<AppState>>,
    _: WriterNode,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    handle(st, headers, body, Api::Completions).await
}

/// The active API key `Authorization: Bearer` names, read from the store now (so a key
/// revoked by any process is refused from its next request on); `401 E_UNAUTHORIZED` without
/// one. The key's actor pays.
pub(crate) async fn api_key(st: &Arc<AppState>, headers: &HeaderMap) -> ApiResult<KeyRow> {
    let token = bearer_token(headers)?;
    let st2 = Arc::clone(st);
    tokio::task::spawn_blocking(move || authenticate(&st2, &token)).await?
}

/// The token of `Authorization: Bearer <token>`; `401 E_UNAUTHORIZED` without one.
fn bearer_token(headers: &HeaderMap) -> ApiResult<String> {
    Ok(headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "E_UNAUTHORIZED",
                "missing `Authorization: Bearer <api key>`; an admin issues keys with `shoulders apikey new`",
            )
        })?
        .to_string())
}

/// The active API key `token` names, read from the store now; `401 E_UNAUTHORIZED` when it
/// is unknown or revoked. Blocking.
fn authenticate(st: &AppState, token: &str) -> ApiResult<KeyRow> {
    active_key(st.api_keys.authenticate(token))
}

/// The key a look-up found, or `401 E_UNAUTHORIZED`.
fn active_key(found: Result<Option<KeyRow>, crate::apikeys::ApiKeyError>) -> ApiResult<KeyRow> {
    found?.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "E_UNAUTHORIZED",
            "unknown or revoked API key; an admin issues keys with `shoulders apikey new`",
        )
    })
}

/// Whether the admission of a call by `key` may run on the async worker that received it
/// instead of the blocking pool. Admission is a key look-up plus in-memory checks (~50 µs);
/// the hop to the pool and back costs two thread wake-ups (~150 µs on a small VM), the largest
/// share of an uncontended call's overhead. So it runs on the worker when nothing in it can
/// wait: the key was read without waiting ([`crate::keygate::KeyGate::try_authenticate`]), the
/// key has no budget whose pending spend is a durable write, and the ledger's writer has
/// nothing queued, so no commit holds the state the checks read (one that starts right after
/// this look makes them wait for it: at most one commit, and rare). An index is never opened
/// there either (the handler opens it on the pool afterwards: the first call after a build).
/// Otherwise, and on a read node, admission goes to the pool as before.
fn admits_on_worker(st: &AppState, key: &KeyRow) -> bool {
    let budget_write =
        st.config.metering == Metering::On && crate::apikeys::limits_of(key).budget.is_some();
    let writer_idle = st.writer().is_ok_and(|w| w.queued_records() == 0);
    !budget_write && writer_idle
}

fn prompt_text(req: &GatewayRequest, api: Api) -> ApiResult<String> {
    let text = match api {
        Api::Chat => {
            let messages = req
                .messages
                .as_ref()
                .filter(|m| !m.is_empty())
                .ok_or_else(|| ApiError::bad_json("`messages` must be a non-empty list"))?;
            let last = messages
                .iter()
                .rev()
                .find(|m| m.role == "user")
                .or(messages.last())
                .expect("non-empty");
            match &last.content {
                Some(Content::Text(t)) => t.clone(),
                Some(Content::Parts(parts)) => parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(""),
                None => String::new(),
            }
        }
        Api::Completions => match &req.prompt {
            Some(PromptField::One(p)) => p.clone(),
            Some(PromptField::Many(ps)) if ps.len() == 1 => ps[0].clone(),
            Some(PromptField::Many(_)) => {
                return Err(ApiError::bad_json(
                    "`prompt` must be one string (batches are not supported)",
                ))
            }
            None => return Err(ApiError::bad_json("`prompt` is required")),
        },
    };
    if text.len() > MAX_PROMPT_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "E_TEXT_TOO_LARGE",
            format!(
                "the prompt is {} bytes; the limit is {MAX_PROMPT_BYTES}",
                text.len()
            ),
        ));
    }
    Ok(text)
}

/// The dataset the embedded model and the attribution use: the model's own datasets first, then
/// its ancestors' by depth; the first with a built index. Blocking: opens that index if it is
/// not open yet.
fn model_dataset(st: &AppState, model_id: &str) -> ApiResult<Option<(String, Arc<DatasetIndex>)>> {
    for d in dataset_candidates(st, model_id) {
        if let Some(ix) = st.dataset_index(&d)? {
            return Ok(Some((d, ix)));
        }
    }
    Ok(None)
}

/// [`model_dataset`] without opening an index (safe on an async worker): `None` when the
/// index it would use must be opened or reopened first.
fn model_dataset_if_open(
    st: &AppState,
    model_id: &str,
) -> Option<Option<(String, Arc<DatasetIndex>)>> {
    for d in dataset_candidates(st, model_id) {
        if let Some(ix) = st.dataset_index_if_open(&d)? {
            return Some(Some((d, ix)));
        }
    }
    Some(None)
}

/// The datasets [`model_dataset`] looks at, in order.
fn dataset_candidates(st: &AppState, model_id: &str) -> Vec<String> {
    st.view().with_state(|s| {
        let mut out: Vec<String> = s
            .model(model_id)
            .map(|m| m.datasets.clone())
            .unwrap_or_default();
        if let Some(p) = shoulders_state::provenance(s, model_id) {
            let mut ancestors = p.ancestors.clone();
            ancestors.sort_by_key(|a| a.depth);
            for a in ancestors {
                if let Some(m) = s.model(&a.model_id) {
                    out.extend(m.datasets.iter().cloned());
                }
            }
        }
        out
    })
}

struct Completion {
    text: String,
    finish_reason: String,
    /// Bytes of the prompt text.
    prompt_tokens: u64,
    /// The tokens charged for: [`counted_tokens`] of the delivered text.
    completion_tokens: u64,
    source: &'static str,
    /// The upstream's own `usage`, reported but never charged for.
    upstream_usage: Option<Value>,
}

/// The output tokens a call is charged for: the delivered text's bytes, at most `max_tokens`.
///
/// The gateway counts them itself; an upstream's `usage` numbers are never trusted (a stub that
/// reported 50 000 tokens for "ok" was charged for them). For the embedded model this is exact
/// (its tokens are bytes). For an upstream it is the largest count the delivered text can
/// justify: every token of a byte-level tokenizer decodes to at least one byte, so `n` bytes
/// carry at most `n` tokens; and the upstream was asked for at most `max_tokens` (the gateway
/// forwards it), which is also what the payer pre-authorised. So a call is never charged for
/// more than it delivered nor more than it asked for; an upstream whose tokens average several
/// bytes is charged per byte up to `max_tokens` (price such models per 1k bytes).
pub fn counted_tokens(text: &str, max_tokens: usize) -> u64 {
    text.len().min(max_tokens) as u64
}

/// Reserve the most a call to `model_id` with at most `max_tokens` output tokens can cost
/// ([`shoulders_state::State::max_charge`]: the price per call, `max_tokens` at the per-1k
/// price, and the royalty floors along the lineage) against the payer's balance less what its
/// calls in flight hold. Refused with 402 `E_INSUFFICIENT_FUNDS` when it does not cover it, and
/// with the fold's own code when the fold could not charge the call at all (no operator, a model
/// without a price or floors, a charge over the limit): either way before any model runs.
/// Blocking (reads the state).
fn preauthorise(
    st: &AppState,
    payer: &str,
    model_id: &str,
    max_tokens: u64,
) -> ApiResult<preauth::Hold> {
    let max = st
        .view()
        .with_state(|s| s.max_charge(model_id, max_tokens))
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.code(), e.to_string()))?;
    st.reservations()
        .reserve(payer, &max.currency, max.total_micros, || {
            st.view().with_state(|s| s.balance(payer, &max.currency))
        })
        .map_err(|short| {
            ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "E_INSUFFICIENT_FUNDS",
                format!(
                    "{payer} holds {} {} micro-units, {} of them reserved by calls in flight; \
                     a call to {model_id} with max_tokens {max_tokens} may cost up to {} \
                     (lower max_tokens or deposit more)",
                    short.balance_micros, max.currency, short.held_micros, max.total_micros
                ),
            )
        })
}

/// A call that passed every check made before any model runs ([`admit_call`]).
struct Admitted {
    req: GatewayRequest,
    /// The client's request as received (forwarded upstream).
    raw: Value,
    payer: String,
    prompt: String,
    max_tokens: usize,
    use_tag: String,
    now_ms: u64,
    decision: shoulders_state::Decision,
    counted: CallCounted,
    /// The hold of the call's maximum charge against the payer's balance (metering on).
    hold: Option<preauth::Hold>,
    usage_id: String,
    admission: keygate::Admission,
    /// The dataset the embedded model and the attribution use; `None` when its index is still
    /// to be opened (admitted on the async worker, which never opens one).
    dataset: Option<Option<(String, Arc<DatasetIndex>)>>,
}

/// Every check of a call by `key` (found first: 401) before any model runs, in this order: the
/// request (400, 413), the model (404) and the payer's use under its licence (403), the hold
/// of the call's maximum charge against the payer's balance (402), the API key's rate limits
/// and budget (429, 402); then the dataset the model answers from. May block (the key store,
/// the state, the index directory): the handler runs it on the blocking pool, in one hop rather
/// than one per step, unless [`admits_on_worker`].
fn admit_call(
    st: &Arc<AppState>,
    key: KeyRow,
    body: Result<Bytes, BytesRejection>,
    api: Api,
    on_worker: bool,
) -> ApiResult<Admitted> {
    let payer = key.actor.clone();
    let bytes = body_bytes(body)?;
    let raw: Value = serde_json::from_slice(&bytes).map_err(ApiError::bad_json)?;
    let req = GatewayRequest::deserialize(&raw).map_err(ApiError::bad_json)?;
    let prompt = prompt_text(&req, api)?;
    let max_tokens = req
        .max_completion_tokens
        .or(req.max_tokens)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    if max_tokens > MAX_MAX_TOKENS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "E_GENERATE_PARAMS",
            format!("max_tokens {max_tokens} is over the limit {MAX_MAX_TOKENS}"),
        ));
    }
    if let Some(max) = req
        .max_royalty_bps
        .filter(|m| *m > shoulders_record::BPS_ONE)
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "E_GENERATE_PARAMS",
            format!("max_royalty_bps {max} is over 10000"),
        ));
    }
    let use_tag = req.use_tag.clone().unwrap_or_else(|| "commercial".into());
    let now_ms = crate::now_ms();
    let decision = st
        .view()
        .with_state(|s| s.check_use(&req.model, &use_tag, None, now_ms, req.max_royalty_bps))
        .ok_or_else(|| ApiError::not_found(format!("no model {:?} on this ledger", req.model)))?;
    // From here on the model is one the ledger knows, so it may be a metrics label.
    let counted = CallCounted {
        st: Arc::clone(st),
        operation: api.operation(),
        model: req.model.clone(),
        answered: false,
    };
    if !decision.allowed {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "E_LICENSE_DENIED",
            format!(
                "{use_tag:?} use of {} is not allowed: {}",
                req.model,
                decision.reasons.join("; ")
            ),
        ));
    }

    // Pre-authorisation: hold the most this call can cost before any model runs; released
    // when its receipt is committed, or on any failure or cancellation (the hold's `Drop`).
    let hold = match st.config.metering {
        Metering::On => Some(preauthorise(st, &payer, &req.model, max_tokens as u64)?),
        Metering::Off => None,
    };

    // API key admission (see `keygate`): the key's rate limits and budget, before any model
    // runs. Settled after the receipt append.
    let usage_id = format!("shoulders-{}", random_hex());
    let admission = keygate::admit(
        st,
        &key,
        &req.model,
        prompt.len() as u64,
        max_tokens as u64,
        &usage_id,
    )?;

    // On the worker an index is never opened: the handler opens it on the pool afterwards.
    let dataset = if on_worker {
        model_dataset_if_open(st, &req.model)
    } else {
        Some(model_dataset(st, &req.model)?)
    };
    Ok(Admitted {
        req,
        raw,
        payer,
        prompt,
        max_tokens,
        use_tag,
        now_ms,
        decision,
        counted,
        hold,
        usage_id,
        admission,
        dataset,
    })
}

async fn handle(
    st: Arc<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    api: Api,
) -> ApiResult<Response> {
    let started = Instant::now();
    let token = bearer_token(&headers)?;
    let key = st
        .api_keys
        .try_authenticate(&token)
        .map(active_key)
        .transpose()?;
    let admitted = match key {
        Some(key) if admits_on_worker(&st, &key) => {
            st.metrics.gateway_admitted(AdmittedOn::Worker);
            admit_call(&st, key, body, api, true)?
        }
        key => {
            st.metrics.gateway_admitted(AdmittedOn::Pool);
            let st2 = Arc::clone(&st);
            tokio::task::spawn_blocking(move || {
                let key = match key {
                    Some(key) => key,
                    None => authenticate(&st2, &token)?,
                };
                admit_call(&st2, key, body, api, false)
            })
            .await??
        }
    };
    let Admitted {
        req,
        raw,
        payer,
        prompt,
        max_tokens,
        use_tag,
        now_ms: now,
        decision,
        mut counted,
        hold,
        usage_id: id,
        admission,
        dataset,
    } = admitted;
    let dataset = match dataset {
        Some(dataset) => dataset,
        None => {
            let (st2, model) = (Arc::clone(&st), req.model.clone());
            tokio::task::spawn_blocking(move || model_dataset(&st2, &model)).await??
        }
    };

    let upstream = st.config.upstreams.get(&req.model).cloned();
    // With `stream: true` an upstream's answer is relayed as it arrives ([`crate::streaming`]):
    // everything above (licence, payer, hold) has already run.
    if let (true, Some(base)) = (req.stream, &upstream) {
        let call = crate::streaming::StreamCall {
            api,
            base: base.clone(),
            raw,
            model: req.model.clone(),
            payer,
            use_tag,
            max_royalty_bps: req.max_royalty_bps,
            prompt_tokens: prompt.len() as u64,
            max_tokens,
            now_ms: now,
            price: json!(decision.price),
            royalties: json!(decision.royalties),
            dataset,
            hold,
            started,
            usage_id: id,
            admission: Some(admission),
            counted,
        };
        return crate::streaming::relay(st, call).await;
    }
    // The end of the call, once its completion is known: attribute the output against the
    // dataset (an upstream model without an index is metered without attribution), then sign
    // and append the receipt and settle the API key ([`Settle::run`], on the blocking pool).
    // The search stops when the request is dropped (`cancel`), and then no receipt is appended.
    let cancel = crate::CancelOnDrop(Arc::default());
    let settle = Settle {
        st: Arc::clone(&st),
        cancel: Arc::clone(&cancel.0),
        dataset: dataset.clone(),
        usage_id: id.clone(),
        model_id: req.model.clone(),
        payer: payer.clone(),
        use_category: use_tag.clone(),
        max_royalty_bps: req.max_royalty_bps,
        now_ms: now,
        hold,
        admission,
        started,
    };
    let preauthorised = settle.hold.as_ref().map(preauth::Hold::amount_micros);
    let (completion, generated_ms, (attribution, attributed_ms, receipt_out)) = match &upstream {
        Some(base) => {
            let completion = call_upstream(&st, base, api, raw, &prompt, max_tokens).await?;
            let generated_ms = started.elapsed().as_secs_f64() * 1e3;
            tokio::task::spawn_blocking(move || {
                let settled = settle.run(&completion)?;
                Ok::<_, ApiError>((completion, generated_ms, settled))
            })
            .await??
        }
        None => {
            let (_, ix) = dataset.clone().ok_or_else(|| no_index(&req.model))?;
            let params = GenerateParams {
                max_tokens,
                seed: req.seed.unwrap_or(0),
                stop: match &req.stop {
                    None => Vec::new(),
                    Some(StopField::One(s)) => vec![s.clone()],
                    Some(StopField::Many(v)) => v.clone(),
                },
                ..GenerateParams::default()
            };
            // Generation and the end of the call are one task: one hop to the blocking pool
            // and back rather than two (each costs tens of µs of thread wake-ups).
            tokio::task::spawn_blocking(move || {
                let g = generate(ix.generation_index(), &prompt, &params)
                    .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()))?;
                let completion = Completion {
                    completion_tokens: counted_tokens(&g.text, max_tokens),
                    text: g.text,
                    finish_reason: g.finish_reason.as_str().to_string(),
                    prompt_tokens: prompt.len() as u64,
                    source: "embedded-infini-gram",
                    upstream_usage: None,
                };
                let generated_ms = started.elapsed().as_secs_f64() * 1e3;
                let settled = settle.run(&completion)?;
                Ok::<_, ApiError>((completion, generated_ms, settled))
            })
            .await??
        }
    };
    drop(cancel);

    let charge_micros = receipt_out
        .as_ref()
        .and_then(|r| r["charge_micros"].as_str())
        .map(|m| {
            m.parse::<u128>()
                .map_or(u64::MAX, |m| u64::try_from(m).unwrap_or(u64::MAX))
        });
    let currency = receipt_out
        .as_ref()
        .and_then(|r| r["currency"].as_str())
        .unwrap_or("");
    st.metrics.gateway_answered(&crate::metrics::GatewayCall {
        operation: api.operation(),
        model: &req.model,
        input_tokens: completion.prompt_tokens,
        output_tokens: completion.completion_tokens,
        took: started.elapsed(),
        receipt_appended: receipt_out.is_some(),
        charge: charge_micros.map(|m| (m, currency)),
        completed: true,
    });
    counted.answered = true;

    let created = now / 1000;
    let shoulders = json!({
        "payer": payer,
        "use": use_tag,
        "max_royalty_bps": req.max_royalty_bps,
        "source": completion.source,
        "metering": match st.config.metering { Metering::On => "on", Metering::Off => "off" },
        "receipt": receipt_out,
        "price": decision.price,
        "royalties": decision.royalties,
        // What was held while the call ran: the most it could cost (`null` without metering).
        "preauthorised_micros": preauthorised.map(|m| m.to_string()),
        // What the upstream said it used, for information only: the charge is for the tokens
        // counted here (`usage`).
        "upstream_usage": completion.upstream_usage,
        // The report names its dataset (the index it was attributed against).
        "attribution": attribution.as_ref().map(|(_, r)| r),
        "timing_ms": {"completion": generated_ms, "with_attribution": attributed_ms},
    });
    let usage = json!({
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "total_tokens": completion.prompt_tokens + completion.completion_tokens,
    });
    if req.stream {
        return Ok(stream_response(
            api, &id, created, &req.model, completion, usage, shoulders,
        ));
    }
    let choice = match api {
        Api::Chat => json!({
            "index": 0,
            "message": {"role": "assistant", "content": completion.text},
            "finish_reason": completion.finish_reason,
            "logprobs": null,
        }),
        Api::Completions => json!({
            "index": 0,
            "text": completion.text,
            "finish_reason": completion.finish_reason,
            "logprobs": null,
        }),
    };
    Ok(Json(json!({
        "id": id,
        "object": if api == Api::Chat { "chat.completion" } else { "text_completion" },
        "created": created,
        "model": req.model,
        "choices": [choice],
        "usage": usage,
        "shoulders": shoulders,
    }))
    .into_response())
}

/// Attribute `text` against the model's dataset (`None` without one, or for an empty output:
/// an upstream model without an index is metered without attribution).
pub(crate) async fn attribute_output(
    st: &Arc<AppState>,
    dataset: Option<(String, Arc<DatasetIndex>)>,
    text: &str,
) -> ApiResult<Option<(String, AttributionReport)>> {
    if dataset.is_none() || text.is_empty() {
        return Ok(None);
    }
    let cancel = crate::CancelOnDrop(Arc::default());
    let (st2, flag, text) = (Arc::clone(st), Arc::clone(&cancel.0), text.to_string());
    let report =
        tokio::task::spawn_blocking(move || attribute_blocking(&st2, dataset, &text, flag)).await;
    drop(cancel);
    report?
}

/// [`attribute_output`] on the calling thread, stopped when `cancel` is set. Blocking.
fn attribute_blocking(
    st: &AppState,
    dataset: Option<(String, Arc<DatasetIndex>)>,
    text: &str,
    cancel: Arc<AtomicBool>,
) -> ApiResult<Option<(String, AttributionReport)>> {
    let Some((dataset_id, ix)) = dataset.filter(|_| !text.is_empty()) else {
        return Ok(None);
    };
    let mut budget = st.attribution_budget(text.len(), cancel);
    // Takedowns and pending reviews apply at once (the fold drops them too).
    let opts = AttributeOptions {
        excluded: st
            .view()
            .with_state(|s| s.attribution_excluded(&dataset_id)),
        ..Default::default()
    };
    let searched = Instant::now();
    let report = ix.attribute_within(text, &opts, &mut budget);
    st.metrics.attribution(
        crate::metrics::AttributionSource::Gateway,
        searched.elapsed(),
    );
    Ok(Some((dataset_id, report?)))
}

/// The end of a non-streaming call, after its completion: attribute the output, sign and
/// append the receipt, settle the API key's spend, release the holds. Run on the blocking pool
/// as one task ([`Settle::run`]; for the embedded model, in the same task as the generation).
struct Settle {
    st: Arc<AppState>,
    /// Set when the request is dropped: the search stops and no receipt is appended.
    cancel: Arc<AtomicBool>,
    dataset: Option<(String, Arc<DatasetIndex>)>,
    /// The receipt's fields that do not depend on the completion.
    usage_id: String,
    model_id: String,
    payer: String,
    use_category: String,
    max_royalty_bps: Option<u32>,
    now_ms: u64,
    hold: Option<preauth::Hold>,
    admission: keygate::Admission,
    started: Instant,
}

/// What [`Settle::run`] gives back: the attribution, the time it was done (ms from the call's
/// start) and the appended receipt (`None` without metering).
type Settled = (Option<(String, AttributionReport)>, f64, Option<Value>);

impl Settle {
    /// Blocking.
    fn run(self, completion: &Completion) -> ApiResult<Settled> {
        let Settle {
            st,
            cancel,
            dataset,
            usage_id,
            model_id,
            payer,
            use_category,
            max_royalty_bps,
            now_ms,
            hold,
            admission,
            started,
        } = self;
        let text = &completion.text;
        // On any error below the hold and the admission are dropped: the hold released and
        // the key's pending spend settled from the ledger (nothing was appended).
        let attribution = attribute_blocking(&st, dataset.clone(), text, Arc::clone(&cancel))?;
        let attributed_ms = started.elapsed().as_secs_f64() * 1e3;
        if cancel.load(Ordering::Relaxed) {
            return Err(ApiError::internal(
                "the call was cancelled before its receipt was appended",
            ));
        }
        let receipt = UsageReceipt {
            usage_id,
            model_id,
            payer,
            use_category,
            input_tokens: completion.prompt_tokens,
            output_tokens: completion.completion_tokens,
            output_hash: output_hash(text),
            attribution: receipt_shares(attribution.as_ref()),
            evidence_hash: evidence_hash(attribution.as_ref()),
            max_royalty_bps,
            index_state: index_state(dataset.as_ref(), attribution.as_ref()),
        };
        // The hold is released only once the receipt is committed (or refused): the balance
        // the next reservation reads then already shows this charge. It is owned by this task,
        // so a handler cancelled meanwhile cannot release it before the append is over.
        let out = submit_receipt(&st, receipt, text, now_ms);
        // API key settlement: the charge the ledger recorded joins the key's spend before its
        // budget hold is released (prompt plus output tokens count against its token limit).
        let settled = admission.settle(completion.prompt_tokens + completion.completion_tokens);
        drop(hold);
        let out = out?;
        settled.map(|()| (attribution, attributed_ms, out))
    }
}

/// The receipt's `output_hash`: what exactly was delivered.
pub(crate) fn output_hash(text: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

/// The receipt's `index_state`: the segments of the index the report was attributed against
/// (an opened `DatasetIndex` never changes, so its state is the report's).
pub(crate) fn index_state(
    dataset: Option<&(String, Arc<DatasetIndex>)>,
    attribution: Option<&(String, AttributionReport)>,
) -> Option<IndexState> {
    attribution
        .and(dataset)
        .map(|(_, ix)| crate::audit::index_state_of(ix))
}

/// The receipt's `evidence_hash`: the attribution report it was split by.
pub(crate) fn evidence_hash(attribution: Option<&(String, AttributionReport)>) -> Option<String> {
    attribution.map(|(_, r)| {
        format!(
            "sha256:{}",
            hex::encode(Sha256::digest(serde_json::to_vec(r).unwrap_or_default()))
        )
    })
}

fn no_index(model: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "E_NO_INDEX",
        format!(
            "model {model} has no upstream and none of its (or its ancestors') datasets has an attribution index; \
             run `shoulders index build` for one of them or serve it with `--upstream {model}=URL`"
        ),
    )
}

pub(crate) fn random_hex() -> String {
    let mut b = [0u8; 12];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    hex::encode(b)
}

/// The receipt's attribution: each credited contribution's share of the output in ppm,
/// summing to exactly 1 000 000 (empty when the output has no evidence: the data pool then goes
/// to the model's owner).
pub(crate) fn receipt_shares(
    attribution: Option<&(String, AttributionReport)>,
) -> Vec<AttributionShare> {
    let Some((dataset_id, report)) = attribution else {
        return Vec::new();
    };
    report
        .shares
        .contributions_ppm
        .iter()
        .map(|(&contribution, &ppm)| AttributionShare {
            dataset_id: dataset_id.clone(),
            contribution,
            ppm: u32::try_from(ppm).expect("ppm ≤ 1 000 000"),
        })
        .collect()
}

/// Sign `receipt` with the operator key and append it; `None` when metering is off.
///
/// This is the one place metering touches the ledger: until the fold accepts `usage.receipt`
/// (issue 6), `--metering off` answers without a receipt. For a model whose outputs are kept
/// (`--keep-outputs`), `output` is stored durably in the content store (under the receipt's
/// `output_hash`) before the receipt is signed, so no acknowledged receipt lacks its output.
pub(crate) fn submit_receipt(
    st: &AppState,
    receipt: UsageReceipt,
    output: &str,
    now_ms: u64,
) -> ApiResult<Option<Value>> {
    if st.config.metering == Metering::Off {
        return Ok(None);
    }
    let key = st
        .operator_key
        .as_ref()
        .ok_or_else(|| ApiError::internal("metering is on but no operator key is loaded"))?;
    let kept = st.config.keep_outputs.contains(&receipt.model_id);
    if kept {
        st.content().put(output.as_bytes())?;
    }
    let id = receipt.usage_id.clone();
    let writer = st.writer()?;
    let record = sign_record(
        key,
        writer.origin(),
        &id,
        now_ms,
        Body::UsageReceipt(receipt),
    )?;
    // Signed here, so the ledger does not verify it again.
    let appended = writer.submit_record(record)?;
    // What the fold charged comes back with the append; reading it from the store instead
    // cost a reader refresh and two queries (~0.1 ms) after every commit. A duplicate (not
    // expected: the usage id is fresh) is read back.
    let (charge, currency, legs) = match &appended.charged {
        Some(c) => (
            Some(c.charge_micros.to_string()),
            Some(c.currency.to_string()),
            c.legs,
        ),
        None => st.view().with_history(|_, store| {
            let row = store.receipt(appended.index)?;
            Ok((
                row.as_ref().map(|r| r.charge_micros.clone()),
                row.map(|r| r.currency),
                store.legs_of_record(appended.index)?.len(),
            ))
        })?,
    };
    Ok(Some(json!({
        "index": appended.index,
        "leaf_hash": appended.leaf_hash.to_string(),
        "usage_id": id,
        "charge_micros": charge,
        "currency": currency,
        "legs": legs,
        "record": format!("/records/{}", appended.index),
        "output_kept": kept,
    })))
}

/// The upstream's endpoint for `api` under its base URL.
pub(crate) fn upstream_url(base: &str, api: Api) -> String {
    let path = match api {
        Api::Chat => "chat/completions",
        Api::Completions => "completions",
    };
    format!("{}/{path}", base.trim_end_matches('/'))
}

/// The client's request as sent upstream: with `stream` set, without the gateway's own fields,
/// and asking for no more than the payer pre-authorised and is charged for at most.
pub(crate) fn upstream_body(raw: &mut Value, max_tokens: usize, stream: bool) {
    if let Some(obj) = raw.as_object_mut() {
        obj.insert("stream".into(), Value::Bool(stream));
        obj.remove("use");
        obj.remove("max_royalty_bps");
        if !obj.contains_key("max_completion_tokens") {
            obj.insert("max_tokens".into(), json!(max_tokens));
        }
    }
}

async fn call_upstream(
    st: &AppState,
    base: &str,
    api: Api,
    mut raw: Value,
    prompt: &str,
    max_tokens: usize,
) -> ApiResult<Completion> {
    let url = upstream_url(base, api);
    // The gateway meters the finished completion, then streams it itself.
    upstream_body(&mut raw, max_tokens, false);
    let bad = |m: String| ApiError::new(StatusCode::BAD_GATEWAY, "E_UPSTREAM", m);
    // The client's timeout (`upstream_timeout_ms`) covers the whole exchange, the body's last
    // byte included, so a trickling upstream is cut off too.
    let resp = st
        .http
        .post(&url)
        .json(&raw)
        .send()
        .await
        .map_err(|e| bad(format!("upstream {url} failed: {e}")))?;
    let status = resp.status();
    let body = read_capped(resp, st.config.max_upstream_body_bytes)
        .await
        .map_err(|e| match e {
            CappedError::TooLarge { limit } => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "E_UPSTREAM_TOO_LARGE",
                format!(
                    "upstream {url} answered more than {limit} bytes; the answer was dropped \
                     and nothing was charged"
                ),
            ),
            CappedError::Read(e) => bad(format!("upstream {url} failed while answering: {e}")),
        })?;
    let value: Value = serde_json::from_slice(&body).map_err(|e| {
        bad(format!(
            "upstream {url} answered {status} with no JSON: {e}"
        ))
    })?;
    if !status.is_success() {
        let mut shown = value.to_string();
        if shown.len() > MAX_UPSTREAM_ERROR_SHOWN_BYTES {
            let mut end = MAX_UPSTREAM_ERROR_SHOWN_BYTES;
            while !shown.is_char_boundary(end) {
                end -= 1;
            }
            shown.truncate(end);
            shown.push('…');
        }
        return Err(bad(format!("upstream {url} answered {status}: {shown}")));
    }
    let choice = &value["choices"][0];
    let text = match api {
        Api::Chat => choice["message"]["content"].as_str(),
        Api::Completions => choice["text"].as_str(),
    }
    .ok_or_else(|| bad(format!("upstream {url} answered without a completion text")))?
    .to_string();
    Ok(Completion {
        prompt_tokens: prompt.len() as u64,
        completion_tokens: counted_tokens(&text, max_tokens),
        finish_reason: choice["finish_reason"]
            .as_str()
            .unwrap_or("stop")
            .to_string(),
        text,
        source: "upstream",
        upstream_usage: value.get("usage").filter(|u| u.is_object()).cloned(),
    })
}

/// Most bytes of an upstream's error answer quoted in the gateway's own error.
pub(crate) const MAX_UPSTREAM_ERROR_SHOWN_BYTES: usize = 1024;

pub(crate) enum CappedError {
    TooLarge { limit: usize },
    Read(reqwest::Error),
}

/// Read a response body chunk by chunk, failing as soon as it passes `limit` bytes (or declares
/// more up front), so at most `limit` bytes plus one chunk are ever held. The client is built
/// without decompression, so the bytes counted are the bytes received.
pub(crate) async fn read_capped(
    mut resp: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, CappedError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(CappedError::TooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(CappedError::Read)? {
        if body.len() + chunk.len() > limit {
            return Err(CappedError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Split at character boundaries into pieces of about `STREAM_CHUNK_BYTES`.
fn pieces(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + STREAM_CHUNK_BYTES).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        out.push(&text[start..end]);
        start = end;
    }
    out
}

fn stream_response(
    api: Api,
    id: &str,
    created: u64,
    model: &str,
    completion: Completion,
    usage: Value,
    shoulders: Value,
) -> Response {
    let object = if api == Api::Chat {
        "chat.completion.chunk"
    } else {
        "text_completion"
    };
    let chunk = |delta: Value, finish: Value| {
        let choice = match api {
            Api::Chat => {
                json!({"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null})
            }
            Api::Completions => {
                json!({"index": 0, "text": delta.get("content").cloned().unwrap_or(json!("")), "finish_reason": finish, "logprobs": null})
            }
        };
        json!({"id": id, "object": object, "created": created, "model": model, "choices": [choice]})
    };
    let mut events = Vec::new();
    if api == Api::Chat {
        events.push(chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
        ));
    }
    for p in pieces(&completion.text) {
        events.push(chunk(json!({"content": p}), Value::Null));
    }
    let mut last = chunk(json!({}), json!(completion.finish_reason));
    last["usage"] = usage;
    last["shoulders"] = shoulders;
    events.push(last);
    let stream = tokio_stream::iter(
        events
            .into_iter()
            .map(|v| Ok::<_, Infallible>(Event::default().data(v.to_string())))
            .chain(std::iter::once(Ok(Event::default().data("[DONE]")))),
    );
    Sse::new(stream).into_response()
}
