//! True streaming from an upstream: a gateway call with `stream: true` to a model served by
//! `--upstream MODEL=URL` asks the upstream for `stream: true` and relays its server-sent events
//! to the client as they arrive, re-emitted as the gateway's own chunks (its id and model, the
//! content passed through).
//!
//! Money follows what the client was actually given, never what the upstream claims:
//!
//! - **Before the first byte** the gateway has already run every check of a non-streaming call
//!   (payer, licence, `max_royalty_bps`) and holds the most the call can cost
//!   ([`crate::preauth`]); the upstream's answer status and content type are checked too, so a
//!   refusal or an upstream that fails at once is a plain JSON error, not a stream.
//! - **Delivered** means taken by the HTTP server to write to the client's connection: the
//!   response body ([`Delivery`]) adds an event's text to the delivered text as it hands the
//!   event over. Text still queued when the client goes away was not delivered.
//! - **At the end** one spawned task (the relay) settles, on every path: it counts
//!   [`crate::gateway::counted_tokens`] of the delivered text, attributes it, appends the
//!   `usage.receipt` (none when nothing was delivered and the stream did not complete), and only
//!   then releases the hold (the task owns it, so a panic or a runtime shutdown releases it too).
//!   A completed stream ends with a chunk carrying `finish_reason`, `usage` and `shoulders`, then
//!   `data: [DONE]`; a failed one ends with `data: {"error": {code, message}, "shoulders": …}`
//!   and no `[DONE]`.
//!
//! Bounds: the upstream exchange, stream included, is under the HTTP client's
//! `upstream_timeout_ms`; the bytes received under `max_upstream_body_bytes`; at most
//! [`RELAY_QUEUE_EVENTS`] events wait for a slow client (then the upstream is not read); a
//! client that stops reading is closed by the connection's idle timeout, which ends the relay.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Instant;

use axum::http::{header, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use shoulders_attrib::dataset::DatasetIndex;
use shoulders_record::UsageReceipt;
use tokio::sync::{mpsc, oneshot};

use crate::error::{ApiError, ApiResult};
use crate::gateway::{self, Api, CappedError};
use crate::{keygate, preauth, AppState, Metering};

/// Events the relay may queue ahead of the client before it stops reading the upstream.
pub const RELAY_QUEUE_EVENTS: usize = 16;

/// A streaming call that passed every check, with its hold: what [`relay`] needs.
pub(crate) struct StreamCall {
    pub api: Api,
    /// The upstream's base URL.
    pub base: String,
    /// The client's request, forwarded with `stream: true`.
    pub raw: Value,
    pub model: String,
    pub payer: String,
    pub use_tag: String,
    pub max_royalty_bps: Option<u32>,
    pub prompt_tokens: u64,
    pub max_tokens: usize,
    pub now_ms: u64,
    pub price: Value,
    pub royalties: Value,
    pub dataset: Option<(String, Arc<DatasetIndex>)>,
    /// Released only after the receipt is committed (or when none is due).
    pub hold: Option<preauth::Hold>,
    pub started: Instant,
    /// The receipt's usage id (also the chunks' id), under which the API key's admission left
    /// its pending spend.
    pub usage_id: String,
    /// The API key's admission: settled with the receipt's charge once it is appended, so a
    /// streamed call counts against the key's budget like any other.
    pub admission: Option<keygate::Admission>,
    /// Metrics: a call dropped before it was settled counts as failed.
    pub counted: gateway::CallCounted,
}

/// Why a stream stopped before its end. Each is reported to the client as an error event with
/// [`StreamFailure::code`]; only the text delivered before it is charged.
#[derive(Debug, thiserror::Error)]
pub enum StreamFailure {
    #[error(
        "upstream {url} did not finish within {timeout_ms} ms (--upstream-timeout-ms); \
         the stream was cut there and only what was delivered is charged"
    )]
    Timeout { url: String, timeout_ms: u64 },
    #[error(
        "upstream {url} sent more than {limit_bytes} bytes (--max-upstream-body-bytes); \
         the stream was cut there and only what was delivered is charged"
    )]
    TooLarge { url: String, limit_bytes: usize },
    #[error("upstream {url} sent an event that is not a completion chunk ({reason}); the stream was cut there and only what was delivered is charged")]
    BadEvent { url: String, reason: String },
    #[error("upstream {url} failed mid-stream ({reason}); only what was delivered is charged")]
    Upstream { url: String, reason: String },
    /// The receipt for the delivered text could not be appended (the call is then not charged).
    #[error("{0}")]
    Settle(ApiError),
}

impl StreamFailure {
    pub fn code(&self) -> &'static str {
        match self {
            StreamFailure::Timeout { .. } => "E_UPSTREAM_TIMEOUT",
            StreamFailure::TooLarge { .. } => "E_UPSTREAM_TOO_LARGE",
            StreamFailure::BadEvent { .. } => "E_UPSTREAM_BAD_EVENT",
            StreamFailure::Upstream { .. } => "E_UPSTREAM",
            StreamFailure::Settle(e) => e.code,
        }
    }

    fn message(&self) -> String {
        match self {
            StreamFailure::Settle(e) => e.message.clone(),
            other => other.to_string(),
        }
    }
}

/// How the upstream part of a stream ended when it did not fail.
enum End {
    /// `[DONE]`, or a clean end after a chunk with a `finish_reason`.
    Finished,
    /// The client went away (its response body was dropped).
    Disconnected,
}

/// Relay `call` from its upstream. Errors before the first byte (the upstream unreachable, a
/// non-2xx answer, not an event stream) are plain JSON errors with nothing charged; after it,
/// everything is settled by a spawned task (see the module documentation).
pub(crate) async fn relay(st: Arc<AppState>, mut call: StreamCall) -> ApiResult<Response> {
    let url = gateway::upstream_url(&call.base, call.api);
    gateway::upstream_body(&mut call.raw, call.max_tokens, true);
    let resp = st
        .http
        .post(&url)
        .header(header::ACCEPT, "text/event-stream")
        .json(&call.raw)
        .send()
        .await
        .map_err(|e| before_first_byte(&st, &url, &e))?;
    let status = resp.status();
    if !status.is_success() {
        let shown = match gateway::read_capped(resp, st.config.max_upstream_body_bytes).await {
            Ok(body) => quote(&String::from_utf8_lossy(&body)),
            Err(CappedError::TooLarge { limit }) => format!("(an answer over {limit} bytes)"),
            Err(CappedError::Read(e)) => format!("(unreadable: {e})"),
        };
        return Err(upstream_error(format!(
            "upstream {url} answered {status}: {shown}; nothing was charged"
        )));
    }
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("text/event-stream") {
        return Err(upstream_error(format!(
            "upstream {url} answered a `stream: true` request with {content_type:?}, not \
             text/event-stream; nothing was charged (serve it without `stream` or fix the upstream)"
        )));
    }
    let (tx, rx) = mpsc::channel(RELAY_QUEUE_EVENTS);
    let delivered = Arc::new(Mutex::new(String::new()));
    let body = Delivery {
        rx,
        delivered: Arc::clone(&delivered),
    };
    tokio::spawn(run(st, call, url, resp, tx, delivered));
    Ok(Sse::new(body).into_response())
}

fn upstream_error(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, "E_UPSTREAM", message)
}

fn before_first_byte(st: &AppState, url: &str, e: &reqwest::Error) -> ApiError {
    if e.is_timeout() {
        let failure = StreamFailure::Timeout {
            url: url.to_string(),
            timeout_ms: st.config.upstream_timeout_ms,
        };
        return ApiError::new(
            StatusCode::BAD_GATEWAY,
            failure.code(),
            format!("{failure}; nothing was delivered nor charged"),
        );
    }
    upstream_error(format!("upstream {url} failed: {e}; nothing was charged"))
}

/// At most [`gateway::MAX_UPSTREAM_ERROR_SHOWN_BYTES`] of an upstream's words.
fn quote(text: &str) -> String {
    let max = gateway::MAX_UPSTREAM_ERROR_SHOWN_BYTES;
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// What the relay queues for the response body.
enum Out {
    /// An SSE event's data, and the completion text it carries (counted once taken).
    Event { data: String, text: String },
    /// Answered once every event queued before it was taken: the delivered text is then final.
    Barrier(oneshot::Sender<()>),
}

/// The response body: hands queued events to the HTTP server and records the text it took.
/// Dropped when the client goes away, which the relay sees as its queue closing.
struct Delivery {
    rx: mpsc::Receiver<Out>,
    delivered: Arc<Mutex<String>>,
}

impl tokio_stream::Stream for Delivery {
    type Item = Result<Event, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match ready!(self.rx.poll_recv(cx)) {
                None => return Poll::Ready(None),
                Some(Out::Barrier(taken)) => {
                    let _ = taken.send(());
                }
                Some(Out::Event { data, text }) => {
                    lock(&self.delivered).push_str(&text);
                    return Poll::Ready(Some(Ok(Event::default().data(data))));
                }
            }
        }
    }
}

/// The delivered text's lock; every update is one `push_str`, so a poisoned lock is consistent.
fn lock(m: &Mutex<String>) -> std::sync::MutexGuard<'_, String> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The gateway's own chunk framing: its id, model and creation time on every event.
struct Frame {
    api: Api,
    id: String,
    created: u64,
    model: String,
}

impl Frame {
    fn chunk(&self, content: Option<&str>, finish: Option<&str>) -> Value {
        let choice = match self.api {
            Api::Chat => {
                let delta = content.map_or(json!({}), |c| json!({"content": c}));
                json!({"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null})
            }
            Api::Completions => {
                json!({"index": 0, "text": content.unwrap_or(""), "finish_reason": finish, "logprobs": null})
            }
        };
        let object = match self.api {
            Api::Chat => "chat.completion.chunk",
            Api::Completions => "text_completion",
        };
        json!({"id": self.id, "object": object, "created": self.created, "model": self.model,
               "choices": [choice]})
    }
}

/// What the relay learnt from the upstream besides the text.
#[derive(Default)]
struct Seen {
    finish_reason: Option<String>,
    /// The upstream's own `usage` (with `stream_options.include_usage`), reported, never charged.
    usage: Option<Value>,
    first_text_ms: Option<f64>,
}

/// The relay task: pump the upstream into the queue, then settle whatever happened.
async fn run(
    st: Arc<AppState>,
    mut call: StreamCall,
    url: String,
    resp: reqwest::Response,
    tx: mpsc::Sender<Out>,
    delivered: Arc<Mutex<String>>,
) {
    let frame = Frame {
        api: call.api,
        id: call.usage_id.clone(),
        created: call.now_ms / 1000,
        model: call.model.clone(),
    };
    let mut seen = Seen::default();
    let ended = pump(&st, &call, &url, &frame, resp, &tx, &mut seen).await;
    // Let the client take what is queued (or go away) before the delivered text is read.
    let connected = !matches!(ended, Ok(End::Disconnected)) && barrier(&tx).await;
    let text = lock(&delivered).clone();
    let completed = matches!(ended, Ok(End::Finished)) && connected;
    let generated_ms = call.started.elapsed().as_secs_f64() * 1e3;
    let settled = settle(&st, &mut call, &text, completed).await;
    if !connected {
        return;
    }
    let (shoulders, settle_failure) = match settled {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(StreamFailure::Settle(e))),
    };
    let shoulders = shoulders.map(|s| {
        let attributed_ms = call.started.elapsed().as_secs_f64() * 1e3;
        shoulders_field(
            st.config.metering,
            &call,
            &s,
            &seen,
            generated_ms,
            attributed_ms,
        )
    });
    let failure = match ended {
        Err(f) => Some(f),
        Ok(_) => settle_failure,
    };
    let counted = gateway::counted_tokens(&text, call.max_tokens);
    let last = match failure {
        Some(f) => json!({
            "error": {"code": f.code(), "message": f.message()},
            "shoulders": shoulders,
        }),
        None => {
            let finish = seen.finish_reason.as_deref().unwrap_or("stop");
            let mut last = frame.chunk(None, Some(finish));
            last["usage"] = json!({
                "prompt_tokens": call.prompt_tokens,
                "completion_tokens": counted,
                "total_tokens": call.prompt_tokens + counted,
            });
            last["shoulders"] = shoulders.unwrap_or(Value::Null);
            last
        }
    };
    let done = last.get("error").is_none();
    if send(&tx, last.to_string(), String::new()).await && done {
        send(&tx, "[DONE]".into(), String::new()).await;
    }
}

/// Queue an event; `false` once the client is gone.
async fn send(tx: &mpsc::Sender<Out>, data: String, text: String) -> bool {
    tx.send(Out::Event { data, text }).await.is_ok()
}

/// Resolves once the client took every queued event (`true`) or went away (`false`).
async fn barrier(tx: &mpsc::Sender<Out>) -> bool {
    let (taken, rx) = oneshot::channel();
    tx.send(Out::Barrier(taken)).await.is_ok() && rx.await.is_ok()
}

/// Names the upstream and its bounds in each failure.
struct Upstream<'a> {
    url: &'a str,
    timeout_ms: u64,
    limit_bytes: usize,
}

impl Upstream<'_> {
    fn failed(&self, reason: impl Into<String>) -> StreamFailure {
        StreamFailure::Upstream {
            url: self.url.to_string(),
            reason: reason.into(),
        }
    }

    fn bad(&self, reason: String) -> StreamFailure {
        StreamFailure::BadEvent {
            url: self.url.to_string(),
            reason,
        }
    }

    fn too_large(&self) -> StreamFailure {
        StreamFailure::TooLarge {
            url: self.url.to_string(),
            limit_bytes: self.limit_bytes,
        }
    }

    fn read_error(&self, e: &reqwest::Error) -> StreamFailure {
        if e.is_timeout() {
            StreamFailure::Timeout {
                url: self.url.to_string(),
                timeout_ms: self.timeout_ms,
            }
        } else {
            self.failed(format!("reading the stream failed: {e}"))
        }
    }
}

/// Read the upstream's events and queue the gateway's chunks until the stream ends, fails, or
/// the client goes away (then the upstream response is dropped: nothing more is read).
async fn pump(
    st: &AppState,
    call: &StreamCall,
    url: &str,
    frame: &Frame,
    mut resp: reqwest::Response,
    tx: &mpsc::Sender<Out>,
    seen: &mut Seen,
) -> Result<End, StreamFailure> {
    let up = Upstream {
        url,
        timeout_ms: st.config.upstream_timeout_ms,
        limit_bytes: st.config.max_upstream_body_bytes,
    };
    if resp
        .content_length()
        .is_some_and(|n| n > up.limit_bytes as u64)
    {
        return Err(up.too_large());
    }
    if call.api == Api::Chat {
        let mut first = frame.chunk(None, None);
        first["choices"][0]["delta"] = json!({"role": "assistant", "content": ""});
        if !send(tx, first.to_string(), String::new()).await {
            return Ok(End::Disconnected);
        }
    }
    let mut parser = SseParser::default();
    let mut received_bytes = 0usize;
    loop {
        let read = tokio::select! {
            biased;
            () = tx.closed() => return Ok(End::Disconnected),
            read = resp.chunk() => read,
        };
        let Some(bytes) = read.map_err(|e| up.read_error(&e))? else {
            return match seen.finish_reason {
                Some(_) => Ok(End::Finished),
                None => {
                    Err(up.failed("the stream ended without `data: [DONE]` or a finish_reason"))
                }
            };
        };
        received_bytes += bytes.len();
        if received_bytes > up.limit_bytes {
            return Err(up.too_large());
        }
        for data in parser.push(&bytes).map_err(|r| up.bad(r))? {
            if let Some(end) = relay_event(call, &up, frame, tx, seen, &data).await? {
                return Ok(end);
            }
        }
    }
}

/// Relay one upstream event; `Some` when it ends the stream (`[DONE]`) or the client is gone.
async fn relay_event(
    call: &StreamCall,
    up: &Upstream<'_>,
    frame: &Frame,
    tx: &mpsc::Sender<Out>,
    seen: &mut Seen,
    data: &str,
) -> Result<Option<End>, StreamFailure> {
    if data == "[DONE]" {
        return Ok(Some(End::Finished));
    }
    let piece = parse_chunk(call.api, data).map_err(|e| match e {
        ChunkError::Bad(reason) => up.bad(reason),
        ChunkError::Upstream(reason) => up.failed(reason),
    })?;
    if piece.usage.is_some() {
        seen.usage = piece.usage;
    }
    if piece.finish_reason.is_some() {
        seen.finish_reason = piece.finish_reason;
    }
    let Some(text) = piece.text.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    seen.first_text_ms
        .get_or_insert_with(|| call.started.elapsed().as_secs_f64() * 1e3);
    let data = frame.chunk(Some(&text), None).to_string();
    Ok((!send(tx, data, text).await).then_some(End::Disconnected))
}

/// What settling produced, for the last event's `shoulders` field.
struct Settled {
    receipt: Option<Value>,
    attribution: Option<(String, shoulders_attrib::dataset::AttributionReport)>,
    /// Why the delivered text has no attribution though the model has an index.
    attribution_error: Option<Value>,
    preauthorised_micros: Option<u128>,
}

/// Attribute the delivered text and append its receipt, then release the hold. A stream that
/// delivered nothing and did not complete appends no receipt. An attribution that fails (its
/// budget or deadline) does not stop the charge: the text was delivered, so the receipt is
/// appended without shares (the data pool then goes to the model's owner, as for any output
/// without evidence) and the failure is reported.
async fn settle(
    st: &Arc<AppState>,
    call: &mut StreamCall,
    text: &str,
    completed: bool,
) -> ApiResult<Settled> {
    let hold = call.hold.take();
    let admission = call.admission.take();
    let preauthorised_micros = hold.as_ref().map(preauth::Hold::amount_micros);
    if text.is_empty() && !completed {
        // Nothing delivered, nothing charged: the key's unused tokens go back and its pending
        // spend is settled (to nothing, as no receipt names the usage id).
        let prompt_tokens = call.prompt_tokens;
        tokio::task::spawn_blocking(move || {
            let settled = admission.map(|a| a.settle(prompt_tokens));
            drop(hold);
            settled.transpose()
        })
        .await
        .map_err(|e| ApiError::internal(format!("settling the stream failed: {e}")))??;
        return Ok(Settled {
            receipt: None,
            attribution: None,
            attribution_error: None,
            preauthorised_micros,
        });
    }
    let (attribution, attribution_error) =
        match gateway::attribute_output(st, call.dataset.clone(), text).await {
            Ok(a) => (a, None),
            Err(e) => (None, Some(json!({"code": e.code, "message": e.message}))),
        };
    let receipt = UsageReceipt {
        usage_id: call.usage_id.clone(),
        model_id: call.model.clone(),
        payer: call.payer.clone(),
        use_category: call.use_tag.clone(),
        input_tokens: call.prompt_tokens,
        output_tokens: gateway::counted_tokens(text, call.max_tokens),
        output_hash: gateway::output_hash(text),
        attribution: gateway::receipt_shares(attribution.as_ref()),
        evidence_hash: gateway::evidence_hash(attribution.as_ref()),
        max_royalty_bps: call.max_royalty_bps,
        index_state: gateway::index_state(call.dataset.as_ref(), attribution.as_ref()),
    };
    let output = text.to_string();
    let (st2, now_ms) = (Arc::clone(st), call.now_ms);
    let (input_tokens, output_tokens) = (receipt.input_tokens, receipt.output_tokens);
    let receipt = tokio::task::spawn_blocking(move || {
        // As in the non-streaming path: the hold goes only once the append is over, and the
        // API key's spend is settled from the recorded charge before its budget hold goes.
        let out = gateway::submit_receipt(&st2, receipt, &output, now_ms);
        let settled = admission.map(|a| a.settle(input_tokens + output_tokens));
        drop(hold);
        let out = out?;
        settled.transpose().map(|_| out)
    })
    .await
    .map_err(|e| ApiError::internal(format!("settling the stream failed: {e}")))??;
    let charge_micros = receipt
        .as_ref()
        .and_then(|r| r["charge_micros"].as_str())
        .map(|m| m.parse::<u64>().unwrap_or(u64::MAX));
    let currency = receipt
        .as_ref()
        .and_then(|r| r["currency"].as_str())
        .unwrap_or("");
    st.metrics.gateway_answered(&crate::metrics::GatewayCall {
        operation: call.api.operation(),
        model: &call.model,
        input_tokens,
        output_tokens,
        took: call.started.elapsed(),
        receipt_appended: receipt.is_some(),
        charge: charge_micros.map(|m| (m, currency)),
        completed,
    });
    call.counted.answered = true;
    Ok(Settled {
        receipt,
        attribution,
        attribution_error,
        preauthorised_micros,
    })
}

fn shoulders_field(
    metering: Metering,
    call: &StreamCall,
    s: &Settled,
    seen: &Seen,
    generated_ms: f64,
    attributed_ms: f64,
) -> Value {
    json!({
        "payer": call.payer,
        "use": call.use_tag,
        "max_royalty_bps": call.max_royalty_bps,
        "source": "upstream",
        "stream": "relayed",
        "metering": match metering { Metering::On => "on", Metering::Off => "off" },
        "receipt": s.receipt,
        "price": call.price,
        "royalties": call.royalties,
        "preauthorised_micros": s.preauthorised_micros.map(|m| m.to_string()),
        "upstream_usage": seen.usage,
        "attribution": s.attribution.as_ref().map(|(_, r)| r),
        "attribution_error": s.attribution_error,
        "timing_ms": {
            "first_text": seen.first_text_ms,
            "completion": generated_ms,
            "with_attribution": attributed_ms,
        },
    })
}

/// One upstream chunk, as far as the gateway reads it.
#[derive(Debug, Default, PartialEq)]
struct Piece {
    text: Option<String>,
    finish_reason: Option<String>,
    usage: Option<Value>,
}

#[derive(Debug, PartialEq)]
enum ChunkError {
    /// Not a chunk (`E_UPSTREAM_BAD_EVENT`).
    Bad(String),
    /// The upstream reported an error in the stream (`E_UPSTREAM`).
    Upstream(String),
}

/// Read choice 0 of an OpenAI chunk: `delta.content` (chat) or `text` (completions), its
/// `finish_reason`, and a `usage` object. Other choices (`n` > 1) are not relayed, as the
/// non-streaming path answers only the first.
fn parse_chunk(api: Api, data: &str) -> Result<Piece, ChunkError> {
    let value: Value =
        serde_json::from_str(data).map_err(|e| ChunkError::Bad(format!("not JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| ChunkError::Bad("not a JSON object".into()))?;
    if let Some(error) = obj.get("error") {
        return Err(ChunkError::Upstream(format!(
            "it sent an error: {}",
            quote(&error.to_string())
        )));
    }
    let mut piece = Piece {
        usage: obj.get("usage").filter(|u| u.is_object()).cloned(),
        ..Piece::default()
    };
    let choices = match obj.get("choices") {
        None | Some(Value::Null) => return Ok(piece),
        Some(Value::Array(c)) => c,
        Some(_) => return Err(ChunkError::Bad("`choices` is not a list".into())),
    };
    let Some(choice) = choices
        .iter()
        .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
    else {
        return Ok(piece);
    };
    let text = match api {
        Api::Chat => choice.get("delta").and_then(|d| d.get("content")),
        Api::Completions => choice.get("text"),
    };
    piece.text = match text {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(t.clone()),
        Some(_) => {
            return Err(ChunkError::Bad(
                "the completion text is not a string".into(),
            ))
        }
    };
    piece.finish_reason = match choice.get("finish_reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(f)) => Some(f.clone()),
        Some(_) => return Err(ChunkError::Bad("`finish_reason` is not a string".into())),
    };
    Ok(piece)
}

/// A server-sent events reader (the WHATWG `text/event-stream` format, as far as completions
/// use it): lines end with `\n` or `\r\n`, `data:` lines are joined with `\n`, a blank line ends
/// an event, comments and other fields are skipped, and an event cut off by the end of the
/// stream is dropped. What it holds is bounded by the byte cap on what was received.
#[derive(Default)]
struct SseParser {
    /// Bytes of the line not yet ended.
    line: Vec<u8>,
    /// The `data` of the event not yet ended.
    data: Option<String>,
}

impl SseParser {
    /// Feed received bytes; returns the data of every event they complete.
    fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, String> {
        let mut events = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                self.line.push(b);
                continue;
            }
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8(line).map_err(|_| "a line is not UTF-8".to_string())?;
            if line.is_empty() {
                events.extend(self.data.take());
            } else if let Some(value) = line.strip_prefix("data:") {
                let value = value.strip_prefix(' ').unwrap_or(value);
                match &mut self.data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(value);
                    }
                    None => self.data = Some(value.to_string()),
                }
            }
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_read_across_any_split() {
        let stream = b": comment\r\ndata: {\"a\":1}\r\n\r\nevent: x\ndata: one\ndata: two\n\ndata: [DONE]\n\ndata: cut";
        let whole = SseParser::default().push(stream).unwrap();
        assert_eq!(whole, vec!["{\"a\":1}", "one\ntwo", "[DONE]"]);
        for split in 0..stream.len() {
            let mut p = SseParser::default();
            let mut got = p.push(&stream[..split]).unwrap();
            got.extend(p.push(&stream[split..]).unwrap());
            assert_eq!(got, whole, "split at {split}");
        }
        assert!(SseParser::default().push(b"data: \xff\n\n").is_err());
    }

    #[test]
    fn chunks_are_read_for_choice_zero_only() {
        let chat = r#"{"choices":[{"index":1,"delta":{"content":"other"}},{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}"#;
        assert_eq!(
            parse_chunk(Api::Chat, chat).unwrap().text.as_deref(),
            Some("hi")
        );
        let done = r#"{"choices":[{"index":0,"text":"","finish_reason":"length"}],"usage":{"completion_tokens":9}}"#;
        let piece = parse_chunk(Api::Completions, done).unwrap();
        assert_eq!(piece.finish_reason.as_deref(), Some("length"));
        assert_eq!(piece.usage, Some(json!({"completion_tokens": 9})));
        assert!(matches!(
            parse_chunk(Api::Chat, "{oops"),
            Err(ChunkError::Bad(_))
        ));
        assert!(matches!(
            parse_chunk(Api::Chat, r#"{"choices":[{"delta":{"content":7}}]}"#),
            Err(ChunkError::Bad(_))
        ));
        assert!(matches!(
            parse_chunk(Api::Chat, r#"{"error":{"message":"overloaded"}}"#),
            Err(ChunkError::Upstream(_))
        ));
    }
}
