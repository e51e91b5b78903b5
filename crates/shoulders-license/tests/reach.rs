//! Royalty reach and the maximum royalty a licensee accepts, on the pure flow-down: a licence
//! with `direct_parent` reach is owed (share and floor) by the direct children of a model under
//! it and by no further descendant; `all_ancestors` (and an absent reach) is owed by every
//! descendant, as before reach existed; other clauses flow to every descendant whatever the
//! reach.

use shoulders_license::{
    check_derivation, check_max_royalty, check_use, preset, Conflict, Effective, Royalty,
    RoyaltyReach, Source,
};
use shoulders_record::LicenseTerms;

const NOW: u64 = 1_767_225_600_000;

/// Apache-2.0 terms asking `bps`, with `reach`.
fn terms(bps: u32, reach: Option<RoyaltyReach>) -> LicenseTerms {
    LicenseTerms {
        royalty_bps: bps,
        royalty_reach: reach,
        ..preset("apache-2.0").unwrap().2
    }
}

/// A registered model: its effective terms and what its own licence asks of its children.
struct Model {
    id: &'static str,
    effective: Effective,
    royalty: Option<Royalty>,
}

/// Register `id` (owner: its namespace) under `own` (licence `<id>-lic`) deriving from
/// `parents`.
fn register(
    id: &'static str,
    own: Option<&LicenseTerms>,
    parents: &[&Model],
) -> Result<Model, Conflict> {
    let license_id = format!("{id}-lic");
    let sources: Vec<Source<'_>> = parents
        .iter()
        .map(|p| Source {
            label: format!("model {}", p.id),
            effective: &p.effective,
            royalty: p.royalty.clone(),
        })
        .collect();
    let effective = check_derivation(
        &format!("model {id}"),
        own.map(|t| (license_id.as_str(), t)),
        &sources,
        NOW,
        &|_| true,
    )?;
    let owner = id.split('/').next().unwrap();
    Ok(Model {
        id,
        effective,
        royalty: own.map(|t| Royalty::from_terms(id, owner, &license_id, t)),
    })
}

/// `(ancestor, bps)` of a model's royalty stack, nearest first.
fn stack(m: &Model) -> Vec<(&str, u32)> {
    m.effective
        .royalties
        .iter()
        .map(|r| (r.model_id.as_str(), r.bps))
        .collect()
}

#[test]
fn a_direct_parent_royalty_is_owed_by_children_not_grandchildren() {
    let mut base_terms = terms(1000, Some(RoyaltyReach::DirectParent));
    base_terms.royalty_floor_per_call_micros = Some("700".into());
    base_terms.price_per_call_micros = "5000".into();
    let base = register("alice/base", Some(&base_terms), &[]).unwrap();
    // The child owes the base its share and its floor.
    let child = register("bob/child", None, &[&base]).unwrap();
    assert_eq!(stack(&child), vec![("alice/base", 1000)]);
    let owed = &child.effective.royalties[0];
    assert_eq!(owed.reach, RoyaltyReach::DirectParent);
    assert_eq!(owed.floor.as_ref().unwrap().per_call_micros, 700);
    assert_eq!(child.effective.floors().count(), 1);
    // A grandchild owes it nothing: neither the share nor the floor (so a free grandchild is
    // not held to the base's floor either).
    let grandchild = register("carol/grandchild", Some(&terms(0, None)), &[&child]).unwrap();
    assert_eq!(stack(&grandchild), vec![]);
    assert_eq!(grandchild.effective.floors().count(), 0);
    // ...nor does a great-grandchild, through a licensed grandchild that asks its own share.
    let licensed = register("carol/licensed", Some(&terms(300, None)), &[&child]).unwrap();
    let great = register("dave/great", None, &[&licensed]).unwrap();
    assert_eq!(stack(&great), vec![("carol/licensed", 300)]);
    // A model that is both a grandchild (through the child) and a direct child (a merge with
    // the base itself) owes the base once.
    let merged = register("erin/merged", None, &[&child, &base]).unwrap();
    assert_eq!(stack(&merged), vec![("alice/base", 1000)]);
    let merged = register("erin/merged2", None, &[&base, &child]).unwrap();
    assert_eq!(stack(&merged), vec![("alice/base", 1000)]);
}

#[test]
fn reach_is_about_money_only() {
    let mut nc = terms(1000, Some(RoyaltyReach::DirectParent));
    nc.commercial_use = false;
    nc.attribution_required = true;
    nc.forbidden_uses = vec!["surveillance".into()];
    let base = register("alice/base", Some(&nc), &[]).unwrap();
    let child = register("bob/child", None, &[&base]).unwrap();
    let grandchild = register("carol/grandchild", None, &[&child]).unwrap();
    assert_eq!(stack(&grandchild), vec![]);
    let e = &grandchild.effective;
    assert!(e.noncommercial_by.contains("model alice/base"));
    assert!(e.attribution_to.contains("model alice/base"));
    assert!(e.forbidden_uses["surveillance"].contains("model alice/base"));
    let d = check_use(e, "commercial", None, NOW, None);
    assert!(!d.allowed);
    assert!(d.reasons[0].contains("alice/base"), "{:?}", d.reasons);
    // A commercial licence below it is still refused.
    let err = register("carol/commercial", Some(&terms(0, None)), &[&child])
        .err()
        .unwrap();
    assert_eq!(err.code(), "E_LICENSE_COMMERCIAL_CONFLICT");
}

#[test]
fn all_ancestors_reach_is_the_default_and_unchanged() {
    for reach in [None, Some(RoyaltyReach::AllAncestors)] {
        let base = register("alice/base", Some(&terms(1000, reach)), &[]).unwrap();
        let child = register("bob/child", Some(&terms(500, reach)), &[&base]).unwrap();
        let grandchild = register("carol/grandchild", None, &[&child]).unwrap();
        let great = register("dave/great", None, &[&grandchild]).unwrap();
        assert_eq!(stack(&child), vec![("alice/base", 1000)]);
        assert_eq!(
            stack(&grandchild),
            vec![("alice/base", 1000), ("bob/child", 500)]
        );
        assert_eq!(stack(&great), stack(&grandchild));
        assert!(great
            .effective
            .royalties
            .iter()
            .all(|r| r.reach == RoyaltyReach::AllAncestors));
    }
}

/// A → B → C → D → E with reaches all, direct, all, direct: each model owes the all-ancestors
/// licences above it and the direct-parent licence of its parent only.
#[test]
fn a_mixed_chain_owes_each_licence_as_far_as_it_reaches() {
    let direct = Some(RoyaltyReach::DirectParent);
    let a = register("a/m", Some(&terms(500, None)), &[]).unwrap();
    let b = register("b/m", Some(&terms(1000, direct)), &[&a]).unwrap();
    let c = register("c/m", Some(&terms(300, None)), &[&b]).unwrap();
    let d = register("d/m", Some(&terms(200, direct)), &[&c]).unwrap();
    let e = register("e/m", None, &[&d]).unwrap();
    assert_eq!(stack(&b), vec![("a/m", 500)]);
    assert_eq!(stack(&c), vec![("a/m", 500), ("b/m", 1000)]);
    assert_eq!(stack(&d), vec![("a/m", 500), ("c/m", 300)]);
    assert_eq!(stack(&e), vec![("a/m", 500), ("c/m", 300), ("d/m", 200)]);
    let f = register("f/m", None, &[&e]).unwrap();
    assert_eq!(stack(&f), vec![("a/m", 500), ("c/m", 300)]);
    assert_eq!(f.effective.total_royalty_bps(), 800);
}

#[test]
fn the_maximum_royalty_names_every_ancestor_of_the_stack() {
    let a = register("alice/base", Some(&terms(3000, None)), &[]).unwrap();
    let b = register("bob/mid", Some(&terms(2000, None)), &[&a]).unwrap();
    let c = register("carol/top", None, &[&b]).unwrap();
    assert_eq!(c.effective.total_royalty_bps(), 5000);
    check_max_royalty(&c.effective, 5000).unwrap();
    check_max_royalty(&c.effective, 10_000).unwrap();
    let err = check_max_royalty(&c.effective, 4999).unwrap_err();
    assert_eq!(err.code(), "E_LICENSE_ROYALTY_ABOVE_MAX");
    assert_eq!(
        err.to_string(),
        "the royalty stack would total 5000 bps, more than the maximum of 4999 bps accepted; it is owed to alice/base 3000 bps (licence alice/base-lic), bob/mid 2000 bps (licence bob/mid-lic): build on other ancestors or accept a higher maximum (clause: royalty_bps)"
    );
    // A stack of nothing fits a maximum of 0.
    check_max_royalty(&a.effective, 0).unwrap();

    // The same limit on a use: a reason naming the stack, and nothing else changes.
    assert!(check_use(&c.effective, "chat", None, NOW, Some(5000)).allowed);
    assert!(check_use(&c.effective, "chat", None, NOW, None).allowed);
    let d = check_use(&c.effective, "chat", None, NOW, Some(4000));
    assert!(!d.allowed);
    assert_eq!(
        d.reasons,
        vec!["the royalty stack totals 5000 bps, more than the maximum of 4000 bps accepted for this use; it is owed to alice/base 3000 bps (licence alice/base-lic), bob/mid 2000 bps (licence bob/mid-lic) (clause: royalty_bps)"]
    );
    assert_eq!(d.royalties, c.effective.royalties);
}

/// Royalties are stored in the state's rows (the effective terms of every model): one with the
/// default reach has exactly the bytes it had before reach existed, and such a row reads back as
/// owed by every descendant.
#[test]
fn stored_royalties_keep_their_bytes() {
    let mut t = terms(500, None);
    t.royalty_floor_per_call_micros = Some("1000".into());
    let r = Royalty::from_terms("alice/base", "alice", "alice/base-lic", &t);
    let before = r#"{"model_id":"alice/base","owner":"alice","license_id":"alice/base-lic","bps":500,"floor":{"currency":"USD","per_call_micros":1000,"per_1k_output_tokens_micros":0}}"#;
    assert_eq!(serde_json::to_string(&r).unwrap(), before);
    let back: Royalty = serde_json::from_str(before).unwrap();
    assert_eq!(back.reach, RoyaltyReach::AllAncestors);
    assert_eq!(back, r);
    // An explicit all_ancestors is the same royalty, with the same bytes.
    t.royalty_reach = Some(RoyaltyReach::AllAncestors);
    let explicit = Royalty::from_terms("alice/base", "alice", "alice/base-lic", &t);
    assert_eq!(serde_json::to_string(&explicit).unwrap(), before);
    t.royalty_reach = Some(RoyaltyReach::DirectParent);
    let direct = Royalty::from_terms("alice/base", "alice", "alice/base-lic", &t);
    let json = serde_json::to_string(&direct).unwrap();
    assert!(json.ends_with(r#","reach":"direct_parent"}"#), "{json}");
    assert_eq!(serde_json::from_str::<Royalty>(&json).unwrap(), direct);
}
