//! Per-client request rate limit: a token bucket per client IP. A client over its rate gets
//! `429 E_RATE_LIMITED` with `Retry-After`; nothing it sent is processed.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Most client addresses tracked at once; beyond it the table is reset (a flood of addresses
/// must not grow memory without bound).
const MAX_TRACKED_CLIENTS: usize = 100_000;

/// How many requests per second each client IP may make.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub per_second: u32,
    /// Requests a client may make at once after being idle.
    pub burst: u32,
    /// Whether 127.0.0.1/::1 are limited too (off by default, so local tools and benchmarks
    /// are not throttled).
    pub limit_loopback: bool,
}

/// One token bucket per client: an IP address (the middleware) or an API key's actor (the
/// attribute route, [`attribute_limit`]).
pub struct Buckets<K = IpAddr> {
    clients: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K> Default for Buckets<K> {
    fn default() -> Self {
        Buckets {
            clients: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: std::hash::Hash + Eq> Buckets<K> {
    /// Take one token for `ip`; `Err(seconds to wait)` when its bucket is empty.
    pub(crate) fn take(&self, ip: K, limit: &RateLimit, now: Instant) -> Result<(), u64> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if clients.len() >= MAX_TRACKED_CLIENTS && !clients.contains_key(&ip) {
            clients.clear();
        }
        let burst = f64::from(limit.burst.max(1));
        let rate = f64::from(limit.per_second.max(1));
        let (tokens, last) = clients.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

/// Default rate of `POST /api/attribute` per API key (its actor), per second, with a burst
/// of [`DEFAULT_ATTRIBUTE_BURST`]. One attribution of a 1 MiB text takes up to a few seconds
/// of CPU on a blocking thread; one a second per key keeps a key from occupying the blocking
/// pool while a person pasting texts never notices.
pub const DEFAULT_ATTRIBUTE_RATE_PER_S: u32 = 1;
/// Attributions a key may ask for at once after being idle.
pub const DEFAULT_ATTRIBUTE_BURST: u32 = 5;

/// Take one token of `actor`'s attribution bucket (`429 E_RATE_LIMITED` when empty).
pub fn attribute_limit(st: &AppState, actor: &str) -> Result<(), ApiError> {
    let Some(limit) = st.config.attribute_rate_limit else {
        return Ok(());
    };
    st.attribute_buckets
        .take(actor.to_string(), &limit, Instant::now())
        .map_err(|wait_s| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "E_RATE_LIMITED",
                format!(
                    "more than {} attributions per second for this API key; retry after {wait_s} s",
                    limit.per_second
                ),
            )
        })
}

/// The middleware: applies the configured limit, if any, per client IP.
pub async fn limit(State(st): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let connect = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    if let (Some(limit), Some(addr)) = (st.config.rate_limit, connect) {
        let ip = addr.ip();
        if limit.limit_loopback || !ip.is_loopback() {
            if let Err(wait_s) = st.rate_buckets.take(ip, &limit, Instant::now()) {
                let mut response = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "E_RATE_LIMITED",
                    format!(
                        "more than {} requests per second from {ip}; retry after {wait_s} s",
                        limit.per_second
                    ),
                )
                .into_response();
                if let Ok(v) = wait_s.to_string().parse() {
                    response.headers_mut().insert(header::RETRY_AFTER, v);
                }
                return response;
            }
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_refills_at_the_rate() {
        let b = Buckets::default();
        let l = RateLimit {
            per_second: 10,
            burst: 3,
            limit_loopback: true,
        };
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        assert!((0..3).all(|_| b.take(ip, &l, t0).is_ok()));
        assert!(b.take(ip, &l, t0).is_err());
        // Another client has its own bucket.
        assert!(b.take("10.0.0.2".parse().unwrap(), &l, t0).is_ok());
        // 100 ms later one token is back.
        assert!(b.take(ip, &l, t0 + Duration::from_millis(100)).is_ok());
        assert!(b.take(ip, &l, t0 + Duration::from_millis(100)).is_err());
    }
}
