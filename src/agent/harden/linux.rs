//! Linux (and Android): no core dumps and not dumpable.

use crate::agent::AgentError;

/// `RLIMIT_CORE` 0 (as every Unix) and `PR_SET_DUMPABLE` 0.
pub fn harden_process() -> Result<(), AgentError> {
    super::unix::harden_process()?;
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
