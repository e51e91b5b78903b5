//! The writer's index follow loop (`serve --index-follow on|off`, issue 16): a document
//! contributed over HTTP is attributable within seconds, without `index build`, and only
//! with the loop on.

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use shoulders_record::Kind;
use shoulders_server::Metering;

const NEW_DOC: &str = "Two roads diverged in a yellow wood,\nAnd sorry I could not travel both\nAnd be one traveler, long I stood\n";
const QUOTE: &str =
    "as the poem says: two roads diverged in a yellow wood, and sorry I could not travel both";

/// Contribute [`NEW_DOC`] over HTTP; returns its log index.
async fn contribute(s: &Running, f: &Fixture) -> u64 {
    let body = json!({"dataset_id": "alice/verse",
        "content_hash": shoulders_ledger::content_ref(NEW_DOC.as_bytes()),
        "byte_size": NEW_DOC.len(), "token_count": NEW_DOC.len()});
    let rec = record(&f.alice, "new-1", f.ts_ms, Kind::DataContribute, body);
    let resp = s
        .client
        .post(s.url("/api/contributions"))
        .json(&json!({"record": String::from_utf8(rec).unwrap(), "content": NEW_DOC}))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{v}");
    v["index"].as_u64().unwrap()
}

/// The contributions credited for [`QUOTE`].
async fn credited(s: &Running, token: &str) -> Value {
    let resp = s
        .client
        .post(s.url("/api/attribute"))
        .bearer_auth(token)
        .json(&json!({"dataset_id": "alice/verse", "text": QUOTE}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.unwrap();
    v["shares"]["contributions_ppm"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contribution_is_attributable_within_seconds() {
    let f = fixture();
    let token = issue_key(&f.data_dir(), "bob");
    let mut c = config(&f, Metering::Off);
    c.attribute_rate_limit = None;
    let s = start(c).await;
    assert_eq!(credited(&s, &token).await, json!({}));
    let started = Instant::now();
    let index = contribute(&s, &f).await;
    loop {
        let c = credited(&s, &token).await;
        if c == json!({ index.to_string(): 1_000_000 }) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not credited after 5 s: {c}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The index now reaches past the contribution: one new segment beside the one `index
    // build` wrote, or already the two merged into one (the merge policy merges a small
    // fixture's segments at once, in the background, so either may be seen here).
    let ix = shoulders_attrib::dataset::DatasetIndex::open(&f.data_dir(), "alice/verse").unwrap();
    let state = ix.state();
    assert!(state.ledger_size > index, "{state:?}");
    assert!((1..=2).contains(&state.segments.len()), "{state:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_follow_off_leaves_the_index_alone() {
    let f = fixture();
    let token = issue_key(&f.data_dir(), "bob");
    let mut c = config(&f, Metering::Off);
    c.attribute_rate_limit = None;
    c.index_follow = false;
    let s = start(c).await;
    contribute(&s, &f).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(credited(&s, &token).await, json!({}));
    s.stop().await;
}
