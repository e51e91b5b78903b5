//! The fast decoder ([`SignedRecord::decode`]) against the reference decoder
//! ([`SignedRecord::decode_reference`], the pre-fast-path code): on every record kind and on
//! byte mutations of each, both must agree on accept/refuse, on the error (code and message),
//! and on the decoded record and signing payload; the fast encoder must write the reference
//! encoder's bytes.

use crate::*;
use serde_json::{json, Value};

fn h(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

/// One body of every kind, and the optional parts of each filled in somewhere.
fn bodies() -> Vec<(Kind, Value)> {
    let terms = json!({"commercial_use": true, "derivatives": "approval_required",
        "attribution_required": true, "share_alike": false, "royalty_bps": 500,
        "data_share_bps": 2000, "currency": "USD", "price_per_call_micros": "1000",
        "price_per_1k_output_tokens_micros": "20000", "registration_fee_micros": "0",
        "royalty_floor_per_call_micros": "5000", "royalty_floor_per_1k_output_tokens_micros": "200",
        "royalty_reach": "direct_parent", "expires_at_ms": 1_900_000_000_000u64,
        "allowed_uses": ["research"], "forbidden_uses": ["surveillance"], "territories": ["EU"]});
    vec![
        (
            Kind::ActorRegister,
            json!({"handle": "a", "name": "A \"q\" é/\u{2028}", "payout_address": "IBAN DE00", "url": "https://a.example"}),
        ),
        (
            Kind::DatasetCreate,
            json!({"dataset_id": "a/d", "name": "D", "access": "allowlist", "allowlist": ["b", "c"], "description": "x\ny", "license_id": "a/l"}),
        ),
        (
            Kind::DatasetCreate,
            json!({"dataset_id": "a/r", "name": "R", "access": "open", "review": true, "quota": {"window_ms": 86_400_000u64, "max_bytes": 1_000_000u64, "max_count": 10}, "disputes": {"arbiter": "owner", "bond": {"currency": "USD", "amount_micros": "100"}}}),
        ),
        (
            Kind::DataContribute,
            json!({"dataset_id": "a/d", "content_hash": h('0'), "byte_size": 10, "token_count": 3}),
        ),
        (
            Kind::DataContribute,
            json!({"dataset_id": "a/d", "content_hash": h('0'), "byte_size": 1_099_511_627_776u64, "token_count": 1, "media_type": "text/plain", "title": "T/t", "tdm_reservation": true}),
        ),
        (
            Kind::ModelRegister,
            json!({"model_id": "a/m", "name": "M", "description": "d",
            "parents": [{"model_id": "a/p", "relation": "adapter"}],
            "datasets": ["a/d"], "license_id": "a/l", "url": "https://m.example", "max_royalty_bps": 900,
            "artifacts": [{"path": "model.safetensors", "size_bytes": 100, "sha256": h('a'),
                "tensors": [{"name": "w", "dtype": "F16", "shape": [2, 3], "sha256": h('b')}]}],
            "adapter": {"peft_type": "LORA", "target_modules": ["k_proj", "q_proj"], "r": 8, "lora_alpha": 16},
            "training": {"config_hash": h('c'),
                "code": {"repository": "https://git.example.org/a/t", "commit": "0123456789abcdef0123456789abcdef01234567"},
                "framework": {"name": "PyTorch", "version": "2.4.0"},
                "credits": [{"actor": "a", "role": "trainer"}],
                "compute": {"hardware": "1x A100", "accelerator_hours": 6, "energy_wh": 2400, "region": "eu-west-1"}},
            "source": {"hub": "huggingface", "repo": "acme/tiny", "revision": "0123456789abcdef0123456789abcdef01234567"}}),
        ),
        (
            Kind::LicenseDefine,
            json!({"license_id": "a/l", "name": "L", "spdx_id": "Apache-2.0", "terms": terms}),
        ),
        (
            Kind::LicenseGrant,
            json!({"license_id": "a/l", "model_id": "a/m", "grantee": "b", "uses": ["commercial"], "expires_at_ms": 5}),
        ),
        (
            Kind::LicenseGrant,
            json!({"license_id": "a/l", "dataset_id": "a/d", "grantee": "b"}),
        ),
        (
            Kind::UsageReceipt,
            json!({"usage_id": "u-1", "model_id": "a/m", "payer": "b", "use_category": "research", "input_tokens": 5, "output_tokens": 7, "output_hash": h('1'),
            "attribution": [{"dataset_id": "a/d", "contribution": 4, "ppm": 600000}, {"dataset_id": "a/d", "contribution": 5, "ppm": 400000}],
            "evidence_hash": h('2'), "max_royalty_bps": 10000, "index_state": {"ledger_size": 9, "segments": [4, 9]}}),
        ),
        (
            Kind::UsageReceipt,
            json!({"usage_id": "u-2", "model_id": "a/m", "payer": "b", "use_category": "research", "input_tokens": 0, "output_tokens": 0, "output_hash": h('1')}),
        ),
        (
            Kind::FundsDeposit,
            json!({"account": "b", "currency": "USD", "amount_micros": "1000000000000000000", "reference": "wire 1"}),
        ),
        (
            Kind::FundsWithdraw,
            json!({"currency": "USD", "amount_micros": "5", "payout_address": "IBAN"}),
        ),
        (
            Kind::LedgerConfig,
            json!({"operator": "op", "protocol_fee_bps": 250, "dispute_bond": {"currency": "USD", "amount_micros": "100"}}),
        ),
        (
            Kind::ActorUpdate,
            json!({"name": "N", "url": "https://n.example", "payout_address": "IBAN DE00 0000"}),
        ),
        (Kind::ActorUpdate, json!({"url": "https://u.example"})),
        (Kind::LedgerClock, json!({"now_ms": 1_767_225_600_000u64})),
        (
            Kind::DisputeOpen,
            json!({"contribution": 4, "original": 2, "evidence": [h('2')], "statement": "copies\t2", "bond": {"currency": "USD", "amount_micros": "500"}}),
        ),
        (
            Kind::DisputeOpen,
            json!({"model_id": "a/m", "evidence": [h('2')], "statement": "my weights"}),
        ),
        (
            Kind::DisputeRule,
            json!({"dispute": 9, "verdict": "upheld", "reason": "same text, later"}),
        ),
        (
            Kind::ContributionReview,
            json!({"contribution": 4, "decision": "accept", "quality": 80, "note": "clean"}),
        ),
    ]
}

/// Canonical records of every kind: the golden files' bytes and the bodies above, signed.
fn records() -> Vec<Vec<u8>> {
    let golden: Value =
        serde_json::from_str(include_str!("../tests/data/golden_records.json")).unwrap();
    let mut out: Vec<Vec<u8>> = golden
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["bytes"].as_str().unwrap().as_bytes().to_vec())
        .collect();
    let key = ActorKey::from_seed([7; 32]);
    let mut kinds = std::collections::BTreeSet::new();
    for (i, (kind, value)) in bodies().into_iter().enumerate() {
        let body = Body::from_value(kind, value).unwrap_or_else(|e| panic!("{kind}: {e}"));
        kinds.insert(kind);
        let id = format!("id-{i}");
        let rec = sign_record(
            &key,
            "test.example/log~é",
            &id,
            1_700_000_000_000 + i as u64,
            body,
        )
        .unwrap();
        out.push(rec.bytes().to_vec());
    }
    assert_eq!(kinds.len(), Kind::ALL.len(), "every kind is covered");
    out
}

/// Decode with both decoders and require the same outcome; returns whether it was accepted.
fn agree(bytes: &[u8]) -> bool {
    let fast = SignedRecord::decode(bytes.to_vec());
    let reference = SignedRecord::decode_reference(bytes.to_vec());
    match (fast, reference) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.record(), b.record(), "{}", String::from_utf8_lossy(bytes));
            assert_eq!(a.payload(), b.payload());
            assert_eq!(a.bytes(), b.bytes());
            assert_eq!(a.record().encode(), a.record().encode_reference());
            true
        }
        (Err(a), Err(b)) => {
            assert_eq!(a, b, "{}", String::from_utf8_lossy(bytes));
            false
        }
        (a, b) => panic!(
            "decoders disagree on {}: fast {:?}, reference {:?}",
            String::from_utf8_lossy(bytes),
            a.map(|_| ()),
            b.map(|_| ())
        ),
    }
}

fn splice(bytes: &[u8], at: usize, cut: usize, insert: &[u8]) -> Vec<u8> {
    let mut out = bytes[..at].to_vec();
    out.extend_from_slice(insert);
    out.extend_from_slice(&bytes[at + cut..]);
    out
}

/// Byte offsets of every structural byte and every digit run outside strings, and of every
/// character inside strings.
struct Map {
    structural: Vec<usize>,
    numbers: Vec<(usize, usize)>,
    string_chars: Vec<usize>,
}

fn map(bytes: &[u8]) -> Map {
    let (mut structural, mut numbers, mut string_chars) = (vec![], vec![], vec![]);
    let (mut in_string, mut escaped, mut i) = (false, false, 0);
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            } else {
                string_chars.push(i);
            }
        } else if b.is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            numbers.push((start, i));
            continue;
        } else {
            if b == b'"' {
                in_string = true;
            }
            structural.push(i);
        }
        i += 1;
    }
    Map {
        structural,
        numbers,
        string_chars,
    }
}

/// Every mutation of one canonical record.
fn mutants(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let m = map(bytes);
    // Whitespace and stray bytes around every structural byte.
    for &i in &m.structural {
        for ins in [&b" "[..], b"\n", b"\t", b"\xff", b","] {
            out.push(splice(bytes, i, 0, ins));
            out.push(splice(bytes, i + 1, 0, ins));
        }
    }
    // Number forms.
    for &(s, e) in &m.numbers {
        let n = &bytes[s..e];
        let forms: Vec<Vec<u8>> = vec![
            [n, b".0"].concat(),
            [n, b"e0"].concat(),
            [n, b"E3"].concat(),
            [b"-", n].concat(),
            [b"0", n].concat(),
            [b"+", n].concat(),
            b"-0".to_vec(),
            b"1e3".to_vec(),
            b"1.0".to_vec(),
            b"9007199254740991".to_vec(),
            b"9007199254740992".to_vec(),
            b"18446744073709551616".to_vec(),
            b"4294967296".to_vec(),
            b"0".to_vec(),
            b"\"1\"".to_vec(),
            b"null".to_vec(),
            b"true".to_vec(),
            [n, n].concat(),
        ];
        for f in forms {
            out.push(splice(bytes, s, e - s, &f));
        }
    }
    // Escapes and UTF-8 breakage inside strings.
    for &i in m.string_chars.iter().step_by(3) {
        let b = bytes[i];
        if b.is_ascii() {
            out.push(splice(bytes, i, 1, format!("\\u{:04x}", b).as_bytes()));
            out.push(splice(bytes, i, 1, format!("\\u{:04X}", b).as_bytes()));
        }
        if b == b'/' {
            out.push(splice(bytes, i, 1, b"\\/"));
        }
        out.push(splice(bytes, i, 0, b"\xc3"));
        out.push(splice(bytes, i, 0, b"\xc0\x80"));
        out.push(splice(bytes, i, 0, b"\\"));
        out.push(splice(bytes, i, 0, b"\\n"));
        out.push(splice(bytes, i, 0, b"\\ud800"));
        out.push(splice(bytes, i, 0, b"\x01"));
    }
    // Truncations and bit flips.
    for len in 0..bytes.len() {
        if len < 12 || len % 7 == 0 || len + 12 > bytes.len() {
            out.push(bytes[..len].to_vec());
        }
    }
    for i in 0..bytes.len() {
        for bit in [1u8 << (i % 8), 0x20, 0x80] {
            let mut v = bytes.to_vec();
            v[i] ^= bit;
            out.push(v);
        }
    }
    // Structure: members reordered, repeated, unknown, null; values replaced; other versions.
    let value: Value = serde_json::from_slice(bytes).unwrap();
    let text = |v: &Value| serde_json::to_vec(v).unwrap();
    out.push(reversed(&value));
    let mut body_first_member = None;
    if let Some(body) = value["body"].as_object() {
        if let Some((k, v)) = body.iter().next() {
            body_first_member = Some(format!("{}:{},", json!(k), json!(v)));
        }
        let mut t = b"{\"body\":".to_vec();
        t.extend(reversed(&value["body"]));
        t.extend_from_slice(&text(&value)[8 + text(&value["body"]).len()..]);
        out.push(t);
        for k in body.keys() {
            let mut v = value.clone();
            v["body"][k] = Value::Null;
            out.push(text(&v));
            let mut v = value.clone();
            v["body"].as_object_mut().unwrap().remove(k);
            out.push(text(&v));
        }
        for extra in ["title", "zzz", "aaa", "kind", "tdm_reservation", "review"] {
            for val in [json!(null), json!(false), json!(1), json!("x"), json!([])] {
                let mut v = value.clone();
                v["body"][extra] = val;
                out.push(text(&v));
            }
        }
    }
    if let Some(member) = body_first_member {
        let at = b"{\"body\":{".len();
        out.push(splice(bytes, at, 0, member.as_bytes()));
    }
    for dup in [
        &b"\"id\":\"x\","[..],
        b"\"v\":2,",
        b"\"kind\":\"data.contribute\",",
    ] {
        out.push(splice(bytes, 1, 0, dup));
    }
    for (k, vals) in [
        (
            "v",
            vec![json!(1), json!(3), json!(2.0), json!("2"), json!(null)],
        ),
        (
            "kind",
            vec![
                json!("usage.receipt"),
                json!("data.contribute"),
                json!("nope"),
                json!(1),
            ],
        ),
        (
            "ts_ms",
            vec![
                json!(0),
                json!(9_007_199_254_740_991u64),
                json!(9_007_199_254_740_992u64),
                json!(-1),
            ],
        ),
        ("id", vec![json!(""), json!("a b"), json!("x".repeat(129))]),
        ("log", vec![json!(""), json!("a+b")]),
        ("sig", vec![json!("AA=="), json!("")]),
        ("signer", vec![json!("AA=="), json!("A".repeat(43) + "=")]),
        ("body", vec![json!([]), json!(null), json!({})]),
        ("extra", vec![json!(1)]),
    ] {
        for val in vals {
            let mut v = value.clone();
            v[k] = val;
            out.push(text(&v));
        }
        let mut v = value.clone();
        v.as_object_mut().unwrap().remove(k);
        out.push(text(&v));
    }
    out
}

/// JSON text of `v` with every object's members in reverse key order.
fn reversed(v: &Value) -> Vec<u8> {
    match v {
        Value::Object(m) => {
            let members: Vec<Vec<u8>> = m
                .iter()
                .rev()
                .map(|(k, v)| [serde_json::to_vec(k).unwrap(), b":".to_vec(), reversed(v)].concat())
                .collect();
            [b"{".to_vec(), members.join(&b","[..]), b"}".to_vec()].concat()
        }
        Value::Array(items) => {
            let items: Vec<Vec<u8>> = items.iter().map(reversed).collect();
            [b"[".to_vec(), items.join(&b","[..]), b"]".to_vec()].concat()
        }
        other => serde_json::to_vec(other).unwrap(),
    }
}

#[test]
fn canonical_records_take_the_fast_path() {
    for bytes in records() {
        assert!(
            SignedRecord::decode_fast(&bytes).is_some(),
            "{}",
            String::from_utf8_lossy(&bytes)
        );
        assert!(agree(&bytes));
        let rec = SignedRecord::decode(bytes).unwrap();
        let mut body = Vec::new();
        assert!(crate::fast::write_body(&rec.record().body, &mut body).is_ok());
        assert_eq!(body, canonical_bytes(&rec.record().body.to_value()));
    }
}

#[test]
fn fast_and_reference_decoders_agree_on_mutations() {
    let (mut accepted, mut refused) = (0usize, 0usize);
    let mut codes = std::collections::BTreeSet::new();
    for bytes in records() {
        for m in mutants(&bytes) {
            if agree(&m) {
                accepted += 1;
            } else {
                refused += 1;
                codes.insert(SignedRecord::decode(m).unwrap_err().code());
            }
        }
    }
    // The mutations reach every refusal the decoders have, and some are still accepted
    // (flipped signature bits), so values are compared too.
    for code in [
        "E_RECORD_NOT_UTF8",
        "E_RECORD_MALFORMED",
        "E_RECORD_BAD_NUMBER",
        "E_RECORD_SCHEMA",
        "E_RECORD_VERSION",
        "E_KIND_UNKNOWN",
        "E_FIELD_INVALID",
        "E_RECORD_NOT_CANONICAL",
        "E_KEY_INVALID",
        "E_SIG_INVALID",
    ] {
        assert!(
            codes.contains(code),
            "no mutation was refused with {code}: {codes:?}"
        );
    }
    assert!(
        accepted > 0 && refused > 10_000,
        "{accepted} accepted, {refused} refused"
    );
}

#[test]
fn oversized_records_are_refused_first() {
    let mut bytes = records().remove(0);
    bytes.resize(MAX_RECORD_BYTES + 1, b' ');
    assert!(!agree(&bytes));
    assert_eq!(
        SignedRecord::decode(bytes).unwrap_err().code(),
        "E_RECORD_TOO_LARGE"
    );
}

#[test]
fn the_body_writer_gives_up_on_unsafe_integers() {
    let body = |byte_size: u64| {
        Body::DataContribute(DataContribute {
            dataset_id: "a/d".into(),
            content_hash: h('0'),
            byte_size,
            token_count: 1,
            media_type: None,
            title: None,
            tdm_reservation: false,
        })
    };
    let mut out = Vec::new();
    assert!(crate::fast::write_body(&body(MAX_SAFE_INTEGER), &mut out).is_ok());
    assert!(crate::fast::write_body(&body(MAX_SAFE_INTEGER + 1), &mut out).is_err());
    // `Record::encode` still writes such a body (through `Value`), as before.
    let rec = Record {
        kind: Kind::DataContribute,
        signer: ActorKey::from_seed([1; 32]).public(),
        log: "l".into(),
        client_id: "c".into(),
        ts_ms: 1,
        body: body(MAX_SAFE_INTEGER + 1),
        signature: [0; 64],
    };
    assert_eq!(rec.encode(), rec.encode_reference());
}

#[test]
fn signed_records_are_cheap_to_move() {
    // Submit paths move records through vectors and channels; the record and key are boxed.
    assert!(std::mem::size_of::<SignedRecord>() <= 64);
}
