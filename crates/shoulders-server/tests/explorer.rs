//! The web explorer's pages and the money routes, on a small ledger with an operator, a priced
//! model, a deposit and metered calls, and with markup in every free-text field (the pages
//! must escape it).

mod common;

use std::path::Path;

use common::{record, start, Running};
use rand::rngs::OsRng;
use reqwest::StatusCode;
use serde_json::{json, Value};
use shoulders_ledger::{init_with, ContentStore, DataDir, Ledger, OperatorInit};
use shoulders_record::{ActorKey, Kind};
use shoulders_server::{Metering, ServerConfig};

const TS: u64 = 1_767_225_600_000;
const CALLS: u64 = 6;
const EVIL: &str = "<script>alert(\"x\")</script><img src=x onerror=alert(1)>";

/// A fake `sha256:` reference: one hex digit repeated.
fn sha(digit: char) -> String {
    format!("sha256:{}", digit.to_string().repeat(64))
}

/// alice (contributor, name full of markup) contributes two documents to her dataset; her model
/// is priced; bob pays for `CALLS` calls, one a minute, each crediting the first document.
fn ledger(dir: &Path) -> (u64, u64) {
    let data = DataDir::new(dir);
    init_with(
        &data,
        "test.shoulders.local/log",
        Some(&OperatorInit {
            handle: "operator".into(),
            name: "Operator".into(),
            protocol_fee_bps: 250,
            ts_ms: TS,
        }),
        &mut OsRng,
    )
    .unwrap();
    let operator =
        ActorKey::from_file_text(&std::fs::read_to_string(data.operator_key()).unwrap()).unwrap();
    let alice = ActorKey::generate(&mut OsRng);
    let bob = ActorKey::generate(&mut OsRng);
    let ledger = Ledger::open(&data).unwrap();
    let mut n = 0;
    let mut submit = |key: &ActorKey, ts: u64, kind: Kind, body: Value| {
        n += 1;
        ledger
            .submit(record(key, &format!("r{n}"), ts, kind, body))
            .unwrap()
            .index
    };
    submit(
        &alice,
        TS,
        Kind::ActorRegister,
        json!({"handle": "alice", "name": EVIL, "payout_address": "iban:X"}),
    );
    submit(
        &bob,
        TS,
        Kind::ActorRegister,
        json!({"handle": "bob", "name": "Bob"}),
    );
    let (name, spdx, terms) = shoulders_license::preset("apache-2.0").unwrap();
    let mut terms = serde_json::to_value(terms).unwrap();
    terms["price_per_call_micros"] = json!("1000");
    terms["data_share_bps"] = json!(5000);
    terms["royalty_floor_per_call_micros"] = json!("100");
    // Owed by alice/base's direct children only (bob/tuned is one).
    terms["royalty_reach"] = json!("direct_parent");
    submit(
        &alice,
        TS,
        Kind::LicenseDefine,
        json!({"license_id": "alice/priced", "name": name, "spdx_id": spdx, "terms": terms}),
    );
    submit(
        &alice,
        TS,
        Kind::DatasetCreate,
        json!({"dataset_id": "alice/verse", "name": EVIL, "access": "open"}),
    );
    let store = ContentStore::new(&data);
    let mut contributions = Vec::new();
    for (i, doc) in ["first document text", "second document text"]
        .iter()
        .enumerate()
    {
        let hash = store.put(doc.as_bytes()).unwrap();
        contributions.push(submit(
            &alice,
            TS,
            Kind::DataContribute,
            json!({
            "dataset_id": "alice/verse", "content_hash": hash, "byte_size": doc.len(),
            "token_count": doc.len(), "title": format!("{EVIL} {i}")}),
        ));
    }
    submit(
        &alice,
        TS,
        Kind::ModelRegister,
        json!({"model_id": "alice/base", "name": "Base",
        "description": EVIL, "datasets": ["alice/verse"], "license_id": "alice/priced",
        "artifacts": [{"path": "model.safetensors", "size_bytes": 1, "sha256": sha('0'), "tensors": [
            {"name": "model.layers.0.mlp.weight", "dtype": "F16", "shape": [4, 4], "sha256": sha('1')},
            {"name": EVIL, "dtype": "F16", "shape": [2], "sha256": sha('2')}]}]}),
    );
    // The fine-tune changes layer 0 (16 of the base's 18 parameters) and adds a tensor whose
    // name is markup, which the diff section must show as text.
    submit(
        &bob,
        TS,
        Kind::ModelRegister,
        json!({"model_id": "bob/tuned", "name": "Tuned",
        "parents": [{"model_id": "alice/base", "relation": "finetune"}],
        "artifacts": [{"path": "model.safetensors", "size_bytes": 1, "sha256": sha('3'), "tensors": [
            {"name": "model.layers.0.mlp.weight", "dtype": "F16", "shape": [4, 4], "sha256": sha('3')},
            {"name": EVIL, "dtype": "F16", "shape": [2], "sha256": sha('2')},
            {"name": format!("{EVIL}.new"), "dtype": "F32", "shape": [3], "sha256": sha('4')}]}]}),
    );
    submit(
        &operator,
        TS,
        Kind::FundsDeposit,
        json!({"account": "bob", "currency": "USD", "amount_micros": "10000000"}),
    );
    for i in 0..CALLS {
        submit(
            &operator,
            TS + 60_000 * (i + 1),
            Kind::UsageReceipt,
            json!({
            "usage_id": format!("call-{i}"), "model_id": "alice/base", "payer": "bob",
            "use_category": "commercial", "input_tokens": 3, "output_tokens": 5,
            "output_hash": format!("sha256:{}", "0".repeat(64)),
            "attribution": [{"dataset_id": "alice/verse", "contribution": contributions[0], "ppm": 1_000_000}]}),
        );
    }
    (ledger.size(), contributions[0])
}

async fn serve(dir: &Path) -> Running {
    let mut c = ServerConfig::new(dir);
    c.metering = Metering::Off;
    start(c).await
}

async fn get(s: &Running, path: &str) -> (StatusCode, String, String) {
    let resp = s.client.get(s.url(path)).send().await.unwrap();
    let status = resp.status();
    if resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap().starts_with("text/html"))
    {
        let csp = resp.headers().get("content-security-policy").unwrap();
        assert!(
            csp.to_str().unwrap().contains("script-src 'self'"),
            "{path}"
        );
    }
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, resp.text().await.unwrap())
}

async fn json_get(s: &Running, path: &str) -> (StatusCode, Value) {
    let (status, _, text) = get(s, path).await;
    (status, serde_json::from_str(&text).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_renders_and_escapes_ledger_text() {
    let tmp = tempfile::tempdir().unwrap();
    let (size, _) = ledger(tmp.path());
    let s = serve(tmp.path()).await;
    let mut pages = vec![
        "/".to_string(),
        "/models/alice/base".into(),
        "/models/bob/tuned".into(),
        "/datasets/alice/verse".into(),
        "/actors/alice".into(),
        "/actors/bob".into(),
    ];
    pages.extend((0..size).map(|i| format!("/records/{i}")));
    for path in &pages {
        let (status, ct, html) = get(&s, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {html}");
        assert!(ct.starts_with("text/html"), "{path}: {ct}");
        // The one script on any page is ours; the markup in names, titles and descriptions
        // arrives as text.
        assert_eq!(html.matches("<script").count(), 1, "{path}");
        assert!(html.contains("<script src=\"/static/explorer.js\" defer></script>"));
        assert!(!html.contains("<img"), "{path}");
        assert!(!html.contains("onerror=alert(1)>"), "{path}");
    }
    let (_, _, home) = get(&s, "/").await;
    assert!(home.contains(&format!("data-testid=\"tree-size\">{size}<")));
    assert!(home.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"));
    let (_, _, model) = get(&s, "/models/alice/base").await;
    assert!(
        model.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{model}"
    );
    assert!(
        model.contains("data-model=\"bob/tuned\""),
        "the tree draws the fine-tune"
    );
    assert!(model.contains("href=\"/models/bob/tuned\""));
    assert!(model.contains(">finetune</text>"));
    assert!(
        model.contains("0.001000 USD per call"),
        "licence card shows the price"
    );
    assert!(model.contains(&format!("{CALLS} calls, charged 0.006000 USD")));
    // The edge carries what the fine-tune changed.
    assert!(
        model.contains(
            "class=\"summary\">88.9% of parameters changed (layer 0), 1 tensor added</text>"
        ),
        "{model}"
    );
    // bob's unpriced fine-tune owes alice's floor on every call.
    let (_, _, tuned) = get(&s, "/models/bob/tuned").await;
    assert!(tuned.contains("data-testid=\"diff\""), "{tuned}");
    assert!(
        tuned.contains("data-ppm=\"888888\">88.9%</strong>"),
        "{tuned}"
    );
    assert!(
        tuned.contains("<code>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;.new</code>"),
        "the added tensor is listed as text: {tuned}"
    );
    assert!(
        !model.contains("data-testid=\"diff\""),
        "a model without parents has no diff section"
    );
    assert!(
        tuned.contains(
            "every call is charged at least the royalty floors upstream: 0.000100 USD per call"
        ),
        "{tuned}"
    );
    assert!(
        tuned.contains(
            "at least 0.000100 USD per call + 0.000000 USD per 1,000 output tokens on every use to"
        ),
        "{tuned}"
    );
    assert!(
        tuned.contains(
            "licence alice/priced; direct parent only: models built on this one do not owe it)"
        ),
        "the licence card shows the royalty's reach: {tuned}"
    );
    let (status, _, _) = get(&s, "/static/explorer.css").await;
    assert_eq!(status, StatusCode::OK);
    let (status, ct, js) = get(&s, "/static/explorer.js").await;
    assert_eq!(status, StatusCode::OK);
    assert!(ct.starts_with("text/javascript"));
    assert!(js.contains("crypto.subtle.digest(\"SHA-256\""));
    s.stop().await;
}

/// A ledger whose model records a training run (its configuration full of markup, in the
/// content store) crediting alice, plus a run whose configuration was deleted after admission
/// and a model with no run.
fn training_ledger(dir: &Path) {
    let data = DataDir::new(dir);
    init_with(&data, "test.shoulders.local/log", None, &mut OsRng).unwrap();
    let alice = ActorKey::generate(&mut OsRng);
    let bob = ActorKey::generate(&mut OsRng);
    let carol = ActorKey::generate(&mut OsRng);
    let ledger = Ledger::open(&data).unwrap();
    let mut n = 0;
    let mut submit = |key: &ActorKey, kind: Kind, body: Value| {
        n += 1;
        ledger
            .submit(record(key, &format!("t{n}"), TS, kind, body))
            .unwrap();
    };
    submit(
        &alice,
        Kind::ActorRegister,
        json!({"handle": "alice", "name": EVIL}),
    );
    submit(
        &bob,
        Kind::ActorRegister,
        json!({"handle": "bob", "name": "Bob"}),
    );
    submit(
        &carol,
        Kind::ActorRegister,
        json!({"handle": "carol", "name": "Carol"}),
    );
    let config = json!({"learning_rate": 0.0002, "epochs": 3, "note": EVIL,
                        "optimizer": {"name": "adamw", "betas": [0.9, 0.95]}});
    let store = ContentStore::new(&data);
    let hash = store
        .put_training_config(&serde_json::to_vec(&config).unwrap())
        .unwrap();
    submit(
        &bob,
        Kind::ModelRegister,
        json!({"model_id": "bob/trained", "name": "Trained",
               "training": {"config_hash": hash,
                            "code": {"repository": "https://git.example/bob/train?a=1&b=\"x\"<y>", "commit": "a".repeat(40)},
                            "framework": {"name": "PyTorch", "version": "2.4"},
                            "credits": [{"actor": "carol", "role": "framework_author"},
                                        {"actor": "alice", "role": "evaluator"}],
                            "compute": {"hardware": "1x A100", "accelerator_hours": 6, "energy_wh": 2400, "region": EVIL}}}),
    );
    let gone = store.put_training_config(b"{\"epochs\": 1}").unwrap();
    submit(
        &bob,
        Kind::ModelRegister,
        json!({"model_id": "bob/lost", "name": "Lost",
               "training": {"config_hash": gone, "credits": [{"actor": "alice", "role": "data_engineer"}]}}),
    );
    std::fs::remove_file(store.root().join(&gone["sha256:".len()..])).unwrap();
    submit(
        &bob,
        Kind::ModelRegister,
        json!({"model_id": "bob/plain", "name": "Plain"}),
    );
    submit(
        &bob,
        Kind::ModelRegister,
        json!({"model_id": "bob/mirrored", "name": "Mirrored",
               "source": {"hub": "huggingface", "repo": "acme/tiny-1.5b", "revision": "b".repeat(40)}}),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_source_is_shown_on_the_model_page_and_in_the_api() {
    let tmp = tempfile::tempdir().unwrap();
    training_ledger(tmp.path());
    let s = serve(tmp.path()).await;
    let commit = "b".repeat(40);
    let (status, _, html) = get(&s, "/models/bob/mirrored").await;
    assert_eq!(status, StatusCode::OK);
    let expected = format!(
        "<p data-testid=\"model-source\">Files as downloaded from Hugging Face repository <a href=\"https://huggingface.co/acme/tiny-1.5b/tree/{commit}\" rel=\"nofollow noopener noreferrer\">acme/tiny-1.5b</a> at commit <code>{commit}</code>.</p>"
    );
    assert!(html.contains(&expected), "{html}");
    let (_, model) = json_get(&s, "/api/models/bob/mirrored").await;
    assert_eq!(
        model["source"],
        json!({"hub": "huggingface", "repo": "acme/tiny-1.5b", "revision": commit})
    );
    // No source: no line, and no key.
    let (_, _, plain) = get(&s, "/models/bob/plain").await;
    assert!(!plain.contains("model-source"));
    let (_, model) = json_get(&s, "/api/models/bob/plain").await;
    assert!(model.get("source").is_none(), "{model}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_section_and_credits_are_shown_escaped() {
    let tmp = tempfile::tempdir().unwrap();
    training_ledger(tmp.path());
    let s = serve(tmp.path()).await;

    let (status, _, html) = get(&s, "/models/bob/trained").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(html.matches("<script").count(), 1, "only ours: {html}");
    assert!(!html.contains("<img"));
    let section = &html[html
        .find("data-testid=\"training\"")
        .expect("a training section")..];
    let section = &section[..section.find("</section>").unwrap()];
    assert!(section.contains("How it was trained"));
    assert!(section.contains("data-testid=\"training-framework\">PyTorch 2.4<"));
    assert!(
        section.contains("href=\"https://git.example/bob/train?a=1&amp;b=&quot;x&quot;&lt;y&gt;\""),
        "{section}"
    );
    assert!(section.contains(&format!("at commit <code>{}</code>", "a".repeat(40))));
    assert!(section.contains("1x A100 · 6 accelerator hours · 2.4 kWh · region &lt;script&gt;"));
    assert!(section.contains("<a href=\"/actors/carol\">carol</a> — framework author"));
    assert!(section.contains("<a href=\"/actors/alice\">alice</a> — evaluator"));
    assert!(section.contains("recognition, not payment"));
    // The configuration as a key/value table: nested keys dotted, markup escaped.
    for (k, v) in [
        ("epochs", "3"),
        ("learning_rate", "0.0002"),
        ("optimizer.betas", "[0.9,0.95]"),
        ("optimizer.name", "adamw"),
    ] {
        assert!(
            section.contains(&format!("<td><code>{k}</code></td><td>{v}</td>")),
            "{k}: {section}"
        );
    }
    assert!(section.contains("<td><code>note</code></td><td>&lt;script&gt;alert(&quot;x&quot;)"));

    // The API returns the run and the whole configuration.
    let (status, v) = json_get(&s, "/api/models/bob/trained/training").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["training"]["framework"]["name"], "PyTorch");
    assert_eq!(v["training"]["credits"][1]["actor"], "alice");
    assert_eq!(v["config"]["optimizer"]["betas"], json!([0.9, 0.95]));
    assert!(v.get("config_error").is_none());
    let (_, model) = json_get(&s, "/api/models/bob/trained").await;
    assert_eq!(model["training"]["compute"]["energy_wh"], 2400);

    // A run whose configuration this node no longer holds: shown without it, and said so.
    let (_, _, lost) = get(&s, "/models/bob/lost").await;
    assert!(
        lost.contains("does not hold the configuration document"),
        "{lost}"
    );
    let (_, v) = json_get(&s, "/api/models/bob/lost/training").await;
    assert_eq!(v["config"], Value::Null);
    assert_eq!(v["config_error"]["code"], "E_CONTENT_MISSING");
    // No run: no section, and `training: null`.
    let (_, _, plain) = get(&s, "/models/bob/plain").await;
    assert!(!plain.contains("data-testid=\"training\""));
    let (_, v) = json_get(&s, "/api/models/bob/plain/training").await;
    assert_eq!((&v["training"], &v["config"]), (&Value::Null, &Value::Null));
    let (status, _) = json_get(&s, "/api/models/bob/none/training").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Actor pages: the models that credit them, with the roles.
    let (_, _, alice) = get(&s, "/actors/alice").await;
    let credits = &alice[alice
        .find("data-testid=\"credits\"")
        .expect("a credits section")..];
    assert!(credits.contains("2 training credits"), "{credits}");
    assert!(
        credits.contains("<a href=\"/models/bob/trained\">bob/trained</a></td><td>evaluator</td>")
    );
    assert!(
        credits.contains("<a href=\"/models/bob/lost\">bob/lost</a></td><td>data engineer</td>")
    );
    let (_, _, carol) = get(&s, "/actors/carol").await;
    assert!(carol.contains("1 training credit:"), "{carol}");
    let (_, _, bob) = get(&s, "/actors/bob").await;
    assert!(!bob.contains("data-testid=\"credits\""));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contributor_page_matches_the_statement() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, contribution) = ledger(tmp.path());
    let s = serve(tmp.path()).await;
    let (status, st) = json_get(&s, "/api/statements/alice").await;
    assert_eq!(status, StatusCode::OK);
    let earned: i128 = st["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["role"] == "data_share" || l["role"] == "owner_share")
        .map(|l| {
            l["amount_micros"]
                .as_str()
                .unwrap()
                .parse::<i128>()
                .unwrap()
        })
        .sum();
    assert!(earned > 0);
    let usd = |m: i128| format!("{}.{:06} USD", m / 1_000_000, m % 1_000_000);
    let (_, _, html) = get(&s, "/actors/alice").await;
    assert!(html.contains(&format!("total {}", usd(earned))), "{html}");
    assert!(
        html.contains(&format!("data-testid=\"outputs-count\">{CALLS} outputs")),
        "{html}"
    );
    assert!(html.contains(&format!("href=\"/records/{contribution}\"")));
    let balance = st["totals"][0]["balance_micros"].as_str().unwrap();
    let balance: i128 = balance.parse().unwrap();
    assert!(html.contains(&format!(
        "data-testid=\"balance\">{}</span>",
        usd(balance).trim_end_matches(" USD")
    )));
    // The receipt's record page shows how its charge was split.
    let receipt = st["lines"][0]["index"].as_u64().unwrap();
    let (_, _, html) = get(&s, &format!("/records/{receipt}")).await;
    assert!(html.contains("data-testid=\"record-kind\">usage.receipt<"));
    assert!(html.contains("How the charge was split"));
    assert!(html.contains(&format!("id=\"proof\" data-index=\"{receipt}\"")));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_pages_are_html_404s() {
    let tmp = tempfile::tempdir().unwrap();
    let (size, _) = ledger(tmp.path());
    let s = serve(tmp.path()).await;
    for path in [
        "/models/nobody/none".to_string(),
        "/datasets/nobody/none".into(),
        "/actors/nobody".into(),
        format!("/records/{size}"),
    ] {
        let (status, ct, html) = get(&s, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(ct.starts_with("text/html"));
        assert!(html.contains("data-testid=\"error\""));
    }
    let (status, _, html) = get(&s, "/records/not-a-number").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("bad address"));
    s.stop().await;
}

/// The log key the pages hand the browser (`data-log-vkey`, also shown as text) is the log's
/// verifier key, the one written to `log.pub` at init, and it verifies the served checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_carry_the_logs_verifier_key() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, contribution) = ledger(tmp.path());
    let vkey = std::fs::read_to_string(DataDir::new(tmp.path()).verifier_key()).unwrap();
    let vkey = vkey.trim();
    assert!(vkey.starts_with("test.shoulders.local/log+"), "{vkey}");
    let s = serve(tmp.path()).await;
    let attr = format!("data-log-vkey=\"{vkey}\"");
    let shown = format!("<code data-testid=\"log-vkey\">{vkey}</code>");
    for path in ["/".to_string(), format!("/records/{contribution}")] {
        let (status, _, html) = get(&s, &path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(html.matches("data-log-vkey=").count(), 1, "{path}");
        assert!(html.contains(&attr), "{path}: {html}");
        assert!(html.contains(&shown), "{path}");
        // Only the home page's box is checked on its own; a record page's is part of the proof.
        assert_eq!(
            html.contains("<div id=\"checkpoint-verify\""),
            path == "/",
            "{path}"
        );
    }
    let note = s
        .client
        .get(s.url("/api/checkpoint"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let view = shoulders_log::LogVerifier::new(vkey)
        .unwrap()
        .open(&note)
        .unwrap();
    assert_eq!(view.origin, "test.shoulders.local/log");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_and_statements_over_the_api() {
    let tmp = tempfile::tempdir().unwrap();
    ledger(tmp.path());
    let s = serve(tmp.path()).await;
    let (status, v) = json_get(&s, "/api/accounts").await;
    assert_eq!(status, StatusCode::OK);
    let amount = |v: &Value| v.as_str().unwrap().parse::<i128>().unwrap();
    let accounts = v["accounts"].as_array().unwrap();
    let held: i128 = accounts
        .iter()
        .filter(|a| a["account"] != "@external")
        .map(|a| amount(&a["balance_micros"]))
        .sum();
    assert_eq!(held, 10_000_000, "{v}");
    let bob = accounts.iter().find(|a| a["account"] == "bob").unwrap();
    assert_eq!(
        amount(&bob["balance_micros"]),
        10_000_000 - 1000 * CALLS as i128
    );
    assert_eq!(v["totals"][0]["conserved"], true);
    assert_eq!(amount(&v["totals"][0]["deposits_micros"]), 10_000_000);

    // Bob's statement: one deposit and CALLS charges; from/to pick calls by time.
    let (_, all) = json_get(&s, "/api/statements/bob").await;
    assert_eq!(all["holder"], "bob");
    let lines = all["lines"].as_array().unwrap();
    assert_eq!(lines.len() as u64, 1 + CALLS);
    let charges = lines.iter().filter(|l| l["role"] == "charge").count() as u64;
    assert_eq!(charges, CALLS);
    let from = TS + 60_000 * 2;
    let to = TS + 60_000 * 4;
    let (status, part) = json_get(&s, &format!("/api/statements/bob?from={from}&to={to}")).await;
    assert_eq!(status, StatusCode::OK);
    let part_lines = part["lines"].as_array().unwrap();
    assert_eq!(part_lines.len(), 2, "{part}");
    assert!(part_lines.iter().all(|l| {
        let ts = l["ts_ms"].as_u64().unwrap();
        ts >= from && ts < to
    }));
    assert_eq!(part["from_ms"], from);
    // Balance is the balance now, whatever the period.
    assert_eq!(
        part["totals"][0]["balance_micros"],
        all["totals"][0]["balance_micros"]
    );

    let (status, v) = json_get(&s, "/api/statements/nobody").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["lines"], json!([]));
    for bad in ["?from=5&to=1", "?from=x", "?to=-1"] {
        let (status, v) = json_get(&s, &format!("/api/statements/bob{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(v["error"]["code"], "E_QUERY_INVALID", "{bad}");
    }
    s.stop().await;
}

/// The home page lists at most `MAX_LISTED` of each kind and links to the next page by cursor;
/// following the links shows every actor exactly once; a forged cursor is a 400 page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explorer_lists_are_paged_by_cursor() {
    let tmp = tempfile::tempdir().unwrap();
    ledger(tmp.path());
    let extra = shoulders_server::explorer::MAX_LISTED + 7;
    {
        let ledger = Ledger::open(&DataDir::new(tmp.path())).unwrap();
        let batch: Vec<Vec<u8>> = (0..extra)
            .map(|i| {
                let key = ActorKey::generate(&mut OsRng);
                record(
                    &key,
                    "reg",
                    TS,
                    Kind::ActorRegister,
                    json!({"handle": format!("p{i:03}"), "name": "P"}),
                )
            })
            .collect();
        for r in ledger.submit_batch(batch) {
            r.unwrap();
        }
    }
    let s = serve(tmp.path()).await;
    let (_, total) = json_get(&s, "/api/actors?limit=1").await;
    let total = total["total"].as_u64().unwrap() as usize;
    assert!(total > shoulders_server::explorer::MAX_LISTED);
    let mut listed = 0;
    let mut path = "/".to_string();
    let mut pages = 0;
    loop {
        let (status, _, html) = get(&s, &path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let actors = html
            .split("<section id=\"actors\">")
            .nth(1)
            .unwrap()
            .split("</section>")
            .next()
            .unwrap()
            .to_string();
        listed += actors.matches("href=\"/actors/").count();
        pages += 1;
        match actors.split("data-testid=\"more-actors\" href=\"").nth(1) {
            Some(rest) => path = rest.split('"').next().unwrap().replace("&amp;", "&"),
            None => break,
        }
    }
    assert_eq!(listed, total, "every actor once, over {pages} pages");
    assert!(pages >= 2);
    let (status, _, html) = get(&s, "/?actors=x1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("E_CURSOR_INVALID"), "{html}");
    s.stop().await;
}
