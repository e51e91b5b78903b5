//! `GET /healthz` (the process answers) and `GET /readyz` (it can do its work): what a load
//! balancer or an orchestrator probes before sending traffic.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::AppState;

/// Longest one readiness check may take before it counts as failed (a store that does not
/// answer must not hang the probe).
pub const READY_CHECK_TIMEOUT_MS: u64 = 2_000;

/// `GET /healthz`: 200 `{"status":"ok"}` while the process serves HTTP at all.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 when every check passes, else 503 naming the failed ones.
///
/// Checks: on the writer, `writer` (its thread takes records) and `store` (a read of the log's
/// size answers); on a read-only node, `store` and `follower` (the follow loop has caught up
/// with the log at least once); and `index:<dataset>` for every index the server was told to
/// load ([`crate::ServerConfig::preload_indexes`]).
pub async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    let mut checks: Vec<(String, Result<(), String>)> = Vec::new();
    match st.writer() {
        Ok(ledger) => checks.push((
            "writer".into(),
            if ledger.is_running() {
                Ok(())
            } else {
                Err("the writer has stopped (a commit failed and its state could not be recovered); restart the server".into())
            },
        )),
        Err(_) => checks.push((
            "follower".into(),
            if st.followed_once() {
                Ok(())
            } else {
                Err("the follower has not caught up with the log yet".into())
            },
        )),
    }
    let s = Arc::clone(&st);
    checks.push((
        "store".into(),
        bounded(async move {
            tokio::task::spawn_blocking(move || {
                s.view()
                    .with_history(|_, store| Ok(store.size()?))
                    .map(|_| ())
                    .map_err(|e| format!("error[{}]: {e}", e.code()))
            })
            .await
            .map_err(|e| e.to_string())?
        })
        .await,
    ));
    for dataset in &st.config.preload_indexes {
        let (s, d) = (Arc::clone(&st), dataset.clone());
        let outcome = bounded(async move {
            tokio::task::spawn_blocking(move || match s.dataset_index(&d) {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err(format!(
                    "no attribution index is built for {d}; run `shoulders index build --data-dir D {d}`"
                )),
                Err(e) => Err(format!("error[{}]: {}", e.code, e.message)),
            })
            .await
            .map_err(|e| e.to_string())?
        })
        .await;
        checks.push((format!("index:{dataset}"), outcome));
    }
    let failed: Vec<&str> = checks
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(name, _)| name.as_str())
        .collect();
    let mut by_name = Map::new();
    for (name, outcome) in &checks {
        by_name.insert(
            name.clone(),
            match outcome {
                Ok(()) => json!({"ok": true}),
                Err(message) => json!({"ok": false, "message": message}),
            },
        );
    }
    if failed.is_empty() {
        (
            StatusCode::OK,
            Json(json!({"status": "ready", "checks": by_name})),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "not_ready",
                "error": {
                    "code": "E_NOT_READY",
                    "message": format!("not ready: {} failed; see checks", failed.join(", ")),
                },
                "failed": failed,
                "checks": by_name,
            })),
        )
            .into_response()
    }
}

/// `check` within [`READY_CHECK_TIMEOUT_MS`].
async fn bounded(check: impl Future<Output = Result<(), String>>) -> Result<(), String> {
    tokio::time::timeout(Duration::from_millis(READY_CHECK_TIMEOUT_MS), check)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {READY_CHECK_TIMEOUT_MS} ms")))
}
