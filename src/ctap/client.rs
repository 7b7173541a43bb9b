//! CTAP2 operations on an open channel (CTAP 2.1 §6): send the request built by
//! [`command`](super::command), split the status byte, decode the response strictly.

use super::command::{
    self, GetAssertionRequest, GetAssertionResponse, GetInfoResponse, MakeCredentialRequest,
    MakeCredentialResponse,
};
use super::device::{CancelToken, Device};
use super::transaction::KeepaliveStatus;
use super::transport::Transport;
use super::CtapError;

impl<T: Transport> Device<T> {
    /// authenticatorGetInfo.
    pub fn get_info(&mut self) -> Result<GetInfoResponse, CtapError> {
        let resp = self.cbor(&command::get_info_request(), &mut |_| {}, None)?;
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
