//! Licence terms as they flow down a model's lineage.
//!
//! Every model and dataset may reference a `license.define` record. A model's **effective
//! terms** combine its own licence with the effective terms of its parents and the licences of
//! its datasets, the most restrictive clause winning, and remember *who* imposed each
//! restriction so a refusal or a denial can name the ancestor and the clause:
//!
//! | clause | combination |
//! |---|---|
//! | commercial use | allowed only if every source allows it |
//! | derivatives | the strictest of allowed < approval required < forbidden |
//! | attribution | required if any source requires it (the list of whom to credit) |
//! | share-alike | carried if any source carries it |
//! | forbidden uses | union |
//! | allowed uses | intersection of the sources that restrict them |
//! | territories | intersection of the sources that restrict them |
//! | expiry | the earliest |
//! | royalties | stacked: each ancestor whose licence asks a share or a floor is owed it, once, by every descendant (reach `all_ancestors`, the default) or by its direct children only (`direct_parent`) |
//!
//! A **royalty floor** is the least an ancestor's owner is owed on every use of a descendant
//! (per call plus per 1k output tokens, in the ancestor licence's currency). Floors stack like
//! royalties; a descendant with a price of its own must price at least their sum, and one
//! without is charged them at each use, so a free derivative cannot dodge its ancestors.
//!
//! A licence's **royalty reach** says who owes its royalty (share and floor): every descendant
//! of a model under it, or (`direct_parent`) only the model's direct children. Reach is about
//! money only: every other clause flows to all descendants.
//!
//! [`check_derivation`] refuses a registration that would break an upstream licence;
//! [`check_max_royalty`] one whose royalty stack is over what the registrant accepts;
//! [`check_use`] answers whether a use is allowed now and at what price. Pure: the caller
//! passes time and approvals in.

mod effective;
mod presets;

pub use effective::{
    check_derivation, check_max_royalty, check_use, Decision, Effective, Floor, Price, Royalty,
    Source,
};
pub use presets::{preset, PRESETS};
pub use shoulders_record::RoyaltyReach;

/// Most models (the model itself included) whose terms one model's effective terms may carry.
/// Effective terms name every upstream source, so without a bound a chain of `n` registrations
/// would hold `n²/2` labels (issue 15: 400 chained registrations took 452 MB); with it, state
/// stays linear in the number of records. Real lineages are far shallower.
pub const MAX_UPSTREAM_MODELS: usize = 128;
/// Most sources (models and datasets) one model's effective terms may carry: a registration's
/// own 16 parents and 256 datasets always fit.
pub const MAX_EFFECTIVE_SOURCES: usize = 1024;

/// Why a registration was refused; each names the conflicting source and clause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    #[error("{source_label} forbids derivatives (clause: derivatives)")]
    NoDerivatives { source_label: String },
    #[error("{source_label} requires the owner's approval for derivatives (clause: derivatives); ask its owner for a license.grant with use \"derivative\"")]
    ApprovalRequired { source_label: String },
    #[error("{source_label} does not allow commercial use, so a derivative cannot be licensed for commercial use (clause: commercial_use)")]
    Commercial { source_label: String },
    #[error("{source_label} is share-alike: the derivative's licence must also be share-alike and no more permissive ({detail}) (clause: share_alike)")]
    ShareAlike {
        source_label: String,
        detail: String,
    },
    #[error("{source_label} forbids the use {use_tag:?} that the derivative's licence allows (clause: forbidden_uses)")]
    Use {
        source_label: String,
        use_tag: String,
    },
    #[error("{source_label} is limited to territories {allowed:?}; the derivative's licence claims more (clause: territories)")]
    Territory {
        source_label: String,
        allowed: Vec<String>,
    },
    #[error("the licence of {source_label} expired at {expires_at_ms} ms (clause: expires_at_ms)")]
    Expired {
        source_label: String,
        expires_at_ms: u64,
    },
    #[error(
        "stacked royalties would total {total_bps} bps, more than 10000 (clause: royalty_bps)"
    )]
    RoyaltyOverflow { total_bps: u32 },
    #[error("the royalty stack would total {total_bps} bps, more than the maximum of {max_bps} bps accepted; it is owed to {stack}: build on other ancestors or accept a higher maximum (clause: royalty_bps)")]
    RoyaltyAboveMax {
        total_bps: u32,
        max_bps: u32,
        /// Every ancestor of the stack with its share and licence ([`Effective::royalty_stack`]).
        stack: String,
    },
    #[error("{0} (clause: royalty_floor)")]
    RoyaltyFloor(Box<FloorConflict>),
    #[error("the lineage would carry the terms of {models} models and {sources} sources in all, more than the {max_models} models and {max_sources} sources one model may carry; register from a shallower ancestor or with fewer parents and datasets")]
    LineageTooLarge {
        models: usize,
        sources: usize,
        max_models: usize,
        max_sources: usize,
    },
}

impl Conflict {
    pub fn code(&self) -> &'static str {
        match self {
            Conflict::NoDerivatives { .. } => "E_LICENSE_NO_DERIVATIVES",
            Conflict::ApprovalRequired { .. } => "E_LICENSE_APPROVAL_REQUIRED",
            Conflict::Commercial { .. } => "E_LICENSE_COMMERCIAL_CONFLICT",
            Conflict::ShareAlike { .. } => "E_LICENSE_SHARE_ALIKE",
            Conflict::Use { .. } => "E_LICENSE_USE_CONFLICT",
            Conflict::Territory { .. } => "E_LICENSE_TERRITORY",
            Conflict::Expired { .. } => "E_LICENSE_EXPIRED",
            Conflict::RoyaltyOverflow { .. } => "E_LICENSE_ROYALTY_OVERFLOW",
            Conflict::RoyaltyAboveMax { .. } => "E_LICENSE_ROYALTY_ABOVE_MAX",
            Conflict::RoyaltyFloor(_) => "E_LICENSE_BELOW_ROYALTY_FLOOR",
            Conflict::LineageTooLarge { .. } => "E_LINEAGE_TOO_LARGE",
        }
    }
}

/// Why a registration breaks the royalty floors of its ancestors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FloorConflict {
    #[error("ancestor {model_id} (licence {license_id}) is owed at least {floor_micros} micro-units {currency} {unit} on every use of its descendants{total}; this model's price {unit} is {price_micros}")]
    Below {
        model_id: String,
        license_id: String,
        currency: String,
        /// `per call` or `per 1k output tokens`.
        unit: &'static str,
        floor_micros: u128,
        /// Empty, or the sum of the floors along the lineage when several ancestors set one.
        total: String,
        price_micros: u128,
    },
    #[error("ancestor {model_id} (licence {license_id}) sets its royalty floor in {floor_currency}, but this model's price is in {price_currency}; price it in {floor_currency}")]
    Currency {
        model_id: String,
        license_id: String,
        floor_currency: String,
        price_currency: String,
    },
    #[error("ancestors {first_model_id} (licence {first_license_id}) and {other_model_id} (licence {other_license_id}) set royalty floors in two currencies, {first_currency} and {other_currency}, and one charge cannot pay both")]
    Currencies {
        first_model_id: String,
        first_license_id: String,
        first_currency: String,
        other_model_id: String,
        other_license_id: String,
        other_currency: String,
    },
}
