use crate::{Conflict, FloorConflict};
use serde::{Deserialize, Serialize};
use shoulders_record::{Derivatives, LicenseTerms, RoyaltyReach, BPS_ONE};
use std::collections::{BTreeMap, BTreeSet};

/// A model's owned licence pricing, in micro-units of `currency`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    pub license_id: String,
    pub currency: String,
    pub per_call_micros: u128,
    pub per_1k_output_tokens_micros: u128,
    pub registration_fee_micros: u128,
    pub royalty_bps: u32,
    pub data_share_bps: u32,
}

/// The least an upstream model's owner is owed on every use of a descendant, in micro-units of
/// `currency` (its licence's `royalty_floor_*` fields).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Floor {
    pub currency: String,
    pub per_call_micros: u128,
    pub per_1k_output_tokens_micros: u128,
}

impl Floor {
    /// The floor a licence sets; `None` when it sets none (both fields absent or zero).
    pub fn from_terms(t: &LicenseTerms) -> Option<Floor> {
        let per_call = t.royalty_floor_per_call_micros.as_deref().map_or(0, amount);
        let per_1k = t
            .royalty_floor_per_1k_output_tokens_micros
            .as_deref()
            .map_or(0, amount);
        (per_call > 0 || per_1k > 0).then(|| Floor {
            currency: t.currency.clone(),
            per_call_micros: per_call,
            per_1k_output_tokens_micros: per_1k,
        })
    }

    /// The floor of one use producing `output_tokens`: `per_call + ceil(tokens × per_1k /
    /// 1000)`, rounded up like a price so splitting a use never lowers it.
    pub fn for_use(&self, output_tokens: u64) -> u128 {
        self.per_call_micros
            + (u128::from(output_tokens) * self.per_1k_output_tokens_micros).div_ceil(1000)
    }
}

/// What an upstream model's owner is owed on each charge of a descendant: a share in basis
/// points and, if its licence sets one, a floor (the larger of the two is paid).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Royalty {
    pub model_id: String,
    pub owner: String,
    /// The ancestor's own licence, which sets the share and the floor.
    pub license_id: String,
    pub bps: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<Floor>,
    /// Which descendants owe it (the licence's `royalty_reach`): every descendant, or only the
    /// direct children of `model_id`. Left out when it is every descendant, so stored terms
    /// written before reach existed read back unchanged.
    #[serde(default, skip_serializing_if = "RoyaltyReach::is_all_ancestors")]
    pub reach: RoyaltyReach,
}

impl Royalty {
    /// What the owner of `model_id` under licence `license_id` (terms `t`) is owed by
    /// descendants.
    pub fn from_terms(model_id: &str, owner: &str, license_id: &str, t: &LicenseTerms) -> Royalty {
        Royalty {
            model_id: model_id.to_string(),
            owner: owner.to_string(),
            license_id: license_id.to_string(),
            bps: t.royalty_bps,
            floor: Floor::from_terms(t),
            reach: t.royalty_reach.unwrap_or_default(),
        }
    }

    /// Whether descendants owe anything: a share or a floor.
    pub fn is_owed(&self) -> bool {
        self.bps > 0 || self.floor.is_some()
    }
}

/// Effective terms with the origin of every restriction (a label such as `model acme/base` or
/// `dataset acme/verse (licence acme/cc-by-nc)`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Effective {
    /// Sources that forbid commercial use (empty: commercial use allowed).
    pub noncommercial_by: BTreeSet<String>,
    pub derivatives: DerivativesClause,
    /// Sources that must be credited.
    pub attribution_to: BTreeSet<String>,
    pub share_alike_by: BTreeSet<String>,
    /// Forbidden use → sources forbidding it.
    pub forbidden_uses: BTreeMap<String, BTreeSet<String>>,
    /// `None`: any use not forbidden; `Some`: only these, restricted by the listed sources.
    pub allowed_uses: Option<(BTreeSet<String>, BTreeSet<String>)>,
    /// `None`: worldwide; `Some`: only these territories, restricted by the listed sources.
    pub territories: Option<(BTreeSet<String>, BTreeSet<String>)>,
    /// Earliest expiry and who set it.
    pub expires: Option<(u64, String)>,
    /// Stacked upstream royalties, one per ancestor model whose own licence sets a royalty
    /// share and/or a floor and whose reach extends to this model, nearest first.
    pub royalties: Vec<Royalty>,
    /// The model's own licence pricing, if it has a licence.
    pub price: Option<Price>,
    /// Every licence in force: source label → licence id.
    pub licenses: BTreeMap<String, String>,
    /// Sources with no licence recorded (no terms to enforce; flagged by `check_use`).
    pub unlicensed: BTreeSet<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DerivativesClause {
    pub rule: Derivatives,
    pub by: BTreeSet<String>,
}

impl Default for DerivativesClause {
    fn default() -> Self {
        DerivativesClause {
            rule: Derivatives::Allowed,
            by: BTreeSet::new(),
        }
    }
}

fn strictness(d: Derivatives) -> u8 {
    match d {
        Derivatives::Allowed => 0,
        Derivatives::ApprovalRequired => 1,
        Derivatives::Forbidden => 2,
    }
}

fn amount(s: &str) -> u128 {
    // Validated as canonical decimal u128 when the licence record was accepted.
    s.parse().unwrap_or(0)
}

impl Effective {
    /// The terms of one licence, attributed to `label`.
    pub fn from_terms(label: &str, license_id: &str, t: &LicenseTerms) -> Effective {
        let one = |s: &str| BTreeSet::from([s.to_string()]);
        let restrict = |list: &[String]| {
            (!list.is_empty()).then(|| (list.iter().cloned().collect(), one(label)))
        };
        Effective {
            noncommercial_by: if t.commercial_use {
                BTreeSet::new()
            } else {
                one(label)
            },
            derivatives: DerivativesClause {
                rule: t.derivatives,
                by: if t.derivatives == Derivatives::Allowed {
                    BTreeSet::new()
                } else {
                    one(label)
                },
            },
            attribution_to: if t.attribution_required {
                one(label)
            } else {
                BTreeSet::new()
            },
            share_alike_by: if t.share_alike {
                one(label)
            } else {
                BTreeSet::new()
            },
            forbidden_uses: t
                .forbidden_uses
                .iter()
                .map(|u| (u.clone(), one(label)))
                .collect(),
            allowed_uses: restrict(&t.allowed_uses),
            territories: restrict(&t.territories),
            expires: t.expires_at_ms.map(|at| (at, label.to_string())),
            royalties: Vec::new(),
            price: None,
            licenses: BTreeMap::from([(label.to_string(), license_id.to_string())]),
            unlicensed: BTreeSet::new(),
        }
    }

    /// A source with no licence.
    pub fn unlicensed(label: &str) -> Effective {
        Effective {
            unlicensed: BTreeSet::from([label.to_string()]),
            ..Effective::default()
        }
    }

    /// Combine `other` (the effective terms of a source of the model `self` describes) into
    /// `self`, most restrictive clause winning. Royalties of `other`'s stack with
    /// [`RoyaltyReach::DirectParent`] are not carried: `other`'s model owes them as a direct
    /// child of their models, and `self`'s model is at least a grandchild of those. (A parent's
    /// own royalty is added by [`check_derivation`] from [`Source::royalty`], whatever its
    /// reach.)
    pub fn merge(&mut self, other: &Effective) {
        self.noncommercial_by
            .extend(other.noncommercial_by.iter().cloned());
        match strictness(other.derivatives.rule).cmp(&strictness(self.derivatives.rule)) {
            std::cmp::Ordering::Greater => self.derivatives = other.derivatives.clone(),
            std::cmp::Ordering::Equal => self
                .derivatives
                .by
                .extend(other.derivatives.by.iter().cloned()),
            std::cmp::Ordering::Less => {}
        }
        self.attribution_to
            .extend(other.attribution_to.iter().cloned());
        self.share_alike_by
            .extend(other.share_alike_by.iter().cloned());
        for (u, by) in &other.forbidden_uses {
            self.forbidden_uses
                .entry(u.clone())
                .or_default()
                .extend(by.iter().cloned());
        }
        let intersect =
            |mine: &mut Option<(BTreeSet<String>, BTreeSet<String>)>,
             theirs: &Option<(BTreeSet<String>, BTreeSet<String>)>| {
                if let Some((set, by)) = theirs {
                    *mine = Some(match mine.take() {
                        None => (set.clone(), by.clone()),
                        Some((m, mut mby)) => {
                            mby.extend(by.iter().cloned());
                            (m.intersection(set).cloned().collect(), mby)
                        }
                    });
                }
            };
        intersect(&mut self.allowed_uses, &other.allowed_uses);
        intersect(&mut self.territories, &other.territories);
        if let Some((at, by)) = &other.expires {
            if self.expires.as_ref().is_none_or(|(mine, _)| at < mine) {
                self.expires = Some((*at, by.clone()));
            }
        }
        for r in &other.royalties {
            if r.reach == RoyaltyReach::DirectParent {
                continue;
            }
            if !self.royalties.iter().any(|m| m.model_id == r.model_id) {
                self.royalties.push(r.clone());
            }
        }
        self.licenses
            .extend(other.licenses.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.unlicensed.extend(other.unlicensed.iter().cloned());
    }

    pub fn total_royalty_bps(&self) -> u32 {
        self.royalties.iter().map(|r| r.bps).sum()
    }

    /// Every ancestor of the royalty stack with its share and licence, nearest first, e.g.
    /// `alice/base 3000 bps (licence alice/base-lic), bob/mid 0 bps (licence bob/mid-lic)`;
    /// `no ancestor` when the stack is empty.
    pub fn royalty_stack(&self) -> String {
        if self.royalties.is_empty() {
            return "no ancestor".into();
        }
        self.royalties
            .iter()
            .map(|r| format!("{} {} bps (licence {})", r.model_id, r.bps, r.license_id))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The royalty floors of the stack, with their ancestors.
    pub fn floors(&self) -> impl Iterator<Item = (&Royalty, &Floor)> {
        self.royalties
            .iter()
            .filter_map(|r| r.floor.as_ref().map(|f| (r, f)))
    }

    /// The currency every floor of the stack is set in; `None` without floors. The registration
    /// check refuses stacks whose floors mix currencies.
    pub fn floor_currency(&self) -> Option<&str> {
        self.floors().next().map(|(_, f)| f.currency.as_str())
    }
}

/// One upstream source of a new model: a parent model (its effective terms, and whether its
/// own licence asks a royalty) or a dataset (its licence's terms).
pub struct Source<'a> {
    pub label: String,
    pub effective: &'a Effective,
    /// `Some` for a parent model with a licence: the royalty share and floor its own licence
    /// asks, owed to its owner by the new model (a direct child) whatever its reach.
    pub royalty: Option<Royalty>,
}

fn first(set: &BTreeSet<String>) -> String {
    set.iter().next().cloned().unwrap_or_default()
}

/// Check that a model with licence `own` (`(license_id, terms)`, if any) may derive from
/// `sources` at time `now_ms`, and compute its effective terms. `approved(label)` says whether
/// the owner of the source called `label` granted the deriving actor a derivative approval.
pub fn check_derivation(
    own_label: &str,
    own: Option<(&str, &LicenseTerms)>,
    sources: &[Source<'_>],
    now_ms: u64,
    approved: &dyn Fn(&str) -> bool,
) -> Result<Effective, Conflict> {
    for s in sources {
        let e = s.effective;
        if let Some((at, by)) = &e.expires {
            if *at <= now_ms {
                return Err(Conflict::Expired {
                    source_label: by.clone(),
                    expires_at_ms: *at,
                });
            }
        }
        match e.derivatives.rule {
            Derivatives::Forbidden => {
                return Err(Conflict::NoDerivatives {
                    source_label: first(&e.derivatives.by),
                })
            }
            Derivatives::ApprovalRequired => {
                if let Some(missing) = e.derivatives.by.iter().find(|by| !approved(by)) {
                    return Err(Conflict::ApprovalRequired {
                        source_label: missing.clone(),
                    });
                }
            }
            Derivatives::Allowed => {}
        }
        let Some((_, t)) = own else { continue };
        if t.commercial_use && !e.noncommercial_by.is_empty() {
            return Err(Conflict::Commercial {
                source_label: first(&e.noncommercial_by),
            });
        }
        if let Some(u) = t
            .allowed_uses
            .iter()
            .find(|u| e.forbidden_uses.contains_key(*u))
        {
            return Err(Conflict::Use {
                source_label: first(&e.forbidden_uses[u]),
                use_tag: u.clone(),
            });
        }
        if let Some((allowed, by)) = &e.territories {
            let claims_more =
                t.territories.is_empty() || t.territories.iter().any(|x| !allowed.contains(x));
            if claims_more {
                return Err(Conflict::Territory {
                    source_label: first(by),
                    allowed: allowed.iter().cloned().collect(),
                });
            }
        }
        if !e.share_alike_by.is_empty() {
            let label = first(&e.share_alike_by);
            let detail = if !t.share_alike {
                Some("it is not share-alike".to_string())
            } else if strictness(t.derivatives) < strictness(e.derivatives.rule) {
                Some("it allows derivatives more freely".into())
            } else if !e.attribution_to.is_empty() && !t.attribution_required {
                Some("it drops attribution".into())
            } else {
                e.forbidden_uses
                    .keys()
                    .find(|u| !t.forbidden_uses.contains(*u))
                    .map(|u| format!("it no longer forbids {u:?}"))
            };
            if let Some(detail) = detail {
                return Err(Conflict::ShareAlike {
                    source_label: label,
                    detail,
                });
            }
        }
    }
    let mut effective = match own {
        Some((id, t)) => {
            let mut e = Effective::from_terms(own_label, id, t);
            e.price = Some(Price {
                license_id: id.to_string(),
                currency: t.currency.clone(),
                per_call_micros: amount(&t.price_per_call_micros),
                per_1k_output_tokens_micros: amount(&t.price_per_1k_output_tokens_micros),
                registration_fee_micros: amount(&t.registration_fee_micros),
                royalty_bps: t.royalty_bps,
                data_share_bps: t.data_share_bps,
            });
            e
        }
        None => Effective::unlicensed(own_label),
    };
    for s in sources {
        effective.merge(s.effective);
        if let Some(r) = &s.royalty {
            if r.is_owed() && !effective.royalties.iter().any(|m| m.model_id == r.model_id) {
                effective.royalties.push(r.clone());
            }
        }
    }
    let sources = effective.licenses.len() + effective.unlicensed.len();
    let models = effective
        .licenses
        .keys()
        .chain(&effective.unlicensed)
        .filter(|label| label.starts_with("model "))
        .count();
    if models > crate::MAX_UPSTREAM_MODELS || sources > crate::MAX_EFFECTIVE_SOURCES {
        return Err(Conflict::LineageTooLarge {
            models,
            sources,
            max_models: crate::MAX_UPSTREAM_MODELS,
            max_sources: crate::MAX_EFFECTIVE_SOURCES,
        });
    }
    let total = effective.total_royalty_bps();
    if total > BPS_ONE {
        return Err(Conflict::RoyaltyOverflow { total_bps: total });
    }
    check_floors(&effective)?;
    Ok(effective)
}

/// Refuse effective terms whose royalty stack totals more basis points than `max_bps`, the most
/// a registrant accepts (`model.register.max_royalty_bps`). The refusal lists every ancestor of
/// the stack with its share and licence, so the registrant sees which one to drop. Floors are
/// amounts, not shares, and are not counted.
pub fn check_max_royalty(e: &Effective, max_bps: u32) -> Result<(), Conflict> {
    let total_bps = e.total_royalty_bps();
    if total_bps > max_bps {
        return Err(Conflict::RoyaltyAboveMax {
            total_bps,
            max_bps,
            stack: e.royalty_stack(),
        });
    }
    Ok(())
}

fn floor_conflict(c: FloorConflict) -> Conflict {
    Conflict::RoyaltyFloor(Box::new(c))
}

/// Royalty floors at registration: the stack's floors share one currency, and a model with a
/// price of its own charges at least their sum, per call and per 1k output tokens (a model
/// without a price is charged the floors at each use instead).
fn check_floors(e: &Effective) -> Result<(), Conflict> {
    let mut floors = e.floors();
    let Some((first, first_floor)) = floors.next() else {
        return Ok(());
    };
    if let Some((other, f)) = floors.find(|(_, f)| f.currency != first_floor.currency) {
        return Err(floor_conflict(FloorConflict::Currencies {
            first_model_id: first.model_id.clone(),
            first_license_id: first.license_id.clone(),
            first_currency: first_floor.currency.clone(),
            other_model_id: other.model_id.clone(),
            other_license_id: other.license_id.clone(),
            other_currency: f.currency.clone(),
        }));
    }
    let Some(price) = &e.price else {
        return Ok(());
    };
    if price.currency != first_floor.currency {
        return Err(floor_conflict(FloorConflict::Currency {
            model_id: first.model_id.clone(),
            license_id: first.license_id.clone(),
            floor_currency: first_floor.currency.clone(),
            price_currency: price.currency.clone(),
        }));
    }
    let per_call: fn(&Floor) -> u128 = |f| f.per_call_micros;
    let per_1k: fn(&Floor) -> u128 = |f| f.per_1k_output_tokens_micros;
    for (unit, price_micros, of) in [
        ("per call", price.per_call_micros, per_call),
        (
            "per 1k output tokens",
            price.per_1k_output_tokens_micros,
            per_1k,
        ),
    ] {
        // Name the first ancestor whose floor the price no longer covers once the floors
        // before it in the stack are paid.
        let mut total: u128 = 0;
        let mut short = None;
        for (r, f) in e.floors() {
            total += of(f);
            if total > price_micros && short.is_none() {
                short = Some((r, of(f)));
            }
        }
        if let Some((r, floor_micros)) = short {
            return Err(floor_conflict(FloorConflict::Below {
                model_id: r.model_id.clone(),
                license_id: r.license_id.clone(),
                currency: price.currency.clone(),
                unit,
                floor_micros,
                total: if total == floor_micros {
                    String::new()
                } else {
                    format!(" (the floors along its lineage total {total})")
                },
                price_micros,
            }));
        }
    }
    Ok(())
}

/// The answer to "may I use this model for `use_tag`?".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub allowed: bool,
    /// Why not (empty when allowed), each naming the source and clause.
    pub reasons: Vec<String>,
    /// Obligations and notes that do not deny the use (attribution, unlicensed sources).
    pub notes: Vec<String>,
    pub price: Option<Price>,
    pub royalties: Vec<Royalty>,
}

/// Whether `use_tag` (e.g. `commercial`, `research`) is allowed at `now_ms`, optionally in
/// `territory`, by a user who accepts at most `max_royalty_bps` of stacked upstream royalties
/// (`None`: any stack).
pub fn check_use(
    e: &Effective,
    use_tag: &str,
    territory: Option<&str>,
    now_ms: u64,
    max_royalty_bps: Option<u32>,
) -> Decision {
    let mut reasons = Vec::new();
    if use_tag == "commercial" && !e.noncommercial_by.is_empty() {
        for by in &e.noncommercial_by {
            reasons.push(format!(
                "{by} does not allow commercial use (clause: commercial_use)"
            ));
        }
    }
    if let Some(by) = e.forbidden_uses.get(use_tag) {
        for b in by {
            reasons.push(format!(
                "{b} forbids the use {use_tag:?} (clause: forbidden_uses)"
            ));
        }
    }
    if let Some((allowed, by)) = &e.allowed_uses {
        if !allowed.contains(use_tag) {
            reasons.push(format!(
                "only the uses {:?} are allowed, by {} (clause: allowed_uses)",
                allowed,
                by.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    if let (Some((allowed, by)), Some(t)) = (&e.territories, territory) {
        if !allowed.contains(t) {
            reasons.push(format!(
                "territory {t:?} is not among {:?}, set by {} (clause: territories)",
                allowed,
                by.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    if let Some((at, by)) = &e.expires {
        if *at <= now_ms {
            reasons.push(format!(
                "the licence of {by} expired at {at} ms (clause: expires_at_ms)"
            ));
        }
    }
    if let Some(max) = max_royalty_bps {
        let total = e.total_royalty_bps();
        if total > max {
            reasons.push(format!(
                "the royalty stack totals {total} bps, more than the maximum of {max} bps accepted for this use; it is owed to {} (clause: royalty_bps)",
                e.royalty_stack()
            ));
        }
    }
    let mut notes: Vec<String> = e
        .attribution_to
        .iter()
        .map(|a| format!("attribution required: credit {a}"))
        .collect();
    notes.extend(
        e.unlicensed
            .iter()
            .map(|u| format!("{u} has no licence recorded on this ledger")),
    );
    Decision {
        allowed: reasons.is_empty(),
        reasons,
        notes,
        price: e.price.clone(),
        royalties: e.royalties.clone(),
    }
}
