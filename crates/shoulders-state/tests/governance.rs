//! Governance: disputes with escrow and rulings, reviewed datasets, quotas and do-not-train
//! marks. Each rule that moves money has a test in which the attack or the ruled-against party
//! earns nothing, and a property test checks conservation under random disputes and rulings.

use proptest::prelude::*;
use serde_json::{json, Value};
use shoulders_record::{sign_record, ActorKey, Body, Kind, SignedRecord};
use shoulders_state::governance::escrow_account;
use shoulders_state::money::{EXTERNAL, UNCLAIMED};
use shoulders_state::{DisputeStatus, DisputeTarget, Reject, ReviewState, Role, State};
use std::collections::BTreeMap;

const T0: u64 = 1_767_225_600_000;

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
            ts_ms: T0,
        }
    }

    fn sign_at(&mut self, who: &str, kind: Kind, body: Value, ts_ms: u64) -> SignedRecord {
        let n = self.keys.len() as u8;
        let key = self
            .keys
            .entry(who.to_string())
            .or_insert_with(|| ActorKey::from_seed([n + 1; 32]));
        self.next_id += 1;
        let body = Body::from_value(kind, body).unwrap_or_else(|e| panic!("{kind}: {e}"));
        sign_record(
            key,
            "test.example/log",
            &format!("r-{}", self.next_id),
            ts_ms,
            body,
        )
        .unwrap()
    }

    fn submit_at(&mut self, who: &str, kind: Kind, body: Value, ts_ms: u64) -> Result<u64, Reject> {
        let rec = self.sign_at(who, kind, body, ts_ms);
        let before = (self.state.size(), self.state.accounts());
        let index = self.state.size();
        match self.state.apply(index, [0; 32], &rec) {
            Ok(_) => {
                self.accepted.push(rec);
                Ok(index)
            }
            Err(e) => {
                assert_eq!(
                    before,
                    (self.state.size(), self.state.accounts()),
                    "a refused record changed the state"
                );
                Err(e)
            }
        }
    }

    fn submit(&mut self, who: &str, kind: Kind, body: Value) -> Result<u64, Reject> {
        self.ts_ms += 1;
        self.submit_at(who, kind, body, self.ts_ms)
    }

    fn ok(&mut self, who: &str, kind: Kind, body: Value) -> u64 {
        self.submit(who, kind, body.clone())
            .unwrap_or_else(|e| panic!("{who} {kind} {body}: {e}"))
    }

    fn code(&mut self, who: &str, kind: Kind, body: Value) -> &'static str {
        match self.submit(who, kind, body.clone()) {
            Ok(i) => panic!("{who} {kind} {body} was accepted at {i}"),
            Err(e) => e.code(),
        }
    }

    fn actor(&mut self, handle: &str, payout: bool) {
        let mut body = json!({"handle": handle, "name": handle});
        if payout {
            body["payout_address"] = json!(format!("acct:{handle}"));
        }
        self.ok(handle, Kind::ActorRegister, body);
    }

    fn contribute(&mut self, who: &str, dataset: &str, content: u64) -> u64 {
        self.ok(
            who,
            Kind::DataContribute,
            json!({"dataset_id": dataset, "content_hash": hash(content), "byte_size": 100,
                   "token_count": 100}),
        )
    }

    /// Settle one call of `model` naming `attribution` (`(dataset, contribution, ppm)`).
    fn receipt(&mut self, model: &str, attribution: &[(&str, u64, u32)]) -> Result<u64, Reject> {
        self.next_id += 1;
        let attribution: Vec<Value> = attribution
            .iter()
            .map(|(d, c, p)| json!({"dataset_id": d, "contribution": c, "ppm": p}))
            .collect();
        self.submit(
            "op",
            Kind::UsageReceipt,
            json!({"usage_id": format!("u{}", self.next_id), "model_id": model, "payer": "payer",
                   "use_category": "commercial", "input_tokens": 1, "output_tokens": 0,
                   "output_hash": hash(9_999), "attribution": attribution}),
        )
    }

    fn balance(&self, account: &str) -> i128 {
        self.state.balance(account, "USD")
    }

    fn unclaimed(&self, who: &str) -> i128 {
        self.state
            .statement(who, None, None)
            .totals
            .iter()
            .find(|t| t.currency == "USD")
            .map_or(0, |t| t.unclaimed_micros)
    }

    fn check(&self) {
        for t in self.state.totals() {
            assert!(t.conserved, "{t:?}");
        }
        for a in self.state.accounts() {
            assert!(a.account == EXTERNAL || a.balance_micros >= 0, "{a:?}");
        }
        let mut replay = State::new();
        for (i, rec) in self.accepted.iter().enumerate() {
            replay.apply(i as u64, [0; 32], rec).unwrap();
        }
        assert_eq!(replay, self.state, "replay differs");
        let rows = self.state.all_entity_rows();
        let loaded = State::from_rows(
            rows.iter()
                .map(|r| (r.kind.to_string(), r.key.clone(), r.value.clone())),
        )
        .unwrap();
        assert_eq!(
            loaded.all_entity_rows(),
            rows,
            "stored rows do not round-trip"
        );
        // Derived indexes are rebuilt on load exactly as the fold keeps them.
        for d in self.state.datasets() {
            assert_eq!(
                loaded.attribution_excluded(&d.dataset_id),
                self.state.attribution_excluded(&d.dataset_id)
            );
            assert_eq!(
                loaded.dataset(&d.dataset_id).unwrap().tdm_reserved,
                d.tdm_reserved
            );
        }
        for d in self.state.disputes() {
            assert_eq!(
                loaded.open_dispute(&d.target()).map(|x| x.id),
                self.state.open_dispute(&d.target()).map(|x| x.id)
            );
        }
    }
}

fn hash(n: u64) -> String {
    format!("sha256:{n:064x}")
}

/// Operator `op` (no fee), payer `payer` with 1,000,000 USD micro-units, dataset owner `owner`
/// with `owner/d` (extra dataset fields in `dataset`), and model `owner/m` trained on it,
/// priced 1,000 per call with 50% to its data pool.
fn world(dataset: Value, bond: Option<Value>) -> Book {
    let mut b = Book::new();
    b.actor("op", true);
    let mut config = json!({"operator": "op", "protocol_fee_bps": 0});
    if let Some(bond) = bond {
        config["dispute_bond"] = bond;
    }
    b.ok("op", Kind::LedgerConfig, config);
    for a in ["payer", "owner", "plagiarist", "author", "troll"] {
        b.actor(a, a != "plagiarist");
    }
    for a in ["payer", "troll", "author"] {
        b.ok(
            "op",
            Kind::FundsDeposit,
            json!({"account": a, "currency": "USD", "amount_micros": "1000000"}),
        );
    }
    b.ok(
        "owner",
        Kind::LicenseDefine,
        json!({"license_id": "owner/paid", "name": "paid", "terms": {
            "commercial_use": true, "derivatives": "allowed", "attribution_required": false,
            "share_alike": false, "royalty_bps": 0, "data_share_bps": 5000, "currency": "USD",
            "price_per_call_micros": "1000", "price_per_1k_output_tokens_micros": "0",
            "registration_fee_micros": "0"}}),
    );
    let mut d = json!({"dataset_id": "owner/d", "name": "d", "access": "open"});
    for (k, v) in dataset.as_object().unwrap() {
        d[k] = v.clone();
    }
    b.ok("owner", Kind::DatasetCreate, d);
    b
}

fn register_model(b: &mut Book) {
    b.ok(
        "owner",
        Kind::ModelRegister,
        json!({"model_id": "owner/m", "name": "m", "datasets": ["owner/d"],
               "license_id": "owner/paid"}),
    );
}

fn open(b: &mut Book, who: &str, contribution: u64, original: Option<u64>) -> Result<u64, Reject> {
    let mut body = json!({"contribution": contribution, "evidence": [hash(77)],
                          "statement": "this copies my text"});
    if let Some(o) = original {
        body["original"] = json!(o);
    }
    b.submit(who, Kind::DisputeOpen, body)
}

fn rule(b: &mut Book, who: &str, dispute: u64, verdict: &str) -> Result<u64, Reject> {
    b.submit(
        who,
        Kind::DisputeRule,
        json!({"dispute": dispute, "verdict": verdict, "reason": "compared the texts"}),
    )
}

#[test]
fn plagiarism_upheld_moves_escrow_and_future_credit_to_the_original() {
    let mut b = world(json!({}), None);
    // The plagiarist contributes the author's text first (prior possession); the author later.
    let p = b.contribute("plagiarist", "owner/d", 1);
    let a = b.contribute("author", "owner/d", 2);
    register_model(&mut b);

    // Before the dispute the plagiarist's share is paid (held unclaimed: no payout address).
    b.receipt("owner/m", &[("owner/d", p, 1_000_000)]).unwrap();
    assert_eq!(b.unclaimed("plagiarist"), 500);

    let d = open(&mut b, "author", p, Some(a)).unwrap();
    assert_eq!(
        b.state
            .open_dispute(&DisputeTarget::Contribution(p))
            .unwrap()
            .id,
        d
    );
    // While open, the plagiarist's earnings go to the dispute's escrow.
    b.receipt("owner/m", &[("owner/d", p, 1_000_000)]).unwrap();
    b.receipt("owner/m", &[("owner/d", p, 1_000_000)]).unwrap();
    assert_eq!(b.balance(&escrow_account(d)), 1000);
    assert_eq!(
        b.unclaimed("plagiarist"),
        500,
        "nothing new reaches the respondent"
    );
    let st = b.state.statement("plagiarist", None, None);
    assert!(st
        .by_source
        .iter()
        .any(|s| s.held_in_escrow == Some(d) && s.amount_micros == 1000));

    // Only the operator rules (no policy); the owner may not.
    assert_eq!(
        rule(&mut b, "owner", d, "upheld").unwrap_err().code(),
        "E_NOT_ARBITER"
    );
    let author_before = b.balance("author");
    rule(&mut b, "op", d, "upheld").unwrap();
    assert_eq!(b.balance(&escrow_account(d)), 0);
    assert_eq!(
        b.balance("author") - author_before,
        1000 + 500,
        "escrow awarded, and the pre-dispute earnings clawed back"
    );
    assert_eq!(
        b.unclaimed("plagiarist"),
        0,
        "past credit goes to the original too"
    );
    let dispute = b.state.dispute(d).unwrap();
    assert_eq!(dispute.status, DisputeStatus::Upheld);
    assert_eq!(dispute.escrow_to.as_deref(), Some("author"));
    assert_eq!(dispute.clawed_back_micros["USD"], "500");
    assert!(dispute.clawback_short_micros.is_empty());

    // Future receipts naming the plagiarised contribution credit the original.
    let before = b.balance("author");
    b.receipt("owner/m", &[("owner/d", p, 1_000_000)]).unwrap();
    assert_eq!(b.balance("author") - before, 500);
    assert_eq!(
        b.unclaimed("plagiarist"),
        0,
        "the plagiarist earns nothing more"
    );
    // It stays attributable (its credit follows the redirection), and cannot be re-disputed.
    assert!(b.state.attribution_excluded("owner/d").is_empty());
    assert_eq!(
        open(&mut b, "troll", p, None).unwrap_err().code(),
        "E_DISPUTE_INVALID"
    );
    assert_eq!(
        rule(&mut b, "op", d, "dismissed").unwrap_err().code(),
        "E_DISPUTE_CLOSED"
    );
    b.check();
}

#[test]
fn a_clawback_takes_what_is_left_and_records_the_rest() {
    let mut b = world(json!({}), None);
    // The copier has a payout address, is paid, and withdraws part before the ruling.
    b.ok(
        "troll",
        Kind::ActorUpdate,
        json!({"payout_address": "acct:troll"}),
    );
    let copy = b.contribute("troll", "owner/d", 1);
    let original = b.contribute("author", "owner/d", 2);
    register_model(&mut b);
    for _ in 0..3 {
        b.receipt("owner/m", &[("owner/d", copy, 1_000_000)])
            .unwrap();
    }
    // 1,500 earned; it also holds 1,000,000 deposited, of which it withdraws all but 200.
    b.ok(
        "troll",
        Kind::FundsWithdraw,
        json!({"currency": "USD", "amount_micros": (1_000_000 + 1_500 - 200).to_string()}),
    );
    let d = open(&mut b, "author", copy, Some(original)).unwrap();
    let author_before = b.balance("author");
    rule(&mut b, "op", d, "upheld").unwrap();
    let dispute = b.state.dispute(d).unwrap();
    assert_eq!(dispute.clawed_back_micros["USD"], "200");
    assert_eq!(dispute.clawback_short_micros["USD"], "1300");
    assert_eq!(b.balance("troll"), 0, "never below zero");
    assert_eq!(b.balance("author") - author_before, 200);
    b.check();
}

#[test]
fn dismissed_dispute_releases_escrow_and_forfeits_the_bond() {
    let bond = json!({"currency": "USD", "amount_micros": "300"});
    let mut b = world(json!({}), Some(bond.clone()));
    let a = b.contribute("author", "owner/d", 2);
    register_model(&mut b);
    // A baseless dispute must state the bond exactly, and costs it.
    let body = |bond: Option<Value>| {
        let mut v = json!({"contribution": a, "evidence": [hash(5)], "statement": "mine"});
        if let Some(bond) = bond {
            v["bond"] = bond;
        }
        v
    };
    assert_eq!(
        b.code("troll", Kind::DisputeOpen, body(None)),
        "E_DISPUTE_BOND"
    );
    assert_eq!(
        b.code(
            "troll",
            Kind::DisputeOpen,
            body(Some(json!({"currency": "USD", "amount_micros": "1"})))
        ),
        "E_DISPUTE_BOND"
    );
    assert_eq!(
        b.code("author", Kind::DisputeOpen, body(Some(bond.clone()))),
        "E_DISPUTE_INVALID",
        "nobody disputes their own contribution"
    );
    let d = b.ok("troll", Kind::DisputeOpen, body(Some(bond.clone())));
    assert_eq!(b.balance("troll"), 1_000_000 - 300);
    assert_eq!(
        b.code("payer", Kind::DisputeOpen, body(Some(bond))),
        "E_DISPUTE_ALREADY_OPEN"
    );
    let author_before = b.balance("author");
    b.receipt("owner/m", &[("owner/d", a, 1_000_000)]).unwrap();
    assert_eq!(b.balance("author"), author_before, "held while disputed");
    assert_eq!(b.balance(&escrow_account(d)), 300 + 500);
    rule(&mut b, "op", d, "dismissed").unwrap();
    assert_eq!(
        b.balance("author") - author_before,
        500 + 300,
        "released, plus the bond"
    );
    assert_eq!(
        b.balance("troll"),
        1_000_000 - 300,
        "the troll earns nothing and loses the bond"
    );
    assert_eq!(b.balance(&escrow_account(d)), 0);
    let legs: Vec<Role> = b.state.receipt_legs(d).iter().map(|l| l.role).collect();
    assert!(legs.is_empty(), "a dispute is not a receipt");
    assert!(b
        .state
        .legs()
        .iter()
        .any(|l| l.role == Role::EscrowRelease && l.account.as_ref() == "author"));
    b.check();
}

#[test]
fn takedown_excludes_at_once_and_pays_nobody() {
    let mut b = world(json!({"disputes": {"arbiter": "owner"}}), None);
    let junk = b.contribute("plagiarist", "owner/d", 3);
    let good = b.contribute("author", "owner/d", 4);
    register_model(&mut b);
    let d = open(&mut b, "troll", junk, None).unwrap();
    // The dataset's policy names its owner as arbiter; the operator may not rule.
    assert_eq!(
        rule(&mut b, "op", d, "upheld").unwrap_err().code(),
        "E_NOT_ARBITER"
    );
    b.receipt("owner/m", &[("owner/d", junk, 1_000_000)])
        .unwrap();
    rule(&mut b, "owner", d, "upheld").unwrap();
    assert_eq!(
        b.state
            .attribution_excluded("owner/d")
            .into_iter()
            .collect::<Vec<_>>(),
        vec![junk]
    );
    // The held 500 goes to the claimant (no original named); later receipts naming the
    // taken-down contribution credit nobody: its weight is dropped.
    assert_eq!(b.balance("troll"), 1_000_000 + 500);
    let (owner_before, author_before) = (b.balance("owner"), b.balance("author"));
    b.receipt(
        "owner/m",
        &[("owner/d", junk, 500_000), ("owner/d", good, 500_000)],
    )
    .unwrap();
    assert_eq!(
        b.balance("author") - author_before,
        500,
        "the remaining evidence takes the pool"
    );
    assert_eq!(b.balance("owner") - owner_before, 500);
    let owner_before = b.balance("owner");
    b.receipt("owner/m", &[("owner/d", junk, 1_000_000)])
        .unwrap();
    assert_eq!(
        b.balance("owner") - owner_before,
        1000,
        "no evidence left: the owner's"
    );
    assert_eq!(b.unclaimed("plagiarist"), 0);
    b.check();
}

#[test]
fn an_owner_who_is_a_party_does_not_rule() {
    let mut b = world(json!({"disputes": {"arbiter": "owner"}}), None);
    let own = b.contribute("owner", "owner/d", 5);
    let theirs = b.contribute("author", "owner/d", 6);
    // The owner's own contribution disputed: the operator rules.
    let d1 = open(&mut b, "author", own, None).unwrap();
    assert_eq!(
        rule(&mut b, "owner", d1, "dismissed").unwrap_err().code(),
        "E_NOT_ARBITER"
    );
    rule(&mut b, "op", d1, "dismissed").unwrap();
    // The owner as claimant: the operator rules too.
    let d2 = b
        .submit(
            "owner",
            Kind::DisputeOpen,
            json!({"contribution": theirs, "evidence": [hash(1)], "statement": "spam"}),
        )
        .unwrap();
    assert_eq!(
        rule(&mut b, "owner", d2, "upheld").unwrap_err().code(),
        "E_NOT_ARBITER"
    );
    rule(&mut b, "op", d2, "upheld").unwrap();
    b.check();
}

#[test]
fn model_dispute_escrows_owner_earnings_and_redirects_them() {
    let mut b = world(json!({}), None);
    register_model(&mut b);
    let d = b
        .submit(
            "author",
            Kind::DisputeOpen,
            json!({"model_id": "owner/m", "evidence": [hash(8)],
                   "statement": "these are my weights, re-uploaded"}),
        )
        .unwrap();
    let owner_before = b.balance("owner");
    b.receipt("owner/m", &[]).unwrap();
    assert_eq!(b.balance("owner"), owner_before, "held while disputed");
    assert_eq!(b.balance(&escrow_account(d)), 1000);
    let author_before = b.balance("author");
    rule(&mut b, "op", d, "upheld").unwrap();
    assert_eq!(b.balance("author") - author_before, 1000);
    b.receipt("owner/m", &[]).unwrap();
    assert_eq!(
        b.balance("author") - author_before,
        2000,
        "future owner earnings follow"
    );
    assert_eq!(b.balance("owner"), owner_before);
    b.check();
}

#[test]
fn reviewed_dataset_pending_and_rejected_earn_nothing() {
    let mut b = world(json!({"review": true}), None);
    let own = b.contribute("owner", "owner/d", 10);
    let pending = b.contribute("author", "owner/d", 11);
    let spam = b.contribute("troll", "owner/d", 12);
    register_model(&mut b);
    assert!(
        b.state.contribution(own).unwrap().review.is_none(),
        "the owner needs no review"
    );
    assert_eq!(
        b.state
            .attribution_excluded("owner/d")
            .into_iter()
            .collect::<Vec<_>>(),
        vec![pending, spam]
    );
    let author_before = b.balance("author");
    b.receipt("owner/m", &[("owner/d", pending, 1_000_000)])
        .unwrap();
    assert_eq!(b.balance("author"), author_before, "pending earns nothing");

    let review = |c: u64, decision: &str| json!({"contribution": c, "decision": decision});
    assert_eq!(
        b.code(
            "author",
            Kind::ContributionReview,
            review(pending, "accept")
        ),
        "E_NOT_OWNER"
    );
    assert_eq!(
        b.code("owner", Kind::ContributionReview, review(own, "accept")),
        "E_REVIEW_INVALID"
    );
    let e = Body::from_value(
        Kind::ContributionReview,
        json!({"contribution": spam, "decision": "reject", "quality": 3}),
    )
    .unwrap_err();
    assert_eq!(
        e.code(),
        "E_FIELD_INVALID",
        "a rejection carries no quality score"
    );
    b.ok(
        "owner",
        Kind::ContributionReview,
        json!({"contribution": pending, "decision": "accept", "quality": 90}),
    );
    b.ok("owner", Kind::ContributionReview, review(spam, "reject"));
    assert_eq!(
        b.code("owner", Kind::ContributionReview, review(spam, "accept")),
        "E_REVIEW_INVALID"
    );
    let c = b.state.contribution(pending).unwrap();
    assert_eq!(c.review.as_ref().unwrap().state, ReviewState::Accepted);
    assert_eq!(c.review.as_ref().unwrap().quality, Some(90));
    assert_eq!(
        b.state
            .attribution_excluded("owner/d")
            .into_iter()
            .collect::<Vec<_>>(),
        vec![spam]
    );
    b.receipt(
        "owner/m",
        &[("owner/d", pending, 500_000), ("owner/d", spam, 500_000)],
    )
    .unwrap();
    assert_eq!(
        b.balance("author") - author_before,
        500,
        "accepted: the whole pool"
    );
    assert_eq!(b.balance("troll"), 1_000_000, "rejected: nothing");
    b.check();
}

#[test]
fn a_dropped_entry_outside_the_lineage_is_still_refused() {
    let mut b = world(json!({}), None);
    b.ok(
        "author",
        Kind::DatasetCreate,
        json!({"dataset_id": "author/rev", "name": "r", "access": "open", "review": true}),
    );
    let pending = b.contribute("troll", "author/rev", 40);
    register_model(&mut b);
    let e = b
        .receipt("owner/m", &[("author/rev", pending, 1_000_000)])
        .unwrap_err();
    assert_eq!(e.code(), "E_ATTRIBUTION_INVALID", "{e}");
    b.check();
}

#[test]
fn a_copy_of_pending_content_in_another_dataset_is_credited_to_itself() {
    let mut b = world(json!({"review": true}), None);
    b.ok(
        "author",
        Kind::DatasetCreate,
        json!({"dataset_id": "author/open", "name": "o", "access": "open"}),
    );
    let pending = b.contribute("troll", "owner/d", 20);
    let copy = b.contribute("author", "author/open", 20);
    b.ok(
        "owner",
        Kind::ModelRegister,
        json!({"model_id": "owner/m", "name": "m", "datasets": ["author/open"],
               "license_id": "owner/paid"}),
    );
    let before = b.balance("author");
    b.receipt("owner/m", &[("author/open", copy, 1_000_000)])
        .unwrap();
    assert_eq!(
        b.balance("author") - before,
        500,
        "an unreviewed earlier copy takes nothing"
    );
    assert_eq!(b.balance("troll"), 1_000_000);
    let _ = pending;
    b.check();
}

#[test]
fn quotas_refuse_with_a_clear_code_and_reset_per_window() {
    let window_ms = 3_600_000u64;
    let mut b = world(
        json!({"quota": {"window_ms": window_ms, "max_count": 2, "max_bytes": 250}}),
        None,
    );
    let t = (T0 / window_ms + 1) * window_ms; // the start of a window
    let body = |n: u64, size: u64| {
        json!({"dataset_id": "owner/d", "content_hash": hash(n), "byte_size": size,
               "token_count": size})
    };
    b.submit_at("author", Kind::DataContribute, body(1, 100), t)
        .unwrap();
    b.submit_at("author", Kind::DataContribute, body(2, 100), t + 1)
        .unwrap();
    let e = b
        .submit_at("author", Kind::DataContribute, body(3, 10), t + 2)
        .unwrap_err();
    assert_eq!(e.code(), "E_DATASET_QUOTA_EXCEEDED");
    assert!(e.to_string().contains("resets at"), "{e}");
    // Another contributor has its own quota; the owner none.
    let e = b
        .submit_at("troll", Kind::DataContribute, body(4, 251), t + 3)
        .unwrap_err();
    assert_eq!(e.code(), "E_DATASET_QUOTA_EXCEEDED");
    for i in 0..5 {
        b.submit_at("owner", Kind::DataContribute, body(10 + i, 200), t + 4)
            .unwrap();
    }
    // The next window resets; back-dating into the previous one counts in the current one.
    b.submit_at("author", Kind::DataContribute, body(5, 100), t + window_ms)
        .unwrap();
    b.submit_at("author", Kind::DataContribute, body(6, 100), t + 5)
        .unwrap();
    assert_eq!(
        b.submit_at("author", Kind::DataContribute, body(7, 10), t + 6)
            .unwrap_err()
            .code(),
        "E_DATASET_QUOTA_EXCEEDED"
    );
    b.check();
}

#[test]
fn do_not_train_marks_refuse_registration_and_name_the_contributions() {
    let mut b = world(json!({"review": true}), None);
    let reserved = b.ok(
        "author",
        Kind::DataContribute,
        json!({"dataset_id": "owner/d", "content_hash": hash(30), "byte_size": 10,
               "token_count": 10, "tdm_reservation": true}),
    );
    let e = b
        .submit(
            "owner",
            Kind::ModelRegister,
            json!({"model_id": "owner/m", "name": "m", "datasets": ["owner/d"]}),
        )
        .unwrap_err();
    assert_eq!(e.code(), "E_TDM_RESERVED");
    assert!(e.to_string().contains(&format!("[{reserved}]")), "{e}");
    // Once rejected from the dataset, it no longer holds it.
    b.ok(
        "owner",
        Kind::ContributionReview,
        json!({"contribution": reserved, "decision": "reject"}),
    );
    register_model(&mut b);
    b.check();
}

/// Random disputes (some bonded), rulings by the right and wrong arbiters, reviews and
/// receipts naming any contribution: money is conserved at every step, escrow accounts hold
/// exactly their open disputes' money and are empty once ruled, ruled-against parties earn
/// nothing after the ruling, and replay and stored rows give the same state.
fn random_run(seed: u64, steps: usize) {
    let mut rng = seed;
    let mut next = move || {
        rng = rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let bonded = next() % 2 == 0;
    let bond = bonded.then(|| json!({"currency": "USD", "amount_micros": "7"}));
    let arbiter = if next() % 2 == 0 { "owner" } else { "operator" };
    let review = next() % 2 == 0;
    let mut b = world(
        json!({"review": review, "disputes": {"arbiter": arbiter, "bond": bond}}),
        None,
    );
    let people = ["owner", "plagiarist", "author", "troll", "payer"];
    let mut contributions = Vec::new();
    for i in 0..6u64 {
        let who = people[(next() % 4) as usize];
        // Some contents repeat, so copies exist.
        contributions.push(b.contribute(who, "owner/d", next() % 4 + i % 2));
    }
    register_model(&mut b);
    let mut disputes: Vec<u64> = Vec::new();
    // The exclusions after every step, by log size: `attribution_excluded_at` must give them
    // back exactly at the end (what a receipt audit applies).
    let mut excluded_by_size = vec![(b.state.size(), b.state.attribution_excluded("owner/d"))];
    for _ in 0..steps {
        let c = contributions[(next() % contributions.len() as u64) as usize];
        match next() % 5 {
            0 => {
                let who = people[(next() % 5) as usize];
                let mut body = json!({"contribution": c, "evidence": [hash(next() % 9)],
                                      "statement": "copied"});
                let original = contributions[(next() % 6) as usize];
                if original != c && next() % 2 == 0 {
                    body["original"] = json!(original);
                }
                if bonded {
                    body["bond"] = json!({"currency": "USD", "amount_micros": "7"});
                }
                if let Ok(d) = b.submit(who, Kind::DisputeOpen, body) {
                    disputes.push(d);
                }
            }
            1 if !disputes.is_empty() => {
                let d = disputes[(next() % disputes.len() as u64) as usize];
                let who = ["op", "owner", "troll"][(next() % 3) as usize];
                let verdict = if next() % 2 == 0 {
                    "upheld"
                } else {
                    "dismissed"
                };
                let _ = rule(&mut b, who, d, verdict);
            }
            2 if review => {
                let decision = if next() % 3 == 0 { "reject" } else { "accept" };
                let _ = b.submit(
                    "owner",
                    Kind::ContributionReview,
                    json!({"contribution": c, "decision": decision}),
                );
            }
            _ => {
                let other = contributions[(next() % 6) as usize];
                let attribution: Vec<(&str, u64, u32)> = if c == other {
                    vec![("owner/d", c, 1_000_000)]
                } else {
                    vec![("owner/d", c, 400_000), ("owner/d", other, 600_000)]
                };
                let before: Vec<(i128, i128)> = people
                    .iter()
                    .map(|p| (b.balance(p), b.unclaimed(p)))
                    .collect();
                b.receipt("owner/m", &attribution).unwrap();
                // A taken-down, pending or rejected contributor (no other stake) gains nothing.
                for (p, (bal, unc)) in people.iter().zip(before) {
                    let stake = b.state.contributions().any(|x| {
                        x.contributor == *p && shoulders_state_creditable(&b.state, x.index)
                    });
                    let is_owner_or_payer = *p == "owner" || *p == "payer";
                    if !stake && !is_owner_or_payer {
                        assert_eq!((b.balance(p), b.unclaimed(p)), (bal, unc), "{p} earned");
                    }
                }
            }
        }
        // Escrow accounts hold money only for open disputes.
        for d in b.state.disputes() {
            let held = b.balance(&escrow_account(d.id));
            if d.status != DisputeStatus::Open {
                assert_eq!(held, 0, "dispute {} is closed but holds {held}", d.id);
            }
        }
        for t in b.state.totals() {
            assert!(t.conserved, "{t:?}");
        }
        excluded_by_size.push((b.state.size(), b.state.attribution_excluded("owner/d")));
    }
    for (size, excluded) in excluded_by_size {
        assert_eq!(
            b.state.attribution_excluded_at("owner/d", size),
            excluded,
            "exclusions as of log size {size}"
        );
    }
    assert!(b.state.balance(UNCLAIMED, "USD") >= 0);
    b.check();
}

/// Whether anyone could be credited for contribution `index` now: not pending or rejected,
/// not taken down, and not redirected away.
fn shoulders_state_creditable(s: &State, index: u64) -> bool {
    let c = s.contribution(index).unwrap();
    let in_review = c
        .review
        .as_ref()
        .is_some_and(|r| r.state != ReviewState::Accepted);
    !in_review && c.ruled_against.is_none()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn escrow_is_conserved_under_random_disputes_and_rulings(seed in any::<u64>()) {
        random_run(seed, 60);
    }
}
