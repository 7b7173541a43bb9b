//! One method per request type (draft-miller-ssh-agent; section titles are cited because the
//! numbering moves between drafts):
//! "Requesting a list of keys" ([`Handler::identities`]), "Private key operations"
//! ([`Handler::sign`]: the gate approves first), "Adding keys to the agent" ([`Handler::add`],
//! [`Handler::add_constrained`]: the lifetime constraint is honoured, the confirm constraint is
//! implied by the gate), "Removing keys from the agent" ([`Handler::remove`],
//! [`Handler::remove_all`]), "Locking and unlocking an agent" ([`Handler::lock`],
//! [`Handler::unlock`]), "Extension mechanism" ([`Handler::extension`]: `query`,
//! draft-14 §3.8.1, and [`WIPE_EXTENSION`]). Anything else gets `SSH_AGENT_FAILURE`.
//!
//! Every failure answered with `SSH_AGENT_FAILURE` is logged by [`failure`]; the connection
//! stays open (ssh-agent-lib's habit), so one bad request costs the client one answer.
//!
//! The key store's mutex is never held across the gate's await, so requests that need no touch
//! are never queued behind a pending one.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use ssh_agent_lib::proto::extension::QueryResponse;
use ssh_agent_lib::proto::{
    AddIdentity, AddIdentityConstrained, Extension, Identity, KeyConstraint, PrivateCredential,
    PublicCredential, RemoveIdentity, Request, Response, SignRequest,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use zeroize::Zeroizing;

use super::codec::{decode_request, sshsig_namespace, SUPPORTED_EXTENSIONS, WIPE_EXTENSION};
use super::connection::{Connection, Watched};
use super::log::{failure_line, RequestKind};
use super::server::AgentState;
use super::AgentError;
use crate::presence::request::{ApprovalRequest, Requester};

/// Added to the answer to a wrong unlock passphrase, per consecutive failure (at most 10 s).
const UNLOCK_FAILURE_DELAY: Duration = Duration::from_millis(100);

/// What a request leads to.
pub(crate) enum Outcome {
    /// Answer this and read the next request.
    Reply(Response),
    /// The client hung up while its signature waited for the gate; nothing was signed.
    HungUp,
    /// The agent is shutting down.
    Shutdown,
}

/// Log a request answered with `SSH_AGENT_FAILURE`: the request kind, the peer and the error
/// with its sources, on one escaped line.
pub fn failure(state: &AgentState, kind: &RequestKind, peer: &Requester, error: &AgentError) {
    state.log().record(&failure_line(kind, peer, error));
}

/// The requests of one connection's peer.
pub(crate) struct Handler<'a> {
    state: &'a Arc<AgentState>,
    peer: &'a Requester,
}

impl<'a> Handler<'a> {
    pub(crate) fn new(state: &'a Arc<AgentState>, peer: &'a Requester) -> Self {
        Handler { state, peer }
    }

    /// Decode `body` and answer it; a failure is logged and answered `SSH_AGENT_FAILURE`.
    pub(crate) async fn dispatch<S: AsyncRead + AsyncWrite + Unpin + Send>(
        &self,
        body: &[u8],
        conn: &mut Connection<S>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Outcome {
        let request = match decode_request(body) {
            Ok(r) => r,
            Err(e) => return self.refuse(&RequestKind::Undecodable, &e.into()),
        };
        let (kind, result) = match request {
            Request::RequestIdentities => (RequestKind::Identities, self.identities()),
            Request::SignRequest(r) => (RequestKind::Sign, self.sign(r, conn, shutdown).await),
            Request::AddIdentity(a) => (RequestKind::Add, self.add(a)),
            Request::AddIdConstrained(a) => (RequestKind::Add, self.add_constrained(a)),
            Request::RemoveIdentity(r) => (RequestKind::Remove, self.remove(r)),
            Request::RemoveAllIdentities => (RequestKind::Remove, self.remove_all()),
            Request::Lock(p) => (RequestKind::Lock, self.lock(Zeroizing::new(p)).await),
            Request::Unlock(p) => (RequestKind::Unlock, self.unlock(p.into(), shutdown).await),
            Request::Extension(e) => (RequestKind::Extension(e.name.clone()), self.extension(&e)),
            _ => (
                RequestKind::Unsupported,
                Err(AgentError::Unsupported("smartcard keys")),
            ),
        };
        result.unwrap_or_else(|e| self.refuse(&kind, &e))
    }

    fn refuse(&self, kind: &RequestKind, error: &AgentError) -> Outcome {
        failure(self.state, kind, self.peer, error);
        Outcome::Reply(Response::Failure)
    }

    /// `SSH_AGENTC_REQUEST_IDENTITIES`: the plain keys held (none while locked).
    pub(crate) fn identities(&self) -> Result<Outcome, AgentError> {
        let now = self.state.now();
        let ids = self
            .state
            .with_keys(|k| k.identities(now))
            .into_iter()
            .map(|id| Identity {
                credential: PublicCredential::Key(id.key_data),
                comment: id.comment,
            })
            .collect();
        Ok(Outcome::Reply(Response::IdentitiesAnswer(ids)))
    }

    /// `SSH_AGENTC_SIGN_REQUEST`: look up the key, ask the gate while watching for a hang-up,
    /// sign under the approval, and hand out the signature only once its receipt is written.
    pub(crate) async fn sign<S: AsyncRead + AsyncWrite + Unpin + Send>(
        &self,
        req: SignRequest,
        conn: &mut Connection<S>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Outcome, AgentError> {
        let state = self.state;
        // We hold plain keys only; a certificate names a key we may hold, but we do not store
        // certificates, so asking by certificate fails like an unknown key.
        let PublicCredential::Key(key) = req.credential else {
            return Err(AgentError::Unsupported("signing by certificate"));
        };
        let now = state.now();
        let fingerprint = state.with_keys(|k| k.lookup(&key, now))?;
        let request = ApprovalRequest {
            key_fingerprint: fingerprint,
            data_digest: Sha256::digest(&req.data).into(),
            namespace: sshsig_namespace(&req.data),
            requester: self.peer.clone(),
        };
        // Dropping the approve future (hang-up, shutdown) cancels the touch.
        let approval = match conn
            .watch_hang_up(state.gate().approve(request), shutdown)
            .await
        {
            Watched::Done(r) => r.map_err(AgentError::NotApproved)?,
            Watched::HungUp => return Ok(Outcome::HungUp),
            Watched::Shutdown => return Ok(Outcome::Shutdown),
        };
        let signing = state.keys().sign(&key, &req.data, approval, state.now());
        let result = match signing.result {
            // No receipt, no signature: it leaves the agent only once its receipt is durable.
            Ok(signature) => match signing.approval.signed() {
                Ok(()) => Ok(Outcome::Reply(Response::SignResponse(signature))),
                Err(e) => Err(AgentError::Receipt(e)),
            },
            Err(e) => {
                let _ = signing.approval.not_signed(&e.to_string());
                Err(e)
            }
        };
        // After the settle: a touch's settle may open a grant, which must not outlive a wipe.
        if let Some(reason) = signing.wiped {
            state.keys_wiped(reason);
        }
        result
    }

    /// `SSH_AGENTC_ADD_IDENTITY`.
    pub(crate) fn add(&self, add: AddIdentity) -> Result<Outcome, AgentError> {
        self.add_with(add.credential, Vec::new())
    }

    /// `SSH_AGENTC_ADD_ID_CONSTRAINED`: lifetime honoured, confirm implied by the gate.
    pub(crate) fn add_constrained(
        &self,
        add: AddIdentityConstrained,
    ) -> Result<Outcome, AgentError> {
        self.add_with(add.identity.credential, add.constraints)
    }

    fn add_with(
        &self,
        credential: PrivateCredential,
        constraints: Vec<KeyConstraint>,
    ) -> Result<Outcome, AgentError> {
        let PrivateCredential::Key { privkey, comment } = credential else {
            return Err(AgentError::Unsupported("certificates cannot be added"));
        };
        let mut lifetime = None;
        for c in constraints {
            match c {
                KeyConstraint::Lifetime(secs) => lifetime = Some(Duration::from_secs(secs.into())),
                // Every signature needs a touch: the gate is a stronger confirmation.
                KeyConstraint::Confirm => {}
                KeyConstraint::Extension(_) => {
                    return Err(AgentError::Unsupported("key constraint extensions"))
                }
            }
        }
        let now = self.state.now();
        self.state
            .with_keys(|k| k.add(privkey, comment, lifetime, now))?;
        Ok(Outcome::Reply(Response::Success))
    }

    /// `SSH_AGENTC_REMOVE_IDENTITY`.
    pub(crate) fn remove(&self, rm: RemoveIdentity) -> Result<Outcome, AgentError> {
        let PublicCredential::Key(key) = rm.credential else {
            return Err(AgentError::Unsupported("removing by certificate"));
        };
        let now = self.state.now();
        self.state.with_keys(|k| k.remove(&key, now))?;
        Ok(Outcome::Reply(Response::Success))
    }

    /// `SSH_AGENTC_REMOVE_ALL_IDENTITIES` (`ssh-add -D`): wipes the keys and ends the grants.
    pub(crate) fn remove_all(&self) -> Result<Outcome, AgentError> {
        let now = self.state.now();
        self.state.with_keys(|k| k.remove_all(now))?;
        Ok(Outcome::Reply(Response::Success))
    }

    /// `SSH_AGENTC_LOCK` (`ssh-add -x`): seal the keys under the passphrase; grants end.
    pub(crate) async fn lock(&self, pass: Zeroizing<String>) -> Result<Outcome, AgentError> {
        let now = self.state.now();
        let st = Arc::clone(self.state);
        // Argon2id takes a while: keep it off the async workers.
        tokio::task::spawn_blocking(move || st.with_keys(|k| k.lock(&pass, now)))
            .await
            .map_err(AgentError::KeyWorker)??;
        Ok(Outcome::Reply(Response::Success))
    }

    /// `SSH_AGENTC_UNLOCK` (`ssh-add -X`). One attempt at a time, agent-wide, and each wrong
    /// passphrase delays the next answer a little more (as OpenSSH does): guessing stays slow
    /// even over many connections. Other requests do not wait for this.
    pub(crate) async fn unlock(
        &self,
        pass: Zeroizing<String>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Outcome, AgentError> {
        let now = self.state.now();
        let mut failures = self.state.unlock_failures().lock().await;
        let st = Arc::clone(self.state);
        let r = tokio::task::spawn_blocking(move || st.with_keys(|k| k.unlock(&pass, now)))
            .await
            .map_err(AgentError::KeyWorker)?;
        match r {
            Ok(()) => {
                *failures = 0;
                Ok(Outcome::Reply(Response::Success))
            }
            Err(AgentError::BadPassphrase) => {
                *failures = failures.saturating_add(1);
                let delay = UNLOCK_FAILURE_DELAY * (*failures).min(100);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => return Ok(Outcome::Shutdown),
                }
                Err(AgentError::BadPassphrase)
            }
            Err(e) => Err(e),
        }
    }

    /// `SSH_AGENTC_EXTENSION`: `query` lists what we support; [`WIPE_EXTENSION`] wipes every
    /// key (`auths agent lock`); anything else is unsupported ("Extension mechanism").
    pub(crate) fn extension(&self, ext: &Extension) -> Result<Outcome, AgentError> {
        match ext.name.as_str() {
            "query" => {
                let list = QueryResponse {
                    extensions: SUPPORTED_EXTENSIONS.iter().map(|s| s.to_string()).collect(),
                };
                let e = Extension::new_message(list).map_err(AgentError::Encode)?;
                Ok(Outcome::Reply(Response::ExtensionResponse(e)))
            }
            WIPE_EXTENSION => {
                self.state.wipe_keys();
                Ok(Outcome::Reply(Response::Success))
            }
            _ => Err(AgentError::Unsupported("unknown extension")),
        }
    }
}
