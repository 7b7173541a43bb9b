//! The caller rules' extensions (draft-miller-ssh-agent "Extension mechanism"), served to
//! same-uid peers only (like every request, see [`super::session`]):
//!
//! - `rules@auths-presence` (`auths agent rules`): the rules in force. The answer is an
//!   `SSH_AGENT_EXTENSION_RESPONSE` named like the request holding one string, the JSON
//!   [`RulesAnswer`]: the file's path, whether rules are in force, and their source text (which
//!   the client parses again, with the same strict parser, to list or test them).
//! - `reload@auths-presence` (`auths agent reload`): read the rules file again. The answer
//!   holds one string, the JSON [`ReloadAnswer`]: whether the new file was taken, and what is in
//!   force or why the file was refused (the old rules stay then).

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use ssh_agent_lib::proto::extension::MessageExtension;
use ssh_agent_lib::proto::{Extension, Request, Response};
use ssh_encoding::{Decode, Encode, Reader, Writer};

use super::client::{request, ClientError};
use super::AgentError;
use crate::presence::prompt::escape_control;
use crate::presence::rules::RulesHolder;

/// Name of the extension that lists the rules in force.
pub const RULES_EXTENSION: &str = "rules@auths-presence";
/// Name of the extension that reloads the rules file.
pub const RELOAD_EXTENSION: &str = "reload@auths-presence";

/// The largest JSON answer a client reads (the rules file is at most 64 KiB).
const MAX_ANSWER: usize = 200 * 1024;

/// What `rules@auths-presence` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulesAnswer {
    /// The agent applies caller rules at all (it was built with a rules holder).
    pub enabled: bool,
    /// The rules file it reads (escaped).
    pub path: Option<String>,
    /// The text of the rules in force; `None`: no rules file, everyone may ask.
    pub source: Option<String>,
    /// Which load of the file is in force.
    pub generation: u64,
}

/// What `reload@auths-presence` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadAnswer {
    /// The file was read and is in force (or its absence was noted).
    pub ok: bool,
    /// What is in force, or why the file was refused (escaped).
    pub message: String,
}

/// One JSON string as an extension message named `NAME`.
macro_rules! json_message {
    ($ty:ident, $name:expr) => {
        impl MessageExtension for $ty {
            const NAME: &'static str = $name;
        }

        impl Encode for $ty {
            fn encoded_len(&self) -> ssh_encoding::Result<usize> {
                json(self).encoded_len()
            }

            fn encode(&self, writer: &mut impl Writer) -> ssh_encoding::Result<()> {
                json(self).encode(writer)
            }
        }

        impl Decode for $ty {
            type Error = ssh_encoding::Error;

            fn decode(reader: &mut impl Reader) -> ssh_encoding::Result<Self> {
                let text = String::decode(reader)?;
                if text.len() > MAX_ANSWER {
                    return Err(ssh_encoding::Error::Length);
                }
                serde_json::from_str(&text).map_err(|_| ssh_encoding::Error::CharacterEncoding)
            }
        }
    };
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

json_message!(RulesAnswer, RULES_EXTENSION);
json_message!(ReloadAnswer, RELOAD_EXTENSION);

/// The agent's answer to `rules@auths-presence`.
pub fn rules_answer(holder: Option<&RulesHolder>) -> RulesAnswer {
    let Some(h) = holder else {
        return RulesAnswer {
            enabled: false,
            path: None,
            source: None,
            generation: 0,
        };
    };
    let current = h.current();
    RulesAnswer {
        enabled: true,
        path: Some(escape_control(&h.path().display().to_string())),
        generation: current.as_ref().map_or(0, |r| r.generation()),
        source: current.map(|r| r.source().to_owned()),
    }
}

/// Reload `holder`'s file and say what came of it; the agent's log hears of a refusal too.
pub fn reload(holder: Option<&RulesHolder>) -> ReloadAnswer {
    let Some(h) = holder else {
        return ReloadAnswer {
            ok: false,
            message: "this agent applies no caller rules".into(),
        };
    };
    match h.reload() {
        Ok(loaded) => ReloadAnswer {
            ok: true,
            message: loaded.to_string(),
        },
        Err(e) => ReloadAnswer {
            ok: false,
            message: format!(
                "{}; the rules in force are unchanged",
                escape_control(&crate::presence::error_chain(&e))
            ),
        },
    }
}

fn ask<T: MessageExtension + Decode>(socket: &Path, name: &str) -> Result<T, AgentError> {
    let ext = Extension {
        name: name.to_owned(),
        details: Vec::new().into(),
    };
    match request(socket, &Request::Extension(ext), Duration::from_secs(10))? {
        Response::ExtensionResponse(e) => match e.parse_message::<T>() {
            Ok(Some(answer)) => Ok(answer),
            _ => Err(ClientError::Unexpected.into()),
        },
        Response::Failure => Err(ClientError::Refused.into()),
        _ => Err(ClientError::Unexpected.into()),
    }
}

/// Ask the agent at `socket` for its rules.
pub fn fetch_rules(socket: &Path) -> Result<RulesAnswer, AgentError> {
    ask(socket, RULES_EXTENSION)
}

/// Ask the agent at `socket` to reload its rules file.
pub fn request_reload(socket: &Path) -> Result<ReloadAnswer, AgentError> {
    ask(socket, RELOAD_EXTENSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip_as_extension_messages() {
        let a = RulesAnswer {
            enabled: true,
            path: Some("/h/rules.toml".into()),
            source: Some("[[rule]]\naction = \"deny\"\n".into()),
            generation: 3,
        };
        let ext = Extension::new_message(a.clone()).unwrap();
        assert_eq!(ext.name, RULES_EXTENSION);
        assert_eq!(ext.parse_message::<RulesAnswer>().unwrap(), Some(a));
        let r = ReloadAnswer {
            ok: false,
            message: "no".into(),
        };
        let ext = Extension::new_message(r.clone()).unwrap();
        assert_eq!(ext.parse_message::<ReloadAnswer>().unwrap(), Some(r));
    }
}
