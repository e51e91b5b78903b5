//! A backend-independent conformance suite for [`Store`] implementations.
//!
//! Each backend's tests call [`run_all`] with a factory that opens a fresh, empty store and a
//! re-opener that opens the same store again (to check durability across handles). The SQLite
//! store runs it in `tests/conformance.rs`; other backends (PostgreSQL) are meant to run the
//! same functions against a real server.

use crate::{
    AppendBatch, Hash, LegQuery, LegRow, ReceiptQuery, ReceiptRow, SeenAt, SeenRow, StateRow,
    StateWrites, Store, StoreError,
};
use shoulders_log::{stored_hash_count, Frontier, MemoryHashes};

/// Leaf bytes used by the suite: distinct per index.
fn leaf(i: u64) -> Vec<u8> {
    format!("conformance record {i}").into_bytes()
}

/// Append records `first..first + count` (generated) through a frontier, returning the new
/// frontier.
fn append_range(
    store: &mut dyn Store,
    frontier: &mut Frontier,
    count: u64,
) -> Result<(), StoreError> {
    let first = frontier.size();
    let records: Vec<Vec<u8>> = (first..first + count).map(leaf).collect();
    let mut hashes = Vec::new();
    for r in &records {
        hashes.extend(frontier.append(shoulders_log::leaf_hash(r)));
    }
    store.append(&AppendBatch {
        state: None,
        first_index: first,
        records: records.iter().map(Vec::as_slice).collect(),
        hashes,
    })
}

/// Appends are visible, ordered, and their hashes give the same root as an in-memory tree.
pub fn append_and_read_back(store: &mut dyn Store) {
    assert_eq!(store.size().unwrap(), 0);
    let mut frontier = Frontier::new();
    let mut memory = MemoryHashes::new();
    for batch in [1u64, 2, 7, 64, 1, 300] {
        append_range(store, &mut frontier, batch).unwrap();
        while memory.size() < frontier.size() {
            memory.append(&leaf(memory.size()));
        }
        let size = store.size().unwrap();
        assert_eq!(size, frontier.size());
        let root = shoulders_log::tree_root(size, &crate::StoreHashes(&*store)).unwrap();
        assert_eq!(root, memory.root());
    }
    let size = store.size().unwrap();
    assert_eq!(store.record(0).unwrap(), Some(leaf(0)));
    assert_eq!(store.record(size - 1).unwrap(), Some(leaf(size - 1)));
    assert_eq!(store.record(size).unwrap(), None);
    let mut seen = Vec::new();
    store
        .scan(3, 10, &mut |i, bytes| {
            assert_eq!(bytes, leaf(i).as_slice());
            seen.push(i);
            Ok(())
        })
        .unwrap();
    assert_eq!(seen, (3..10).collect::<Vec<_>>());
    let all: Vec<u64> = (0..stored_hash_count(size)).collect();
    assert_eq!(store.read_hashes(&all).unwrap(), memory.stored().to_vec());
}

/// An append at the wrong index is refused and changes nothing.
pub fn refuses_gaps_and_overlaps(store: &mut dyn Store) {
    let mut frontier = Frontier::new();
    append_range(store, &mut frontier, 5).unwrap();
    for wrong in [0u64, 4, 6] {
        let err = store
            .append(&AppendBatch {
                state: None,
                first_index: wrong,
                records: vec![b"x".as_slice()],
                hashes: vec![Hash([0; 32])],
            })
            .unwrap_err();
        assert_eq!(err.code(), "E_STORE_CONFLICT", "append at {wrong}");
        assert_eq!(store.size().unwrap(), 5);
    }
    append_range(store, &mut frontier, 1).unwrap();
    assert_eq!(store.size().unwrap(), 6);
}

/// Missing stored hashes are an error, never a made-up value.
pub fn missing_hashes_are_errors(store: &mut dyn Store) {
    let mut frontier = Frontier::new();
    append_range(store, &mut frontier, 3).unwrap();
    let beyond = stored_hash_count(3);
    assert!(store.read_hashes(&[beyond]).is_err());
}

/// Metadata round-trips and is overwritten in place.
pub fn metadata(store: &mut dyn Store) {
    assert_eq!(store.meta("origin").unwrap(), None);
    store.set_meta("origin", "a").unwrap();
    store.set_meta("origin", "b").unwrap();
    assert_eq!(store.meta("origin").unwrap().as_deref(), Some("b"));
}

/// What one handle committed, a newly opened handle sees; after `refresh` it also sees what
/// the first handle appended later (how read-only nodes follow the writer).
pub fn durable_across_handles(store: &mut dyn Store, reopen: &dyn Fn() -> Box<dyn Store>) {
    let mut frontier = Frontier::new();
    append_range(store, &mut frontier, 42).unwrap();
    let mut again = reopen();
    assert_eq!(again.size().unwrap(), 42);
    assert_eq!(again.record(41).unwrap(), Some(leaf(41)));
    let root = shoulders_log::tree_root(42, &crate::StoreHashes(&*again)).unwrap();
    assert_eq!(root, frontier.root());
    append_range(store, &mut frontier, 8).unwrap();
    assert_eq!(again.size().unwrap(), 42, "size is cached until refresh");
    assert_eq!(again.refresh().unwrap(), 50);
    assert_eq!(again.record(49).unwrap(), Some(leaf(49)));
    let root = shoulders_log::tree_root(50, &crate::StoreHashes(&*again)).unwrap();
    assert_eq!(root, frontier.root());
}

fn leg(index: u64, seq: u32, holder: &str, amount: &str, role: &str) -> LegRow {
    LegRow {
        index,
        seq,
        ts_ms: 1_000 + index,
        holder: holder.into(),
        account: holder.into(),
        currency: "USD".into(),
        amount_micros: amount.into(),
        role: role.to_string().into(),
        model_id: Some("m/x".into()),
        dataset_id: None,
        contribution: (role == "data_share").then_some(7),
        beneficiary: None,
    }
}

fn receipt(index: u64, usage: &str, model: &str, payer: &str) -> ReceiptRow {
    ReceiptRow {
        index,
        ts_ms: 1_000 + index,
        usage_id: usage.into(),
        model_id: model.into(),
        payer: payer.into(),
        use_category: "chat".into(),
        currency: "USD".into(),
        charge_micros: "1000000000000000000".into(),
        input_tokens: 1,
        output_tokens: 2,
        unattributed: index.is_multiple_of(2),
    }
}

/// The fold's results are written in the same transaction as their records, read back by
/// key and in pages, survive a reopen, and a refused append writes none of them.
pub fn state_with_the_records(store: &mut dyn Store, reopen: &dyn Fn() -> Box<dyn Store>) {
    assert_eq!(store.state_size().unwrap(), None);
    let mut frontier = Frontier::new();
    let records: Vec<Vec<u8>> = (0..4).map(leaf).collect();
    let mut hashes = Vec::new();
    for r in &records {
        hashes.extend(frontier.append(shoulders_log::leaf_hash(r)));
    }
    let writes = StateWrites {
        size: 4,
        rows: vec![
            StateRow {
                kind: "actor".into(),
                key: "ann".into(),
                value: b"{1}".to_vec(),
            },
            StateRow {
                kind: "balance".into(),
                key: "[\"ann\",\"USD\"]".into(),
                value: b"5".to_vec(),
            },
        ],
        seen: (0..4)
            .map(|i| SeenRow {
                signer: [i as u8; 32],
                client_id: format!("id-{i}"),
                index: i,
                leaf_hash: [9; 32],
            })
            .collect(),
        receipts: vec![
            receipt(2, "u-2", "m/x", "bob"),
            receipt(3, "u-3", "m/y", "bob"),
        ],
        legs: vec![
            leg(2, 0, "bob", "-10", "charge"),
            leg(2, 1, "ann", "10", "data_share"),
            leg(3, 0, "bob", "-20", "charge"),
            leg(3, 1, "ann", "20", "owner_share"),
        ],
    };
    store
        .append(&AppendBatch {
            first_index: 0,
            records: records.iter().map(Vec::as_slice).collect(),
            hashes,
            state: Some(&writes),
        })
        .unwrap();
    // A refused append (wrong index) writes no state either.
    let bad = StateWrites {
        size: 99,
        rows: vec![StateRow {
            kind: "actor".into(),
            key: "zed".into(),
            value: vec![],
        }],
        ..StateWrites::default()
    };
    assert!(store
        .append(&AppendBatch {
            first_index: 9,
            records: vec![b"x".as_slice()],
            hashes: vec![Hash([0; 32])],
            state: Some(&bad)
        })
        .is_err());
    // The next batch replaces a row and adds history.
    let more = StateWrites {
        size: 5,
        rows: vec![StateRow {
            kind: "balance".into(),
            key: "[\"ann\",\"USD\"]".into(),
            value: b"6".to_vec(),
        }],
        seen: vec![SeenRow {
            signer: [7; 32],
            client_id: "id-4".into(),
            index: 4,
            leaf_hash: [8; 32],
        }],
        receipts: vec![],
        legs: vec![leg(4, 0, "ann", "-6", "withdrawal")],
    };
    let rec = leaf(4);
    let hashes = frontier.append(shoulders_log::leaf_hash(&rec));
    store
        .append(&AppendBatch {
            first_index: 4,
            records: vec![&rec],
            hashes,
            state: Some(&more),
        })
        .unwrap();
    for s in [store as &dyn Store, &*reopen()] {
        assert_eq!(s.state_size().unwrap(), Some(5));
        let mut rows = Vec::new();
        s.load_state(&mut |k, key, v| {
            rows.push((k, key, v));
            Ok(())
        })
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert!(rows.contains(&("balance".into(), "[\"ann\",\"USD\"]".into(), b"6".to_vec())));
        assert!(!rows.iter().any(|r| r.1 == "zed"));
        let seen = s
            .seen_many(&[
                ([1; 32], "id-1".into()),
                ([1; 32], "id-2".into()),
                ([7; 32], "id-4".into()),
            ])
            .unwrap();
        assert_eq!(seen, vec![Some((1, [9; 32])), None, Some((4, [8; 32]))]);
        assert_eq!(
            s.usage_many(&["u-3".into(), "u-9".into()]).unwrap(),
            vec![Some(3), None]
        );
        assert_eq!(s.receipt(2).unwrap(), Some(receipt(2, "u-2", "m/x", "bob")));
        assert_eq!(s.receipt(1).unwrap(), None);
        let at: Vec<u64> = s
            .receipts_at(&[3, 1, 2, 3, 99])
            .unwrap()
            .iter()
            .map(|r| r.index)
            .collect();
        assert_eq!(at, vec![2, 3], "receipts only, each once, in index order");
        let page = |model: Option<&str>, before, limit| {
            s.receipts(&ReceiptQuery {
                model_id: model.map(Into::into),
                payer: None,
                before,
                limit,
            })
            .unwrap()
            .iter()
            .map(|r| r.index)
            .collect::<Vec<_>>()
        };
        assert_eq!(page(None, None, 10), vec![3, 2]);
        assert_eq!(page(None, Some(3), 10), vec![2]);
        assert_eq!(page(Some("m/x"), None, 10), vec![2]);
        assert_eq!(page(None, None, 1), vec![3]);
        // Every filter combination (each is its own statement).
        let by = |model: Option<&str>, payer: Option<&str>, before| {
            s.receipts(&ReceiptQuery {
                model_id: model.map(Into::into),
                payer: payer.map(Into::into),
                before,
                limit: 10,
            })
            .unwrap()
            .iter()
            .map(|r| r.index)
            .collect::<Vec<_>>()
        };
        assert_eq!(by(None, Some("bob"), None), vec![3, 2]);
        assert_eq!(by(None, Some("bob"), Some(3)), vec![2]);
        assert_eq!(by(Some("m/y"), Some("bob"), None), vec![3]);
        assert_eq!(by(Some("m/y"), Some("bob"), Some(3)), Vec::<u64>::new());
        assert_eq!(by(Some("m/x"), None, Some(3)), vec![2]);
        assert_eq!(by(None, Some("nobody"), None), Vec::<u64>::new());
        let legs = |after, role: Option<&str>, limit| {
            s.legs_of_holder(&LegQuery {
                holder: "ann".into(),
                from_ms: None,
                to_ms: None,
                role: role.map(Into::into),
                after,
                limit,
                newest_first: false,
            })
            .unwrap()
            .iter()
            .map(|l| (l.index, l.seq))
            .collect::<Vec<_>>()
        };
        assert_eq!(legs(None, None, 10), vec![(2, 1), (3, 1), (4, 0)]);
        assert_eq!(legs(Some((2, 1)), None, 10), vec![(3, 1), (4, 0)]);
        assert_eq!(legs(None, None, 2), vec![(2, 1), (3, 1)]);
        assert_eq!(legs(None, Some("data_share"), 10), vec![(2, 1)]);
        let newest = s
            .legs_of_holder(&LegQuery {
                holder: "ann".into(),
                from_ms: None,
                to_ms: None,
                role: None,
                after: Some((4, 0)),
                limit: 1,
                newest_first: true,
            })
            .unwrap();
        assert_eq!((newest[0].index, newest[0].seq), (3, 1));
        let period = s
            .legs_of_holder(&LegQuery {
                holder: "ann".into(),
                from_ms: Some(1_003),
                to_ms: Some(1_004),
                role: None,
                after: None,
                limit: 10,
                newest_first: false,
            })
            .unwrap();
        assert_eq!(period.len(), 1);
        assert_eq!(period[0], leg(3, 1, "ann", "20", "owner_share"));
        assert_eq!(s.legs_of_record(2).unwrap().len(), 2);
    }
    // A migration can replace everything at once.
    store
        .replace_state(&StateWrites {
            size: 5,
            ..StateWrites::default()
        })
        .unwrap();
    assert_eq!(store.receipt(2).unwrap(), None);
    assert_eq!(store.state_size().unwrap(), Some(5));
}

/// A batch larger than a backend's statement chunks (multi-row inserts, batched look-ups):
/// every row reads back as written, and batched look-ups answer each key in its place,
/// repeats and misses included, across several signers.
pub fn many_rows_and_look_ups(store: &mut dyn Store) {
    const N: u64 = 301;
    let mut frontier = Frontier::new();
    let records: Vec<Vec<u8>> = (0..N).map(leaf).collect();
    let mut hashes = Vec::new();
    for r in &records {
        hashes.extend(frontier.append(shoulders_log::leaf_hash(r)));
    }
    let signer = |i: u64| [(i % 3) as u8 + 1; 32];
    let holders = ["ann", "bob", "cy"];
    let writes = StateWrites {
        size: N,
        rows: Vec::new(),
        seen: (0..N)
            .map(|i| SeenRow {
                signer: signer(i),
                client_id: format!("id-{i}"),
                index: i,
                leaf_hash: [(i % 251) as u8; 32],
            })
            .collect(),
        receipts: (0..N)
            .map(|i| receipt(i, &format!("u-{i}"), "m/x", holders[(i % 3) as usize]))
            .collect(),
        legs: (0..N)
            .flat_map(|i| {
                (0..3u32).map(move |seq| {
                    let mut l = leg(
                        i,
                        seq,
                        holders[seq as usize],
                        &format!("{seq}{i}"),
                        "charge",
                    );
                    l.dataset_id = (seq == 1).then(|| format!("d/{i}").into());
                    l.beneficiary = (seq == 2).then(|| "zed".into());
                    l
                })
            })
            .collect(),
    };
    store
        .append(&AppendBatch {
            state: Some(&writes),
            first_index: 0,
            records: records.iter().map(Vec::as_slice).collect(),
            hashes,
        })
        .unwrap();
    assert_eq!(store.size().unwrap(), N);
    for i in [0, 1, 31, 32, 33, 150, N - 1] {
        assert_eq!(store.record(i).unwrap(), Some(leaf(i)));
        let legs: Vec<LegRow> = writes
            .legs
            .iter()
            .filter(|l| l.index == i)
            .cloned()
            .collect();
        assert_eq!(store.legs_of_record(i).unwrap(), legs);
        assert_eq!(
            store.receipt(i).unwrap().as_ref(),
            writes.receipts.get(i as usize)
        );
    }
    let page = store
        .legs_of_holder(&LegQuery {
            holder: "bob".into(),
            from_ms: None,
            to_ms: None,
            role: None,
            after: None,
            limit: 1_000,
            newest_first: false,
        })
        .unwrap();
    let bob: Vec<LegRow> = writes
        .legs
        .iter()
        .filter(|l| &*l.holder == "bob")
        .cloned()
        .collect();
    assert_eq!(page, bob);
    // Keys in a scrambled order, with repeats, misses and a known id under another signer.
    let mut keys: Vec<([u8; 32], String)> = (0..N)
        .map(|i| (i * 7) % N)
        .map(|k| (signer(k), format!("id-{k}")))
        .collect();
    keys.push((signer(5), "id-5".into()));
    keys.push((signer(6), "id-5".into()));
    keys.push(([9; 32], "id-0".into()));
    keys.push((signer(1), "nope".into()));
    let expected: Vec<Option<SeenAt>> = keys
        .iter()
        .map(|(s, id)| {
            writes
                .seen
                .iter()
                .find(|r| &r.signer == s && &r.client_id == id)
                .map(|r| (r.index, r.leaf_hash))
        })
        .collect();
    assert_eq!(store.seen_many(&keys).unwrap(), expected);
    assert_eq!(store.seen_many(&[]).unwrap(), Vec::new());
    let mut usage: Vec<String> = (0..N).rev().map(|i| format!("u-{i}")).collect();
    usage.extend(["u-7".to_string(), "u-none".to_string(), "u-7".to_string()]);
    let expected: Vec<Option<u64>> = usage
        .iter()
        .map(|u| u.strip_prefix("u-").and_then(|n| n.parse().ok()))
        .collect();
    assert_eq!(store.usage_many(&usage).unwrap(), expected);
    assert_eq!(store.usage_many(&[]).unwrap(), Vec::new());
}

/// Run every check, each on a fresh store from `fresh`; `reopen_last` reopens the store most
/// recently returned by `fresh`.
pub fn run_all(
    fresh: &mut dyn FnMut() -> Box<dyn Store>,
    reopen_last: &dyn Fn() -> Box<dyn Store>,
) {
    append_and_read_back(&mut *fresh());
    refuses_gaps_and_overlaps(&mut *fresh());
    missing_hashes_are_errors(&mut *fresh());
    metadata(&mut *fresh());
    let mut store = fresh();
    durable_across_handles(&mut *store, reopen_last);
    let mut store = fresh();
    state_with_the_records(&mut *store, reopen_last);
    many_rows_and_look_ups(&mut *fresh());
}

fn key_row(id: &str, actor: &str) -> crate::KeyRow {
    crate::KeyRow {
        id: id.to_string(),
        token_sha256: format!("{id}{}", "0".repeat(64 - id.len())),
        actor: actor.to_string(),
        created_ms: 7,
        revoked_ms: None,
        budget_micros: None,
        budget_currency: None,
        budget_period: None,
        requests_per_minute: None,
        tokens_per_minute: None,
    }
}

/// API keys: inserted, listed by page and actor, revoked, and every change visible at once to
/// a second connection (a server reading what the CLI wrote); the admin token's hash replaced
/// whole; spend reserved, settled exactly once per call, cancelled, and durable.
pub fn api_keys(open_keys: &dyn Fn() -> Box<dyn crate::KeyStore>) {
    use crate::PendingSpend;
    let mut cli = open_keys();
    let server = open_keys();
    let mut limited = key_row("00000000000000bb", "bob");
    limited.budget_micros = Some(u128::from(u64::MAX) * 4);
    limited.budget_currency = Some("USD".into());
    limited.budget_period = Some("month".into());
    limited.requests_per_minute = Some(60);
    limited.tokens_per_minute = Some(10_000);
    cli.insert_key(&key_row("00000000000000aa", "alice"))
        .unwrap();
    cli.insert_key(&limited).unwrap();
    cli.insert_key(&key_row("00000000000000cc", "alice"))
        .unwrap();
    // A duplicate id is refused and changes nothing.
    assert!(cli
        .insert_key(&key_row("00000000000000aa", "mallory"))
        .is_err());
    assert_eq!(server.count_keys().unwrap(), 3);
    assert_eq!(
        server.key("00000000000000bb").unwrap(),
        Some(limited.clone())
    );
    assert_eq!(
        server.key("00000000000000aa").unwrap().unwrap().actor,
        "alice"
    );
    assert_eq!(server.key("00000000000000dd").unwrap(), None);
    // Pages in id order after a cursor; by actor.
    let page: Vec<String> = server
        .keys(None, None, 2)
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(page, ["00000000000000aa", "00000000000000bb"]);
    let rest = server.keys(None, Some(&page[1]), 10).unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].id, "00000000000000cc");
    assert_eq!(server.keys(Some("alice"), None, 10).unwrap().len(), 2);
    assert!(server.keys(Some("nobody"), None, 10).unwrap().is_empty());
    // Revocation: visible to the other connection at once; revoking twice counts once.
    assert_eq!(
        cli.revoke(&["00000000000000aa".into(), "nope".into()], 99)
            .unwrap(),
        1
    );
    assert_eq!(cli.revoke(&["00000000000000aa".into()], 100).unwrap(), 0);
    assert_eq!(
        server.key("00000000000000aa").unwrap().unwrap().revoked_ms,
        Some(99)
    );
    // The admin token's hash.
    assert_eq!(server.admin_token_sha256().unwrap(), None);
    cli.set_admin_token_sha256("ab", 1).unwrap();
    cli.set_admin_token_sha256("cd", 2).unwrap();
    assert_eq!(server.admin_token_sha256().unwrap().as_deref(), Some("cd"));
    // Spend: pending until settled, settled once, cancelled calls spend nothing, periods apart.
    let mut spender = open_keys();
    let pending = |usage: &str, start: u64| PendingSpend {
        usage_id: usage.into(),
        key_id: "00000000000000bb".into(),
        period_start_ms: start,
    };
    spender.begin_spend(&pending("u1", 1000)).unwrap();
    spender.begin_spend(&pending("u2", 1000)).unwrap();
    spender.begin_spend(&pending("u3", 2000)).unwrap();
    assert!(spender.begin_spend(&pending("u1", 1000)).is_err());
    assert_eq!(spender.spent("00000000000000bb", 1000).unwrap(), 0);
    let big = u128::from(u64::MAX) + 5;
    assert!(spender.settle_spend("u1", big).unwrap());
    assert!(!spender.settle_spend("u1", big).unwrap(), "settled once");
    assert!(spender.settle_spend("u2", 10).unwrap());
    spender.cancel_spend("u3").unwrap();
    assert!(!spender.settle_spend("u3", 10).unwrap(), "cancelled");
    assert!(!spender.settle_spend("never", 10).unwrap());
    assert_eq!(server.spent("00000000000000bb", 1000).unwrap(), big + 10);
    assert_eq!(server.spent("00000000000000bb", 2000).unwrap(), 0);
    assert_eq!(server.spent("00000000000000aa", 1000).unwrap(), 0);
    spender.begin_spend(&pending("u4", 1000)).unwrap();
    drop((cli, server, spender));
    // Durable across connections.
    let again = open_keys();
    assert_eq!(again.count_keys().unwrap(), 3);
    assert_eq!(again.spent("00000000000000bb", 1000).unwrap(), big + 10);
    assert_eq!(again.pending_spends(10).unwrap(), vec![pending("u4", 1000)]);
}
