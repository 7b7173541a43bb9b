//! One method per request type (draft-miller-ssh-agent; section titles are cited because the
//! numbering moves between drafts):
//! "Requesting a list of keys" (`Handler::identities`: keys, then their OpenSSH certificates),
//! "Private key operations"
//! (`Handler::sign`: the gate approves first), "Adding keys to the agent" (`Handler::add`,
//! `Handler::add_constrained`: the lifetime constraint is honoured, the confirm constraint is
//! implied by the gate), "Removing keys from the agent" (`Handler::remove`,
//! `Handler::remove_all`), "Locking and unlocking an agent" (`Handler::lock`,
//! `Handler::unlock`), "Extension mechanism" (`Handler::extension`: `query`,
//! draft-14 §3.8.1, and [`WIPE_EXTENSION`]; `Handler::session_bind`:
//! [`SESSION_BIND_EXTENSION`], OpenSSH `PROTOCOL.agent` §1, whose bindings the handler keeps for
//! its connection and checks every login against, see [`super::userauth`]). Anything else gets
//! `SSH_AGENT_FAILURE`.
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
use ssh_key::public::KeyData;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use zeroize::Zeroizing;

use super::codec::{
    decode_request, payload_kind, sshsig_namespace, SUPPORTED_EXTENSIONS, WIPE_EXTENSION,
};
use super::connection::{Connection, Watched};
use super::keys::keypair_for_certificate;
use super::log::{failure_line, RequestKind};
use super::refusals::{sign_refusal_reason, RefusalAnswer, REFUSAL_EXTENSION};
use super::server::AgentState;
use super::status::{AgentStatus, STATUS_EXTENSION};
use super::userauth::{
    parse_session_bind, parse_userauth, Bindings, LoginError, Userauth, SESSION_BIND_EXTENSION,
};
use super::AgentError;
use crate::presence::request::{ApprovalRequest, LoginDetails, PayloadKind, Requester};

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

/// The requests of one connection's peer, and what the connection was bound to.
pub(crate) struct Handler<'a> {
    state: &'a Arc<AgentState>,
    peer: &'a Requester,
    /// `session-bind@openssh.com` bindings: they last as long as the connection.
    bindings: Bindings,
}

impl<'a> Handler<'a> {
    pub(crate) fn new(state: &'a Arc<AgentState>, peer: &'a Requester) -> Self {
        Handler {
            state,
            peer,
            bindings: Bindings::new(),
        }
    }

    /// Decode `body` and answer it; a failure is logged and answered `SSH_AGENT_FAILURE`
    /// (`SSH_AGENT_EXTENSION_FAILURE` for a refused session bind, as OpenSSH answers).
    pub(crate) async fn dispatch<S: AsyncRead + AsyncWrite + Unpin + Send>(
        &mut self,
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
            Request::Extension(e) if e.name == SESSION_BIND_EXTENSION => {
                let kind = RequestKind::Extension(e.name.clone());
                return self.session_bind(e.details.as_ref()).unwrap_or_else(|e| {
                    failure(self.state, &kind, self.peer, &e);
                    Outcome::Reply(Response::ExtensionFailure)
                });
            }
            Request::Extension(e) if e.name == super::add_file::ADD_FILE_EXTENSION => {
                (RequestKind::Add, self.add_file(&e).await)
            }
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

    /// `SSH_AGENTC_REQUEST_IDENTITIES`: the keys held, then their certificates (none while
    /// locked).
    pub(crate) fn identities(&self) -> Result<Outcome, AgentError> {
        let now = self.state.now();
        let (keys, certs) = self
            .state
            .with_keys(|k| (k.identities(now), k.certificates(now)));
        let ids = keys
            .into_iter()
            .map(|id| Identity {
                credential: PublicCredential::Key(id.key_data),
                comment: id.comment,
            })
            .chain(certs.into_iter().map(|c| Identity {
                credential: PublicCredential::Cert(Box::new(c.certificate)),
                comment: c.comment,
            }))
            .collect();
        Ok(Outcome::Reply(Response::IdentitiesAnswer(ids)))
    }

    /// `SSH_AGENTC_SIGN_REQUEST`: look up the key, ask the gate while watching for a hang-up,
    /// sign under the approval, and hand out the signature only once its receipt is written.
    /// A refusal is recorded for the peer ([`super::refusals`]), so `auths git sign` can say
    /// why.
    pub(crate) async fn sign<S: AsyncRead + AsyncWrite + Unpin + Send>(
        &self,
        req: SignRequest,
        conn: &mut Connection<S>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Outcome, AgentError> {
        let mut asked = None;
        let result = self.sign_gated(req, conn, shutdown, &mut asked).await;
        if let Err(e) = &result {
            let reason = sign_refusal_reason(e, asked.as_ref(), self.peer);
            self.state
                .refusals()
                .record(self.peer, &reason, self.state.now());
        }
        result
    }

    /// [`Self::sign`]; what the gate was asked goes to `asked`.
    async fn sign_gated<S: AsyncRead + AsyncWrite + Unpin + Send>(
        &self,
        req: SignRequest,
        conn: &mut Connection<S>,
        shutdown: &mut watch::Receiver<bool>,
        asked: &mut Option<ApprovalRequest>,
    ) -> Result<Outcome, AgentError> {
        let state = self.state;
        let now = state.now();
        // A certificate signs with the key it certifies, when the agent holds that certificate
        // (not merely its key): the gate, prompt and receipt name the key.
        let (key, held) = match req.credential {
            PublicCredential::Key(key) => {
                let held = state.with_keys(|k| k.lookup(&key, now))?;
                (key, held)
            }
            PublicCredential::Cert(cert) => {
                let held = state.with_keys(|k| k.lookup_certificate(&cert, now))?;
                (cert.public_key().clone(), held)
            }
        };
        // For caller rules that name a key by its comment.
        let key_comment = state
            .with_keys(|k| k.identities(now))
            .into_iter()
            .find(|id| id.key_data == key)
            .map(|id| id.comment);
        // An RSA signature over SHA-1 is refused before any touch is asked for.
        if matches!(key, ssh_key::public::KeyData::Rsa(_)) {
            crate::agent::keys::rsa_hash(req.flags)?;
        }
        let (kind, login) = match parse_userauth(&req.data) {
            Ok(login) => (PayloadKind::Userauth, Some(self.login(&login, &key)?)),
            Err(_) => (payload_kind(&req.data), None),
        };
        // Another host sent it: the process that relays it (the local ssh) may hold a grant its
        // own login opened, and that grant must not serve the far end.
        let forwarded = self.bindings.forwarding();
        let request = ApprovalRequest {
            key_fingerprint: held.fingerprint,
            data_digest: Sha256::digest(&req.data).into(),
            namespace: sshsig_namespace(&req.data),
            requester: self.peer.clone(),
            kind,
            confirm_each: held.confirm || forwarded,
            login,
            forwarded,
            key_comment,
            rule: None,
            unseal: held.unseal,
        };
        *asked = Some(request.clone());
        // Dropping the approve future (hang-up, shutdown) cancels the touch.
        let sealed = request.unseal.is_some();
        let mut approval = match conn
            .watch_hang_up(state.gate().approve(request), shutdown)
            .await
        {
            Watched::Done(r) => r.map_err(AgentError::NotApproved)?,
            Watched::HungUp => return Ok(Outcome::HungUp),
            Watched::Shutdown => return Ok(Outcome::Shutdown),
        };
        // A sealed key opens with the approving touch's hmac-secret output (the same touch:
        // one getAssertion carried both). Without it, or when it does not open the file,
        // nothing is signed and the receipt says why.
        if sealed {
            let opened = match approval.take_secret() {
                Some(secret) => state.with_keys(|k| k.unseal(&key, &secret, state.now())),
                None => Err(AgentError::NoSuchKey),
            };
            if let Err(e) = opened {
                let _ = approval.not_signed(&crate::presence::error_chain(&e));
                return Err(e);
            }
        }
        // The store is held only to check the approval and count the signature; the private
        // key operation runs after, so connections sign on several cores at once.
        let prepared = state
            .keys()
            .prepare_sign(&key, &req.data, &approval, state.now());
        let signing = crate::agent::keys::finish_sign(prepared, &req.data, req.flags, approval);
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

    /// What the prompt shows for `login`, signed by `key`; refused when it offers another
    /// key, or does not fit the connection's bindings ([`Bindings::login`]).
    fn login(&self, login: &Userauth, key: &KeyData) -> Result<LoginDetails, AgentError> {
        if !login.offers(key) {
            return Err(AgentError::Login(LoginError::OtherKey));
        }
        self.bindings.login(login).map_err(AgentError::Login)
    }

    /// `session-bind@openssh.com` (OpenSSH `PROTOCOL.agent` §1): verify the host key's
    /// signature over the session identifier and record the binding on this connection. Served
    /// while the agent is locked too, as OpenSSH does: a binding holds no key.
    pub(crate) fn session_bind(&mut self, details: &[u8]) -> Result<Outcome, AgentError> {
        let bind = parse_session_bind(details).map_err(AgentError::SessionBind)?;
        self.bindings.bind(bind).map_err(AgentError::SessionBind)?;
        Ok(Outcome::Reply(Response::Success))
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
        let mut lifetime = None;
        let mut confirm = false;
        for c in constraints {
            match c {
                KeyConstraint::Lifetime(secs) => lifetime = Some(Duration::from_secs(secs.into())),
                // Confirm each use: every signature needs its own touch, no grant covers it.
                KeyConstraint::Confirm => confirm = true,
                KeyConstraint::Extension(_) => {
                    return Err(AgentError::Unsupported("key constraint extensions"))
                }
            }
        }
        let now = self.state.now();
        self.state.with_keys(|k| {
            let fingerprint = match credential {
                PrivateCredential::Key { privkey, comment } => {
                    k.add(privkey, comment, lifetime, now)?
                }
                PrivateCredential::Cert {
                    certificate,
                    privkey,
                    comment,
                    ..
                } => {
                    let keypair = keypair_for_certificate(&certificate, privkey)?;
                    if certificate.valid_before_time() <= std::time::SystemTime::now() {
                        // Kept and listed: the server decides what an expired one is worth.
                        self.state.log().record(&format!(
                            "auths agent: the certificate {} added by {} has expired",
                            crate::presence::prompt::escape_control(certificate.key_id()),
                            crate::presence::prompt::describe_peer(self.peer)
                        ));
                    }
                    k.add_certificate(*certificate, keypair, comment, lifetime, now)?
                }
            };
            if confirm {
                k.set_confirm(&fingerprint);
            }
            Ok::<_, AgentError>(())
        })?;
        Ok(Outcome::Reply(Response::Success))
    }

    /// `SSH_AGENTC_REMOVE_IDENTITY`.
    pub(crate) fn remove(&self, rm: RemoveIdentity) -> Result<Outcome, AgentError> {
        let now = self.state.now();
        match rm.credential {
            PublicCredential::Key(key) => self.state.with_keys(|k| k.remove(&key, now))?,
            PublicCredential::Cert(cert) => {
                self.state.with_keys(|k| k.remove_certificate(&cert, now))?
            }
        }
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

    /// `add-file@auths-presence` ([`super::add_file`]): read the key file the request names,
    /// asking an encrypted key's passphrase through the gate's own program, and add it (a
    /// sealed file is listed, to be opened by a touch). The answer says what happened; no key
    /// byte crosses the socket either way.
    pub(crate) async fn add_file(&self, ext: &Extension) -> Result<Outcome, AgentError> {
        use super::add_file::{AddFile, AddFileAnswer};
        let request = ext
            .parse_message::<AddFile>()
            .ok()
            .flatten()
            .ok_or(AgentError::Unsupported("a malformed add-file request"))?;
        let answer = match self.load_file(&request).await {
            Ok(a) => a,
            Err(e) => AddFileAnswer {
                message: crate::presence::prompt::escape_control(&crate::presence::error_chain(&e)),
                ..AddFileAnswer::default()
            },
        };
        self.state.log().record(&format!(
            "auths agent: add-file from {}: {}",
            crate::presence::prompt::describe_peer(self.peer),
            answer.message
        ));
        let e = Extension::new_message(answer).map_err(AgentError::Encode)?;
        Ok(Outcome::Reply(Response::ExtensionResponse(e)))
    }

    async fn load_file(
        &self,
        request: &super::add_file::AddFile,
    ) -> Result<super::add_file::AddFileAnswer, AgentError> {
        use super::add_file::{self, AddFileAnswer, KeyFile};
        let path = add_file::checked_path(&request.path)?;
        let shown = crate::presence::prompt::escape_control(&path.display().to_string());
        let gate = Arc::clone(self.state.gate());
        let source = path.clone();
        let read = tokio::task::spawn_blocking(move || {
            add_file::read_key_file(&path, |prompt| gate.passphrase(prompt))
        })
        .await
        .map_err(AgentError::KeyWorker)??;
        let now = self.state.now();
        match read {
            KeyFile::Sealed(sealed) => {
                let id = sealed.id.clone();
                let fingerprint = self
                    .state
                    .with_keys(|k| k.load_sealed(sealed, Some(source)))?;
                Ok(AddFileAnswer {
                    added: true,
                    sealed: true,
                    message: format!(
                        "listed sealed key {id} ({fingerprint}) from {shown}; it opens with the touch that approves its first signature"
                    ),
                    fingerprint,
                })
            }
            KeyFile::Plain(key) => {
                let lifetime = add_file::lifetime(request);
                let fingerprint = self.state.with_keys(|k| {
                    k.add(
                        key.key_data().clone(),
                        key.comment().to_owned(),
                        lifetime,
                        now,
                    )
                })?;
                Ok(AddFileAnswer {
                    added: true,
                    sealed: false,
                    message: format!("added {fingerprint} from {shown}"),
                    fingerprint,
                })
            }
        }
    }

    /// `SSH_AGENTC_EXTENSION`: `query` lists what we support; [`WIPE_EXTENSION`] wipes every
    /// key (`auths agent lock`); [`STATUS_EXTENSION`] says whether the socket was replaced
    /// (`auths agent status`); anything else is unsupported ("Extension mechanism").
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
            STATUS_EXTENSION => {
                let (sealed, sealed_open) =
                    self.state.with_keys(|k| k.sealed_counts(self.state.now()));
                let status = AgentStatus {
                    socket_replaced: self.state.socket_replaced().map(str::to_owned),
                    sealed,
                    sealed_open,
                };
                let e = Extension::new_message(status).map_err(AgentError::Encode)?;
                Ok(Outcome::Reply(Response::ExtensionResponse(e)))
            }
            super::rules::RULES_EXTENSION => {
                let holder = self.state.gate().rules();
                let answer = super::rules::rules_answer(holder.as_deref());
                let e = Extension::new_message(answer).map_err(AgentError::Encode)?;
                Ok(Outcome::Reply(Response::ExtensionResponse(e)))
            }
            super::rules::RELOAD_EXTENSION => {
                let holder = self.state.gate().rules();
                let answer = super::rules::reload(holder.as_deref());
                self.state.log().record(&format!(
                    "auths agent: caller rules reload asked by {}: {}",
                    crate::presence::prompt::describe_peer(self.peer),
                    answer.message
                ));
                let e = Extension::new_message(answer).map_err(AgentError::Encode)?;
                Ok(Outcome::Reply(Response::ExtensionResponse(e)))
            }
            REFUSAL_EXTENSION => {
                let answer = RefusalAnswer {
                    refusals: self.state.refusals().for_asker(self.peer, self.state.now()),
                };
                let e = Extension::new_message(answer).map_err(AgentError::Encode)?;
                Ok(Outcome::Reply(Response::ExtensionResponse(e)))
            }
            _ => Err(AgentError::Unsupported("unknown extension")),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use ssh_agent_lib::proto::{Identity, Unparsed};
    use ssh_key::private::KeypairData;
    use ssh_key::public::KeyData;
    use ssh_key::{Algorithm, PrivateKey};

    use super::*;
    use crate::agent::keys::{ManualClock, SealParams, UnlockPolicy};
    use crate::agent::log::EventLog;
    use crate::presence::gate::{ApproveFuture, Gate, GateError};

    /// A gate that refuses every approval (as tests/cases/agent_socket.rs's `NeverTouched`
    /// does), or keeps it pending forever, and counts what the agent tells it.
    #[derive(Default)]
    struct TestGate {
        pending: bool,
        asked: Mutex<Vec<ApprovalRequest>>,
        wiped: AtomicUsize,
        cancelled: Arc<AtomicUsize>,
    }

    struct OnDrop(Arc<AtomicUsize>);

    impl Drop for OnDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Gate for TestGate {
        fn approve(&self, request: ApprovalRequest) -> ApproveFuture<'_> {
            self.asked.lock().unwrap().push(request);
            if self.pending {
                let guard = OnDrop(Arc::clone(&self.cancelled));
                return Box::pin(async move {
                    let _guard = guard;
                    std::future::pending().await
                });
            }
            Box::pin(async { Err(GateError::TouchTimeout(Duration::from_secs(30))) })
        }

        fn keys_wiped(&self) {
            self.wiped.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[derive(Default)]
    struct Lines(Mutex<Vec<String>>);

    impl EventLog for Lines {
        fn record(&self, line: &str) {
            self.0.lock().unwrap().push(line.to_owned());
        }
    }

    struct Rig {
        state: Arc<AgentState>,
        gate: Arc<TestGate>,
        log: Arc<Lines>,
        clock: Arc<ManualClock>,
        peer: Requester,
    }

    impl Rig {
        fn new(gate: TestGate, policy: UnlockPolicy) -> Rig {
            let gate = Arc::new(gate);
            let log = Arc::new(Lines::default());
            let clock = Arc::new(ManualClock::new());
            let state = AgentState::new(policy, Arc::clone(&gate) as Arc<dyn Gate>)
                .with_clock(Arc::clone(&clock) as _)
                .with_log(Arc::clone(&log) as _)
                .with_seal_params(SealParams {
                    m_cost: 64,
                    t_cost: 1,
                    p_cost: 1,
                });
            Rig {
                state: Arc::new(state),
                gate,
                log,
                clock,
                peer: Requester::process(1000, 7, "/usr/bin/ssh-add"),
            }
        }

        fn handler(&self) -> Handler<'_> {
            Handler::new(&self.state, &self.peer)
        }

        fn wiped(&self) -> usize {
            self.gate.wiped.load(Ordering::SeqCst)
        }

        fn lines(&self) -> Vec<String> {
            self.log.0.lock().unwrap().clone()
        }

        /// Add a fresh Ed25519 key; its public half.
        fn add_key(&self, comment: &str) -> KeyData {
            let k = ed25519();
            let public = KeyData::try_from(&k).unwrap();
            let add = AddIdentity {
                credential: PrivateCredential::Key {
                    privkey: k,
                    comment: comment.into(),
                },
            };
            assert!(matches!(
                self.handler().add(add),
                Ok(Outcome::Reply(Response::Success))
            ));
            public
        }

        /// Dispatch `request` as bytes over a connection whose client stays connected.
        fn dispatch(&self, request: &Request) -> Response {
            use ssh_encoding::Encode;
            let mut body = Vec::new();
            request.encode(&mut body).unwrap();
            self.dispatch_bytes(&body)
        }

        fn dispatch_bytes(&self, body: &[u8]) -> Response {
            rt().block_on(async {
                let (a, _b) = tokio::io::duplex(1024);
                let mut conn = Connection::new(a, Duration::from_secs(5));
                let (_tx, mut shutdown) = watch::channel(false);
                match self
                    .handler()
                    .dispatch(body, &mut conn, &mut shutdown)
                    .await
                {
                    Outcome::Reply(r) => r,
                    Outcome::HungUp => panic!("hung up"),
                    Outcome::Shutdown => panic!("shut down"),
                }
            })
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    fn ed25519() -> KeypairData {
        PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519)
            .unwrap()
            .key_data()
            .clone()
    }

    fn sign_request(key: &KeyData, data: &[u8]) -> SignRequest {
        SignRequest {
            credential: PublicCredential::Key(key.clone()),
            data: data.to_vec(),
            flags: 0,
        }
    }

    fn ext(name: &str) -> Extension {
        Extension {
            name: name.into(),
            details: Unparsed::from(Vec::new()),
        }
    }

    #[test]
    fn identities_lists_what_was_added() {
        let rig = Rig::new(TestGate::default(), UnlockPolicy::default());
        let key = rig.add_key("laptop");
        let Ok(Outcome::Reply(Response::IdentitiesAnswer(ids))) = rig.handler().identities() else {
            panic!("no identities answer");
        };
        assert_eq!(
            ids,
            vec![Identity {
                credential: PublicCredential::Key(key),
                comment: "laptop".into(),
            }]
        );
    }

    #[test]
    fn add_refuses_constraint_extensions_and_honours_lifetime() {
        let rig = Rig::new(TestGate::default(), UnlockPolicy::default());
        let constrained = |constraints| AddIdentityConstrained {
            identity: AddIdentity {
                credential: PrivateCredential::Key {
                    privkey: ed25519(),
                    comment: String::new(),
                },
            },
            constraints,
        };
        let ext_constraint = KeyConstraint::Extension(ext("x@example.com"));
        assert!(matches!(
            rig.handler()
                .add_constrained(constrained(vec![ext_constraint])),
            Err(AgentError::Unsupported(_))
        ));
        assert!(matches!(
            rig.handler().add_constrained(constrained(vec![
                KeyConstraint::Lifetime(5),
                KeyConstraint::Confirm,
            ])),
            Ok(Outcome::Reply(Response::Success))
        ));
        assert_eq!(rig.state.keys().len(), 1);
        rig.clock.advance(Duration::from_secs(5));
        assert!(matches!(
            rig.handler().identities(),
            Ok(Outcome::Reply(Response::IdentitiesAnswer(ids))) if ids.is_empty()
        ));
    }

    #[test]
    fn a_refused_signature_is_told_to_the_requesters_parent_and_nobody_else() {
        use crate::agent::refusals::RefusalAnswer;
        let rig = Rig::new(TestGate::default(), UnlockPolicy::default());
        let key = rig.add_key("");
        let process = |pid, start, exe: &str, parent: Option<(u32, u64)>| Requester {
            start_time: Some(start),
            parent_pid: parent.map(|p| p.0),
            parent_start_time: parent.map(|p| p.1),
            parent_exe: parent.map(|_| "/usr/bin/git".to_owned()),
            ..Requester::process(1000, pid, exe)
        };
        let keygen = process(7, 70, "/usr/bin/ssh-keygen", Some((6, 60)));
        let outcome = rt().block_on(async {
            let (a, _b) = tokio::io::duplex(1024);
            let mut conn = Connection::new(a, Duration::from_secs(5));
            let (_tx, mut shutdown) = watch::channel(false);
            Handler::new(&rig.state, &keygen)
                .sign(sign_request(&key, b"x"), &mut conn, &mut shutdown)
                .await
        });
        assert!(matches!(outcome, Err(AgentError::NotApproved(_))));
        let ask = |asker: &Requester| {
            let Ok(Outcome::Reply(Response::ExtensionResponse(e))) =
                Handler::new(&rig.state, asker).extension(&ext(REFUSAL_EXTENSION))
            else {
                panic!("no extension response")
            };
            e.parse_message::<RefusalAnswer>()
                .unwrap()
                .unwrap()
                .refusals
        };
        let told = ask(&process(6, 60, "/usr/bin/git", None));
        assert_eq!(told.len(), 1);
        assert_eq!(told[0].pid, 7);
        assert!(
            told[0].reason.starts_with(
                "no touch within 30 s; the key blinked for ssh-keygen (pid 7) \u{2190} git (pid 6)"
            ),
            "{}",
            told[0].reason
        );
        // The same pid started at another time, and an unrelated process: nothing.
        assert!(ask(&process(6, 61, "/usr/bin/git", None)).is_empty());
        assert!(ask(&process(9, 90, "/usr/bin/cat", Some((1, 1)))).is_empty());
        // An unknown key is a refusal too, told the same way.
        let unknown = KeyData::try_from(&ed25519()).unwrap();
        let other = process(8, 80, "/usr/bin/ssh-keygen", Some((6, 60)));
        let _ = rt().block_on(async {
            let (a, _b) = tokio::io::duplex(1024);
            let mut conn = Connection::new(a, Duration::from_secs(5));
            let (_tx, mut shutdown) = watch::channel(false);
            Handler::new(&rig.state, &other)
                .sign(sign_request(&unknown, b"x"), &mut conn, &mut shutdown)
                .await
        });
        let told = ask(&process(6, 60, "/usr/bin/git", None));
        assert_eq!(told.len(), 2);
        assert_eq!(told[0].pid, 8, "newest first");
        assert!(
            told[0]
                .reason
                .starts_with("the agent does not hold this key; asked by ssh-keygen (pid 8)"),
            "{}",
            told[0].reason
        );
    }

    #[test]
    fn sign_of_an_unknown_key_fails_before_the_gate_is_asked() {
        let rig = Rig::new(TestGate::default(), UnlockPolicy::default());
        let unknown = KeyData::try_from(&ed25519()).unwrap();
        let response = rig.dispatch(&Request::SignRequest(sign_request(&unknown, b"x")));
        assert!(matches!(response, Response::Failure));
        assert!(rig.gate.asked.lock().unwrap().is_empty());
        let lines = rig.lines();
        assert_eq!(lines.len(), 1);
        assert_eq!(
            lines[0],
            "auths agent: sign request from ssh-add (pid 7) failed: the agent does not hold this key"
        );
    }

    #[test]
    fn sign_asks_the_gate_for_exactly_this_request_and_a_refusal_signs_nothing() {
        let rig = Rig::new(TestGate::default(), UnlockPolicy::default());
        let key = rig.add_key("");
        let mut blob = b"SSHSIG".to_vec();
        blob.extend_from_slice(&3u32.to_be_bytes());
        blob.extend_from_slice(b"git");
        let response = rig.dispatch(&Request::SignRequest(sign_request(&key, &blob)));
        assert!(matches!(response, Response::Failure));
        let asked = rig.gate.asked.lock().unwrap().clone();
        assert_eq!(asked.len(), 1);
        assert_eq!(
            asked[0].key_fingerprint,
            crate::agent::keys::fingerprint(&key)
        );
        assert_eq!(
            asked[0].data_digest,
            <[u8; 32]>::from(Sha256::digest(&blob))
        );
        assert_eq!(asked[0].namespace.as_deref(), Some("git"));
        assert_eq!(asked[0].requester, rig.peer);
        let lines = rig.lines();
        assert!(
            lines[0].ends_with("failed: the signature was not approved: no touch within 30s: the request was cancelled"),
            "{lines:?}"
        );
        // The key is still there for the next request.
        assert_eq!(rig.state.keys().len(), 1);
    }

    #[test]
    fn hang_up_during_approval_drops_the_gate_future() {
        let gate = TestGate {
            pending: true,
            ..TestGate::default()
        };
        let rig = Rig::new(gate, UnlockPolicy::default());
        let key = rig.add_key("");
        let outcome = rt().block_on(async {
            let (a, b) = tokio::io::duplex(1024);
            let mut conn = Connection::new(a, Duration::from_secs(5));
            let (_tx, mut shutdown) = watch::channel(false);
            drop(b);
            rig.handler()
                .sign(sign_request(&key, b"x"), &mut conn, &mut shutdown)
                .await
        });
        assert!(matches!(outcome, Ok(Outcome::HungUp)));
        assert_eq!(rig.gate.cancelled.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn remove_then_remove_again_fails() {
        let rig = Rig::new(TestGate::default(), UnlockPolicy::default());
        let key = rig.add_key("");
        let rm = || RemoveIdentity {
            credential: PublicCredential::Key(key.clone()),
        };
        assert!(matches!(
            rig.handler().remove(rm()),
            Ok(Outcome::Reply(Response::Success))
        ));
        assert!(matches!(
            rig.handler().remove(rm()),
            Err(AgentError::NoSuchKey)
        ));
        assert_eq!(rig.wiped(), 0, "removing one key ends no grant");
    }

    #[test]
    fn remove_all_wipes_and_ends_grants() {
        let rig = Rig::new(TestGate::default(), UnlockPolicy::default());
        rig.add_key("a");
        rig.add_key("b");
        assert!(matches!(
            rig.dispatch(&Request::RemoveAllIdentities),
            Response::Success
        ));
        assert!(rig.state.keys().is_empty());
        assert_eq!(rig.wiped(), 1);
    }

    #[test]
    fn lock_seals_ends_grants_and_unlock_needs_the_passphrase() {
        let rig = Rig::new(TestGate::default(), UnlockPolicy::default());
        let key = rig.add_key("");
        assert!(matches!(
            rig.dispatch(&Request::Lock("pw".into())),
            Response::Success
        ));
        assert!(rig.state.keys().is_locked());
        assert_eq!(rig.wiped(), 1);
        // Locked: a second lock and a signature fail, and nothing asks the gate.
        assert!(matches!(
            rig.dispatch(&Request::Lock("pw".into())),
            Response::Failure
        ));
        assert!(matches!(
            rig.dispatch(&Request::SignRequest(sign_request(&key, b"x"))),
            Response::Failure
        ));
        assert!(rig.gate.asked.lock().unwrap().is_empty());
        assert!(matches!(
            rig.dispatch(&Request::Unlock("wrong".into())),
            Response::Failure
        ));
        assert!(rig.state.keys().is_locked());
        assert!(matches!(
            rig.dispatch(&Request::Unlock("pw".into())),
            Response::Success
        ));
        assert_eq!(rig.state.keys().len(), 1);
        let lines = rig.lines();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines[0].starts_with("auths agent: lock request"),
            "{lines:?}"
        );
        assert!(
            lines[1].starts_with("auths agent: sign request"),
            "{lines:?}"
        );
        assert!(
            lines[2].contains("unlock request")
                && lines[2].ends_with("wrong passphrase; the agent stays locked"),
            "{lines:?}"
        );
    }

    #[test]
    fn extensions_query_wipe_and_unknown() {
        let rig = Rig::new(TestGate::default(), UnlockPolicy::default());
        rig.add_key("");
        let Response::ExtensionResponse(answer) = rig.dispatch(&Request::Extension(ext("query")))
        else {
            panic!("no extension response");
        };
        let list: QueryResponse = answer.parse_message().unwrap().unwrap();
        assert_eq!(list.extensions, SUPPORTED_EXTENSIONS);
        assert!(matches!(
            rig.dispatch(&Request::Extension(ext(WIPE_EXTENSION))),
            Response::Success
        ));
        assert!(rig.state.keys().is_empty());
        assert_eq!(rig.wiped(), 1);
        assert!(matches!(
            rig.dispatch(&Request::Extension(ext("evil\x1b[2J@example.com"))),
            Response::Failure
        ));
        let lines = rig.lines();
        assert_eq!(
            lines,
            vec![
                "auths agent: extension evil\\u{1b}[2J@example.com request from ssh-add (pid 7) \
                  failed: unsupported request: unknown extension"
                    .to_owned()
            ]
        );
    }

    #[test]
    fn refused_binds_and_logins_are_answered_and_logged_and_never_reach_the_gate() {
        use p256::ecdsa::signature::Signer;
        use ssh_encoding::Encode;
        fn string(out: &mut Vec<u8>, b: &[u8]) {
            out.extend_from_slice(&u32::try_from(b.len()).unwrap().to_be_bytes());
            out.extend_from_slice(b);
        }
        let rig = Rig::new(TestGate::default(), UnlockPolicy::default());
        let key = rig.add_key("");
        let host = ed25519();
        let bind = |sid: &[u8], signed: &[u8]| {
            let sig: ssh_key::Signature = host.try_sign(signed).unwrap();
            let mut details = Vec::new();
            let (mut k, mut g) = (Vec::new(), Vec::new());
            KeyData::try_from(&host).unwrap().encode(&mut k).unwrap();
            sig.encode(&mut g).unwrap();
            string(&mut details, &k);
            string(&mut details, sid);
            string(&mut details, &g);
            details.push(0);
            Extension {
                name: SESSION_BIND_EXTENSION.into(),
                details: details.into(),
            }
        };
        // A signature over another session: SSH_AGENT_EXTENSION_FAILURE, as OpenSSH answers.
        assert_eq!(
            rig.dispatch(&Request::Extension(bind(&[1; 32], &[2; 32]))),
            Response::ExtensionFailure
        );
        // Bound, then a login for another session on the same connection.
        let mut handler = rig.handler();
        assert!(matches!(
            handler.session_bind(bind(&[1; 32], &[1; 32]).details.as_ref()),
            Ok(Outcome::Reply(Response::Success))
        ));
        let mut login = Vec::new();
        string(&mut login, &[2; 32]);
        login.push(50);
        string(&mut login, b"git");
        string(&mut login, b"ssh-connection");
        string(&mut login, b"publickey");
        login.push(1);
        string(&mut login, b"ssh-ed25519");
        let mut blob = Vec::new();
        key.encode(&mut blob).unwrap();
        string(&mut login, &blob);
        let outcome = rt().block_on(async {
            let (a, _b) = tokio::io::duplex(1024);
            let mut conn = Connection::new(a, Duration::from_secs(5));
            let (_tx, mut shutdown) = watch::channel(false);
            let body = {
                let mut b = Vec::new();
                Request::SignRequest(sign_request(&key, &login))
                    .encode(&mut b)
                    .unwrap();
                b
            };
            handler.dispatch(&body, &mut conn, &mut shutdown).await
        });
        assert!(matches!(outcome, Outcome::Reply(Response::Failure)));
        assert!(rig.gate.asked.lock().unwrap().is_empty());
        assert_eq!(
            rig.lines(),
            [
                "auths agent: extension session-bind@openssh.com request from ssh-add (pid 7) \
                 failed: the session bind was refused: the host key's signature over the \
                 session identifier does not verify",
                "auths agent: sign request from ssh-add (pid 7) failed: the ssh login was \
                 refused: the login is for another ssh session than the one this connection is \
                 bound to",
            ]
        );
    }

    #[test]
    fn undecodable_bodies_get_failure_and_are_logged() {
        let rig = Rig::new(TestGate::default(), UnlockPolicy::default());
        assert!(matches!(rig.dispatch_bytes(&[11, 0]), Response::Failure));
        assert!(matches!(rig.dispatch_bytes(&[200]), Response::Failure));
        let lines = rig.lines();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with("auths agent: undecodable request from ssh-add (pid 7) failed: ")
                && lines[0].ends_with("1 bytes after the end of the request"),
            "{lines:?}"
        );
        // And the agent still answers.
        assert!(matches!(
            rig.dispatch(&Request::RequestIdentities),
            Response::IdentitiesAnswer(_)
        ));
    }

    #[test]
    fn a_window_closing_ends_the_grants() {
        let rig = Rig::new(TestGate::default(), UnlockPolicy::default());
        rig.add_key("");
        rig.clock.advance(UnlockPolicy::default().idle_timeout);
        // The first request after the window closed notices, and the gate hears of it.
        assert!(matches!(
            rig.dispatch(&Request::RequestIdentities),
            Response::IdentitiesAnswer(ids) if ids.is_empty()
        ));
        assert_eq!(rig.wiped(), 1);
        assert_eq!(rig.state.expire(rig.state.now()), None);
        assert_eq!(rig.wiped(), 1);
    }

    /// The signature cap, through the real gate and a virtual key: the wipe it causes ends
    /// the batch grant the touch opened, so the same key added again needs a new touch.
    #[cfg(unix)]
    mod through_the_presence_gate {
        use super::*;
        use crate::ctap::command::Algorithm as CoseAlgorithm;
        use crate::ctap::device::DeviceOptions;
        use crate::ctap::select::OpenedKey;
        use crate::ctap::virtual_key::{StateLocation, TouchMode, VirtualKey, VirtualKeyConfig};
        use crate::ctap::CtapError;
        use crate::presence::enrollment::{enroll_key, TokenStore};
        use crate::presence::policy::{Policy, Scope};
        use crate::presence::presence_gate::{GateConfig, PresenceGate};
        use crate::presence::prompt::Prompter;
        use crate::presence::touch::PresenceKey;

        /// The presence gate, counting the wipes the agent reports before passing them on.
        struct Counting {
            inner: PresenceGate,
            wiped: AtomicUsize,
        }

        impl Gate for Counting {
            fn approve(&self, request: ApprovalRequest) -> ApproveFuture<'_> {
                self.inner.approve(request)
            }

            fn keys_wiped(&self) {
                self.wiped.fetch_add(1, Ordering::SeqCst);
                self.inner.keys_wiped();
            }
        }

        fn open(key: &VirtualKey) -> Result<OpenedKey, CtapError> {
            OpenedKey::from_transport(
                Box::new(key.connect()),
                "virtual".into(),
                DeviceOptions {
                    deadline: Duration::from_secs(10),
                    ..DeviceOptions::default()
                },
                true,
            )
        }

        struct Setup {
            _dir: tempfile::TempDir,
            key: Arc<VirtualKey>,
            enrolled: u64,
            gate: Arc<Counting>,
            state: Arc<AgentState>,
            peer: Requester,
            identity: KeypairData,
        }

        impl Setup {
            fn add(&self) {
                let add = AddIdentity {
                    credential: PrivateCredential::Key {
                        privkey: self.identity.clone(),
                        comment: String::new(),
                    },
                };
                let handler = Handler::new(&self.state, &self.peer);
                assert!(matches!(
                    handler.add(add),
                    Ok(Outcome::Reply(Response::Success))
                ));
            }

            /// Sign `data`; true when a signature came back.
            fn sign(&self, data: &[u8]) -> bool {
                let public = KeyData::try_from(&self.identity).unwrap();
                let handler = Handler::new(&self.state, &self.peer);
                let outcome = rt().block_on(async {
                    let (a, _b) = tokio::io::duplex(1024);
                    let mut conn = Connection::new(a, Duration::from_secs(5));
                    let (_tx, mut shutdown) = watch::channel(false);
                    handler
                        .sign(sign_request(&public, data), &mut conn, &mut shutdown)
                        .await
                });
                matches!(outcome, Ok(Outcome::Reply(Response::SignResponse(_))))
            }

            fn touches(&self) -> u64 {
                self.key.touch_count() - self.enrolled
            }

            fn wiped(&self) -> usize {
                self.gate.wiped.load(Ordering::SeqCst)
            }
        }

        /// An agent with `max_signatures` over the presence gate (batch grants of 10) and an
        /// enrolled virtual key that touches itself.
        fn setup(max_signatures: u64) -> Setup {
            let dir = tempfile::tempdir().unwrap();
            let home = dir.path().join("home");
            std::fs::create_dir(&home).unwrap();
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
            }
            let key = Arc::new(
                VirtualKey::start(VirtualKeyConfig {
                    state: StateLocation::InMemory,
                    touch_mode: TouchMode::Auto {
                        delay: Duration::ZERO,
                    },
                    ..VirtualKeyConfig::default()
                })
                .unwrap(),
            );
            let store = TokenStore::open(&home).unwrap();
            let mut opened = open(&key).unwrap();
            enroll_key(
                &mut opened,
                &store,
                None,
                "auths:presence",
                &[CoseAlgorithm::Es256],
                &mut || {},
                &mut crate::presence::pin_entry::NoPinSource,
            )
            .unwrap();
            drop(opened);
            let enrolled = key.touch_count();
            let opener = {
                let key = Arc::clone(&key);
                move || -> Result<Box<dyn PresenceKey>, CtapError> { Ok(Box::new(open(&key)?)) }
            };
            let inner = PresenceGate::new(GateConfig {
                home: home.clone(),
                opener: Box::new(opener),
                policy: Policy::Batch {
                    max: 10,
                    ttl: Duration::from_secs(600),
                    scope: Scope::User,
                },
                touch_timeout: Duration::from_secs(10),
                prompter: Prompter::new(false),
                clock: None,
                uv: crate::presence::presence_gate::UserVerification::Discouraged,
                pins: Box::new(crate::presence::pin_entry::NoPinSource),
            })
            .unwrap();
            let gate = Arc::new(Counting {
                inner,
                wiped: AtomicUsize::new(0),
            });
            let policy = UnlockPolicy {
                max_signatures: Some(max_signatures),
                ..UnlockPolicy::default()
            };
            let state = Arc::new(AgentState::new(policy, Arc::clone(&gate) as Arc<dyn Gate>));
            let peer = Requester::process(1000, 7, "/usr/bin/ssh-keygen");
            Setup {
                _dir: dir,
                key,
                enrolled,
                gate,
                state,
                peer,
                identity: ed25519(),
            }
        }

        #[test]
        fn the_cap_reached_under_a_grant_ends_it() {
            let s = setup(2);
            s.add();
            assert!(s.sign(b"one"));
            assert_eq!(s.touches(), 1);
            // The grant the touch opened signs the second without a touch; that reaches the
            // cap, which wipes the keys and must end the grant.
            assert!(s.sign(b"two"));
            assert_eq!(s.touches(), 1);
            assert!(s.state.keys().is_empty());
            assert_eq!(s.wiped(), 1);
            s.add();
            assert!(s.sign(b"three"));
            assert_eq!(
                s.touches(),
                2,
                "the wipe ended the grant: a new touch was needed"
            );
        }

        #[test]
        fn the_cap_reached_by_a_touch_ends_the_grant_that_touch_opens() {
            let s = setup(1);
            s.add();
            assert!(s.sign(b"one"));
            assert_eq!(s.touches(), 1);
            assert!(s.state.keys().is_empty());
            assert_eq!(s.wiped(), 1);
            // The grant opens when the touch's receipt is settled; the wipe is reported after
            // that, so it ends this grant too.
            s.add();
            assert!(s.sign(b"two"));
            assert_eq!(
                s.touches(),
                2,
                "the wipe ended the grant: a new touch was needed"
            );
        }
    }
}
