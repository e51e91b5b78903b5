//! A small ledger with a verse dataset, its index and two models, served on an ephemeral port.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::rngs::OsRng;
use serde_json::{json, Value};
use shoulders_attrib::dataset::BuildDoc;
use shoulders_ledger::{init, ContentStore, DataDir, Ledger};
use shoulders_record::{sign_record, ActorKey, Body, Kind};
use shoulders_server::{AppState, Metering, ServerConfig};

pub const DOCS: [&str; 3] = [
    "Shall I compare thee to a summer's day?\nThou art more lovely and more temperate.\n",
    "The woods are lovely, dark and deep,\nBut I have promises to keep.\n",
    "Because I could not stop for Death,\nHe kindly stopped for me.\n",
];

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub alice: ActorKey,
    pub bob: ActorKey,
    pub ts_ms: u64,
}

impl Fixture {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("ledger")
    }
}

pub fn record(key: &ActorKey, id: &str, ts_ms: u64, kind: Kind, body: Value) -> Vec<u8> {
    sign_record(
        key,
        "test.shoulders.local/log",
        id,
        ts_ms,
        Body::from_value(kind, body).expect("body"),
    )
    .expect("sign")
    .bytes()
    .to_vec()
}

/// Build the ledger: alice (dataset owner and contributor) and bob (payer), a verse dataset
/// with three poems and its index, `alice/verse-base` trained on it and `bob/tuned` fine-tuned
/// from it.
pub fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path().join("ledger"));
    init(&data, "test.shoulders.local/log", &mut OsRng).unwrap();
    let alice = ActorKey::generate(&mut OsRng);
    let bob = ActorKey::generate(&mut OsRng);
    // Now: the server refuses records signed outside its admission window.
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let ledger = Ledger::open(&data).unwrap();
    let submit = |key: &ActorKey, id: &str, kind: Kind, body: Value| {
        ledger
            .submit(record(key, id, ts, kind, body))
            .unwrap()
            .index
    };
    submit(
        &alice,
        "a1",
        Kind::ActorRegister,
        json!({"handle": "alice", "name": "Alice"}),
    );
    submit(
        &bob,
        "b1",
        Kind::ActorRegister,
        json!({"handle": "bob", "name": "Bob"}),
    );
    submit(
        &alice,
        "ds",
        Kind::DatasetCreate,
        json!({"dataset_id": "alice/verse", "name": "Verse", "access": "open"}),
    );
    let store = ContentStore::new(&data);
    let mut contributions = Vec::new();
    for (i, doc) in DOCS.iter().enumerate() {
        let hash = store.put(doc.as_bytes()).unwrap();
        let index = submit(
            &alice,
            &format!("c{i}"),
            Kind::DataContribute,
            json!({"dataset_id": "alice/verse", "content_hash": hash,
                   "byte_size": doc.len(), "token_count": doc.len()}),
        );
        contributions.push(index);
    }
    submit(
        &alice,
        "m1",
        Kind::ModelRegister,
        json!({"model_id": "alice/verse-base", "name": "Verse base", "datasets": ["alice/verse"]}),
    );
    submit(
        &bob,
        "m2",
        Kind::ModelRegister,
        json!({"model_id": "bob/tuned", "name": "Tuned",
               "parents": [{"model_id": "alice/verse-base", "relation": "finetune"}]}),
    );
    let size = ledger.size();
    drop(ledger);
    // The index, as `shoulders index build` writes it.
    shoulders_attrib::dataset::build(
        data.root(),
        "alice/verse",
        size,
        contributions.iter().zip(DOCS).map(|(&c, d)| {
            Ok(BuildDoc {
                contribution: c,
                contributor: "alice".into(),
                bytes: d.as_bytes().to_vec(),
            })
        }),
        &mut |_| {},
    )
    .unwrap();
    Fixture {
        dir,
        alice,
        bob,
        ts_ms: ts,
    }
}

/// Write `D/operator.key` and register its actor as `operator` (what `shoulders init` will do
/// once metering lands).
pub fn write_operator_key(data_dir: &Path) -> ActorKey {
    let key = ActorKey::generate(&mut OsRng);
    let ledger = Ledger::open(&DataDir::new(data_dir)).unwrap();
    ledger
        .submit(record(
            &key,
            "operator",
            1_767_225_600_000,
            Kind::ActorRegister,
            json!({"handle": "operator", "name": "Ledger operator"}),
        ))
        .unwrap();
    drop(ledger);
    std::fs::write(
        data_dir.join(shoulders_server::OPERATOR_KEY_FILE),
        key.to_file_text(),
    )
    .unwrap();
    key
}

pub struct Running {
    pub base: String,
    pub client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Graceful shutdown: returns once in-flight requests are answered and the ledger is closed.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }

    pub async fn size(&self) -> u64 {
        let note = self
            .client
            .get(self.url("/api/checkpoint"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        note.lines().nth(1).unwrap().parse().unwrap()
    }
}

pub async fn start(config: ServerConfig) -> Running {
    let state: Arc<AppState> = AppState::open(config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(shoulders_server::serve(listener, state, async move {
        let _ = rx.await;
    }));
    Running {
        base,
        client: reqwest::Client::new(),
        stop: Some(tx),
        task: Some(task),
    }
}

pub fn config(f: &Fixture, metering: Metering) -> ServerConfig {
    let mut c = ServerConfig::new(f.data_dir());
    c.metering = metering;
    c.max_body_bytes = 64 * 1024;
    c
}

/// Issue an unlimited gateway API key for `actor` in the ledger's store (what
/// `shoulders apikey new` does); returns the token.
pub fn issue_key(data_dir: &Path, actor: &str) -> String {
    issue_key_with(
        data_dir,
        actor,
        &shoulders_server::apikeys::KeyLimits::default(),
    )
    .0
}

/// Issue a gateway API key for `actor` with `limits`; returns the token and the key.
pub fn issue_key_with(
    data_dir: &Path,
    actor: &str,
    limits: &shoulders_server::apikeys::KeyLimits,
) -> (String, shoulders_server::apikeys::ApiKey) {
    let mut store = shoulders_server::apikeys::open_store(data_dir, None, false).unwrap();
    shoulders_server::apikeys::issue(&mut *store, actor, limits, 1, &mut OsRng).unwrap()
}

/// Limits of a key allowed to spend `amount_micros` USD per UTC day.
pub fn day_budget(amount_micros: u128) -> shoulders_server::apikeys::KeyLimits {
    shoulders_server::apikeys::KeyLimits {
        budget: Some(shoulders_server::apikeys::Budget {
            amount_micros,
            currency: "USD".into(),
            period: shoulders_server::apikeys::BudgetPeriod::Day,
        }),
        ..Default::default()
    }
}

/// What the key `key_id` has spent in the UTC day holding `now_ms`, as the store records it.
pub fn key_spent(data_dir: &Path, key_id: &str, now_ms: u64) -> u128 {
    let store = shoulders_server::apikeys::open_store(data_dir, None, false).unwrap();
    let (day_start_ms, _) = shoulders_server::apikeys::BudgetPeriod::Day.bounds_ms(now_ms);
    store.spent(key_id, day_start_ms).unwrap()
}

/// After the server is stopped: the exported ledger verifies from scratch (signatures, fold,
/// Merkle root) and every currency's books are conserved. Returns bob's verified balance.
pub fn verify_clean(f: &Fixture) -> i128 {
    let reader =
        shoulders_ledger::Reader::open(&DataDir::new(f.data_dir())).expect("the ledger opens");
    let mut export = Vec::new();
    reader.export(reader.size(), &mut export).unwrap();
    let (_, state) = shoulders_ledger::verify_export(&export, reader.verifier_key())
        .unwrap_or_else(|e| panic!("verify failed: {e:?}"));
    for t in state.totals() {
        assert!(t.conserved, "{t:?}");
    }
    state.balance("bob", "USD")
}

/// Start the server and also return its state (tests pin the API keys' clock through it).
pub async fn start_with_state(config: ServerConfig) -> (Running, Arc<AppState>) {
    let state: Arc<AppState> = AppState::open(config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(shoulders_server::serve(
        listener,
        Arc::clone(&state),
        async move {
            let _ = rx.await;
        },
    ));
    (
        Running {
            base,
            client: reqwest::Client::new(),
            stop: Some(tx),
            task: Some(task),
        },
        state,
    )
}

/// A priced model for the gateway tests, forwarded to `upstream` (or answered by the embedded
/// model over the verse index when `None`).
pub struct Metered<'a> {
    pub model: &'a str,
    pub license_id: &'a str,
    pub price_per_call_micros: u128,
    pub price_per_1k_output_tokens_micros: u128,
    /// Uses the licence forbids.
    pub forbidden_uses: &'a [&'a str],
    /// Deposited for bob (nothing when 0).
    pub deposit_micros: u128,
    pub upstream: Option<&'a str>,
}

impl Metered<'_> {
    /// [`Metered::ledger`] and an unlimited API key paying as bob.
    pub fn build(&self) -> (Fixture, ServerConfig, String) {
        let (f, c) = self.ledger();
        let token = issue_key(&f.data_dir(), "bob");
        (f, c, token)
    }

    /// The fixture plus an operator (1% fee), the model under its own apache-2.0-based licence
    /// at these prices and bob's deposit; metering on, no API key issued.
    pub fn ledger(&self) -> (Fixture, ServerConfig) {
        let f = fixture();
        let operator = write_operator_key(&f.data_dir());
        let ledger = Ledger::open(&DataDir::new(f.data_dir())).unwrap();
        let submit = |key, id: &str, kind, body| {
            ledger.submit(record(key, id, f.ts_ms, kind, body)).unwrap()
        };
        submit(
            &operator,
            "config",
            Kind::LedgerConfig,
            json!({"operator": "operator", "protocol_fee_bps": 100}),
        );
        let (name, spdx, terms) = shoulders_license::preset("apache-2.0").unwrap();
        let mut terms = serde_json::to_value(terms).unwrap();
        terms["price_per_call_micros"] = json!(self.price_per_call_micros.to_string());
        terms["price_per_1k_output_tokens_micros"] =
            json!(self.price_per_1k_output_tokens_micros.to_string());
        if !self.forbidden_uses.is_empty() {
            terms["forbidden_uses"] = json!(self.forbidden_uses);
        }
        submit(
            &f.alice,
            "lic",
            Kind::LicenseDefine,
            json!({"license_id": self.license_id, "name": name, "spdx_id": spdx, "terms": terms}),
        );
        submit(
            &f.alice,
            "m-metered",
            Kind::ModelRegister,
            json!({"model_id": self.model, "name": format!("{}, metered", self.model),
                   "datasets": ["alice/verse"], "license_id": self.license_id}),
        );
        if self.deposit_micros > 0 {
            submit(
                &operator,
                "dep",
                Kind::FundsDeposit,
                json!({"account": "bob", "currency": "USD",
                       "amount_micros": self.deposit_micros.to_string()}),
            );
        }
        drop(ledger);
        let mut c = config(&f, Metering::On);
        if let Some(upstream) = self.upstream {
            c.upstreams.insert(self.model.into(), upstream.to_string());
        }
        (f, c)
    }
}
