//! The operator's key administration over HTTP: `POST /api/admin/keys` (issue),
//! `GET /api/admin/keys` (list, by pages) and `DELETE /api/admin/keys/{id}` (revoke), the same
//! use cases as `shoulders apikey new|list|revoke` ([`crate::apikeys`]).
//!
//! Authentication: `Authorization: Bearer <admin token>`, a token made by
//! `shoulders apikey admin-token` (only its SHA-256 is in the store, compared in constant time;
//! making a new one replaces it at once). Without it, or with no admin token set, every route
//! answers `401 E_ADMIN_UNAUTHORIZED` and changes nothing. Writer node only (`E_READ_ONLY`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::body_bytes;
use crate::apikeys::{self, ApiKey, Budget, BudgetPeriod, KeyLimits, Revoke};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::{AppState, WriterNode};

pub(crate) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(revoke_key))
}

/// Refuse the request unless it carries the admin token (blocking: reads the store).
fn require_admin(st: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    let refused = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "E_ADMIN_UNAUTHORIZED",
            "this route needs `Authorization: Bearer <admin token>`; the operator makes one with \
             `shoulders apikey admin-token --data-dir D`",
        )
    };
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(refused)?;
    if st
        .api_keys
        .with_store(|s| apikeys::is_admin_token(s, token))?
    {
        Ok(())
    } else {
        Err(refused())
    }
}

/// Run `f` off the async workers after checking the admin token.
async fn as_admin<T: Send + 'static>(
    st: Arc<AppState>,
    headers: HeaderMap,
    f: impl FnOnce(&AppState) -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(move || {
        require_admin(&st, &headers)?;
        f(&st)
    })
    .await?
}

/// A new key's payer and limits.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKeyRequest {
    /// The payer: an actor handle.
    pub actor: String,
    /// Spend allowed per period, in micro-units (a decimal string); needs `budget_period`.
    pub budget_micros: Option<String>,
    /// Currency of the budget (default `USD`).
    pub budget_currency: Option<String>,
    pub budget_period: Option<BudgetPeriod>,
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
}

/// A new key: its token (shown this once) and what it is.
#[derive(Serialize, utoipa::ToSchema)]
pub struct NewKeyResponse {
    pub api_key: String,
    pub key: ApiKey,
}

/// The limits a request or a command line asks for (`E_API_KEY_LIMITS` when inconsistent).
pub fn limits_from(
    budget_micros: Option<&str>,
    budget_currency: Option<&str>,
    budget_period: Option<BudgetPeriod>,
    requests_per_minute: Option<u64>,
    tokens_per_minute: Option<u64>,
) -> Result<KeyLimits, apikeys::ApiKeyError> {
    let bad = |m: &str| apikeys::ApiKeyError::BadLimits(m.to_string());
    let budget = match (budget_micros, budget_period) {
        (None, None) if budget_currency.is_none() => None,
        (Some(amount), Some(period)) => Some(Budget {
            amount_micros: amount.parse().map_err(|_| {
                bad("budget_micros must be a whole number of micro-units, e.g. \"5000000\"")
            })?,
            currency: budget_currency.unwrap_or("USD").to_string(),
            period,
        }),
        _ => {
            return Err(bad(
                "a budget needs both budget_micros and budget_period (day or month)",
            ))
        }
    };
    let limits = KeyLimits {
        budget,
        requests_per_minute,
        tokens_per_minute,
    };
    limits.validate()?;
    Ok(limits)
}

/// Issue an API key (operator only).
#[utoipa::path(post, path = "/api/admin/keys", tag = "admin", request_body = NewKeyRequest,
    responses((status = 201, body = NewKeyResponse), (status = 400, body = ErrorBody),
        (status = 401, description = "E_ADMIN_UNAUTHORIZED", body = ErrorBody),
        (status = 403, description = "E_READ_ONLY", body = ErrorBody),
        (status = 404, description = "E_NOT_FOUND: no such actor", body = ErrorBody),
        (status = 409, description = "E_API_KEY_LIMIT", body = ErrorBody)))]
async fn create_key(
    State(st): State<Arc<AppState>>,
    _: WriterNode,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<NewKeyResponse>)> {
    let bytes = body_bytes(body)?;
    as_admin(st, headers, move |st| {
        let req: NewKeyRequest = serde_json::from_slice(&bytes).map_err(ApiError::bad_json)?;
        let limits = limits_from(
            req.budget_micros.as_deref(),
            req.budget_currency.as_deref(),
            req.budget_period,
            req.requests_per_minute,
            req.tokens_per_minute,
        )?;
        // As `shoulders apikey new`: the payer must be a registered actor.
        shoulders_record::validate::handle("actor", &req.actor)
            .map_err(|e| apikeys::ApiKeyError::BadActor(e.to_string()))?;
        if !st.view().with_state(|s| s.actor(&req.actor).is_some()) {
            return Err(ApiError::not_found(format!(
                "no actor {:?} in this ledger; register it first",
                req.actor
            )));
        }
        let now = crate::now_ms();
        let (token, key) = st
            .api_keys
            .with_store(|s| apikeys::issue(s, &req.actor, &limits, now, &mut rand_core::OsRng))?;
        Ok((
            StatusCode::CREATED,
            Json(NewKeyResponse {
                api_key: token,
                key,
            }),
        ))
    })
    .await
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListKeysQuery {
    /// Only this actor's keys.
    pub actor: Option<String>,
    /// Cursor: the `next` of the previous page.
    pub after: Option<String>,
    /// Keys per page (default 100, at most 1000).
    pub limit: Option<usize>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyPage {
    pub keys: Vec<ApiKey>,
    /// Cursor of the next page (`null`: this is the last).
    pub next: Option<String>,
}

/// List API keys, revoked ones included, in key id order (operator only).
#[utoipa::path(get, path = "/api/admin/keys", tag = "admin", params(ListKeysQuery),
    responses((status = 200, body = KeyPage), (status = 400, body = ErrorBody),
        (status = 401, description = "E_ADMIN_UNAUTHORIZED", body = ErrorBody)))]
async fn list_keys(
    State(st): State<Arc<AppState>>,
    _: WriterNode,
    headers: HeaderMap,
    query: Result<Query<ListKeysQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<KeyPage>> {
    let Query(q) = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "E_QUERY_INVALID", e.body_text()))?;
    as_admin(st, headers, move |st| {
        let limit = q.limit.unwrap_or(apikeys::DEFAULT_LIST_LIMIT);
        if limit == 0 || limit > apikeys::MAX_LIST_LIMIT {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "E_PAGE_TOO_LARGE",
                format!("limit {limit} must be 1-{}", apikeys::MAX_LIST_LIMIT),
            ));
        }
        let keys = st
            .api_keys
            .with_store(|s| apikeys::list(s, q.actor.as_deref(), q.after.as_deref(), limit))?;
        let next = (keys.len() == limit)
            .then(|| keys.last().map(|k| k.key_id.clone()))
            .flatten();
        Ok(Json(KeyPage { keys, next }))
    })
    .await
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Revoked {
    pub revoked: Vec<ApiKey>,
}

/// Revoke an API key by its id (or a unique prefix of at least 8 hex digits); refused from its
/// next request on (operator only).
#[utoipa::path(delete, path = "/api/admin/keys/{id}", tag = "admin",
    params(("id" = String, Path, description = "key id, or a unique prefix of it (8+ hex digits)")),
    responses((status = 200, body = Revoked), (status = 400, description = "E_API_KEY_AMBIGUOUS", body = ErrorBody),
        (status = 401, description = "E_ADMIN_UNAUTHORIZED", body = ErrorBody),
        (status = 404, description = "E_API_KEY_UNKNOWN", body = ErrorBody)))]
async fn revoke_key(
    State(st): State<Arc<AppState>>,
    _: WriterNode,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Revoked>> {
    as_admin(st, headers, move |st| {
        let now = crate::now_ms();
        let revoked = st
            .api_keys
            .with_store(|s| apikeys::revoke(s, &Revoke::Key(id), now))?;
        Ok(Json(Revoked { revoked }))
    })
    .await
}
