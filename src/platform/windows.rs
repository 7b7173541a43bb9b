//! Win32 calls behind [`super::sddl`] and the agent's peer identity (Windows only).
//!
//! Every handle and every buffer Windows allocates for us is closed or freed by a guard, so
//! early returns leak nothing.

use std::ffi::c_void;
use std::io;
use std::path::Path;

use windows_sys::Win32::Foundation::{
    CloseHandle, LocalFree, ERROR_SUCCESS, FILETIME, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW,
    GetNamedSecurityInfoW, SDDL_REVISION_1, SE_FILE_OBJECT,
};
use windows_sys::Win32::Security::{
    AclSizeInformation, GetAce, GetAclInformation, GetTokenInformation, TokenUser,
    ACCESS_ALLOWED_ACE, ACE_HEADER, ACL, ACL_SIZE_INFORMATION, DACL_SECURITY_INFORMATION,
    OWNER_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, PSID, SECURITY_ATTRIBUTES, TOKEN_QUERY,
    TOKEN_USER,
};
use windows_sys::Win32::Storage::FileSystem::CreateDirectoryW;
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, Process32FirstW, Process32NextW, PROCESSENTRY32W, TH32CS_SNAPPROCESS,
};
use windows_sys::Win32::System::RemoteDesktop::ProcessIdToSessionId;
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetProcessTimes, OpenProcess, OpenProcessToken, QueryFullProcessImageNameW,
    TerminateProcess, PROCESS_NAME_WIN32, PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_TERMINATE,
};

use super::sddl::{AceSummary, ACCESS_ALLOWED_ACE_TYPE, ACCESS_DENIED_ACE_TYPE};

/// NUL-terminated UTF-16 of a string (interior NULs refused).
pub fn wide(s: &str) -> io::Result<Vec<u16>> {
    if s.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{s:?} contains a NUL character"),
        ));
    }
    Ok(s.encode_utf16().chain(std::iter::once(0)).collect())
}

fn wide_path(p: &Path) -> io::Result<Vec<u16>> {
    use std::os::windows::ffi::OsStrExt;
    let v: Vec<u16> = p.as_os_str().encode_wide().collect();
    if v.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "path contains a NUL character",
        ));
    }
    Ok(v.into_iter().chain(std::iter::once(0)).collect())
}

/// A kernel handle, closed on drop.
struct Handle(HANDLE);

impl Drop for Handle {
    fn drop(&mut self) {
        if !self.0.is_null() && self.0 != INVALID_HANDLE_VALUE {
            // SAFETY: we own the handle and close it once.
            unsafe { CloseHandle(self.0) };
        }
    }
}

/// Memory from LocalAlloc (SDDL conversions, GetNamedSecurityInfoW), freed on drop.
struct Local(*mut c_void);

impl Drop for Local {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the pointer came from a Win32 call documented to allocate with LocalAlloc.
            unsafe { LocalFree(self.0) };
        }
    }
}

/// A string SID for `sid`.
///
/// # Safety
/// `sid` must point to a valid SID.
unsafe fn sid_string(sid: PSID) -> io::Result<String> {
    let mut out: *mut u16 = std::ptr::null_mut();
    // SAFETY: `sid` is valid (caller); `out` is a valid out pointer.
    if unsafe { ConvertSidToStringSidW(sid, &mut out) } == 0 {
        return Err(io::Error::last_os_error());
    }
    let _free = Local(out.cast());
    let mut len = 0usize;
    // SAFETY: ConvertSidToStringSidW returns a NUL-terminated string.
    while unsafe { *out.add(len) } != 0 {
        len += 1;
    }
    // SAFETY: `len` units were just read.
    Ok(String::from_utf16_lossy(unsafe {
        std::slice::from_raw_parts(out, len)
    }))
}

/// The user SID in a process token.
fn token_user_sid(process: HANDLE) -> io::Result<String> {
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: `process` is a valid process handle; `token` is a valid out pointer.
    if unsafe { OpenProcessToken(process, TOKEN_QUERY, &mut token) } == 0 {
        return Err(io::Error::last_os_error());
    }
    let token = Handle(token);
    let mut len = 0u32;
    // SAFETY: a size query with a null buffer; fails with ERROR_INSUFFICIENT_BUFFER and sets len.
    unsafe { GetTokenInformation(token.0, TokenUser, std::ptr::null_mut(), 0, &mut len) };
    if len == 0 {
        return Err(io::Error::last_os_error());
    }
    // u64 elements keep the buffer aligned for TOKEN_USER.
    let mut buf = vec![0u64; (len as usize).div_ceil(8)];
    // SAFETY: `buf` holds at least `len` bytes.
    if unsafe { GetTokenInformation(token.0, TokenUser, buf.as_mut_ptr().cast(), len, &mut len) }
        == 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the buffer now holds a TOKEN_USER whose SID points into the same buffer.
    unsafe {
        let user = &*(buf.as_ptr() as *const TOKEN_USER);
        sid_string(user.User.Sid)
    }
}

/// The SID of the user this process runs as, e.g. `S-1-5-21-…-1001`.
pub fn current_user_sid() -> io::Result<String> {
    // SAFETY: the pseudo handle of the current process needs no closing.
    token_user_sid(unsafe { GetCurrentProcess() })
}

fn open_process(pid: u32, access: u32) -> io::Result<Handle> {
    // SAFETY: plain call; a null handle means failure.
    let h = unsafe { OpenProcess(access, 0, pid) };
    if h.is_null() {
        Err(io::Error::last_os_error())
    } else {
        Ok(Handle(h))
    }
}

/// The user SID of process `pid` (fails for other users' processes we may not query).
pub fn process_user_sid(pid: u32) -> io::Result<String> {
    let h = open_process(pid, PROCESS_QUERY_LIMITED_INFORMATION)?;
    token_user_sid(h.0)
}

/// Full Win32 path of the executable of `pid`.
pub fn process_image(pid: u32) -> Option<String> {
    let h = open_process(pid, PROCESS_QUERY_LIMITED_INFORMATION).ok()?;
    let mut buf = vec![0u16; 32768];
    let mut len = buf.len() as u32;
    // SAFETY: `buf` holds `len` units; `len` is updated to the length written.
    if unsafe { QueryFullProcessImageNameW(h.0, PROCESS_NAME_WIN32, buf.as_mut_ptr(), &mut len) }
        == 0
    {
        return None;
    }
    Some(String::from_utf16_lossy(&buf[..len as usize]))
}

/// Creation time of `pid` in 100 ns units since 1601 (FILETIME), so a reused pid differs.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let h = open_process(pid, PROCESS_QUERY_LIMITED_INFORMATION).ok()?;
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: four valid out pointers.
    if unsafe { GetProcessTimes(h.0, &mut created, &mut exited, &mut kernel, &mut user) } == 0 {
        return None;
    }
    Some(crate::agent::peer::filetime_to_u64(
        created.dwLowDateTime,
        created.dwHighDateTime,
    ))
}

/// Parent process id of `pid` from a Toolhelp snapshot.
pub fn parent_pid(pid: u32) -> Option<u32> {
    // SAFETY: plain call; INVALID_HANDLE_VALUE means failure.
    let snap = Handle(unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0) });
    if snap.0 == INVALID_HANDLE_VALUE {
        return None;
    }
    // SAFETY: PROCESSENTRY32W is plain data; all zeroes is a valid value.
    let mut entry: PROCESSENTRY32W = unsafe { std::mem::zeroed() };
    entry.dwSize = std::mem::size_of::<PROCESSENTRY32W>() as u32;
    // SAFETY: `entry` is a valid, sized PROCESSENTRY32W.
    let mut ok = unsafe { Process32FirstW(snap.0, &mut entry) };
    while ok != 0 {
        if entry.th32ProcessID == pid {
            return Some(entry.th32ParentProcessID).filter(|p| *p != 0);
        }
        // SAFETY: as above.
        ok = unsafe { Process32NextW(snap.0, &mut entry) };
    }
    None
}

/// Terminal Services session of `pid`.
pub fn session_id(pid: u32) -> Option<u32> {
    let mut s = 0u32;
    // SAFETY: `s` is a valid out pointer.
    (unsafe { ProcessIdToSessionId(pid, &mut s) } != 0).then_some(s)
}

/// Terminate process `pid` (the agent's `stop`).
pub fn terminate_process(pid: u32) -> io::Result<()> {
    let h = open_process(pid, PROCESS_TERMINATE)?;
    // SAFETY: `h` is a process handle opened with PROCESS_TERMINATE.
    if unsafe { TerminateProcess(h.0, 0) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A self-relative security descriptor built from SDDL, freed on drop.
pub struct SecurityDescriptor(Local);

// SAFETY: the descriptor is memory we own exclusively and never mutate after creation; Win32
// only reads it, from any thread.
unsafe impl Send for SecurityDescriptor {}
// SAFETY: as above: shared references only ever read it.
unsafe impl Sync for SecurityDescriptor {}

impl SecurityDescriptor {
    /// Convert an SDDL string (see [`super::sddl`]).
    pub fn from_sddl(sddl: &str) -> io::Result<SecurityDescriptor> {
        let w = wide(sddl)?;
        let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        // SAFETY: `w` is NUL-terminated; `sd` is a valid out pointer; size is optional.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                w.as_ptr(),
                SDDL_REVISION_1,
                &mut sd,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(SecurityDescriptor(Local(sd)))
    }

    /// SECURITY_ATTRIBUTES pointing at this descriptor (valid while `self` lives).
    pub fn attributes(&self) -> SECURITY_ATTRIBUTES {
        SECURITY_ATTRIBUTES {
            nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
            lpSecurityDescriptor: self.0 .0,
            bInheritHandle: 0,
        }
    }
}

/// Create directory `path` with the security descriptor `sddl`.
pub fn create_dir_with_sddl(path: &Path, sddl: &str) -> io::Result<()> {
    let sd = SecurityDescriptor::from_sddl(sddl)?;
    let sa = sd.attributes();
    let p = wide_path(path)?;
    // SAFETY: `p` is NUL-terminated; `sa` points at `sd`, alive for the call.
    if unsafe { CreateDirectoryW(p.as_ptr(), &sa) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Owner SID and DACL entries of the file or directory at `path` (`None`: a NULL DACL).
pub fn owner_and_dacl(path: &Path) -> io::Result<(String, Option<Vec<AceSummary>>)> {
    let p = wide_path(path)?;
    let mut owner: PSID = std::ptr::null_mut();
    let mut dacl: *mut ACL = std::ptr::null_mut();
    let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    // SAFETY: `p` is NUL-terminated; the out pointers are valid; owner and dacl point into
    // `sd`, which we free last.
    let rc = unsafe {
        GetNamedSecurityInfoW(
            p.as_ptr(),
            SE_FILE_OBJECT,
            OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION,
            &mut owner,
            std::ptr::null_mut(),
            &mut dacl,
            std::ptr::null_mut(),
            &mut sd,
        )
    };
    if rc != ERROR_SUCCESS {
        return Err(io::Error::from_raw_os_error(rc as i32));
    }
    let _sd = Local(sd);
    if owner.is_null() {
        return Err(io::Error::other("the file has no owner"));
    }
    // SAFETY: `owner` points into `sd`.
    let owner = unsafe { sid_string(owner) }?;
    if dacl.is_null() {
        return Ok((owner, None));
    }
    let mut size = ACL_SIZE_INFORMATION {
        AceCount: 0,
        AclBytesInUse: 0,
        AclBytesFree: 0,
    };
    // SAFETY: `dacl` is a valid ACL; `size` is a valid buffer of the stated length.
    if unsafe {
        GetAclInformation(
            dacl,
            (&mut size as *mut ACL_SIZE_INFORMATION).cast(),
            std::mem::size_of::<ACL_SIZE_INFORMATION>() as u32,
            AclSizeInformation,
        )
    } == 0
    {
        return Err(io::Error::last_os_error());
    }
    let mut aces = Vec::with_capacity(size.AceCount as usize);
    for i in 0..size.AceCount {
        let mut ace: *mut c_void = std::ptr::null_mut();
        // SAFETY: `i` < AceCount; `ace` is a valid out pointer into the ACL.
        if unsafe { GetAce(dacl, i, &mut ace) } == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: every ACE starts with an ACE_HEADER.
        let ace_type = unsafe { (*(ace as *const ACE_HEADER)).AceType };
        let sid = if ace_type == ACCESS_ALLOWED_ACE_TYPE || ace_type == ACCESS_DENIED_ACE_TYPE {
            // SAFETY: allowed and denied ACEs share the ACCESS_ALLOWED_ACE layout; the SID
            // starts at SidStart.
            unsafe {
                let a = ace as *const ACCESS_ALLOWED_ACE;
                sid_string(std::ptr::addr_of!((*a).SidStart) as PSID)?
            }
        } else {
            String::new()
        };
        aces.push(AceSummary { ace_type, sid });
    }
    Ok((owner, Some(aces)))
}

/// Flags for a background process that outlives the console it was started from:
/// `CREATE_NEW_PROCESS_GROUP | DETACHED_PROCESS` (for `CommandExt::creation_flags`).
pub const DETACHED_FLAGS: u32 = windows_sys::Win32::System::Threading::CREATE_NEW_PROCESS_GROUP
    | windows_sys::Win32::System::Threading::DETACHED_PROCESS;

/// Ask for a line on the console without echo (a passphrase): `CONIN$` / `CONOUT$`, echo
/// turned off with `SetConsoleMode` and restored afterwards.
pub fn read_console_hidden(prompt: &str) -> io::Result<zeroize::Zeroizing<String>> {
    use std::io::{BufRead, Write};
    use std::os::windows::io::AsRawHandle;
    use windows_sys::Win32::System::Console::{GetConsoleMode, SetConsoleMode, ENABLE_ECHO_INPUT};

    let conin = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("CONIN$")?;
    let mut conout = std::fs::OpenOptions::new().write(true).open("CONOUT$")?;
    write!(conout, "{prompt}")?;
    conout.flush()?;
    let h = conin.as_raw_handle() as HANDLE;
    let mut mode = 0u32;
    // SAFETY: `h` is the console input handle we just opened; `mode` is a valid out pointer.
    if unsafe { GetConsoleMode(h, &mut mode) } == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above; echo off, everything else as it was.
    if unsafe { SetConsoleMode(h, mode & !ENABLE_ECHO_INPUT) } == 0 {
        return Err(io::Error::last_os_error());
    }
    let mut line = zeroize::Zeroizing::new(String::new());
    let r = std::io::BufReader::new(&conin).read_line(&mut line);
    // SAFETY: restore the mode we read.
    unsafe { SetConsoleMode(h, mode) };
    writeln!(conout)?;
    r?;
    while line.ends_with('\n') || line.ends_with('\r') {
        line.pop();
    }
    Ok(line)
}
