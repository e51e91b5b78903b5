//! Shared by the `settle` and `store` benchmarks: a world with a royalty-bearing base model, a
//! fine-tune, two datasets of contributions and a funded payer, and signed usage receipts on it.

use serde_json::{json, Value};
use shoulders_record::{sign_record, ActorKey, Body, Kind, SignedRecord};

pub const CONTRIBUTORS: [&str; 5] = ["c0", "c1", "c2", "c3", "c4"];

/// `SHOULDERS_BENCH_SCALE` (default 1).
pub fn scale() -> f64 {
    std::env::var("SHOULDERS_BENCH_SCALE")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v > 0.0)
        .unwrap_or(1.0)
}

pub struct World {
    pub keys: Vec<(String, ActorKey)>,
    pub seq: u64,
}

impl World {
    pub fn key(&mut self, who: &str) -> &ActorKey {
        if !self.keys.iter().any(|(h, _)| h == who) {
            let n = self.keys.len() as u8;
            self.keys
                .push((who.to_string(), ActorKey::from_seed([n + 7; 32])));
        }
        &self
            .keys
            .iter()
            .find(|(h, _)| h == who)
            .expect("just added")
            .1
    }

    pub fn sign(&mut self, who: &str, kind: Kind, body: Value) -> SignedRecord {
        self.seq += 1;
        let seq = self.seq;
        let body = Body::from_value(kind, body).expect("valid bench body");
        sign_record(
            self.key(who),
            crate::BENCH_LOG,
            &format!("b-{seq}"),
            1_800_000_000_000 + seq,
            body,
        )
        .expect("sign")
    }
}

fn license(id: &str, royalty_bps: u32, data_share_bps: u32) -> Value {
    json!({"license_id": id, "name": id, "terms": {
        "commercial_use": true, "derivatives": "allowed", "attribution_required": true,
        "share_alike": false, "royalty_bps": royalty_bps, "data_share_bps": data_share_bps,
        "currency": "USD", "price_per_call_micros": "1000", "price_per_1k_output_tokens_micros": "20000",
        "registration_fee_micros": "0"}})
}

/// Contributions made by [`setup`], in order.
pub const DOCUMENTS: usize = 16;

/// The text of the `n`th contribution [`setup`] signs.
pub fn document(n: usize) -> String {
    format!(
        "Benchmark document {n}: {}\n",
        "words of a contributed text ".repeat(30 + n)
    )
}

/// Content first: store every document [`setup`]'s contributions name before submitting them.
pub fn store_documents(ledger: &shoulders_ledger::Ledger) {
    for n in 0..DOCUMENTS {
        ledger
            .content()
            .put(document(n).as_bytes())
            .expect("store a benchmark document");
    }
}

/// The setup records (after the operator's two) and the first contribution's index.
/// A base model (10% royalty, 20% to its data) and a fine-tune (30% to its data), each on a
/// dataset with eight contributions from five contributors (one without a payout address).
pub fn setup(w: &mut World, first_index: u64) -> (Vec<SignedRecord>, Vec<(String, u64)>) {
    let mut out = Vec::new();
    let mut index = first_index;
    let mut push = |out: &mut Vec<SignedRecord>, r: SignedRecord| {
        out.push(r);
        index += 1;
        index - 1
    };
    for (i, c) in CONTRIBUTORS
        .iter()
        .chain(["lab", "tuner", "payer"].iter())
        .enumerate()
    {
        let mut body = json!({"handle": c, "name": c});
        if i != 4 {
            body["payout_address"] = json!(format!("acct:{c}"));
        }
        let r = w.sign(c, Kind::ActorRegister, body);
        push(&mut out, r);
    }
    let r = w.sign("lab", Kind::LicenseDefine, license("lab/l", 1000, 2000));
    push(&mut out, r);
    let r = w.sign("tuner", Kind::LicenseDefine, license("tuner/l", 0, 3000));
    push(&mut out, r);
    let mut contributions = Vec::new();
    for (owner, ds) in [("lab", "lab/web"), ("tuner", "tuner/chat")] {
        let r = w.sign(
            owner,
            Kind::DatasetCreate,
            json!({"dataset_id": ds, "name": ds, "access": "open"}),
        );
        push(&mut out, r);
        for i in 0..8u64 {
            let who = CONTRIBUTORS[(i as usize) % CONTRIBUTORS.len()];
            let text = document(contributions.len());
            let r = w.sign(
                who,
                Kind::DataContribute,
                json!({"dataset_id": ds,
                "content_hash": shoulders_ledger::content_ref(text.as_bytes()),
                "byte_size": text.len(), "token_count": text.len()}),
            );
            let at = push(&mut out, r);
            contributions.push((ds.to_string(), at));
        }
    }
    let r = w.sign("lab", Kind::ModelRegister, json!({"model_id": "lab/base", "name": "b", "datasets": ["lab/web"], "license_id": "lab/l"}));
    push(&mut out, r);
    let r = w.sign("tuner", Kind::ModelRegister, json!({"model_id": "tuner/chat", "name": "c",
        "parents": [{"model_id": "lab/base", "relation": "finetune"}], "datasets": ["tuner/chat"], "license_id": "tuner/l"}));
    push(&mut out, r);
    let r = w.sign(
        "operator",
        Kind::FundsDeposit,
        json!({"account": "payer", "currency": "USD", "amount_micros": "1000000000000000000"}),
    );
    push(&mut out, r);
    (out, contributions)
}

/// `n` receipts on the fine-tune, each naming four contributions (two per level).
pub fn receipts(
    w: &mut World,
    contributions: &[(String, u64)],
    from: usize,
    n: usize,
) -> Vec<SignedRecord> {
    (from..from + n)
        .map(|i| {
            let pick = |k: usize| &contributions[(i * 7 + k * 5) % contributions.len()];
            let mut chosen: Vec<&(String, u64)> = Vec::new();
            for k in 0..6 {
                let c = pick(k);
                if chosen.len() < 4 && !chosen.iter().any(|x| x.1 == c.1) {
                    chosen.push(c);
                }
            }
            let ppm = [400_000u64, 300_000, 200_000, 100_000];
            let left: u64 = ppm[chosen.len()..].iter().sum();
            let attribution: Vec<Value> = chosen
                .iter()
                .enumerate()
                .map(|(k, (ds, idx))| json!({"dataset_id": ds, "contribution": idx, "ppm": ppm[k] + if k == 0 { left } else { 0 }}))
                .collect();
            w.sign("operator", Kind::UsageReceipt, json!({"usage_id": format!("u{i}"), "model_id": "tuner/chat",
                "payer": "payer", "use_category": "chat", "input_tokens": 50, "output_tokens": 100 + i % 900,
                "output_hash": format!("sha256:{:064x}", i), "attribution": attribution}))
        })
        .collect()
}

impl World {
    /// A world whose operator key is `operator` (read from `D/operator.key`).
    pub fn new(operator: ActorKey) -> Self {
        World {
            keys: vec![("operator".into(), operator)],
            seq: 0,
        }
    }
}

/// Create a ledger in `dir` (operator with a 2.5 % fee) holding the [`setup`] world and `n`
/// settled receipts, submitted in batches of 1,000. Returns the time spent settling alone:
/// signing the receipts (the gateway's work) is not counted. Shared by the `scale` and `tiles`
/// benchmarks.
pub fn settled_ledger(dir: &shoulders_ledger::DataDir, n: usize) -> std::time::Duration {
    shoulders_ledger::init_with(
        dir,
        crate::BENCH_LOG,
        Some(&shoulders_ledger::OperatorInit {
            handle: "operator".into(),
            name: "Operator".into(),
            protocol_fee_bps: 250,
            ts_ms: 1_800_000_000_000,
        }),
        &mut rand_core::OsRng,
    )
    .unwrap();
    let ledger = shoulders_ledger::Ledger::open(dir).unwrap();
    store_documents(&ledger);
    let operator = ActorKey::from_file_text(
        &std::fs::read_to_string(dir.root().join("operator.key")).unwrap(),
    )
    .unwrap();
    let mut world = World::new(operator);
    let (records, contributions) = setup(&mut world, ledger.size());
    for r in ledger.submit_batch(records.iter().map(|r| r.bytes().to_vec()).collect()) {
        r.unwrap();
    }
    let mut settling = std::time::Duration::ZERO;
    let mut done = 0;
    while done < n {
        let batch = 1_000.min(n - done);
        let signed = receipts(&mut world, &contributions, done, batch);
        let started = std::time::Instant::now();
        for r in ledger.submit_batch(signed.iter().map(|r| r.bytes().to_vec()).collect()) {
            r.unwrap();
        }
        settling += started.elapsed();
        done += batch;
        if done % 100_000 == 0 {
            eprintln!(
                "  {done} receipts settled ({:.0}/s)",
                done as f64 / settling.as_secs_f64()
            );
        }
    }
    settling
}
