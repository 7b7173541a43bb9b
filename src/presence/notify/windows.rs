//! Windows: a notification-area balloon (`Shell_NotifyIconW` with `NIF_INFO`), which Windows
//! 10 and 11 show as a toast, for a hidden message-only window of the agent. Each notification
//! is its own notification-area icon, so withdrawing one is `NIM_DELETE` of that icon, which
//! takes its toast off the screen too. Unlike a WinRT toast this needs no AppUserModelID and
//! no Start-menu shortcut, so it works for a plain `auths.exe`. The text is our own fixed
//! summary and a body that went through [`super::clean`]; it is cut to the structure's sizes.

use windows_sys::Win32::Foundation::HWND;
use windows_sys::Win32::UI::Shell::{
    Shell_NotifyIconW, NIF_ICON, NIF_INFO, NIF_TIP, NIIF_INFO, NIIF_WARNING, NIM_ADD, NIM_DELETE,
    NOTIFYICONDATAW,
};
use windows_sys::Win32::UI::WindowsAndMessaging::{
    CreateWindowExW, LoadIconW, HWND_MESSAGE, IDI_INFORMATION,
};

use super::{body_text, Backend, Notification, NotifyError, Urgency};

/// The agent's message-only window, which owns the notification-area icons.
#[derive(Clone, Copy)]
struct Window(HWND);

// SAFETY: an HWND is an opaque handle that any thread of the process may pass to
// Shell_NotifyIconW; the window itself is never used from another thread (no messages are
// asked for, and it lives until the process ends).
unsafe impl Send for Window {}

/// Balloon notifications through the notification area.
pub struct Balloons {
    window: Option<Window>,
    next: u32,
}

impl Balloons {
    /// Create the message-only window now; without one, every call says so.
    pub fn connect_now() -> Balloons {
        let class: Vec<u16> = "STATIC\0".encode_utf16().collect();
        let title: Vec<u16> = "auths agent\0".encode_utf16().collect();
        // SAFETY: both strings are NUL-terminated UTF-16 that outlive the call; HWND_MESSAGE
        // makes a message-only window (never shown); the predefined STATIC class needs no
        // registration, and no creation data is passed.
        let hwnd = unsafe {
            CreateWindowExW(
                0,
                class.as_ptr(),
                title.as_ptr(),
                0,
                0,
                0,
                0,
                0,
                HWND_MESSAGE,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null(),
            )
        };
        Balloons {
            window: (!hwnd.is_null()).then_some(Window(hwnd)),
            next: 0,
        }
    }

    fn window(&self) -> Result<Window, NotifyError> {
        self.window
            .ok_or_else(|| NotifyError::Unavailable("no window for notification-area icons".into()))
    }
}

/// `text` as UTF-16 in a fixed buffer of `N` units, cut to leave the terminating NUL.
fn wide<const N: usize>(text: &str) -> [u16; N] {
    let mut out = [0u16; N];
    for (slot, unit) in out.iter_mut().take(N - 1).zip(text.encode_utf16()) {
        *slot = unit;
    }
    out
}

/// What one Shell_NotifyIconW call needs, owned, so it can run on a blocking thread (the shell
/// may be slow to answer; the notifier's time bound then gives up on it, not the runtime).
struct Call {
    window: Window,
    id: u32,
    /// `Some` to add the icon with this balloon, `None` to delete it.
    balloon: Option<(String, String, Urgency)>,
}

fn shell_notify(call: Call) -> bool {
    let mut data = NOTIFYICONDATAW {
        cbSize: std::mem::size_of::<NOTIFYICONDATAW>() as u32,
        hWnd: call.window.0,
        uID: call.id,
        ..Default::default()
    };
    let message = match call.balloon {
        None => NIM_DELETE,
        Some((summary, body, urgency)) => {
            data.uFlags = NIF_INFO | NIF_ICON | NIF_TIP;
            // SAFETY: a null module and a predefined icon id load the shared system icon.
            data.hIcon = unsafe { LoadIconW(std::ptr::null_mut(), IDI_INFORMATION) };
            data.szTip = wide("auths: a request waits for you");
            data.szInfoTitle = wide(&summary);
            data.szInfo = wide(&body);
            data.dwInfoFlags = match urgency {
                Urgency::Critical => NIIF_WARNING,
                Urgency::Normal => NIIF_INFO,
            };
            NIM_ADD
        }
    };
    // SAFETY: `data` is a fully initialised NOTIFYICONDATAW of its own size, for our window;
    // deleting an icon that is gone already only returns FALSE.
    unsafe { Shell_NotifyIconW(message, &data) != 0 }
}

async fn run(call: Call) -> Result<bool, NotifyError> {
    tokio::task::spawn_blocking(move || shell_notify(call))
        .await
        .map_err(|e| NotifyError::Unavailable(format!("the notification call failed: {e}")))
}

impl Backend for Balloons {
    async fn show(&mut self, replaces: Option<u32>, n: &Notification) -> Result<u32, NotifyError> {
        if let Some(old) = replaces {
            let _ = self.close(old).await;
        }
        self.next = self.next.wrapping_add(1).max(1);
        let call = Call {
            window: self.window()?,
            id: self.next,
            balloon: Some((
                super::clean(&n.summary),
                body_text(&n.body, false),
                n.urgency,
            )),
        };
        if !run(call).await? {
            return Err(NotifyError::Refused(
                "Shell_NotifyIconW refused the icon (no notification area?)".into(),
            ));
        }
        Ok(self.next)
    }

    async fn close(&mut self, id: u32) -> Result<(), NotifyError> {
        let call = Call {
            window: self.window()?,
            id,
            balloon: None,
        };
        run(call).await.map(|_| ())
    }
}
