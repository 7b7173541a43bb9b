//! A FIDO Metadata Service (MDS3) BLOB the user downloaded (https://mds3.fidoalliance.org/):
//! a JWT (compact JWS, RS256 or ES256) whose header's x5c chains to the FIDO MDS root
//! (GlobalSign Root CA - R3, bundled in `roots/`), and whose payload lists authenticator
//! models by AAGUID with their metadata statement (description, attestation roots) and status
//! reports.
//!
//! The BLOB is a file the user picked: hostile until its signature verifies. It is bounded to
//! [`MAX_BLOB_LEN`]; the JWT must be three base64url segments without padding; `x5u` is not
//! followed (the file must carry its chain in `x5c`). Only the fields used here are read.

use base64::Engine;
use serde::Deserialize;
use thiserror::Error;

use super::x509::{self, Anchor, Cert, ChainEnd, SigEncoding, X509Error};

/// Largest BLOB accepted (the real one is about 5 MB).
pub const MAX_BLOB_LEN: usize = 16 * 1024 * 1024;

/// FIDO MDS3 statuses that refuse a model (FIDO Metadata Service v3.0 §3.1.4).
pub const REFUSING_STATUSES: &[&str] = &[
    "REVOKED",
    "USER_KEY_REMOTE_COMPROMISE",
    "USER_KEY_PHYSICAL_COMPROMISE",
    "ATTESTATION_KEY_COMPROMISE",
];

/// The bundled FIDO MDS root, PEM.
pub const FIDO_MDS_ROOT_PEM: &str = include_str!("roots/fido-mds-globalsign-root-ca-r3.pem");

/// Why a BLOB was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MdsError {
    /// Too large.
    #[error("the MDS BLOB is {0} bytes, more than the {MAX_BLOB_LEN} accepted")]
    TooLarge(usize),
    /// Not a compact JWS.
    #[error("the MDS BLOB is not a JWT (header.payload.signature in base64url): {0}")]
    NotJwt(String),
    /// The header is unusable.
    #[error("the MDS BLOB's JWT header is unusable: {0}")]
    Header(String),
    /// The certificate chain is bad or not from the FIDO root.
    #[error("the MDS BLOB's signing certificate: {0}")]
    Chain(#[from] X509Error),
    /// The chain does not end at the FIDO MDS root.
    #[error("the MDS BLOB is not signed under the FIDO MDS root (its chain ends at {0})")]
    UntrustedChain(String),
    /// The signature fails.
    #[error("the MDS BLOB's signature does not verify: the file was altered or is not from the FIDO Alliance")]
    BadSignature,
    /// The payload is not MDS3 JSON.
    #[error("the MDS BLOB's payload is not an MDS3 metadata list: {0}")]
    Payload(String),
}

/// One model of the BLOB.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its AAGUID.
    pub aaguid: [u8; 16],
    /// The metadata statement's description (the model name). Text from the BLOB: escape it
    /// before a terminal sees it.
    pub description: Option<String>,
    /// The latest status report's status.
    pub status: Option<String>,
    /// Every status reported.
    pub statuses: Vec<String>,
    /// The attestation roots the metadata statement lists (those that parse).
    pub roots: Vec<Cert>,
}

impl Entry {
    /// A reported status that refuses the model, if any. Any report counts, not only the
    /// latest: a model whose keys were once compromised stays refused.
    pub fn refusing_status(&self) -> Option<&str> {
        self.statuses
            .iter()
            .find(|s| REFUSING_STATUSES.contains(&s.as_str()))
            .map(String::as_str)
    }
}

/// A verified BLOB.
#[derive(Debug, Clone)]
pub struct Metadata {
    /// Its serial number (`no`).
    pub no: u64,
    /// `nextUpdate` (ISO date).
    pub next_update: String,
    entries: Vec<Entry>,
}

/// The civil date (`YYYY-MM-DD`, UTC) of a Unix time (Howard Hinnant's days-to-civil).
pub fn utc_date(unix_secs: u64) -> String {
    let z = (unix_secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

impl Metadata {
    /// True when the BLOB's `nextUpdate` (an ISO date) is before `today` (`YYYY-MM-DD`): a
    /// newer BLOB should have been published, and statuses in this one may be out of date.
    pub fn is_stale(&self, today: &str) -> bool {
        let next = self.next_update.get(..10).unwrap_or(&self.next_update);
        next < today
    }

    /// The entry for an AAGUID.
    pub fn entry(&self, aaguid: &[u8; 16]) -> Option<&Entry> {
        self.entries.iter().find(|e| &e.aaguid == aaguid)
    }

    /// How many models it lists by AAGUID.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when it lists none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    x5c: Vec<String>,
    #[serde(default)]
    x5u: Option<String>,
}

#[derive(Deserialize)]
struct Payload {
    no: u64,
    #[serde(rename = "nextUpdate")]
    next_update: String,
    entries: Vec<RawEntry>,
}

#[derive(Deserialize)]
struct RawEntry {
    #[serde(default)]
    aaguid: Option<String>,
    #[serde(default, rename = "metadataStatement")]
    metadata_statement: Option<RawStatement>,
    #[serde(default, rename = "statusReports")]
    status_reports: Vec<RawStatus>,
}

#[derive(Deserialize)]
struct RawStatement {
    #[serde(default)]
    description: Option<String>,
    #[serde(default, rename = "attestationRootCertificates")]
    attestation_root_certificates: Vec<String>,
}

#[derive(Deserialize)]
struct RawStatus {
    status: String,
    #[serde(default, rename = "effectiveDate")]
    effective_date: Option<String>,
}

/// The bundled FIDO MDS root.
pub fn fido_root() -> Anchor {
    Anchor {
        cert: super::pem_to_cert(FIDO_MDS_ROOT_PEM).expect("bundled MDS root parses (unit-tested)"),
        vendor: "FIDO Alliance".into(),
    }
}

fn b64url(s: &str) -> Result<Vec<u8>, MdsError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|e| MdsError::NotJwt(e.to_string()))
}

/// An AAGUID in UUID form (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`).
fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let hexs: String = s.chars().filter(|c| *c != '-').collect();
    hex::decode(hexs).ok()?.try_into().ok()
}

/// Verify a BLOB up to `root` and read its entries.
pub fn parse_and_verify(blob: &[u8], root: &Anchor) -> Result<Metadata, MdsError> {
    if blob.len() > MAX_BLOB_LEN {
        return Err(MdsError::TooLarge(blob.len()));
    }
    let text = std::str::from_utf8(blob).map_err(|_| MdsError::NotJwt("not ASCII".into()))?;
    let text = text.trim_end_matches(['\n', '\r']);
    let mut parts = text.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(MdsError::NotJwt("not three dot-separated parts".into()));
    };
    let header: Header =
        serde_json::from_slice(&b64url(h)?).map_err(|e| MdsError::Header(e.to_string()))?;
    if header.x5u.is_some() && header.x5c.is_empty() {
        return Err(MdsError::Header(
            "it names its certificates by URL (x5u), which auths does not fetch".into(),
        ));
    }
    let ders = header
        .x5c
        .iter()
        .map(|c| {
            base64::engine::general_purpose::STANDARD
                .decode(c)
                .map_err(|e| MdsError::Header(format!("x5c: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let refs: Vec<&[u8]> = ders.iter().map(Vec::as_slice).collect();
    let chain = x509::parse_chain(&refs)?;
    match x509::walk(&chain, std::slice::from_ref(root))? {
        ChainEnd::Trusted(_) => {}
        ChainEnd::UnknownIssuer(i) => return Err(MdsError::UntrustedChain(i)),
    }
    let (hash, enc) = match header.alg.as_str() {
        "RS256" => (x509::Hash::Sha256, SigEncoding::Der),
        "ES256" => (x509::Hash::Sha256, SigEncoding::Fixed),
        "ES384" => (x509::Hash::Sha384, SigEncoding::Fixed),
        other => {
            return Err(MdsError::Header(format!(
                "signature algorithm {:?} is not RS256/ES256/ES384",
                crate::presence::prompt::escape_control(other)
            )))
        }
    };
    let key = chain[0].public_key()?;
    let fits = matches!(
        (&key, header.alg.as_str()),
        (x509::PublicKey::Rsa(_), "RS256")
            | (x509::PublicKey::P256(_), "ES256")
            | (x509::PublicKey::P384(_), "ES384")
    );
    if !fits {
        return Err(MdsError::Header(
            "alg does not fit the signing certificate's key".into(),
        ));
    }
    let sig = b64url(s)?;
    let signed = &text.as_bytes()[..h.len() + 1 + p.len()];
    key.verify(hash, signed, &sig, enc)
        .map_err(|_| MdsError::BadSignature)?;
    let payload: Payload =
        serde_json::from_slice(&b64url(p)?).map_err(|e| MdsError::Payload(e.to_string()))?;
    let mut entries = Vec::new();
    for e in payload.entries {
        let Some(aaguid) = e.aaguid.as_deref().and_then(parse_uuid) else {
            continue; // U2F (AAID / key identifiers) and UAF entries: not looked up here.
        };
        let mut reports = e.status_reports;
        // The latest report last (ISO dates compare as text); undated ones first.
        reports.sort_by(|a, b| a.effective_date.cmp(&b.effective_date));
        let (description, roots) = match e.metadata_statement {
            Some(st) => (
                st.description,
                st.attestation_root_certificates
                    .iter()
                    .filter_map(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
                    .filter_map(|d| Cert::parse(&d, 0).ok())
                    .collect(),
            ),
            None => (None, Vec::new()),
        };
        entries.push(Entry {
            aaguid,
            description,
            status: reports.last().map(|r| r.status.clone()),
            statuses: reports.into_iter().map(|r| r.status).collect(),
            roots,
        });
    }
    Ok(Metadata {
        no: payload.no,
        next_update: payload.next_update,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_root_is_globalsign_r3() {
        let r = fido_root();
        assert_eq!(
            r.cert.fingerprint(),
            "cbb522d7b7f127ad6a0113865bdf1cd4102e7d0759af635a7cf4720dc963c53b"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_796_083_200), "2026-12-01");
        let m = Metadata {
            no: 1,
            next_update: "2026-12-01".into(),
            entries: Vec::new(),
        };
        assert!(!m.is_stale("2026-12-01"));
        assert!(m.is_stale("2026-12-02"));
    }

    #[test]
    fn uuid_form() {
        assert_eq!(
            parse_uuid("cb69481e-8ff7-4039-93ec-0a2729a154a8").map(hex::encode),
            Some("cb69481e8ff7403993ec0a2729a154a8".to_owned())
        );
        assert!(parse_uuid("cb69481e8ff7403993ec0a2729a154a8").is_none());
        assert!(parse_uuid("cb69481e-8ff7-4039-93ec-0a2729a154aX").is_none());
    }

    #[test]
    fn not_a_jwt() {
        let r = fido_root();
        assert!(matches!(
            parse_and_verify(b"a.b", &r),
            Err(MdsError::NotJwt(_))
        ));
        assert!(matches!(
            parse_and_verify(b"a.b.c.d", &r),
            Err(MdsError::NotJwt(_))
        ));
    }
}
