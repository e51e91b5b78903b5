//! The REST API under `/api`. Reads are public; the writes are `POST /api/records` and
//! `POST /api/contributions` (a `data.contribute` record with its document), whose authority is
//! the record's own signature (operator records such as deposits and receipts must be signed
//! with the operator's key, which the fold checks).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use shoulders_attrib::dataset::AttributeOptions;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::{AppState, WriterNode};

type St = State<Arc<AppState>>;

/// Most records listed by one `GET /api/records`.
pub const MAX_LIST_RECORDS: u64 = 1000;
/// Byte budget of one list response, by default (`ServerConfig::max_page_bytes`): records are
/// large, and 1 000 of them with their JSON could be many MiB. Past it a page ends early with its
/// cursor; it always holds at least one item, so it is at most this plus one item (a record is
/// at most 64 KiB, so 1 000 of them stay under 64 MiB even without it).
pub const MAX_PAGE_BYTES: usize = 4 << 20;
/// Largest text `POST /api/attribute` accepts, in bytes.
pub const MAX_ATTRIBUTE_TEXT_BYTES: usize = 1 << 20;

pub(crate) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(submit_record, list_records))
        .routes(routes!(submit_contribution))
        .routes(routes!(get_record))
        .routes(routes!(checkpoint))
        .routes(routes!(inclusion_proof))
        .routes(routes!(consistency_proof))
        .routes(routes!(list_actors))
        .routes(routes!(get_actor))
        .routes(routes!(list_datasets))
        .routes(routes!(get_dataset))
        .routes(routes!(dataset_contributions))
        .routes(routes!(actor_receipts))
        .routes(routes!(model_receipts))
        .routes(routes!(get_contribution))
        .routes(routes!(list_disputes))
        .routes(routes!(get_dispute))
        .routes(routes!(list_models))
        .routes(routes!(get_model))
        .routes(routes!(model_lineage))
        .routes(routes!(model_diff))
        .routes(routes!(model_training))
        .routes(routes!(license_check))
        .routes(routes!(get_license))
        .routes(routes!(attribute))
        .routes(routes!(audit_receipt))
        .routes(routes!(receipt_output))
        .routes(routes!(list_accounts))
        .routes(routes!(statement))
}

/// Map an extractor's body rejection to our codes (413 for the size limit).
pub(crate) fn body_bytes(body: Result<Bytes, BytesRejection>) -> ApiResult<Bytes> {
    body.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "E_BODY_TOO_LARGE",
                format!("the request body is too large: {}", rej.body_text()),
            )
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "E_BODY_UNREADABLE",
                format!("the request body could not be read: {}", rej.body_text()),
            )
        }
    })
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    q.map(|Query(t)| t).map_err(|rej| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "E_QUERY_INVALID",
            format!("bad query parameters: {}", rej.body_text()),
        )
    })
}

fn path<T>(p: Result<Path<T>, PathRejection>) -> ApiResult<T> {
    p.map(|Path(t)| t).map_err(|rej| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "E_PATH_PARAM_INVALID",
            format!("bad path parameter: {}", rej.body_text()),
        )
    })
}

/// What `POST /api/records` answers.
#[derive(Serialize, ToSchema)]
pub struct AppendedBody {
    pub index: u64,
    /// Base64 RFC 6962 leaf hash.
    pub leaf_hash: String,
    /// True when the identical record was already in the log.
    pub duplicate: bool,
}

/// Append a signed record.
///
/// The body is the record itself: its exact canonical JSON bytes as signed (what
/// `shoulders_record::sign_record` produces). Answers after the record is durably committed:
/// 201 when appended, 200 when the same record was already in the log.
#[utoipa::path(post, path = "/api/records", tag = "records",
    request_body(content = String, content_type = "application/json", description = "canonical signed record bytes"),
    responses(
        (status = 201, description = "appended", body = AppendedBody),
        (status = 200, description = "already in the log", body = AppendedBody),
        (status = 400, description = "malformed record or bad signature", body = ErrorBody),
        (status = 403, description = "E_READ_ONLY: this node serves reads only; send writes to the writer node", body = ErrorBody),
        (status = 409, description = "client id reused for different bytes", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 422, description = "refused by the fold (unknown reference, namespace, licence...)", body = ErrorBody),
    ))]
async fn submit_record(
    State(st): St,
    _: WriterNode,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let bytes = body_bytes(body)?;
    let state = Arc::clone(&st);
    let appended = tokio::task::spawn_blocking(move || {
        let record = charge_write(&state, bytes.to_vec(), 0)?;
        Ok::<_, ApiError>(state.writer()?.submit_record(record)?)
    })
    .await??;
    let status = if appended.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(AppendedBody {
            index: appended.index,
            leaf_hash: appended.leaf_hash.to_string(),
            duplicate: appended.duplicate,
        }),
    )
        .into_response())
}

/// `POST /api/contributions` body: a signed `data.contribute` record and the document it names.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContributionRequest {
    /// The record's exact signed bytes (its canonical JSON, as `shoulders sign` prints it),
    /// carried as a JSON string.
    #[serde(deserialize_with = "raw_string")]
    #[schema(value_type = String)]
    pub record: Vec<u8>,
    /// The document: UTF-8 text whose `sha256:<hex>` is the record's `content_hash` and whose
    /// length in bytes is its `byte_size` and `token_count`.
    #[serde(deserialize_with = "raw_string")]
    #[schema(value_type = String)]
    pub content: Vec<u8>,
}

/// A JSON string's unescaped bytes, without requiring UTF-8 (serde_json's `deserialize_bytes`
/// keeps invalid bytes and lone surrogates), so non-UTF-8 content gets its own code.
fn raw_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    struct Raw;
    impl serde::de::Visitor<'_> for Raw {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E>(self, v: &str) -> Result<Vec<u8>, E> {
            Ok(v.as_bytes().to_vec())
        }
        fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
    }
    d.deserialize_bytes(Raw)
}

/// What `POST /api/contributions` answers.
#[derive(Serialize, ToSchema)]
pub struct ContributedBody {
    pub index: u64,
    /// Base64 RFC 6962 leaf hash.
    pub leaf_hash: String,
    /// True when the identical record was already in the log.
    pub duplicate: bool,
    /// `sha256:<hex>` of the stored document.
    pub content_hash: String,
}

/// Room a contribution's body needs beyond its document: the record (at most 64 KiB) as a JSON
/// string, whose escapes can double it, and the object around both.
pub const CONTRIBUTION_ENVELOPE_BYTES: usize = 2 * shoulders_record::MAX_RECORD_BYTES + (64 << 10);

/// Upload a contribution: a signed `data.contribute` record with its document.
///
/// The server checks the record is a `data.contribute` naming exactly this content (its
/// sha256, its length as `byte_size` and `token_count`), stores the content durably, and only
/// then appends the record (as `POST /api/records`). 201 when appended, 200 when the same
/// record was already in the log. The document may be at most `--max-content-bytes` (default
/// 16 MiB), and the whole body that plus 2 MiB + 64 KiB.
#[utoipa::path(post, path = "/api/contributions", tag = "records", request_body = ContributionRequest,
    responses(
        (status = 201, description = "content stored and record appended", body = ContributedBody),
        (status = 200, description = "already in the log", body = ContributedBody),
        (status = 400, description = "malformed body or record, not a data.contribute, content hash mismatch, content not UTF-8", body = ErrorBody),
        (status = 403, description = "E_READ_ONLY: this node serves reads only; send writes to the writer node", body = ErrorBody),
        (status = 409, description = "client id reused for different bytes", body = ErrorBody),
        (status = 413, description = "body or document too large", body = ErrorBody),
        (status = 422, description = "sizes not the measured ones, or refused by the fold", body = ErrorBody),
    ))]
async fn submit_contribution(State(st): St, _: WriterNode, body: Body) -> ApiResult<Response> {
    let limit = st.config.max_content_bytes;
    let bytes = read_body(body, limit.saturating_add(CONTRIBUTION_ENVELOPE_BYTES)).await?;
    let req: ContributionRequest = serde_json::from_slice(&bytes).map_err(ApiError::bad_json)?;
    drop(bytes);
    if req.content.len() > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "E_BODY_TOO_LARGE",
            format!(
                "the document is {} bytes; this server takes at most {limit} (--max-content-bytes)",
                req.content.len()
            ),
        ));
    }
    let state = Arc::clone(&st);
    let done = tokio::task::spawn_blocking(move || {
        let record = charge_write(&state, req.record, req.content.len() as u64)?;
        Ok::<_, ApiError>(state.writer()?.contribute_record(record, &req.content)?)
    })
    .await??;
    let status = if done.appended.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(ContributedBody {
            index: done.appended.index,
            leaf_hash: done.appended.leaf_hash.to_string(),
            duplicate: done.appended.duplicate,
            content_hash: done.content_hash,
        }),
    )
        .into_response())
}

/// Decode and verify a record, then count the write against its signer's quota
/// ([`crate::quota`]) before the ledger sees it: `429 E_QUOTA_EXCEEDED` (with `Retry-After`)
/// past it. Only a record whose signature verifies is counted; anything else is refused with
/// the ledger's own code. The verified record goes on to the ledger, which does not verify it
/// again. `extra_bytes`: a contribution's document.
fn charge_write(
    st: &AppState,
    record: Vec<u8>,
    extra_bytes: u64,
) -> ApiResult<shoulders_record::SignedRecord> {
    let bytes = (record.len() as u64).saturating_add(extra_bytes);
    let verified = shoulders_record::SignedRecord::from_bytes(record)
        .map_err(shoulders_ledger::LedgerError::from)?;
    st.charge_write(&verified.record().signer, bytes)
        .map_err(|e| {
            let mut err =
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "E_QUOTA_EXCEEDED", e.message);
            err.retry_after_s = e.retry_after_s;
            err
        })?;
    Ok(verified)
}

/// Read a request body of at most `limit` bytes (413 `E_BODY_TOO_LARGE` beyond), for a route
/// whose limit is not the server-wide `--max-body-bytes`.
async fn read_body(body: Body, limit: usize) -> ApiResult<Vec<u8>> {
    use tokio_stream::StreamExt as _;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "E_BODY_TOO_LARGE",
            format!("the request body is over {limit} bytes"),
        )
    };
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "E_BODY_UNREADABLE",
                format!("the request body could not be read: {e}"),
            )
        })?;
        if out.len() + chunk.len() > limit {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[derive(Deserialize, IntoParams)]
pub struct ListQuery {
    /// First index (default: the most recent `limit` records).
    from: Option<u64>,
    /// How many (default 20, 1 to 1000; `E_PAGE_TOO_LARGE` beyond).
    limit: Option<u64>,
}

/// List records, newest last, each decoded with its leaf hash.
#[utoipa::path(get, path = "/api/records", tag = "records", params(ListQuery),
    responses((status = 200, description = "records", body = Object), (status = 400, body = ErrorBody)))]
async fn list_records(
    State(st): St,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let q = query(q)?;
    let limit = match q.limit.unwrap_or(20) {
        n @ 1..=MAX_LIST_RECORDS => n,
        n => {
            return Err(shoulders_ledger::LedgerError::PageSize {
                limit: usize::try_from(n).unwrap_or(usize::MAX),
                max: MAX_LIST_RECORDS as usize,
            }
            .into())
        }
    };
    let state = Arc::clone(&st);
    tokio::task::spawn_blocking(move || {
        let budget = state.config.max_page_bytes;
        let size = state.view().size();
        let mut out = Vec::new();
        let mut used = 0usize;
        // Within the byte budget, and at least one record. Forward from `from` when given
        // (`next_from` continues the range); without it, back from the newest, so the page is
        // the latest records that fit (`older_from` continues).
        let mut take = |index: u64, out: &mut Vec<Value>| -> ApiResult<bool> {
            let Some(bytes) = state.view().record(index)? else {
                return Ok(true);
            };
            let item = record_json(index, &bytes);
            let len = serde_json::to_vec(&item).map_or(0, |v| v.len());
            if !out.is_empty() && used.saturating_add(len) > budget {
                return Ok(false);
            }
            used = used.saturating_add(len);
            out.push(item);
            Ok(true)
        };
        let (from, to) = match q.from {
            Some(from) => {
                let from = from.min(size);
                let end = from.saturating_add(limit).min(size);
                let mut to = from;
                while to < end && take(to, &mut out)? {
                    to += 1;
                }
                (from, to)
            }
            None => {
                let start = size.saturating_sub(limit);
                let mut from = size;
                while from > start && take(from - 1, &mut out)? {
                    from -= 1;
                }
                out.reverse();
                (from, size)
            }
        };
        let mut page = json!({"tree_size": size, "from": from, "records": out});
        if from > 0 {
            // Where the previous (older) page starts.
            page["older_from"] = json!(from.saturating_sub(limit));
        }
        if to < size {
            // Where the next (newer) page starts.
            page["next_from"] = json!(to);
        }
        Ok(Json(page))
    })
    .await?
}

/// Run `page(limit)` and, while its response is over `budget` bytes and holds more than one
/// item (in its `key` array), again with fewer: the page ends early and its own `next` cursor
/// (made by the query itself) continues where it ends. A few bounded re-queries at most.
pub(crate) fn fit_page<E>(
    budget: usize,
    key: &str,
    mut limit: usize,
    mut page: impl FnMut(usize) -> Result<Value, E>,
) -> Result<Value, E> {
    loop {
        let v = page(limit)?;
        let items = v.get(key).and_then(Value::as_array).map_or(0, Vec::len);
        let len = serde_json::to_vec(&v).map_or(0, |b| b.len());
        if len <= budget || items <= 1 {
            return Ok(v);
        }
        // Scale down to what should fit, and always by at least one item.
        let fits = (items as u128 * budget as u128 / len as u128) as usize;
        limit = fits.clamp(1, items - 1);
    }
}

fn record_json(index: u64, bytes: &[u8]) -> Value {
    let record: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    json!({
        "index": index,
        "leaf_hash": shoulders_log::leaf_hash(bytes).to_string(),
        "kind": record.get("kind"),
        "record": record,
    })
}

/// The exact bytes of record `index` (canonical JSON, hashable as the leaf).
#[utoipa::path(get, path = "/api/records/{index}", tag = "records",
    params(("index" = u64, Path, description = "log index")),
    responses((status = 200, description = "the record's exact bytes", content_type = "application/json", body = Object),
               (status = 404, body = ErrorBody)))]
async fn get_record(State(st): St, p: Result<Path<u64>, PathRejection>) -> ApiResult<Response> {
    let index = path(p)?;
    let state = Arc::clone(&st);
    let bytes = tokio::task::spawn_blocking(move || state.view().record(index)).await??;
    let bytes =
        bytes.ok_or_else(|| ApiError::not_found(format!("no record {index} in this log")))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response())
}

/// The signed checkpoint (C2SP signed note) of everything committed.
#[utoipa::path(get, path = "/api/checkpoint", tag = "log",
    responses((status = 200, description = "signed note", content_type = "text/plain", body = String)))]
async fn checkpoint(State(st): St) -> ApiResult<Response> {
    let note = st.view().checkpoint()?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response())
}

#[derive(Deserialize, IntoParams)]
pub struct InclusionQuery {
    /// Leaf index.
    index: u64,
    /// Tree size (default: the current size).
    size: Option<u64>,
}

/// RFC 6962 inclusion proof.
#[utoipa::path(get, path = "/api/proofs/inclusion", tag = "log", params(InclusionQuery),
    responses((status = 200, description = "{tree_size, leaf_index, hashes}", body = Object), (status = 400, body = ErrorBody)))]
async fn inclusion_proof(
    State(st): St,
    q: Result<Query<InclusionQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let q = query(q)?;
    let state = Arc::clone(&st);
    let proof = tokio::task::spawn_blocking(move || state.view().inclusion_proof(q.index, q.size))
        .await??;
    Ok(Json(json!(proof)))
}

#[derive(Deserialize, IntoParams)]
pub struct ConsistencyQuery {
    old: u64,
    /// Default: the current size.
    new: Option<u64>,
}

/// RFC 6962 consistency proof.
#[utoipa::path(get, path = "/api/proofs/consistency", tag = "log", params(ConsistencyQuery),
    responses((status = 200, description = "{old_size, new_size, hashes}", body = Object), (status = 400, body = ErrorBody)))]
async fn consistency_proof(
    State(st): St,
    q: Result<Query<ConsistencyQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let q = query(q)?;
    let state = Arc::clone(&st);
    let proof =
        tokio::task::spawn_blocking(move || state.view().consistency_proof(q.old, q.new)).await??;
    Ok(Json(json!(proof)))
}

/// A page of a list: `limit` items (1 to 1000, default 100) after `cursor`.
#[derive(Deserialize, IntoParams)]
pub struct PageQuery {
    /// Items per page, 1 to 1000 (default 100; `E_PAGE_TOO_LARGE` beyond).
    limit: Option<usize>,
    /// The `next` cursor of the previous page (`E_CURSOR_INVALID` if it is not one).
    cursor: Option<String>,
}

/// Run a paged query on the state (bounded: no store read).
fn state_page(
    st: &AppState,
    q: Result<Query<PageQuery>, QueryRejection>,
    f: impl Fn(
        &shoulders_state::State,
        Option<&str>,
        usize,
    ) -> Result<Value, shoulders_ledger::LedgerError>,
) -> ApiResult<Json<Value>> {
    let q = query(q)?;
    let limit = shoulders_ledger::query::page_size(q.limit)?;
    let budget = st.config.max_page_bytes;
    let page = st
        .view()
        .with_state(|s| fit_page(budget, "items", limit, |l| f(s, q.cursor.as_deref(), l)))?;
    Ok(Json(page))
}

/// Actors in handle order, one page at a time.
#[utoipa::path(get, path = "/api/actors", tag = "state", params(PageQuery),
    responses((status = 200, description = "{items, next (cursor of the next page, absent on the last), total}", body = Object),
               (status = 400, body = ErrorBody)))]
async fn list_actors(
    State(st): St,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    state_page(&st, q, |s, c, l| {
        shoulders_ledger::query::actors(s, c, l).map(|p| json!(p))
    })
}

/// The usage receipts an actor paid, newest first, one page at a time.
#[utoipa::path(get, path = "/api/actors/{handle}/receipts", tag = "money",
    params(("handle" = String, Path), PageQuery),
    responses((status = 200, description = "{items, next}; amounts are decimal strings", body = Object),
               (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn actor_receipts(
    State(st): St,
    p: Result<Path<String>, PathRejection>,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let handle = path(p)?;
    let q = query(q)?;
    let limit = shoulders_ledger::query::page_size(q.limit)?;
    let budget = st.config.max_page_bytes;
    let st2 = Arc::clone(&st);
    tokio::task::spawn_blocking(move || {
        st2.view().with_history(|s, store| {
            if s.actor(&handle).is_none() {
                return Err(shoulders_ledger::LedgerError::NotFound(format!(
                    "no actor {handle:?}"
                )));
            }
            fit_page(budget, "items", limit, |l| {
                shoulders_ledger::query::receipts(
                    store,
                    None,
                    Some(&handle),
                    q.cursor.as_deref(),
                    l,
                    None,
                )
                .map(receipts_json)
            })
        })
    })
    .await?
    .map(Json)
    .map_err(Into::into)
}

/// The usage receipts of calls to a model, newest first, one page at a time; `total` is the
/// model's call counter.
#[utoipa::path(get, path = "/api/models/{owner}/{name}/receipts", tag = "money",
    params(("owner" = String, Path), ("name" = String, Path), PageQuery),
    responses((status = 200, description = "{items, next, total}; amounts are decimal strings", body = Object),
               (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn model_receipts(
    State(st): St,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let (owner, name) = path(p)?;
    let id = format!("{owner}/{name}");
    let q = query(q)?;
    let limit = shoulders_ledger::query::page_size(q.limit)?;
    let budget = st.config.max_page_bytes;
    let st2 = Arc::clone(&st);
    tokio::task::spawn_blocking(move || {
        st2.view().with_history(|s, store| {
            if s.model(&id).is_none() {
                return Err(shoulders_ledger::LedgerError::NotFound(format!(
                    "no model {id:?}"
                )));
            }
            let total = s.model_usage(&id).map_or(0, |u| u.calls);
            fit_page(budget, "items", limit, |l| {
                shoulders_ledger::query::receipts(
                    store,
                    Some(&id),
                    None,
                    q.cursor.as_deref(),
                    l,
                    Some(total),
                )
                .map(receipts_json)
            })
        })
    })
    .await?
    .map(Json)
    .map_err(Into::into)
}

/// A page of receipts as JSON (the store's rows are not serialisable themselves).
fn receipts_json(page: shoulders_ledger::query::Page<shoulders_store::ReceiptRow>) -> Value {
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|r| {
            json!({
                "index": r.index, "ts_ms": r.ts_ms, "usage_id": r.usage_id,
                "model_id": r.model_id, "payer": r.payer, "use_category": r.use_category,
                "currency": r.currency, "charge_micros": r.charge_micros,
                "input_tokens": r.input_tokens, "output_tokens": r.output_tokens,
                "unattributed": r.unattributed,
            })
        })
        .collect();
    let mut v = json!({"items": items});
    if let Some(next) = page.next {
        v["next"] = json!(next);
    }
    if let Some(total) = page.total {
        v["total"] = json!(total);
    }
    v
}

/// One actor.
#[utoipa::path(get, path = "/api/actors/{handle}", tag = "state",
    params(("handle" = String, Path)), responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
async fn get_actor(
    State(st): St,
    p: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Value>> {
    let handle = path(p)?;
    st.view()
        .with_state(|s| s.actor(&handle).map(|a| json!(a)))
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no actor {handle:?}")))
}

/// Datasets in id order, one page at a time.
#[utoipa::path(get, path = "/api/datasets", tag = "state", params(PageQuery),
    responses((status = 200, description = "{items, next, total}", body = Object), (status = 400, body = ErrorBody)))]
async fn list_datasets(
    State(st): St,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    state_page(&st, q, |s, c, l| {
        shoulders_ledger::query::datasets(s, c, l).map(|p| json!(p))
    })
}

/// A dataset's contributions in log order, one page at a time.
#[utoipa::path(get, path = "/api/datasets/{owner}/{name}/contributions", tag = "state",
    params(("owner" = String, Path), ("name" = String, Path), PageQuery),
    responses((status = 200, description = "{items, next, total}", body = Object),
               (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn dataset_contributions(
    State(st): St,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let (owner, name) = path(p)?;
    let id = format!("{owner}/{name}");
    state_page(&st, q, |s, cursor, limit| {
        shoulders_ledger::query::dataset_contributions(s, &id, cursor, limit).map(|p| json!(p))
    })
}

/// One dataset, with its contributions.
#[utoipa::path(get, path = "/api/datasets/{owner}/{name}", tag = "state",
    params(("owner" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
async fn get_dataset(
    State(st): St,
    p: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Json<Value>> {
    let (owner, name) = path(p)?;
    let id = format!("{owner}/{name}");
    st.view()
        .with_state(|s| {
            s.dataset(&id).map(|d| {
                let mut v = json!(d);
                // The first page only; the rest from /contributions with `contributions_next`.
                let page = shoulders_ledger::query::dataset_contributions(
                    s,
                    &id,
                    None,
                    shoulders_ledger::query::DEFAULT_PAGE,
                )
                .expect("the dataset exists and no cursor was given");
                v["contribution_records"] = json!(page.items);
                if let Some(next) = page.next {
                    v["contributions_next"] = json!(next);
                }
                v
            })
        })
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no dataset {id:?}")))
}

/// One contribution (by the log index of its `data.contribute` record).
#[utoipa::path(get, path = "/api/contributions/{index}", tag = "state",
    params(("index" = u64, Path)), responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
async fn get_contribution(
    State(st): St,
    p: Result<Path<u64>, PathRejection>,
) -> ApiResult<Json<Value>> {
    let index = path(p)?;
    st.view()
        .with_state(|s| {
            s.contribution(index).map(|c| {
                let mut v = json!(c);
                let target = shoulders_state::DisputeTarget::Contribution(index);
                if let Some(d) = s.open_dispute(&target) {
                    v["open_dispute"] = json!(d.id);
                }
                v
            })
        })
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no contribution {index}")))
}

/// Disputes, newest first, one page at a time.
#[utoipa::path(get, path = "/api/disputes", tag = "governance", params(PageQuery),
    responses((status = 200, description = "{items, next, total}", body = Object), (status = 400, body = ErrorBody)))]
async fn list_disputes(
    State(st): St,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    state_page(&st, q, |s, c, l| {
        shoulders_ledger::query::disputes(s, c, l).map(|p| json!(p))
    })
}

/// One dispute (by the log index of its `dispute.open` record), with what its escrow holds now.
#[utoipa::path(get, path = "/api/disputes/{id}", tag = "governance",
    params(("id" = u64, Path)), responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
async fn get_dispute(State(st): St, p: Result<Path<u64>, PathRejection>) -> ApiResult<Json<Value>> {
    let id = path(p)?;
    st.view()
        .with_state(|s| {
            s.dispute(id).map(|d| {
                let mut v = json!(d);
                let escrow = shoulders_state::governance::escrow_account(id);
                let held: serde_json::Map<String, Value> = s
                    .books()
                    .balances_of(&escrow)
                    .into_iter()
                    .map(|(cur, amount)| (cur.to_string(), json!(amount.to_string())))
                    .collect();
                v["escrow_account"] = json!(escrow);
                v["escrow_held_micros"] = Value::Object(held);
                v
            })
        })
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no dispute {id}")))
}

/// Models in id order, one page at a time.
#[utoipa::path(get, path = "/api/models", tag = "state", params(PageQuery),
    responses((status = 200, description = "{items, next, total}", body = Object), (status = 400, body = ErrorBody)))]
async fn list_models(
    State(st): St,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    state_page(&st, q, |s, c, l| {
        shoulders_ledger::query::models(s, c, l).map(|p| json!(p))
    })
}

/// One model.
#[utoipa::path(get, path = "/api/models/{owner}/{name}", tag = "state",
    params(("owner" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
async fn get_model(
    State(st): St,
    p: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Json<Value>> {
    let (owner, name) = path(p)?;
    let id = format!("{owner}/{name}");
    st.view()
        .with_state(|s| {
            s.model(&id).map(|m| {
                let mut v = json!(m);
                let target = shoulders_state::DisputeTarget::Model(id.clone());
                if let Some(d) = s.open_dispute(&target) {
                    v["open_dispute"] = json!(d.id);
                }
                v
            })
        })
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no model {id:?}")))
}

#[derive(Deserialize, IntoParams)]
pub struct LineageQuery {
    /// `json` (default), `dot` or `mermaid`.
    format: Option<String>,
}

/// A model's provenance: ancestors, descendants, relations and upstream datasets.
#[utoipa::path(get, path = "/api/models/{owner}/{name}/lineage", tag = "state",
    params(("owner" = String, Path), ("name" = String, Path), LineageQuery),
    responses((status = 200, description = "JSON, or text for dot/mermaid", body = Object),
               (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn model_lineage(
    State(st): St,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Result<Query<LineageQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let (owner, name) = path(p)?;
    let q = query(q)?;
    let id = format!("{owner}/{name}");
    let prov = st
        .view()
        .with_state(|s| shoulders_state::provenance(s, &id))
        .ok_or_else(|| ApiError::not_found(format!("no model {id:?}")))?;
    let text =
        |t: String| ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], t).into_response();
    match q.format.as_deref().unwrap_or("json") {
        "json" => Ok(Json(json!(prov)).into_response()),
        "dot" => Ok(text(shoulders_state::to_dot(&prov))),
        "mermaid" => Ok(text(shoulders_state::to_mermaid(&prov))),
        other => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "E_QUERY_INVALID",
            format!("unknown lineage format {other:?}; use json, dot or mermaid"),
        )),
    }
}

/// How a model was trained: its registered training run (framework, code, compute, credits)
/// and the configuration document the run names, read from this node's content store (a JSON
/// object of at most 1 MiB, checked against its hash). `training` is `null` when the model
/// records no run; `config` is `null` when the run names no configuration or this node does not
/// hold it (`config_error` then says why).
#[utoipa::path(get, path = "/api/models/{owner}/{name}/training", tag = "state",
    params(("owner" = String, Path), ("name" = String, Path)),
    responses((status = 200, description = "{model_id, training, config, config_error?}", body = Object),
               (status = 404, body = ErrorBody)))]
async fn model_training(
    State(st): St,
    p: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Json<Value>> {
    let (owner, name) = path(p)?;
    let id = format!("{owner}/{name}");
    let training = st
        .view()
        .with_state(|s| s.model(&id).map(|m| m.training.clone()))
        .ok_or_else(|| ApiError::not_found(format!("no model {id:?}")))?;
    let hash = training.as_ref().and_then(|t| t.config_hash.clone());
    let mut v = json!({"model_id": id, "training": training, "config": null});
    if let Some(hash) = hash {
        // At most 1 MiB read and parsed, off the async threads.
        let content = st.content();
        match tokio::task::spawn_blocking(move || content.training_config(&hash)).await? {
            Ok(config) => v["config"] = Value::Object(config),
            Err(e) => {
                v["config_error"] = json!({"code": e.code(), "message": e.to_string()});
            }
        }
    }
    Ok(Json(v))
}

#[derive(Deserialize, IntoParams)]
pub struct DiffQuery {
    /// The model to compare against, `owner/name`; default: the model's first parent.
    parent: Option<String>,
}

/// What a model changed from its parent, tensor by tensor: status (identical, changed, added,
/// removed, or inherited for an adapter's base), totals by status and per layer, the share of
/// the parent's parameters changed (ppm), quantisation or adapter details and a one-line
/// summary. Computed from the registered tensor hashes only.
#[utoipa::path(get, path = "/api/models/{owner}/{name}/diff", tag = "state",
    params(("owner" = String, Path), ("name" = String, Path), DiffQuery),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody),
               (status = 404, description = "unknown model or parent, or no parent to compare with", body = ErrorBody)))]
async fn model_diff(
    State(st): St,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Result<Query<DiffQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let (owner, name) = path(p)?;
    let q = query(q)?;
    let id = format!("{owner}/{name}");
    // Copy the two models out of the snapshot, then diff without holding it.
    let (parent, child) = st.view().with_state(|s| {
        let child = s
            .model(&id)
            .ok_or_else(|| ApiError::not_found(format!("no model {id:?}")))?;
        let parent_id = match &q.parent {
            Some(p) => p.clone(),
            None => child
                .parents
                .first()
                .map(|p| p.model_id.clone())
                .ok_or_else(|| {
                    ApiError::not_found(format!(
                        "{id:?} has no parent; name one to compare with in ?parent="
                    ))
                })?,
        };
        let parent = s
            .model(&parent_id)
            .ok_or_else(|| ApiError::not_found(format!("no model {parent_id:?}")))?;
        Ok::<_, ApiError>((parent.clone(), child.clone()))
    })?;
    Ok(Json(json!(shoulders_state::model_diff(&parent, &child))))
}

#[derive(Deserialize, IntoParams)]
pub struct LicenseCheckQuery {
    /// The intended use, e.g. `commercial`, `research`.
    #[serde(rename = "use")]
    use_tag: String,
    territory: Option<String>,
    /// Time of the use (default: now).
    at_ms: Option<u64>,
    /// The most stacked upstream royalty the user accepts, in basis points (0-10000): the use
    /// is denied when the model's royalty stack totals more.
    max_royalty_bps: Option<u32>,
}

/// May this model be used this way? Effective licence terms of its whole lineage, reasons,
/// obligations, price and royalties. `allowed: false` is a normal 200 answer.
#[utoipa::path(get, path = "/api/models/{owner}/{name}/license-check", tag = "state",
    params(("owner" = String, Path), ("name" = String, Path), LicenseCheckQuery),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn license_check(
    State(st): St,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Result<Query<LicenseCheckQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let (owner, name) = path(p)?;
    let q = query(q)?;
    let id = format!("{owner}/{name}");
    let now = q.at_ms.unwrap_or_else(crate::now_ms);
    if let Some(max) = q.max_royalty_bps.filter(|m| *m > shoulders_record::BPS_ONE) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "E_QUERY_INVALID",
            format!("max_royalty_bps {max} is over 10000"),
        ));
    }
    st.view()
        .with_state(|s| {
            let decision = s.check_use(
                &id,
                &q.use_tag,
                q.territory.as_deref(),
                now,
                q.max_royalty_bps,
            )?;
            let model = s.model(&id)?;
            Some(json!({
                "model_id": id,
                "use": q.use_tag,
                "territory": q.territory,
                "at_ms": now,
                "max_royalty_bps": q.max_royalty_bps,
                "allowed": decision.allowed,
                "reasons": decision.reasons,
                "notes": decision.notes,
                "price": decision.price,
                "royalties": decision.royalties,
                "licenses": model.effective.licenses,
            }))
        })
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no model {id:?}")))
}

/// One licence definition.
#[utoipa::path(get, path = "/api/licenses/{owner}/{name}", tag = "state",
    params(("owner" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
async fn get_license(
    State(st): St,
    p: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Json<Value>> {
    let (owner, name) = path(p)?;
    let id = format!("{owner}/{name}");
    st.view()
        .with_state(|s| s.license(&id).map(|l| json!(l)))
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no licence {id:?}")))
}

/// `POST /api/attribute` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributeRequest {
    pub dataset_id: String,
    /// The text to attribute (UTF-8, at most 1 MiB).
    pub text: String,
    /// Most spans shown (default 64); the shares always count every span.
    pub max_spans: Option<usize>,
}

/// Attribute a text against a dataset's index: maximal spans with their occurrences and the
/// contributions credited for them (their first contributors), and shares in ppm (as
/// `shoulders attribute`).
#[utoipa::path(post, path = "/api/attribute", tag = "attribution", request_body = AttributeRequest,
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, description = "E_ATTRIBUTION_BUDGET", body = ErrorBody), (status = 429, body = ErrorBody), (status = 504, description = "E_ATTRIBUTION_TIMEOUT", body = ErrorBody)))]
async fn attribute(
    State(st): St,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    // An attribution costs CPU in proportion to the text: only key holders may ask, at the
    // per-key rate (issue 15).
    let actor = crate::gateway::api_key(&st, &headers).await?.actor;
    crate::ratelimit::attribute_limit(&st, &actor)?;
    let bytes = body_bytes(body)?;
    let req: AttributeRequest = serde_json::from_slice(&bytes).map_err(ApiError::bad_json)?;
    if req.text.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "E_TEXT_EMPTY",
            "text is empty",
        ));
    }
    if req.text.len() > MAX_ATTRIBUTE_TEXT_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "E_TEXT_TOO_LARGE",
            format!(
                "text is {} bytes; the limit is {MAX_ATTRIBUTE_TEXT_BYTES}",
                req.text.len()
            ),
        ));
    }
    if st
        .view()
        .with_state(|s| s.dataset(&req.dataset_id).is_none())
    {
        return Err(ApiError::not_found(format!(
            "no dataset {:?}",
            req.dataset_id
        )));
    }
    // Takedowns and pending reviews apply to the very next query (no rebuild).
    let excluded = st
        .view()
        .with_state(|s| s.attribution_excluded(&req.dataset_id));
    let state = Arc::clone(&st);
    let cancel = crate::CancelOnDrop(Arc::default());
    let mut budget = st.attribution_budget(req.text.len(), Arc::clone(&cancel.0));
    let answer = tokio::task::spawn_blocking(move || {
        let ix = state.dataset_index(&req.dataset_id)?.ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "E_NO_INDEX",
                format!(
                    "dataset {} has no attribution index; run `shoulders index build --data-dir D {}`",
                    req.dataset_id, req.dataset_id
                ),
            )
        })?;
        let opts = AttributeOptions {
            max_spans: req
                .max_spans
                .unwrap_or(AttributeOptions::default().max_spans),
            excluded,
        };
        let searched = std::time::Instant::now();
        let report = ix.attribute_within(&req.text, &opts, &mut budget);
        state.metrics.attribution(
            crate::metrics::AttributionSource::Api,
            searched.elapsed(),
        );
        let report = report?;
        // Reserved content is still found and credited; the report says which, so a model
        // trained on it in breach of the reservation is visible.
        let reserved = state
            .view()
            .with_state(|s| s.tdm_reserved_among(report.contributions_named()));
        let mut v = json!(report);
        if !reserved.is_empty() {
            v["tdm_reserved"] = json!(reserved);
        }
        Ok(Json(v))
    })
    .await?;
    drop(cancel);
    answer
}

/// `POST /api/receipts/{index}/audit` body (optional: without one, the kept output is used).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditRequest {
    /// The output the receipt was issued for (UTF-8, at most 1 MiB); its sha256 must be the
    /// receipt's `output_hash`.
    pub output: String,
}

fn audit_error(e: crate::audit::AuditError) -> ApiError {
    use crate::audit::AuditError as A;
    let status = match e {
        A::Index(e) => return ApiError::from(e),
        A::Ledger(e) => return ApiError::from(e),
        A::NotAReceipt(_) => StatusCode::NOT_FOUND,
        A::NothingToAudit(_)
        | A::NoIndexState(_)
        | A::MixedDatasets(_)
        | A::OutputMismatch { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        A::OutputTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        A::StateUnavailable { .. } => StatusCode::CONFLICT,
        A::Scratch(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, e.code(), e.to_string())
}

/// Re-derive a receipt's attribution from its output and the contributions, and say whether
/// it matches (as `shoulders audit receipt`). Only against the live index: a receipt
/// attributed against another index state is `409 E_AUDIT_STATE_UNAVAILABLE` (a rebuild costs
/// as much as `index build`; run `shoulders audit receipt` on a copy of the data directory).
/// Costs one attribution: API key holders only, at the `POST /api/attribute` rate.
#[utoipa::path(post, path = "/api/receipts/{index}/audit", tag = "attribution",
    params(("index" = u64, Path, description = "log index of the usage.receipt")),
    request_body(content = AuditRequest, description = "the output; omit the body when the gateway kept it (`--keep-outputs`)"),
    responses((status = 200, description = "verdict: {matches, index, usage_id, dataset_id, receipt, derived, differences: [{dataset_id, contribution, receipt_ppm, derived_ppm}], evidence_hash_matches, excluded, index_source}", body = Object),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, description = "E_NOT_FOUND: no receipt at index; E_OUTPUT_NOT_KEPT: no body and no kept output", body = ErrorBody),
        (status = 409, description = "E_AUDIT_STATE_UNAVAILABLE: the live index is not of the receipt's state", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 422, description = "E_AUDIT_OUTPUT_MISMATCH, E_AUDIT_NO_INDEX_STATE, E_AUDIT_NOTHING", body = ErrorBody),
        (status = 429, body = ErrorBody)))]
async fn audit_receipt(
    State(st): St,
    headers: HeaderMap,
    p: Result<Path<u64>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let index = path(p)?;
    let actor = crate::gateway::api_key(&st, &headers).await?.actor;
    crate::ratelimit::attribute_limit(&st, &actor)?;
    let bytes = body_bytes(body)?;
    let given = if bytes.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let req: AuditRequest = serde_json::from_slice(&bytes).map_err(ApiError::bad_json)?;
        Some(req.output)
    };
    let state = Arc::clone(&st);
    tokio::task::spawn_blocking(move || {
        let receipt =
            crate::audit::receipt_at(index, state.view().record(index)?).map_err(audit_error)?;
        let output = match given {
            Some(o) => o,
            None => kept_output(&state, &receipt)?,
        };
        crate::audit::check_output(&receipt, &output).map_err(audit_error)?;
        let plan = state
            .view()
            .with_state(|s| crate::audit::plan(s, index, receipt))
            .map_err(audit_error)?;
        let live = state.dataset_index(&plan.dataset_id)?;
        let ix = crate::audit::index_for_state(&plan, live, None).map_err(audit_error)?;
        let searched = std::time::Instant::now();
        let verdict = crate::audit::run(&plan, &ix, &output);
        state
            .metrics
            .attribution(crate::metrics::AttributionSource::Api, searched.elapsed());
        Ok(Json(json!(verdict.map_err(audit_error)?)))
    })
    .await?
}

/// The kept output of `receipt` (`404 E_OUTPUT_NOT_KEPT` when the gateway did not keep it).
fn kept_output(st: &AppState, receipt: &shoulders_record::UsageReceipt) -> ApiResult<String> {
    let not_kept = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "E_OUTPUT_NOT_KEPT",
            format!(
                "the output of {} was not kept (the operator keeps outputs only of models served with --keep-outputs); send it in the body",
                receipt.usage_id
            ),
        )
    };
    let store = st.content();
    if !store.contains(&receipt.output_hash) {
        return Err(not_kept());
    }
    let bytes = store.get(&receipt.output_hash)?;
    String::from_utf8(bytes).map_err(|_| not_kept())
}

/// The output a receipt was issued for, when the gateway kept it (`serve --keep-outputs`).
/// Outputs may hold the payer's personal data, so only the receipt's parties may read it: an
/// API key of the payer, the model's owner, the operator, or a contributor the receipt credits.
#[utoipa::path(get, path = "/api/receipts/{index}/output", tag = "money",
    params(("index" = u64, Path, description = "log index of the usage.receipt")),
    responses((status = 200, description = "the output text, exactly as delivered", content_type = "text/plain", body = String),
        (status = 401, body = ErrorBody),
        (status = 403, description = "E_FORBIDDEN: the key's actor is not a party to the receipt", body = ErrorBody),
        (status = 404, description = "E_NOT_FOUND: no receipt; E_OUTPUT_NOT_KEPT: its output was not kept", body = ErrorBody)))]
async fn receipt_output(
    State(st): St,
    headers: HeaderMap,
    p: Result<Path<u64>, PathRejection>,
) -> ApiResult<Response> {
    let index = path(p)?;
    let actor = crate::gateway::api_key(&st, &headers).await?.actor;
    let state = Arc::clone(&st);
    let text = tokio::task::spawn_blocking(move || {
        let receipt = crate::audit::receipt_at(index, state.view().record(index)?)
            .map_err(audit_error)?;
        let party = state.view().with_state(|s| {
            actor == receipt.payer
                || s.model(&receipt.model_id).is_some_and(|m| m.owner == actor)
                || s.config().is_some_and(|c| c.operator == actor)
                || receipt.attribution.iter().any(|a| {
                    s.contribution(a.contribution)
                        .is_some_and(|c| c.contributor == actor)
                })
        });
        if !party {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "E_FORBIDDEN",
                format!("{actor} is not a party to receipt {index} (its payer, the model's owner, the operator or a credited contributor)"),
            ));
        }
        kept_output(&state, &receipt)
    })
    .await??;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

/// Every account's balance per currency, with the books' totals and conservation check (as
/// `shoulders accounts`).
#[utoipa::path(get, path = "/api/accounts", tag = "money",
    responses((status = 200, description = "{accounts: [{account, currency, balance_micros}], totals: [{currency, deposits_micros, withdrawals_micros, held_micros, conserved}], conserved}; amounts are decimal strings", body = Object)))]
async fn list_accounts(State(st): St) -> Json<Value> {
    Json(st.view().with_state(|s| {
        let totals = s.totals();
        let conserved = totals.iter().all(|t| t.conserved);
        json!({"accounts": s.accounts(), "totals": totals, "conserved": conserved})
    }))
}

#[derive(Deserialize, IntoParams)]
pub struct StatementQuery {
    /// Earliest leg time included, in ms since the epoch (inclusive).
    from: Option<u64>,
    /// Latest leg time, in ms since the epoch (exclusive).
    to: Option<u64>,
    /// Lines per page, 1 to 1000 (default 100; `E_PAGE_TOO_LARGE` beyond).
    limit: Option<usize>,
    /// The `next` cursor of the previous page (`E_CURSOR_INVALID` if it is not one).
    cursor: Option<String>,
}

/// Every credit and debit of one holder (an actor handle or a system account such as
/// `@protocol`) with `from <= ts < to`, grouped by cause, with balances and earnings held in
/// the unclaimed pool (as `shoulders statement`). An unknown holder has an empty statement.
#[utoipa::path(get, path = "/api/statements/{holder}", tag = "money",
    params(("holder" = String, Path), StatementQuery),
    responses((status = 200, description = "{holder, lines (one page), next (cursor of the next page, absent on the last), by_source, totals}; amounts are decimal strings", body = Object),
               (status = 400, body = ErrorBody)))]
async fn statement(
    State(st): St,
    p: Result<Path<String>, PathRejection>,
    q: Result<Query<StatementQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let holder = path(p)?;
    let q = query(q)?;
    if let (Some(from), Some(to)) = (q.from, q.to) {
        if from > to {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "E_QUERY_INVALID",
                format!("from ({from}) is after to ({to})"),
            ));
        }
    }
    let limit = shoulders_ledger::query::page_size(q.limit)?;
    let budget = st.config.max_page_bytes;
    let st2 = Arc::clone(&st);
    tokio::task::spawn_blocking(move || {
        st2.view().with_history(|s, store| {
            fit_page(budget, "lines", limit, |l| {
                shoulders_ledger::query::statement(
                    store,
                    s,
                    &holder,
                    q.from,
                    q.to,
                    q.cursor.as_deref(),
                    l,
                )
                .map(|page| json!(page))
            })
        })
    })
    .await?
    .map(Json)
    .map_err(Into::into)
}
