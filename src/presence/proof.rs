//! Presence proofs that travel with commits: a JSON note under `refs/notes/auths` that shows a
//! third party, with no `AUTHS_HOME`, that a commit's SSH signature had a touch on a security
//! key behind it.
//!
//! The note holds the receipt of the signature: the client data the key signed, the
//! authenticator data, the assertion signature, the credential (its public key and, when the
//! key was attested, its attestation) and, when a batch grant covered the signature, the touch
//! that opened the grant and its terms. [`verify_proof`] checks, against the commit itself,
//! that the client data binds this commit's SSHSIG signed data and signing key, and that the
//! assertion verifies through the one verification path ([`touch::verify_evidence`]).
//!
//! What a proof alone cannot show: that the credential lives on a genuine security key. Anyone
//! can make a note with a software "credential"; only the attestation tells them apart, so a
//! proof by a credential that is not attested is reported as such (see
//! [`ProofVerdict::attestation`]).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::audit::{Evidence, Receipt};
use super::challenge::{ClientData, GrantTerms};
use super::enrollment::Enrollment;
use super::request::PayloadKind;
use super::touch::{self, Credentials, TouchEvidence};

/// The notes ref the proofs live under.
pub const NOTES_REF: &str = "refs/notes/auths";

/// The `type` of a proof note.
pub const PROOF_TYPE: &str = "auths.presence.proof.v1";

/// Largest note read (a proof is a few KiB; an attestation chain adds a few more).
pub const MAX_NOTE: usize = 64 * 1024;

/// Largest commit object read.
pub const MAX_COMMIT: usize = 4 * 1024 * 1024;

/// The SSHSIG namespace git signs commits in.
pub const GIT_NAMESPACE: &str = "git";

/// A presence proof for one commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proof {
    /// Always [`PROOF_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// The identity key that signed the commit, `SHA256:…`.
    pub key: String,
    /// SHA-256 of the SSHSIG signed data of the commit, hex: what the agent was asked to sign.
    pub digest: String,
    /// The receipt's id in the signer's audit log.
    pub receipt: String,
    /// When the agent signed (Unix time).
    pub time: u64,
    /// The touch: for a signature approved by its own touch, that touch; under a batch grant,
    /// the touch that opened the grant.
    pub touch: TouchEvidence,
    /// The key verified the user too (PIN or built-in UV), as its authenticatorData shows.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub user_verified: bool,
    /// The batch grant that covered the signature, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<GrantProof>,
    /// The credential that signed the touch.
    pub credential: CredentialProof,
}

/// The grant that covered a signature: opened by [`Proof::touch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantProof {
    /// Its terms, as the opening touch's client data carries them.
    pub terms: GrantTerms,
    /// When the opening touch was made (Unix time).
    pub opened: u64,
    /// The opening touch's receipt id.
    pub opened_by: String,
}

/// The credential, as much of its enrollment as a verifier needs (no label, no device path).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialProof {
    /// The rp id it was made for.
    pub rp_id: String,
    /// COSE algorithm.
    pub algorithm: i64,
    /// Its public key (COSE_Key), hex.
    #[serde(with = "hex::serde")]
    pub public_key_cose: Vec<u8>,
    /// The authenticator's AAGUID, hex.
    #[serde(with = "hex::serde")]
    pub aaguid: Vec<u8>,
    /// The credential lives on the virtual key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub virtual_key: bool,
    /// The enrollment's attestation: the statement the key made when the credential was
    /// created, which a verifier checks again against its bundled roots.
    #[serde(default)]
    pub attestation: super::attestation::Attestation,
}

impl CredentialProof {
    /// The credential of `e`.
    pub fn of(e: &Enrollment) -> CredentialProof {
        CredentialProof {
            rp_id: e.rp_id.clone(),
            algorithm: e.algorithm,
            public_key_cose: e.public_key_cose.clone(),
            aaguid: e.aaguid.clone(),
            virtual_key: e.virtual_key,
            attestation: e.attestation.clone(),
        }
    }

    /// Its attestation verdict in one word, checked again here against the bundled roots
    /// (the note is anyone's to write): `attested` only when the statement belongs to this
    /// credential (`credential_id`, this public key) and chains to a vendor root.
    pub fn verdict(&self, credential_id: &[u8]) -> String {
        super::attestation::reverify(
            &self.attestation,
            credential_id,
            &self.public_key_cose,
            self.virtual_key,
            &super::attestation::Trust::bundled(),
        )
        .as_str()
        .into()
    }

    /// The vendor and model the attestation names, when it earns `attested`.
    pub fn model(&self) -> Option<String> {
        let m = [
            self.attestation.vendor.as_deref(),
            self.attestation.model.as_deref(),
        ]
        .into_iter()
        .flatten()
        .map(crate::presence::prompt::escape_control)
        .collect::<Vec<_>>()
        .join(" ");
        (!m.is_empty()).then_some(m)
    }
}

/// Why a proof cannot be made or does not verify.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The commit object cannot be read as a signed commit.
    #[error("the commit is not SSH-signed: {0}")]
    NotSigned(String),
    /// The note is not a proof.
    #[error("the note is not an auths presence proof: {0}")]
    NotAProof(String),
    /// The audit log holds no receipt for this signature.
    #[error("no signed receipt in the audit log is for this commit's signature (signed by another agent, or before proofs?)")]
    NoReceipt,
    /// The credential of the receipt is not enrolled.
    #[error("the credential that approved it is not enrolled any more")]
    NoCredential,
    /// The proof is for other bytes: another commit's, or the commit was changed.
    #[error("the proof is for other signed bytes (a note moved from another commit, or the commit changed)")]
    OtherCommit,
    /// The proof names another signing key.
    #[error("the proof names the key {proof}, but the commit is signed by {commit}")]
    OtherKey {
        /// In the proof.
        proof: String,
        /// Of the commit's signature.
        commit: String,
    },
    /// The touch does not verify.
    #[error("the touch does not verify: {0}")]
    Touch(String),
    /// The client data does not bind what the proof claims.
    #[error("the touch approved something else: {0}")]
    Binding(String),
    /// The grant does not cover the signature.
    #[error("the batch grant does not cover this signature: {0}")]
    Grant(String),
}

/// What a verified proof shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProofVerdict {
    /// The signing key.
    pub key: String,
    /// The commit's own touch approved it (false: a batch grant covered it).
    pub touched: bool,
    /// The grant's terms, when a batch covered it.
    pub grant: Option<GrantTerms>,
    /// The key verified the user too.
    pub user_verified: bool,
    /// The credential's attestation verdict (`attested`, `self`, `none`, `virtual`, …).
    pub attestation: String,
    /// The vendor and model, when attested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

impl ProofVerdict {
    fn with_model(mut self, credential: &CredentialProof) -> ProofVerdict {
        if self.attestation == "attested" {
            self.model = credential.model();
        }
        self
    }
}

/// A signed commit as its proof is checked against it.
#[derive(Debug, Clone)]
pub struct SignedCommit {
    /// SHA-256 of the SSHSIG signed data (hex): what the agent signed.
    pub digest: String,
    /// The signing key's fingerprint, `SHA256:…`.
    pub key: String,
    /// The signature's namespace.
    pub namespace: String,
}

/// Read a commit object (as `git cat-file commit` prints it): take out its `gpgsig` header
/// (git's own rule: the header and its continuation lines), parse the SSH signature, and
/// compute the SSHSIG signed data of the rest, as `ssh-keygen -Y sign` built it for the agent.
pub fn signed_commit(raw: &[u8]) -> Result<SignedCommit, ProofError> {
    let bad = |m: &str| ProofError::NotSigned(m.to_owned());
    if raw.len() > MAX_COMMIT {
        return Err(bad("the commit object is too large"));
    }
    let header_end = find(raw, b"\n\n").map(|i| i + 1).unwrap_or(raw.len());
    let mut payload = Vec::with_capacity(raw.len());
    let mut signature: Option<Vec<u8>> = None;
    let mut in_sig = false;
    for line in raw[..header_end].split_inclusive(|b| *b == b'\n') {
        if in_sig {
            if let Some(rest) = line.strip_prefix(b" ") {
                signature
                    .get_or_insert_with(Vec::new)
                    .extend_from_slice(rest);
                continue;
            }
            in_sig = false;
        }
        if let Some(rest) = line.strip_prefix(b"gpgsig ") {
            if signature.is_some() {
                return Err(bad("two signature headers"));
            }
            signature = Some(rest.to_vec());
            in_sig = true;
            continue;
        }
        payload.extend_from_slice(line);
    }
    payload.extend_from_slice(&raw[header_end..]);
    let signature = signature.ok_or_else(|| bad("it has no gpgsig header"))?;
    let pem = std::str::from_utf8(&signature).map_err(|_| bad("its signature is not text"))?;
    if !pem
        .trim_start()
        .starts_with("-----BEGIN SSH SIGNATURE-----")
    {
        return Err(bad(
            "its signature is not an SSH signature (OpenPGP or X.509?)",
        ));
    }
    let sig = ssh_key::SshSig::from_pem(pem.trim())
        .map_err(|e| ProofError::NotSigned(format!("its SSH signature does not parse: {e}")))?;
    let signed = ssh_key::SshSig::signed_data(sig.namespace(), sig.hash_alg(), &payload)
        .map_err(|e| ProofError::NotSigned(e.to_string()))?;
    Ok(SignedCommit {
        digest: hex::encode(Sha256::digest(&signed)),
        key: crate::agent::keys::fingerprint(sig.public_key()),
        namespace: sig.namespace().to_owned(),
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl Proof {
    /// The proof for the signature whose signed data hashes to `digest`, from the receipts of
    /// an audit log (oldest first) and the enrollments: the newest signed receipt for those
    /// bytes, and for a grant use, the receipt of the touch that opened the grant.
    pub fn from_receipts(
        receipts: &[Receipt],
        enrollments: &[Enrollment],
        digest: &str,
    ) -> Result<Proof, ProofError> {
        let receipt = receipts
            .iter()
            .rev()
            .find(|r| r.signed && r.digest == digest && r.kind == PayloadKind::Sshsig)
            .ok_or(ProofError::NoReceipt)?;
        let (touch_receipt, grant) = match &receipt.evidence {
            Evidence::Approved { .. } => (receipt, None),
            Evidence::Granted { grant_of } => {
                let opener = receipts
                    .iter()
                    .find(|r| &r.id == grant_of)
                    .ok_or(ProofError::NoReceipt)?;
                (opener, Some(opener))
            }
            Evidence::Denied => return Err(ProofError::NoReceipt),
        };
        let Evidence::Approved {
            touch,
            user_verified,
            ..
        } = &touch_receipt.evidence
        else {
            return Err(ProofError::NoReceipt);
        };
        let enrollment = enrollments
            .iter()
            .find(|e| e.credential_id == touch.credential_id)
            .ok_or(ProofError::NoCredential)?;
        let grant = match grant {
            None => None,
            Some(opener) => {
                let cd = ClientData::parse(&touch.client_data)
                    .map_err(|e| ProofError::Binding(e.to_string()))?;
                Some(GrantProof {
                    terms: cd
                        .grant
                        .ok_or_else(|| ProofError::Grant("its touch opened no grant".into()))?,
                    opened: opener.time,
                    opened_by: opener.id.clone(),
                })
            }
        };
        Ok(Proof {
            kind: PROOF_TYPE.into(),
            key: receipt.key.clone(),
            digest: receipt.digest.clone(),
            receipt: receipt.id.clone(),
            time: receipt.time,
            touch: touch.clone(),
            user_verified: *user_verified,
            grant,
            credential: CredentialProof::of(enrollment),
        })
    }

    /// Parse a note, strictly: bounded, our type, no unknown members.
    pub fn parse(note: &[u8]) -> Result<Proof, ProofError> {
        if note.len() > MAX_NOTE {
            return Err(ProofError::NotAProof(format!(
                "it is larger than {MAX_NOTE} bytes"
            )));
        }
        let p: Proof =
            serde_json::from_slice(note).map_err(|e| ProofError::NotAProof(e.to_string()))?;
        if p.kind != PROOF_TYPE {
            return Err(ProofError::NotAProof(format!(
                "its type is not {PROOF_TYPE}"
            )));
        }
        Ok(p)
    }

    /// The note's text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Check `proof` against the commit it is attached to: it is for this commit's signed data and
/// signing key, its touch verifies against its credential, and its client data approves this
/// signature (its own touch), or opened the batch grant that covered it within its time.
pub fn verify_proof(proof: &Proof, commit: &SignedCommit) -> Result<ProofVerdict, ProofError> {
    if commit.namespace != GIT_NAMESPACE {
        return Err(ProofError::NotSigned(format!(
            "its signature is in the namespace {:?}, not {GIT_NAMESPACE:?}",
            crate::presence::prompt::escape_control(&commit.namespace)
        )));
    }
    if proof.digest != commit.digest {
        return Err(ProofError::OtherCommit);
    }
    if proof.key != commit.key {
        return Err(ProofError::OtherKey {
            proof: crate::presence::prompt::escape_control(&proof.key),
            commit: commit.key.clone(),
        });
    }
    let public_key = crate::ctap::cose::CoseKey::from_cbor_bytes(&proof.credential.public_key_cose)
        .map_err(|e| ProofError::Touch(format!("the credential's public key: {e}")))?;
    let allowed = super::verify::AllowedCredential {
        id: proof.touch.credential_id.clone(),
        public_key,
        sign_count: 0,
    };
    let creds = Credentials::new(proof.credential.rp_id.clone(), vec![allowed]);
    touch::verify_evidence(&creds, &proof.touch, proof.user_verified)
        .map_err(|e| ProofError::Touch(super::error_chain(&e)))?;
    let cd = ClientData::parse(&proof.touch.client_data)
        .map_err(|e| ProofError::Binding(e.to_string()))?;
    if cd.key != commit.key {
        return Err(ProofError::Binding("another identity key".into()));
    }
    if cd.namespace.as_deref() != Some(GIT_NAMESPACE) || cd.payload != PayloadKind::Sshsig {
        return Err(ProofError::Binding(
            "another SSHSIG namespace or kind of data".into(),
        ));
    }
    match (&proof.grant, &cd.grant) {
        (None, _) => {
            if cd.digest != commit.digest {
                return Err(ProofError::Binding("other bytes".into()));
            }
            Ok(ProofVerdict {
                key: commit.key.clone(),
                touched: true,
                grant: None,
                user_verified: proof.user_verified,
                attestation: proof.credential.verdict(&proof.touch.credential_id),
                model: None,
            }
            .with_model(&proof.credential))
        }
        (Some(_), None) => Err(ProofError::Grant("its touch opened no grant".into())),
        (Some(g), Some(terms)) => {
            if &g.terms != terms {
                return Err(ProofError::Grant(
                    "the terms differ from the ones the touch approved".into(),
                ));
            }
            // The opening touch was asked for at `cd.created`; the grant lasts `ttl_secs`
            // from its opening, which came after.
            if proof.time < cd.created || proof.time > g.opened.saturating_add(terms.ttl_secs) {
                return Err(ProofError::Grant(
                    "the signature was made outside the grant's time".into(),
                ));
            }
            if g.opened < cd.created {
                return Err(ProofError::Grant(
                    "the grant opened before its touch was asked for".into(),
                ));
            }
            Ok(ProofVerdict {
                key: commit.key.clone(),
                touched: cd.digest == commit.digest,
                grant: Some(terms.clone()),
                user_verified: proof.user_verified,
                attestation: proof.credential.verdict(&proof.touch.credential_id),
                model: None,
            }
            .with_model(&proof.credential))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_without_an_ssh_signature_is_not_signed() {
        let raw = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor A <a@b> 1 +0000\ncommitter A <a@b> 1 +0000\n\nmsg\n";
        assert!(matches!(signed_commit(raw), Err(ProofError::NotSigned(_))));
        let pgp = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\ngpgsig -----BEGIN PGP SIGNATURE-----\n \n abc\n -----END PGP SIGNATURE-----\n\nmsg\n";
        let e = signed_commit(pgp).unwrap_err();
        assert!(e.to_string().contains("not an SSH signature"), "{e}");
    }

    #[test]
    fn a_note_that_is_not_a_proof_is_refused() {
        assert!(matches!(Proof::parse(b"{}"), Err(ProofError::NotAProof(_))));
        assert!(matches!(
            Proof::parse(&vec![b' '; MAX_NOTE + 1]),
            Err(ProofError::NotAProof(_))
        ));
    }
}
