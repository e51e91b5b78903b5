//! The CLI on PostgreSQL: `init --database` records the URL, later commands use it, a second
//! writer is refused with E_WRITER_LOCKED, and `migrate` copies a SQLite ledger with the same
//! root.

mod common;

use common::*;
use std::path::Path;

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn submit_actor(dir: &Path, key: &Path, handle: &str, extra: &[&str]) -> std::process::Output {
    let body = dir.parent().unwrap().join(format!("{handle}.json"));
    std::fs::write(
        &body,
        format!(r#"{{"handle": "{handle}", "name": "{handle}"}}"#),
    )
    .unwrap();
    let mut args = vec![
        "submit",
        "--data-dir",
        p(dir),
        "--key",
        p(key),
        "--kind",
        "actor.register",
        "--body",
        p(&body),
    ];
    args.extend_from_slice(extra);
    shoulders(&args)
}

#[test]
fn init_on_postgres_records_the_database_and_later_commands_use_it() {
    let tmp = tempfile::tempdir().unwrap();
    let url = shoulders_pgtest::fresh_database_url();
    let dir = tmp.path().join("d");
    let init = shoulders(&["init", "--data-dir", p(&dir), "--database", &url]);
    assert!(init.status.success(), "{}", stderr(&init));
    assert!(!dir.join("ledger.sqlite").exists());
    assert_eq!(
        std::fs::read_to_string(dir.join("database.url"))
            .unwrap()
            .trim(),
        url
    );
    let key = tmp.path().join("alice.key");
    ok_json(shoulders(&["key", "new", "--out", p(&key)]));
    let appended = ok_json(submit_actor(&dir, &key, "alice", &[]));
    assert_eq!(appended["index"], 0);
    let checkpoint = shoulders(&["checkpoint", "--data-dir", p(&dir)]);
    assert!(checkpoint.status.success(), "{}", stderr(&checkpoint));
    assert!(String::from_utf8_lossy(&checkpoint.stdout).contains("\n1\n"));

    // A second init on the same database is refused.
    let again = shoulders(&[
        "init",
        "--data-dir",
        p(&tmp.path().join("e")),
        "--database",
        &url,
    ]);
    assert!(
        stderr(&again).contains("error[E_DATABASE_NOT_EMPTY]"),
        "{}",
        stderr(&again)
    );

    // A bad URL is a typed error, not a panic.
    let bad = shoulders(&[
        "checkpoint",
        "--data-dir",
        p(&dir),
        "--database",
        "mysql://x",
    ]);
    assert!(
        stderr(&bad).contains("error[E_DATABASE_URL]"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn a_second_writer_process_is_refused_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let url = shoulders_pgtest::fresh_database_url();
    let dir = tmp.path().join("d");
    assert!(
        shoulders(&["init", "--data-dir", p(&dir), "--database", &url])
            .status
            .success()
    );
    let key = tmp.path().join("alice.key");
    ok_json(shoulders(&["key", "new", "--out", p(&key)]));
    // Hold the writer lock from this process, like a running server would.
    let holder = postgres_holder(&url);
    let out = submit_actor(&dir, &key, "alice", &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("error[E_WRITER_LOCKED]"), "{err}");
    assert!(err.contains("may only read"), "{err}");
    // Reads still work while another process writes.
    assert!(shoulders(&["checkpoint", "--data-dir", p(&dir)])
        .status
        .success());
    drop(holder);
    ok_json(submit_actor(&dir, &key, "alice", &[]));
}

/// A session holding the writer's advisory lock.
fn postgres_holder(url: &str) -> postgres::Client {
    let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let got: bool = c
        .query_one(
            "SELECT pg_try_advisory_lock($1)",
            &[&shoulders_store::WRITER_LOCK_KEY],
        )
        .unwrap()
        .get(0);
    assert!(got);
    c
}

#[test]
fn migrate_copies_a_sqlite_ledger_with_the_same_root() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    assert!(shoulders(&["init", "--data-dir", p(&dir)]).status.success());
    let key = tmp.path().join("alice.key");
    ok_json(shoulders(&["key", "new", "--out", p(&key)]));
    ok_json(submit_actor(&dir, &key, "alice", &[]));
    let before = shoulders(&["checkpoint", "--data-dir", p(&dir)]).stdout;

    let url = shoulders_pgtest::fresh_database_url();
    let from = format!("sqlite:{}", p(&dir.join("ledger.sqlite")));
    let report = ok_json(shoulders(&["migrate", "--from", &from, "--to", &url]));
    assert_eq!(report["records"], 1);
    let on_pg = shoulders(&["checkpoint", "--data-dir", p(&dir), "--database", &url]);
    assert_eq!(on_pg.stdout, before, "{}", stderr(&on_pg));
    // The environment variable works like --database.
    let via_env = std::process::Command::new(env!("CARGO_BIN_EXE_shoulders"))
        .args(["checkpoint", "--data-dir", p(&dir)])
        .env("SHOULDERS_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert_eq!(via_env.stdout, before);
    let twice = shoulders(&["migrate", "--from", &from, "--to", &url]);
    assert!(
        stderr(&twice).contains("error[E_DATABASE_NOT_EMPTY]"),
        "{}",
        stderr(&twice)
    );
}
