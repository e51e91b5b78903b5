//! The contribution use case: store a document, then submit the signed `data.contribute` that
//! names it. `shoulders contribute` and `POST /api/contributions` both call
//! [`Ledger::contribute`]; neither stores content or submits on its own.

use crate::content::{check_sizes, content_ref, token_count, Measured, MAX_CONTENT_BYTES};
use crate::writer::outside_window;
use crate::{Appended, Ledger, LedgerError};
use serde::Serialize;
use shoulders_log::leaf_hash;
use shoulders_record::{Body, SignedRecord};

/// What [`Ledger::contribute`] answers: the append (or duplicate) and the stored content's
/// reference.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Contributed {
    #[serde(flatten)]
    pub appended: Appended,
    /// `sha256:<hex>` of the stored document.
    pub content_hash: String,
}

impl Ledger {
    /// Upload a contribution: the exact signed bytes of a `data.contribute` record and the
    /// UTF-8 document it names.
    ///
    /// Checked before anything is written: the record decodes and verifies, is a
    /// `data.contribute` (`E_NOT_A_CONTRIBUTION`), names exactly this content
    /// (`E_CONTENT_HASH_MISMATCH`), which is UTF-8 (`E_CONTENT_NOT_UTF8`) of at most 1 GiB
    /// (`E_CONTENT_TOO_LARGE`), with the measured sizes (`E_CONTENT_SIZE_MISMATCH`), and the fold
    /// would accept it now (unknown signer, dataset, forbidden contributor, reused id, outside
    /// the admission window). Then the content is stored durably (written, fsynced, renamed)
    /// and only after that the record goes through [`Ledger::submit`]'s door, which re-reads
    /// the stored content. A record the fold still refuses at commit leaves its content stored
    /// (content-addressed, harmless, and reused by a later contribution of the same bytes).
    pub fn contribute(
        &self,
        record_bytes: Vec<u8>,
        content: &[u8],
    ) -> Result<Contributed, LedgerError> {
        self.contribute_record(SignedRecord::decode(record_bytes)?, content)
    }

    /// [`Ledger::contribute`] for a record already decoded (its signature is checked unless
    /// it already was; see [`Ledger::submit_record`]).
    pub fn contribute_record(
        &self,
        mut record: SignedRecord,
        content: &[u8],
    ) -> Result<Contributed, LedgerError> {
        record.verify_signature()?;
        let r = record.record();
        let Body::DataContribute(body) = &r.body else {
            return Err(LedgerError::NotAContribution(r.kind.as_str().to_string()));
        };
        let actual = content_ref(content);
        if actual != body.content_hash {
            return Err(LedgerError::ContentHashMismatch {
                declared: body.content_hash.clone(),
                actual,
            });
        }
        let byte_size = content.len() as u64;
        if byte_size > MAX_CONTENT_BYTES {
            return Err(LedgerError::ContentTooLarge {
                size_bytes: byte_size,
                limit_bytes: MAX_CONTENT_BYTES,
            });
        }
        if std::str::from_utf8(content).is_err() {
            return Err(LedgerError::ContentNotUtf8(actual));
        }
        let measured = Measured {
            byte_size,
            token_count: token_count(byte_size),
        };
        check_sizes(&actual, body.byte_size, body.token_count, measured)?;
        self.precheck(&record)?;
        let stored = self.content().put(content)?;
        assert_eq!(stored, actual, "the store addresses content by its hash");
        let appended = self.submit_checked(self.check_record(record))?;
        Ok(Contributed {
            appended,
            content_hash: actual,
        })
    }

    /// Refuse now what the writer would refuse, so a refused contribution stores nothing. An
    /// identical resubmission passes (the writer answers it as a duplicate). Advisory: the
    /// fold at commit time decides.
    fn precheck(&self, record: &SignedRecord) -> Result<(), LedgerError> {
        let r = record.record();
        if let Some(err) = crate::writer::wrong_ledger(self.origin(), r) {
            return Err(err);
        }
        let leaf = leaf_hash(record.bytes());
        match self.seen(&r.signer, &r.client_id)? {
            Some(seen) if seen.leaf_hash == leaf.0 => Ok(()),
            Some(seen) => Err(LedgerError::IdConflict {
                client_id: r.client_id.clone(),
                index: seen.index,
            }),
            None => match outside_window(self.admission_window_ms(), r.ts_ms) {
                Some(err) => Err(err),
                None => self.with_state(|state| {
                    state
                        .check_with(record, &shoulders_state::NoHistory)
                        .map_err(LedgerError::Rejected)
                }),
            },
        }
    }
}
