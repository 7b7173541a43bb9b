//! The `status@auths-presence` extension (draft-miller-ssh-agent "Extension mechanism"): what
//! `auths agent status` asks a running agent besides its keys. The answer is an
//! `SSH_AGENT_EXTENSION_RESPONSE` (29) named like the request whose contents are
//!
//! ```text
//! byte    socket_replaced (0 or 1)
//! string  the socket path that was replaced (escaped; empty when not replaced)
//! uint32  sealed identity keys listed
//! uint32  of those, how many are open now (unsealed by a touch, until the window ends)
//! ```
//!
//! The two counts came later: an answer without them reads as zero.

use ssh_agent_lib::proto::extension::MessageExtension;
use ssh_encoding::{CheckedSum, Decode, Encode, Reader, Writer};

/// Name of the status extension.
pub const STATUS_EXTENSION: &str = "status@auths-presence";

/// What a running agent says about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentStatus {
    /// The socket path that stopped naming the agent's socket (the keys were wiped then), with
    /// control characters escaped; `None` while the socket is where the agent bound it.
    pub socket_replaced: Option<String>,
    /// Sealed identity keys the agent lists.
    pub sealed: u32,
    /// Sealed keys open now (their plaintext is held until the unlock window ends).
    pub sealed_open: u32,
}

impl MessageExtension for AgentStatus {
    const NAME: &'static str = STATUS_EXTENSION;
}

impl Encode for AgentStatus {
    fn encoded_len(&self) -> ssh_encoding::Result<usize> {
        let path = self.socket_replaced.as_deref().unwrap_or("");
        [1, path.encoded_len()?, 8].checked_sum()
    }

    fn encode(&self, writer: &mut impl Writer) -> ssh_encoding::Result<()> {
        u8::from(self.socket_replaced.is_some()).encode(writer)?;
        self.socket_replaced
            .as_deref()
            .unwrap_or("")
            .encode(writer)?;
        self.sealed.encode(writer)?;
        self.sealed_open.encode(writer)
    }
}

impl Decode for AgentStatus {
    type Error = ssh_encoding::Error;

    fn decode(reader: &mut impl Reader) -> ssh_encoding::Result<Self> {
        let replaced = u8::decode(reader)?;
        let path = String::decode(reader)?;
        let (sealed, sealed_open) = if reader.is_finished() {
            (0, 0)
        } else {
            (u32::decode(reader)?, u32::decode(reader)?)
        };
        Ok(AgentStatus {
            socket_replaced: match replaced {
                0 => None,
                _ => Some(path),
            },
            sealed,
            sealed_open,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssh_agent_lib::proto::Extension;

    #[test]
    fn status_round_trips_as_an_extension_message() {
        for status in [
            AgentStatus::default(),
            AgentStatus {
                socket_replaced: Some("/run/a/agent.sock".into()),
                sealed: 2,
                sealed_open: 1,
            },
        ] {
            let ext = Extension::new_message(status.clone()).unwrap();
            assert_eq!(ext.name, STATUS_EXTENSION);
            assert_eq!(ext.parse_message::<AgentStatus>().unwrap(), Some(status));
        }
    }
}
