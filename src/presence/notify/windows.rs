//! Windows: no notifications yet. A toast needs the WinRT `ToastNotificationManager` (the
//! `windows` crate's UI.Notifications, and an AppUserModelID registered by a Start-menu
//! shortcut before a toast shows); that is left for later. `auths agent watch` shows the
//! same events.

use super::{Backend, Notification, NotifyError};

/// The backend of a platform without notifications: every call says so.
pub struct Unsupported;

impl Unsupported {
    /// The same constructor as the other platforms.
    pub fn connect_now() -> Unsupported {
        Unsupported
    }
}

impl Backend for Unsupported {
    async fn show(&mut self, _: Option<u32>, _: &Notification) -> Result<u32, NotifyError> {
        Err(NotifyError::Unsupported)
    }

    async fn close(&mut self, _: u32) -> Result<(), NotifyError> {
        Err(NotifyError::Unsupported)
    }
}
