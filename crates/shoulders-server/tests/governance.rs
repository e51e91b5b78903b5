//! Governance over HTTP: a dispute opened and ruled through `POST /api/records`, read back from
//! `/api/disputes`, shown by the explorer, and a takedown respected by the very next
//! `POST /api/attribute` (no index rebuild).

mod common;

use common::{config, fixture, issue_key, record, start, write_operator_key};
use serde_json::{json, Value};
use shoulders_ledger::{DataDir, Ledger};
use shoulders_record::Kind;
use shoulders_server::Metering;

/// The fixture's contributions are records 3, 4 and 5 (DOCS in order).
const FIRST_POEM: u64 = 3;

async fn post(s: &common::Running, bytes: Vec<u8>) -> (u16, Value) {
    let r = s
        .client
        .post(s.url("/api/records"))
        .body(bytes)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn get(s: &common::Running, path: &str) -> Value {
    s.client
        .get(s.url(path))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn page(s: &common::Running, path: &str) -> String {
    let r = s.client.get(s.url(path)).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.text().await.unwrap()
}

#[tokio::test]
async fn a_takedown_applies_to_the_next_attribution() {
    let f = fixture();
    let op = write_operator_key(&f.data_dir());
    let ledger = Ledger::open(&DataDir::new(f.data_dir())).unwrap();
    ledger
        .submit(record(
            &op,
            "config",
            f.ts_ms,
            Kind::LedgerConfig,
            json!({"operator": "operator", "protocol_fee_bps": 0}),
        ))
        .unwrap();
    drop(ledger);
    let token = issue_key(&f.data_dir(), "bob");
    let s = start(config(&f, Metering::Off)).await;
    let attribute = |s: &common::Running| {
        let req = s
            .client
            .post(s.url("/api/attribute"))
            .bearer_auth(&token)
            .json(&json!({"dataset_id": "alice/verse", "text": common::DOCS[0]}));
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let before = attribute(&s).await;
    assert!(
        before["shares"]["contributions_ppm"]
            .get(FIRST_POEM.to_string())
            .is_some(),
        "{before}"
    );

    // bob disputes alice's first poem (no original: a takedown request).
    let (status, opened) = post(
        &s,
        record(
            &f.bob,
            "dispute",
            f.ts_ms,
            Kind::DisputeOpen,
            json!({"contribution": FIRST_POEM, "evidence": [format!("sha256:{}", "ab".repeat(32))],
                   "statement": "this poem is not alice's to contribute"}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{opened}");
    let id = opened["index"].as_u64().unwrap();
    let list = get(&s, "/api/disputes").await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["id"], id);
    let one = get(&s, &format!("/api/disputes/{id}")).await;
    assert_eq!(one["status"], "open");
    assert_eq!(one["escrow_account"], format!("@escrow/{id}"));
    let c = get(&s, &format!("/api/contributions/{FIRST_POEM}")).await;
    assert_eq!(c["open_dispute"], id);
    assert!(page(&s, "/datasets/alice/verse").await.contains("disputed"));
    assert!(page(&s, &format!("/disputes/{id}"))
        .await
        .contains("this poem is not alice"));

    // Only the operator rules; alice's own ruling is refused with its code.
    let (status, refused) = post(
        &s,
        record(
            &f.alice,
            "rule-a",
            f.ts_ms,
            Kind::DisputeRule,
            json!({"dispute": id, "verdict": "dismissed", "reason": "mine"}),
        ),
    )
    .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (422, Some("E_NOT_ARBITER"))
    );
    let (status, ruled) = post(
        &s,
        record(
            &op,
            "rule",
            f.ts_ms,
            Kind::DisputeRule,
            json!({"dispute": id, "verdict": "upheld", "reason": "the claimant showed the source"}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{ruled}");
    assert_eq!(
        get(&s, &format!("/api/disputes/{id}")).await["status"],
        "upheld"
    );
    let c = get(&s, &format!("/api/contributions/{FIRST_POEM}")).await;
    assert_eq!(c["ruled_against"]["dispute"], id);
    assert!(page(&s, &format!("/disputes/{id}"))
        .await
        .contains("upheld"));
    assert!(page(&s, "/").await.contains("Disputes"));

    // The next attribution skips the taken-down poem, with no rebuild, and says so.
    let after = attribute(&s).await;
    assert!(
        after["shares"]["contributions_ppm"]
            .get(FIRST_POEM.to_string())
            .is_none(),
        "{after}"
    );
    assert_eq!(after["excluded"], json!([FIRST_POEM]), "{after}");
    s.stop().await;
}

#[tokio::test]
async fn attribution_reports_reserved_content() {
    let f = fixture();
    let data = DataDir::new(f.data_dir());
    let ledger = Ledger::open(&data).unwrap();
    let text = "a reserved note: nobody may train a model on these words of bob's";
    let hash = shoulders_ledger::ContentStore::new(&data)
        .put(text.as_bytes())
        .unwrap();
    let reserved = ledger
        .submit(record(
            &f.bob,
            "reserved",
            f.ts_ms,
            Kind::DataContribute,
            json!({"dataset_id": "alice/verse", "content_hash": hash, "byte_size": text.len(),
                   "token_count": text.len(), "tdm_reservation": true}),
        ))
        .unwrap()
        .index;
    let size = ledger.size();
    drop(ledger);
    // Rebuild the index with the reserved document (the fixture's poems are records 3..=5).
    let mut docs: Vec<(u64, &str, &str)> = common::DOCS
        .iter()
        .enumerate()
        .map(|(i, d)| (FIRST_POEM + i as u64, "alice", *d))
        .collect();
    docs.push((reserved, "bob", text));
    shoulders_attrib::dataset::build(
        data.root(),
        "alice/verse",
        size,
        docs.into_iter().map(|(contribution, who, d)| {
            Ok(shoulders_attrib::dataset::BuildDoc {
                contribution,
                contributor: who.into(),
                bytes: d.as_bytes().to_vec(),
            })
        }),
        &mut |_| {},
    )
    .unwrap();
    let token = issue_key(&f.data_dir(), "bob");
    let s = start(config(&f, Metering::Off)).await;
    let report: Value = s
        .client
        .post(s.url("/api/attribute"))
        .bearer_auth(&token)
        .json(&json!({"dataset_id": "alice/verse", "text": text}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Still credited, and flagged: a model trained on it would be breaking the reservation.
    assert!(
        report["shares"]["contributions_ppm"]
            .get(reserved.to_string())
            .is_some(),
        "{report}"
    );
    assert_eq!(report["tdm_reserved"], json!([reserved]), "{report}");
    s.stop().await;
}
