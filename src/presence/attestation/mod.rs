//! Attestation statements of new credentials, verified at enrollment (WebAuthn §8): formats
//! `packed` (x5c chain, or self attestation), `fido-u2f` and `none`, chains walked up to the
//! vendor roots bundled in `roots/` (see its README for each file's source and fingerprint),
//! optionally with a FIDO Metadata Service BLOB ([`mds`]) for model names, extra roots and the
//! status of a model.
//!
//! The verdict:
//! - `attested`: the statement's signature verifies with an x5c leaf whose chain verifies up to
//!   a trusted root (bundled, or one the MDS BLOB lists for this AAGUID); vendor and model are
//!   known. It proves which *model* of key made the credential, nothing about a person.
//! - `untrusted-chain`: the signature verifies with the x5c leaf, but the chain ends at an
//!   issuer we do not trust (a self-signed certificate, or a vendor whose root is not bundled).
//! - `self`: packed self attestation: signed by the credential key itself; proves nothing about
//!   the model.
//! - `none`: the key sent no statement.
//! - `virtual`: the credential lives on auths' virtual key (`sim:` transport, or a key claiming
//!   the virtual key's AAGUID), whatever its statement says.
//! - `unchecked`: enrolled before auths verified attestation, or a format auths does not verify.
//!
//! A statement that is *wrong* (its signature fails, a certificate is malformed, a chain
//! signature under a bundled root's name fails, the AAGUID extension disagrees with
//! authenticatorData, the leaf breaks WebAuthn §8.2.1) refuses the enrollment: that is a broken
//! or lying device, not an unknown one.
//!
//! Time: certificate validity periods are not checked. Attestation certificates are made at
//! manufacture and describe the model; a key has no clock, real keys outlive their
//! certificates, and WebAuthn relying parties commonly ignore expiry here. Revocation of a
//! model goes through the MDS status instead.

pub mod mds;
pub mod x509;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ctap::authdata::AuthenticatorData;
use crate::ctap::cbor::{self, Value};
use crate::ctap::cose::CoseKey;
use x509::{Anchor, Cert, ChainEnd, SigEncoding, X509Error};

/// The verdict on a credential's attestation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Chained to a trusted vendor root.
    Attested,
    /// Signed by the x5c leaf, whose chain ends at an issuer we do not trust.
    UntrustedChain,
    /// Self attestation (signed by the credential key).
    #[serde(rename = "self")]
    SelfAttested,
    /// No attestation.
    None,
    /// The virtual key.
    Virtual,
    /// Not verified (an old enrollment, or a format auths does not verify).
    #[default]
    Unchecked,
}

impl Verdict {
    /// The name `auths token list --json` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Attested => "attested",
            Verdict::UntrustedChain => "untrusted-chain",
            Verdict::SelfAttested => "self",
            Verdict::None => "none",
            Verdict::Virtual => "virtual",
            Verdict::Unchecked => "unchecked",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an enrollment records of its attestation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    /// The verdict.
    #[serde(default)]
    pub verdict: Verdict,
    /// The statement format (`packed`, `fido-u2f`, `none`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fmt: String,
    /// The attestation statement as canonical CBOR (hex), kept so it can be checked again.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub statement: String,
    /// The authenticatorData of the makeCredential answer (hex).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub auth_data: String,
    /// SHA-256 of the enrollment's client data (hex): what the statement signed with authData.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_data_hash: String,
    /// The certificates of x5c, leaf first (DER, hex).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub x5c: Vec<String>,
    /// The vendor, when attested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// The model, when known (bundled table or MDS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// SHA-256 (hex) of the root certificate the chain ended at, when attested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_fingerprint: Option<String>,
    /// The FIDO MDS status of the model, when an MDS BLOB was given at enrollment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mds_status: Option<String>,
    /// Why the verdict is not `attested`, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Why an attestation statement is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AttestationError {
    /// The statement is not what its format says.
    #[error("the {fmt} attestation statement is malformed: {reason}")]
    Malformed {
        /// The format.
        fmt: String,
        /// What is wrong.
        reason: String,
    },
    /// The attestation signature does not verify.
    #[error("the {0} attestation signature does not verify: the key's answer was altered, or the key is not what it claims")]
    BadSignature(String),
    /// An algorithm the statement uses that auths cannot verify.
    #[error("unsupported attestation algorithm: {0}")]
    Unsupported(String),
    /// A certificate or chain problem.
    #[error(transparent)]
    Certificate(#[from] X509Error),
    /// The MDS BLOB lists this model with a status that must not be trusted.
    #[error("the FIDO Metadata Service lists this key model ({model}) as {status}: refusing to enroll it")]
    Revoked {
        /// The model (escaped before display).
        model: String,
        /// The MDS status.
        status: String,
    },
}

/// A trust anchor bundled with auths: vendor, file name, PEM.
struct BundledRoot {
    vendor: &'static str,
    pem: &'static str,
}

/// The vendor roots in `roots/` (README.md there gives each file's source and SHA-256).
const BUNDLED_ROOTS: &[BundledRoot] = &[
    BundledRoot {
        vendor: "Yubico",
        pem: include_str!("roots/yubico-u2f-root-ca-serial-457200631.pem"),
    },
    BundledRoot {
        vendor: "Nitrokey",
        pem: include_str!("roots/nitrokey-fido2-root-ca.pem"),
    },
    BundledRoot {
        vendor: "Nitrokey",
        pem: include_str!("roots/nitrokey-root-ca-2.pem"),
    },
];

/// Models by AAGUID for keys attested under a bundled root of the same vendor. Source: the
/// Yubico metadata in java-webauthn-server (`webauthn-server-demo/src/main/resources/metadata.json`
/// @ 0e71ebbf647e5a5a7876fff1801298a7f1670bc3, identifier 2fb54029-7613-4f1d-94f1-fb876c14a6fe,
/// version 19), its `x509Extension` selectors on 1.3.6.1.4.1.45724.1.1.4.
const BUNDLED_MODELS: &[(&str, &str, &str)] = &[
    (
        "Yubico",
        "6d44ba9bf6ec2e49b9300c8fe920cb73",
        "Security Key NFC by Yubico",
    ),
    (
        "Yubico",
        "149a20218ef6413396b881f8d5b7f1f5",
        "Security Key NFC by Yubico",
    ),
    (
        "Yubico",
        "a4e9fc6d4cbe4758b8ba37598bb5bbaa",
        "Security Key NFC by Yubico",
    ),
    (
        "Yubico",
        "0bb43545fd2c418587ddfeb0b2916ace",
        "Security Key NFC by Yubico - Enterprise Edition",
    ),
    (
        "Yubico",
        "b92c3f9ac0144056887f140a2501163b",
        "Security Key by Yubico",
    ),
    (
        "Yubico",
        "fa2b99dc9e3942578f924a30d23c4118",
        "YubiKey 5 NFC",
    ),
    (
        "Yubico",
        "2fc0579f811347eab116bb5a8db9202a",
        "YubiKey 5/5C NFC",
    ),
    (
        "Yubico",
        "cb69481e8ff7403993ec0a2729a154a8",
        "YubiKey 5 Series",
    ),
    (
        "Yubico",
        "ee882879721c491397753dfcce97072a",
        "YubiKey 5 Series",
    ),
    ("Yubico", "c5ef55ffad9a4b9fb580adebafe026d0", "YubiKey 5Ci"),
    (
        "Yubico",
        "c1f9a0bc1dd2404ab27f8e29047a43fd",
        "YubiKey 5/5C NFC FIPS",
    ),
    (
        "Yubico",
        "73bb0cd4e50249b89c6fb59445bf720b",
        "YubiKey 5 FIPS series",
    ),
    (
        "Yubico",
        "8520342148f943559bc88a53846e5083",
        "YubiKey 5Ci FIPS",
    ),
    (
        "Yubico",
        "d8522d9f575b486688a9ba99fa02f35b",
        "YubiKey Bio - FIDO Edition",
    ),
];

/// The roots and metadata a statement is judged against.
#[derive(Debug, Clone)]
pub struct Trust {
    anchors: Vec<Anchor>,
    mds: Option<mds::Metadata>,
}

impl Trust {
    /// The bundled vendor roots.
    pub fn bundled() -> Trust {
        let anchors = BUNDLED_ROOTS
            .iter()
            .map(|r| Anchor {
                cert: pem_to_cert(r.pem).expect("bundled root parses (unit-tested)"),
                vendor: r.vendor.to_owned(),
            })
            .collect();
        Trust { anchors, mds: None }
    }

    /// Only these anchors (tests; a deployment with its own roots).
    pub fn with_anchors(anchors: Vec<Anchor>) -> Trust {
        Trust { anchors, mds: None }
    }

    /// Also consult a verified MDS BLOB.
    pub fn with_mds(mut self, m: mds::Metadata) -> Trust {
        self.mds = Some(m);
        self
    }

    /// The anchors.
    pub fn anchors(&self) -> &[Anchor] {
        &self.anchors
    }
}

/// A PEM certificate (one) as a [`Cert`].
pub fn pem_to_cert(pem: &str) -> Result<Cert, X509Error> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != "-----BEGIN CERTIFICATE-----")
        .skip(1)
        .take_while(|l| *l != "-----END CERTIFICATE-----")
        .collect();
    use base64::Engine;
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .map_err(|e| X509Error::Malformed {
            index: 0,
            reason: format!("PEM: {e}"),
        })?;
    Cert::parse(&der, 0)
}

/// One makeCredential answer's attestation, as the key sent it.
#[derive(Debug, Clone, Copy)]
pub struct Statement<'a> {
    /// `fmt`.
    pub fmt: &'a str,
    /// `attStmt` (a CBOR map).
    pub att_stmt: &'a Value,
    /// `authData`, the bytes as sent.
    pub auth_data: &'a [u8],
    /// SHA-256 of the client data of the request.
    pub client_data_hash: &'a [u8; 32],
}

/// The fields of an attStmt map: text keys, each at most once, only those `allowed`.
fn fields<'a>(
    fmt: &str,
    att_stmt: &'a Value,
    allowed: &[&str],
) -> Result<Vec<(&'a str, &'a Value)>, AttestationError> {
    let malformed = |reason: String| AttestationError::Malformed {
        fmt: fmt.to_owned(),
        reason,
    };
    let map = att_stmt
        .as_map()
        .ok_or_else(|| malformed("not a map".into()))?;
    let mut out: Vec<(&str, &Value)> = Vec::new();
    for (k, v) in map {
        let k = k
            .as_text()
            .ok_or_else(|| malformed("a key is not text".into()))?;
        if !allowed.contains(&k) {
            return Err(malformed(format!(
                "unexpected field {:?}",
                crate::presence::prompt::escape_control(k)
            )));
        }
        if out.iter().any(|(o, _)| *o == k) {
            return Err(malformed(format!("field {k} twice")));
        }
        out.push((k, v));
    }
    Ok(out)
}

fn get<'a>(f: &[(&'a str, &'a Value)], k: &str) -> Option<&'a Value> {
    f.iter().find(|(n, _)| *n == k).map(|(_, v)| *v)
}

/// The x5c array as byte strings (bounded by [`x509::parse_chain`]).
fn x5c_ders<'a>(fmt: &str, v: &'a Value) -> Result<Vec<&'a [u8]>, AttestationError> {
    let malformed = |reason: &str| AttestationError::Malformed {
        fmt: fmt.to_owned(),
        reason: reason.to_owned(),
    };
    let arr = v
        .as_array()
        .ok_or_else(|| malformed("x5c is not an array"))?;
    arr.iter()
        .map(|c| {
            c.as_bytes()
                .ok_or_else(|| malformed("x5c holds a non-byte-string"))
        })
        .collect()
}

/// Verify a statement against `trust`. `Ok` carries the verdict (never `virtual`: the caller
/// knows the transport, see [`for_enrollment`]); `Err` means the statement is wrong.
pub fn verify(s: &Statement<'_>, trust: &Trust) -> Result<Attestation, AttestationError> {
    let auth_data =
        AuthenticatorData::parse(s.auth_data).map_err(|e| AttestationError::Malformed {
            fmt: s.fmt.to_owned(),
            reason: format!("authenticatorData: {e}"),
        })?;
    let acd =
        auth_data
            .attested_credential_data
            .as_ref()
            .ok_or_else(|| AttestationError::Malformed {
                fmt: s.fmt.to_owned(),
                reason: "authenticatorData has no attested credential data".into(),
            })?;
    let mut out = Attestation {
        verdict: Verdict::Unchecked,
        fmt: s.fmt.to_owned(),
        statement: hex::encode(cbor::encode(s.att_stmt)),
        auth_data: hex::encode(s.auth_data),
        client_data_hash: hex::encode(s.client_data_hash),
        ..Attestation::default()
    };
    // The MDS status of the model the key claims, whatever it attests: a model reported
    // compromised or revoked is refused even when it sends no statement.
    if let Some(e) = trust.mds.as_ref().and_then(|m| m.entry(&acd.aaguid)) {
        out.mds_status = e.status.clone();
        if let Some(bad) = e.refusing_status() {
            return Err(AttestationError::Revoked {
                model: e
                    .description
                    .clone()
                    .unwrap_or_else(|| hex::encode(acd.aaguid)),
                status: bad.to_owned(),
            });
        }
    }
    let mut signed = s.auth_data.to_vec();
    signed.extend_from_slice(s.client_data_hash);
    match s.fmt {
        "none" => {
            fields("none", s.att_stmt, &[])?;
            out.verdict = Verdict::None;
        }
        "packed" => {
            let f = fields("packed", s.att_stmt, &["alg", "sig", "x5c", "ecdaaKeyId"])?;
            if get(&f, "ecdaaKeyId").is_some() {
                return Err(AttestationError::Unsupported("ECDAA (packed)".into()));
            }
            let malformed = |r: &str| AttestationError::Malformed {
                fmt: "packed".into(),
                reason: r.into(),
            };
            let alg = get(&f, "alg")
                .and_then(Value::as_i64)
                .ok_or_else(|| malformed("alg is missing or not an integer"))?;
            let sig = get(&f, "sig")
                .and_then(Value::as_bytes)
                .ok_or_else(|| malformed("sig is missing or not bytes"))?;
            match get(&f, "x5c") {
                None => {
                    // Self attestation: alg is the credential's, the credential key signs.
                    let key = acd.public_key().map_err(|e| malformed(&e.to_string()))?;
                    if key.algorithm() != alg {
                        return Err(malformed(&format!(
                            "self attestation alg {alg} is not the credential's ({})",
                            key.algorithm()
                        )));
                    }
                    key.verify(&signed, sig)
                        .map_err(|_| AttestationError::BadSignature("packed self".into()))?;
                    out.verdict = Verdict::SelfAttested;
                    out.detail = Some("self attestation: signed by the credential key itself, which says nothing about the model".into());
                }
                Some(x5c) => {
                    let ders = x5c_ders("packed", x5c)?;
                    let chain = x509::parse_chain(&ders)?;
                    let leaf = &chain[0];
                    let key = leaf.public_key()?;
                    let hash = key.hash_for_cose_alg(alg).ok_or_else(|| {
                        AttestationError::Unsupported(format!(
                            "alg {alg} with the attestation certificate's key"
                        ))
                    })?;
                    key.verify(hash, &signed, sig, SigEncoding::Der)
                        .map_err(|_| AttestationError::BadSignature("packed".into()))?;
                    leaf.check_packed_leaf(&acd.aaguid)?;
                    judge_chain(&chain, &acd.aaguid, trust, &mut out)?;
                }
            }
        }
        "fido-u2f" => {
            let f = fields("fido-u2f", s.att_stmt, &["sig", "x5c"])?;
            let malformed = |r: &str| AttestationError::Malformed {
                fmt: "fido-u2f".into(),
                reason: r.into(),
            };
            let sig = get(&f, "sig")
                .and_then(Value::as_bytes)
                .ok_or_else(|| malformed("sig is missing or not bytes"))?;
            let ders = x5c_ders(
                "fido-u2f",
                get(&f, "x5c").ok_or_else(|| malformed("x5c is missing"))?,
            )?;
            if ders.len() != 1 {
                return Err(malformed("x5c must hold exactly one certificate"));
            }
            let fixed = x509::fix_u2f_unused_bits(ders[0]);
            let chain = x509::parse_chain(&[&fixed])?;
            let key = chain[0].public_key()?;
            if !matches!(key, x509::PublicKey::P256(_)) {
                return Err(malformed(
                    "the attestation certificate's key is not EC P-256",
                ));
            }
            let Ok(CoseKey::Es256(cred)) = acd.public_key() else {
                return Err(malformed("the credential key is not ES256"));
            };
            let point = cred.to_encoded_point(false);
            // WebAuthn §8.6: 0x00 || rpIdHash || clientDataHash || credentialId || publicKeyU2F.
            let mut msg = vec![0u8];
            msg.extend_from_slice(&auth_data.rp_id_hash);
            msg.extend_from_slice(s.client_data_hash);
            msg.extend_from_slice(&acd.credential_id);
            msg.extend_from_slice(point.as_bytes());
            key.verify(x509::Hash::Sha256, &msg, sig, SigEncoding::Der)
                .map_err(|_| AttestationError::BadSignature("fido-u2f".into()))?;
            // No AAGUID rule for fido-u2f (WebAuthn §8.6): authData's AAGUID is all zero, while
            // a later U2F certificate may name its model's AAGUID (YubiKey 5 NFC does).
            judge_chain(&chain, &acd.aaguid, trust, &mut out)?;
        }
        other => {
            out.detail = Some(format!(
                "attestation format {:?} is not verified by auths",
                crate::presence::prompt::escape_control(other)
            ));
        }
    }
    Ok(out)
}

/// The chain of a statement whose signature verified: attested, or untrusted-chain. With an
/// MDS BLOB, its entry for the AAGUID may refuse the model and adds its roots.
fn judge_chain(
    chain: &[Cert],
    aaguid: &[u8; 16],
    trust: &Trust,
    out: &mut Attestation,
) -> Result<(), AttestationError> {
    out.x5c = chain.iter().map(|c| hex::encode(c.der())).collect();
    let entry = trust.mds.as_ref().and_then(|m| m.entry(aaguid));
    let mds_anchors: Vec<Anchor> = entry
        .map(|e| {
            e.roots
                .iter()
                .map(|c| Anchor {
                    cert: c.clone(),
                    vendor: chain[0].organization().unwrap_or_else(|| "unknown".into()),
                })
                .collect()
        })
        .unwrap_or_default();
    let mut anchors = trust.anchors.clone();
    anchors.extend(mds_anchors);
    match x509::walk(chain, &anchors)? {
        ChainEnd::Trusted(a) => {
            out.verdict = Verdict::Attested;
            out.vendor = Some(a.vendor.clone());
            out.root_fingerprint = Some(a.cert.fingerprint());
            // U2F keys put no AAGUID in authData; a later U2F certificate names its model's
            // in the FIDO extension (Yubico's metadata selects models by it).
            let model_aaguid = match chain[0].aaguid() {
                Ok(Some(cert)) if aaguid == &[0u8; 16] => cert,
                _ => *aaguid,
            };
            let aaguid_hex = hex::encode(model_aaguid);
            out.model = entry.and_then(|e| e.description.clone()).or_else(|| {
                BUNDLED_MODELS
                    .iter()
                    .find(|(v, g, _)| *v == a.vendor && *g == aaguid_hex)
                    .map(|(_, _, m)| (*m).to_owned())
            });
        }
        ChainEnd::UnknownIssuer(issuer) => {
            out.verdict = Verdict::UntrustedChain;
            out.detail = Some(format!(
                "the attestation certificate chain ends at {issuer}, which is not a trusted root (bundled, or listed by an MDS BLOB given with --mds)"
            ));
        }
    }
    Ok(())
}

/// The attestation of a new credential as an enrollment records it: verified against
/// `trust`, then `virtual` when the key is the virtual key (it can never be `attested`).
pub fn for_enrollment(
    s: &Statement<'_>,
    trust: &Trust,
    is_virtual: bool,
) -> Result<Attestation, AttestationError> {
    let mut a = verify(s, trust)?;
    if is_virtual {
        a.verdict = Verdict::Virtual;
        a.vendor = None;
        a.model = None;
        a.root_fingerprint = None;
        a.detail = Some("the virtual key (software): it attests nothing".into());
    }
    Ok(a)
}

/// Check a stored attestation again (the file is user-writable): its statement must belong
/// to this credential (the stored authData holds `credential_id` and `public_key_cose`) and
/// verify with the bundled roots to the stored verdict. Returns the verdict it earns now.
pub fn reverify(
    stored: &Attestation,
    credential_id: &[u8],
    public_key_cose: &[u8],
    virtual_key: bool,
    trust: &Trust,
) -> Verdict {
    let check = || -> Option<Verdict> {
        let auth_data = hex::decode(&stored.auth_data).ok()?;
        let cdh: [u8; 32] = hex::decode(&stored.client_data_hash)
            .ok()?
            .try_into()
            .ok()?;
        let stmt = cbor::decode(&hex::decode(&stored.statement).ok()?).ok()?;
        let parsed = AuthenticatorData::parse(&auth_data).ok()?;
        let acd = parsed.attested_credential_data?;
        let key = acd.public_key().ok()?;
        if acd.credential_id != credential_id || key.to_cbor_bytes() != public_key_cose {
            return None;
        }
        let a = for_enrollment(
            &Statement {
                fmt: &stored.fmt,
                att_stmt: &stmt,
                auth_data: &auth_data,
                client_data_hash: &cdh,
            },
            trust,
            virtual_key,
        )
        .ok()?;
        Some(a.verdict)
    };
    check().unwrap_or(Verdict::Unchecked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_roots_parse_and_match_their_readme() {
        let readme = include_str!("roots/README.md");
        let t = Trust::bundled();
        assert_eq!(t.anchors().len(), BUNDLED_ROOTS.len());
        for a in t.anchors() {
            assert!(
                readme.contains(&a.cert.fingerprint()),
                "roots/README.md lists the SHA-256 of {}",
                a.cert.subject()
            );
        }
    }

    #[test]
    fn bundled_roots_are_validly_self_signed() {
        for a in Trust::bundled().anchors() {
            assert!(a.cert.is_self_issued(), "{}", a.cert.subject());
            assert_eq!(
                a.cert.verify_signed_by(&a.cert),
                Ok(()),
                "{} signs itself",
                a.cert.subject()
            );
        }
        let m = mds::fido_root();
        assert_eq!(m.cert.verify_signed_by(&m.cert), Ok(()));
    }

    #[test]
    fn verdict_names() {
        for (v, s) in [
            (Verdict::Attested, "\"attested\""),
            (Verdict::UntrustedChain, "\"untrusted-chain\""),
            (Verdict::SelfAttested, "\"self\""),
            (Verdict::None, "\"none\""),
            (Verdict::Virtual, "\"virtual\""),
            (Verdict::Unchecked, "\"unchecked\""),
        ] {
            assert_eq!(serde_json::to_string(&v).unwrap(), s);
            assert_eq!(format!("\"{v}\""), s);
        }
        let old: Attestation = serde_json::from_str("{}").unwrap();
        assert_eq!(old.verdict, Verdict::Unchecked);
    }

    #[test]
    fn aaguid_extension_comparison() {
        let a = [7u8; 16];
        assert!(x509::check_aaguid(None, &a).is_ok());
        assert!(x509::check_aaguid(Some(a), &a).is_ok());
        let mut b = a;
        b[15] ^= 1;
        assert!(matches!(
            x509::check_aaguid(Some(b), &a),
            Err(X509Error::AaguidMismatch { .. })
        ));
    }

    #[test]
    fn none_must_be_empty() {
        let v = Value::Map(vec![(Value::text("sig"), Value::bytes(b"x"))]);
        let e = fields("none", &v, &[]).unwrap_err();
        assert!(matches!(e, AttestationError::Malformed { .. }));
    }
}
