//! Licence flow-down through the fold: compatible combinations are accepted, incompatible ones
//! refused with a stable code naming the conflicting source and clause, and use checks answer
//! with reasons and price.

use serde_json::{json, Value};
use shoulders_license::preset;
use shoulders_record::{sign_record, ActorKey, Body, Kind};
use shoulders_state::{Reject, State};

const TS: u64 = 1_767_225_600_000;

struct World {
    state: State,
    keys: Vec<(&'static str, ActorKey)>,
    seq: u64,
}

impl World {
    fn new() -> World {
        let mut w = World {
            state: State::new(),
            keys: Vec::new(),
            seq: 0,
        };
        for (i, h) in ["alice", "bob", "carol"].into_iter().enumerate() {
            w.keys.push((h, ActorKey::from_seed([i as u8 + 1; 32])));
            w.ok(h, Kind::ActorRegister, json!({"handle": h, "name": h}));
        }
        w
    }

    fn submit(&mut self, who: &str, kind: Kind, body: Value) -> Result<(), Reject> {
        let key = &self.keys.iter().find(|(h, _)| *h == who).unwrap().1;
        self.seq += 1;
        let rec = sign_record(
            key,
            "test.example/log",
            &format!("r{}", self.seq),
            TS + self.seq,
            Body::from_value(kind, body).unwrap(),
        )
        .unwrap();
        self.state
            .apply(self.state.size(), [0; 32], &rec)
            .map(|_| ())
    }

    fn ok(&mut self, who: &str, kind: Kind, body: Value) {
        self.submit(who, kind, body.clone())
            .unwrap_or_else(|e| panic!("{kind} {body}: {e}"));
    }

    /// Define licence `id` from a preset, with optional overrides of its terms.
    fn license(&mut self, who: &str, id: &str, preset_name: &str, overrides: Value) {
        let (name, spdx, terms) = preset(preset_name).unwrap();
        let mut terms = serde_json::to_value(terms).unwrap();
        for (k, v) in overrides.as_object().unwrap() {
            terms[k] = v.clone();
        }
        self.ok(
            who,
            Kind::LicenseDefine,
            json!({"license_id": id, "name": name, "spdx_id": spdx, "terms": terms}),
        );
    }

    fn dataset(&mut self, who: &str, id: &str, license: Option<&str>) {
        let mut b = json!({"dataset_id": id, "name": id, "access": "open"});
        if let Some(l) = license {
            b["license_id"] = json!(l);
        }
        self.ok(who, Kind::DatasetCreate, b);
    }

    fn model(
        &mut self,
        who: &str,
        id: &str,
        parents: &[(&str, &str)],
        datasets: &[&str],
        license: Option<&str>,
    ) -> Result<(), Reject> {
        let mut b = json!({"model_id": id, "name": id});
        if !parents.is_empty() {
            b["parents"] = parents
                .iter()
                .map(|(p, r)| json!({"model_id": p, "relation": r}))
                .collect();
        }
        if !datasets.is_empty() {
            b["datasets"] = json!(datasets);
        }
        if let Some(l) = license {
            b["license_id"] = json!(l);
        }
        self.submit(who, Kind::ModelRegister, b)
    }
}

fn refused(result: Result<(), Reject>, code: &str, names: &str) {
    let err = result.expect_err(code);
    assert_eq!(err.code(), code, "{err}");
    assert!(err.to_string().contains(names), "{err} should name {names}");
    assert!(
        err.to_string().contains("clause"),
        "{err} should name the clause"
    );
}

/// A world where alice publishes one parent model under licence `preset` (with overrides).
fn parent_under(preset_name: &str, overrides: Value) -> World {
    let mut w = World::new();
    w.license("alice", "alice/parent-terms", preset_name, overrides);
    w.model(
        "alice",
        "alice/parent",
        &[],
        &[],
        Some("alice/parent-terms"),
    )
    .unwrap();
    for p in ["apache-2.0", "cc-by-sa-4.0", "cc-by-nc-4.0"] {
        w.license("bob", &format!("bob/{p}"), p, json!({}));
    }
    w
}

#[test]
fn permissive_parents_allow_any_derivative() {
    let mut w = parent_under("apache-2.0", json!({}));
    w.model(
        "bob",
        "bob/child",
        &[("alice/parent", "finetune")],
        &[],
        Some("bob/apache-2.0"),
    )
    .unwrap();
    w.model(
        "bob",
        "bob/child-unlicensed",
        &[("alice/parent", "adapter")],
        &[],
        None,
    )
    .unwrap();
    let e = &w.state.model("bob/child").unwrap().effective;
    assert!(e.noncommercial_by.is_empty());
    assert!(
        e.attribution_to.contains("model alice/parent"),
        "Apache requires attribution upstream"
    );
}

#[test]
fn noncommercial_data_refuses_a_commercial_licence() {
    let mut w = World::new();
    w.license("alice", "alice/nc", "cc-by-nc-4.0", json!({}));
    w.license("bob", "bob/apache", "apache-2.0", json!({}));
    w.license("bob", "bob/nc", "cc-by-nc-4.0", json!({}));
    w.dataset("alice", "alice/nc-data", Some("alice/nc"));
    refused(
        w.model("bob", "bob/m", &[], &["alice/nc-data"], Some("bob/apache")),
        "E_LICENSE_COMMERCIAL_CONFLICT",
        "dataset alice/nc-data",
    );
    w.model("bob", "bob/m", &[], &["alice/nc-data"], Some("bob/nc"))
        .unwrap();
    // The restriction flows down two more levels and still names its origin.
    w.model("bob", "bob/m-tuned", &[("bob/m", "finetune")], &[], None)
        .unwrap();
    refused(
        w.model(
            "bob",
            "bob/m-q4",
            &[("bob/m-tuned", "quantized")],
            &[],
            Some("bob/apache"),
        ),
        "E_LICENSE_COMMERCIAL_CONFLICT",
        "dataset alice/nc-data",
    );
    let d = w
        .state
        .check_use("bob/m-tuned", "commercial", None, TS, None)
        .unwrap();
    assert!(!d.allowed);
    assert!(
        d.reasons
            .iter()
            .any(|r| r.contains("dataset alice/nc-data") && r.contains("commercial_use")),
        "{:?}",
        d.reasons
    );
    assert!(
        w.state
            .check_use("bob/m-tuned", "research", None, TS, None)
            .unwrap()
            .allowed
    );
}

#[test]
fn no_derivatives_is_refused_with_or_without_a_licence() {
    let mut w = parent_under("cc-by-nd-4.0", json!({}));
    refused(
        w.model(
            "bob",
            "bob/c",
            &[("alice/parent", "finetune")],
            &[],
            Some("bob/apache-2.0"),
        ),
        "E_LICENSE_NO_DERIVATIVES",
        "model alice/parent",
    );
    refused(
        w.model("bob", "bob/c", &[("alice/parent", "quantized")], &[], None),
        "E_LICENSE_NO_DERIVATIVES",
        "model alice/parent",
    );
}

#[test]
fn share_alike_requires_a_compatible_licence() {
    let mut w = parent_under("cc-by-sa-4.0", json!({}));
    refused(
        w.model(
            "bob",
            "bob/c",
            &[("alice/parent", "finetune")],
            &[],
            Some("bob/apache-2.0"),
        ),
        "E_LICENSE_SHARE_ALIKE",
        "model alice/parent",
    );
    w.model(
        "bob",
        "bob/c",
        &[("alice/parent", "finetune")],
        &[],
        Some("bob/cc-by-sa-4.0"),
    )
    .unwrap();
    assert!(w
        .state
        .model("bob/c")
        .unwrap()
        .effective
        .share_alike_by
        .contains("model alice/parent"));
}

#[test]
fn approval_required_needs_the_owners_grant() {
    let mut w = parent_under("apache-2.0", json!({"derivatives": "approval_required"}));
    refused(
        w.model("bob", "bob/c", &[("alice/parent", "finetune")], &[], None),
        "E_LICENSE_APPROVAL_REQUIRED",
        "model alice/parent",
    );
    // Only the owner may grant.
    let err = w.submit("carol", Kind::LicenseGrant, json!({"license_id": "alice/parent-terms", "model_id": "alice/parent", "grantee": "bob", "uses": ["derivative"]})).unwrap_err();
    assert_eq!(err.code(), "E_NOT_OWNER");
    w.ok("alice", Kind::LicenseGrant, json!({"license_id": "alice/parent-terms", "model_id": "alice/parent", "grantee": "bob", "uses": ["derivative"]}));
    w.model("bob", "bob/c", &[("alice/parent", "finetune")], &[], None)
        .unwrap();
    // The grant is personal: carol still needs her own.
    refused(
        w.model(
            "carol",
            "carol/c",
            &[("alice/parent", "finetune")],
            &[],
            None,
        ),
        "E_LICENSE_APPROVAL_REQUIRED",
        "model alice/parent",
    );
}

#[test]
fn behavioural_restrictions_flow_down_and_cannot_be_lifted() {
    let mut w = parent_under("openrail-m", json!({}));
    w.license(
        "bob",
        "bob/allows-military",
        "apache-2.0",
        json!({"allowed_uses": ["military", "research"]}),
    );
    refused(
        w.model(
            "bob",
            "bob/c",
            &[("alice/parent", "finetune")],
            &[],
            Some("bob/allows-military"),
        ),
        "E_LICENSE_USE_CONFLICT",
        "model alice/parent",
    );
    w.model(
        "bob",
        "bob/c",
        &[("alice/parent", "finetune")],
        &[],
        Some("bob/apache-2.0"),
    )
    .unwrap();
    let d = w
        .state
        .check_use("bob/c", "military", None, TS, None)
        .unwrap();
    assert!(
        !d.allowed && d.reasons[0].contains("model alice/parent"),
        "{:?}",
        d.reasons
    );
    assert!(
        w.state
            .check_use("bob/c", "research", None, TS, None)
            .unwrap()
            .allowed
    );
}

#[test]
fn expired_and_territorial_licences() {
    let mut w = parent_under("apache-2.0", json!({"expires_at_ms": TS}));
    refused(
        w.model("bob", "bob/c", &[("alice/parent", "finetune")], &[], None),
        "E_LICENSE_EXPIRED",
        "model alice/parent",
    );

    let mut w = parent_under("apache-2.0", json!({"territories": ["EU", "CH"]}));
    refused(
        w.model(
            "bob",
            "bob/c",
            &[("alice/parent", "finetune")],
            &[],
            Some("bob/apache-2.0"),
        ),
        "E_LICENSE_TERRITORY",
        "model alice/parent",
    );
    w.license(
        "bob",
        "bob/eu",
        "apache-2.0",
        json!({"territories": ["EU"]}),
    );
    w.model(
        "bob",
        "bob/c",
        &[("alice/parent", "finetune")],
        &[],
        Some("bob/eu"),
    )
    .unwrap();
    assert!(
        w.state
            .check_use("bob/c", "chat", Some("EU"), TS, None)
            .unwrap()
            .allowed
    );
    let d = w
        .state
        .check_use("bob/c", "chat", Some("US"), TS, None)
        .unwrap();
    assert!(
        !d.allowed && d.reasons[0].contains("territories"),
        "{:?}",
        d.reasons
    );
}

#[test]
fn royalties_stack_once_per_ancestor_and_may_not_exceed_the_whole() {
    let mut w = World::new();
    w.license("alice", "alice/r30", "apache-2.0", json!({"royalty_bps": 3000, "price_per_call_micros": "2000", "price_per_1k_output_tokens_micros": "15000"}));
    w.license("bob", "bob/r30", "apache-2.0", json!({"royalty_bps": 3000}));
    w.license("bob", "bob/r60", "apache-2.0", json!({"royalty_bps": 6000}));
    w.license(
        "carol",
        "carol/r50",
        "apache-2.0",
        json!({"royalty_bps": 5000}),
    );
    w.model("alice", "alice/base", &[], &[], Some("alice/r30"))
        .unwrap();
    w.model(
        "bob",
        "bob/mid",
        &[("alice/base", "finetune")],
        &[],
        Some("bob/r30"),
    )
    .unwrap();
    w.model(
        "bob",
        "bob/mid60",
        &[("alice/base", "finetune")],
        &[],
        Some("bob/r60"),
    )
    .unwrap();
    w.model(
        "carol",
        "carol/top",
        &[("bob/mid", "finetune")],
        &[],
        Some("carol/r50"),
    )
    .unwrap();
    let e = &w.state.model("carol/top").unwrap().effective;
    let owed: Vec<(&str, u32)> = e
        .royalties
        .iter()
        .map(|r| (r.model_id.as_str(), r.bps))
        .collect();
    assert_eq!(owed, vec![("alice/base", 3000), ("bob/mid", 3000)]);
    // A merge reaching alice/base twice pays it once.
    w.model(
        "carol",
        "carol/merge",
        &[("bob/mid", "merge"), ("alice/base", "merge")],
        &[],
        None,
    )
    .unwrap();
    assert_eq!(
        w.state
            .model("carol/merge")
            .unwrap()
            .effective
            .total_royalty_bps(),
        6000
    );
    // 3000 (alice) + 6000 (bob/mid60) + own child adds 5000 upstream of its own child only:
    w.model(
        "carol",
        "carol/over",
        &[("bob/mid60", "finetune")],
        &[],
        Some("carol/r50"),
    )
    .unwrap();
    refused(
        w.model(
            "bob",
            "bob/too-much",
            &[("carol/over", "finetune")],
            &[],
            None,
        ),
        "E_LICENSE_ROYALTY_OVERFLOW",
        "10000",
    );
    // Price comes from the model's own licence.
    let d = w
        .state
        .check_use("alice/base", "chat", None, TS, None)
        .unwrap();
    let price = d.price.unwrap();
    assert_eq!(
        (
            price.per_call_micros,
            price.per_1k_output_tokens_micros,
            price.currency.as_str()
        ),
        (2000, 15000, "USD")
    );
}

#[test]
fn licence_records_are_checked() {
    let mut w = World::new();
    w.license("alice", "alice/l", "mit", json!({}));
    let err = w.submit("alice", Kind::LicenseDefine, json!({"license_id": "alice/l", "name": "again", "terms": serde_json::to_value(preset("mit").unwrap().2).unwrap()})).unwrap_err();
    assert_eq!(err.code(), "E_LICENSE_EXISTS");
    let err = w.submit("bob", Kind::LicenseDefine, json!({"license_id": "alice/l2", "name": "x", "terms": serde_json::to_value(preset("mit").unwrap().2).unwrap()})).unwrap_err();
    assert_eq!(err.code(), "E_NAMESPACE_MISMATCH");
    let err = w.submit("alice", Kind::DatasetCreate, json!({"dataset_id": "alice/d", "name": "d", "access": "open", "license_id": "alice/none"})).unwrap_err();
    assert_eq!(err.code(), "E_LICENSE_UNKNOWN");
    // Anyone may adopt a defined licence for their own work.
    w.model("bob", "bob/m", &[], &[], Some("alice/l")).unwrap();
    let err = w
        .submit(
            "alice",
            Kind::LicenseGrant,
            json!({"license_id": "alice/l", "model_id": "bob/m", "grantee": "carol"}),
        )
        .unwrap_err();
    assert_eq!(err.code(), "E_NOT_OWNER");
    let err = w
        .submit(
            "bob",
            Kind::LicenseGrant,
            json!({"license_id": "alice/l", "model_id": "bob/m", "grantee": "nobody"}),
        )
        .unwrap_err();
    assert_eq!(err.code(), "E_ACTOR_UNKNOWN");
}

#[test]
fn every_preset_maps_to_an_spdx_id_and_valid_terms() {
    for (name, _, spdx) in shoulders_license::PRESETS {
        let (_, s, terms) = preset(name).unwrap();
        assert_eq!(&s, spdx);
        let body = json!({"license_id": "a/l", "name": "n", "spdx_id": spdx, "terms": serde_json::to_value(terms).unwrap()});
        Body::from_value(Kind::LicenseDefine, body).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert!(preset("nope").is_none());
}

/// alice's base asks 5% and a floor of 1000 per call + 200 per 1k output tokens.
fn floored_base() -> World {
    let mut w = World::new();
    w.license("alice", "alice/base-lic", "apache-2.0", json!({"royalty_bps": 500, "price_per_call_micros": "10000", "price_per_1k_output_tokens_micros": "1000", "royalty_floor_per_call_micros": "1000", "royalty_floor_per_1k_output_tokens_micros": "200"}));
    w.model("alice", "alice/base", &[], &[], Some("alice/base-lic"))
        .unwrap();
    w
}

#[test]
fn royalty_floors_bind_priced_derivatives_at_registration() {
    let mut w = floored_base();
    // A free adapter (its own licence priced 0) would serve the base's text for nothing.
    w.license("bob", "bob/free", "apache-2.0", json!({}));
    let err = w
        .model(
            "bob",
            "bob/free-adapter",
            &[("alice/base", "adapter")],
            &[],
            Some("bob/free"),
        )
        .unwrap_err();
    assert_eq!(err.code(), "E_LICENSE_BELOW_ROYALTY_FLOOR");
    assert_eq!(
        err.to_string(),
        "ancestor alice/base (licence alice/base-lic) is owed at least 1000 micro-units USD per call on every use of its descendants; this model's price per call is 0 (clause: royalty_floor)"
    );
    assert!(w.state.model("bob/free-adapter").is_none());
    // Per call covered, per 1k output tokens not.
    w.license(
        "bob",
        "bob/cheap-tokens",
        "apache-2.0",
        json!({"price_per_call_micros": "1000", "price_per_1k_output_tokens_micros": "199"}),
    );
    refused(
        w.model(
            "bob",
            "bob/cheap",
            &[("alice/base", "adapter")],
            &[],
            Some("bob/cheap-tokens"),
        ),
        "E_LICENSE_BELOW_ROYALTY_FLOOR",
        "at least 200 micro-units USD per 1k output tokens",
    );
    // A price in another currency than the floor.
    w.license("bob", "bob/eur", "apache-2.0", json!({"currency": "EUR", "price_per_call_micros": "5000", "price_per_1k_output_tokens_micros": "5000"}));
    refused(
        w.model(
            "bob",
            "bob/eur-adapter",
            &[("alice/base", "adapter")],
            &[],
            Some("bob/eur"),
        ),
        "E_LICENSE_BELOW_ROYALTY_FLOOR",
        "sets its royalty floor in USD, but this model's price is in EUR",
    );
    // Priced at the floors: accepted. Without a licence of its own: accepted (it is charged
    // the floors at each use).
    w.license(
        "bob",
        "bob/at-floor",
        "apache-2.0",
        json!({"price_per_call_micros": "1000", "price_per_1k_output_tokens_micros": "200"}),
    );
    w.model(
        "bob",
        "bob/at-floor",
        &[("alice/base", "adapter")],
        &[],
        Some("bob/at-floor"),
    )
    .unwrap();
    w.model(
        "bob",
        "bob/unpriced",
        &[("alice/base", "adapter")],
        &[],
        None,
    )
    .unwrap();
    // The floor is part of the effective terms and of `check_use`'s answer.
    let d = w
        .state
        .check_use("bob/unpriced", "chat", None, TS, None)
        .unwrap();
    assert!(d.price.is_none());
    let r = &d.royalties[0];
    let f = r.floor.as_ref().unwrap();
    assert_eq!(
        (
            r.model_id.as_str(),
            r.license_id.as_str(),
            r.bps,
            f.currency.as_str(),
            f.per_call_micros,
            f.per_1k_output_tokens_micros
        ),
        ("alice/base", "alice/base-lic", 500, "USD", 1000, 200)
    );
}

#[test]
fn royalty_floors_stack_along_the_lineage() {
    let mut w = floored_base();
    // bob's mid asks no share, only a floor of 500 per call: it is still in the stack.
    w.license("bob", "bob/mid-lic", "apache-2.0", json!({"price_per_call_micros": "2000", "price_per_1k_output_tokens_micros": "300", "royalty_floor_per_call_micros": "500"}));
    w.model(
        "bob",
        "bob/mid",
        &[("alice/base", "finetune")],
        &[],
        Some("bob/mid-lic"),
    )
    .unwrap();
    w.model("carol", "carol/top", &[("bob/mid", "adapter")], &[], None)
        .unwrap();
    let e = &w.state.model("carol/top").unwrap().effective;
    let stack: Vec<(&str, u32, u128)> = e
        .royalties
        .iter()
        .map(|r| {
            (
                r.model_id.as_str(),
                r.bps,
                r.floor.as_ref().unwrap().per_call_micros,
            )
        })
        .collect();
    assert_eq!(stack, vec![("alice/base", 500, 1000), ("bob/mid", 0, 500)]);
    // 1200 per call covers alice's 1000 but not the 1500 the two floors total: bob's floor is
    // the one left uncovered.
    w.license(
        "carol",
        "carol/1200",
        "apache-2.0",
        json!({"price_per_call_micros": "1200", "price_per_1k_output_tokens_micros": "200"}),
    );
    let err = w
        .model(
            "carol",
            "carol/cheap",
            &[("bob/mid", "adapter")],
            &[],
            Some("carol/1200"),
        )
        .unwrap_err();
    assert_eq!(err.code(), "E_LICENSE_BELOW_ROYALTY_FLOOR");
    assert_eq!(
        err.to_string(),
        "ancestor bob/mid (licence bob/mid-lic) is owed at least 500 micro-units USD per call on every use of its descendants (the floors along its lineage total 1500); this model's price per call is 1200 (clause: royalty_floor)"
    );
    // Floors of two currencies along one lineage cannot both be paid by one charge.
    w.license("carol", "carol/eur-base-lic", "apache-2.0", json!({"currency": "EUR", "price_per_call_micros": "10", "price_per_1k_output_tokens_micros": "0", "royalty_floor_per_call_micros": "7"}));
    w.model(
        "carol",
        "carol/eur-base",
        &[],
        &[],
        Some("carol/eur-base-lic"),
    )
    .unwrap();
    refused(
        w.model(
            "bob",
            "bob/merged",
            &[("alice/base", "merge"), ("carol/eur-base", "merge")],
            &[],
            None,
        ),
        "E_LICENSE_BELOW_ROYALTY_FLOOR",
        "ancestors alice/base (licence alice/base-lic) and carol/eur-base (licence carol/eur-base-lic) set royalty floors in two currencies, USD and EUR",
    );
}

/// alice's base asks 10% and a floor of 700 per call, owed by its direct children only; bob
/// fine-tunes it under a licence asking 5%; carol builds on bob's model.
fn direct_reach_chain() -> World {
    let mut w = World::new();
    w.license("alice", "alice/direct", "apache-2.0", json!({"royalty_bps": 1000, "royalty_reach": "direct_parent", "price_per_call_micros": "5000", "royalty_floor_per_call_micros": "700"}));
    w.model("alice", "alice/base", &[], &[], Some("alice/direct"))
        .unwrap();
    w.license(
        "bob",
        "bob/r5",
        "apache-2.0",
        json!({"royalty_bps": 500, "price_per_call_micros": "1000"}),
    );
    w.model(
        "bob",
        "bob/child",
        &[("alice/base", "finetune")],
        &[],
        Some("bob/r5"),
    )
    .unwrap();
    w
}

fn stack_of(w: &World, model: &str) -> Vec<(String, u32)> {
    w.state
        .model(model)
        .unwrap()
        .effective
        .royalties
        .iter()
        .map(|r| (r.model_id.clone(), r.bps))
        .collect()
}

#[test]
fn a_direct_parent_royalty_binds_children_not_grandchildren() {
    let mut w = direct_reach_chain();
    assert_eq!(stack_of(&w, "bob/child"), vec![("alice/base".into(), 1000)]);
    // The child's price must cover the direct royalty's floor; the grandchild's need not.
    w.license("bob", "bob/free", "apache-2.0", json!({}));
    refused(
        w.model(
            "bob",
            "bob/free-child",
            &[("alice/base", "adapter")],
            &[],
            Some("bob/free"),
        ),
        "E_LICENSE_BELOW_ROYALTY_FLOOR",
        "alice/base",
    );
    w.model(
        "carol",
        "carol/grandchild",
        &[("bob/child", "adapter")],
        &[],
        Some("bob/free"),
    )
    .unwrap();
    assert_eq!(
        stack_of(&w, "carol/grandchild"),
        vec![("bob/child".into(), 500)]
    );
    // The grandchild still carries every other clause of the base's licence (attribution).
    let d = w
        .state
        .check_use("carol/grandchild", "chat", None, TS, None)
        .unwrap();
    assert!(
        d.notes.iter().any(|n| n.contains("model alice/base")),
        "{:?}",
        d.notes
    );
    assert_eq!(d.royalties.len(), 1);
    // A merge of the child and the base is a direct child of the base again: it owes it once.
    w.model(
        "carol",
        "carol/merge",
        &[("bob/child", "merge"), ("alice/base", "merge")],
        &[],
        None,
    )
    .unwrap();
    assert_eq!(
        stack_of(&w, "carol/merge"),
        vec![("bob/child".into(), 500), ("alice/base".into(), 1000)]
    );
}

#[test]
fn a_registration_over_its_maximum_royalty_is_refused_naming_each_ancestor() {
    let mut w = World::new();
    w.license(
        "alice",
        "alice/r30",
        "apache-2.0",
        json!({"royalty_bps": 3000}),
    );
    w.license("bob", "bob/r20", "apache-2.0", json!({"royalty_bps": 2000}));
    w.model("alice", "alice/base", &[], &[], Some("alice/r30"))
        .unwrap();
    w.model(
        "bob",
        "bob/mid",
        &[("alice/base", "finetune")],
        &[],
        Some("bob/r20"),
    )
    .unwrap();
    let top = |max: u32| {
        json!({"model_id": "carol/top", "name": "top", "max_royalty_bps": max,
               "parents": [{"model_id": "bob/mid", "relation": "finetune"}]})
    };
    let before = w.state.clone();
    let err = w
        .submit("carol", Kind::ModelRegister, top(4999))
        .unwrap_err();
    assert_eq!(err.code(), "E_LICENSE_ROYALTY_ABOVE_MAX");
    let msg = err.to_string();
    for part in [
        "5000 bps",
        "maximum of 4999 bps",
        "alice/base 3000 bps (licence alice/r30)",
        "bob/mid 2000 bps (licence bob/r20)",
        "(clause: royalty_bps)",
    ] {
        assert!(msg.contains(part), "{msg} should name {part}");
    }
    assert!(w.state == before, "a refused registration changes nothing");
    // At the maximum: accepted.
    w.ok("carol", Kind::ModelRegister, top(5000));
    // A maximum of 0 accepts a lineage that owes nothing.
    w.ok(
        "carol",
        Kind::ModelRegister,
        json!({"model_id": "carol/own", "name": "own", "max_royalty_bps": 0}),
    );
    // The use check takes the same limit.
    let d = w
        .state
        .check_use("carol/top", "chat", None, TS, Some(4000))
        .unwrap();
    assert!(!d.allowed);
    assert!(
        d.reasons[0].contains("alice/base 3000 bps (licence alice/r30)"),
        "{:?}",
        d.reasons
    );
    assert!(
        w.state
            .check_use("carol/top", "chat", None, TS, Some(5000))
            .unwrap()
            .allowed
    );
}

/// Issue 15, attack 6: effective terms name every upstream source, so 400 chained
/// registrations held 400²/2 labels (452 MB in the server). A lineage may carry the terms of at
/// most `MAX_UPSTREAM_MODELS` models; the next registration is refused with its own code and
/// changes nothing, so the terms a model holds, and the state, stay linear in the records.
#[test]
fn a_long_chain_of_derivatives_is_bounded() {
    use shoulders_license::MAX_UPSTREAM_MODELS;
    let mut w = World::new();
    // Long ids make each label as large as the record syntax allows.
    let id = |i: usize| format!("alice/{i:0>90}");
    w.ok(
        "alice",
        Kind::ModelRegister,
        json!({"model_id": id(0), "name": "m"}),
    );
    for i in 1..MAX_UPSTREAM_MODELS {
        w.ok(
            "alice",
            Kind::ModelRegister,
            json!({"model_id": id(i), "name": "m",
                   "parents": [{"model_id": id(i - 1), "relation": "finetune"}]}),
        );
    }
    let deepest = w.state.model(&id(MAX_UPSTREAM_MODELS - 1)).unwrap();
    assert_eq!(deepest.effective.unlicensed.len(), MAX_UPSTREAM_MODELS);
    let before = w.state.clone();
    let err = w
        .submit(
            "alice",
            Kind::ModelRegister,
            json!({"model_id": id(MAX_UPSTREAM_MODELS), "name": "m",
                   "parents": [{"model_id": id(MAX_UPSTREAM_MODELS - 1), "relation": "finetune"}]}),
        )
        .unwrap_err();
    assert_eq!(err.code(), "E_LINEAGE_TOO_LARGE");
    assert!(err.to_string().contains("129 models"), "{err}");
    assert!(w.state == before, "a refused registration changes nothing");
    // Every model's terms together stay within MAX_UPSTREAM_MODELS labels per model.
    let labels: usize = w
        .state
        .models()
        .map(|m| m.effective.unlicensed.len() + m.effective.licenses.len())
        .sum();
    assert!(labels <= MAX_UPSTREAM_MODELS * w.state.models().count());
    // Siblings off the deepest ancestor's parent still register: the bound is on depth of
    // terms, not on the number of models.
    w.ok(
        "alice",
        Kind::ModelRegister,
        json!({"model_id": "alice/sibling", "name": "m",
               "parents": [{"model_id": id(MAX_UPSTREAM_MODELS - 2), "relation": "finetune"}]}),
    );
}

/// The same bound on sources of any kind: datasets accumulate down a lineage too, and a model
/// may carry at most `MAX_EFFECTIVE_SOURCES` of them.
#[test]
fn sources_accumulating_down_a_lineage_are_bounded() {
    use shoulders_license::MAX_EFFECTIVE_SOURCES;
    let mut w = World::new();
    for d in 0..1024 {
        w.ok(
            "alice",
            Kind::DatasetCreate,
            json!({"dataset_id": format!("alice/d{d}"), "name": "d", "access": "open"}),
        );
    }
    let datasets = |level: usize| -> Vec<String> {
        (level * 256..(level + 1) * 256)
            .map(|d| format!("alice/d{d}"))
            .collect()
    };
    w.ok(
        "alice",
        Kind::ModelRegister,
        json!({"model_id": "alice/l0", "name": "m", "datasets": datasets(0)}),
    );
    for level in 1..3 {
        w.ok(
            "alice",
            Kind::ModelRegister,
            json!({"model_id": format!("alice/l{level}"), "name": "m", "datasets": datasets(level),
                   "parents": [{"model_id": format!("alice/l{}", level - 1), "relation": "finetune"}]}),
        );
    }
    // l2 carries 3 models and 768 datasets; one more level would carry 1028 sources.
    let before = w.state.clone();
    let err = w
        .submit(
            "alice",
            Kind::ModelRegister,
            json!({"model_id": "alice/l3", "name": "m", "datasets": datasets(3),
                   "parents": [{"model_id": "alice/l2", "relation": "finetune"}]}),
        )
        .unwrap_err();
    assert_eq!(err.code(), "E_LINEAGE_TOO_LARGE");
    assert!(
        err.to_string().contains(&format!("{} sources", 4 + 1024)),
        "{err}"
    );
    const { assert!(MAX_EFFECTIVE_SOURCES < 4 + 1024) };
    assert!(w.state == before);
}
