//! X.509 for attestation: strict DER certificates (bounded), the leaf requirements of WebAuthn
//! §8.2.1, the FIDO AAGUID extension, certificate signatures (ECDSA P-256/P-384 with SHA-256/384,
//! RSA PKCS#1 v1.5 with SHA-256/384/512) and a chain walk up to a set of trust anchors.
//!
//! Every certificate here came from a security key or a user-supplied file: hostile. A
//! certificate must be canonical DER (it re-encodes to exactly its bytes), at most
//! [`MAX_CERT_LEN`] bytes, with no extension twice; a chain has at most [`MAX_CHAIN_LEN`]
//! certificates. Validity periods are not checked (see the module docs of `attestation`).

use sha2::Digest;
use thiserror::Error;
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{Decode, Encode, Tag, Tagged};
use x509_cert::ext::pkix::BasicConstraints;
use x509_cert::name::Name;
use x509_cert::Certificate;

/// Largest certificate accepted (DER bytes).
pub const MAX_CERT_LEN: usize = 8 * 1024;
/// Most certificates in one chain (x5c).
pub const MAX_CHAIN_LEN: usize = 5;

/// id-fido-gen-ce-aaguid: the AAGUID of the authenticator model in an attestation certificate.
pub const OID_FIDO_AAGUID: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.45724.1.1.4");
const OID_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const OID_C: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.6");
const OID_O: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.10");
const OID_OU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.11");
const OID_CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const OID_ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const OID_RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const OID_RSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const OID_RSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");

/// Why a certificate or chain was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum X509Error {
    /// Too large.
    #[error("certificate {index} is {len} bytes, more than the {MAX_CERT_LEN} accepted")]
    TooLarge {
        /// Position in the chain (0 = leaf).
        index: usize,
        /// Its size.
        len: usize,
    },
    /// Too many certificates.
    #[error("the chain has {0} certificates, more than the {MAX_CHAIN_LEN} accepted")]
    ChainTooLong(usize),
    /// Empty chain.
    #[error("the chain has no certificate")]
    EmptyChain,
    /// Not a DER certificate.
    #[error("certificate {index} is not a strict DER X.509 certificate: {reason}")]
    Malformed {
        /// Position in the chain.
        index: usize,
        /// What the parser said.
        reason: String,
    },
    /// The same extension twice.
    #[error("certificate {index} has extension {oid} more than once")]
    DuplicateExtension {
        /// Position in the chain.
        index: usize,
        /// The extension.
        oid: String,
    },
    /// A WebAuthn §8.2.1 requirement on the attestation certificate is not met.
    #[error("the attestation certificate does not meet WebAuthn §8.2.1: {0}")]
    LeafRequirement(String),
    /// The AAGUID extension disagrees with authenticatorData.
    #[error("the attestation certificate names AAGUID {cert}, but the key's authenticatorData says {auth_data}")]
    AaguidMismatch {
        /// In the certificate (hex).
        cert: String,
        /// In authenticatorData (hex).
        auth_data: String,
    },
    /// An issuer that is not a CA.
    #[error("certificate {index} issues another but is not a CA (basicConstraints)")]
    NotCa {
        /// Position in the chain (the bundled root is after the x5c certificates).
        index: usize,
    },
    /// A path length constraint is exceeded.
    #[error(
        "certificate {index} allows {allowed} CA certificates below it, the chain has {found}"
    )]
    PathLength {
        /// Position.
        index: usize,
        /// Its pathLenConstraint.
        allowed: u8,
        /// How many there are.
        found: usize,
    },
    /// A certificate's signature does not verify with its issuer's key.
    #[error("certificate {index}'s signature does not verify with the key of {issuer}")]
    BadSignature {
        /// Position.
        index: usize,
        /// The issuer's subject.
        issuer: String,
    },
    /// A key or signature algorithm this verifier does not handle.
    #[error("unsupported {0}")]
    Unsupported(String),
}

/// One parsed certificate and the bytes it came from.
#[derive(Debug, Clone)]
pub struct Cert {
    der: Vec<u8>,
    cert: Certificate,
}

impl Cert {
    /// Parse one certificate strictly (`index` only names it in errors).
    pub fn parse(der: &[u8], index: usize) -> Result<Cert, X509Error> {
        if der.len() > MAX_CERT_LEN {
            return Err(X509Error::TooLarge {
                index,
                len: der.len(),
            });
        }
        let malformed = |reason: String| X509Error::Malformed { index, reason };
        let cert = Certificate::from_der(der).map_err(|e| malformed(e.to_string()))?;
        // Canonical: the bytes the signature covers are exactly what we re-encode.
        let again = cert.to_der().map_err(|e| malformed(e.to_string()))?;
        if again != der {
            return Err(malformed("not canonical DER".into()));
        }
        if let Some(exts) = &cert.tbs_certificate.extensions {
            for (i, e) in exts.iter().enumerate() {
                if exts[..i].iter().any(|o| o.extn_id == e.extn_id) {
                    return Err(X509Error::DuplicateExtension {
                        index,
                        oid: e.extn_id.to_string(),
                    });
                }
            }
        }
        Ok(Cert {
            der: der.to_vec(),
            cert,
        })
    }

    /// The DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// SHA-256 of the DER bytes, hex.
    pub fn fingerprint(&self) -> String {
        hex::encode(sha2::Sha256::digest(&self.der))
    }

    /// The subject as RFC 4514 text (for messages; escape before a terminal sees it).
    pub fn subject(&self) -> String {
        self.cert.tbs_certificate.subject.to_string()
    }

    /// The issuer as RFC 4514 text.
    pub fn issuer(&self) -> String {
        self.cert.tbs_certificate.issuer.to_string()
    }

    fn subject_name(&self) -> &Name {
        &self.cert.tbs_certificate.subject
    }

    fn issuer_name(&self) -> &Name {
        &self.cert.tbs_certificate.issuer
    }

    /// True when the certificate names itself as its issuer.
    pub fn is_self_issued(&self) -> bool {
        self.subject_name() == self.issuer_name()
    }

    fn extension(&self, oid: ObjectIdentifier) -> Option<&x509_cert::ext::Extension> {
        self.cert
            .tbs_certificate
            .extensions
            .as_ref()?
            .iter()
            .find(|e| e.extn_id == oid)
    }

    fn basic_constraints(&self) -> Result<Option<BasicConstraints>, String> {
        match self.extension(OID_BASIC_CONSTRAINTS) {
            None => Ok(None),
            Some(e) => BasicConstraints::from_der(e.extn_value.as_bytes())
                .map(Some)
                .map_err(|e| format!("basicConstraints is malformed: {e}")),
        }
    }

    /// The AAGUID of the FIDO extension, if the certificate has one: `Err` when it is
    /// critical or not an OCTET STRING of 16 bytes.
    pub fn aaguid(&self) -> Result<Option<[u8; 16]>, X509Error> {
        let Some(e) = self.extension(OID_FIDO_AAGUID) else {
            return Ok(None);
        };
        if e.critical {
            return Err(X509Error::LeafRequirement(
                "the AAGUID extension is marked critical".into(),
            ));
        }
        let inner =
            x509_cert::der::asn1::OctetString::from_der(e.extn_value.as_bytes()).map_err(|_| {
                X509Error::LeafRequirement("the AAGUID extension is not an OCTET STRING".into())
            })?;
        let a = <[u8; 16]>::try_from(inner.as_bytes()).map_err(|_| {
            X509Error::LeafRequirement(format!(
                "the AAGUID extension holds {} bytes, not 16",
                inner.as_bytes().len()
            ))
        })?;
        Ok(Some(a))
    }

    /// The certificate's public key, for verifying an attestation signature.
    pub fn public_key(&self) -> Result<PublicKey, X509Error> {
        PublicKey::from_spki(&self.cert.tbs_certificate.subject_public_key_info)
    }

    /// Verify that `self` was signed by `issuer`'s key.
    pub fn verify_signed_by(&self, issuer: &Cert) -> Result<(), SignatureCheck> {
        let tbs = self
            .cert
            .tbs_certificate
            .to_der()
            .map_err(|e| SignatureCheck::Unsupported(e.to_string()))?;
        if self.cert.signature_algorithm != self.cert.tbs_certificate.signature {
            return Err(SignatureCheck::Invalid);
        }
        let sig = self
            .cert
            .signature
            .as_bytes()
            .ok_or(SignatureCheck::Invalid)?;
        let alg = self.cert.signature_algorithm.oid;
        let hash = if alg == OID_ECDSA_SHA256 || alg == OID_RSA_SHA256 {
            Hash::Sha256
        } else if alg == OID_ECDSA_SHA384 || alg == OID_RSA_SHA384 {
            Hash::Sha384
        } else if alg == OID_RSA_SHA512 {
            Hash::Sha512
        } else {
            return Err(SignatureCheck::Unsupported(format!(
                "certificate signature algorithm {alg}"
            )));
        };
        let key = issuer
            .public_key()
            .map_err(|e| SignatureCheck::Unsupported(e.to_string()))?;
        let is_rsa_alg = alg == OID_RSA_SHA256 || alg == OID_RSA_SHA384 || alg == OID_RSA_SHA512;
        if is_rsa_alg != matches!(key, PublicKey::Rsa(_)) {
            return Err(SignatureCheck::Invalid);
        }
        key.verify(hash, &tbs, sig, SigEncoding::Der)
            .map_err(|_| SignatureCheck::Invalid)
    }

    /// WebAuthn §8.2.1 (packed attestation statement certificate requirements), and the
    /// AAGUID extension against `auth_data_aaguid`.
    pub fn check_packed_leaf(&self, auth_data_aaguid: &[u8; 16]) -> Result<(), X509Error> {
        let req = |s: &str| X509Error::LeafRequirement(s.to_owned());
        if self.cert.tbs_certificate.version != x509_cert::Version::V3 {
            return Err(req("it is not an X.509 version 3 certificate"));
        }
        let subject = self.subject_name();
        let c = name_attr(subject, OID_C).map_err(|e| req(&e))?;
        if !c
            .as_deref()
            .is_some_and(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()))
        {
            return Err(req("subject C is not a two-letter country code"));
        }
        if name_attr(subject, OID_O)
            .map_err(|e| req(&e))?
            .is_none_or(|o| o.is_empty())
        {
            return Err(req("subject O (the vendor) is missing"));
        }
        if name_attr(subject, OID_OU).map_err(|e| req(&e))?.as_deref()
            != Some("Authenticator Attestation")
        {
            return Err(req("subject OU is not \"Authenticator Attestation\""));
        }
        if name_attr(subject, OID_CN)
            .map_err(|e| req(&e))?
            .is_none_or(|c| c.is_empty())
        {
            return Err(req("subject CN is missing"));
        }
        match self.basic_constraints().map_err(|e| req(&e))? {
            Some(bc) if bc.ca => return Err(req("basicConstraints says it is a CA")),
            _ => {}
        }
        check_aaguid(self.aaguid()?, auth_data_aaguid)
    }

    /// The subject's O attribute (the vendor), when it has one.
    pub fn organization(&self) -> Option<String> {
        name_attr(self.subject_name(), OID_O).ok().flatten()
    }
}

/// The AAGUID extension of an attestation certificate (if it has one) against the AAGUID in
/// authenticatorData: they must be equal (WebAuthn §8.2.1).
pub fn check_aaguid(cert: Option<[u8; 16]>, auth_data: &[u8; 16]) -> Result<(), X509Error> {
    match cert {
        Some(a) if !bool::from(subtle::ConstantTimeEq::ct_eq(&a[..], &auth_data[..])) => {
            Err(X509Error::AaguidMismatch {
                cert: hex::encode(a),
                auth_data: hex::encode(auth_data),
            })
        }
        _ => Ok(()),
    }
}

/// The one value of attribute `oid` in `name` (`Err` when it appears twice or is not a
/// string).
fn name_attr(name: &Name, oid: ObjectIdentifier) -> Result<Option<String>, String> {
    let mut found = None;
    for rdn in name.0.iter() {
        for atv in rdn.0.iter() {
            if atv.oid != oid {
                continue;
            }
            if found.is_some() {
                return Err(format!("subject attribute {oid} appears twice"));
            }
            let s = match atv.value.tag() {
                Tag::Utf8String | Tag::PrintableString | Tag::Ia5String => {
                    std::str::from_utf8(atv.value.value())
                        .map_err(|_| format!("subject attribute {oid} is not UTF-8"))?
                }
                t => return Err(format!("subject attribute {oid} is a {t}, not a string")),
            };
            found = Some(s.to_owned());
        }
    }
    Ok(found)
}

/// Why a certificate signature check failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureCheck {
    /// The signature does not verify (or the algorithms disagree).
    Invalid,
    /// An algorithm or key this verifier does not handle.
    Unsupported(String),
}

/// Hash of a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl Hash {
    fn digest(self, msg: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => sha2::Sha256::digest(msg).to_vec(),
            Hash::Sha384 => sha2::Sha384::digest(msg).to_vec(),
            Hash::Sha512 => sha2::Sha512::digest(msg).to_vec(),
        }
    }
}

/// How an ECDSA signature is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigEncoding {
    /// ASN.1 DER ECDSA-Sig-Value (X.509, WebAuthn).
    Der,
    /// Fixed-size r || s (JWS).
    Fixed,
}

/// A signature that does not verify (or is not well-formed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("signature does not verify")]
pub struct InvalidSignature;

/// A public key from a certificate.
#[derive(Debug, Clone)]
pub enum PublicKey {
    /// ECDSA P-256.
    P256(p256::ecdsa::VerifyingKey),
    /// ECDSA P-384.
    P384(p384::ecdsa::VerifyingKey),
    /// RSA, 2048 to 4096 bits.
    Rsa(Box<rsa::RsaPublicKey>),
}

impl PublicKey {
    fn from_spki(
        spki: &x509_cert::spki::SubjectPublicKeyInfoOwned,
    ) -> Result<PublicKey, X509Error> {
        let unsupported = |s: &str| X509Error::Unsupported(s.to_owned());
        let bits = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| unsupported("public key bit string with unused bits"))?;
        if spki.algorithm.oid == OID_EC_PUBLIC_KEY {
            let curve: ObjectIdentifier = spki
                .algorithm
                .parameters
                .as_ref()
                .ok_or_else(|| unsupported("EC key without a named curve"))?
                .decode_as()
                .map_err(|_| unsupported("EC key without a named curve"))?;
            if curve == OID_P256 {
                return p256::ecdsa::VerifyingKey::from_sec1_bytes(bits)
                    .map(PublicKey::P256)
                    .map_err(|_| unsupported("P-256 point (not on the curve)"));
            }
            if curve == OID_P384 {
                return p384::ecdsa::VerifyingKey::from_sec1_bytes(bits)
                    .map(PublicKey::P384)
                    .map_err(|_| unsupported("P-384 point (not on the curve)"));
            }
            return Err(X509Error::Unsupported(format!("EC curve {curve}")));
        }
        if spki.algorithm.oid == OID_RSA {
            use rsa::pkcs1::DecodeRsaPublicKey;
            use rsa::traits::PublicKeyParts;
            let k = rsa::RsaPublicKey::from_pkcs1_der(bits)
                .map_err(|_| unsupported("RSA key encoding"))?;
            let n = k.n().bits();
            if !(2048..=4096).contains(&n) {
                return Err(X509Error::Unsupported(format!("RSA key of {n} bits")));
            }
            return Ok(PublicKey::Rsa(Box::new(k)));
        }
        Err(X509Error::Unsupported(format!(
            "public key algorithm {}",
            spki.algorithm.oid
        )))
    }

    /// Verify `sig` over `msg` with hash `hash` (ECDSA: `enc` says how the signature is
    /// encoded; DER must be strict).
    pub fn verify(
        &self,
        hash: Hash,
        msg: &[u8],
        sig: &[u8],
        enc: SigEncoding,
    ) -> Result<(), InvalidSignature> {
        use p256::ecdsa::signature::hazmat::PrehashVerifier;
        let digest = hash.digest(msg);
        match self {
            PublicKey::P256(k) => {
                let s = match enc {
                    SigEncoding::Der => p256::ecdsa::Signature::from_der(sig),
                    SigEncoding::Fixed => p256::ecdsa::Signature::from_slice(sig),
                }
                .map_err(|_| InvalidSignature)?;
                k.verify_prehash(&digest, &s).map_err(|_| InvalidSignature)
            }
            PublicKey::P384(k) => {
                let s = match enc {
                    SigEncoding::Der => p384::ecdsa::Signature::from_der(sig),
                    SigEncoding::Fixed => p384::ecdsa::Signature::from_slice(sig),
                }
                .map_err(|_| InvalidSignature)?;
                k.verify_prehash(&digest, &s).map_err(|_| InvalidSignature)
            }
            PublicKey::Rsa(k) => {
                let scheme = match hash {
                    Hash::Sha256 => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
                    Hash::Sha384 => rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
                    Hash::Sha512 => rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
                };
                k.verify(scheme, &digest, sig).map_err(|_| InvalidSignature)
            }
        }
    }

    /// The COSE algorithm a WebAuthn attestation signature by this key uses with `alg`, if
    /// they fit: -7 ES256 (P-256), -35 ES384 (P-384), -257 RS256 (RSA).
    pub fn hash_for_cose_alg(&self, alg: i64) -> Option<Hash> {
        match (self, alg) {
            (PublicKey::P256(_), -7) => Some(Hash::Sha256),
            (PublicKey::P384(_), -35) => Some(Hash::Sha384),
            (PublicKey::Rsa(_), -257) => Some(Hash::Sha256),
            _ => None,
        }
    }
}

/// A trust anchor: a root certificate and what it stands for.
#[derive(Debug, Clone)]
pub struct Anchor {
    /// The certificate.
    pub cert: Cert,
    /// The vendor it belongs to (`Yubico`), shown to people.
    pub vendor: String,
}

/// Where a chain ended.
#[derive(Debug, Clone)]
pub enum ChainEnd<'a> {
    /// At this trust anchor; every signature on the way verified.
    Trusted(&'a Anchor),
    /// At a certificate issued by nobody we trust (its issuer, as text).
    UnknownIssuer(String),
}

/// Early YubiKey U2F attestation certificates set the unused-bits count of their RSA-2048
/// signature BIT STRING to non-zero (OpenSSL refuses them: "invalid bit string bits left").
/// For fido-u2f only: a certificate ending in a 257-byte BIT STRING (`03 82 01 01`, the
/// count, 256 signature bytes) gets its count set to 0. python-fido2 does the same for a list
/// of known certificates (by SHA-256); here any of that shape, since the count is outside the
/// signed part (the signature must still verify).
pub fn fix_u2f_unused_bits(der: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let n = der.len();
    if n > 261 && der[n - 261..n - 257] == [0x03, 0x82, 0x01, 0x01] && der[n - 257] != 0 {
        let mut fixed = der.to_vec();
        fixed[n - 257] = 0;
        return std::borrow::Cow::Owned(fixed);
    }
    std::borrow::Cow::Borrowed(der)
}

/// Parse an x5c array (leaf first): bounded, each certificate strict.
pub fn parse_chain(ders: &[&[u8]]) -> Result<Vec<Cert>, X509Error> {
    if ders.is_empty() {
        return Err(X509Error::EmptyChain);
    }
    if ders.len() > MAX_CHAIN_LEN {
        return Err(X509Error::ChainTooLong(ders.len()));
    }
    ders.iter()
        .enumerate()
        .map(|(i, d)| Cert::parse(d, i))
        .collect()
}

/// Walk `chain` (leaf first, each certificate issued by the next) up to one of `anchors`:
/// every issuer must be a CA within its path length and its signature must verify. The
/// chain may end with the anchor itself (byte for byte). A chain whose top is issued by a
/// name no anchor has ends [`ChainEnd::UnknownIssuer`]; one whose issuer name matches an
/// anchor but whose signature does not verify with it is an error (a forged or damaged
/// certificate).
pub fn walk<'a>(chain: &[Cert], anchors: &'a [Anchor]) -> Result<ChainEnd<'a>, X509Error> {
    if chain.is_empty() {
        return Err(X509Error::EmptyChain);
    }
    let mut chain = chain;
    // A chain that includes its root: the root must be the bundled one, byte for byte.
    let mut anchor = None;
    if chain.len() > 1 {
        if let Some(a) = anchors
            .iter()
            .find(|a| a.cert.der() == chain[chain.len() - 1].der())
        {
            anchor = Some(a);
            chain = &chain[..chain.len() - 1];
        }
    }
    for i in 0..chain.len().saturating_sub(1) {
        check_issuer(&chain[i], &chain[i + 1], i, i + 1)?;
    }
    let top = &chain[chain.len() - 1];
    let candidates: Vec<&Anchor> = match anchor {
        Some(a) => vec![a],
        None => anchors
            .iter()
            .filter(|a| a.cert.subject_name() == top.issuer_name())
            .collect(),
    };
    if candidates.is_empty() {
        return Ok(ChainEnd::UnknownIssuer(top.issuer()));
    }
    let mut last_err = None;
    for a in candidates {
        match check_issuer_with(top, &a.cert, chain.len() - 1, chain.len(), true) {
            Ok(()) => return Ok(ChainEnd::Trusted(a)),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or(X509Error::EmptyChain))
}

/// `issuer` (at `issuer_index`) issued `cert` (at `index`; every certificate from the leaf at
/// 0 up to it is below the issuer).
fn check_issuer(
    cert: &Cert,
    issuer: &Cert,
    index: usize,
    issuer_index: usize,
) -> Result<(), X509Error> {
    check_issuer_with(cert, issuer, index, issuer_index, false)
}

/// [`check_issuer`]; a trust anchor (`anchor`) that is an X.509 version 1 certificate (no
/// extensions at all, as Nitrokey's FIDO2 root) is a CA by configuration (RFC 5280 §6.1.1:
/// anchors are trusted as given). Certificates from x5c always need basicConstraints CA.
fn check_issuer_with(
    cert: &Cert,
    issuer: &Cert,
    index: usize,
    issuer_index: usize,
    anchor: bool,
) -> Result<(), X509Error> {
    if cert.issuer_name() != issuer.subject_name() {
        return Err(X509Error::BadSignature {
            index,
            issuer: issuer.subject(),
        });
    }
    let bc = issuer
        .basic_constraints()
        .map_err(|reason| X509Error::Malformed {
            index: issuer_index,
            reason,
        })?;
    let v1_anchor = anchor
        && issuer.cert.tbs_certificate.version == x509_cert::Version::V1
        && issuer.cert.tbs_certificate.extensions.is_none();
    let path_len = match bc {
        Some(b) if b.ca => b.path_len_constraint,
        None if v1_anchor => None,
        _ => {
            return Err(X509Error::NotCa {
                index: issuer_index,
            })
        }
    };
    // CA certificates below this issuer, not counting the leaf.
    let below = index;
    if let Some(allowed) = path_len {
        if below > usize::from(allowed) {
            return Err(X509Error::PathLength {
                index: issuer_index,
                allowed,
                found: below,
            });
        }
    }
    match cert.verify_signed_by(issuer) {
        Ok(()) => Ok(()),
        Err(SignatureCheck::Invalid) => Err(X509Error::BadSignature {
            index,
            issuer: issuer.subject(),
        }),
        Err(SignatureCheck::Unsupported(s)) => Err(X509Error::Unsupported(s)),
    }
}
