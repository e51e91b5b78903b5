//! The log under `/log/` (C2SP tlog-tiles) on a writer node: the checkpoint is `/api/checkpoint`'s
//! note, uncached; every tile of the tree holds exactly the records (`/api/records/{i}`) and
//! their hashes, proofs computed from the tiles alone are the server's proofs, full tiles are
//! cacheable forever and partial ones briefly, and bad or absent tiles get their codes. Both
//! routes are in the OpenAPI document.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use shoulders_ledger::{DataDir, Ledger};
use shoulders_log::tiles::{decode_bundle, new_tiles, TileCoord, TileFetch, TiledTree};
use shoulders_log::{leaf_hash, LogError, LogVerifier};
use shoulders_record::Kind;
use shoulders_server::Metering;
use std::collections::HashMap;

/// Tiles already fetched over HTTP, served to [`TiledTree`] (which is synchronous).
struct Fetched(HashMap<TileCoord, Vec<u8>>);

impl TileFetch for Fetched {
    fn fetch(&self, tiles: &[TileCoord]) -> Result<Vec<Vec<u8>>, LogError> {
        tiles
            .iter()
            .map(|t| {
                self.0
                    .get(t)
                    .cloned()
                    .ok_or_else(|| LogError::TileNotInTree(t.path()))
            })
            .collect()
    }
}

async fn get(s: &Running, path: &str) -> (StatusCode, String, String, Vec<u8>) {
    let r = s.client.get(s.url(path)).send().await.unwrap();
    let header = |name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let (content_type, cache) = (header("content-type"), header("cache-control"));
    (
        r.status(),
        content_type,
        cache,
        r.bytes().await.unwrap().to_vec(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_routes_serve_the_ledgers_tiles() {
    let f = fixture();
    {
        // Past one full tile of records.
        let ledger = Ledger::open(&DataDir::new(f.data_dir())).unwrap();
        let batch = (0..262)
            .map(|i| {
                record(
                    &f.alice,
                    &format!("t{i}"),
                    f.ts_ms,
                    Kind::DatasetCreate,
                    json!({"dataset_id": format!("alice/t{i}"), "name": "T", "access": "open"}),
                )
            })
            .collect();
        for r in ledger.submit_batch(batch) {
            r.unwrap();
        }
    }
    let s = start(config(&f, Metering::Off)).await;
    let size = s.size().await;
    assert!(size > 256 && size % 256 != 0, "{size}");

    let (status, content_type, cache, note) = get(&s, "/log/checkpoint").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "text/plain; charset=utf-8");
    assert_eq!(cache, "no-cache");
    let (_, _, _, api_note) = get(&s, "/api/checkpoint").await;
    assert_eq!(note, api_note);
    let vkey = std::fs::read_to_string(f.data_dir().join("log.pub")).unwrap();
    let root = LogVerifier::new(vkey.trim())
        .unwrap()
        .open(&note)
        .unwrap()
        .root;

    let mut records = Vec::new();
    for i in 0..size {
        records.push(get(&s, &format!("/api/records/{i}")).await.3);
    }
    let mut fetched = HashMap::new();
    for t in new_tiles(0, size) {
        let (status, content_type, cache, data) = get(&s, &format!("/log/{}", t.path())).await;
        assert_eq!(status, StatusCode::OK, "{}", t.path());
        assert_eq!(content_type, "application/octet-stream");
        let want_cache = if t.is_full() {
            "public, max-age=31536000, immutable"
        } else {
            "public, max-age=10"
        };
        assert_eq!(cache, want_cache, "{}", t.path());
        match t.level {
            None => {
                let entries = decode_bundle(&data, t.width).unwrap();
                for (i, e) in t.entry_range().zip(entries) {
                    assert_eq!(e, records[i as usize], "record {i}");
                }
            }
            Some(0) => {
                for (k, h) in data.chunks(32).enumerate() {
                    let i = t.index as usize * 256 + k;
                    assert_eq!(h, leaf_hash(&records[i]).0, "leaf {i}");
                }
            }
            Some(_) => assert_eq!(data.len(), 32 * t.width as usize),
        }
        fetched.insert(t, data);
    }
    // A narrower partial tile is a prefix of the served one (what an older client asks for).
    let (status, _, cache, data) = get(&s, "/log/tile/0/000.p/17").await;
    assert_eq!(
        (status, cache.as_str()),
        (StatusCode::OK, "public, max-age=10")
    );
    assert_eq!(data, fetched[&TileCoord::hash(0, 0, 256)][..17 * 32]);

    // Proofs from tiles alone are the server's proofs.
    let tiles = Fetched(fetched);
    let tree = TiledTree::new(size, root, &tiles);
    for (index, at) in [(0, size), (size - 1, size), (3, 300.min(size))] {
        let (_, v) = {
            let r = s
                .client
                .get(s.url(&format!("/api/proofs/inclusion?index={index}&size={at}")))
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        };
        let got: Vec<String> = shoulders_log::inclusion_proof(index, at, &tree)
            .unwrap()
            .iter()
            .map(|h| h.to_string())
            .collect();
        assert_eq!(json!(got), v["hashes"], "inclusion of {index} in {at}");
    }

    let beyond = format!("/log/tile/entries/001.p/{}", size - 256 + 1);
    for (path, status, code) in [
        (beyond.as_str(), StatusCode::NOT_FOUND, "E_TILE_NOT_FOUND"),
        ("/log/tile/0/002", StatusCode::NOT_FOUND, "E_TILE_NOT_FOUND"),
        ("/log/tile/1/000", StatusCode::NOT_FOUND, "E_TILE_NOT_FOUND"),
        ("/log/tile/0/01", StatusCode::BAD_REQUEST, "E_TILE_PATH"),
        (
            "/log/tile/0/x000/001",
            StatusCode::BAD_REQUEST,
            "E_TILE_PATH",
        ),
        ("/log/tile/8/000", StatusCode::BAD_REQUEST, "E_TILE_PATH"),
        (
            "/log/tile/entries/000.p/0",
            StatusCode::BAD_REQUEST,
            "E_TILE_PATH",
        ),
    ] {
        let (got, _, _, body) = get(&s, path).await;
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (got, v["error"]["code"].as_str().unwrap()),
            (status, code),
            "{path}"
        );
    }

    let (_, _, _, doc) = get(&s, "/openapi.json").await;
    let doc: Value = serde_json::from_slice(&doc).unwrap();
    for path in ["/log/checkpoint", "/log/tile/{path}"] {
        assert!(doc["paths"][path]["get"].is_object(), "{path} undocumented");
    }
    assert!(doc["paths"]["/log/tile/{path}"]["get"]["responses"]["404"].is_object());
    s.stop().await;
}
