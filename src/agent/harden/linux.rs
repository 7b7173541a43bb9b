//! Linux (and Android): no core dumps and not dumpable.

use crate::agent::AgentError;

/// `RLIMIT_CORE` 0 and `PR_SET_DUMPABLE` 0.
pub fn harden_process() -> Result<(), AgentError> {
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0).map_err(
        |source| AgentError::Hardening {
            call: "setrlimit(RLIMIT_CORE, 0)",
            source,
        },
    )?;
    nix::sys::prctl::set_dumpable(false).map_err(|source| AgentError::Hardening {
        call: "prctl(PR_SET_DUMPABLE, 0)",
        source,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn hardening_makes_the_process_non_dumpable() {
        super::harden_process().unwrap();
        assert!(!nix::sys::prctl::get_dumpable().unwrap());
        let (soft, hard) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_CORE).unwrap();
        assert_eq!((soft, hard), (0, 0));
    }
}
