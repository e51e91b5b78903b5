//! Presets for common licences, mapped to SPDX ids, as `license.define` terms.

use shoulders_record::{Derivatives, LicenseTerms};

/// `(preset name, display name, SPDX id or LicenseRef)`.
pub const PRESETS: &[(&str, &str, &str)] = &[
    ("apache-2.0", "Apache License 2.0", "Apache-2.0"),
    ("mit", "MIT License", "MIT"),
    ("cc-by-4.0", "Creative Commons Attribution 4.0", "CC-BY-4.0"),
    (
        "cc-by-sa-4.0",
        "Creative Commons Attribution-ShareAlike 4.0",
        "CC-BY-SA-4.0",
    ),
    (
        "cc-by-nc-4.0",
        "Creative Commons Attribution-NonCommercial 4.0",
        "CC-BY-NC-4.0",
    ),
    (
        "cc-by-nd-4.0",
        "Creative Commons Attribution-NoDerivatives 4.0",
        "CC-BY-ND-4.0",
    ),
    (
        "openrail-m",
        "Open RAIL-M (responsible AI licence, model)",
        "LicenseRef-OpenRAIL-M",
    ),
    (
        "llama-community",
        "Llama-style community licence",
        "LicenseRef-Llama-Community",
    ),
];

/// Behavioural restrictions in the style of OpenRAIL-M's Attachment A.
const RAIL_FORBIDDEN: &[&str] = &[
    "military",
    "illegal-activity",
    "exploit-minors",
    "disinformation",
    "personal-data-misuse",
    "discrimination",
    "fully-automated-legal-decisions",
    "medical-advice",
];

/// Restrictions in the style of a Llama acceptable-use policy.
const LLAMA_FORBIDDEN: &[&str] = &[
    "military",
    "weapons",
    "illegal-activity",
    "critical-infrastructure",
    "harassment",
    "disinformation",
    "improve-other-llms",
];

/// The terms of preset `name` (no price; set prices in the body before submitting), with its
/// display name and SPDX id.
pub fn preset(name: &str) -> Option<(&'static str, &'static str, LicenseTerms)> {
    let &(_, display, spdx) = PRESETS.iter().find(|(n, _, _)| *n == name)?;
    let base = LicenseTerms {
        commercial_use: true,
        derivatives: Derivatives::Allowed,
        attribution_required: true,
        share_alike: false,
        royalty_bps: 0,
        data_share_bps: 0,
        currency: "USD".into(),
        price_per_call_micros: "0".into(),
        price_per_1k_output_tokens_micros: "0".into(),
        registration_fee_micros: "0".into(),
        royalty_floor_per_call_micros: None,
        royalty_floor_per_1k_output_tokens_micros: None,
        royalty_reach: None,
        expires_at_ms: None,
        allowed_uses: Vec::new(),
        forbidden_uses: Vec::new(),
        territories: Vec::new(),
    };
    let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
    let terms = match name {
        "cc-by-sa-4.0" => LicenseTerms {
            share_alike: true,
            ..base
        },
        "cc-by-nc-4.0" => LicenseTerms {
            commercial_use: false,
            ..base
        },
        "cc-by-nd-4.0" => LicenseTerms {
            derivatives: Derivatives::Forbidden,
            ..base
        },
        "openrail-m" => LicenseTerms {
            forbidden_uses: list(RAIL_FORBIDDEN),
            ..base
        },
        "llama-community" => LicenseTerms {
            forbidden_uses: list(LLAMA_FORBIDDEN),
            ..base
        },
        _ => base,
    };
    Some((display, spdx, terms))
}
