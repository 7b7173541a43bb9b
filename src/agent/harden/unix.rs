//! Other Unix systems: no core dumps. Every Unix: the open-file limit raised.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

use super::OpenFiles;
use crate::agent::AgentError;

/// `RLIMIT_CORE` 0.
pub fn harden_process() -> Result<(), AgentError> {
    setrlimit(Resource::RLIMIT_CORE, 0, 0).map_err(|source| AgentError::Hardening {
        call: "setrlimit(RLIMIT_CORE, 0)",
        source,
    })
}

/// macOS refuses a soft `RLIMIT_NOFILE` above `OPEN_MAX` even when the hard limit is
/// unlimited; this is tried when the hard limit itself is refused.
const OPEN_MAX: u64 = 10240;

/// Soft `RLIMIT_NOFILE` up to the hard limit (or [`OPEN_MAX`] where the hard one is refused).
pub(crate) fn raise_open_files_limit() -> OpenFiles {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            return OpenFiles {
                limit: None,
                error: Some((0, 0, e.into())),
            }
        }
    };
    // rlim_t is u64 on Linux and macOS, i64 on FreeBSD.
    #[allow(clippy::unnecessary_cast)]
    let (soft, hard) = (soft as u64, hard as u64);
    if soft >= hard {
        return OpenFiles {
            limit: Some(soft),
            error: None,
        };
    }
    let set = |to: u64| setrlimit(Resource::RLIMIT_NOFILE, to as _, hard as _);
    match set(hard) {
        Ok(()) => OpenFiles {
            limit: Some(hard),
            error: None,
        },
        Err(_) if hard > OPEN_MAX && soft < OPEN_MAX && set(OPEN_MAX).is_ok() => OpenFiles {
            limit: Some(OPEN_MAX),
            error: None,
        },
        Err(e) => OpenFiles {
            limit: Some(soft),
            error: Some((soft, hard, e.into())),
        },
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_open_file_limit_reaches_the_hard_one() {
        let raised = super::raise_open_files_limit();
        assert!(raised.error.is_none(), "{raised:?}");
        let (soft, hard) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        #[allow(clippy::unnecessary_cast)]
        let (soft, hard) = (soft as u64, hard as u64);
        assert_eq!(raised.limit, Some(soft));
        assert!(soft == hard || soft == super::OPEN_MAX);
    }
}
