//! The fast path of record decoding and encoding.
//!
//! A record is valid only if its bytes are *the* canonical encoding of its typed value, so
//! decoding can parse the bytes straight into the typed structs (no `serde_json::Value`), encode
//! that value canonically once and compare. Anything the fast path does not accept outright
//! (any error, any difference, any escape it does not borrow) goes to the reference decoder
//! ([`crate::SignedRecord::decode`]'s slow path), which decides the verdict and the error: the
//! fast path can only say "accepted, and here is the value", never refuse. Accepting needs
//! everything the reference decoder checks to hold (see `SignedRecord::decode_fast`), so both
//! accept exactly the same byte strings, with the same values.

use crate::body::*;
use crate::{Kind, MAX_SAFE_INTEGER};
use serde::de::{DeserializeSeed, MapAccess, Visitor};
use serde::ser::{self, Serialize};
use std::fmt;

/// Why the fast path gave up; never shown (the reference decoder decides the error).
#[derive(Debug)]
pub(crate) struct GiveUp;

impl fmt::Display for GiveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not on the fast path")
    }
}

impl std::error::Error for GiveUp {}

impl ser::Error for GiveUp {
    fn custom<T: fmt::Display>(_: T) -> Self {
        GiveUp
    }
}

/// Most fields one struct of a body may have on the fast encoder (the widest, `LicenseTerms`,
/// has 17); a wider one makes the encoder give up (the caller then encodes through `Value`).
const MAX_STRUCT_FIELDS: usize = 32;

/// Append the canonical JSON of `value` (keys sorted by their bytes, no whitespace, strings
/// escaped by `serde_json`) to `out`: the same bytes as `canonical_bytes(&to_value(value))`
/// without building a `Value` tree. Gives up (leaving `out` in an unspecified state) on
/// integers that are negative or above 2^53 − 1, floats, maps, bytes and enum variants with
/// data, which no valid body holds.
pub(crate) fn write_canonical<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), GiveUp> {
    let mut scratch = Vec::new();
    value.serialize(Canon {
        out,
        scratch: &mut scratch,
    })
}

/// The canonical encoding of a body (see [`write_canonical`]).
pub(crate) fn write_body(body: &Body, out: &mut Vec<u8>) -> Result<(), GiveUp> {
    match body {
        Body::ActorRegister(b) => write_canonical(b, out),
        Body::DatasetCreate(b) => write_canonical(b, out),
        Body::DataContribute(b) => write_canonical(b, out),
        Body::ModelRegister(b) => write_canonical(b, out),
        Body::LicenseDefine(b) => write_canonical(b, out),
        Body::LicenseGrant(b) => write_canonical(b, out),
        Body::UsageReceipt(b) => write_canonical(b, out),
        Body::FundsDeposit(b) => write_canonical(b, out),
        Body::FundsWithdraw(b) => write_canonical(b, out),
        Body::LedgerConfig(b) => write_canonical(b, out),
        Body::ActorUpdate(b) => write_canonical(b, out),
        Body::LedgerClock(b) => write_canonical(b, out),
        Body::DisputeOpen(b) => write_canonical(b, out),
        Body::DisputeRule(b) => write_canonical(b, out),
        Body::ContributionReview(b) => write_canonical(b, out),
    }
}

/// A serializer writing canonical JSON. Struct members are written as they come, then put in
/// key order at the struct's end through `scratch` (one buffer for all nesting levels: it is
/// only used inside one `end`).
struct Canon<'a> {
    out: &'a mut Vec<u8>,
    scratch: &'a mut Vec<u8>,
}

fn json_str(out: &mut Vec<u8>, s: &str) -> Result<(), GiveUp> {
    serde_json::to_writer(out, s).map_err(|_| GiveUp)
}

fn json_int<T: Serialize>(out: &mut Vec<u8>, v: T) -> Result<(), GiveUp> {
    serde_json::to_writer(out, &v).map_err(|_| GiveUp)
}

impl<'a> ser::Serializer for Canon<'a> {
    type Ok = ();
    type Error = GiveUp;
    type SerializeSeq = CanonSeq<'a>;
    type SerializeTuple = CanonSeq<'a>;
    type SerializeTupleStruct = ser::Impossible<(), GiveUp>;
    type SerializeTupleVariant = ser::Impossible<(), GiveUp>;
    type SerializeMap = ser::Impossible<(), GiveUp>;
    type SerializeStruct = CanonStruct<'a>;
    type SerializeStructVariant = ser::Impossible<(), GiveUp>;

    fn serialize_bool(self, v: bool) -> Result<(), GiveUp> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn serialize_i8(self, _: i8) -> Result<(), GiveUp> {
        Err(GiveUp)
    }
    fn serialize_i16(self, _: i16) -> Result<(), GiveUp> {
        Err(GiveUp)
    }
    fn serialize_i32(self, _: i32) -> Result<(), GiveUp> {
        Err(GiveUp)
    }
    fn serialize_i64(self, _: i64) -> Result<(), GiveUp> {
        Err(GiveUp)
    }
    fn serialize_u8(self, v: u8) -> Result<(), GiveUp> {
        json_int(self.out, v)
    }
    fn serialize_u16(self, v: u16) -> Result<(), GiveUp> {
        json_int(self.out, v)
    }
    fn serialize_u32(self, v: u32) -> Result<(), GiveUp> {
        json_int(self.out, v)
    }
    /// Above 2^53 − 1 gives up, so canonical bytes written here hold only safe integers
    /// (what the reference decoder's number check accepts); `Record::encode` then goes through
    /// `Value` and writes the number, and decoding leaves the refusal to the reference decoder.
    fn serialize_u64(self, v: u64) -> Result<(), GiveUp> {
        if v > MAX_SAFE_INTEGER {
            return Err(GiveUp);
        }
        json_int(self.out, v)
    }
    fn serialize_f32(self, _: f32) -> Result<(), GiveUp> {
        Err(GiveUp)
    }
    fn serialize_f64(self, _: f64) -> Result<(), GiveUp> {
        Err(GiveUp)
    }
    fn serialize_char(self, v: char) -> Result<(), GiveUp> {
        json_str(self.out, v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result<(), GiveUp> {
        json_str(self.out, v)
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), GiveUp> {
        Err(GiveUp)
    }
    fn serialize_none(self) -> Result<(), GiveUp> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), GiveUp> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), GiveUp> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), GiveUp> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), GiveUp> {
        json_str(self.out, variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), GiveUp> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), GiveUp> {
        Err(GiveUp)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<CanonSeq<'a>, GiveUp> {
        self.out.push(b'[');
        Ok(CanonSeq {
            out: self.out,
            scratch: self.scratch,
            first: true,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<CanonSeq<'a>, GiveUp> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<CanonStruct<'a>, GiveUp> {
        let mark = self.out.len();
        Ok(CanonStruct {
            out: self.out,
            scratch: self.scratch,
            mark,
            fields: [("", 0, 0); MAX_STRUCT_FIELDS],
            count: 0,
        })
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, GiveUp> {
        Err(GiveUp)
    }
}

struct CanonSeq<'a> {
    out: &'a mut Vec<u8>,
    scratch: &'a mut Vec<u8>,
    first: bool,
}

impl CanonSeq<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), GiveUp> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        value.serialize(Canon {
            out: self.out,
            scratch: self.scratch,
        })
    }
}

impl ser::SerializeSeq for CanonSeq<'_> {
    type Ok = ();
    type Error = GiveUp;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), GiveUp> {
        self.element(value)
    }
    fn end(self) -> Result<(), GiveUp> {
        self.out.push(b']');
        Ok(())
    }
}

impl ser::SerializeTuple for CanonSeq<'_> {
    type Ok = ();
    type Error = GiveUp;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), GiveUp> {
        self.element(value)
    }
    fn end(self) -> Result<(), GiveUp> {
        self.out.push(b']');
        Ok(())
    }
}

/// A struct being written: its members' values lie in `out` after `mark`, at the recorded
/// ranges, until `end` writes the object in key order.
struct CanonStruct<'a> {
    out: &'a mut Vec<u8>,
    scratch: &'a mut Vec<u8>,
    mark: usize,
    fields: [(&'static str, usize, usize); MAX_STRUCT_FIELDS],
    count: usize,
}

impl ser::SerializeStruct for CanonStruct<'_> {
    type Ok = ();
    type Error = GiveUp;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), GiveUp> {
        if self.count == MAX_STRUCT_FIELDS {
            return Err(GiveUp);
        }
        let start = self.out.len();
        value.serialize(Canon {
            out: self.out,
            scratch: self.scratch,
        })?;
        self.fields[self.count] = (key, start - self.mark, self.out.len() - self.mark);
        self.count += 1;
        Ok(())
    }
    fn end(mut self) -> Result<(), GiveUp> {
        let fields = &mut self.fields[..self.count];
        fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
        if fields.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(GiveUp);
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(&self.out[self.mark..]);
        self.out.truncate(self.mark);
        self.out.push(b'{');
        for (i, &(key, start, end)) in fields.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            json_str(self.out, key)?;
            self.out.push(b':');
            self.out.extend_from_slice(&self.scratch[start..end]);
        }
        self.out.push(b'}');
        Ok(())
    }
}

/// The envelope's fields as the fast path reads them (borrowed where the canonical form never
/// escapes: kind, base64).
pub(crate) struct FastEnvelope<'a> {
    pub body: Body,
    pub id: String,
    pub kind: &'a str,
    pub log: String,
    pub sig: &'a str,
    pub signer: &'a str,
    pub ts_ms: u64,
    pub v: u64,
}

/// The `kind` a canonical envelope names: the value after its last `,"kind":"` (inside a
/// canonical string every `"` is escaped, so the pattern only occurs as a member; no body has
/// a `kind` member). Only a guess for bytes that are not canonical; the caller checks it
/// against the parsed `kind`.
fn guess_kind(bytes: &[u8]) -> Option<Kind> {
    const PAT: &[u8] = b",\"kind\":\"";
    let at = bytes.windows(PAT.len()).rposition(|w| w == PAT)? + PAT.len();
    let len = bytes[at..].iter().position(|&b| b == b'"')?;
    let s = std::str::from_utf8(&bytes[at..at + len]).ok()?;
    Kind::parse(s).ok()
}

/// Parse record bytes straight into the envelope and typed body. `None` on anything it does
/// not read (the reference decoder then decides).
pub(crate) fn parse_envelope(bytes: &[u8]) -> Option<FastEnvelope<'_>> {
    if !bytes.starts_with(b"{\"body\":{") {
        return None;
    }
    let kind = guess_kind(bytes)?;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let env = serde::Deserializer::deserialize_map(&mut de, EnvelopeVisitor(kind)).ok()?;
    de.end().ok()?;
    if env.kind != kind.as_str() {
        return None;
    }
    Some(env)
}

struct EnvelopeVisitor(Kind);

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = FastEnvelope<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a record envelope")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error;
        fn set<T, E: Error>(slot: &mut Option<T>, v: T) -> Result<(), E> {
            match slot.replace(v) {
                None => Ok(()),
                Some(_) => Err(E::custom("duplicate")),
            }
        }
        let (mut body, mut id, mut kind, mut log) = (None, None, None, None);
        let (mut sig, mut signer, mut ts_ms, mut v) = (None, None, None, None);
        while let Some(key) = map.next_key::<&'de str>()? {
            match key {
                "body" => set(&mut body, map.next_value_seed(BodySeed(self.0))?)?,
                "id" => set(&mut id, map.next_value::<String>()?)?,
                "kind" => set(&mut kind, map.next_value::<&'de str>()?)?,
                "log" => set(&mut log, map.next_value::<String>()?)?,
                "sig" => set(&mut sig, map.next_value::<&'de str>()?)?,
                "signer" => set(&mut signer, map.next_value::<&'de str>()?)?,
                "ts_ms" => set(&mut ts_ms, map.next_value::<u64>()?)?,
                "v" => set(&mut v, map.next_value::<u64>()?)?,
                _ => return Err(A::Error::custom("unknown field")),
            }
        }
        let missing = || A::Error::custom("missing field");
        Ok(FastEnvelope {
            body: body.ok_or_else(missing)?,
            id: id.ok_or_else(missing)?,
            kind: kind.ok_or_else(missing)?,
            log: log.ok_or_else(missing)?,
            sig: sig.ok_or_else(missing)?,
            signer: signer.ok_or_else(missing)?,
            ts_ms: ts_ms.ok_or_else(missing)?,
            v: v.ok_or_else(missing)?,
        })
    }
}

/// Reads the body of a known kind.
struct BodySeed(Kind);

impl<'de> DeserializeSeed<'de> for BodySeed {
    type Value = Body;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Body, D::Error> {
        use serde::Deserialize as De;
        Ok(match self.0 {
            Kind::ActorRegister => Body::ActorRegister(De::deserialize(d)?),
            Kind::DatasetCreate => Body::DatasetCreate(De::deserialize(d)?),
            Kind::DataContribute => Body::DataContribute(De::deserialize(d)?),
            Kind::ModelRegister => Body::ModelRegister(De::deserialize(d)?),
            Kind::LicenseDefine => Body::LicenseDefine(De::deserialize(d)?),
            Kind::LicenseGrant => Body::LicenseGrant(De::deserialize(d)?),
            Kind::UsageReceipt => Body::UsageReceipt(De::deserialize(d)?),
            Kind::FundsDeposit => Body::FundsDeposit(De::deserialize(d)?),
            Kind::FundsWithdraw => Body::FundsWithdraw(De::deserialize(d)?),
            Kind::LedgerConfig => Body::LedgerConfig(De::deserialize(d)?),
            Kind::ActorUpdate => Body::ActorUpdate(De::deserialize(d)?),
            Kind::LedgerClock => Body::LedgerClock(De::deserialize(d)?),
            Kind::DisputeOpen => Body::DisputeOpen(De::deserialize(d)?),
            Kind::DisputeRule => Body::DisputeRule(De::deserialize(d)?),
            Kind::ContributionReview => Body::ContributionReview(De::deserialize(d)?),
        })
    }
}
