//! The legs of one record as one compact value, and one holder's leg positions of a batch as
//! one run, so a backend stores a receipt's ~8 legs as a single row (plus one run entry per
//! holder and batch) instead of ~8 wide rows each with its own holder-index entry: those were a
//! third of the settlement writer's time.
//!
//! Format (version 1): the version byte, the leg count, then per leg its `seq`, the strings
//! holder, account, currency, amount and role, a presence byte, and the present optional
//! fields (model id, dataset id, contribution, beneficiary). Integers are LEB128 varints. A
//! string is a varint tag: `0` is followed by its length and UTF-8 bytes; `k > 0` repeats the
//! `k`-th string introduced earlier in the same value (a receipt's legs share the currency, the
//! model and most roles). The index and time of the record are not repeated here: the row that
//! holds the value has them.

use crate::{LegRow, StoreError};
use std::borrow::Cow;
use std::sync::Arc;

const VERSION: u8 = 1;
/// Most legs one value may hold: far above what any record produces (a receipt has one leg per
/// party it pays), and a bound on what a corrupt value can make a reader allocate.
pub const MAX_LEGS: usize = 4096;
/// Longest string a value may hold (names, decimal amounts).
const MAX_STRING_BYTES: usize = 4096;

const HAS_MODEL: u8 = 1;
const HAS_DATASET: u8 = 2;
const HAS_CONTRIBUTION: u8 = 4;
const HAS_BENEFICIARY: u8 = 8;

/// Append the encoding of `legs` (all of one record, in `seq` order) to `out`.
pub fn encode(legs: &[LegRow], out: &mut Vec<u8>) {
    assert!(legs.len() <= MAX_LEGS, "a record's legs over the limit");
    let mut strings: Vec<&str> = Vec::new();
    out.push(VERSION);
    put_varint(out, legs.len() as u64);
    for leg in legs {
        debug_assert_eq!(leg.index, legs[0].index, "legs of one record");
        put_varint(out, u64::from(leg.seq));
        for s in [
            &*leg.holder,
            &*leg.account,
            &*leg.currency,
            leg.amount_micros.as_str(),
            &*leg.role,
        ] {
            put_str(out, &mut strings, s);
        }
        let bit = |present: bool, flag: u8| if present { flag } else { 0 };
        let flags = bit(leg.model_id.is_some(), HAS_MODEL)
            | bit(leg.dataset_id.is_some(), HAS_DATASET)
            | bit(leg.contribution.is_some(), HAS_CONTRIBUTION)
            | bit(leg.beneficiary.is_some(), HAS_BENEFICIARY);
        out.push(flags);
        if let Some(m) = &leg.model_id {
            put_str(out, &mut strings, m);
        }
        if let Some(d) = &leg.dataset_id {
            put_str(out, &mut strings, d);
        }
        if let Some(c) = leg.contribution {
            put_varint(out, c);
        }
        if let Some(b) = &leg.beneficiary {
            put_str(out, &mut strings, b);
        }
    }
}

/// The legs of record `index` (signed at `ts_ms`) from their encoding. A value that does not
/// decode is `E_STORE_CORRUPT`, never a panic.
pub fn decode(index: u64, ts_ms: u64, bytes: &[u8]) -> Result<Vec<LegRow>, StoreError> {
    decode_where(index, ts_ms, bytes, |_| true)
}

/// Leg `seq` of record `index`, if the value holds it: the whole value is checked, but only
/// that leg is built (a holder's page reads one leg from each of up to 1,000 records).
pub fn decode_one(
    index: u64,
    ts_ms: u64,
    bytes: &[u8],
    seq: u32,
) -> Result<Option<LegRow>, StoreError> {
    Ok(decode_where(index, ts_ms, bytes, |s| s == seq)?.pop())
}

/// The legs whose seq `keep` accepts. Strings are read as slices of `bytes`; a kept leg's
/// names become `Arc<str>`s shared by every kept leg that repeats them.
fn decode_where<'a>(
    index: u64,
    ts_ms: u64,
    bytes: &'a [u8],
    keep: impl Fn(u32) -> bool,
) -> Result<Vec<LegRow>, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("legs of record {index}: {what}"));
    let mut r = Cursor { bytes, at: 0 };
    if r.byte().ok_or_else(|| corrupt("empty"))? != VERSION {
        return Err(corrupt("unknown format version"));
    }
    let count = r.varint().ok_or_else(|| corrupt("truncated count"))?;
    if count > MAX_LEGS as u64 {
        return Err(corrupt("too many legs"));
    }
    let mut strings: Vec<&'a str> = Vec::new();
    let mut shared = Shared::default();
    let mut legs = Vec::new();
    for _ in 0..count {
        let seq = r.varint().ok_or_else(|| corrupt("truncated seq"))?;
        let seq = u32::try_from(seq).map_err(|_| corrupt("seq out of range"))?;
        let mut s = || r.string(&mut strings).ok_or_else(|| corrupt("bad string"));
        let (holder, account, currency, amount, role) = (s()?, s()?, s()?, s()?, s()?);
        let flags = r.byte().ok_or_else(|| corrupt("truncated flags"))?;
        if flags & !(HAS_MODEL | HAS_DATASET | HAS_CONTRIBUTION | HAS_BENEFICIARY) != 0 {
            return Err(corrupt("unknown flags"));
        }
        let mut opt = |r: &mut Cursor<'a>, bit: u8| -> Result<Option<&'a str>, StoreError> {
            if flags & bit == 0 {
                return Ok(None);
            }
            r.string(&mut strings)
                .map(Some)
                .ok_or_else(|| corrupt("bad string"))
        };
        let model_id = opt(&mut r, HAS_MODEL)?;
        let dataset_id = opt(&mut r, HAS_DATASET)?;
        let contribution = if flags & HAS_CONTRIBUTION != 0 {
            Some(
                r.varint()
                    .ok_or_else(|| corrupt("truncated contribution"))?,
            )
        } else {
            None
        };
        let beneficiary = opt(&mut r, HAS_BENEFICIARY)?;
        if !keep(seq) {
            continue;
        }
        legs.push(LegRow {
            index,
            seq,
            ts_ms,
            holder: shared.get(holder),
            account: shared.get(account),
            currency: shared.get(currency),
            amount_micros: amount.to_string(),
            role: Cow::Owned(role.to_string()),
            model_id: model_id.map(|m| shared.get(m)),
            dataset_id: dataset_id.map(|d| shared.get(d)),
            contribution,
            beneficiary: beneficiary.map(|b| shared.get(b)),
        });
    }
    if r.at != bytes.len() {
        return Err(corrupt("trailing bytes"));
    }
    Ok(legs)
}

/// One `Arc<str>` per distinct string slice of a value (a repeated string is the same slice of
/// the value, so a pointer comparison finds it).
#[derive(Default)]
struct Shared<'a>(Vec<(&'a str, Arc<str>)>);

impl<'a> Shared<'a> {
    fn get(&mut self, s: &'a str) -> Arc<str> {
        if let Some((_, a)) = self
            .0
            .iter()
            .find(|(t, _)| std::ptr::eq(t.as_ptr(), s.as_ptr()) && t.len() == s.len())
        {
            return Arc::clone(a);
        }
        let a: Arc<str> = s.into();
        self.0.push((s, Arc::clone(&a)));
        a
    }
}

/// Where one of a holder's legs is, with what a page filters on (time, role): a holder's
/// legs are found through runs of these, and the legs themselves read from their record's set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegAt {
    pub index: u64,
    pub seq: u32,
    pub ts_ms: u64,
    pub role: Arc<str>,
}

/// Most positions one run holds: a holder's legs of one batch are stored as runs of at most
/// this many, so the writer adds one index entry per holder and batch instead of one per leg,
/// and a reader decodes at most this many positions to reach any page.
pub const MAX_RUN_LEGS: usize = 256;

/// Append the encoding of one holder's run of leg positions (in log order) to `out`: the
/// version byte, the count, then per position the index (as the gap from the previous one),
/// the seq, the time (zigzag gap from the previous one) and the role (a string tag as above).
pub fn encode_run(legs: &[&LegRow], out: &mut Vec<u8>) {
    assert!(
        !legs.is_empty() && legs.len() <= MAX_RUN_LEGS,
        "a run holds 1..=MAX_RUN_LEGS legs"
    );
    let mut strings: Vec<&str> = Vec::new();
    out.push(VERSION);
    put_varint(out, legs.len() as u64);
    let (mut index, mut ts_ms) = (0u64, 0u64);
    for (n, leg) in legs.iter().enumerate() {
        assert!(
            n == 0 || (leg.index, leg.seq) > (legs[n - 1].index, legs[n - 1].seq),
            "a run is in log order"
        );
        put_varint(out, leg.index - index);
        put_varint(out, u64::from(leg.seq));
        put_varint(out, zigzag(leg.ts_ms.wrapping_sub(ts_ms) as i64));
        put_str(out, &mut strings, &leg.role);
        (index, ts_ms) = (leg.index, leg.ts_ms);
    }
}

/// The positions of a run from its encoding (`E_STORE_CORRUPT` if it does not decode, or is
/// not in log order).
pub fn decode_run(holder: &str, bytes: &[u8]) -> Result<Vec<LegAt>, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("a leg run of {holder}: {what}"));
    let mut r = Cursor { bytes, at: 0 };
    if r.byte().ok_or_else(|| corrupt("empty"))? != VERSION {
        return Err(corrupt("unknown format version"));
    }
    let count = r.varint().ok_or_else(|| corrupt("truncated count"))?;
    if count == 0 || count > MAX_RUN_LEGS as u64 {
        return Err(corrupt("bad count"));
    }
    let mut strings: Vec<&str> = Vec::new();
    let mut shared = Shared::default();
    let mut out: Vec<LegAt> = Vec::with_capacity(count as usize);
    let (mut index, mut ts_ms) = (0u64, 0u64);
    for _ in 0..count {
        let gap = r.varint().ok_or_else(|| corrupt("truncated index"))?;
        index = index
            .checked_add(gap)
            .ok_or_else(|| corrupt("index overflow"))?;
        let seq = r.varint().ok_or_else(|| corrupt("truncated seq"))?;
        let seq = u32::try_from(seq).map_err(|_| corrupt("seq out of range"))?;
        let dt = unzigzag(r.varint().ok_or_else(|| corrupt("truncated time"))?);
        ts_ms = ts_ms.wrapping_add(dt as u64);
        let role = shared.get(r.string(&mut strings).ok_or_else(|| corrupt("bad role"))?);
        if out.last().is_some_and(|p| (p.index, p.seq) >= (index, seq)) {
            return Err(corrupt("positions out of order"));
        }
        out.push(LegAt {
            index,
            seq,
            ts_ms,
            role,
        });
    }
    if r.at != bytes.len() {
        return Err(corrupt("trailing bytes"));
    }
    Ok(out)
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_str<'a>(out: &mut Vec<u8>, strings: &mut Vec<&'a str>, s: &'a str) {
    assert!(s.len() <= MAX_STRING_BYTES, "a leg's string over the limit");
    // A linear search: a record's legs introduce a dozen or so distinct strings.
    if let Some(k) = strings.iter().position(|t| *t == s) {
        put_varint(out, k as u64 + 1);
    } else {
        put_varint(out, 0);
        put_varint(out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
        strings.push(s);
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f).checked_shl(shift)?;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn string(&mut self, strings: &mut Vec<&'a str>) -> Option<&'a str> {
        let tag = self.varint()?;
        if tag > 0 {
            return strings.get(usize::try_from(tag - 1).ok()?).copied();
        }
        let len = usize::try_from(self.varint()?).ok()?;
        if len > MAX_STRING_BYTES {
            return None;
        }
        let end = self.at.checked_add(len)?;
        let s = std::str::from_utf8(self.bytes.get(self.at..end)?).ok()?;
        self.at = end;
        strings.push(s);
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leg(seq: u32, holder: &str, amount: &str, contribution: Option<u64>) -> LegRow {
        LegRow {
            index: 7,
            seq,
            ts_ms: 1_800_000_000_000,
            holder: holder.into(),
            account: format!("acct:{holder}").into(),
            currency: "USD".into(),
            amount_micros: amount.into(),
            role: Cow::Borrowed("data_share"),
            model_id: Some("m/base".into()),
            dataset_id: contribution.map(|_| "ds".into()),
            contribution,
            beneficiary: None,
        }
    }

    #[test]
    fn round_trips_and_shares_repeated_strings() {
        let legs = vec![
            leg(0, "alice", "-1000", None),
            leg(1, "bob", "600", Some(3)),
            leg(2, "carol", "400", Some(u64::MAX)),
        ];
        let mut out = Vec::new();
        encode(&legs, &mut out);
        assert_eq!(decode(7, 1_800_000_000_000, &out).unwrap(), legs);
        for leg in &legs {
            let one = decode_one(7, 1_800_000_000_000, &out, leg.seq).unwrap();
            assert_eq!(one.as_ref(), Some(leg));
        }
        assert_eq!(decode_one(7, 0, &out, 3).unwrap(), None);
        // "USD", "data_share" and "m/base" are written once.
        assert_eq!(out.windows(3).filter(|w| w == b"USD").count(), 1);
        assert_eq!(out.windows(6).filter(|w| w == b"m/base").count(), 1);
    }

    #[test]
    fn a_damaged_value_is_corrupt_not_a_panic() {
        let mut out = Vec::new();
        encode(&[leg(0, "alice", "5", Some(1))], &mut out);
        for cut in 0..out.len() {
            let err = decode(7, 0, &out[..cut]).unwrap_err();
            assert_eq!(err.code(), "E_STORE_CORRUPT", "cut at {cut}");
            // Picking one leg still checks the whole value.
            assert!(decode_one(7, 0, &out[..cut], 0).is_err(), "cut at {cut}");
        }
        let mut extra = out.clone();
        extra.push(0);
        assert!(decode(7, 0, &extra).is_err());
        let mut version = out.clone();
        version[0] = 9;
        assert!(decode(7, 0, &version).is_err());
        // A back-reference to a string not yet introduced.
        assert!(decode(7, 0, &[VERSION, 1, 0, 5]).is_err());
    }

    #[test]
    fn runs_round_trip_and_refuse_disorder() {
        let legs = [
            leg(7, "a", "1", None),
            LegRow {
                index: 9,
                ts_ms: 1_799_999_999_000,
                ..leg(0, "a", "1", Some(1))
            },
            LegRow {
                index: 9,
                seq: 3,
                role: Cow::Borrowed("royalty"),
                ..leg(0, "a", "1", None)
            },
        ];
        let refs: Vec<&LegRow> = legs.iter().collect();
        let mut out = Vec::new();
        encode_run(&refs, &mut out);
        let at = decode_run("a", &out).unwrap();
        let want: Vec<(u64, u32, u64, &str)> = legs
            .iter()
            .map(|l| (l.index, l.seq, l.ts_ms, &*l.role))
            .collect();
        let got: Vec<(u64, u32, u64, &str)> = at
            .iter()
            .map(|p| (p.index, p.seq, p.ts_ms, &*p.role))
            .collect();
        assert_eq!(got, want);
        for cut in 0..out.len() {
            assert!(decode_run("a", &out[..cut]).is_err(), "cut at {cut}");
        }
        // Two positions with a zero gap and the same seq are out of order.
        assert!(decode_run("a", &[VERSION, 2, 5, 0, 0, 0, 1, b'x', 0, 0, 0, 1]).is_err());
    }

    proptest! {
        #[test]
        fn any_legs_round_trip(
            raw in proptest::collection::vec(
                ("[a-z]{0,4}", "-?[0-9]{1,20}", any::<Option<u64>>(), any::<bool>(), 0u32..1000),
                0..20,
            ),
            noise in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let legs: Vec<LegRow> = raw
                .iter()
                .map(|(h, a, c, b, seq)| LegRow {
                    beneficiary: b.then(|| Arc::from(h.as_str())),
                    ..leg(*seq, h, a, *c)
                })
                .collect();
            let mut out = Vec::new();
            encode(&legs, &mut out);
            prop_assert_eq!(decode(7, 1_800_000_000_000, &out).unwrap(), legs);
            // Arbitrary bytes decode to legs or to an error, never a panic.
            let _ = decode(7, 0, &noise);
            let _ = decode_run("x", &noise);
        }
    }
}
