//! Money: property tests over random lineages, licences, attributions and receipts (at least
//! 100,000 receipts per run), refusal codes, and the hand-computed worked example in
//! `tests/data/money_worked_example.json`.

use proptest::prelude::*;
use serde_json::{json, Value};
use shoulders_record::{sign_record, ActorKey, Body, Kind, SignedRecord};
use shoulders_state::money::{EXTERNAL, ROUNDING, UNCLAIMED};
use shoulders_state::{Reject, Role, State};
use std::collections::BTreeMap;

/// A state plus the keys that sign into it; accepted records are kept for replay.
struct Book {
    state: State,
    keys: BTreeMap<String, ActorKey>,
    accepted: Vec<SignedRecord>,
    next_id: u64,
    ts_ms: u64,
}

impl Book {
    fn new() -> Self {
        Book {
            state: State::new(),
            keys: BTreeMap::new(),
            accepted: Vec::new(),
            next_id: 0,
            ts_ms: 1_767_225_600_000,
        }
    }

    fn sign(&mut self, who: &str, kind: Kind, body: Value) -> SignedRecord {
        let n = self.keys.len() as u8;
        let key = self
            .keys
            .entry(who.to_string())
            .or_insert_with(|| ActorKey::from_seed([n + 1; 32]));
        self.next_id += 1;
        self.ts_ms += 1;
        let body = Body::from_value(kind, body).unwrap_or_else(|e| panic!("{kind}: {e}"));
        sign_record(key, &format!("r-{}", self.next_id), self.ts_ms, body).unwrap()
    }

    fn apply(&mut self, rec: SignedRecord) -> Result<u64, Reject> {
        let index = self.state.size();
        self.state.apply(index, [0; 32], &rec)?;
        self.accepted.push(rec);
        Ok(index)
    }

    fn submit(&mut self, who: &str, kind: Kind, body: Value) -> Result<u64, Reject> {
        let rec = self.sign(who, kind, body);
        self.apply(rec)
    }

    fn ok(&mut self, who: &str, kind: Kind, body: Value) -> u64 {
        self.submit(who, kind, body.clone())
            .unwrap_or_else(|e| panic!("{who} {kind} {body}: {e}"))
    }

    fn actor(&mut self, handle: &str, payout: bool) {
        let mut body = json!({"handle": handle, "name": handle});
        if payout {
            body["payout_address"] = json!(format!("acct:{handle}"));
        }
        self.ok(handle, Kind::ActorRegister, body);
    }

    fn replayed(&self) -> State {
        let mut s = State::new();
        for (i, rec) in self.accepted.iter().enumerate() {
            s.apply(i as u64, [0; 32], rec).unwrap();
        }
        s
    }
}

fn license(id: &str, royalty_bps: u32, data_share_bps: u32, per_call: u128, per_1k: u128) -> Value {
    json!({"license_id": id, "name": id, "terms": {
        "commercial_use": true, "derivatives": "allowed", "attribution_required": false,
        "share_alike": false, "royalty_bps": royalty_bps, "data_share_bps": data_share_bps,
        "currency": "USD", "price_per_call_micros": per_call.to_string(),
        "price_per_1k_output_tokens_micros": per_1k.to_string(), "registration_fee_micros": "0"}})
}

fn hash(n: u64) -> String {
    format!("sha256:{n:064x}")
}

/// The money summary of a state that must not change when a record is refused.
fn summary(s: &State) -> (u64, usize, Vec<shoulders_state::AccountBalance>) {
    (s.size(), s.legs().len(), s.accounts())
}

/// Every conservation property of the books.
fn check_books(s: &State, deposits: &BTreeMap<String, i128>, withdrawals: &BTreeMap<String, i128>) {
    for t in s.totals() {
        assert!(t.conserved, "{t:?}");
        let d = deposits.get(&t.currency).copied().unwrap_or(0);
        let w = withdrawals.get(&t.currency).copied().unwrap_or(0);
        assert_eq!(t.deposits_micros, d);
        assert_eq!(t.withdrawals_micros, w);
        assert_eq!(
            t.held_micros,
            d - w,
            "balances must sum to deposits − withdrawals"
        );
    }
    let mut held = BTreeMap::<String, i128>::new();
    for a in s.accounts() {
        if a.account != EXTERNAL {
            assert!(a.balance_micros >= 0, "{a:?} is negative");
            *held.entry(a.currency.clone()).or_default() += a.balance_micros;
        }
    }
    for (cur, h) in held {
        assert_eq!(
            h,
            deposits.get(&cur).copied().unwrap_or(0) - withdrawals.get(&cur).copied().unwrap_or(0)
        );
    }
    // Every movement is balanced on its own.
    let mut by_record = BTreeMap::<u64, i128>::new();
    for leg in s.legs() {
        *by_record.entry(leg.index).or_default() += leg.amount_micros;
    }
    assert!(
        by_record.values().all(|v| *v == 0),
        "a movement does not sum to zero"
    );
}

/// splitmix64: a tiny deterministic generator, so one proptest seed drives thousands of ops.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Receipts per proptest case; with `CASES` cases the run settles or refuses 100,800 receipts.
const RECEIPTS_PER_CASE: usize = 2100;
const CASES: u32 = 48;

/// One random world: actors, licences, datasets, contributions (with copies), a random
/// lineage DAG; then thousands of receipts, deposits, withdrawals, claims and resubmissions.
fn run_world(seed: u64) -> usize {
    let mut rng = Rng(seed);
    let mut b = Book::new();
    let actors: Vec<String> = (0..6).map(|i| format!("a{i}")).collect();
    for (i, a) in actors.iter().enumerate() {
        b.actor(a, i % 2 == 0 || rng.chance(30));
    }
    let fee_bps = rng.below(2001);
    b.ok(
        "a0",
        Kind::LedgerConfig,
        json!({"operator": "a0", "protocol_fee_bps": fee_bps}),
    );

    // Datasets and contributions; some contents repeat so copies exist.
    let n_datasets = 1 + rng.below(3) as usize;
    let datasets: Vec<String> = (0..n_datasets)
        .map(|i| {
            let owner = &actors[rng.below(6) as usize];
            let id = format!("{owner}/d{i}");
            b.ok(
                owner,
                Kind::DatasetCreate,
                json!({"dataset_id": id, "name": "d", "access": "open"}),
            );
            id
        })
        .collect();
    let mut contributions: Vec<(u64, String)> = Vec::new();
    for _ in 0..(1 + rng.below(10)) {
        let who = actors[rng.below(6) as usize].clone();
        let ds = datasets[rng.below(n_datasets as u64) as usize].clone();
        let content = rng.below(6);
        let size = 1 + rng.below(5000);
        let index = b.ok(&who, Kind::DataContribute, json!({"dataset_id": ds, "content_hash": hash(content), "byte_size": size, "token_count": size}));
        contributions.push((index, ds));
    }

    // Models: a random DAG, each with its own random licence.
    let mut models: Vec<(String, Vec<String>)> = Vec::new(); // (id, lineage datasets)
    for m in 0..(1 + rng.below(5)) {
        let owner = actors[rng.below(6) as usize].clone();
        let lic = format!("{owner}/l{m}");
        let per_call = if rng.chance(10) {
            0
        } else {
            rng.below(3_000_000) as u128
        };
        let body = license(
            &lic,
            rng.below(3001) as u32,
            rng.below(6001) as u32,
            per_call,
            rng.below(2_000_000) as u128,
        );
        b.ok(&owner, Kind::LicenseDefine, body);
        let mut parents = Vec::new();
        let mut lineage = Vec::new();
        for (pid, pl) in &models {
            if rng.chance(40) && parents.len() < 2 {
                parents.push(pid.clone());
                lineage.extend(pl.iter().cloned());
            }
        }
        // One parent: a finetune; two: a merge.
        let relation = if parents.len() == 2 {
            "merge"
        } else {
            "finetune"
        };
        let parents: Vec<Value> = parents
            .iter()
            .map(|p| json!({"model_id": p, "relation": relation}))
            .collect();
        let own: Vec<String> = datasets
            .iter()
            .filter(|_| rng.chance(60))
            .cloned()
            .collect();
        lineage.extend(own.iter().cloned());
        let id = format!("{owner}/m{m}");
        // Stacked royalties may exceed 100%: that registration is refused and the model skipped.
        if b.submit(&owner, Kind::ModelRegister, json!({"model_id": id, "name": "m", "parents": parents, "datasets": own, "license_id": lic})).is_ok() {
            models.push((id, lineage));
        }
    }

    let mut deposits = BTreeMap::<String, i128>::new();
    let mut withdrawals = BTreeMap::<String, i128>::new();
    let mut usage_ids: Vec<String> = Vec::new();
    let mut receipts_tried = 0;
    let mut step = 0u64;
    while receipts_tried < RECEIPTS_PER_CASE {
        step += 1;
        if step.is_multiple_of(512) {
            check_books(&b.state, &deposits, &withdrawals);
        }
        let before = summary(&b.state);
        let roll = rng.below(100);
        let (outcome, what) = if roll < 6 {
            let who = actors[rng.below(6) as usize].clone();
            let amount = 1 + rng.below(50_000_000) as i128;
            let r = b.submit(
                "a0",
                Kind::FundsDeposit,
                json!({"account": who, "currency": "USD", "amount_micros": amount.to_string()}),
            );
            if r.is_ok() {
                *deposits.entry("USD".into()).or_default() += amount;
            }
            (r.map(|_| ()), "deposit")
        } else if roll < 9 {
            let who = actors[rng.below(6) as usize].clone();
            let bal = b.state.balance(&who, "USD");
            let amount = if rng.chance(70) && bal > 0 {
                1 + (rng.next() as i128).rem_euclid(bal)
            } else {
                bal + 1
            };
            let r = b.submit(&who, Kind::FundsWithdraw, json!({"currency": "USD", "amount_micros": amount.to_string(), "payout_address": "bank"}));
            match &r {
                Ok(_) => {
                    *withdrawals.entry("USD".into()).or_default() += amount;
                    assert_eq!(b.state.balance(&who, "USD"), bal - amount);
                }
                Err(e) => assert_eq!(e.code(), "E_INSUFFICIENT_FUNDS"),
            }
            (r.map(|_| ()), "withdraw")
        } else if roll < 10 {
            let who = actors[rng.below(6) as usize].clone();
            let held = b
                .state
                .statement(&who, None, None)
                .totals
                .iter()
                .map(|t| t.unclaimed_micros)
                .sum::<i128>();
            let bal = b.state.balance(&who, "USD");
            let r = b.submit(
                &who,
                Kind::ActorUpdate,
                json!({"payout_address": format!("acct:{who}")}),
            );
            assert!(r.is_ok());
            assert_eq!(
                b.state.balance(&who, "USD"),
                bal + held,
                "a claim releases what was held"
            );
            (r.map(|_| ()), "claim")
        } else if roll < 12 && !b.accepted.is_empty() {
            // Re-submitting an accepted record (same bytes) is refused and changes nothing.
            let rec = b.accepted[rng.below(b.accepted.len() as u64) as usize].clone();
            let r = b.apply(rec);
            assert_eq!(r.as_ref().unwrap_err().code(), "E_DUPLICATE_ID");
            (r.map(|_| ()), "resubmit")
        } else {
            receipts_tried += 1;
            if models.is_empty() {
                continue;
            }
            let (model_id, lineage) = models[rng.below(models.len() as u64) as usize].clone();
            let payer = actors[rng.below(6) as usize].clone();
            let reuse = rng.chance(3) && !usage_ids.is_empty();
            let usage_id = if reuse {
                usage_ids[rng.below(usage_ids.len() as u64) as usize].clone()
            } else {
                format!("u{}", usage_ids.len())
            };
            // Attribution over contributions of the lineage's datasets (sometimes a stranger).
            let mut attribution = Vec::new();
            let eligible: Vec<&(u64, String)> = contributions
                .iter()
                .filter(|(_, d)| lineage.contains(d) || rng.chance(2))
                .collect();
            if !eligible.is_empty() && rng.chance(80) {
                let k = 1 + rng.below(eligible.len().min(4) as u64) as usize;
                let mut picked: Vec<&(u64, String)> = Vec::new();
                for _ in 0..k {
                    let c = eligible[rng.below(eligible.len() as u64) as usize];
                    if !picked.contains(&c) {
                        picked.push(c);
                    }
                }
                let mut left = 1_000_000u64;
                for (i, (idx, ds)) in picked.iter().enumerate() {
                    let ppm = if i + 1 == picked.len() {
                        left
                    } else {
                        1 + rng.below(left - (picked.len() - i - 1) as u64)
                    };
                    left -= ppm;
                    attribution.push(json!({"dataset_id": ds, "contribution": idx, "ppm": ppm}));
                }
            }
            let tokens = rng.below(5000);
            let body = json!({"usage_id": usage_id, "model_id": model_id, "payer": payer, "use_category": "chat", "input_tokens": 1, "output_tokens": tokens, "output_hash": hash(7), "attribution": attribution});
            let payer_before = b.state.balance(&payer, "USD");
            let r = b.submit("a0", Kind::UsageReceipt, body);
            match &r {
                Ok(index) => {
                    assert!(!reuse, "a usage id was charged twice");
                    usage_ids.push(usage_id);
                    let receipt = b.state.receipt(*index).expect("settled");
                    let legs = b.state.receipt_legs(*index);
                    let charge = legs
                        .iter()
                        .find(|l| l.role == Role::Charge)
                        .map_or(0, |l| -l.amount_micros);
                    assert_eq!(charge, receipt.charge_micros as i128);
                    let credits: i128 = legs
                        .iter()
                        .filter(|l| l.role != Role::Charge)
                        .map(|l| l.amount_micros)
                        .sum();
                    assert_eq!(credits, charge, "a split's legs must sum to the charge");
                    assert!(legs
                        .iter()
                        .filter(|l| l.role != Role::Charge)
                        .all(|l| l.amount_micros > 0));
                    assert!(payer_before >= charge);
                }
                Err(e) => {
                    let code = e.code();
                    assert!(
                        [
                            "E_INSUFFICIENT_FUNDS",
                            "E_USAGE_DUPLICATE",
                            "E_ATTRIBUTION_INVALID"
                        ]
                        .contains(&code),
                        "unexpected refusal {code}: {e}"
                    );
                    if reuse {
                        assert!(matches!(
                            code,
                            "E_USAGE_DUPLICATE" | "E_INSUFFICIENT_FUNDS" | "E_ATTRIBUTION_INVALID"
                        ));
                    }
                }
            }
            (r.map(|_| ()), "receipt")
        };
        if outcome.is_err() {
            assert_eq!(
                summary(&b.state),
                before,
                "a refused {what} changed the books"
            );
        }
    }
    if std::env::var_os("MONEY_STATS").is_some() {
        let r = b.state.receipts().count();
        let fb = b.state.receipts().filter(|r| r.fallback).count();
        let legs = b.state.legs().len();
        eprintln!(
            "seed {seed}: {r} settled ({fb} fallback), {legs} legs, rounding {}, unclaimed {}",
            b.state.balance(ROUNDING, "USD"),
            b.state.balance(UNCLAIMED, "USD")
        );
    }
    check_books(&b.state, &deposits, &withdrawals);
    // Replaying the log recomputes exactly the same state, balances and legs included.
    assert!(b.replayed() == b.state, "replay differs");
    receipts_tried
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    /// 48 worlds × 2,100 receipts = 100,800 random receipts per run.
    #[test]
    fn random_receipts_conserve_money(seed in any::<u64>()) {
        prop_assert_eq!(run_world(seed), RECEIPTS_PER_CASE);
    }
}

/// A small world for the refusal tests: op (operator, 1% fee), base owner, a payer.
fn small_world() -> Book {
    let mut b = Book::new();
    b.actor("op", true);
    b.actor("own", true);
    b.actor("pay", false);
    b.actor("ann", false);
    b.ok(
        "op",
        Kind::LedgerConfig,
        json!({"operator": "op", "protocol_fee_bps": 100}),
    );
    b.ok(
        "own",
        Kind::LicenseDefine,
        license("own/lic", 0, 5000, 1000, 0),
    );
    b.ok(
        "own",
        Kind::DatasetCreate,
        json!({"dataset_id": "own/ds", "name": "d", "access": "open"}),
    );
    b.ok("ann", Kind::DataContribute, json!({"dataset_id": "own/ds", "content_hash": hash(1), "byte_size": 10, "token_count": 10}));
    b.ok(
        "own",
        Kind::ModelRegister,
        json!({"model_id": "own/m", "name": "m", "datasets": ["own/ds"], "license_id": "own/lic"}),
    );
    b.ok(
        "own",
        Kind::ModelRegister,
        json!({"model_id": "own/free", "name": "m"}),
    );
    b
}

fn receipt(usage_id: &str, model: &str, payer: &str, attribution: Value) -> Value {
    json!({"usage_id": usage_id, "model_id": model, "payer": payer, "use_category": "chat", "input_tokens": 1, "output_tokens": 1, "output_hash": hash(9), "attribution": attribution})
}

#[test]
fn refusals_have_codes_and_change_nothing() {
    let mut b = small_world();
    b.ok(
        "op",
        Kind::FundsDeposit,
        json!({"account": "pay", "currency": "USD", "amount_micros": "1500"}),
    );
    let cases: Vec<(&str, &str, Kind, Value)> = vec![
        (
            "E_NOT_OPERATOR",
            "own",
            Kind::FundsDeposit,
            json!({"account": "pay", "currency": "USD", "amount_micros": "5"}),
        ),
        (
            "E_NOT_OPERATOR",
            "own",
            Kind::UsageReceipt,
            receipt("x1", "own/m", "pay", json!([])),
        ),
        (
            "E_NOT_OPERATOR",
            "own",
            Kind::LedgerConfig,
            json!({"operator": "own", "protocol_fee_bps": 0}),
        ),
        (
            "E_ACTOR_UNKNOWN",
            "op",
            Kind::LedgerConfig,
            json!({"operator": "nobody", "protocol_fee_bps": 0}),
        ),
        (
            "E_ACTOR_UNKNOWN",
            "op",
            Kind::FundsDeposit,
            json!({"account": "nobody", "currency": "USD", "amount_micros": "5"}),
        ),
        (
            "E_ACTOR_UNKNOWN",
            "op",
            Kind::UsageReceipt,
            receipt("x2", "own/m", "nobody", json!([])),
        ),
        (
            "E_MODEL_UNKNOWN",
            "op",
            Kind::UsageReceipt,
            receipt("x3", "own/none", "pay", json!([])),
        ),
        (
            "E_MODEL_NOT_PRICED",
            "op",
            Kind::UsageReceipt,
            receipt("x4", "own/free", "pay", json!([])),
        ),
        (
            "E_CONTRIBUTION_UNKNOWN",
            "op",
            Kind::UsageReceipt,
            receipt(
                "x5",
                "own/m",
                "pay",
                json!([{"dataset_id": "own/ds", "contribution": 999, "ppm": 1000000}]),
            ),
        ),
        (
            "E_ATTRIBUTION_INVALID",
            "op",
            Kind::UsageReceipt,
            receipt(
                "x6",
                "own/m",
                "pay",
                json!([{"dataset_id": "own/other", "contribution": 7, "ppm": 1000000}]),
            ),
        ),
        (
            "E_INSUFFICIENT_FUNDS",
            "pay",
            Kind::FundsWithdraw,
            json!({"currency": "USD", "amount_micros": "1501", "payout_address": "bank"}),
        ),
        (
            "E_INSUFFICIENT_FUNDS",
            "pay",
            Kind::FundsWithdraw,
            json!({"currency": "EUR", "amount_micros": "1", "payout_address": "bank"}),
        ),
        (
            "E_NO_PAYOUT_ADDRESS",
            "pay",
            Kind::FundsWithdraw,
            json!({"currency": "USD", "amount_micros": "1"}),
        ),
    ];
    for (code, who, kind, body) in cases {
        let before = summary(&b.state);
        let err = b
            .submit(who, kind, body.clone())
            .expect_err(&format!("{code}: {body}"));
        assert_eq!(err.code(), code, "{body}: {err}");
        assert_eq!(summary(&b.state), before);
    }
    // The first receipt is charged; a second under the same usage id is refused.
    b.ok(
        "op",
        Kind::UsageReceipt,
        receipt("u1", "own/m", "pay", json!([])),
    );
    let err = b
        .submit(
            "op",
            Kind::UsageReceipt,
            receipt("u1", "own/m", "pay", json!([])),
        )
        .unwrap_err();
    assert_eq!(err.code(), "E_USAGE_DUPLICATE");
    // 1500 − 1000 = 500 left: the next call at 1000 is refused.
    let err = b
        .submit(
            "op",
            Kind::UsageReceipt,
            receipt("u2", "own/m", "pay", json!([])),
        )
        .unwrap_err();
    assert_eq!(err.code(), "E_INSUFFICIENT_FUNDS");
    assert!(err.to_string().contains("holds 500 USD"), "{err}");
}

#[test]
fn ledger_without_config_refuses_money_and_first_config_is_self_designating() {
    let mut b = Book::new();
    b.actor("op", true);
    b.actor("x", true);
    let err = b
        .submit(
            "op",
            Kind::FundsDeposit,
            json!({"account": "x", "currency": "USD", "amount_micros": "5"}),
        )
        .unwrap_err();
    assert_eq!(err.code(), "E_NO_OPERATOR");
    let err = b
        .submit(
            "x",
            Kind::LedgerConfig,
            json!({"operator": "op", "protocol_fee_bps": 5}),
        )
        .unwrap_err();
    assert_eq!(err.code(), "E_OPERATOR_SELF");
    b.ok(
        "op",
        Kind::LedgerConfig,
        json!({"operator": "op", "protocol_fee_bps": 5}),
    );
    // The operator may hand over; the old one then may not deposit.
    b.ok(
        "op",
        Kind::LedgerConfig,
        json!({"operator": "x", "protocol_fee_bps": 7}),
    );
    assert_eq!(b.state.config().unwrap().operator, "x");
    let err = b
        .submit(
            "op",
            Kind::FundsDeposit,
            json!({"account": "x", "currency": "USD", "amount_micros": "5"}),
        )
        .unwrap_err();
    assert_eq!(err.code(), "E_NOT_OPERATOR");
}

#[test]
fn denied_use_is_refused_with_reasons() {
    let mut b = small_world();
    let mut nc = license("own/nc", 0, 0, 10, 0);
    nc["terms"]["commercial_use"] = json!(false);
    b.ok("own", Kind::LicenseDefine, nc);
    b.ok(
        "own",
        Kind::ModelRegister,
        json!({"model_id": "own/nc-model", "name": "m", "license_id": "own/nc"}),
    );
    b.ok(
        "op",
        Kind::FundsDeposit,
        json!({"account": "pay", "currency": "USD", "amount_micros": "100"}),
    );
    let mut body = receipt("c1", "own/nc-model", "pay", json!([]));
    body["use_category"] = json!("commercial");
    let err = b.submit("op", Kind::UsageReceipt, body).unwrap_err();
    assert_eq!(err.code(), "E_USE_DENIED");
    assert!(err.to_string().contains("commercial_use"), "{err}");
    assert_eq!(b.state.balance("pay", "USD"), 100);
}

#[test]
fn copies_earn_nothing_and_are_credited_to_the_original() {
    let mut b = small_world();
    b.actor("cop", true);
    // The copier contributes the same bytes as ann's contribution (index 7) later.
    let copy = b.ok("cop", Kind::DataContribute, json!({"dataset_id": "own/ds", "content_hash": hash(1), "byte_size": 10, "token_count": 10}));
    b.ok(
        "op",
        Kind::FundsDeposit,
        json!({"account": "pay", "currency": "USD", "amount_micros": "100000"}),
    );
    let r = b.ok(
        "op",
        Kind::UsageReceipt,
        receipt(
            "u1",
            "own/m",
            "pay",
            json!([{"dataset_id": "own/ds", "contribution": copy, "ppm": 1000000}]),
        ),
    );
    let legs = b.state.receipt_legs(r);
    let data: Vec<_> = legs.iter().filter(|l| l.role == Role::DataShare).collect();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0].contribution, Some(7));
    assert_eq!(data[0].holder(), "ann");
    assert_eq!(b.state.balance("cop", "USD"), 0);
    assert_eq!(b.state.contribution_uses(7), 1);
    assert_eq!(b.state.contribution_uses(copy), 0);
    // Fallback (no attribution) counts first-seen bytes only: the copier still earns nothing.
    let r = b.ok(
        "op",
        Kind::UsageReceipt,
        receipt("u2", "own/m", "pay", json!([])),
    );
    assert!(b.state.receipt(r).unwrap().fallback);
    assert!(b.state.receipt_legs(r).iter().all(|l| l.holder() != "cop"));
}

/// The worked example: every party's statement equals the figures computed by hand in the
/// golden file (see its `notes`).
#[test]
fn worked_example_matches_hand_computed_statements() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/money_worked_example.json"
    ))
    .unwrap();
    let golden: Value = serde_json::from_str(&text).unwrap();
    let mut b = Book::new();
    let mut names: BTreeMap<String, u64> = BTreeMap::new();
    for step in golden["steps"].as_array().unwrap() {
        let who = step["signer"].as_str().unwrap();
        let kind = Kind::parse(step["kind"].as_str().unwrap()).unwrap();
        let repeat = step.get("repeat").and_then(Value::as_u64).unwrap_or(1);
        for i in 0..repeat {
            let mut body = step["body"].clone();
            if let Some(u) = body.get("usage_id").and_then(Value::as_str) {
                body["usage_id"] = json!(format!("{u}-{i}"));
            }
            // Contributions are named in the golden file; replace names by log indexes.
            if let Some(att) = body.get_mut("attribution").and_then(Value::as_array_mut) {
                for a in att {
                    let name = a["contribution"].as_str().unwrap().to_string();
                    a["contribution"] = json!(names[&name]);
                }
            }
            let index = b.ok(who, kind, body);
            if let Some(name) = step.get("name").and_then(Value::as_str) {
                names.insert(name.to_string(), index);
            }
        }
    }
    for (holder, want) in golden["expected"]["statements"].as_object().unwrap() {
        let st = b.state.statement(holder, None, None);
        let usd = st
            .totals
            .iter()
            .find(|t| t.currency == "USD")
            .unwrap_or_else(|| panic!("{holder}: no USD"));
        let field = |k: &str| want[k].as_str().unwrap().parse::<i128>().unwrap();
        assert_eq!(
            usd.balance_micros,
            field("balance_micros"),
            "{holder} balance"
        );
        assert_eq!(
            usd.unclaimed_micros,
            field("unclaimed_micros"),
            "{holder} unclaimed"
        );
        assert_eq!(
            usd.credits_micros,
            field("credits_micros"),
            "{holder} credits"
        );
        assert_eq!(usd.debits_micros, field("debits_micros"), "{holder} debits");
        for src in want["by_source"].as_array().unwrap() {
            let contribution = src
                .get("contribution")
                .and_then(Value::as_str)
                .map(|n| names[n]);
            let found = st
                .by_source
                .iter()
                .find(|s| {
                    s.role.as_str() == src["role"].as_str().unwrap()
                        && s.model_id.as_deref() == src.get("model_id").and_then(Value::as_str)
                        && s.dataset_id.as_deref() == src.get("dataset_id").and_then(Value::as_str)
                        && s.contribution == contribution
                        && s.held_in_unclaimed
                            == src.get("held").and_then(Value::as_bool).unwrap_or(false)
                })
                .unwrap_or_else(|| panic!("{holder}: no source {src}"));
            assert_eq!(
                found.count,
                src["count"].as_u64().unwrap(),
                "{holder} {src}"
            );
            assert_eq!(
                found.amount_micros,
                src["amount_micros"]
                    .as_str()
                    .unwrap()
                    .parse::<i128>()
                    .unwrap(),
                "{holder} {src}"
            );
        }
        assert_eq!(
            st.by_source.len(),
            want["by_source"].as_array().unwrap().len(),
            "{holder}: {:?}",
            st.by_source
        );
    }
    for holder in golden["expected"]["empty_statements"].as_array().unwrap() {
        let st = b.state.statement(holder.as_str().unwrap(), None, None);
        assert!(
            st.lines.is_empty() && st.totals.is_empty(),
            "{holder}: {st:?}"
        );
    }
    for (name, uses) in golden["expected"]["contribution_uses"].as_object().unwrap() {
        assert_eq!(
            b.state.contribution_uses(names[name]),
            uses.as_u64().unwrap(),
            "{name}"
        );
    }
    assert_eq!(
        b.state.balance(ROUNDING, "USD"),
        golden["expected"]["rounding_micros"]
            .as_str()
            .unwrap()
            .parse::<i128>()
            .unwrap()
    );
    assert_eq!(b.state.balance(UNCLAIMED, "USD"), 0);
    let totals = b.state.totals();
    assert!(totals.iter().all(|t| t.conserved));
    assert!(b.replayed() == b.state);
}
