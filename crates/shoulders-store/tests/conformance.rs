//! The store conformance suite against SQLite (the same suite is meant for every backend).

use shoulders_store::{conformance, SqliteStore, Store};
use std::cell::RefCell;
use std::path::PathBuf;

#[test]
fn sqlite_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let counter = RefCell::new(0u32);
    let last: RefCell<Option<PathBuf>> = RefCell::new(None);
    let mut fresh = || -> Box<dyn Store> {
        *counter.borrow_mut() += 1;
        let path = dir
            .path()
            .join(format!("store-{}.sqlite", counter.borrow()));
        *last.borrow_mut() = Some(path.clone());
        Box::new(SqliteStore::create(&path).unwrap())
    };
    let reopen = || -> Box<dyn Store> {
        let path = last.borrow().clone().unwrap();
        Box::new(SqliteStore::open_read_only(&path).unwrap())
    };
    conformance::run_all(&mut fresh, &reopen);
}

#[test]
fn opening_a_missing_store_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let err = SqliteStore::open(&dir.path().join("none.sqlite"))
        .err()
        .unwrap();
    assert_eq!(err.code(), "E_STORE_MISSING");
}

#[test]
fn sqlite_key_tables_pass_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.sqlite");
    drop(SqliteStore::create(&path).unwrap());
    conformance::api_keys(&|| Box::new(shoulders_store::SqliteKeys::open(&path).unwrap()));
    // A missing database is not created by opening its key tables.
    let err = shoulders_store::SqliteKeys::open(&dir.path().join("none.sqlite"))
        .err()
        .unwrap();
    assert_eq!(err.code(), "E_STORE_MISSING");
}

/// Record `i`'s two legs: the payer `bob` and the owner `ann`.
fn legs_of(i: u64) -> Vec<shoulders_store::LegRow> {
    ["bob", "ann"]
        .iter()
        .enumerate()
        .map(|(seq, holder)| shoulders_store::LegRow {
            index: i,
            seq: seq as u32,
            ts_ms: 1_000 + i,
            holder: (*holder).into(),
            account: format!("acct:{holder}").into(),
            currency: "USD".into(),
            amount_micros: if seq == 0 {
                format!("-{i}")
            } else {
                i.to_string()
            },
            role: if seq == 0 { "charge" } else { "owner_share" }.into(),
            model_id: Some("m/x".into()),
            dataset_id: None,
            contribution: None,
            beneficiary: None,
        })
        .collect()
}

fn append_with_legs(
    store: &mut SqliteStore,
    frontier: &mut shoulders_log::Frontier,
    to: u64,
) -> Vec<shoulders_store::LegRow> {
    let from = frontier.size();
    let records: Vec<Vec<u8>> = (from..to)
        .map(|i| format!("record {i}").into_bytes())
        .collect();
    let mut hashes = Vec::new();
    for r in &records {
        hashes.extend(frontier.append(shoulders_log::leaf_hash(r)));
    }
    let legs: Vec<_> = (from..to).flat_map(legs_of).collect();
    let writes = shoulders_store::StateWrites {
        size: to,
        legs: legs.clone(),
        ..Default::default()
    };
    store
        .append(&shoulders_store::AppendBatch {
            first_index: from,
            records: records.iter().map(Vec::as_slice).collect(),
            hashes,
            state: Some(&writes),
        })
        .unwrap();
    legs
}

/// A database written with schema 2's wide `legs` rows keeps them: opened by this version it
/// appends in the compact layout, and every read (pages in both orders across the boundary,
/// cursors, filters, one record's legs, a read-only handle) sees both layouts as one history,
/// without anything being copied at open. Rebuilding the state drops the old table.
#[test]
fn a_schema_2_database_reads_across_both_leg_layouts() {
    use shoulders_store::LegQuery;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.sqlite");
    let mut frontier = shoulders_log::Frontier::new();
    let mut all = {
        let mut store = SqliteStore::create(&path).unwrap();
        append_with_legs(&mut store, &mut frontier, 40)
    };
    // Turn the first 40 records' legs into schema 2 rows, as an older writer left them.
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE legs (idx INTEGER NOT NULL, seq INTEGER NOT NULL, ts_ms INTEGER NOT NULL,
                holder TEXT NOT NULL, account TEXT NOT NULL, currency TEXT NOT NULL,
                amount TEXT NOT NULL, role TEXT NOT NULL, model_id TEXT, dataset_id TEXT,
                contribution INTEGER, beneficiary TEXT, PRIMARY KEY (idx, seq)) WITHOUT ROWID;
             CREATE INDEX legs_by_holder ON legs (holder, idx, seq);
             DROP TABLE leg_sets; DROP TABLE leg_runs; DELETE FROM meta WHERE key = 'schema';",
        )
        .unwrap();
        for l in &all {
            conn.execute(
                "INSERT INTO legs VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, NULL, NULL)",
                rusqlite::params![
                    l.index as i64,
                    l.seq,
                    l.ts_ms as i64,
                    &*l.holder,
                    &*l.account,
                    &*l.currency,
                    l.amount_micros,
                    &*l.role,
                    l.model_id.as_deref()
                ],
            )
            .unwrap();
        }
    }
    // An old-layout database read before a new writer opened it.
    let mut early_reader = SqliteStore::open_read_only(&path).unwrap();
    assert_eq!(early_reader.legs_of_record(3).unwrap(), legs_of(3));
    let mut store = SqliteStore::open(&path).unwrap();
    // Over MAX_RUN_LEGS legs per holder in one batch: several runs each.
    all.extend(append_with_legs(&mut store, &mut frontier, 700));
    early_reader.refresh().unwrap();
    let reader = SqliteStore::open_read_only(&path).unwrap();
    for s in [&store as &dyn Store, &reader, &early_reader] {
        for i in [0, 39, 40, 69, 300, 699] {
            assert_eq!(s.legs_of_record(i).unwrap(), legs_of(i), "record {i}");
        }
        assert!(s.legs_of_record(700).unwrap().is_empty());
        for newest_first in [false, true] {
            for limit in [1, 7, 30, 256, 1000] {
                // Walk every page of ann's legs with the cursor.
                let mut seen = Vec::new();
                let mut after = None;
                loop {
                    let page = s
                        .legs_of_holder(&LegQuery {
                            holder: "ann".into(),
                            from_ms: None,
                            to_ms: None,
                            role: None,
                            after,
                            limit,
                            newest_first,
                        })
                        .unwrap();
                    assert!(page.len() <= limit);
                    let Some(last) = page.last() else { break };
                    after = Some((last.index, last.seq));
                    seen.extend(page);
                }
                let mut want: Vec<_> = all
                    .iter()
                    .filter(|l| &*l.holder == "ann")
                    .cloned()
                    .collect();
                if newest_first {
                    want.reverse();
                }
                assert_eq!(seen, want, "limit {limit}, newest first {newest_first}");
            }
        }
        // Time and role filters apply to both layouts.
        let filtered = s
            .legs_of_holder(&LegQuery {
                holder: "bob".into(),
                from_ms: Some(1_035),
                to_ms: Some(1_600),
                role: Some("charge".into()),
                after: None,
                limit: 1000,
                newest_first: false,
            })
            .unwrap();
        let idx: Vec<u64> = filtered.iter().map(|l| l.index).collect();
        assert_eq!(idx, (35..600).collect::<Vec<_>>());
    }
    // Rebuilding the state writes the new layout only and drops the old table.
    store
        .replace_state(&shoulders_store::StateWrites {
            size: 700,
            legs: all.clone(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(store.legs_of_record(5).unwrap(), legs_of(5));
    // A reader opened before the rebuild finds the legs in the new layout after a refresh.
    early_reader.refresh().unwrap();
    let everything = LegQuery {
        holder: "ann".into(),
        from_ms: None,
        to_ms: None,
        role: None,
        after: None,
        limit: 1000,
        newest_first: false,
    };
    assert_eq!(early_reader.legs_of_holder(&everything).unwrap().len(), 700);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let legacy: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'legs'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(legacy, 0);
}

/// A database marked with a newer SQLite layout than this version knows is refused by every
/// kind of open (`E_STORE_SCHEMA`), instead of being written in a layout it does not know; a
/// database this version opens for writing is marked with its own.
#[test]
fn a_newer_sqlite_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.sqlite");
    drop(SqliteStore::create(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mark: String = conn
        .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(mark, shoulders_store::SQLITE_SCHEMA.to_string());
    conn.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'schema'",
        [(shoulders_store::SQLITE_SCHEMA + 1).to_string()],
    )
    .unwrap();
    drop(conn);
    for err in [
        SqliteStore::open(&path).err().unwrap(),
        SqliteStore::open_read_only(&path).err().unwrap(),
        SqliteStore::create(&path).err().unwrap(),
    ] {
        assert_eq!(err.code(), "E_STORE_SCHEMA", "{err}");
        assert!(err.to_string().contains("newer"), "{err}");
    }
}
