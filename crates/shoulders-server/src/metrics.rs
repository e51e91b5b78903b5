//! Prometheus metrics (`GET /metrics`), request ids and the request span.
//!
//! Every label value comes from a bounded set the server controls: route templates (never raw
//! paths), a fixed list of HTTP methods, status codes, and model ids the ledger knows (a refused
//! gateway call never creates a label from what the client sent). So a client cannot grow the
//! exposition by sending odd paths, methods or model names.
//!
//! Names follow the OpenTelemetry semantic conventions where they name the metric (HTTP server
//! duration, GenAI client token usage and operation duration), mapped to Prometheus style
//! (dots to underscores, the unit as a suffix); the rest are `shoulders_*`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tracing::Instrument;

use crate::AppState;

/// The header a request id travels in, both ways.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Longest incoming request id kept; longer ones are replaced.
pub const MAX_REQUEST_ID_BYTES: usize = 64;
/// The route label of a request no route matched (404 fallback).
pub const UNMATCHED_ROUTE: &str = "unmatched";
/// `Content-Type` of `/metrics` (what `prometheus-client` writes).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// HTTP request latency buckets, seconds (the OpenTelemetry HTTP semantic conventions' advice).
const HTTP_BUCKETS_S: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The request id a handler's request carries (inserted by [`observe`]).
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Whether an incoming `x-request-id` is kept: 1 to 64 bytes of `[A-Za-z0-9._-]`, so it is
/// safe to log and to echo in a header.
pub fn sane_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A fresh request id: 16 random bytes, hex (32 characters).
pub fn new_request_id() -> String {
    let mut bytes = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    hex::encode(bytes)
}

/// A label whose values are a fixed list of strings.
macro_rules! label_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
        $vis enum $name { $($(#[$vmeta])* $variant,)+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                EncodeLabelValue::encode(&self.as_str(), encoder)
            }
        }
    };
}

label_enum! {
    /// HTTP methods as a label: the standard ones by name, anything else `other` (a client may
    /// send any token as a method).
    pub enum MethodLabel {
        Get => "GET",
        Head => "HEAD",
        Post => "POST",
        Put => "PUT",
        Delete => "DELETE",
        Patch => "PATCH",
        Options => "OPTIONS",
        Other => "other",
    }
}

impl From<&Method> for MethodLabel {
    fn from(m: &Method) -> Self {
        match *m {
            Method::GET => MethodLabel::Get,
            Method::HEAD => MethodLabel::Head,
            Method::POST => MethodLabel::Post,
            Method::PUT => MethodLabel::Put,
            Method::DELETE => MethodLabel::Delete,
            Method::PATCH => MethodLabel::Patch,
            Method::OPTIONS => MethodLabel::Options,
            _ => MethodLabel::Other,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    http_route: String,
    http_request_method: MethodLabel,
    http_response_status_code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    http_route: String,
    http_request_method: MethodLabel,
}

label_enum! {
    /// `gen_ai_operation_name` values (OpenTelemetry GenAI conventions).
    pub enum Operation {
        Chat => "chat",
        TextCompletion => "text_completion",
    }
}

label_enum! {
    /// `gen_ai_token_type` values.
    enum TokenType {
        Input => "input",
        Output => "output",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    gen_ai_operation_name: Operation,
    gen_ai_request_model: String,
    gen_ai_token_type: TokenType,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    gen_ai_operation_name: Operation,
    gen_ai_request_model: String,
}

label_enum! {
    /// How a gateway call to a known model ended.
    pub enum Outcome {
        Ok => "ok",
        Error => "error",
    }
}

/// A witness of the policy (a bounded set the operator names) and what one request to it did.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WitnessLabels {
    witness: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    gen_ai_operation_name: Operation,
    gen_ai_request_model: String,
    outcome: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChargeLabels {
    gen_ai_request_model: String,
    currency: String,
}

label_enum! {
    /// Who asked for an attribution: `POST /api/attribute`, or the gateway attributing a
    /// completion.
    pub enum AttributionSource {
        Api => "api",
        Gateway => "gateway",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttributionLabels {
    source: AttributionSource,
}

label_enum! {
    /// Where a gateway call's admission (key, licence, holds) ran: on the async worker that
    /// received it, or on the blocking pool because something in it could have waited.
    pub enum AdmittedOn {
        Worker => "worker",
        Pool => "pool",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AdmissionLabels {
    on: AdmittedOn,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn http_histogram() -> Histogram {
    Histogram::new(HTTP_BUCKETS_S)
}

/// Token counts: 1, 4, 16 ... 4^13 (the GenAI conventions' advice).
fn token_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 4.0, 14))
}

/// 10 ms to 82 s, doubling (the GenAI conventions' advice for operation duration).
fn operation_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 14))
}

/// 1 ms to 33 s, doubling: an attribution is bounded by its budget and deadline.
fn attribution_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The server's metrics and the registry they are exposed from.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: HistogramFamily<RouteLabels>,
    token_usage: HistogramFamily<TokenLabels>,
    operation_duration: HistogramFamily<OperationLabels>,
    gateway_calls: Family<CallLabels, Counter>,
    gateway_admissions: Family<AdmissionLabels, Counter>,
    charge_micros: Family<ChargeLabels, Counter>,
    receipts_appended: Counter,
    attribution_duration: HistogramFamily<AttributionLabels>,
    writer_queue_depth: Gauge,
    writer_commit_duration: Histogram,
    witness_requests: Family<WitnessLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "shoulders_http_requests",
            "HTTP requests answered, by route template, method and status",
            http_requests.clone(),
        );
        let http_duration: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(http_histogram);
        registry.register(
            "http_server_request_duration_seconds",
            "Time to answer an HTTP request (to its response head), by route template and method",
            http_duration.clone(),
        );
        let token_usage: HistogramFamily<TokenLabels> =
            Family::new_with_constructor(token_histogram);
        registry.register(
            "gen_ai_client_token_usage",
            "Tokens per gateway call (output: the tokens charged for; input: the prompt's bytes)",
            token_usage.clone(),
        );
        let operation_duration: HistogramFamily<OperationLabels> =
            Family::new_with_constructor(operation_histogram);
        registry.register(
            "gen_ai_client_operation_duration_seconds",
            "Time of a successful gateway call: completion, attribution and receipt",
            operation_duration.clone(),
        );
        let gateway_calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "shoulders_gateway_calls",
            "Gateway calls to models on the ledger, by outcome",
            gateway_calls.clone(),
        );
        let gateway_admissions = Family::<AdmissionLabels, Counter>::default();
        registry.register(
            "shoulders_gateway_admissions",
            "Gateway call admissions, by where they ran (worker: nothing in them could wait)",
            gateway_admissions.clone(),
        );
        let charge_micros = Family::<ChargeLabels, Counter>::default();
        registry.register(
            "shoulders_gateway_charge_micros",
            "What metered gateway calls charged, in micro-units of the currency",
            charge_micros.clone(),
        );
        let receipts_appended = Counter::default();
        registry.register(
            "shoulders_receipts_appended",
            "Usage receipts the gateway appended to the ledger",
            receipts_appended.clone(),
        );
        let attribution_duration: HistogramFamily<AttributionLabels> =
            Family::new_with_constructor(attribution_histogram);
        registry.register(
            "shoulders_attribution_duration_seconds",
            "Time of one attribution search, by who asked",
            attribution_duration.clone(),
        );
        let writer_queue_depth = Gauge::default();
        registry.register(
            "shoulders_writer_queue_depth",
            "Records submitted to the writer and not yet committed (at scrape time)",
            writer_queue_depth.clone(),
        );
        // 0.1 ms to 3.3 s, doubling: one batch's fold and store transaction (its fsync).
        let writer_commit_duration = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "shoulders_writer_commit_duration_seconds",
            "Time the writer took to fold and durably commit one batch",
            writer_commit_duration.clone(),
        );
        let witness_requests = Family::<WitnessLabels, Counter>::default();
        registry.register(
            "shoulders_witness_requests",
            "add-checkpoint requests to the policy's witnesses, by witness and outcome (cosigned, conflict, failed)",
            witness_requests.clone(),
        );
        Metrics {
            witness_requests,
            registry,
            http_requests,
            http_duration,
            token_usage,
            operation_duration,
            gateway_calls,
            gateway_admissions,
            charge_micros,
            receipts_appended,
            attribution_duration,
            writer_queue_depth,
            writer_commit_duration,
        }
    }

    /// Count one gateway admission and where it ran.
    pub fn gateway_admitted(&self, on: AdmittedOn) {
        self.gateway_admissions
            .get_or_create(&AdmissionLabels { on })
            .inc();
    }

    /// Count one `add-checkpoint` request to `witness` (a name from the policy).
    pub fn witness_request(&self, witness: &str, outcome: &'static str) {
        self.witness_requests
            .get_or_create(&WitnessLabels {
                witness: witness.to_string(),
                outcome,
            })
            .inc();
    }

    /// The exposition, with the queue depth read now.
    pub fn encode(&self, writer_queue_depth: usize) -> String {
        self.writer_queue_depth
            .set(i64::try_from(writer_queue_depth).unwrap_or(i64::MAX));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    fn request(&self, route: &str, method: MethodLabel, status: u16, took: Duration) {
        self.http_requests
            .get_or_create(&HttpLabels {
                http_route: route.to_string(),
                http_request_method: method,
                http_response_status_code: status,
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabels {
                http_route: route.to_string(),
                http_request_method: method,
            })
            .observe(took.as_secs_f64());
    }

    /// A gateway call to `model` (a model the ledger knows) that failed after the model was
    /// found.
    pub fn gateway_failed(&self, operation: Operation, model: &str) {
        self.gateway_calls
            .get_or_create(&CallLabels {
                gen_ai_operation_name: operation,
                gen_ai_request_model: model.to_string(),
                outcome: Outcome::Error,
            })
            .inc();
    }

    /// A gateway call answered: its tokens, its time, and its receipt's charge when metered.
    pub fn gateway_answered(&self, call: &GatewayCall<'_>) {
        let model = call.model.to_string();
        for (token_type, tokens) in [
            (TokenType::Input, call.input_tokens),
            (TokenType::Output, call.output_tokens),
        ] {
            self.token_usage
                .get_or_create(&TokenLabels {
                    gen_ai_operation_name: call.operation,
                    gen_ai_request_model: model.clone(),
                    gen_ai_token_type: token_type,
                })
                .observe(tokens as f64);
        }
        self.operation_duration
            .get_or_create(&OperationLabels {
                gen_ai_operation_name: call.operation,
                gen_ai_request_model: model.clone(),
            })
            .observe(call.took.as_secs_f64());
        self.gateway_calls
            .get_or_create(&CallLabels {
                gen_ai_operation_name: call.operation,
                gen_ai_request_model: model.clone(),
                outcome: if call.completed {
                    Outcome::Ok
                } else {
                    Outcome::Error
                },
            })
            .inc();
        if call.receipt_appended {
            self.receipts_appended.inc();
        }
        if let Some((micros, currency)) = call.charge {
            self.charge_micros
                .get_or_create(&ChargeLabels {
                    gen_ai_request_model: model,
                    currency: currency.to_string(),
                })
                .inc_by(micros);
        }
    }

    /// One attribution search took `took`.
    pub fn attribution(&self, source: AttributionSource, took: Duration) {
        self.attribution_duration
            .get_or_create(&AttributionLabels { source })
            .observe(took.as_secs_f64());
    }

    /// What the writer reports after each commit ([`shoulders_ledger::Ledger::observe_commits`]).
    pub fn commit_observer(&self) -> shoulders_ledger::CommitObserver {
        let histogram = self.writer_commit_duration.clone();
        Box::new(move |took, _records| histogram.observe(took.as_secs_f64()))
    }
}

/// One answered gateway call, as [`Metrics::gateway_answered`] counts it.
pub struct GatewayCall<'a> {
    pub operation: Operation,
    /// A model id the ledger knows.
    pub model: &'a str,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub took: Duration,
    /// Whether a usage receipt was appended (metering on).
    pub receipt_appended: bool,
    /// The receipt's charge (micro-units) and currency; `None` when metering is off.
    pub charge: Option<(u64, &'a str)>,
    /// Whether the call completed: a relayed stream cut short still records the tokens and
    /// charge of what it delivered, but counts as an `error` call.
    pub completed: bool,
}

/// Middleware around every route: takes or makes the request id, runs the request inside a
/// `request` span carrying it, counts the request under its route template, and returns the
/// id in `x-request-id` on every response (errors included).
pub async fn observe(State(st): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| sane_request_id(v))
        .map(str::to_string)
        .unwrap_or_else(new_request_id);
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| UNMATCHED_ROUTE.to_string());
    let method = MethodLabel::from(req.method());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        route = %route,
    );
    req.extensions_mut().insert(RequestId(id.clone()));
    let started = Instant::now();
    let mut response = next.run(req).instrument(span.clone()).await;
    let took = started.elapsed();
    let status = response.status().as_u16();
    span.in_scope(|| {
        tracing::info!(
            status,
            duration_ms = took.as_secs_f64() * 1e3,
            "request answered"
        )
    });
    st.metrics.request(&route, method, status, took);
    // Sane ids and hex ids are always valid header values.
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// `GET /metrics`: the Prometheus (OpenMetrics text) exposition.
pub async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    let queued = st.writer().map(|w| w.queued_records()).unwrap_or(0);
    (
        [(axum::http::header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        st.metrics.encode(queued),
    )
        .into_response()
}
