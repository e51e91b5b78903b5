//! Money: property tests over random lineages, licences, attributions and receipts (at least
//! 100,000 receipts per run), refusal codes, and the hand-computed worked example in
//! `tests/data/money_worked_example.json`.

use proptest::prelude::*;
use serde_json::{json, Value};
use shoulders_record::{sign_record, ActorKey, Body, Kind, SignedRecord};
use shoulders_state::money::{EXTERNAL, ROUNDING, UNCLAIMED};
use shoulders_state::{EntityKey, MemoryHistory};
use shoulders_state::{Reject, Role, State};
use std::collections::BTreeMap;

/// A state plus the keys that sign into it; accepted records are kept for replay.
struct Book {
    state: State,
    keys: BTreeMap<String, ActorKey>,
    accepted: Vec<SignedRecord>,
    /// Every record tried, refused ones included, in order.
    attempted: Vec<SignedRecord>,
    next_id: u64,
    ts_ms: u64,
}

impl Book {
    fn new() -> Self {
        Book {
            state: State::new(),
            keys: BTreeMap::new(),
            accepted: Vec::new(),
            attempted: Vec::new(),
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
        sign_record(
            key,
            "test.example/log",
            &format!("r-{}", self.next_id),
            self.ts_ms,
            body,
        )
        .unwrap()
    }

    fn apply(&mut self, rec: SignedRecord) -> Result<u64, Reject> {
        self.attempted.push(rec.clone());
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

/// The fixed part of a random world.
struct Setup {
    actors: Vec<String>,
    datasets: Vec<String>,
    /// (log index, dataset) of every contribution.
    contributions: Vec<(u64, String)>,
    /// (model id, datasets of its whole lineage).
    models: Vec<(String, Vec<String>)>,
}

/// Actors, an operator with a random fee, datasets, contributions (some contents repeat, so
/// copies exist) and a random lineage DAG of models, each with a random licence (some with
/// royalty floors) or none.
fn setup(rng: &mut Rng, b: &mut Book) -> Setup {
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

    // Models: a random DAG, each with its own random licence (half of them with royalty
    // floors) or, sometimes, none (then it is charged the floors upstream, if any).
    let mut models: Vec<(String, Vec<String>)> = Vec::new();
    for m in 0..(1 + rng.below(5)) {
        let owner = actors[rng.below(6) as usize].clone();
        let lic = format!("{owner}/l{m}");
        let per_call = if rng.chance(10) {
            0
        } else {
            rng.below(3_000_000) as u128
        };
        let royalty_bps = rng.below(3001) as u32;
        let mut body = license(
            &lic,
            royalty_bps,
            rng.below(6001) as u32,
            per_call,
            rng.below(2_000_000) as u128,
        );
        // Royalty reach, drawn from the share already drawn (no extra draw, so every seed
        // keeps the world it had before reach existed): a third owed by direct children only,
        // a third with an explicit all_ancestors, a third with no reach (the same).
        match royalty_bps % 3 {
            0 => body["terms"]["royalty_reach"] = json!("direct_parent"),
            1 => body["terms"]["royalty_reach"] = json!("all_ancestors"),
            _ => {}
        }
        if rng.chance(50) {
            body["terms"]["royalty_floor_per_call_micros"] = json!(rng.below(300_000).to_string());
            body["terms"]["royalty_floor_per_1k_output_tokens_micros"] =
                json!(rng.below(200_000).to_string());
        }
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
        let mut body = json!({"model_id": id, "name": "m", "parents": parents, "datasets": own});
        if rng.chance(75) {
            body["license_id"] = json!(lic);
        }
        // Stacked royalties may exceed 100%, or a price fall below the floors upstream: that
        // registration is refused and the model skipped.
        match b.submit(&owner, Kind::ModelRegister, body) {
            Ok(_) => {
                check_reach(&b.state, &id);
                models.push((id, lineage))
            }
            Err(e) => assert!(
                [
                    "E_LICENSE_ROYALTY_OVERFLOW",
                    "E_LICENSE_BELOW_ROYALTY_FLOOR"
                ]
                .contains(&e.code()),
                "{e}"
            ),
        }
    }
    Setup {
        actors,
        datasets,
        contributions,
        models,
    }
}

/// The royalty stack of a registered model, against an oracle written from the rule: every
/// licensed ancestor whose licence asks a share or a floor is in it once, except one whose reach
/// is `direct_parent` and that is not a parent of the model.
fn check_reach(s: &State, model_id: &str) {
    let model = s.model(model_id).unwrap();
    let mut expected = std::collections::BTreeSet::new();
    for anc in s.ancestors(model_id) {
        let a = s.model(&anc).unwrap();
        let Some(l) = a.license_id.as_ref().and_then(|l| s.license(l)) else {
            continue;
        };
        let r = shoulders_license::Royalty::from_terms(
            &a.model_id,
            &a.owner,
            l.license_id.as_str(),
            &l.terms,
        );
        let parent = model.parents.iter().any(|p| p.model_id == anc);
        if r.is_owed() && (parent || r.reach == shoulders_record::RoyaltyReach::AllAncestors) {
            expected.insert(anc);
        }
    }
    let stack: Vec<&str> = model
        .effective
        .royalties
        .iter()
        .map(|r| r.model_id.as_str())
        .collect();
    let got: std::collections::BTreeSet<String> = stack.iter().map(|m| m.to_string()).collect();
    assert_eq!(
        got.len(),
        stack.len(),
        "{model_id}: an ancestor twice in {stack:?}"
    );
    assert_eq!(got, expected, "{model_id}: royalty stack");
}

/// A random attribution over contributions of `lineage`'s datasets (sometimes a stranger's,
/// which the fold refuses), or none.
fn random_attribution(
    rng: &mut Rng,
    contributions: &[(u64, String)],
    lineage: &[String],
) -> Vec<Value> {
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
    attribution
}

/// Check a settled receipt's split against the floors of its model's lineage: the charge
/// covers the price and every floor; each floored ancestor's level (its owner and its data
/// contributors, plus at most the units its own split leaves to @rounding) gets at least its
/// floor; and a charge raised above the price is the least that does so (the own level keeps
/// only a few rounding units of it).
fn check_floors(s: &State, index: u64) {
    let receipt = s.receipt(index).unwrap();
    let model = s.model(&receipt.model_id).unwrap();
    let e = &model.effective;
    let tokens = receipt.output_tokens;
    let price = e.price.as_ref().map_or(0, |p| {
        p.per_call_micros + (u128::from(tokens) * p.per_1k_output_tokens_micros).div_ceil(1000)
    });
    let legs = s.receipt_legs(index);
    let level = |model_id: &str| -> i128 {
        legs.iter()
            .filter(|l| l.model_id.as_deref() == Some(model_id))
            .filter(|l| matches!(l.role, Role::Royalty | Role::OwnerShare | Role::DataShare))
            .map(|l| l.amount_micros)
            .sum()
    };
    let rounding: i128 = legs
        .iter()
        .filter(|l| l.role == Role::Rounding)
        .map(|l| l.amount_micros)
        .sum();
    let mut floors: u128 = 0;
    for (r, f) in e.floors() {
        let floor = f.for_use(tokens);
        floors += floor;
        assert!(
            level(&r.model_id) + rounding >= floor as i128,
            "{}: ancestor {} got {} (rounding {rounding}), floor {floor}",
            receipt.usage_id,
            r.model_id,
            level(&r.model_id)
        );
    }
    assert!(receipt.charge_micros >= price);
    assert!(receipt.charge_micros >= floors, "charge below the floors");
    if receipt.charge_micros > price {
        let k = e.floors().count() as i128;
        assert!(
            level(&receipt.model_id) <= 2 * k + 1,
            "a raised charge must be the least that covers the floors: own level {}",
            level(&receipt.model_id)
        );
    }
    let charge = s.charge_for(&receipt.model_id, tokens).unwrap();
    assert_eq!(charge.total_micros, receipt.charge_micros);
    assert_eq!((charge.price_micros, charge.floors_micros), (price, floors));
}

/// One random world (see [`setup`]); then thousands of receipts, deposits, withdrawals, claims
/// and resubmissions.
fn run_world(seed: u64) -> usize {
    let mut rng = Rng(seed);
    let mut b = Book::new();
    let Setup {
        actors,
        contributions,
        models,
        ..
    } = setup(&mut rng, &mut b);

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
            let attribution = random_attribution(&mut rng, &contributions, &lineage);
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
                    check_floors(&b.state, *index);
                }
                Err(e) => {
                    let code = e.code();
                    assert!(
                        [
                            "E_INSUFFICIENT_FUNDS",
                            "E_USAGE_DUPLICATE",
                            "E_ATTRIBUTION_INVALID",
                            "E_MODEL_NOT_PRICED"
                        ]
                        .contains(&code),
                        "unexpected refusal {code}: {e}"
                    );
                    if code == "E_MODEL_NOT_PRICED" {
                        let e = &b.state.model(&model_id).unwrap().effective;
                        assert!(e.price.is_none() && e.floors().next().is_none());
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
        let un = b.state.receipts().filter(|r| r.unattributed).count();
        let floored = b
            .state
            .receipts()
            .filter(|r| {
                let e = &b.state.model(&r.model_id).unwrap().effective;
                e.floors().next().is_some()
            })
            .count();
        let raised = b
            .state
            .receipts()
            .filter(|r| {
                let c = b.state.charge_for(&r.model_id, r.output_tokens).unwrap();
                c.total_micros > c.price_micros
            })
            .count();
        let legs = b.state.legs().len();
        eprintln!(
            "seed {seed}: {r} settled ({un} unattributed, {floored} under floors, {raised} raised to cover them), {legs} legs, rounding {}, unclaimed {}",
            b.state.balance(ROUNDING, "USD"),
            b.state.balance(UNCLAIMED, "USD")
        );
    }
    check_books(&b.state, &deposits, &withdrawals);
    // Replaying the log recomputes exactly the same state, balances and legs included.
    assert!(b.replayed() == b.state, "replay differs");
    if seed.is_multiple_of(3) {
        check_persisted_fold(&b, seed);
    }
    receipts_tried
}

/// The fold as a ledger runs it: bounded state in memory, history and state rows in a "store"
/// written once per batch, random crashes (between batches, or losing a whole uncommitted
/// batch) after which the state is rebuilt from the stored rows alone. It must end exactly
/// where the in-memory fold of the same attempts (refused ones included) ends.
fn check_persisted_fold(b: &Book, seed: u64) {
    let mut rng = Rng(seed ^ 0x5eed);
    let mut state = State::without_history();
    let mut work = MemoryHistory::default();
    let mut committed = MemoryHistory::default();
    let mut rows: BTreeMap<(&'static str, String), Vec<u8>> = BTreeMap::new();
    let mut changed: Vec<EntityKey> = Vec::new();
    let mut batch_start = 0usize;
    let mut i = 0usize;
    let mut crashes = 0;
    while i <= b.attempted.len() {
        let end_of_batch = i == b.attempted.len() || rng.chance(20);
        if end_of_batch {
            if rng.chance(15) && crashes < 20 {
                // Crash before the commit: the batch is lost; rebuild from the store and let
                // the submitters resend it.
                crashes += 1;
                state = State::from_rows(
                    rows.iter()
                        .map(|((k, key), v)| (k.to_string(), key.clone(), v.clone())),
                )
                .expect("stored rows load");
                work = committed.clone();
                changed.clear();
                i = batch_start;
                continue;
            }
            changed.sort();
            changed.dedup();
            for r in state.entity_rows(&changed) {
                rows.insert((r.kind, r.key), r.value);
            }
            changed.clear();
            committed = work.clone();
            batch_start = i;
            if i == b.attempted.len() {
                break;
            }
            if rng.chance(10) {
                // Crash after the commit: nothing is lost.
                crashes += 1;
                state = State::from_rows(
                    rows.iter()
                        .map(|((k, key), v)| (k.to_string(), key.clone(), v.clone())),
                )
                .expect("stored rows load");
            }
        }
        let rec = &b.attempted[i];
        let index = state.size();
        if let Ok((_, effects)) = state.apply_with(index, [0; 32], rec, &work) {
            changed.extend(effects.changed.iter().cloned());
            work.absorb(effects);
        }
        i += 1;
    }
    let loaded = State::from_rows(
        rows.iter()
            .map(|((k, key), v)| (k.to_string(), key.clone(), v.clone())),
    )
    .expect("stored rows load");
    assert_eq!(loaded.size(), b.state.size(), "stored size");
    let (got, want) = (loaded.all_entity_rows(), b.state.all_entity_rows());
    if got != want {
        let diff: Vec<String> = got
            .iter()
            .zip(&want)
            .filter(|(g, w)| g != w)
            .take(3)
            .map(|(g, w)| {
                format!(
                    "{}/{}: stored {} vs fold {}/{} {}",
                    g.kind,
                    g.key,
                    String::from_utf8_lossy(&g.value),
                    w.kind,
                    w.key,
                    String::from_utf8_lossy(&w.value)
                )
            })
            .collect();
        panic!(
            "seed {seed}: the stored state differs from the in-memory fold ({} vs {} rows): {diff:?}",
            got.len(),
            want.len()
        );
    }
    assert_eq!(committed.legs(), b.state.legs(), "stored legs");
    assert_eq!(
        committed.receipts().count(),
        b.state.receipts().count(),
        "stored receipts"
    );
    // And it keeps folding the same way after a reload.
    assert_eq!(loaded.accounts(), b.state.accounts());
    assert_eq!(loaded.totals(), b.state.totals());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    /// 48 worlds × 2,100 receipts = 100,800 random receipts per run.
    #[test]
    fn random_receipts_conserve_money(seed in any::<u64>()) {
        prop_assert_eq!(run_world(seed), RECEIPTS_PER_CASE);
    }
}

/// One random world (see [`setup`]): for random `max_tokens` per model, receipts of outputs up
/// to it (none, the longest, and random lengths between) are charged at most
/// [`State::max_charge`] of it, in its currency. This is what makes the gateway's
/// pre-authorisation sound: a call never costs more than what was reserved for it. Returns the
/// receipts checked.
fn max_charge_world(seed: u64) -> usize {
    let mut rng = Rng(seed);
    let mut b = Book::new();
    let setup = setup(&mut rng, &mut b);
    b.ok(
        "a0",
        Kind::FundsDeposit,
        json!({"account": "a1", "currency": "USD", "amount_micros": "1000000000000000"}),
    );
    let mut checked = 0;
    let mut n = 0;
    for (model_id, lineage) in &setup.models {
        for _ in 0..12 {
            let max_tokens = match rng.below(4) {
                0 => rng.below(3),
                1 => rng.below(40),
                _ => rng.below(20_000),
            };
            let max = match b.state.max_charge(model_id, max_tokens) {
                Ok(max) => max,
                Err(e) => {
                    assert!(
                        ["E_MODEL_NOT_PRICED", "E_CHARGE_TOO_LARGE"].contains(&e.code()),
                        "{e}"
                    );
                    continue;
                }
            };
            let mut lengths = vec![0, max_tokens, max_tokens.saturating_sub(1)];
            lengths.extend((0..4).map(|_| rng.below(max_tokens + 1)));
            for tokens in lengths {
                let quote = b.state.charge_for(model_id, tokens).unwrap();
                assert!(
                    quote.total_micros <= max.total_micros,
                    "{quote:?} > {max:?}"
                );
                n += 1;
                let attribution = random_attribution(&mut rng, &setup.contributions, lineage);
                let body = json!({"usage_id": format!("mc{n}"), "model_id": model_id,
                    "payer": "a1", "use_category": "chat", "input_tokens": 1,
                    "output_tokens": tokens, "output_hash": hash(7), "attribution": attribution});
                match b.submit("a0", Kind::UsageReceipt, body) {
                    Ok(index) => {
                        let receipt = b.state.receipt(index).unwrap();
                        assert_eq!(&*receipt.currency, max.currency.as_str());
                        assert!(
                            receipt.charge_micros <= max.total_micros,
                            "{model_id}: {tokens} tokens charged {} > max_charge({max_tokens}) {}",
                            receipt.charge_micros,
                            max.total_micros
                        );
                        checked += 1;
                    }
                    // A random attribution may name a stranger's contribution.
                    Err(e) => assert!(
                        ["E_ATTRIBUTION_INVALID", "E_CONTRIBUTION_UNKNOWN"].contains(&e.code()),
                        "{e}"
                    ),
                }
            }
        }
    }
    checked
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn max_charge_bounds_every_receipt_up_to_its_tokens(seed in any::<u64>()) {
        max_charge_world(seed);
    }
}

#[test]
fn max_charge_worlds_settle_receipts() {
    // The property above is not vacuous: fixed worlds settle receipts against it.
    let checked: usize = (0..16).map(max_charge_world).sum();
    assert!(checked > 100, "only {checked} receipts checked");
}

/// A leg without its position in the log (which records added before it shift).
type LegKey = (
    String,
    i128,
    Role,
    Option<String>,
    Option<String>,
    Option<u64>,
    Option<String>,
);

/// Settle `receipts` random receipts (from `rng`) in `b`, returning each one's legs or refusal.
fn settle_some(
    rng: &mut Rng,
    b: &mut Book,
    setup: &Setup,
    receipts: usize,
) -> Vec<Result<Vec<LegKey>, &'static str>> {
    let mut out = Vec::new();
    for u in 0..receipts {
        if setup.models.is_empty() {
            break;
        }
        let (model_id, lineage) = &setup.models[rng.below(setup.models.len() as u64) as usize];
        let payer = &setup.actors[rng.below(6) as usize];
        let attribution = random_attribution(rng, &setup.contributions, lineage);
        let body = json!({"usage_id": format!("u{u}"), "model_id": model_id, "payer": payer, "use_category": "chat", "input_tokens": 1, "output_tokens": rng.below(5000), "output_hash": hash(7), "attribution": attribution});
        out.push(
            b.submit("a0", Kind::UsageReceipt, body)
                .map(|index| {
                    b.state
                        .receipt_legs(index)
                        .iter()
                        .map(|l| {
                            (
                                l.account.to_string(),
                                l.amount_micros,
                                l.role,
                                l.model_id.as_deref().map(String::from),
                                l.dataset_id.as_deref().map(String::from),
                                l.contribution,
                                l.beneficiary.as_deref().map(String::from),
                            )
                        })
                        .collect()
                })
                .map_err(|e| e.code()),
        );
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// No data-pool payout without evidence: a newcomer adding any number of contributions of
    /// any declared size (new content, or copies of existing content) to any dataset changes
    /// no leg of receipts that do not name them, and earns nothing.
    #[test]
    fn volume_earns_nothing_without_attribution(
        seed in any::<u64>(),
        junk in prop::collection::vec((0usize..3, 1u64..=(1u64 << 40), 0u64..12), 0..16),
        payout in any::<bool>(),
    ) {
        let run = |flood: bool| {
            let mut rng = Rng(seed);
            let mut b = Book::new();
            let setup = setup(&mut rng, &mut b);
            for a in &setup.actors {
                b.ok("a0", Kind::FundsDeposit, json!({"account": a, "currency": "USD", "amount_micros": "1000000000000"}));
            }
            if flood {
                b.actor("newbie", payout);
                for (d, size, content) in &junk {
                    let ds = &setup.datasets[d % setup.datasets.len()];
                    // Contents 0..6 are copies of existing ones; the rest are new.
                    b.ok("newbie", Kind::DataContribute, json!({"dataset_id": ds, "content_hash": hash(*content), "byte_size": size, "token_count": size}));
                }
            }
            let settled = settle_some(&mut rng, &mut b, &setup, 40);
            (settled, b)
        };
        let (plain, _) = run(false);
        let (flooded, b) = run(true);
        prop_assert_eq!(plain, flooded);
        let st = b.state.statement("newbie", None, None);
        prop_assert!(st.lines.is_empty(), "{:?}", st.lines);
        prop_assert_eq!(b.state.balance("newbie", "USD"), 0);
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

/// A receipt's `index_state` may only cover records before the receipt itself: the fold
/// refuses one whose index reaches beyond it (`E_INDEX_STATE_FUTURE`) and changes nothing.
#[test]
fn receipt_index_state_cannot_cover_the_future() {
    let mut b = small_world();
    b.ok(
        "op",
        Kind::FundsDeposit,
        json!({"account": "pay", "currency": "USD", "amount_micros": "5000"}),
    );
    let at = b.state.size();
    let with_state = |id: &str, ledger_size: u64| {
        let mut r = receipt(id, "own/m", "pay", json!([]));
        r["index_state"] = json!({"ledger_size": ledger_size, "segments": [ledger_size]});
        r
    };
    let before = summary(&b.state);
    let err = b
        .submit("op", Kind::UsageReceipt, with_state("f1", at + 1))
        .unwrap_err();
    assert_eq!(err.code(), "E_INDEX_STATE_FUTURE", "{err}");
    assert_eq!(summary(&b.state), before);
    // Up to its own position is fine: an index built just before the receipt.
    let index = b.ok("op", Kind::UsageReceipt, with_state("f2", at));
    assert_eq!(index, at);
    assert!(b.state.receipt(index).is_some());
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
    // Without attribution the pool goes to the level's owner: the copier still earns nothing.
    let r = b.ok(
        "op",
        Kind::UsageReceipt,
        receipt("u2", "own/m", "pay", json!([])),
    );
    assert!(b.state.receipt(r).unwrap().unattributed);
    assert!(b.state.receipt_legs(r).iter().all(|l| l.holder() != "cop"));
}

#[test]
fn unattributed_pool_goes_to_the_level_owner_not_by_volume() {
    let mut b = small_world();
    // mallory floods the dataset with declared terabytes of junk.
    b.actor("mal", true);
    for n in 0..5 {
        b.ok("mal", Kind::DataContribute, json!({"dataset_id": "own/ds", "content_hash": hash(100 + n), "byte_size": 1u64 << 40, "token_count": 1u64 << 40}));
    }
    b.ok(
        "op",
        Kind::FundsDeposit,
        json!({"account": "pay", "currency": "USD", "amount_micros": "100000"}),
    );
    // own/m: 1000 per call, fee 1% = 10, level 990 whose licence gives 50% to data. No
    // attribution: nobody's evidence, so the whole level is the owner's.
    let r = b.ok(
        "op",
        Kind::UsageReceipt,
        receipt("u1", "own/m", "pay", json!([])),
    );
    assert!(b.state.receipt(r).unwrap().unattributed);
    let legs: Vec<(&str, i128, Role)> = b
        .state
        .receipt_legs(r)
        .iter()
        .map(|l| (l.holder(), l.amount_micros, l.role))
        .collect();
    assert_eq!(
        legs,
        vec![
            ("pay", -1000, Role::Charge),
            ("@protocol", 10, Role::ProtocolFee),
            ("own", 990, Role::OwnerShare)
        ]
    );
    assert_eq!(b.state.balance("mal", "USD"), 0);
    assert_eq!(b.state.balance("ann", "USD"), 0);
    // Named, ann's contribution is paid its pool; the junk still earns nothing.
    let r = b.ok(
        "op",
        Kind::UsageReceipt,
        receipt(
            "u2",
            "own/m",
            "pay",
            json!([{"dataset_id": "own/ds", "contribution": 7, "ppm": 1000000}]),
        ),
    );
    assert!(!b.state.receipt(r).unwrap().unattributed);
    assert_eq!(
        b.state.statement("ann", None, None).totals[0].unclaimed_micros,
        495
    );
    assert_eq!(b.state.balance("mal", "USD"), 0);
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

/// Royalty floors: op (1% fee); acme's base asks 5%, 20% of its level to its data, and a floor
/// of 1000 per call + 200 per 1k output tokens; ann contributed to the base's dataset; ada
/// builds adapters; pay pays.
fn floor_world() -> (Book, u64) {
    let mut b = Book::new();
    for (h, payout) in [("op", true), ("acme", true), ("ada", true), ("bob", true)] {
        b.actor(h, payout);
    }
    b.actor("pay", false);
    b.actor("ann", false);
    b.ok(
        "op",
        Kind::LedgerConfig,
        json!({"operator": "op", "protocol_fee_bps": 100}),
    );
    let mut lic = license("acme/base-lic", 500, 2000, 10_000, 1000);
    lic["terms"]["royalty_floor_per_call_micros"] = json!("1000");
    lic["terms"]["royalty_floor_per_1k_output_tokens_micros"] = json!("200");
    b.ok("acme", Kind::LicenseDefine, lic);
    b.ok(
        "acme",
        Kind::DatasetCreate,
        json!({"dataset_id": "acme/ds", "name": "d", "access": "open"}),
    );
    let ann = b.ok("ann", Kind::DataContribute, json!({"dataset_id": "acme/ds", "content_hash": hash(1), "byte_size": 10, "token_count": 10}));
    b.ok(
        "acme",
        Kind::ModelRegister,
        json!({"model_id": "acme/base", "name": "base", "datasets": ["acme/ds"], "license_id": "acme/base-lic"}),
    );
    b.ok(
        "op",
        Kind::FundsDeposit,
        json!({"account": "pay", "currency": "USD", "amount_micros": "10000000"}),
    );
    (b, ann)
}

fn adapter(b: &mut Book, id: &str, parent: &str, license: Option<&str>) -> Result<u64, Reject> {
    let owner = id.split('/').next().unwrap().to_string();
    let mut body = json!({"model_id": id, "name": id, "parents": [{"model_id": parent, "relation": "adapter"}]});
    if let Some(l) = license {
        body["license_id"] = json!(l);
    }
    b.submit(&owner, Kind::ModelRegister, body)
}

fn call(usage_id: &str, model: &str, tokens: u64, attribution: Value) -> Value {
    json!({"usage_id": usage_id, "model_id": model, "payer": "pay", "use_category": "chat", "input_tokens": 1, "output_tokens": tokens, "output_hash": hash(9), "attribution": attribution})
}

/// `(holder, amount, role, level model)` of each leg of the receipt at `index`.
fn legs_of(s: &State, index: u64) -> Vec<(String, i128, Role, String)> {
    s.receipt_legs(index)
        .iter()
        .map(|l| {
            (
                l.holder().to_string(),
                l.amount_micros,
                l.role,
                l.model_id.as_deref().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn leg(holder: &str, amount: i128, role: Role, model: &str) -> (String, i128, Role, String) {
    (holder.to_string(), amount, role, model.to_string())
}

#[test]
fn free_adapter_is_charged_the_floors() {
    let (mut b, ann) = floor_world();
    // With a licence of its own priced 0 it is refused at registration...
    b.ok("ada", Kind::LicenseDefine, license("ada/free", 0, 0, 0, 0));
    let err = adapter(&mut b, "ada/free-adapter", "acme/base", Some("ada/free")).unwrap_err();
    assert_eq!(err.code(), "E_LICENSE_BELOW_ROYALTY_FLOOR");
    assert!(
        err.to_string()
            .contains("acme/base (licence acme/base-lic)"),
        "{err}"
    );
    // ...and without one it is charged the floors at each use.
    adapter(&mut b, "ada/adapter", "acme/base", None).unwrap();
    // 500 output tokens: floor = 1000 + ceil(500 × 200 / 1000) = 1100. The charge C is the
    // least with C − fee − 1100 ≥ 0 after the exact split: at C = 1112 the split (1% fee,
    // rounded up, 4.95% royalty, 94.05% own level) is 12 / 55 / 1045; the royalty is raised
    // to the 1100 floor by 1045 taken from the own level, which is left with 0. At 1111 the
    // split is 12 / 55 / 1044 (the fee's 11.11 rounds up) and the own level would be −1.
    let charge = b.state.charge_for("ada/adapter", 500).unwrap();
    assert_eq!(
        (
            charge.total_micros,
            charge.price_micros,
            charge.floors_micros,
            charge.currency.as_str()
        ),
        (1112, 0, 1100, "USD")
    );
    let r = b.ok(
        "op",
        Kind::UsageReceipt,
        call(
            "u1",
            "ada/adapter",
            500,
            json!([{"dataset_id": "acme/ds", "contribution": ann, "ppm": 1000000}]),
        ),
    );
    assert_eq!(b.state.receipt(r).unwrap().charge_micros, 1112);
    // The base's level (1100) is split as always: 20% to the data it names, 80% to acme.
    assert_eq!(
        legs_of(&b.state, r),
        vec![
            leg("pay", -1112, Role::Charge, "ada/adapter"),
            leg("@protocol", 12, Role::ProtocolFee, "ada/adapter"),
            leg("acme", 880, Role::Royalty, "acme/base"),
            leg("ann", 220, Role::DataShare, "acme/base"),
        ]
    );
    // No output: at least the 1000 floor per call; 1011 is the least charge that covers it (at 1010 the fee's 10.1
    // rounds up to 11 and leaves the own level 1 short).
    assert_eq!(
        b.state.charge_for("ada/adapter", 0).unwrap().total_micros,
        1011
    );
    // A model with neither a price nor floors upstream still cannot be metered.
    b.ok(
        "ada",
        Kind::ModelRegister,
        json!({"model_id": "ada/alone", "name": "alone"}),
    );
    let err = b
        .submit(
            "op",
            Kind::UsageReceipt,
            call("u2", "ada/alone", 1, json!([])),
        )
        .unwrap_err();
    assert_eq!(err.code(), "E_MODEL_NOT_PRICED");
    // A payer who cannot cover the floors is refused, and nothing moves.
    b.actor("poor", true);
    b.ok(
        "op",
        Kind::FundsDeposit,
        json!({"account": "poor", "currency": "USD", "amount_micros": "1010"}),
    );
    let before = summary(&b.state);
    let mut body = call("u3", "ada/adapter", 0, json!([]));
    body["payer"] = json!("poor");
    let err = b.submit("op", Kind::UsageReceipt, body).unwrap_err();
    assert_eq!(err.code(), "E_INSUFFICIENT_FUNDS");
    assert!(err.to_string().contains("1011 are needed"), "{err}");
    assert_eq!(summary(&b.state), before);
    assert!(b.replayed() == b.state);
}

/// The attack floors close: before, a free adapter of a royalty-bearing model served its text
/// at charge 0 and the ancestor's owner and contributors got nothing (5% of 0); with a floor,
/// the free adapter cannot be registered, and an unpriced one pays the base at least the floor.
#[test]
fn free_derivative_attack_earns_nothing() {
    let (mut b, ann) = floor_world();
    b.ok(
        "acme",
        Kind::LicenseDefine,
        license("acme/old-lic", 500, 2000, 10_000, 1000),
    );
    b.ok(
        "acme",
        Kind::ModelRegister,
        json!({"model_id": "acme/old", "name": "old", "datasets": ["acme/ds"], "license_id": "acme/old-lic"}),
    );
    b.ok("ada", Kind::LicenseDefine, license("ada/free", 0, 0, 0, 0));
    adapter(&mut b, "ada/free-old", "acme/old", Some("ada/free")).unwrap();
    let named = json!([{"dataset_id": "acme/ds", "contribution": ann, "ppm": 1000000}]);
    let r = b.ok(
        "op",
        Kind::UsageReceipt,
        call("before", "ada/free-old", 500, named.clone()),
    );
    assert_eq!(b.state.receipt(r).unwrap().charge_micros, 0);
    assert!(
        legs_of(&b.state, r).is_empty(),
        "without floors the base got nothing"
    );

    let err = adapter(&mut b, "ada/free-new", "acme/base", Some("ada/free")).unwrap_err();
    assert_eq!(err.code(), "E_LICENSE_BELOW_ROYALTY_FLOOR");
    adapter(&mut b, "ada/unpriced", "acme/base", None).unwrap();
    let r = b.ok(
        "op",
        Kind::UsageReceipt,
        call("after", "ada/unpriced", 500, named),
    );
    let base_level: i128 = legs_of(&b.state, r)
        .iter()
        .filter(|l| l.3 == "acme/base")
        .map(|l| l.1)
        .sum();
    assert!(base_level >= 1100, "the base's level got {base_level}");
    assert_eq!(
        b.state.balance("ada", "USD"),
        0,
        "the adapter earns nothing"
    );
}

#[test]
fn priced_derivative_pays_the_larger_of_share_and_floor() {
    let (mut b, _) = floor_world();
    // 1,000,000 per call: the 5% share (49,500 after the 1% fee) is above the 1000 floor.
    b.ok(
        "ada",
        Kind::LicenseDefine,
        license("ada/rich", 0, 0, 1_000_000, 200),
    );
    adapter(&mut b, "ada/rich", "acme/base", Some("ada/rich")).unwrap();
    let r = b.ok(
        "op",
        Kind::UsageReceipt,
        call("u1", "ada/rich", 0, json!([])),
    );
    assert_eq!(
        legs_of(&b.state, r),
        vec![
            leg("pay", -1_000_000, Role::Charge, "ada/rich"),
            leg("@protocol", 10_000, Role::ProtocolFee, "ada/rich"),
            leg("acme", 49_500, Role::Royalty, "acme/base"),
            leg("ada", 940_500, Role::OwnerShare, "ada/rich"),
        ]
    );
    // The base names no contribution of its data: its pool went to acme.
    assert!(b.state.receipt(r).unwrap().unattributed);
    // 10,000 per call: the share would be 495, so the floor (1000) is paid instead; the price
    // covers it, so the charge stays the price and the own level pays the difference.
    b.ok(
        "ada",
        Kind::LicenseDefine,
        license("ada/cheap", 0, 0, 10_000, 200),
    );
    adapter(&mut b, "ada/cheap", "acme/base", Some("ada/cheap")).unwrap();
    let r = b.ok(
        "op",
        Kind::UsageReceipt,
        call("u2", "ada/cheap", 0, json!([])),
    );
    assert_eq!(
        legs_of(&b.state, r),
        vec![
            leg("pay", -10_000, Role::Charge, "ada/cheap"),
            leg("@protocol", 100, Role::ProtocolFee, "ada/cheap"),
            leg("acme", 1000, Role::Royalty, "acme/base"),
            leg("ada", 8900, Role::OwnerShare, "ada/cheap"),
        ]
    );
    // Priced exactly at the floors: the fee comes on top, so the charge rises just enough
    // (1000 + ceil(500 × 200 / 1000) = 1100 → 1112, as for an unpriced adapter).
    b.ok(
        "ada",
        Kind::LicenseDefine,
        license("ada/at-floor", 0, 0, 1000, 200),
    );
    adapter(&mut b, "ada/at-floor", "acme/base", Some("ada/at-floor")).unwrap();
    let charge = b.state.charge_for("ada/at-floor", 500).unwrap();
    assert_eq!((charge.price_micros, charge.total_micros), (1100, 1112));
}

#[test]
fn floors_stack_along_a_chain() {
    let (mut b, _) = floor_world();
    // bob's mid asks no share, only a floor of 500 per call.
    let mut lic = license("bob/mid-lic", 0, 0, 2000, 300);
    lic["terms"]["royalty_floor_per_call_micros"] = json!("500");
    b.ok("bob", Kind::LicenseDefine, lic);
    b.ok(
        "bob",
        Kind::ModelRegister,
        json!({"model_id": "bob/mid", "name": "mid", "parents": [{"model_id": "acme/base", "relation": "finetune"}], "license_id": "bob/mid-lic"}),
    );
    adapter(&mut b, "ada/top", "bob/mid", None).unwrap();
    // Floors 1000 + 500 = 1500. At C = 1516 the split is 16 / 75 / 0 / 1425 (the fee's 15.16
    // rounds up); the two royalties are raised to 1000 and 500 by 1425 from the own level,
    // which keeps 0. At 1515 (16 / 75 / 0 / 1424) it would be −1.
    let r = b.ok(
        "op",
        Kind::UsageReceipt,
        call("u1", "ada/top", 0, json!([])),
    );
    assert_eq!(
        legs_of(&b.state, r),
        vec![
            leg("pay", -1516, Role::Charge, "ada/top"),
            leg("@protocol", 16, Role::ProtocolFee, "ada/top"),
            leg("acme", 1000, Role::Royalty, "acme/base"),
            leg("bob", 500, Role::Royalty, "bob/mid"),
        ]
    );
    // A price below the stacked floors is refused, naming the floor left uncovered.
    b.ok(
        "ada",
        Kind::LicenseDefine,
        license("ada/1200", 0, 0, 1200, 200),
    );
    let err = adapter(&mut b, "ada/cheap", "bob/mid", Some("ada/1200")).unwrap_err();
    assert_eq!(err.code(), "E_LICENSE_BELOW_ROYALTY_FLOOR");
    assert!(
        err.to_string().contains("bob/mid (licence bob/mid-lic)"),
        "{err}"
    );
    assert!(err.to_string().contains("total 1500"), "{err}");
    // Floors in a currency other than the price are refused.
    let mut eur = license("ada/eur", 0, 0, 1_000_000, 1_000_000);
    eur["terms"]["currency"] = json!("EUR");
    b.ok("ada", Kind::LicenseDefine, eur);
    let err = adapter(&mut b, "ada/eur", "bob/mid", Some("ada/eur")).unwrap_err();
    assert_eq!(err.code(), "E_LICENSE_BELOW_ROYALTY_FLOOR");
    assert!(err.to_string().contains("EUR"), "{err}");
}

/// Issue 15, attack 5: with a 1% fee, a price of 20 units (or 1 unit, or per-token prices
/// that round to a few units) paid no protocol fee, because the fee's exact share (0.2 units)
/// lost the largest-remainder rounding. The fee is now rounded up: every non-zero charge pays
/// at least one unit, and splitting a use into many tiny calls pays more fee, not less.
/// Royalty reach: op (1% fee); acme's base asks 10% and a floor of 300 per call, owed by its
/// direct children only; bob's child of it asks 5% (owed by all its descendants); carol's
/// grandchild builds on bob's child. Every model charges 2000 per call.
fn reach_world() -> Book {
    let mut b = Book::new();
    for h in ["op", "acme", "bob", "carol"] {
        b.actor(h, true);
    }
    b.actor("pay", false);
    b.ok(
        "op",
        Kind::LedgerConfig,
        json!({"operator": "op", "protocol_fee_bps": 100}),
    );
    let mut lic = license("acme/direct", 1000, 0, 2000, 0);
    lic["terms"]["royalty_reach"] = json!("direct_parent");
    lic["terms"]["royalty_floor_per_call_micros"] = json!("300");
    b.ok("acme", Kind::LicenseDefine, lic);
    b.ok(
        "acme",
        Kind::ModelRegister,
        json!({"model_id": "acme/base", "name": "base", "license_id": "acme/direct"}),
    );
    b.ok(
        "bob",
        Kind::LicenseDefine,
        license("bob/r5", 500, 0, 2000, 0),
    );
    adapter(&mut b, "bob/child", "acme/base", Some("bob/r5")).unwrap();
    b.ok(
        "carol",
        Kind::LicenseDefine,
        license("carol/c0", 0, 0, 2000, 0),
    );
    adapter(&mut b, "carol/grandchild", "bob/child", Some("carol/c0")).unwrap();
    b.ok(
        "op",
        Kind::FundsDeposit,
        json!({"account": "pay", "currency": "USD", "amount_micros": "1000000"}),
    );
    b
}

#[test]
fn a_grandchild_pays_a_direct_reach_grandparent_nothing() {
    let mut b = reach_world();
    // The child owes the base: 1% fee (20), the base's royalty 0.99 × 10% = 198 raised to its
    // 300 floor, the rest to bob.
    let child = b.ok(
        "op",
        Kind::UsageReceipt,
        call("u1", "bob/child", 0, json!([])),
    );
    assert_eq!(
        legs_of(&b.state, child),
        vec![
            leg("pay", -2000, Role::Charge, "bob/child"),
            leg("@protocol", 20, Role::ProtocolFee, "bob/child"),
            leg("acme", 300, Role::Royalty, "acme/base"),
            leg("bob", 1680, Role::OwnerShare, "bob/child"),
        ]
    );
    // The grandchild owes its parent (0.99 × 5% = 99) and nothing to the base, neither the
    // share nor the floor.
    let grandchild = b.ok(
        "op",
        Kind::UsageReceipt,
        call("u2", "carol/grandchild", 0, json!([])),
    );
    assert_eq!(
        legs_of(&b.state, grandchild),
        vec![
            leg("pay", -2000, Role::Charge, "carol/grandchild"),
            leg("@protocol", 20, Role::ProtocolFee, "carol/grandchild"),
            leg("bob", 99, Role::Royalty, "bob/child"),
            leg("carol", 1881, Role::OwnerShare, "carol/grandchild"),
        ]
    );
    assert_eq!(
        b.state
            .charge_for("carol/grandchild", 0)
            .unwrap()
            .floors_micros,
        0
    );
    assert_eq!(b.state.balance("acme", "USD"), 300);
    check_books(
        &b.state,
        &BTreeMap::from([("USD".to_string(), 1_000_000)]),
        &BTreeMap::new(),
    );
    assert!(b.replayed() == b.state);
}

#[test]
fn a_receipt_over_its_maximum_royalty_is_refused_and_posts_nothing() {
    let mut b = reach_world();
    let before = summary(&b.state);
    let over = |usage_id: &str, model: &str, max: u32| {
        let mut body = call(usage_id, model, 0, json!([]));
        body["max_royalty_bps"] = json!(max);
        body
    };
    // The child's stack is the base's 10%; the grandchild's only the child's 5%.
    let err = b
        .submit("op", Kind::UsageReceipt, over("u1", "bob/child", 999))
        .unwrap_err();
    assert_eq!(err.code(), "E_USE_DENIED");
    let msg = err.to_string();
    for part in [
        "1000 bps",
        "maximum of 999 bps",
        "acme/base 1000 bps (licence acme/direct)",
        "(clause: royalty_bps)",
    ] {
        assert!(msg.contains(part), "{msg} should name {part}");
    }
    let err = b
        .submit(
            "op",
            Kind::UsageReceipt,
            over("u2", "carol/grandchild", 499),
        )
        .unwrap_err();
    assert_eq!(err.code(), "E_USE_DENIED");
    assert!(
        err.to_string()
            .contains("bob/child 500 bps (licence bob/r5)"),
        "{err}"
    );
    assert_eq!(summary(&b.state), before, "a refused receipt posts nothing");
    assert_eq!(b.state.balance("pay", "USD"), 1_000_000);
    // At the maximum: charged, and the receipt keeps the maximum it was accepted under.
    let at = b.ok(
        "op",
        Kind::UsageReceipt,
        over("u3", "carol/grandchild", 500),
    );
    assert_eq!(b.state.receipt(at).unwrap().charge_micros, 2000);
    b.ok("op", Kind::UsageReceipt, over("u4", "bob/child", 1000));
    assert!(b.replayed() == b.state);
}

#[test]
fn small_prices_pay_the_protocol_fee() {
    let mut b = small_world();
    b.ok(
        "op",
        Kind::FundsDeposit,
        json!({"account": "pay", "currency": "USD", "amount_micros": "100000"}),
    );
    for (n, price) in [1u128, 2, 20, 99, 100, 101, 150].into_iter().enumerate() {
        let lic = format!("own/tiny{n}");
        let model = format!("own/tiny{n}");
        b.ok("own", Kind::LicenseDefine, license(&lic, 0, 0, price, 0));
        b.ok(
            "own",
            Kind::ModelRegister,
            json!({"model_id": model, "name": "m", "license_id": lic}),
        );
        let fee_before = b.state.balance("@protocol", "USD");
        let own_before = b.state.balance("own", "USD");
        let r = b.ok(
            "op",
            Kind::UsageReceipt,
            receipt(&format!("tiny{n}"), &model, "pay", json!([])),
        );
        let fee = b.state.balance("@protocol", "USD") - fee_before;
        let own = b.state.balance("own", "USD") - own_before;
        // 1% of the price, rounded up.
        assert_eq!(fee, (price as i128 + 99) / 100, "price {price}");
        assert_eq!(fee + own, price as i128, "price {price}: conserved");
        assert!(b.state.receipt(r).is_some());
    }
}
