//! Hugging Face hub cache snapshots: links into `blobs/` followed and checked against the blob
//! names, anything else refused; the repository and commit read from the layout; refs resolved.

use safetensors::tensor::{Dtype, TensorView};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use shoulders_artifacts::{detect_snapshot, resolve_snapshot, scan_dir, total_bytes, ModelDir};
use shoulders_record::{ModelHub, ModelSource};
use std::path::{Path, PathBuf};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const OTHER_COMMIT: &str = "fedcba9876543210fedcba9876543210fedcba98";

/// git's blob id, computed here independently of the crate under test.
fn git_blob_id(content: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", content.len()).as_bytes());
    h.update(content);
    hex::encode(h.finalize())
}

fn sha256_hex(content: &[u8]) -> String {
    hex::encode(Sha256::digest(content))
}

fn safetensors_bytes(seed: u8) -> Vec<u8> {
    let data: Vec<u8> = (0..24u8).map(|i| i.wrapping_mul(seed)).collect();
    let view = TensorView::new(Dtype::F32, vec![2, 3], &data).unwrap();
    safetensors::serialize([("w", view)], None).unwrap()
}

/// One cache entry `models--acme--tiny` with a snapshot at `commit`: the weights as an LFS blob
/// (named by SHA-256), config, card and a nested tokenizer file as git blobs (named by git's
/// blob id), each linked relatively from the snapshot as `huggingface_hub` does.
struct Cache {
    root: PathBuf,
    entry: PathBuf,
    snapshot: PathBuf,
    weights: Vec<u8>,
}

fn add_file(entry: &Path, snapshot: &Path, rel: &str, content: &[u8], lfs: bool) -> String {
    let blob = if lfs {
        sha256_hex(content)
    } else {
        git_blob_id(content)
    };
    std::fs::write(entry.join("blobs").join(&blob), content).unwrap();
    let depth = rel.matches('/').count() + 2;
    let target = format!("{}blobs/{blob}", "../".repeat(depth));
    let link = snapshot.join(rel);
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, link).unwrap();
    blob
}

fn cache(tmp: &Path, commit: &str) -> Cache {
    let root = tmp.join("hub");
    let entry = root.join("models--acme--tiny");
    let snapshot = entry.join("snapshots").join(commit);
    std::fs::create_dir_all(entry.join("blobs")).unwrap();
    std::fs::create_dir_all(entry.join("refs")).unwrap();
    std::fs::create_dir_all(&snapshot).unwrap();
    let weights = safetensors_bytes(3);
    add_file(&entry, &snapshot, "model.safetensors", &weights, true);
    add_file(
        &entry,
        &snapshot,
        "config.json",
        br#"{"hidden_size":3}"#,
        false,
    );
    add_file(
        &entry,
        &snapshot,
        "README.md",
        b"---\nlicense: mit\nbase_model: acme/base\n---\n# Tiny\n",
        false,
    );
    add_file(&entry, &snapshot, "tokenizer/vocab.txt", b"a\nb\n", false);
    std::fs::write(entry.join(".gitattributes"), b"*.safetensors filter=lfs\n").unwrap();
    std::fs::write(entry.join("refs/main"), commit).unwrap();
    Cache {
        root,
        entry,
        snapshot,
        weights,
    }
}

fn scan(dir: &Path) -> Result<ModelDir, shoulders_artifacts::ArtifactError> {
    let mut p = |_: u64| {};
    scan_dir(dir, &mut (&mut p as &mut dyn FnMut(u64)))
}

#[test]
fn git_blob_ids_match_git() {
    // `git hash-object` of an empty file and of "hello\n".
    assert_eq!(git_blob_id(b""), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
    assert_eq!(
        git_blob_id(b"hello\n"),
        "ce013625030ba8dba906f756967f9e9ca394464a"
    );
}

#[test]
fn a_snapshot_is_read_through_its_blobs_with_repo_and_revision() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cache(tmp.path(), COMMIT);
    let dir = scan(&c.snapshot).unwrap();
    assert_eq!(
        dir.source,
        Some(ModelSource {
            hub: ModelHub::HuggingFace,
            repo: "acme/tiny".into(),
            revision: COMMIT.into(),
        })
    );
    let paths: Vec<&str> = dir.artifacts.iter().map(|a| a.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "README.md",
            "config.json",
            "model.safetensors",
            "tokenizer/vocab.txt"
        ],
        "the snapshot's names, not the blobs'"
    );
    let weights = &dir.artifacts[2];
    assert_eq!(weights.sha256, format!("sha256:{}", sha256_hex(&c.weights)));
    assert_eq!(
        weights.tensors.len(),
        1,
        "hashed per tensor through the link"
    );
    // Card and config are read through their links too.
    assert_eq!(dir.card.unwrap().base_models, vec!["acme/base"]);
    assert_eq!(dir.config.unwrap()["hidden_size"], 3);
    let sum: u64 = dir.artifacts.iter().map(|a| a.size_bytes).sum();
    assert_eq!(total_bytes(&c.snapshot).unwrap(), sum);

    // A link to the snapshot is recognised by where it leads.
    let alias = tmp.path().join("alias");
    std::os::unix::fs::symlink(&c.snapshot, &alias).unwrap();
    assert_eq!(
        scan(&alias).unwrap().source.unwrap().revision,
        COMMIT,
        "recognised through a link"
    );

    // An owner-less legacy repository: `models--NAME` is `NAME`.
    let legacy = c.root.join("models--gpt2");
    std::fs::rename(&c.entry, &legacy).unwrap();
    let dir = scan(&legacy.join("snapshots").join(COMMIT)).unwrap();
    assert_eq!(dir.source.unwrap().repo, "gpt2");
}

#[test]
fn a_blob_whose_content_does_not_match_its_name_is_refused() {
    for (rel, lfs) in [("model.safetensors", true), ("config.json", false)] {
        let tmp = tempfile::tempdir().unwrap();
        let c = cache(tmp.path(), COMMIT);
        let blob = std::fs::canonicalize(c.snapshot.join(rel)).unwrap();
        let mut bytes = std::fs::read(&blob).unwrap();
        // Same length, one byte changed: the file still parses, only the hash tells.
        let last = bytes.len() - 2;
        bytes[last] ^= 1;
        std::fs::write(&blob, &bytes).unwrap();
        let err = scan(&c.snapshot).unwrap_err();
        assert_eq!(err.code(), "E_HF_BLOB_HASH_MISMATCH", "{err}");
        let message = err.to_string();
        assert!(message.starts_with(rel), "{message}");
        let kind = if lfs { "SHA-256" } else { "git blob id" };
        assert!(message.contains(kind), "{message}");
        let computed = if lfs {
            sha256_hex(&bytes)
        } else {
            git_blob_id(&bytes)
        };
        assert!(message.contains(&computed), "{message}");
    }
}

#[test]
fn links_that_leave_the_blobs_directory_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("secret.txt");
    std::fs::write(&outside, b"not a blob").unwrap();
    let other = cache(&tmp.path().join("other"), COMMIT);
    let cases: Vec<(&str, PathBuf)> = vec![
        ("a file elsewhere", outside.clone()),
        ("/dev/zero", PathBuf::from("/dev/zero")),
        (
            "another entry's blob",
            std::fs::canonicalize(other.snapshot.join("config.json")).unwrap(),
        ),
        ("the blobs directory itself", PathBuf::from("../../blobs")),
        ("a file beside blobs/", PathBuf::from("../../refs/main")),
        ("nothing", PathBuf::from("../../blobs/missing")),
    ];
    for (what, target) in cases {
        let tmp2 = tempfile::tempdir().unwrap();
        let c = cache(tmp2.path(), COMMIT);
        std::os::unix::fs::symlink(&target, c.snapshot.join("extra.bin")).unwrap();
        let err = scan(&c.snapshot).unwrap_err();
        assert_eq!(err.code(), "E_HF_CACHE_LINK_OUTSIDE", "{what}: {err}");
        assert!(err.to_string().starts_with("extra.bin "), "{what}: {err}");
        // The progress bar's pass refuses it as well.
        assert_eq!(
            total_bytes(&c.snapshot).unwrap_err().code(),
            "E_HF_CACHE_LINK_OUTSIDE"
        );
    }

    // A blob named by neither hash cannot be checked.
    let c = cache(&tmp.path().join("named"), COMMIT);
    std::fs::write(c.entry.join("blobs/notahash"), b"x").unwrap();
    std::os::unix::fs::symlink("../../blobs/notahash", c.snapshot.join("x.bin")).unwrap();
    let err = scan(&c.snapshot).unwrap_err();
    assert_eq!(err.code(), "E_HF_BLOB_NAME_INVALID", "{err}");
}

#[test]
fn a_directory_laid_out_as_a_snapshot_must_be_named_like_one() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cache(tmp.path(), COMMIT);
    let short = c.entry.join("snapshots/main");
    std::fs::rename(&c.snapshot, &short).unwrap();
    assert_eq!(scan(&short).unwrap_err().code(), "E_HF_CACHE_INVALID");
    let bad_repo = c.root.join("models--a--b--c");
    std::fs::rename(&c.entry, &bad_repo).unwrap();
    let err = detect_snapshot(&bad_repo.join("snapshots/main")).unwrap_err();
    assert_eq!(err.code(), "E_HF_CACHE_INVALID", "{err}");
}

#[test]
fn an_ordinary_directory_does_not_follow_links_into_a_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cache(tmp.path(), COMMIT);
    // A plain copy beside the cache, plus a link into the cache's blobs: not followed, as
    // any link leaving an ordinary directory.
    let plain = tmp.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    std::fs::write(plain.join("model.safetensors"), &c.weights).unwrap();
    let blob = std::fs::canonicalize(c.snapshot.join("config.json")).unwrap();
    std::os::unix::fs::symlink(&blob, plain.join("extra.json")).unwrap();
    let dir = scan(&plain).unwrap();
    let paths: Vec<&str> = dir.artifacts.iter().map(|a| a.path.as_str()).collect();
    assert_eq!(paths, ["model.safetensors"]);
    assert_eq!(dir.source, None);
    // And a linked config is refused by its read, as before.
    std::os::unix::fs::symlink(&blob, plain.join("config.json")).unwrap();
    let err = scan(&plain).unwrap_err();
    assert_eq!(err.code(), "E_NOT_A_REGULAR_FILE", "{err}");
    // The snapshot's own `snapshots` dir or entry is not a snapshot either.
    assert_eq!(detect_snapshot(&c.entry).unwrap(), None);
    assert_eq!(detect_snapshot(&c.entry.join("snapshots")).unwrap(), None);
}

#[test]
fn refs_and_revisions_resolve_to_snapshots() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cache(tmp.path(), COMMIT);
    // A second snapshot, reachable by a pull-request ref and by its hash.
    let second = c.entry.join("snapshots").join(OTHER_COMMIT);
    std::fs::create_dir_all(&second).unwrap();
    std::fs::create_dir_all(c.entry.join("refs/pr")).unwrap();
    std::fs::write(c.entry.join("refs/pr/1"), format!("{OTHER_COMMIT}\n")).unwrap();

    let main = resolve_snapshot(&c.root, "acme/tiny", None).unwrap();
    assert_eq!(main, c.snapshot);
    for rev in ["main", "refs/main"] {
        assert_eq!(
            resolve_snapshot(&c.root, "acme/tiny", Some(rev)).unwrap(),
            c.snapshot
        );
    }
    for rev in ["refs/pr/1", "pr/1", OTHER_COMMIT] {
        assert_eq!(
            resolve_snapshot(&c.root, "acme/tiny", Some(rev)).unwrap(),
            second,
            "{rev}"
        );
    }
    // Moving `main` moves what it resolves to.
    std::fs::write(c.entry.join("refs/main"), OTHER_COMMIT).unwrap();
    assert_eq!(
        resolve_snapshot(&c.root, "acme/tiny", None).unwrap(),
        second
    );

    let refused = [
        ("acme/tiny", Some("dev")),                 // no such ref
        ("acme/tiny", Some("../../../etc/passwd")), // not a ref name
        ("acme/tiny", Some("refs/../main")),
        ("acme/other", None), // not downloaded
        (
            "acme/tiny",
            Some("1111111111111111111111111111111111111111"),
        ), // no snapshot
        ("acme--tiny", None), // not a repository id
        ("../acme/tiny", None),
    ];
    for (repo, rev) in refused {
        let err = resolve_snapshot(&c.root, repo, rev).unwrap_err();
        assert_eq!(err.code(), "E_HF_CACHE_INVALID", "{repo} {rev:?}: {err}");
    }
    // A ref file that holds something else than a commit.
    std::fs::write(c.entry.join("refs/main"), "not a commit").unwrap();
    let err = resolve_snapshot(&c.root, "acme/tiny", None).unwrap_err();
    assert_eq!(err.code(), "E_HF_CACHE_INVALID", "{err}");
    std::fs::write(c.entry.join("refs/main"), vec![b'a'; 4096]).unwrap();
    let err = resolve_snapshot(&c.root, "acme/tiny", None).unwrap_err();
    assert_eq!(err.code(), "E_FILE_TOO_LARGE", "{err}");
}
