//! The webauthn.dll calls (Windows only). Field values come from the pure functions in the
//! parent module; this file only lays them out as the C structures and copies results back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use windows_sys::core::{GUID, PCWSTR};
use windows_sys::Win32::Networking::WindowsWebServices as wa;
use windows_sys::Win32::UI::WindowsAndMessaging::GetForegroundWindow;

use super::{
    assertion_fields, consts, credential_from_parts, error_from_hresult, make_credential_fields,
    ClientDataFields,
};
use crate::ctap::backend::{GetAssertionArgs, MakeCredentialArgs, SecurityKey, Waiting};
use crate::ctap::command::{GetAssertionResponse, MakeCredentialResponse};
use crate::ctap::device::{CancelToken, DeviceOptions};
use crate::ctap::CtapError;

// The numbers the pure code uses are webauthn.h's.
const _: () = {
    assert!(consts::CLIENT_DATA_VERSION == wa::WEBAUTHN_CLIENT_DATA_CURRENT_VERSION);
    assert!(
        consts::GET_ASSERTION_OPTIONS_VERSION
            == wa::WEBAUTHN_AUTHENTICATOR_GET_ASSERTION_OPTIONS_VERSION_3
    );
    assert!(
        consts::MAKE_CREDENTIAL_OPTIONS_VERSION
            == wa::WEBAUTHN_AUTHENTICATOR_MAKE_CREDENTIAL_OPTIONS_VERSION_2
    );
    assert!(
        consts::ATTACHMENT_CROSS_PLATFORM == wa::WEBAUTHN_AUTHENTICATOR_ATTACHMENT_CROSS_PLATFORM
    );
    assert!(
        consts::USER_VERIFICATION_DISCOURAGED
            == wa::WEBAUTHN_USER_VERIFICATION_REQUIREMENT_DISCOURAGED
    );
    assert!(
        consts::USER_VERIFICATION_REQUIRED == wa::WEBAUTHN_USER_VERIFICATION_REQUIREMENT_REQUIRED
    );
    assert!(consts::ATTESTATION_DIRECT == wa::WEBAUTHN_ATTESTATION_CONVEYANCE_PREFERENCE_DIRECT);
    assert!(consts::RP_ENTITY_VERSION == wa::WEBAUTHN_RP_ENTITY_INFORMATION_CURRENT_VERSION);
    assert!(consts::USER_ENTITY_VERSION == wa::WEBAUTHN_USER_ENTITY_INFORMATION_CURRENT_VERSION);
    assert!(
        consts::COSE_PARAMETER_VERSION == wa::WEBAUTHN_COSE_CREDENTIAL_PARAMETER_CURRENT_VERSION
    );
    assert!(consts::CREDENTIAL_VERSION == wa::WEBAUTHN_CREDENTIAL_CURRENT_VERSION);
    assert!(consts::NTE_EXISTS == windows_sys::Win32::Foundation::NTE_EXISTS as u32);
    assert!(consts::NTE_NOT_FOUND == windows_sys::Win32::Foundation::NTE_NOT_FOUND as u32);
    assert!(
        consts::NTE_USER_CANCELLED == windows_sys::Win32::Foundation::NTE_USER_CANCELLED as u32
    );
    assert!(
        consts::NTE_INVALID_PARAMETER
            == windows_sys::Win32::Foundation::NTE_INVALID_PARAMETER as u32
    );
    assert!(consts::NTE_NOT_SUPPORTED == windows_sys::Win32::Foundation::NTE_NOT_SUPPORTED as u32);
    assert!(consts::E_INVALIDARG == windows_sys::Win32::Foundation::E_INVALIDARG as u32);
};

/// A security key behind Windows' own security-key dialog.
#[derive(Debug)]
pub struct WinHelloKey {
    timeout: Duration,
    description: String,
    api: &'static Api,
}

type Hresult = windows_sys::core::HRESULT;
type Hwnd = windows_sys::Win32::Foundation::HWND;

/// The webauthn.dll functions auths calls, found at run time: the DLL is loaded from System32
/// only (`LoadLibraryExW` with `LOAD_LIBRARY_SEARCH_SYSTEM32`, so no copy in the current or
/// the program's directory is ever picked up) and each function through `GetProcAddress`.
/// `auths.exe` itself imports nothing from webauthn.dll, so it starts where the DLL is missing
/// (Windows before 10 1903) and says so when a key is needed. The signatures are webauthn.h's,
/// as windows-sys declares them.
struct Api {
    version: u32,
    get_error_name: GetErrorName,
    cancel_current_operation: CancelCurrentOperation,
    get_cancellation_id: Option<GetCancellationId>,
    make_credential: MakeCredential,
    free_credential_attestation: FreeCredentialAttestation,
    get_assertion: GetAssertion,
    free_assertion: FreeAssertion,
}

/// What `GetProcAddress` returns (a FARPROC).
type Proc = unsafe extern "system" fn() -> isize;
type GetApiVersionNumber = unsafe extern "system" fn() -> u32;
type GetErrorName = unsafe extern "system" fn(Hresult) -> PCWSTR;
type CancelCurrentOperation = unsafe extern "system" fn(*const GUID) -> Hresult;
type GetCancellationId = unsafe extern "system" fn(*mut GUID) -> Hresult;
type MakeCredential = unsafe extern "system" fn(
    Hwnd,
    *const wa::WEBAUTHN_RP_ENTITY_INFORMATION,
    *const wa::WEBAUTHN_USER_ENTITY_INFORMATION,
    *const wa::WEBAUTHN_COSE_CREDENTIAL_PARAMETERS,
    *const wa::WEBAUTHN_CLIENT_DATA,
    *const wa::WEBAUTHN_AUTHENTICATOR_MAKE_CREDENTIAL_OPTIONS,
    *mut *mut wa::WEBAUTHN_CREDENTIAL_ATTESTATION,
) -> Hresult;
type FreeCredentialAttestation =
    unsafe extern "system" fn(*const wa::WEBAUTHN_CREDENTIAL_ATTESTATION);
type GetAssertion = unsafe extern "system" fn(
    Hwnd,
    PCWSTR,
    *const wa::WEBAUTHN_CLIENT_DATA,
    *const wa::WEBAUTHN_AUTHENTICATOR_GET_ASSERTION_OPTIONS,
    *mut *mut wa::WEBAUTHN_ASSERTION,
) -> Hresult;
type FreeAssertion = unsafe extern "system" fn(*const wa::WEBAUTHN_ASSERTION);

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("version", &self.version)
            .finish()
    }
}

/// Load webauthn.dll once; every later call gets the same answer.
fn api() -> Result<&'static Api, String> {
    static API: std::sync::OnceLock<Result<Api, String>> = std::sync::OnceLock::new();
    API.get_or_init(load).as_ref().map_err(Clone::clone)
}

fn load() -> Result<Api, String> {
    use windows_sys::Win32::System::LibraryLoader::{
        GetProcAddress, LoadLibraryExW, LOAD_LIBRARY_SEARCH_SYSTEM32,
    };
    let name: Vec<u16> = "webauthn.dll\0".encode_utf16().collect();
    // SAFETY: `name` is a NUL-terminated UTF-16 string that outlives the call; no file handle
    // is passed (it must be null); the flag restricts the search to System32. The module stays
    // loaded for the life of the process (it is never freed), so the function pointers taken
    // from it below stay valid.
    let module = unsafe {
        LoadLibraryExW(
            name.as_ptr(),
            std::ptr::null_mut(),
            LOAD_LIBRARY_SEARCH_SYSTEM32,
        )
    };
    if module.is_null() {
        return Err("this Windows has no webauthn.dll in System32; security keys need Windows 10 1903 or later".into());
    }
    let find = |symbol: &'static [u8]| -> Result<Proc, String> {
        // SAFETY: `module` is a loaded module and `symbol` a NUL-terminated ASCII name.
        unsafe { GetProcAddress(module, symbol.as_ptr()) }.ok_or_else(|| {
            format!(
                "webauthn.dll has no {}; update Windows",
                String::from_utf8_lossy(&symbol[..symbol.len() - 1])
            )
        })
    };
    // SAFETY (each transmute below): the symbol is the webauthn.h function of that name, whose
    // signature is the pointer type it is transmuted to (as windows-sys declares it); a
    // FARPROC and these `extern "system"` function pointers have the same size and ABI.
    let version_fn = unsafe {
        std::mem::transmute::<Proc, GetApiVersionNumber>(find(b"WebAuthNGetApiVersionNumber\0")?)
    };
    // SAFETY: no arguments; returns a number.
    let version = unsafe { version_fn() };
    if version < wa::WEBAUTHN_API_VERSION_1 {
        return Err(format!(
            "webauthn.dll speaks API version {version}; security keys need Windows 10 1903 or later"
        ));
    }
    // SAFETY: see above.
    unsafe {
        use std::mem::transmute;
        Ok(Api {
            version,
            get_error_name: transmute::<Proc, GetErrorName>(find(b"WebAuthNGetErrorName\0")?),
            cancel_current_operation: transmute::<Proc, CancelCurrentOperation>(find(
                b"WebAuthNCancelCurrentOperation\0",
            )?),
            // Version 1 has no cancellation ids.
            get_cancellation_id: find(b"WebAuthNGetCancellationId\0")
                .ok()
                .map(|f| transmute::<Proc, GetCancellationId>(f)),
            make_credential: transmute::<Proc, MakeCredential>(find(
                b"WebAuthNAuthenticatorMakeCredential\0",
            )?),
            free_credential_attestation: transmute::<Proc, FreeCredentialAttestation>(find(
                b"WebAuthNFreeCredentialAttestation\0",
            )?),
            get_assertion: transmute::<Proc, GetAssertion>(find(
                b"WebAuthNAuthenticatorGetAssertion\0",
            )?),
            free_assertion: transmute::<Proc, FreeAssertion>(find(b"WebAuthNFreeAssertion\0")?),
        })
    }
}

/// Open the webauthn.dll backend. `opts.deadline` is the dialog's timeout.
pub fn open(opts: DeviceOptions) -> Result<Box<dyn SecurityKey>, CtapError> {
    let api = api().map_err(CtapError::Unsupported)?;
    Ok(Box::new(WinHelloKey {
        timeout: opts.deadline,
        description: format!("security key via Windows WebAuthn API v{}", api.version),
        api,
    }))
}

/// Copy `len` bytes at `ptr` (null or zero length: empty).
///
/// # Safety
/// `ptr` must be null or valid for reads of `len` bytes.
unsafe fn copy_bytes(ptr: *const u8, len: u32) -> Vec<u8> {
    if ptr.is_null() || len == 0 {
        return Vec::new();
    }
    // SAFETY: the caller guarantees `ptr` is valid for `len` bytes.
    unsafe { std::slice::from_raw_parts(ptr, len as usize) }.to_vec()
}

/// Read a NUL-terminated UTF-16 string (at most 4096 units).
///
/// # Safety
/// `p` must be null or point to a NUL-terminated UTF-16 string.
unsafe fn from_wide(p: PCWSTR) -> Option<String> {
    if p.is_null() {
        return None;
    }
    let mut len = 0usize;
    // SAFETY: the caller guarantees NUL termination; we stop at the NUL or at 4096 units.
    while len < 4096 && unsafe { *p.add(len) } != 0 {
        len += 1;
    }
    // SAFETY: the `len` units before the NUL were just read.
    let units = unsafe { std::slice::from_raw_parts(p, len) };
    Some(String::from_utf16_lossy(units))
}

fn error_name(hr: i32) -> Option<String> {
    let api = api().ok()?;
    // SAFETY: WebAuthNGetErrorName returns a static string owned by webauthn.dll (or null).
    unsafe { from_wide((api.get_error_name)(hr)) }
}

/// Watches our cancel token while webauthn.dll blocks, and cancels the operation when it fires.
struct CancelWatcher {
    done: Arc<AtomicBool>,
    fired: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CancelWatcher {
    fn start(cancel: Option<&CancelToken>, id: Option<GUID>) -> CancelWatcher {
        let done = Arc::new(AtomicBool::new(false));
        let fired = Arc::new(AtomicBool::new(false));
        let thread = match (cancel, id) {
            (Some(token), Some(id)) => {
                let token = token.clone();
                let (done, fired) = (Arc::clone(&done), Arc::clone(&fired));
                Some(std::thread::spawn(move || {
                    while !done.load(Ordering::SeqCst) {
                        if token.is_cancelled() {
                            fired.store(true, Ordering::SeqCst);
                            if let Ok(api) = api() {
                                // SAFETY: `id` is a cancellation id from
                                // WebAuthNGetCancellationId, passed by reference for the
                                // duration of the call.
                                unsafe { (api.cancel_current_operation)(&id) };
                            }
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }))
            }
            _ => None,
        };
        CancelWatcher {
            done,
            fired,
            thread,
        }
    }

    /// Stop watching; true when the token fired (before or during the call).
    fn stop(mut self, cancel: Option<&CancelToken>) -> bool {
        self.done.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.fired.load(Ordering::SeqCst) || cancel.is_some_and(CancelToken::is_cancelled)
    }
}

fn cancellation_id() -> Option<GUID> {
    let mut id = GUID {
        data1: 0,
        data2: 0,
        data3: 0,
        data4: [0; 8],
    };
    let get = api().ok()?.get_cancellation_id?;
    // SAFETY: `id` is a valid out pointer for the call.
    let hr = unsafe { get(&mut id) };
    (hr == 0).then_some(id)
}

/// Where the options' `pCancellationId` points: at `id`, or null when there is none.
fn cancellation_id_ptr(id: &mut Option<GUID>) -> *mut GUID {
    id.as_mut()
        .map_or(std::ptr::null_mut(), |id| id as *mut GUID)
}

/// The `WEBAUTHN_CLIENT_DATA` over `c`; it points into `c.json`, which must outlive its use.
fn client_data_struct(c: &mut ClientDataFields) -> wa::WEBAUTHN_CLIENT_DATA {
    wa::WEBAUTHN_CLIENT_DATA {
        dwVersion: c.version,
        // Lengths were checked to fit u32 by the pure builders.
        cbClientDataJSON: c.json.len() as u32,
        pbClientDataJSON: c.json.as_mut_ptr(),
        pwszHashAlgId: wa::WEBAUTHN_HASH_ALGORITHM_SHA_256,
    }
}

/// The `WEBAUTHN_CREDENTIALS` over `list`, which must outlive its use.
fn credential_list(list: &mut [wa::WEBAUTHN_CREDENTIAL]) -> wa::WEBAUTHN_CREDENTIALS {
    wa::WEBAUTHN_CREDENTIALS {
        cCredentials: list.len() as u32,
        pCredentials: list.as_mut_ptr(),
    }
}

/// One blocking webauthn.dll call behind the Windows dialog, from start to freed result: tell
/// the caller a touch is needed, watch `cancel` while `call` blocks, turn a failing HRESULT, or
/// a success that left the out pointer null, into an error; else `read` copies what we need out
/// of the result and `free` releases it, once. `call` gets the out pointer to fill; `what`
/// names the result in the error.
fn run_dialog<T, R>(
    cancel_id: Option<GUID>,
    on_up_needed: &mut dyn FnMut(),
    cancel: Option<&CancelToken>,
    what: &str,
    call: impl FnOnce(&mut *mut T) -> i32,
    read: impl FnOnce(&T) -> R,
    free: impl FnOnce(*mut T),
) -> Result<R, CtapError> {
    on_up_needed();
    let watcher = CancelWatcher::start(cancel, cancel_id);
    let mut out: *mut T = std::ptr::null_mut();
    let hr = call(&mut out);
    let cancelled = watcher.stop(cancel);
    if hr != 0 {
        return Err(error_from_hresult(hr, error_name(hr).as_deref(), cancelled));
    }
    if out.is_null() {
        return Err(CtapError::InvalidResponse(format!(
            "webauthn.dll reported success but returned no {what}"
        )));
    }
    // SAFETY: on success `out` points to the call's result, valid until `free` below.
    let result = read(unsafe { &*out });
    free(out);
    Ok(result)
}

fn credentials(ids: &mut [Vec<u8>]) -> Vec<wa::WEBAUTHN_CREDENTIAL> {
    ids.iter_mut()
        .map(|id| wa::WEBAUTHN_CREDENTIAL {
            dwVersion: consts::CREDENTIAL_VERSION,
            // Lengths were checked to fit u32 by the pure builders.
            cbId: id.len() as u32,
            pbId: id.as_mut_ptr(),
            pwszCredentialType: wa::WEBAUTHN_CREDENTIAL_TYPE_PUBLIC_KEY,
        })
        .collect()
}

impl SecurityKey for WinHelloKey {
    fn description(&self) -> &str {
        &self.description
    }

    fn is_virtual(&self) -> bool {
        false
    }

    fn supported_algorithms(&mut self) -> Result<Option<Vec<i64>>, CtapError> {
        Ok(None)
    }

    fn make_credential(
        &mut self,
        args: &MakeCredentialArgs<'_>,
        wait: Waiting<'_>,
    ) -> Result<MakeCredentialResponse, CtapError> {
        // webauthn.dll waits for a busy key itself.
        let Waiting {
            on_up_needed,
            cancel,
            ..
        } = wait;
        let mut f = make_credential_fields(args, self.timeout)?;
        let rp = wa::WEBAUTHN_RP_ENTITY_INFORMATION {
            dwVersion: consts::RP_ENTITY_VERSION,
            pwszId: f.rp_id.as_ptr(),
            pwszName: f.rp_name.as_ptr(),
            pwszIcon: std::ptr::null(),
        };
        let user = wa::WEBAUTHN_USER_ENTITY_INFORMATION {
            dwVersion: consts::USER_ENTITY_VERSION,
            cbId: f.user_id.len() as u32,
            pbId: f.user_id.as_mut_ptr(),
            pwszName: f.user_name.as_ptr(),
            pwszIcon: std::ptr::null(),
            pwszDisplayName: f.user_display_name.as_ptr(),
        };
        let mut params: Vec<wa::WEBAUTHN_COSE_CREDENTIAL_PARAMETER> = f
            .algorithms
            .iter()
            .map(|&alg| wa::WEBAUTHN_COSE_CREDENTIAL_PARAMETER {
                dwVersion: consts::COSE_PARAMETER_VERSION,
                pwszCredentialType: wa::WEBAUTHN_CREDENTIAL_TYPE_PUBLIC_KEY,
                lAlg: alg,
            })
            .collect();
        let cose = wa::WEBAUTHN_COSE_CREDENTIAL_PARAMETERS {
            cCredentialParameters: params.len() as u32,
            pCredentialParameters: params.as_mut_ptr(),
        };
        let client = client_data_struct(&mut f.client_data);
        let mut exclude = credentials(&mut f.exclude_list);
        let mut cancel_id = cancellation_id();
        let opts = wa::WEBAUTHN_AUTHENTICATOR_MAKE_CREDENTIAL_OPTIONS {
            dwVersion: f.options_version,
            dwTimeoutMilliseconds: f.timeout_ms,
            CredentialList: credential_list(&mut exclude),
            dwAuthenticatorAttachment: f.attachment,
            bRequireResidentKey: i32::from(f.require_resident_key),
            dwUserVerificationRequirement: f.user_verification,
            dwAttestationConveyancePreference: f.attestation,
            pCancellationId: cancellation_id_ptr(&mut cancel_id),
            ..Default::default()
        };
        let api = self.api;
        let (fmt, auth_data, att_stmt) = run_dialog(
            cancel_id,
            on_up_needed,
            cancel,
            "credential",
            |out| {
                // SAFETY: every pointer in `rp`, `user`, `cose`, `client` and `opts` points
                // into buffers owned by `f`, `params`, `exclude` and `cancel_id`, which outlive
                // the call; `out` is a valid out pointer. The window handle may be null.
                unsafe {
                    (api.make_credential)(
                        GetForegroundWindow(),
                        &rp,
                        &user,
                        &cose,
                        &client,
                        &opts,
                        out,
                    )
                }
            },
            // SAFETY: a WEBAUTHN_CREDENTIAL_ATTESTATION's buffers have the given sizes.
            |a| unsafe {
                (
                    from_wide(a.pwszFormatType).unwrap_or_default(),
                    copy_bytes(a.pbAuthenticatorData, a.cbAuthenticatorData),
                    copy_bytes(a.pbAttestation, a.cbAttestation),
                )
            },
            // SAFETY: `out` came from WebAuthNAuthenticatorMakeCredential; freed once.
            |out| unsafe { (api.free_credential_attestation)(out) },
        )?;
        credential_from_parts(&fmt, &auth_data, &att_stmt)
    }

    fn get_assertion(
        &mut self,
        args: &GetAssertionArgs<'_>,
        wait: Waiting<'_>,
    ) -> Result<GetAssertionResponse, CtapError> {
        // The PIN is webauthn.dll's to ask for: a pinUvAuthToken of ours is not used, and
        // `user_verification` has Windows ask for it in its own dialog.
        let GetAssertionArgs {
            rp_id,
            client_data,
            allow_list,
            user_verification,
            ..
        } = *args;
        // webauthn.dll waits for a busy key itself.
        let Waiting {
            on_up_needed,
            cancel,
            ..
        } = wait;
        let mut f = assertion_fields(
            rp_id,
            client_data,
            allow_list,
            self.timeout,
            user_verification,
        )?;
        let client = client_data_struct(&mut f.client_data);
        let mut allow = credentials(&mut f.allow_list);
        let mut cancel_id = cancellation_id();
        let opts = wa::WEBAUTHN_AUTHENTICATOR_GET_ASSERTION_OPTIONS {
            dwVersion: f.options_version,
            dwTimeoutMilliseconds: f.timeout_ms,
            CredentialList: credential_list(&mut allow),
            dwAuthenticatorAttachment: f.attachment,
            dwUserVerificationRequirement: f.user_verification,
            pCancellationId: cancellation_id_ptr(&mut cancel_id),
            ..Default::default()
        };
        let api = self.api;
        let (auth_data, signature, credential_id, user_id) = run_dialog(
            cancel_id,
            on_up_needed,
            cancel,
            "assertion",
            |out| {
                // SAFETY: `f.rp_id` is NUL-terminated UTF-16; `client` and `opts` point into
                // `f`, `allow` and `cancel_id`, which outlive the call; `out` is a valid out
                // pointer. The window handle may be null.
                unsafe {
                    (api.get_assertion)(
                        GetForegroundWindow(),
                        f.rp_id.as_ptr(),
                        &client,
                        &opts,
                        out,
                    )
                }
            },
            // SAFETY: a WEBAUTHN_ASSERTION's buffers have the given sizes.
            |a| unsafe {
                (
                    copy_bytes(a.pbAuthenticatorData, a.cbAuthenticatorData),
                    copy_bytes(a.pbSignature, a.cbSignature),
                    copy_bytes(a.Credential.pbId, a.Credential.cbId),
                    copy_bytes(a.pbUserId, a.cbUserId),
                )
            },
            // SAFETY: `out` came from WebAuthNAuthenticatorGetAssertion; freed once.
            |out| unsafe { (api.free_assertion)(out) },
        )?;
        super::assertion_from_parts(&auth_data, &signature, &credential_id, &user_id)
    }
}
