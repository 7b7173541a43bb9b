//! Client data that binds one touch to one request (DESIGN.md "Binding a touch to a request").
//!
//! Like WebAuthn's clientDataJSON (WebAuthn §5.8.1), but ours: type `auths.presence.v1`, a
//! fresh random nonce, the identity key's fingerprint, SHA-256 of the bytes to be signed, the
//! SSHSIG namespace, the requesting peer and, for a batch grant, its N, T and scope. The key
//! signs `authData || SHA-256(clientData)`, so an assertion approves exactly what the prompt
//! showed: it cannot be replayed for other bytes, another key or another process. The exact
//! JSON bytes are kept in the receipt so `auths audit verify` can recompute the hash offline.

use serde::{Deserialize, Serialize};

use super::request::{ApprovalRequest, PayloadKind, Requester};

/// The `type` member of our client data.
pub const CLIENT_DATA_TYPE: &str = "auths.presence.v1";

/// A batch or per-peer grant that one touch approves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantTerms {
    /// Most signatures the grant covers (the first one included).
    pub max_signatures: u32,
    /// How long the grant lasts, in seconds.
    pub ttl_secs: u64,
    /// Who may use it: `process`, `parent`, `session` or `user`.
    pub scope: String,
}

/// The client data, as serialised into the bytes the key's signature covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientData {
    /// Always [`CLIENT_DATA_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// 32 fresh random bytes, hex.
    pub nonce: String,
    /// Fingerprint of the identity key to sign with, `SHA256:…`.
    pub key: String,
    /// SHA-256 of the bytes to be signed, hex.
    pub digest: String,
    /// SSHSIG namespace, when the bytes are an SSHSIG blob.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub namespace: Option<String>,
    /// What kind of bytes.
    #[serde(default)]
    pub payload: PayloadKind,
    /// Who asked.
    pub peer: Requester,
    /// Terms of the grant this touch opens, if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub grant: Option<GrantTerms>,
    /// Unix time the challenge was made.
    pub created: u64,
    /// The audit chain's head when the touch was asked for (hex SHA-256 of the log's last
    /// line): the key's signature commits to the whole log before it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub chain: Option<String>,
}

impl ClientData {
    /// Fresh client data for `request`, with a new random nonce.
    pub fn new(request: &ApprovalRequest, grant: Option<GrantTerms>, now_unix: u64) -> ClientData {
        let nonce: [u8; 32] = rand::random();
        ClientData {
            kind: CLIENT_DATA_TYPE.to_owned(),
            nonce: hex::encode(nonce),
            key: request.key_fingerprint.clone(),
            digest: hex::encode(request.data_digest),
            namespace: request.namespace.clone(),
            payload: request.kind,
            peer: request.requester.clone(),
            grant,
            created: now_unix,
            chain: None,
        }
    }

    /// The same client data, committing to the audit chain's head `head` (hex).
    pub fn chained(mut self, head: String) -> ClientData {
        self.chain = Some(head);
        self
    }

    /// The exact bytes whose hash the key signs. Serialisation is deterministic (fixed member
    /// order), but receipts keep these bytes anyway and never re-serialise.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parse client data from a receipt, checking its type.
    pub fn parse(json: &str) -> Result<ClientData, BindingError> {
        let cd: ClientData =
            serde_json::from_str(json).map_err(|e| BindingError::NotOurs(e.to_string()))?;
        if cd.kind != CLIENT_DATA_TYPE {
            return Err(BindingError::NotOurs(format!(
                "type {:?} is not {CLIENT_DATA_TYPE}",
                cd.kind
            )));
        }
        Ok(cd)
    }

    /// Check that this client data approves exactly `request`: the same identity key, bytes,
    /// SSHSIG namespace and requester. The gate checks the touch it just verified, the audit
    /// verifier each receipt; both through here.
    pub fn check_binds(&self, request: &ApprovalRequest) -> Result<(), BindingError> {
        if self.key != request.key_fingerprint || self.digest != hex::encode(request.data_digest) {
            return Err(BindingError::OtherBytes);
        }
        if self.namespace != request.namespace || self.payload != request.kind {
            return Err(BindingError::OtherNamespace);
        }
        if self.peer != request.requester {
            return Err(BindingError::OtherRequester);
        }
        Ok(())
    }
}

/// Why client data does not approve a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BindingError {
    /// The client data does not parse, or is not ours.
    #[error("the client data is not auths presence client data: {0}")]
    NotOurs(String),
    /// Another identity key or other bytes.
    #[error("the touch approved other bytes or another key")]
    OtherBytes,
    /// Another SSHSIG namespace, or another kind of data.
    #[error("the touch approved another SSHSIG namespace or kind of data")]
    OtherNamespace,
    /// Another requesting process.
    #[error("the touch approved another requester")]
    OtherRequester,
}

/// The `type` of the client data `auths token test` has a key sign: not [`CLIENT_DATA_TYPE`],
/// so a test touch never parses as an approval.
pub const SELF_TEST_TYPE: &str = "auths.presence.test";

/// Fresh client data for a self-test touch: its type, a random nonce and the time; it names
/// no identity key and no bytes, so it approves nothing.
pub fn self_test_client_data(now_unix: u64) -> String {
    serde_json::json!({
        "type": SELF_TEST_TYPE,
        "nonce": hex::encode(rand::random::<[u8; 32]>()),
        "created": now_unix,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctap::backend::client_data_hash;

    fn req(digest: u8) -> ApprovalRequest {
        ApprovalRequest {
            key_fingerprint: "SHA256:abc".into(),
            data_digest: [digest; 32],
            namespace: Some("git".into()),
            requester: Requester::process(1000, 4242, "/usr/bin/ssh-keygen"),
            kind: PayloadKind::Sshsig,
            confirm_each: false,
            login: None,
            forwarded: false,
            key_comment: None,
            rule: None,
            unseal: None,
        }
    }

    #[test]
    fn binds_key_digest_and_is_fresh() {
        let a = ClientData::new(&req(1), None, 10);
        let b = ClientData::new(&req(1), None, 10);
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(
            client_data_hash(a.to_json().as_bytes()),
            client_data_hash(b.to_json().as_bytes())
        );
        assert_eq!(a.check_binds(&req(1)), Ok(()));
        assert_eq!(a.check_binds(&req(2)), Err(BindingError::OtherBytes));
        let other_key = ApprovalRequest {
            key_fingerprint: "SHA256:other".into(),
            ..req(1)
        };
        assert_eq!(a.check_binds(&other_key), Err(BindingError::OtherBytes));
        let other_ns = ApprovalRequest {
            namespace: Some("file".into()),
            ..req(1)
        };
        assert_eq!(a.check_binds(&other_ns), Err(BindingError::OtherNamespace));
        let mut other_peer = req(1);
        other_peer.requester.pid = Some(1);
        assert_eq!(
            a.check_binds(&other_peer),
            Err(BindingError::OtherRequester)
        );
        let back = ClientData::parse(&a.to_json()).unwrap();
        assert_eq!(back, a);
        assert_eq!(back.to_json(), a.to_json(), "deterministic");
        assert!(
            ClientData::parse(&a.to_json().replace("auths.presence.v1", "webauthn.get")).is_err()
        );
        assert!(matches!(
            ClientData::parse(&self_test_client_data(10)),
            Err(BindingError::NotOurs(_))
        ));
    }
}
