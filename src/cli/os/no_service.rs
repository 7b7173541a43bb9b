//! No service manager we support.

use super::super::service::ServiceManager;

/// The service manager `auths agent install-service` uses.
pub const SERVICE_MANAGER: Option<ServiceManager> = None;
