//! Published signed-note vectors (the example of Go's `golang.org/x/mod/sumdb/note`, which C2SP
//! signed-note adopts): our signer must produce the identical signature line and our verifier
//! must accept it, so a note we sign is a note Go opens and the reverse. The cross-implementation
//! check of tiles, checkpoints, cosignatures and proofs against Go itself runs in CI
//! (`interop/check.py`).

use shoulders_log::LogVerifier;
use signed_note::{Note, StandardSigner, StandardVerifier, VerifierList};

const SKEY: &str = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const SIGNED: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

#[test]
fn go_note_example_signs_and_opens_byte_for_byte() {
    let signer = StandardSigner::new(SKEY).unwrap();
    let mut note = Note::new(TEXT.as_bytes(), &[]).unwrap();
    note.add_sigs(&[&signer]).unwrap();
    assert_eq!(String::from_utf8(note.to_bytes()).unwrap(), SIGNED);

    let verifier = StandardVerifier::new(VKEY).unwrap();
    let opened = Note::from_bytes(SIGNED.as_bytes()).unwrap();
    let (verified, unverified) = opened
        .verify(&VerifierList::new(vec![Box::new(verifier)]))
        .unwrap();
    assert_eq!((verified.len(), unverified.len()), (1, 0));
    assert_eq!(verified[0].id(), 0xc74f20a3);

    // One changed byte of text fails.
    let tampered = SIGNED.replacen("problem,", "problem;", 1);
    let opened = Note::from_bytes(tampered.as_bytes()).unwrap();
    let verifier = StandardVerifier::new(VKEY).unwrap();
    assert!(opened
        .verify(&VerifierList::new(vec![Box::new(verifier)]))
        .is_err());
}

#[test]
fn a_signed_note_that_is_not_a_checkpoint_is_refused_as_malformed() {
    // The signature verifies, so the refusal is about the body: not `origin\nsize\nroot\n`.
    let err = LogVerifier::new(VKEY)
        .unwrap()
        .open(SIGNED.as_bytes())
        .unwrap_err();
    assert_eq!(err.code(), "E_CHECKPOINT_MALFORMED");
}
