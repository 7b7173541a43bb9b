//! `auths git verify` over a clone anyone can push to: the first byte picks the input, a
//! commit object (`git cat-file commit`, its SSH signature parsed and its SSHSIG signed data
//! rebuilt) or a proof note (parsed strictly, then verified against a commit that matches what
//! it claims, so the touch and binding checks run too).
#![no_main]
use auths_presence::presence::proof::{signed_commit, verify_proof, Proof, SignedCommit};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        if let Ok(c) = signed_commit(rest) {
            assert_eq!(c.digest.len(), 64);
        }
        return;
    }
    let Ok(proof) = Proof::parse(rest) else {
        return;
    };
    let commit = SignedCommit {
        digest: proof.digest.clone(),
        key: proof.key.clone(),
        namespace: "git".into(),
    };
    if let Ok(v) = verify_proof(&proof, &commit) {
        assert_eq!(v.key, proof.key);
    }
});
