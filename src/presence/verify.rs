//! Verifying an assertion (WebAuthn §7.2 "Verifying an Authentication Assertion", adapted:
//! we are client and relying party at once, so the client data checks of steps 10-15 are
//! replaced by our own client data hash, which the caller computed).
//!
//! Checks, in order, each with its own [`VerifyError`] variant:
//! 1. the credential is one of the allowed ones (step 5; the key may omit the credential when
//!    the allowList had exactly one entry, CTAP 2.1 §6.2.2), ids compared in constant time;
//! 2. rpIdHash is SHA-256 of the rp id (step 15), constant time;
//! 3. UP is set (step 16), and UV when required (step 17);
//! 4. the signature over authData || clientDataHash verifies with that credential's key
//!    (steps 19-20);
//! 5. the signature counter (step 21, WebAuthn §6.1.1): if either the stored or the new
//!    counter is non-zero, the new one must be strictly greater, or the key may be cloned.
//!
//! Only [`verify_assertion`] builds a [`VerifiedAssertion`]: it is the proof that every check
//! passed.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

use crate::ctap::authdata::{AuthDataError, Flags};
use crate::ctap::command::{GetAssertionResponse, PUBLIC_KEY};
use crate::ctap::cose::{CoseKey, SignatureError};

/// An enrolled credential the assertion may come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedCredential {
    /// The credential id.
    pub id: Vec<u8>,
    /// Its public key.
    pub public_key: CoseKey,
    /// The last sign counter we stored for it (0 when never used or the key keeps none).
    pub sign_count: u32,
}

/// What the assertion must match.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The rp id the credentials were made for.
    pub rp_id: &'a str,
    /// SHA-256 of the client data we sent.
    pub client_data_hash: [u8; 32],
    /// The credentials in the allowList.
    pub allowed: &'a [AllowedCredential],
    /// Whether UV must be set.
    pub require_uv: bool,
}

/// An assertion that passed every check. Only [`verify_assertion`] can make one, and it is not
/// `Clone`: it is the proof token the gate turns into one approval (rustls'
/// `HandshakeSignatureValid`).
#[derive(Debug, PartialEq, Eq)]
pub struct VerifiedAssertion {
    credential_id: Vec<u8>,
    sign_count: u32,
    flags: Flags,
    algorithm: i64,
}

impl VerifiedAssertion {
    /// The credential that signed.
    pub fn credential_id(&self) -> &[u8] {
        &self.credential_id
    }
    /// The new sign counter, to be stored for this credential.
    pub fn sign_count(&self) -> u32 {
        self.sign_count
    }
    /// The authenticatorData flags.
    pub fn flags(&self) -> Flags {
        self.flags
    }
    /// The COSE algorithm of the credential (-7 or -8).
    pub fn algorithm(&self) -> i64 {
        self.algorithm
    }

    /// A stand-in for unit tests of what consumes the proof; never in a build that ships.
    #[cfg(test)]
    pub(crate) fn for_tests() -> VerifiedAssertion {
        VerifiedAssertion {
            credential_id: vec![1; 16],
            sign_count: 1,
            flags: Flags(crate::ctap::authdata::flag::UP),
            algorithm: -7,
        }
    }
}

/// Why an assertion was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// No credential was allowed, so nothing can match.
    #[error("no enrolled credential to verify against")]
    NoAllowedCredentials,
    /// The response names a credential type other than `public-key`.
    #[error("the key answered with credential type {0:?}, not public-key")]
    WrongCredentialType(String),
    /// The response omits the credential although several were allowed.
    #[error("the key did not say which of the {allowed} allowed credentials it used")]
    CredentialMissing {
        /// How many were allowed.
        allowed: usize,
    },
    /// The credential is not one we allowed.
    #[error("the key answered with a credential that is not enrolled")]
    UnknownCredential,
    /// rpIdHash is not SHA-256 of our rp id.
    #[error("the assertion is for another relying party (rpIdHash does not match)")]
    RpIdHashMismatch,
    /// UP is clear: nobody touched the key.
    #[error("the assertion does not show user presence (UP flag clear): the key was not touched")]
    UserNotPresent,
    /// UV is required but clear.
    #[error("the assertion does not show user verification (UV flag clear)")]
    UserNotVerified,
    /// The signature does not verify.
    #[error("the assertion signature is not valid")]
    Signature(#[source] SignatureError),
    /// Stored authenticator data does not parse (a receipt read back for re-verification).
    #[error("the authenticator data does not parse")]
    AuthenticatorData(#[source] AuthDataError),
    /// The counter did not increase: the key may have been cloned.
    #[error("sign counter did not increase (stored {stored}, received {received}): the security key may be cloned")]
    CounterNotIncreased {
        /// The counter we stored.
        stored: u32,
        /// The counter in the assertion.
        received: u32,
    },
}

/// Run every check of the module docs on `response`.
pub fn verify_assertion(
    expected: &Expected<'_>,
    response: &GetAssertionResponse,
) -> Result<VerifiedAssertion, VerifyError> {
    if expected.allowed.is_empty() {
        return Err(VerifyError::NoAllowedCredentials);
    }
    let credential = match &response.credential {
        Some(c) => {
            if c.cred_type != PUBLIC_KEY {
                return Err(VerifyError::WrongCredentialType(c.cred_type.clone()));
            }
            find_credential(expected.allowed, &c.id).ok_or(VerifyError::UnknownCredential)?
        }
        None => match expected.allowed {
            [only] => only,
            _ => {
                return Err(VerifyError::CredentialMissing {
                    allowed: expected.allowed.len(),
                })
            }
        },
    };

    let ad = &response.auth_data;
    let rp_hash: [u8; 32] = Sha256::digest(expected.rp_id.as_bytes()).into();
    if !bool::from(ad.rp_id_hash.ct_eq(&rp_hash)) {
        return Err(VerifyError::RpIdHashMismatch);
    }
    if !ad.flags.user_present() {
        return Err(VerifyError::UserNotPresent);
    }
    if expected.require_uv && !ad.flags.user_verified() {
        return Err(VerifyError::UserNotVerified);
    }

    let message = response.signed_message(&expected.client_data_hash);
    credential
        .public_key
        .verify(&message, &response.signature)
        .map_err(VerifyError::Signature)?;

    let (stored, received) = (credential.sign_count, ad.sign_count);
    if (stored != 0 || received != 0) && received <= stored {
        return Err(VerifyError::CounterNotIncreased { stored, received });
    }

    Ok(VerifiedAssertion {
        credential_id: credential.id.clone(),
        sign_count: received,
        flags: ad.flags,
        algorithm: credential.public_key.algorithm(),
    })
}

/// Find `id` among the allowed credentials. Every candidate is compared (constant time per
/// comparison, no early exit on a match), so timing reveals neither which one matched nor
/// where the ids differ. Lengths are not secret.
fn find_credential<'a>(
    allowed: &'a [AllowedCredential],
    id: &[u8],
) -> Option<&'a AllowedCredential> {
    let mut found = None;
    for c in allowed {
        if bool::from(c.id.as_slice().ct_eq(id)) && found.is_none() {
            found = Some(c);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctap::authdata::{build, flag};
    use crate::ctap::cbor::{self, Value};
    use ed25519_dalek::Signer as _;

    const RP: &str = "auths:presence";
    const CDH: [u8; 32] = [0x5a; 32];

    enum Signer {
        P256(p256::ecdsa::SigningKey),
        Ed(ed25519_dalek::SigningKey),
    }

    impl Signer {
        fn sign(&self, m: &[u8]) -> Vec<u8> {
            match self {
                Signer::P256(k) => {
                    let s: p256::ecdsa::Signature = k.sign(m);
                    s.to_der().as_bytes().to_vec()
                }
                Signer::Ed(k) => k.sign(m).to_bytes().to_vec(),
            }
        }
        fn public(&self) -> CoseKey {
            match self {
                Signer::P256(k) => CoseKey::Es256(*k.verifying_key()),
                Signer::Ed(k) => CoseKey::EdDsa(k.verifying_key()),
            }
        }
    }

    fn p256() -> Signer {
        Signer::P256(p256::ecdsa::SigningKey::from_slice(&[3; 32]).unwrap())
    }
    fn ed() -> Signer {
        Signer::Ed(ed25519_dalek::SigningKey::from_bytes(&[4; 32]))
    }

    struct Case {
        rp: String,
        flags: u8,
        count: u32,
        cred: Option<Vec<u8>>,
        cred_type: &'static str,
        cdh: [u8; 32],
    }

    impl Default for Case {
        fn default() -> Self {
            Case {
                rp: RP.into(),
                flags: flag::UP,
                count: 10,
                cred: Some(vec![1; 16]),
                cred_type: "public-key",
                cdh: CDH,
            }
        }
    }

    fn response(signer: &Signer, c: Case) -> GetAssertionResponse {
        let rp_hash: [u8; 32] = Sha256::digest(c.rp.as_bytes()).into();
        let ad = build(&rp_hash, c.flags, c.count, None, None);
        let mut msg = ad.clone();
        msg.extend_from_slice(&c.cdh);
        let sig = signer.sign(&msg);
        let mut m = vec![
            (Value::int(2), Value::Bytes(ad)),
            (Value::int(3), Value::Bytes(sig)),
        ];
        if let Some(id) = c.cred {
            m.push((
                Value::int(1),
                Value::Map(vec![
                    (Value::text("id"), Value::Bytes(id)),
                    (Value::text("type"), Value::text(c.cred_type)),
                ]),
            ));
        }
        GetAssertionResponse::decode(&cbor::encode(&Value::Map(m))).unwrap()
    }

    fn allowed(signer: &Signer, count: u32) -> Vec<AllowedCredential> {
        vec![
            AllowedCredential {
                id: vec![2; 16],
                public_key: ed().public(),
                sign_count: 0,
            },
            AllowedCredential {
                id: vec![1; 16],
                public_key: signer.public(),
                sign_count: count,
            },
        ]
    }

    fn check(
        signer: &Signer,
        allow: &[AllowedCredential],
        uv: bool,
        c: Case,
    ) -> Result<VerifiedAssertion, VerifyError> {
        verify_assertion(&expected(allow, uv), &response(signer, c))
    }

    fn expected(allowed: &[AllowedCredential], require_uv: bool) -> Expected<'_> {
        Expected {
            rp_id: RP,
            client_data_hash: CDH,
            allowed,
            require_uv,
        }
    }

    #[test]
    fn valid_assertions_pass_for_both_algorithms() {
        for (s, alg) in [(p256(), -7), (ed(), -8)] {
            let v = check(&s, &allowed(&s, 9), false, Case::default()).unwrap();
            assert_eq!(v.credential_id(), &[1; 16]);
            assert_eq!(v.sign_count(), 10);
            assert_eq!(v.algorithm(), alg);
            assert!(v.flags().user_present());
        }
    }

    #[test]
    fn no_allowed_credentials() {
        let s = p256();
        assert_eq!(
            check(&s, &[], false, Case::default()),
            Err(VerifyError::NoAllowedCredentials)
        );
    }

    #[test]
    fn each_failed_check_has_its_own_error() {
        let cases: Vec<(Signer, Case, VerifyError)> = vec![
            (
                p256(),
                Case {
                    cred: Some(vec![3; 16]),
                    ..Case::default()
                },
                VerifyError::UnknownCredential,
            ),
            // A prefix of an allowed id is not that id.
            (
                p256(),
                Case {
                    cred: Some(vec![1; 15]),
                    ..Case::default()
                },
                VerifyError::UnknownCredential,
            ),
            (
                p256(),
                Case {
                    cred_type: "password",
                    ..Case::default()
                },
                VerifyError::WrongCredentialType("password".into()),
            ),
            (
                ed(),
                Case {
                    rp: "evil.example".into(),
                    ..Case::default()
                },
                VerifyError::RpIdHashMismatch,
            ),
            (
                p256(),
                Case {
                    flags: flag::UV,
                    ..Case::default()
                },
                VerifyError::UserNotPresent,
            ),
        ];
        for (signer, case, want) in cases {
            assert_eq!(check(&signer, &allowed(&signer, 0), false, case), Err(want));
        }
    }

    #[test]
    fn absent_credential_only_with_one_allowed() {
        let s = p256();
        let c = || Case {
            cred: None,
            ..Case::default()
        };
        assert_eq!(
            check(&s, &allowed(&s, 0), false, c()),
            Err(VerifyError::CredentialMissing { allowed: 2 })
        );
        let one = &allowed(&s, 0)[1..];
        assert!(check(&s, one, false, c()).is_ok());
    }

    #[test]
    fn uv_required() {
        let s = p256();
        assert_eq!(
            check(&s, &allowed(&s, 0), true, Case::default()),
            Err(VerifyError::UserNotVerified)
        );
        let c = Case {
            flags: flag::UP | flag::UV,
            ..Case::default()
        };
        assert!(check(&s, &allowed(&s, 0), true, c).is_ok());
    }

    #[test]
    fn bad_signature() {
        for s in [p256(), ed()] {
            // Signed over another client data hash.
            let c = Case {
                cdh: [0; 32],
                ..Case::default()
            };
            assert_eq!(
                check(&s, &allowed(&s, 0), false, c),
                Err(VerifyError::Signature(SignatureError::Invalid))
            );
            // Changed authData after signing.
            let mut r = response(&s, Case::default());
            r.auth_data_raw[36] ^= 1;
            let allow = allowed(&s, 0);
            let e = expected(&allow, false);
            assert_eq!(
                verify_assertion(&e, &r),
                Err(VerifyError::Signature(SignatureError::Invalid))
            );
            // Flipped signature byte.
            let mut r = response(&s, Case::default());
            let n = r.signature.len();
            r.signature[n - 1] ^= 1;
            assert!(matches!(
                verify_assertion(&e, &r),
                Err(VerifyError::Signature(_))
            ));
        }
        // Signed by another key.
        let other = Signer::P256(p256::ecdsa::SigningKey::from_slice(&[8; 32]).unwrap());
        let s = p256();
        let r = response(&other, Case::default());
        let allow = allowed(&s, 0);
        let e = expected(&allow, false);
        assert_eq!(
            verify_assertion(&e, &r),
            Err(VerifyError::Signature(SignatureError::Invalid))
        );
    }

    #[test]
    fn counter_rules() {
        let s = p256();
        let at = |stored: u32, received: u32| {
            check(
                &s,
                &allowed(&s, stored),
                false,
                Case {
                    count: received,
                    ..Case::default()
                },
            )
        };
        // Both zero: the key keeps no counter.
        assert!(at(0, 0).is_ok());
        assert!(at(0, 1).is_ok());
        assert!(at(5, 6).is_ok());
        assert!(at(5, 1000).is_ok());
        assert_eq!(
            at(5, 5),
            Err(VerifyError::CounterNotIncreased {
                stored: 5,
                received: 5
            })
        );
        assert_eq!(
            at(5, 4),
            Err(VerifyError::CounterNotIncreased {
                stored: 5,
                received: 4
            })
        );
        assert_eq!(
            at(5, 0),
            Err(VerifyError::CounterNotIncreased {
                stored: 5,
                received: 0
            })
        );
        assert_eq!(
            at(u32::MAX, u32::MAX),
            Err(VerifyError::CounterNotIncreased {
                stored: u32::MAX,
                received: u32::MAX
            })
        );
    }
}
