//! The derived entities. They serialise to the JSON that `shoulders show` prints.

use crate::governance::{ContributionRuling, ModelRuling, Review, ReviewState};
use serde::{Deserialize, Serialize};
use shoulders_license::Effective;
use shoulders_record::{
    Access, ActorRegister, ActorUpdate, Artifact, CreditRole, DataContribute, DatasetCreate,
    DisputePolicy, LicenseDefine, LicenseGrant, LicenseTerms, ModelRegister, Parent, PublicKey,
    Quota, Record, TrainingRun,
};

fn is_false(b: &bool) -> bool {
    !*b
}
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub handle: String,
    pub name: String,
    pub public_key: PublicKey,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payout_address: Option<String>,
    /// Log index of the registering record.
    pub registered_at: u64,
    pub registered_ts_ms: u64,
    /// Log index of the latest `actor.update`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<u64>,
}

impl Actor {
    pub(crate) fn new(index: u64, rec: &Record, b: &ActorRegister) -> Self {
        Actor {
            handle: b.handle.clone(),
            name: b.name.clone(),
            public_key: rec.signer,
            url: b.url.clone(),
            payout_address: b.payout_address.clone(),
            registered_at: index,
            registered_ts_ms: rec.ts_ms,
            updated_at: None,
        }
    }

    pub(crate) fn update(&mut self, index: u64, b: &ActorUpdate) {
        if let Some(n) = &b.name {
            self.name = n.clone();
        }
        if let Some(u) = &b.url {
            self.url = Some(u.clone());
        }
        if let Some(p) = &b.payout_address {
            self.payout_address = Some(p.clone());
        }
        self.updated_at = Some(index);
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dataset {
    pub dataset_id: String,
    pub owner: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub access: Access,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowlist: Vec<String>,
    pub created_at: u64,
    pub created_ts_ms: u64,
    /// Log indexes of the dataset's contributions, in order.
    pub contributions: Vec<u64>,
    /// Number of contributions per contributor handle.
    pub contributors: BTreeMap<String, u64>,
    pub total_bytes: u64,
    pub total_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_id: Option<String>,
    /// The dataset licence's terms as they flow into models trained on it.
    pub effective: Effective,
    /// Contributions of anyone but the owner wait for the owner's review.
    #[serde(default, skip_serializing_if = "is_false")]
    pub review: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disputes: Option<DisputePolicy>,
    /// Contributions carrying a text-and-data-mining reservation, in log order (derived;
    /// rebuilt on load like `contributions`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tdm_reserved: Vec<u64>,
}

impl Dataset {
    pub(crate) fn new(
        index: u64,
        owner: &str,
        rec: &Record,
        b: &DatasetCreate,
        effective: Effective,
    ) -> Self {
        Dataset {
            dataset_id: b.dataset_id.clone(),
            owner: owner.to_string(),
            name: b.name.clone(),
            description: b.description.clone(),
            access: b.access,
            allowlist: b.allowlist.clone(),
            created_at: index,
            created_ts_ms: rec.ts_ms,
            contributions: Vec::new(),
            contributors: BTreeMap::new(),
            total_bytes: 0,
            total_tokens: 0,
            license_id: b.license_id.clone(),
            effective,
            review: b.review,
            quota: b.quota.clone(),
            disputes: b.disputes.clone(),
            tdm_reserved: Vec::new(),
        }
    }

    pub(crate) fn add(&mut self, index: u64, contributor: &str, b: &DataContribute) {
        self.contributions.push(index);
        if b.tdm_reservation {
            self.tdm_reserved.push(index);
        }
        *self
            .contributors
            .entry(contributor.to_string())
            .or_insert(0) += 1;
        // Each term is at most 2^40 (validated), so 2^23 contributions of maximal size fit.
        self.total_bytes = self.total_bytes.saturating_add(b.byte_size);
        self.total_tokens = self.total_tokens.saturating_add(b.token_count);
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contribution {
    /// Log index of the `data.contribute` record; also the contribution's id.
    pub index: u64,
    pub dataset_id: String,
    pub contributor: String,
    pub content_hash: String,
    pub byte_size: u64,
    pub token_count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub ts_ms: u64,
    /// Text-and-data-mining reservation: no model may declare training on it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub tdm_reservation: bool,
    /// Its review, in a reviewed dataset (absent for the owner's own and elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<Review>,
    /// An upheld dispute against it: redirected to an original, or taken down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ruled_against: Option<ContributionRuling>,
}

impl Contribution {
    pub(crate) fn new(
        index: u64,
        contributor: &str,
        rec: &Record,
        b: &DataContribute,
        reviewed: bool,
    ) -> Self {
        Contribution {
            tdm_reservation: b.tdm_reservation,
            review: reviewed.then_some(Review {
                state: ReviewState::Pending,
                quality: None,
                note: None,
                reviewed_at: None,
            }),
            ruled_against: None,
            index,
            dataset_id: b.dataset_id.clone(),
            contributor: contributor.to_string(),
            content_hash: b.content_hash.clone(),
            byte_size: b.byte_size,
            token_count: b.token_count,
            media_type: b.media_type.clone(),
            title: b.title.clone(),
            ts_ms: rec.ts_ms,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Model {
    pub model_id: String,
    pub owner: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub parents: Vec<Parent>,
    /// Models registered later that name this one as a parent, in log order.
    pub children: Vec<String>,
    pub datasets: Vec<String>,
    pub artifacts: Vec<Artifact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub registered_at: u64,
    pub registered_ts_ms: u64,
    /// Licence terms in force for this model, combined along its lineage.
    pub effective: Effective,
    /// An upheld dispute against it: its owner's earnings now go to the rightful party.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ruled_against: Option<ModelRuling>,
    /// A PEFT adapter's declared configuration (`model.register.adapter`), for the diff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<shoulders_record::AdapterConfig>,
    /// How it was trained and who is credited, as registered (the configuration document
    /// itself is in the content store, under `training.config_hash`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<TrainingRun>,
    /// The hub repository and commit the files were downloaded as (`model.register.source`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<shoulders_record::ModelSource>,
}

/// One credit an actor holds: a model whose training run names it, and for what. Recognition,
/// not payment: no money follows a credit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credited {
    pub model_id: String,
    pub role: CreditRole,
}

impl Model {
    pub(crate) fn new(
        index: u64,
        owner: &str,
        rec: &Record,
        b: &ModelRegister,
        effective: Effective,
    ) -> Self {
        Model {
            model_id: b.model_id.clone(),
            owner: owner.to_string(),
            name: b.name.clone(),
            description: b.description.clone(),
            parents: b.parents.clone(),
            children: Vec::new(),
            datasets: b.datasets.clone(),
            artifacts: b.artifacts.clone(),
            license_id: b.license_id.clone(),
            url: b.url.clone(),
            registered_at: index,
            registered_ts_ms: rec.ts_ms,
            effective,
            ruled_against: None,
            adapter: b.adapter.clone(),
            training: b.training.clone(),
            source: b.source.as_deref().cloned(),
        }
    }
}

/// A `license.define` record: named, immutable terms any model or dataset may reference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct License {
    pub license_id: String,
    pub owner: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spdx_id: Option<String>,
    pub terms: LicenseTerms,
    pub defined_at: u64,
    pub defined_ts_ms: u64,
}

impl License {
    pub(crate) fn new(index: u64, owner: &str, rec: &Record, b: &LicenseDefine) -> Self {
        License {
            license_id: b.license_id.clone(),
            owner: owner.to_string(),
            name: b.name.clone(),
            spdx_id: b.spdx_id.clone(),
            terms: b.terms.clone(),
            defined_at: index,
            defined_ts_ms: rec.ts_ms,
        }
    }
}

/// A `license.grant`: the owner of a model or dataset lets `grantee` use it (e.g. for an
/// approval-required derivative, use `derivative`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub license_id: String,
    pub grantor: String,
    pub grantee: String,
    pub uses: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
    pub granted_at: u64,
}

impl Grant {
    pub(crate) fn new(index: u64, grantor: &str, b: &LicenseGrant) -> Self {
        Grant {
            license_id: b.license_id.clone(),
            grantor: grantor.to_string(),
            grantee: b.grantee.clone(),
            uses: b.uses.clone(),
            expires_at_ms: b.expires_at_ms,
            granted_at: index,
        }
    }
}
