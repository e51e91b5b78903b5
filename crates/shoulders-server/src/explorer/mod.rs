//! The web explorer: server-rendered HTML pages over the same state the API serves, plus one
//! small embedded script and stylesheet (no CDN, no external fonts).
//!
//! * `/` — the signed checkpoint, recent records, models, datasets, people, and a "try it"
//!   box that calls the gateway and highlights the attributed spans of the answer.
//! * `/models/{owner}/{name}` — family tree (inline SVG, each node a link, each edge labelled
//!   with what the child changed), what the model changed from its parent (parameter diff), the
//!   licence in plain words, how it was trained (framework, code, compute, credits,
//!   configuration), datasets and contributors, recent metered calls.
//! * `/datasets/{owner}/{name}` — contributions, contributors, how often each was used.
//! * `/actors/{handle}` — earnings over time (inline SVG chart), balance and earnings held in
//!   the unclaimed pool, the outputs that used the actor's contributions, the training runs
//!   that credit it.
//! * `/records/{index}` — the record, what it did, and its inclusion proof, checked in the
//!   browser with WebCrypto against the root of a checkpoint whose log signature (and, where
//!   the log has a witness policy, witness cosignatures) the browser verified first.
//! * `/disputes/{id}` — a dispute: who contests what, the evidence, the escrow it holds, the
//!   arbiter and the ruling.
//!
//! Every value from the ledger is untrusted: it reaches the page only through
//! [`html::esc`] / [`html::seg`].

pub mod diff;
pub mod html;
pub mod svg;
pub mod training;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::Value;
use shoulders_record::{Derivatives, PublicKey};
use shoulders_state::money::Role;
use shoulders_state::State as Ledger;
use shoulders_state::{Contribution, Dataset, Dispute, DisputeStatus, DisputeTarget, ReviewState};

use crate::AppState;
use html::{
    actor_href, dataset_href, esc, holder_link, link, micros, model_href, money, page, record_href,
    table, time,
};

/// File in the data directory holding an API key that the "try it" box fills in. Only
/// `shoulders demo` writes it: a demo-only convenience, since anyone who can load the page can
/// read the key and spend its owner's balance.
pub const DEMO_API_KEY_FILE: &str = "demo-api-key.txt";
/// Records listed on the home page.
pub const RECENT_RECORDS: u64 = 25;
/// Outputs listed on an actor page (the total is always shown).
pub const MAX_OUTPUTS_LISTED: usize = 100;
/// Metered calls listed on a model page.
pub const MAX_CALLS_LISTED: usize = 20;
/// Entities listed per table on the home page (the rest are counted).
pub const MAX_LISTED: usize = 50;
/// Latest earning legs drawn in an actor's earnings chart.
pub const MAX_CHART_LEGS: usize = 1_000;
/// Longest record shown in full on a record page, in bytes.
pub const MAX_SHOWN_RECORD_BYTES: usize = 64 << 10;

const SCRIPT: &str = include_str!("explorer.js");
const STYLE: &str = include_str!("explorer.css");

type St = State<Arc<AppState>>;

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(home))
        .route("/models/{owner}/{name}", get(model_page))
        .route("/datasets/{owner}/{name}", get(dataset_page))
        .route("/actors/{handle}", get(actor_page))
        .route("/records/{index}", get(record_page))
        .route("/disputes/{id}", get(dispute_page))
        .route(
            "/static/explorer.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    SCRIPT,
                )
            }),
        )
        .route(
            "/static/explorer.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE) }),
        )
}

/// Pages load only this server's script and stylesheet and talk only to this server, so even a
/// value that slipped past escaping could not run inline script or send data elsewhere.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

fn html_response(status: StatusCode, html: String) -> Response {
    (
        status,
        [(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY)],
        Html(html),
    )
        .into_response()
}

/// A page that could not be shown: its status and a message for the reader.
pub struct PageError {
    status: StatusCode,
    message: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let body = format!(
            "<p class=\"error\" data-testid=\"error\">{}</p><p><a href=\"/\">Back to the home page</a></p>",
            esc(&self.message)
        );
        let title = self.status.canonical_reason().unwrap_or("Error");
        html_response(self.status, page(title, &body))
    }
}

fn error_page(status: StatusCode, message: impl Into<String>) -> PageError {
    PageError {
        status,
        message: message.into(),
    }
}

fn not_found(message: &str) -> PageError {
    error_page(StatusCode::NOT_FOUND, message)
}

fn path_param<T>(p: Result<Path<T>, PathRejection>) -> Result<T, PageError> {
    p.map(|Path(t)| t).map_err(|rej| {
        error_page(
            StatusCode::BAD_REQUEST,
            format!("bad address: {}", rej.body_text()),
        )
    })
}

/// Run a page builder on the blocking pool (it may read records from storage).
async fn render(
    st: Arc<AppState>,
    f: impl FnOnce(&AppState) -> Result<String, PageError> + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(move || f(&st)).await {
        Ok(Ok(html)) => html_response(StatusCode::OK, html),
        Ok(Err(e)) => e.into_response(),
        Err(e) => error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the page could not be built: {e}"),
        )
        .into_response(),
    }
}

/// Run `f` on the committed state and the store's history, one consistent view.
fn with_history<T>(
    st: &AppState,
    f: impl FnOnce(&Ledger, &dyn shoulders_store::Store) -> Result<T, PageError>,
) -> Result<T, PageError> {
    let mut out = None;
    st.view()
        .with_history(|s, store| {
            out = Some(f(s, store));
            Ok(())
        })
        .map_err(storage_error)?;
    out.expect("the closure ran")
}

fn storage_error(e: shoulders_ledger::LedgerError) -> PageError {
    let status = match e {
        shoulders_ledger::LedgerError::Cursor(_)
        | shoulders_ledger::LedgerError::PageSize { .. } => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error_page(status, format!("{}: {e}", e.code()))
}

/// Where each paged list of a page starts: the `next` cursor its "more" link carried.
#[derive(serde::Deserialize, Default)]
struct Cursors {
    models: Option<String>,
    datasets: Option<String>,
    actors: Option<String>,
    calls: Option<String>,
    contributions: Option<String>,
}

fn cursors(q: Result<Query<Cursors>, QueryRejection>) -> Result<Cursors, PageError> {
    q.map(|Query(c)| c).map_err(|rej| {
        error_page(
            StatusCode::BAD_REQUEST,
            format!("bad query: {}", rej.body_text()),
        )
    })
}

/// A link to the next page of a list (`href` is the page, `param` its cursor parameter), or
/// nothing on the last page.
fn more_link(href: &str, param: &str, next: Option<&str>, anchor: &str, text: &str) -> String {
    match next {
        Some(cursor) => {
            let cursor =
                percent_encoding::utf8_percent_encode(cursor, percent_encoding::NON_ALPHANUMERIC);
            format!(
                "<p class=\"more\"><a data-testid=\"more-{param}\" href=\"{}?{param}={cursor}#{anchor}\">{}</a></p>",
                esc(href),
                esc(text)
            )
        }
        None => String::new(),
    }
}

/// The handle that signed a record, from its base64 public key.
fn signer_handle(s: &Ledger, record: &Value) -> Option<String> {
    let key = PublicKey::from_base64(record["signer"].as_str()?)?;
    s.actor_by_key(&key).map(|a| a.handle.clone())
}

/// A one-line description of a record: the entity it names.
fn record_subject(record: &Value) -> String {
    let body = &record["body"];
    for key in [
        "model_id",
        "dataset_id",
        "license_id",
        "usage_id",
        "handle",
        "account",
        "title",
    ] {
        if let Some(v) = body.get(key).and_then(Value::as_str) {
            let mut out = v.to_string();
            if key == "dataset_id" {
                if let Some(t) = body.get("title").and_then(Value::as_str) {
                    out = format!("{out}: {t}");
                }
            }
            return out;
        }
    }
    // Governance records name a log index.
    for (key, what) in [("dispute", "dispute"), ("contribution", "contribution")] {
        if let Some(v) = body.get(key).and_then(Value::as_u64) {
            return format!("{what} #{v}");
        }
    }
    String::new()
}

/// The log's verifier key (`<origin>+<key id>+<base64(0x01 ‖ ed25519 key)>`), which the
/// browser checks the checkpoint's signature with.
pub fn log_verifier_key(st: &AppState) -> &str {
    match st.follower() {
        Some(follower) => follower.verifier_key(),
        None => st
            .writer()
            .map(|ledger| ledger.verifier_key())
            .expect("a node is a follower or the writer"),
    }
}

/// Where the script shows its check of the signed checkpoint: the log's signature with the key
/// in `data-log-vkey` (or the one `/api/witnesses` names, which must be the same), and the
/// witnesses' cosignatures against the policy `/api/witnesses` serves. The key comes from this
/// server, so the page shows it for the reader to compare with the one the operator publishes.
/// `home` marks the home page's box, which the script checks on its own; a record page's is
/// checked as part of its inclusion proof.
fn checkpoint_check(st: &AppState, home: bool) -> String {
    let vkey = esc(log_verifier_key(st));
    format!(
        "<div{id} class=\"cpcheck\" data-testid=\"checkpoint-verify\" data-log-vkey=\"{vkey}\">\
<p class=\"note\">Log key (served by this server: compare it with the one the log's operator publishes) \
<code data-testid=\"log-vkey\">{vkey}</code></p>\
<p class=\"pending\" data-testid=\"log-signature\">Checking the checkpoint's Ed25519 signature in your browser…</p>\
<p class=\"pending\" data-testid=\"witness-quorum\">Checking witness cosignatures…</p>\
<ul class=\"witnesses\" data-testid=\"witness-list\"></ul>\
<p class=\"pending\" data-testid=\"checkpoint-status\">…</p>\
<noscript>Needs JavaScript; or run <code>shoulders watch</code> with this key.</noscript></div>",
        id = if home { " id=\"checkpoint-verify\"" } else { "" },
    )
}

fn demo_api_key(st: &AppState) -> Option<String> {
    let text = std::fs::read_to_string(st.data_dir().join(DEMO_API_KEY_FILE)).ok()?;
    let key = text.trim();
    (!key.is_empty() && key.len() <= crate::apikeys::MAX_TOKEN_BYTES).then(|| key.to_string())
}

/// The "try it" box: a form the script posts to `/v1/chat/completions`.
fn try_box(st: &AppState, s: &Ledger, selected: Option<&str>) -> String {
    if st.is_read_only() {
        return "<section id=\"try\" class=\"try\" data-testid=\"try-read-only\"><h2>Try it</h2>\
<p>This node serves reads only: model calls are metered by the writer node, which appends their receipts. Ask a model there.</p></section>"
            .to_string();
    }
    let now = crate::now_ms();
    let mut options = String::new();
    for m in s.models() {
        let commercial = s
            .check_use(&m.model_id, "commercial", None, now, None)
            .is_some_and(|d| d.allowed);
        let _ = write!(
            options,
            "<option value=\"{id}\" data-default-use=\"{u}\"{sel}>{id}</option>",
            id = esc(&m.model_id),
            u = if commercial { "commercial" } else { "research" },
            sel = if Some(m.model_id.as_str()) == selected {
                " selected"
            } else {
                ""
            },
        );
    }
    let key = demo_api_key(st);
    let key_note = if key.is_some() {
        "The key is filled in by <code>shoulders demo</code> for its payer, erin: a demo-only convenience."
    } else {
        "Paste a key issued with <code>shoulders apikey new</code>; each call is charged to its actor."
    };
    format!(
        "<section id=\"try\" class=\"try\"><h2>Try it</h2>\
<p>Ask a model on this ledger; the gateway meters the call, appends a usage receipt and reports which spans of the answer come from contributed data. Highlighted spans link to their contributions.</p>\
<form id=\"try-form\" data-testid=\"try-form\">\
<label>Model <select name=\"model\" data-testid=\"try-model\">{options}</select></label> \
<label>Use <select name=\"use\" data-testid=\"try-use\"><option>commercial</option><option>research</option></select></label> \
<label>API key <input name=\"key\" data-testid=\"try-key\" size=\"40\" autocomplete=\"off\" value=\"{key}\"></label>\
<p class=\"note\">{key_note}</p>\
<label class=\"block\">Prompt<textarea name=\"prompt\" data-testid=\"try-prompt\" rows=\"3\">Shall I compare thee</textarea></label>\
<button type=\"submit\" data-testid=\"try-submit\">Generate</button></form>\
<div id=\"try-output\" data-testid=\"try-output\" aria-live=\"polite\"></div></section>",
        key = esc(key.as_deref().unwrap_or("")),
    )
}

async fn home(State(st): St, q: Result<Query<Cursors>, QueryRejection>) -> Response {
    let c = match cursors(q) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    render(st, move |st| {
        let note = st.view().checkpoint().map_err(storage_error)?;
        let note = String::from_utf8_lossy(&note).into_owned();
        let mut lines = note.lines();
        let origin = lines.next().unwrap_or("");
        let size = lines.next().unwrap_or("0");
        let root = lines.next().unwrap_or("");
        let tree_size = st.view().size();
        let mut recent = Vec::new();
        let from = tree_size.saturating_sub(RECENT_RECORDS);
        // One range read, not one read per record.
        st.view()
            .with_history(|_, store| {
                Ok(store.scan(from, tree_size, &mut |index, bytes| {
                    recent.push((index, serde_json::from_slice::<Value>(bytes).unwrap_or(Value::Null)));
                    Ok(())
                })?)
            })
            .map_err(storage_error)?;
        recent.reverse();
        st.view().with_state(|s| {
            let mut body = format!(
                "<section class=\"checkpoint\" data-testid=\"checkpoint\"><h2>Checkpoint</h2>\
<p>The log <code>{}</code> holds <strong data-testid=\"tree-size\">{}</strong> records; its Merkle root is \
<code data-testid=\"root\">{}</code>. Every page below is a view of the state folded from these records; \
your browser checks the checkpoint's signatures below, and each record page its inclusion proof against the verified root.</p>\
<details><summary>Signed note (C2SP)</summary><pre>{}</pre></details>{}</section>",
                esc(origin),
                esc(size),
                esc(root),
                esc(&note),
                checkpoint_check(st, true)
            );
            let rows: Vec<Vec<String>> = recent
                .iter()
                .map(|(i, r)| {
                    vec![
                        link(&record_href(*i), &format!("#{i}")),
                        format!("<code>{}</code>", esc(r["kind"].as_str().unwrap_or("?"))),
                        signer_handle(s, r).map(|h| holder_link(&h)).unwrap_or_default(),
                        esc(&record_subject(r)),
                        esc(&time(r["ts_ms"].as_u64().unwrap_or(0))),
                    ]
                })
                .collect();
            let _ = write!(
                body,
                "<section><h2>Recent records</h2>{}</section>",
                table("records", &["record", "kind", "signer", "about", "time (UTC)"], &rows)
            );
            let model_page = shoulders_ledger::query::models(s, c.models.as_deref(), MAX_LISTED)
                .map_err(storage_error)?;
            let models: Vec<Vec<String>> = model_page
                .items
                .iter()
                .map(|m| {
                    vec![
                        link(&model_href(&m.model_id), &m.model_id),
                        esc(&m.name),
                        m.parents
                            .iter()
                            .map(|p| format!("{} of {}", esc(p.relation.as_str()), link(&model_href(&p.model_id), &p.model_id)))
                            .collect::<Vec<_>>()
                            .join(", "),
                        esc(m.license_id.as_deref().unwrap_or("none")),
                    ]
                })
                .collect();
            let _ = write!(
                body,
                "<section id=\"models\"><h2>Models</h2>{}{}</section>",
                table("models", &["model", "name", "derived from", "licence"], &models),
                more_link("/", "models", model_page.next.as_deref(), "models", &format!("more models (of {}) →", s.model_count()))
            );
            let dataset_page = shoulders_ledger::query::datasets(s, c.datasets.as_deref(), MAX_LISTED)
                .map_err(storage_error)?;
            let datasets: Vec<Vec<String>> = dataset_page
                .items
                .iter()
                .map(|d| {
                    vec![
                        link(&dataset_href(&d.dataset_id), &d.dataset_id),
                        esc(&d.name),
                        d.contributions.len().to_string(),
                        d.contributors.len().to_string(),
                        esc(d.license_id.as_deref().unwrap_or("none")),
                    ]
                })
                .collect();
            let _ = write!(
                body,
                "<section id=\"datasets\"><h2>Datasets</h2>{}{}</section>",
                table("datasets", &["dataset", "name", "contributions", "contributors", "licence"], &datasets),
                more_link("/", "datasets", dataset_page.next.as_deref(), "datasets", &format!("more datasets (of {}) →", s.dataset_count()))
            );
            let actor_page = shoulders_ledger::query::actors(s, c.actors.as_deref(), MAX_LISTED)
                .map_err(storage_error)?;
            let actors: Vec<Vec<String>> = actor_page
                .items
                .iter()
                .map(|a| {
                    let st = s.statement(&a.handle, None, None);
                    let bal = st
                        .totals
                        .iter()
                        .map(|t| money(t.balance_micros + t.unclaimed_micros, &t.currency))
                        .collect::<Vec<_>>()
                        .join(", ");
                    vec![link(&actor_href(&a.handle), &a.handle), esc(&a.name), bal]
                })
                .collect();
            let _ = write!(
                body,
                "<section id=\"actors\"><h2>People and organisations</h2>{}{}</section>",
                table("actors", &["handle", "name", "balance (incl. unclaimed)"], &actors),
                more_link("/", "actors", actor_page.next.as_deref(), "actors", &format!("more people and organisations (of {}) →", s.actor_count()))
            );
            let disputes: Vec<Vec<String>> = s
                .disputes()
                .rev()
                .take(MAX_LISTED)
                .map(|d| dispute_row(s, d))
                .collect();
            if !disputes.is_empty() {
                let _ = write!(
                    body,
                    "<section id=\"disputes\"><h2>Disputes</h2>{}</section>",
                    table("disputes", &["dispute", "about", "claimant", "respondent", "status"], &disputes)
                );
            }
            let totals: Vec<Vec<String>> = s
                .totals()
                .iter()
                .map(|t| {
                    vec![
                        esc(&t.currency),
                        micros(t.deposits_micros),
                        micros(t.withdrawals_micros),
                        micros(t.held_micros),
                        if t.conserved { "yes".into() } else { "<strong class=\"bad\">NO</strong>".into() },
                    ]
                })
                .collect();
            if !totals.is_empty() {
                let _ = write!(
                    body,
                    "<section><h2>Books</h2><p>{} usage receipts settled.</p>{}</section>",
                    s.receipts_count(),
                    table("totals", &["currency", "deposits", "withdrawals", "held", "conserved"], &totals)
                );
            }
            // Preselect the most-called model: the one a visitor most likely wants to try.
            let busiest = s
                .models()
                .map(|m| (m.model_id.as_str(), s.model_calls(&m.model_id)))
                .filter(|(_, n)| *n > 0)
                .max_by_key(|(_, n)| *n)
                .map(|(m, _)| m);
            body.push_str(&try_box(st, s, busiest));
            Ok(page("Explorer", &body))
        })
    })
    .await
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "<strong class=\"yes\">Yes</strong>"
    } else {
        "<strong class=\"no\">No</strong>"
    }
}

fn list(items: &BTreeSet<String>) -> String {
    items.iter().map(|i| esc(i)).collect::<Vec<_>>().join(", ")
}

/// Source labels (`model a/b`, `dataset a/d`) with the licence each is under.
fn sources(e: &shoulders_state::Effective, items: &BTreeSet<String>) -> String {
    items
        .iter()
        .map(|label| match e.licenses.get(label) {
            Some(l) => format!("{} (licence {})", esc(label), esc(l)),
            None => esc(label),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The licence card: what a user of this model may and must do, in plain words, with the
/// source of every restriction.
fn licence_card(s: &Ledger, model_id: &str) -> String {
    let Some(m) = s.model(model_id) else {
        return String::new();
    };
    let e = &m.effective;
    let now = crate::now_ms();
    let mut rows: Vec<(String, String, String)> = Vec::new();
    let commercial = s.check_use(model_id, "commercial", None, now, None);
    let allowed = commercial.as_ref().is_some_and(|d| d.allowed);
    let why = if e.noncommercial_by.is_empty() {
        commercial
            .as_ref()
            .filter(|d| !d.allowed)
            .map(|d| esc(&d.reasons.join("; ")))
            .unwrap_or_else(|| "No licence in its lineage forbids it.".into())
    } else {
        format!(
            "Non-commercial terms come from {}.",
            sources(e, &e.noncommercial_by)
        )
    };
    rows.push((
        "commercial".into(),
        format!("May I use it commercially? {}", yes_no(allowed)),
        why,
    ));
    rows.push((
        "attribution".into(),
        format!("Must I attribute? {}", yes_no(!e.attribution_to.is_empty())),
        if e.attribution_to.is_empty() {
            "No licence asks for credit.".into()
        } else {
            format!("Credit: {}.", sources(e, &e.attribution_to))
        },
    ));
    let (deriv, deriv_why) = match e.derivatives.rule {
        Derivatives::Allowed => (
            yes_no(true).to_string(),
            "Fine-tunes, adapters, merges and quantisations may be registered.".to_string(),
        ),
        Derivatives::ApprovalRequired => (
            "<strong class=\"maybe\">With approval</strong>".into(),
            format!(
                "A licence grant is needed first, from the owners behind {}.",
                sources(e, &e.derivatives.by)
            ),
        ),
        Derivatives::Forbidden => (
            yes_no(false).to_string(),
            format!("Forbidden by {}.", sources(e, &e.derivatives.by)),
        ),
    };
    rows.push((
        "derivatives".into(),
        format!("May I build on it? {deriv}"),
        deriv_why,
    ));
    rows.push((
        "share-alike".into(),
        format!(
            "Must derivatives keep these terms? {}",
            yes_no(!e.share_alike_by.is_empty())
        ),
        if e.share_alike_by.is_empty() {
            "No share-alike clause.".into()
        } else {
            format!("Share-alike from {}.", sources(e, &e.share_alike_by))
        },
    ));
    let price = match &e.price {
        Some(p) if p.per_call_micros > 0 || p.per_1k_output_tokens_micros > 0 => format!(
            "{} per call + {} per 1,000 output tokens; {}% of each charge goes to the data contributors of this level (licence {}).",
            money(p.per_call_micros as i128, &p.currency),
            money(p.per_1k_output_tokens_micros as i128, &p.currency),
            esc(&format!("{:.2}", f64::from(p.data_share_bps) / 100.0)),
            esc(&p.license_id)
        ),
        _ => match e.floor_currency() {
            // A free derivative still pays its ancestors their floors at every use.
            Some(currency) => format!(
                "Its own licence sets no price, but every call is charged at least the royalty floors upstream: {} per call + {} per 1,000 output tokens, plus the protocol fee.",
                money(e.floors().map(|(_, f)| f.per_call_micros).sum::<u128>() as i128, currency),
                money(
                    e.floors()
                        .map(|(_, f)| f.per_1k_output_tokens_micros)
                        .sum::<u128>() as i128,
                    currency
                ),
            ),
            None => "Free to call: its licence sets no price.".into(),
        },
    };
    rows.push(("price".into(), "What does a call cost?".into(), price));
    let royalties = if e.royalties.is_empty() {
        "None.".to_string()
    } else {
        e.royalties
            .iter()
            .map(|r| {
                let pct = format!("{}%", esc(&format!("{:.2}", f64::from(r.bps) / 100.0)));
                let share = match &r.floor {
                    None => pct,
                    Some(f) => {
                        let floor = format!(
                            "at least {} per call + {} per 1,000 output tokens on every use",
                            money(f.per_call_micros as i128, &f.currency),
                            money(f.per_1k_output_tokens_micros as i128, &f.currency)
                        );
                        if r.bps == 0 {
                            floor
                        } else {
                            format!("{pct} but {floor}")
                        }
                    }
                };
                // Reach: a direct-parent royalty is owed by this model, a direct child, but
                // not by the models built on it.
                let reach = match r.reach {
                    shoulders_record::RoyaltyReach::AllAncestors => "",
                    shoulders_record::RoyaltyReach::DirectParent => {
                        "; direct parent only: models built on this one do not owe it"
                    }
                };
                format!(
                    "{share} to {} (owner of {}, licence {}{reach})",
                    holder_link(&r.owner),
                    link(&model_href(&r.model_id), &r.model_id),
                    esc(&r.license_id)
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    rows.push(("royalties".into(), "Royalties upstream".into(), royalties));
    if !e.forbidden_uses.is_empty() {
        let f = e
            .forbidden_uses
            .iter()
            .map(|(u, by)| format!("{} (by {})", esc(u), list(by)))
            .collect::<Vec<_>>()
            .join("; ");
        rows.push(("forbidden".into(), "Forbidden uses".into(), f));
    }
    if let Some((uses, by)) = &e.allowed_uses {
        rows.push((
            "allowed".into(),
            "Only these uses".into(),
            format!("{} (by {})", list(uses), list(by)),
        ));
    }
    if let Some((t, by)) = &e.territories {
        rows.push((
            "territories".into(),
            "Only in".into(),
            format!("{} (by {})", list(t), list(by)),
        ));
    }
    if let Some((at, by)) = &e.expires {
        rows.push((
            "expires".into(),
            "Expires".into(),
            format!("{} UTC (set by {})", esc(&time(*at)), esc(by)),
        ));
    }
    if !e.unlicensed.is_empty() {
        rows.push((
            "unlicensed".into(),
            "<strong class=\"maybe\">No licence recorded</strong>".into(),
            format!("{}: their terms are unknown.", list(&e.unlicensed)),
        ));
    }
    let mut out = String::from("<section class=\"licence\" data-testid=\"licence-card\"><h2>Licence in plain words</h2><dl>");
    for (key, q, a) in rows {
        let _ = write!(
            out,
            "<div data-term=\"{}\"><dt>{q}</dt><dd>{a}</dd></div>",
            esc(&key)
        );
    }
    out.push_str("</dl><p class=\"note\">Licences in force: ");
    out.push_str(
        &e.licenses
            .iter()
            .map(|(label, id)| format!("{} ← {}", esc(id), esc(label)))
            .collect::<Vec<_>>()
            .join("; "),
    );
    out.push_str(". Ask the API for any use: <code>GET /api/models/…/license-check?use=research</code>.</p></section>");
    out
}

async fn model_page(
    State(st): St,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Result<Query<Cursors>, QueryRejection>,
) -> Response {
    let ((owner, name), c) = match path_param(p).and_then(|p| Ok((p, cursors(q)?))) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let id = format!("{owner}/{name}");
    render(st, move |st| {
        with_history(st, |s, store| {
            let Some(m) = s.model(&id) else {
                return Err(not_found(&format!("There is no model {id:?} on this ledger.")));
            };
            let prov = shoulders_state::provenance(s, &id)
                .ok_or_else(|| not_found(&format!("There is no model {id:?} on this ledger.")))?;
            let mut body = format!(
                "<p class=\"lead\">{} · owned by {} · registered {} UTC in {}</p>",
                esc(&m.name),
                holder_link(&m.owner),
                esc(&time(m.registered_ts_ms)),
                link(&record_href(m.registered_at), &format!("record #{}", m.registered_at)),
            );
            if let Some(d) = &m.description {
                let _ = write!(body, "<p>{}</p>", esc(d));
            }
            if let Some(src) = &m.source {
                // Repository and commit were validated at admission; escaped all the same.
                let hub = match src.hub {
                    shoulders_record::ModelHub::HuggingFace => "Hugging Face",
                };
                let _ = write!(
                    body,
                    "<p data-testid=\"model-source\">Files as downloaded from {hub} repository <a href=\"{}\" rel=\"nofollow noopener noreferrer\">{}</a> at commit <code>{}</code>.</p>",
                    esc(&src.url()),
                    esc(&src.repo),
                    esc(&src.revision)
                );
            }
            if let Some(d) = s.open_dispute(&DisputeTarget::Model(id.clone())) {
                let _ = write!(
                    body,
                    "<p class=\"notice\" data-testid=\"model-dispute\">Disputed by {} ({}): the owner's earnings from this model are held in escrow until the ruling.</p>",
                    holder_link(&d.claimant),
                    link(&dispute_href(d.id), &format!("dispute #{}", d.id))
                );
            }
            if let Some(r) = &m.ruled_against {
                let _ = write!(
                    body,
                    "<p class=\"notice\" data-testid=\"model-dispute\">Ruled against in {}: its owner's earnings now go to {}.</p>",
                    link(&dispute_href(r.dispute), &format!("dispute #{}", r.dispute)),
                    holder_link(&r.earnings_to)
                );
            }
            // The tree: ancestors above (layer −depth), the model, descendants below.
            let mut nodes = Vec::new();
            let mut ancestors: Vec<_> = prov.ancestors.iter().collect();
            ancestors.sort_by(|a, b| b.depth.cmp(&a.depth).then(a.model_id.cmp(&b.model_id)));
            for a in ancestors {
                nodes.push(svg::TreeNode { model_id: a.model_id.clone(), layer: -i64::from(a.depth), focus: false });
            }
            nodes.push(svg::TreeNode { model_id: id.clone(), layer: 0, focus: true });
            let mut descendants: Vec<_> = prov.descendants.iter().collect();
            descendants.sort_by(|a, b| a.depth.cmp(&b.depth).then(a.model_id.cmp(&b.model_id)));
            for d in &descendants {
                nodes.push(svg::TreeNode { model_id: d.model_id.clone(), layer: i64::from(d.depth), focus: false });
            }
            let mut edges: Vec<svg::TreeEdge> = prov
                .edges
                .iter()
                .map(|e| svg::TreeEdge { child: e.child.clone(), parent: e.parent.clone(), relation: e.relation.as_str().into(), summary: None })
                .collect();
            let below: BTreeSet<&str> = std::iter::once(id.as_str())
                .chain(descendants.iter().map(|d| d.model_id.as_str()))
                .collect();
            for d in &descendants {
                if let Some(dm) = s.model(&d.model_id) {
                    for p in dm.parents.iter().filter(|p| below.contains(p.model_id.as_str())) {
                        edges.push(svg::TreeEdge { child: d.model_id.clone(), parent: p.model_id.clone(), relation: p.relation.as_str().into(), summary: None });
                    }
                }
            }
            // Label the drawn edges with what each child changed (the tree draws at most
            // MAX_TREE_NODES models, so at most that many diffs per edge end are computed).
            let drawn: BTreeSet<&str> = nodes.iter().take(svg::MAX_TREE_NODES).map(|n| n.model_id.as_str()).collect();
            for e in edges.iter_mut().filter(|e| drawn.contains(e.child.as_str()) && drawn.contains(e.parent.as_str())) {
                e.summary = diff::edge_summary(s, &e.child, &e.parent);
            }
            let _ = write!(
                body,
                "<section><h2>Family tree</h2><p class=\"note\">Ancestors above, descendants below; click a model to open it.</p>{}</section>",
                svg::family_tree(&nodes, &edges)
            );
            body.push_str(&diff::diff_section(s, m));
            body.push_str(&licence_card(s, &id));
            body.push_str(&training::training_section(&st.content(), m));
            let mut ds_rows = Vec::new();
            for d in &prov.datasets {
                let contributors = d
                    .contributors
                    .iter()
                    .map(|c| format!("{} ({})", holder_link(&c.handle), c.contributions))
                    .collect::<Vec<_>>()
                    .join(", ");
                ds_rows.push(vec![
                    link(&dataset_href(&d.dataset_id), &d.dataset_id),
                    d.used_by.iter().map(|u| link(&model_href(u), u)).collect::<Vec<_>>().join(", "),
                    d.contributions.to_string(),
                    format!("<span data-testid=\"contributors\">{contributors}</span>"),
                ]);
            }
            let _ = write!(
                body,
                "<section><h2>Datasets and contributors</h2>{}</section>",
                if ds_rows.is_empty() {
                    "<p>No datasets recorded for this model or its ancestors.</p>".to_string()
                } else {
                    table("datasets", &["dataset", "used by", "contributions", "contributors"], &ds_rows)
                }
            );
            let calls = shoulders_ledger::query::receipts(store, Some(&id), None, c.calls.as_deref(), MAX_CALLS_LISTED, None)
                .map_err(storage_error)?;
            let usage = s.model_usage(&id);
            let rows: Vec<Vec<String>> = calls
                .items
                .iter()
                .map(|r| {
                    vec![
                        link(&record_href(r.index), &r.usage_id),
                        holder_link(&r.payer),
                        esc(&r.use_category),
                        money(r.charge_micros.parse().unwrap_or(0), &r.currency),
                        esc(&time(r.ts_ms)),
                    ]
                })
                .collect();
            let _ = write!(
                body,
                "<section id=\"calls\"><h2>Metered calls</h2><p>{} calls, charged {}{}.</p>{}{}</section>",
                usage.map_or(0, |u| u.calls),
                match usage {
                    Some(u) if !u.charged_micros.is_empty() => u
                        .charged_micros
                        .iter()
                        .map(|(c, v)| money(v.parse().unwrap_or(0), c))
                        .collect::<Vec<_>>()
                        .join(", "),
                    _ => "nothing".into(),
                },
                if c.calls.is_some() { format!(" ({} listed, older than the first page)", rows.len()) }
                else if calls.next.is_some() { format!(" (the latest {MAX_CALLS_LISTED} listed)") } else { String::new() },
                table("calls", &["usage", "payer", "use", "charge", "time (UTC)"], &rows),
                more_link(&model_href(&id), "calls", calls.next.as_deref(), "calls", "older calls →")
            );
            body.push_str(&try_box(st, s, Some(&id)));
            Ok(page(&id, &body))
        })
    })
    .await
}

async fn dataset_page(
    State(st): St,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Result<Query<Cursors>, QueryRejection>,
) -> Response {
    let ((owner, name), c) = match path_param(p).and_then(|p| Ok((p, cursors(q)?))) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let id = format!("{owner}/{name}");
    render(st, move |st| {
        st.view().with_state(|s| {
            let Some(d) = s.dataset(&id) else {
                return Err(not_found(&format!(
                    "There is no dataset {id:?} on this ledger."
                )));
            };
            let mut body =
                format!(
                "<p class=\"lead\">{} · owned by {} · access {} · licence {} · created in {}</p>",
                esc(&d.name),
                holder_link(&d.owner),
                esc(&format!("{:?}", d.access).to_lowercase()),
                esc(d.license_id.as_deref().unwrap_or("none")),
                link(&record_href(d.created_at), &format!("record #{}", d.created_at)),
            );
            if let Some(desc) = &d.description {
                let _ = write!(body, "<p>{}</p>", esc(desc));
            }
            let _ = write!(
                body,
                "<p data-testid=\"governance\">{}</p>",
                esc(&governance_line(s, d))
            );
            let models: Vec<String> = s
                .models()
                .filter(|m| m.datasets.contains(&id))
                .map(|m| link(&model_href(&m.model_id), &m.model_id))
                .collect();
            let _ = write!(
                body,
                "<p>Trained into: {}.</p>",
                if models.is_empty() {
                    "no model yet".into()
                } else {
                    models.join(", ")
                }
            );
            let contributions = shoulders_ledger::query::dataset_contributions(
                s,
                &id,
                c.contributions.as_deref(),
                MAX_LISTED,
            )
            .map_err(storage_error)?;
            let rows: Vec<Vec<String>> = contributions
                .items
                .iter()
                .map(|c| {
                    vec![
                        format!(
                            "<span id=\"c-{}\">{}</span>",
                            c.index,
                            link(&record_href(c.index), &format!("#{}", c.index))
                        ),
                        esc(c.title.as_deref().unwrap_or("untitled")),
                        holder_link(&c.contributor),
                        c.byte_size.to_string(),
                        s.contribution_uses(c.index).to_string(),
                        contribution_status(s, c),
                        esc(&time(c.ts_ms)),
                    ]
                })
                .collect();
            let _ = write!(
                body,
                "<section id=\"contributions\"><h2>Contributions</h2>{}{}</section>",
                table(
                    "contributions",
                    &[
                        "contribution",
                        "title",
                        "contributor",
                        "bytes",
                        "used in outputs",
                        "status",
                        "time (UTC)"
                    ],
                    &rows
                ),
                more_link(
                    &dataset_href(&id),
                    "contributions",
                    contributions.next.as_deref(),
                    "contributions",
                    &format!("more contributions (of {}) →", d.contributions.len())
                )
            );
            Ok(page(&id, &body))
        })
    })
    .await
}

async fn actor_page(State(st): St, p: Result<Path<String>, PathRejection>) -> Response {
    let handle = match path_param(p) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    render(st, move |st| {
        with_history(st, |s, store| {
            let Some(a) = s.actor(&handle) else {
                return Err(not_found(&format!("There is no actor {handle:?} on this ledger.")));
            };
            // By source and totals from the counters; the chart and the outputs from the latest
            // legs (bounded pages, whatever the history).
            let statement = s.statement(&handle, None, None);
            let recent = shoulders_ledger::query::legs_of(store, &handle, None, true, None, MAX_CHART_LEGS)
                .map_err(storage_error)?;
            let mut body = format!(
                "<p class=\"lead\">{} · registered {} UTC in {} · payout address: {}</p>",
                esc(&a.name),
                esc(&time(a.registered_ts_ms)),
                link(&record_href(a.registered_at), &format!("record #{}", a.registered_at)),
                match &a.payout_address {
                    Some(p) => format!("<code>{}</code>", esc(p)),
                    None => "none yet (earnings wait in the unclaimed pool)".into(),
                }
            );
            let totals: Vec<Vec<String>> = statement
                .totals
                .iter()
                .map(|t| {
                    vec![
                        esc(&t.currency),
                        format!("<span data-testid=\"balance\">{}</span>", micros(t.balance_micros)),
                        format!("<span data-testid=\"unclaimed\">{}</span>", micros(t.unclaimed_micros)),
                        micros(t.credits_micros),
                        micros(t.debits_micros),
                    ]
                })
                .collect();
            let _ = write!(
                body,
                "<section><h2>Balance</h2>{}</section>",
                if totals.is_empty() {
                    "<p>No money has moved for this actor.</p>".to_string()
                } else {
                    table("balances", &["currency", "balance", "held in unclaimed", "credits", "debits"], &totals)
                }
            );
            // Earnings: credits from usage (fees, royalties, data shares, owner shares), whether
            // paid to the account or held in the unclaimed pool.
            let earning = |r: Role| matches!(r, Role::ProtocolFee | Role::Royalty | Role::DataShare | Role::OwnerShare | Role::Rounding);
            let mut per_currency: BTreeMap<String, Vec<(u64, i128)>> = BTreeMap::new();
            for l in recent.items.iter().rev() {
                if earning(l.role) && l.amount_micros > 0 {
                    per_currency.entry(l.currency.to_string()).or_default().push((l.ts_ms, l.amount_micros));
                }
            }
            body.push_str("<section><h2>Earnings over time</h2>");
            if per_currency.is_empty() {
                body.push_str(&svg::earnings_chart(&[], ""));
            }
            for (cur, points) in &per_currency {
                body.push_str(&svg::earnings_chart(points, cur));
            }
            let sources: Vec<Vec<String>> = statement
                .by_source
                .iter()
                .map(|g| {
                    vec![
                        esc(g.role.as_str()),
                        g.model_id.as_deref().map(|m| link(&model_href(m), m)).unwrap_or_default(),
                        g.dataset_id.as_deref().map(|d| link(&dataset_href(d), d)).unwrap_or_default(),
                        g.contribution.map(|c| link(&record_href(c), &format!("#{c}"))).unwrap_or_default(),
                        match (g.held_in_escrow, g.held_in_unclaimed) {
                            (Some(d), _) => format!("escrow of {}", link(&dispute_href(d), &format!("dispute #{d}"))),
                            (None, true) => "unclaimed pool".into(),
                            (None, false) => "own account".into(),
                        },
                        g.count.to_string(),
                        money(g.amount_micros, &g.currency),
                    ]
                })
                .collect();
            let _ = write!(
                body,
                "<h3>By source</h3>{}</section>",
                table("sources", &["role", "model", "dataset", "contribution", "held in", "records", "amount"], &sources)
            );
            let mut contributions = Vec::new();
            for c in s.contributions_of(&handle).iter().take(MAX_OUTPUTS_LISTED).filter_map(|c| s.contribution(*c)) {
                let earned: i128 = statement.by_source.iter().filter(|g| g.contribution == Some(c.index)).map(|g| g.amount_micros).sum();
                contributions.push(vec![
                    link(&record_href(c.index), &format!("#{}", c.index)),
                    esc(c.title.as_deref().unwrap_or("untitled")),
                    link(&dataset_href(&c.dataset_id), &c.dataset_id),
                    s.contribution_uses(c.index).to_string(),
                    micros(earned),
                ]);
            }
            if !contributions.is_empty() {
                let _ = write!(
                    body,
                    "<section><h2>Contributions</h2>{}</section>",
                    table("contributions", &["contribution", "title", "dataset", "used in outputs", "earned"], &contributions)
                );
            }
            // Outputs that used this actor's data: receipts with a data share for them, the
            // latest first (their number from the counters).
            let shares = shoulders_ledger::query::legs_of(store, &handle, Some("data_share"), true, None, MAX_OUTPUTS_LISTED * 4)
                .map_err(storage_error)?;
            let mut outputs: BTreeMap<u64, (i128, BTreeSet<u64>)> = BTreeMap::new();
            for l in &shares.items {
                let e = outputs.entry(l.index).or_default();
                e.0 += l.amount_micros;
                e.1.extend(l.contribution);
            }
            let mut rows: Vec<Vec<String>> = Vec::new();
            let listed: Vec<u64> = outputs.keys().rev().take(MAX_OUTPUTS_LISTED).copied().collect();
            let receipts: BTreeMap<u64, shoulders_store::ReceiptRow> = store
                .receipts_at(&listed)
                .map_err(|e| storage_error(e.into()))?
                .into_iter()
                .map(|r| (r.index, r))
                .collect();
            for (index, (amount, cs)) in outputs.iter().rev().take(MAX_OUTPUTS_LISTED) {
                let Some(r) = receipts.get(index) else {
                    continue;
                };
                rows.push(vec![
                    link(&record_href(*index), &r.usage_id),
                    link(&model_href(&r.model_id), &r.model_id),
                    esc(&time(r.ts_ms)),
                    cs.iter().map(|c| link(&record_href(*c), &format!("#{c}"))).collect::<Vec<_>>().join(", "),
                    money(*amount, &r.currency),
                ]);
            }
            let paid = s.data_share_receipts(&handle);
            let _ = write!(
                body,
                "<section><h2>Outputs that used their data</h2><p data-testid=\"outputs-count\">{} outputs{}.</p>{}</section>",
                paid,
                if paid as usize > rows.len() { format!(" (the latest {} listed)", rows.len()) } else { String::new() },
                table("outputs", &["usage (receipt)", "model", "time (UTC)", "contributions", "earned"], &rows)
            );
            let owned: Vec<String> = s
                .models()
                .filter(|m| m.owner == handle)
                .map(|m| link(&model_href(&m.model_id), &m.model_id))
                .chain(s.datasets().filter(|d| d.owner == handle).map(|d| link(&dataset_href(&d.dataset_id), &d.dataset_id)))
                .collect();
            if !owned.is_empty() {
                let _ = write!(body, "<section><h2>Owns</h2><p>{}</p></section>", owned.join(", "));
            }
            body.push_str(&training::credits_section(s, &handle));
            Ok(page(&format!("{} ({})", a.name, a.handle), &body))
        })
    })
    .await
}

async fn record_page(State(st): St, p: Result<Path<u64>, PathRejection>) -> Response {
    let index = match path_param(p) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    render(st, move |st| {
        let Some(bytes) = st.view().record(index).map_err(storage_error)? else {
            return Err(not_found(&format!(
                "There is no record {index}; the log holds {} records.",
                st.view().size()
            )));
        };
        let record: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let leaf = shoulders_log::leaf_hash(&bytes).to_string();
        with_history(st, |s, store| {
            let kind = record["kind"].as_str().unwrap_or("?");
            let mut body = format!(
                "<dl class=\"facts\"><dt>kind</dt><dd><code data-testid=\"record-kind\">{}</code></dd>\
<dt>signed by</dt><dd>{}</dd><dt>client id</dt><dd><code>{}</code></dd><dt>time</dt><dd>{} UTC</dd>\
<dt>leaf hash</dt><dd><code>{}</code></dd></dl>",
                esc(kind),
                signer_handle(s, &record).map(|h| holder_link(&h)).unwrap_or_else(|| "an unknown key".into()),
                esc(record["id"].as_str().unwrap_or("")),
                esc(&time(record["ts_ms"].as_u64().unwrap_or(0))),
                esc(&leaf),
            );
            let b = &record["body"];
            let about = match kind {
                "actor.register" | "actor.update" => b["handle"].as_str().map(|h| format!("Actor {}.", holder_link(h))),
                "model.register" => b["model_id"].as_str().map(|m| format!("Model {}.", link(&model_href(m), m))),
                "dataset.create" => b["dataset_id"].as_str().map(|d| format!("Dataset {}.", link(&dataset_href(d), d))),
                "data.contribute" => s.contribution(index).map(|c| {
                    format!(
                        "<span data-testid=\"contribution\">Contribution <strong>{}</strong> by {} to {}, {} bytes, <code>{}</code>; used in {} outputs.</span>",
                        esc(c.title.as_deref().unwrap_or("untitled")),
                        holder_link(&c.contributor),
                        link(&dataset_href(&c.dataset_id), &c.dataset_id),
                        c.byte_size,
                        esc(&c.content_hash),
                        s.contribution_uses(index)
                    )
                }),
                "usage.receipt" => store.receipt(index).map_err(|e| storage_error(e.into()))?.map(|r| {
                    let legs: Vec<Vec<String>> = store
                        .legs_of_record(index)
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|l| shoulders_ledger::query::leg(l).ok())
                        .map(|l| {
                            vec![
                                holder_link(l.holder()),
                                esc(l.role.as_str()),
                                l.model_id.as_deref().map(|m| link(&model_href(m), m)).unwrap_or_default(),
                                l.contribution.map(|c| link(&record_href(c), &format!("#{c}"))).unwrap_or_default(),
                                money(l.amount_micros, &l.currency),
                            ]
                        })
                        .collect();
                    format!(
                        "<p>Call <code>{}</code> to {} paid by {} ({} use): {} input and {} output tokens, charged {}.</p><h3>How the charge was split</h3>{}",
                        esc(&r.usage_id),
                        link(&model_href(&r.model_id), &r.model_id),
                        holder_link(&r.payer),
                        esc(&r.use_category),
                        r.input_tokens,
                        r.output_tokens,
                        money(r.charge_micros.parse().unwrap_or(0), &r.currency),
                        table("legs", &["holder", "role", "level", "contribution", "amount"], &legs)
                    )
                }),
                _ => None,
            };
            if let Some(a) = about {
                let _ = write!(body, "<section><h2>What it did</h2>{a}</section>");
            }
            let _ = write!(
                body,
                "<section id=\"proof\" data-index=\"{index}\" data-testid=\"proof\"><h2>Inclusion proof</h2>{}\
<p class=\"pending\" data-testid=\"proof-status\">Checking in your browser: SHA-256 of the record bytes as an RFC 6962 leaf, folded with the audit path, against the checkpoint's root…</p>\
<noscript>Needs JavaScript; or run <code>shoulders proof inclusion --index {index}</code>.</noscript></section>",
                checkpoint_check(st, false)
            );
            let shown = if bytes.len() > MAX_SHOWN_RECORD_BYTES {
                format!("(record of {} bytes; fetch it from /api/records/{index})", bytes.len())
            } else {
                serde_json::to_string_pretty(&record).unwrap_or_default()
            };
            let _ = write!(
                body,
                "<section><h2>Record</h2><p class=\"note\">The exact signed bytes are at <a href=\"/api/records/{index}\">/api/records/{index}</a>.</p><pre data-testid=\"record-json\">{}</pre></section>",
                esc(&shown)
            );
            Ok(page(&format!("Record #{index}"), &body))
        })
    })
    .await
}

fn dispute_href(id: u64) -> String {
    format!("/disputes/{id}")
}

fn contribution_href(s: &Ledger, index: u64) -> String {
    match s.contribution(index) {
        Some(c) => format!("{}#c-{index}", dataset_href(&c.dataset_id)),
        None => record_href(index),
    }
}

/// How a dataset is governed, in words.
fn governance_line(s: &Ledger, d: &Dataset) -> String {
    let mut parts = vec![if d.review {
        "Reviewed: contributions wait for the owner's acceptance and earn nothing until then"
            .to_string()
    } else {
        "Not reviewed: contributions count as soon as they are appended".to_string()
    }];
    if let Some(q) = &d.quota {
        let mut limits = Vec::new();
        if let Some(n) = q.max_count {
            limits.push(format!("{n} contributions"));
        }
        if let Some(b) = q.max_bytes {
            limits.push(format!("{b} bytes"));
        }
        parts.push(format!(
            "quota per contributor: {} per {} s",
            limits.join(" and "),
            q.window_ms / 1000
        ));
    }
    let (arbiter, bond) = match &d.disputes {
        Some(p) => (
            match p.arbiter {
                shoulders_record::Arbiter::Owner => {
                    "the owner (the operator when the owner is a party)"
                }
                shoulders_record::Arbiter::Operator => "the operator",
            },
            p.bond.clone(),
        ),
        None => (
            "the operator",
            s.config().and_then(|c| c.dispute_bond.clone()),
        ),
    };
    parts.push(format!(
        "disputes ruled by {arbiter}, bond {}",
        bond.map_or("none".into(), |b| format!(
            "{} {}",
            html::micros(b.amount_micros.parse().unwrap_or(0)),
            b.currency
        ))
    ));
    if !d.tdm_reserved.is_empty() {
        parts.push(format!(
            "{} contribution(s) reserve text and data mining: no model may declare training on this dataset",
            d.tdm_reserved.len()
        ));
    }
    parts.join(" · ")
}

/// A contribution's standing, as HTML: review, rulings, open dispute, do-not-train mark.
fn contribution_status(s: &Ledger, c: &Contribution) -> String {
    let mut out = Vec::new();
    match c.review.as_ref().map(|r| (r.state, r.quality)) {
        Some((ReviewState::Pending, _)) => out.push("pending review (earns nothing)".to_string()),
        Some((ReviewState::Rejected, _)) => out.push("rejected (earns nothing)".to_string()),
        Some((ReviewState::Accepted, Some(q))) => out.push(format!("accepted, quality {q}")),
        Some((ReviewState::Accepted, None)) => out.push("accepted".to_string()),
        None => {}
    }
    let mut html: Vec<String> = out.iter().map(|t| esc(t)).collect();
    if let Some(r) = &c.ruled_against {
        let by = link(&dispute_href(r.dispute), &format!("dispute #{}", r.dispute));
        html.push(match r.redirect_to {
            Some(o) => format!(
                "ruled a copy ({by}): credit goes to {}",
                link(&contribution_href(s, o), &format!("#{o}"))
            ),
            None => format!("taken down ({by})"),
        });
    }
    if let Some(d) = s.open_dispute(&DisputeTarget::Contribution(c.index)) {
        html.push(format!(
            "disputed ({}): earnings held in escrow",
            link(&dispute_href(d.id), &format!("#{}", d.id))
        ));
    }
    if c.tdm_reservation {
        html.push("reserves text and data mining".into());
    }
    if html.is_empty() {
        "counts".into()
    } else {
        html.join("; ")
    }
}

fn dispute_about(s: &Ledger, d: &Dispute) -> String {
    match d.target() {
        DisputeTarget::Contribution(c) => {
            link(&contribution_href(s, c), &format!("contribution #{c}"))
        }
        DisputeTarget::Model(m) => link(&model_href(&m), &format!("model {m}")),
    }
}

fn dispute_status(d: &Dispute) -> &'static str {
    match d.status {
        DisputeStatus::Open => "open",
        DisputeStatus::Upheld => "upheld",
        DisputeStatus::Dismissed => "dismissed",
    }
}

fn dispute_row(s: &Ledger, d: &Dispute) -> Vec<String> {
    vec![
        link(&dispute_href(d.id), &format!("#{}", d.id)),
        dispute_about(s, d),
        holder_link(&d.claimant),
        holder_link(&d.respondent),
        esc(dispute_status(d)),
    ]
}

async fn dispute_page(State(st): St, p: Result<Path<u64>, PathRejection>) -> Response {
    let id = match path_param(p) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    render(st, move |st| {
        st.view().with_state(|s| {
            let Some(d) = s.dispute(id) else {
                return Err(not_found(&format!("There is no dispute #{id} on this ledger.")));
            };
            let arbiter = match d.arbiter {
                shoulders_record::Arbiter::Owner => "the dataset's owner",
                shoulders_record::Arbiter::Operator => "the ledger operator",
            };
            let mut body = format!(
                "<p class=\"lead\" data-testid=\"dispute-status\">{} · {} against {} about {} · opened in {} · ruled by {}</p>",
                esc(dispute_status(d)),
                holder_link(&d.claimant),
                holder_link(&d.respondent),
                dispute_about(s, d),
                link(&record_href(d.opened_at), &format!("record #{}", d.opened_at)),
                esc(arbiter),
            );
            let _ = write!(body, "<blockquote>{}</blockquote>", esc(&d.statement));
            if let Some(o) = d.original {
                let _ = write!(
                    body,
                    "<p>Says it copies {}.</p>",
                    link(&contribution_href(s, o), &format!("contribution #{o}"))
                );
            }
            let evidence: Vec<Vec<String>> = d.evidence.iter().map(|e| vec![format!("<code>{}</code>", esc(e))]).collect();
            let _ = write!(body, "<section><h2>Evidence</h2>{}</section>", table("evidence", &["content hash"], &evidence));
            if let Some(b) = &d.bond {
                let _ = write!(body, "<p>Bond: {}.</p>", money(b.amount_micros.parse().unwrap_or(0), &b.currency));
            }
            let escrow = shoulders_state::governance::escrow_account(d.id);
            let held: Vec<String> = s
                .books()
                .balances_of(&escrow)
                .into_iter()
                .map(|(cur, v)| money(v, &cur))
                .collect();
            let _ = write!(
                body,
                "<p data-testid=\"escrow\">Escrow <code>{}</code> holds: {}.</p>",
                esc(&escrow),
                if held.is_empty() { "nothing".into() } else { held.join(", ") }
            );
            if let (Some(at), Some(by)) = (d.ruled_at, &d.ruled_by) {
                let released: Vec<String> = d
                    .escrow_released_micros
                    .iter()
                    .map(|(cur, v)| money(v.parse().unwrap_or(0), cur))
                    .collect();
                let _ = write!(
                    body,
                    "<section id=\"ruling\"><h2>Ruling</h2><p data-testid=\"ruling\">{} by {} in {}: {}</p><p>Escrowed earnings released: {}{}.</p></section>",
                    esc(dispute_status(d)),
                    holder_link(by),
                    link(&record_href(at), &format!("record #{at}")),
                    esc(d.reason.as_deref().unwrap_or("")),
                    if released.is_empty() { "none".into() } else { released.join(", ") },
                    d.escrow_to.as_ref().map_or(String::new(), |t| format!(" to {}", holder_link(t))),
                );
                let amounts = |m: &BTreeMap<String, String>| {
                    m.iter()
                        .map(|(cur, v)| money(v.parse().unwrap_or(0), cur))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                if !d.clawed_back_micros.is_empty() || !d.clawback_short_micros.is_empty() {
                    let _ = write!(
                        body,
                        "<p data-testid=\"clawback\">Earned by the copy before the dispute, clawed back for the original: {}{}.</p>",
                        if d.clawed_back_micros.is_empty() { "nothing".into() } else { amounts(&d.clawed_back_micros) },
                        if d.clawback_short_micros.is_empty() {
                            String::new()
                        } else {
                            format!("; already withdrawn or spent, not recovered: {}", amounts(&d.clawback_short_micros))
                        }
                    );
                }
            }
            Ok(page(&format!("Dispute #{id}"), &body))
        })
    })
    .await
}
