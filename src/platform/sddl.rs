//! Windows access control as pure functions (Security Descriptor Definition Language,
//! [MS-DTYP] §2.5.1). The Win32 calls that use them live in `platform::windows`.
//!
//! The rule mirrors 0700/0600 on Unix: the owner is the current user and the DACL allows
//! nobody else. LocalSystem and the built-in Administrators group are tolerated in an
//! existing DACL (they are what root is on Unix: they can take any file anyway), every other
//! allowed SID is refused. What we create admits the current user only.

/// `NT AUTHORITY\SYSTEM`.
pub const SYSTEM_SID: &str = "S-1-5-18";
/// `BUILTIN\Administrators`.
pub const ADMINISTRATORS_SID: &str = "S-1-5-32-544";

/// `ACCESS_ALLOWED_ACE_TYPE`.
pub const ACCESS_ALLOWED_ACE_TYPE: u8 = 0;
/// `ACCESS_DENIED_ACE_TYPE`.
pub const ACCESS_DENIED_ACE_TYPE: u8 = 1;

/// True for a string SID: `S-1-` followed by dash-separated decimal numbers.
pub fn is_sid(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("S-1-") else {
        return false;
    };
    !rest.is_empty()
        && rest
            .split('-')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn checked(sid: &str) -> Result<&str, String> {
    if is_sid(sid) {
        Ok(sid)
    } else {
        Err(format!("{sid:?} is not a Windows SID"))
    }
}

/// The agent's named pipe: owned by `user_sid`, protected DACL (no inherited entries) with one
/// entry, Generic All for `user_sid`. Other users, and network clients, cannot open it.
pub fn pipe_sddl(user_sid: &str) -> Result<String, String> {
    let sid = checked(user_sid)?;
    Ok(format!("O:{sid}D:P(A;;GA;;;{sid})"))
}

/// A private directory (`AUTHS_HOME`): owned by `user_sid`, protected DACL, File All for
/// `user_sid`, inherited by files (OI) and subdirectories (CI) created in it.
pub fn private_dir_sddl(user_sid: &str) -> Result<String, String> {
    let sid = checked(user_sid)?;
    Ok(format!("O:{sid}D:P(A;OICI;FA;;;{sid})"))
}

/// One access control entry as far as the check needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AceSummary {
    /// `ACE_HEADER.AceType`.
    pub ace_type: u8,
    /// The trustee as a string SID (empty for ACE types whose SID we do not read).
    pub sid: String,
}

/// Why a path's ACL is not private.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AclProblem {
    /// Someone else owns it.
    ForeignOwner(String),
    /// No DACL at all: everyone has full access.
    NullDacl,
    /// The DACL allows this SID in.
    Admits(String),
    /// An ACE type we do not understand (object or callback ACEs): refused, fail closed.
    UnknownAce(u8),
}

impl std::fmt::Display for AclProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AclProblem::ForeignOwner(o) => write!(f, "it is owned by {o}, not by you"),
            AclProblem::NullDacl => write!(f, "it has no DACL, so everyone has full access"),
            AclProblem::Admits(s) => write!(f, "its ACL gives {s} access"),
            AclProblem::UnknownAce(t) => {
                write!(f, "its ACL has an entry of type {t} we cannot check")
            }
        }
    }
}

/// Check an owner and DACL (`None`: a NULL DACL) against "only `me` gets in".
pub fn check_acl(owner: &str, me: &str, dacl: Option<&[AceSummary]>) -> Result<(), AclProblem> {
    if owner != me {
        return Err(AclProblem::ForeignOwner(owner.to_owned()));
    }
    let Some(aces) = dacl else {
        return Err(AclProblem::NullDacl);
    };
    for ace in aces {
        match ace.ace_type {
            ACCESS_DENIED_ACE_TYPE => {}
            ACCESS_ALLOWED_ACE_TYPE => {
                if ace.sid != me && ace.sid != SYSTEM_SID && ace.sid != ADMINISTRATORS_SID {
                    return Err(AclProblem::Admits(ace.sid.clone()));
                }
            }
            other => return Err(AclProblem::UnknownAce(other)),
        }
    }
    Ok(())
}

/// The command that makes `path` private to the current user (cmd.exe or PowerShell).
pub fn icacls_fix(path: &str, is_dir: bool) -> String {
    let grant = if is_dir { "(OI)(CI)F" } else { "F" };
    format!(
        "icacls \"{path}\" /setowner \"%USERNAME%\" && icacls \"{path}\" /inheritance:r /grant:r \"%USERNAME%:{grant}\" /remove:g *S-1-1-0 *S-1-5-11 *S-1-5-32-545"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "S-1-5-21-1004336348-1177238915-682003330-1001";

    #[test]
    fn recognises_sids() {
        assert!(is_sid(ME));
        assert!(is_sid(SYSTEM_SID));
        assert!(!is_sid("S-1-"));
        assert!(!is_sid("S-1-5-x"));
        assert!(!is_sid("S-1-5--1"));
        assert!(!is_sid("D:P(A;;GA;;;WD)"));
        assert!(!is_sid("S-1-5-21)(A;;GA;;;WD"));
    }

    #[test]
    fn pipe_admits_only_the_user() {
        assert_eq!(pipe_sddl(ME).unwrap(), format!("O:{ME}D:P(A;;GA;;;{ME})"));
        assert!(
            pipe_sddl("S-1-5-21)(A;;GA;;;WD").is_err(),
            "no SDDL injection"
        );
    }

    #[test]
    fn private_dir_is_inherited_by_files() {
        assert_eq!(
            private_dir_sddl(ME).unwrap(),
            format!("O:{ME}D:P(A;OICI;FA;;;{ME})")
        );
    }

    fn allow(sid: &str) -> AceSummary {
        AceSummary {
            ace_type: ACCESS_ALLOWED_ACE_TYPE,
            sid: sid.into(),
        }
    }

    #[test]
    fn acl_check_fails_closed() {
        let ok = [allow(ME), allow(SYSTEM_SID), allow(ADMINISTRATORS_SID)];
        assert_eq!(check_acl(ME, ME, Some(&ok)), Ok(()));
        assert_eq!(check_acl(ME, ME, Some(&[])), Ok(()), "empty DACL: nobody");
        assert_eq!(
            check_acl("S-1-5-21-1-2-3-1002", ME, Some(&ok)),
            Err(AclProblem::ForeignOwner("S-1-5-21-1-2-3-1002".into()))
        );
        assert_eq!(check_acl(ME, ME, None), Err(AclProblem::NullDacl));
        let users = [allow(ME), allow("S-1-5-32-545")];
        assert_eq!(
            check_acl(ME, ME, Some(&users)),
            Err(AclProblem::Admits("S-1-5-32-545".into()))
        );
        let deny_everyone = [
            allow(ME),
            AceSummary {
                ace_type: ACCESS_DENIED_ACE_TYPE,
                sid: "S-1-1-0".into(),
            },
        ];
        assert_eq!(check_acl(ME, ME, Some(&deny_everyone)), Ok(()));
        let object_ace = [AceSummary {
            ace_type: 5,
            sid: String::new(),
        }];
        assert_eq!(
            check_acl(ME, ME, Some(&object_ace)),
            Err(AclProblem::UnknownAce(5))
        );
        assert!(AclProblem::Admits("S-1-1-0".into())
            .to_string()
            .contains("S-1-1-0"));
    }

    #[test]
    fn fix_command_names_the_path() {
        let d = icacls_fix(r"C:\Users\a\.auths", true);
        assert!(
            d.contains(r#"icacls "C:\Users\a\.auths" /inheritance:r"#),
            "{d}"
        );
        assert!(d.contains("(OI)(CI)F"));
        assert!(!icacls_fix("f", false).contains("(OI)"));
    }
}
