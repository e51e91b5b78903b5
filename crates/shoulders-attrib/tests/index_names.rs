//! Index folders are one-to-one with dataset ids: two datasets never share an index.

use proptest::prelude::*;
use shoulders_attrib::dataset::{
    build, index_dir, index_name, paraphrase_dir, AttributeOptions, BuildDoc, DatasetIndex,
};

fn build_one(dir: &std::path::Path, dataset_id: &str, contributor: &str, text: &str) {
    build(
        dir,
        dataset_id,
        1,
        std::iter::once(Ok(BuildDoc {
            contribution: 0,
            contributor: contributor.to_string(),
            bytes: text.as_bytes().to_vec(),
        })),
        &mut |_| {},
    )
    .unwrap();
}

/// The datasets `a/b__c` and `a__b/c` mapped to one folder when `/` became `__`: the second
/// build replaced the first, and one dataset was answered from the other's index.
#[test]
fn datasets_that_once_collided_keep_their_own_index() {
    let tmp = tempfile::tempdir().unwrap();
    let first = "the first dataset holds a sentence about tide pools and hermit crabs";
    let second = "the second dataset holds a sentence about glaciers and moraines of ice";
    build_one(tmp.path(), "a/b__c", "ann", first);
    build_one(tmp.path(), "a__b/c", "bob", second);
    assert_ne!(
        index_dir(tmp.path(), "a/b__c"),
        index_dir(tmp.path(), "a__b/c")
    );
    for (id, text, who) in [("a/b__c", first, "ann"), ("a__b/c", second, "bob")] {
        let ix = DatasetIndex::open(tmp.path(), id).unwrap();
        let r = ix.attribute(text, &AttributeOptions::default()).unwrap();
        assert_eq!(
            r.shares.contributors_ppm.keys().collect::<Vec<_>>(),
            vec![who],
            "{id} answered from its own index"
        );
    }
    // A dataset named like another's paraphrase index has its own folder too.
    assert_ne!(
        index_dir(tmp.path(), "a/b.paraphrase"),
        paraphrase_dir(tmp.path(), "a/b")
    );
}

proptest! {
    /// Distinct ids, distinct folder names; names are safe path components.
    #[test]
    fn index_names_are_one_to_one(a in "[a-z_./%-]{1,12}", b in "[a-z_./%-]{1,12}") {
        let (na, nb) = (index_name(&a), index_name(&b));
        prop_assert_eq!(a == b, na == nb);
        prop_assert!(!na.contains('/') && !na.contains('.') && na != "..");
    }
}

/// The server's index follow loop finds datasets by their folder names: the name reverses to
/// the id, and the entries beside the folders are not taken for datasets.
#[test]
fn index_names_reverse_to_dataset_ids() {
    use shoulders_attrib::dataset::dataset_of_index_name;
    for id in ["alice/verse", "a/b__c", "a__b/c", "Ünï/côdé", "x-1/y.z"] {
        assert_eq!(dataset_of_index_name(&index_name(id)).as_deref(), Some(id));
    }
    for other in [
        "alice%2Fverse.paraphrase",
        "alice%2Fverse.lock",
        "%2f",
        "%2",
        "a%61",
    ] {
        assert_eq!(dataset_of_index_name(other), None, "{other}");
    }
}
