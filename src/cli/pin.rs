//! Where the CLI gets a security key's PIN: the program `AUTHS_ASKPASS` names, when set (so
//! scripts and tests never block on a terminal); else the pinentry program `AUTHS_PINENTRY`
//! names (Assuan); else the terminal without echo, when stdin is one; otherwise nowhere, and
//! the refusal says how to set one up.

use std::io::IsTerminal;

use auths_presence::presence::pin_entry::{
    Askpass, NoPinSource, PinEntryError, PinRequest, PinSource,
};
use zeroize::Zeroizing;

use super::os;

/// The terminal, without echo.
struct Terminal;

impl PinSource for Terminal {
    fn pin(&mut self, request: &PinRequest<'_>) -> Result<Zeroizing<String>, PinEntryError> {
        let pin = os::read_passphrase(&request.prompt())
            .map_err(|e| PinEntryError::Terminal(std::io::Error::other(e.to_string())))?;
        if pin.is_empty() {
            return Err(PinEntryError::Cancelled);
        }
        if pin.len() > auths_presence::presence::pin_entry::MAX_PIN_LEN {
            return Err(PinEntryError::TooLong);
        }
        Ok(pin)
    }

    fn passphrase(&mut self, prompt: &str) -> Result<Zeroizing<String>, PinEntryError> {
        let pass = os::read_passphrase(prompt)
            .map_err(|e| PinEntryError::Terminal(std::io::Error::other(e.to_string())))?;
        if pass.len() > auths_presence::presence::pin_entry::MAX_PASSPHRASE_LEN {
            return Err(PinEntryError::TooLong);
        }
        Ok(pass)
    }
}

/// The PIN source for this run.
pub fn source() -> Box<dyn PinSource> {
    if let Some(askpass) = Askpass::from_env() {
        return Box::new(askpass);
    }
    if let Some(pinentry) = auths_presence::presence::pinentry::Pinentry::from_env() {
        return Box::new(pinentry);
    }
    if std::io::stdin().is_terminal() {
        return Box::new(Terminal);
    }
    Box::new(NoPinSource)
}
