//! The log as C2SP `tlog-tiles` (<https://c2sp.org/tlog-tiles>) under the prefix `/log/`:
//! `GET /log/checkpoint` and `GET /log/tile/{path}`. A client reads the whole tree from these
//! static-looking files, checks every tile against the signed checkpoint and computes its own
//! proofs; `shoulders publish --out DIR` writes the same files, byte for byte, so any static web
//! server (or CDN) can serve the log instead.
//!
//! Full tiles never change, so they are cacheable forever; a partial tile is replaced by a wider
//! one as the log grows, so it is cached briefly; the checkpoint is never cached.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use shoulders_log::tiles::TileCoord;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::AppState;

type St = State<Arc<AppState>>;

/// `Cache-Control` of a full tile: its bytes are final.
pub const FULL_TILE_CACHE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of a partial tile: a wider tile replaces it as records are appended, so a
/// cache may keep it only briefly.
pub const PARTIAL_TILE_CACHE: &str = "public, max-age=10";
/// `Cache-Control` of the checkpoint: always the latest.
pub const CHECKPOINT_CACHE: &str = "no-cache";

/// Documents the wildcard route, which `routes!` cannot register (its path holds slashes).
#[derive(OpenApi)]
#[openapi(paths(tile))]
struct TileDoc;

pub(crate) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(TileDoc::openapi())
        .routes(routes!(log_checkpoint))
        .route("/log/tile/{*path}", axum::routing::get(tile))
}

/// The signed checkpoint note (C2SP `tlog-checkpoint`), the root every tile is checked against:
/// with a witness policy (`serve --witness-policy`) the latest checkpoint a quorum of witnesses
/// cosigned (503 `E_NOT_COSIGNED` until the first; tiles of the larger committed tree are served
/// meanwhile and hold it as a prefix), without one the log-signed checkpoint of the committed
/// tree.
#[utoipa::path(get, path = "/log/checkpoint", tag = "log",
    responses(
        (status = 200, description = "signed note, with witness cosignatures under a policy; `Cache-Control: no-cache`", content_type = "text/plain", body = String),
        (status = 503, description = "E_NOT_COSIGNED: no checkpoint has reached the witness quorum yet", body = crate::error::ErrorBody)))]
async fn log_checkpoint(State(st): St) -> ApiResult<Response> {
    let note = match &st.witnessing {
        Some(w) => w.cosigned().ok_or_else(|| {
            crate::ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "E_NOT_COSIGNED",
                "no checkpoint has been cosigned by a quorum of this log's witnesses yet",
            )
        })?,
        None => st.view().checkpoint()?,
    };
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, CHECKPOINT_CACHE),
        ],
        note,
    )
        .into_response())
}

/// A C2SP tile: `tile/<L>/<N>[.p/<W>]` (256 hashes of tree level `8·L`, 32 bytes each) or
/// `tile/entries/<N>[.p/<W>]` (records `256·N ..`, each a big-endian `u16` length and the
/// record's exact bytes). Full tiles are immutable; a partial tile of width `W` exists once the
/// tree holds its first `W` hashes or records.
#[utoipa::path(get, path = "/log/tile/{path}", tag = "log",
    params(("path" = String, Path, description = "the C2SP tile path after `tile/`, slashes included, e.g. `0/x001/234.p/17` or `entries/005`")),
    responses(
        (status = 200, description = "the tile's bytes; full tiles `Cache-Control: public, max-age=31536000, immutable`, partial ones `public, max-age=10`", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 400, description = "E_TILE_PATH: not the canonical path of a tile", body = ErrorBody),
        (status = 404, description = "E_TILE_NOT_FOUND: the committed tree does not hold this tile (yet)", body = ErrorBody)))]
async fn tile(State(st): St, p: Result<Path<String>, PathRejection>) -> ApiResult<Response> {
    let rest = p.map(|Path(p)| p).map_err(|rej| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "E_TILE_PATH",
            format!("bad tile path: {}", rej.body_text()),
        )
    })?;
    let coord = TileCoord::parse(&format!("tile/{rest}"))
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()))?;
    let state = Arc::clone(&st);
    let data = tokio::task::spawn_blocking(move || state.view().tile(&coord)).await??;
    let cache = if coord.is_full() {
        FULL_TILE_CACHE
    } else {
        PARTIAL_TILE_CACHE
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, cache),
        ],
        data,
    )
        .into_response())
}
