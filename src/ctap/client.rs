//! CTAP2 operations on an open channel (CTAP 2.1 §6): send the request built by
//! [`command`](super::command), split the status byte, decode the response strictly.

use super::command::{
    self, GetAssertionRequest, GetAssertionResponse, GetInfoResponse, MakeCredentialRequest,
    MakeCredentialResponse,
};
use super::device::{CancelToken, Device};
use super::status::StatusCode;
use super::transaction::KeepaliveStatus;
use super::transport::Transport;
use super::CtapError;

impl<T: Transport> Device<T> {
    /// authenticatorGetInfo.
    pub fn get_info(&mut self) -> Result<GetInfoResponse, CtapError> {
        self.get_info_reporting(&mut |_| {})
    }

    /// authenticatorGetInfo, telling `on_keepalive` what the key says meanwhile (it may be
    /// [`KeepaliveStatus::Busy`]: another program holds the key).
    pub fn get_info_reporting(
        &mut self,
        on_keepalive: &mut dyn FnMut(KeepaliveStatus),
    ) -> Result<GetInfoResponse, CtapError> {
        let resp = self.cbor(&command::get_info_request(), on_keepalive, None)?;
        GetInfoResponse::decode(command::split_status(&resp)?)
    }

    /// authenticatorMakeCredential (needs a touch).
    pub fn make_credential(
        &mut self,
        request: &MakeCredentialRequest<'_>,
        on_keepalive: &mut dyn FnMut(KeepaliveStatus),
        cancel: Option<&CancelToken>,
    ) -> Result<MakeCredentialResponse, CtapError> {
        let resp = self.cbor(&request.to_payload(), on_keepalive, cancel)?;
        MakeCredentialResponse::decode(command::split_status(&resp)?)
    }

    /// authenticatorGetAssertion (needs a touch: `up` is always true).
    pub fn get_assertion(
        &mut self,
        request: &GetAssertionRequest<'_>,
        on_keepalive: &mut dyn FnMut(KeepaliveStatus),
        cancel: Option<&CancelToken>,
    ) -> Result<GetAssertionResponse, CtapError> {
        let resp = self.cbor(&request.to_payload(), on_keepalive, cancel)?;
        GetAssertionResponse::decode(command::split_status(&resp)?)
    }

    /// Which credential of `allow_list` the key holds, asking silently (`up: false`) in parts
    /// of at most `max_in_list` ids (the key's maxCredentialCountInList): `None` when it
    /// holds none. What the key signs in a probe approves nothing (UP is clear).
    pub fn find_credential<'a>(
        &mut self,
        rp_id: &str,
        allow_list: &[&'a [u8]],
        max_in_list: usize,
        cancel: Option<&CancelToken>,
    ) -> Result<Option<&'a [u8]>, CtapError> {
        for part in allow_list.chunks(max_in_list.max(1)) {
            let probe = GetAssertionRequest {
                rp_id,
                client_data_hash: rand::random(),
                allow_list: part,
                user_verification: false,
                pin_uv_auth: None,
            };
            let resp = self.cbor(&probe.to_probe_payload(), &mut |_| {}, cancel)?;
            match command::split_status(&resp) {
                Err(CtapError::Status(StatusCode::NoCredentials)) => continue,
                Err(e) => return Err(e),
                Ok(body) => {
                    let r = GetAssertionResponse::decode(body)?;
                    // The key may omit the credential when the list had one id (§6.2.3).
                    let id = match (&r.credential, part) {
                        (Some(c), _) => part.iter().find(|id| **id == c.id.as_slice()),
                        (None, [only]) => Some(only),
                        (None, _) => None,
                    };
                    return id.copied().map(Some).ok_or_else(|| {
                        CtapError::InvalidResponse(
                            "the probe answered with a credential that was not asked for".into(),
                        )
                    });
                }
            }
        }
        Ok(None)
    }

    /// authenticatorSelection: the key blinks and a touch answers OK (used to choose one of
    /// several plugged-in keys, as OpenSSH does).
    pub fn selection(
        &mut self,
        on_keepalive: &mut dyn FnMut(KeepaliveStatus),
        cancel: Option<&CancelToken>,
    ) -> Result<(), CtapError> {
        let resp = self.cbor(&command::selection_request(), on_keepalive, cancel)?;
        command::split_status(&resp).map(|_| ())
    }
}
