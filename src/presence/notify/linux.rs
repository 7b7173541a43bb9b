//! The freedesktop Notifications interface (Desktop Notifications Specification 1.2) on the
//! session bus, through zbus (pure Rust: no libdbus to build against).

use std::collections::HashMap;

use zbus::zvariant::Value;

use super::{body_text, Backend, Notification, NotifyError, Urgency};

const DEST: &str = "org.freedesktop.Notifications";
const PATH: &str = "/org/freedesktop/Notifications";
const IFACE: &str = "org.freedesktop.Notifications";

/// A session-bus client of the notification server, connected on first use (and again after
/// a failed connection).
pub struct Dbus {
    conn: Option<zbus::Connection>,
    /// A socket connected to the bus at [`Dbus::connect_now`], not yet authenticated.
    stream: Option<std::os::unix::net::UnixStream>,
    /// The server interprets body markup (its capabilities say "body-markup").
    markup: bool,
}

impl Dbus {
    /// A client of the session bus (`DBUS_SESSION_BUS_ADDRESS`, else `$XDG_RUNTIME_DIR/bus`).
    /// When that is a Unix socket, it is connected here, synchronously (a local connect does
    /// not wait for the bus to answer), so that a bus that is there sees the agent before the
    /// agent serves anyone; the D-Bus handshake happens later, on the notifier's task.
    pub fn connect_now() -> Dbus {
        let stream = zbus::Address::session()
            .ok()
            .and_then(|address| match address.transport() {
                zbus::address::Transport::Unix(unix) => match unix.path() {
                    zbus::address::transport::UnixSocket::File(path) => {
                        std::os::unix::net::UnixStream::connect(path).ok()
                    }
                    _ => None,
                },
                _ => None,
            })
            .and_then(|s| s.set_nonblocking(true).ok().map(|()| s));
        Dbus {
            conn: None,
            stream,
            markup: false,
        }
    }

    async fn connection(&mut self) -> Result<zbus::Connection, NotifyError> {
        if let Some(c) = &self.conn {
            return Ok(c.clone());
        }
        let builder = match self.stream.take() {
            Some(s) => {
                let s = tokio::net::UnixStream::from_std(s)
                    .map_err(|e| NotifyError::Unavailable(format!("session bus: {e}")))?;
                zbus::connection::Builder::unix_stream(s)
            }
            None => zbus::connection::Builder::session()
                .map_err(|e| NotifyError::Unavailable(format!("session bus: {e}")))?,
        };
        let conn = builder
            .method_timeout(super::CALL_BOUND)
            .build()
            .await
            .map_err(|e| NotifyError::Unavailable(format!("session bus: {e}")))?;
        // Whether the body may hold markup decides how `<` and `&` are neutralised; a server
        // that does not answer is taken to interpret none (and gets ‹ › instead of tags).
        let caps: Vec<String> = conn
            .call_method(Some(DEST), PATH, Some(IFACE), "GetCapabilities", &())
            .await
            .ok()
            .and_then(|reply| reply.body().deserialize().ok())
            .unwrap_or_default();
        self.markup = caps.iter().any(|c| c == "body-markup");
        self.conn = Some(conn.clone());
        Ok(conn)
    }
}

impl Dbus {
    /// A call failed: unless the server itself answered with an error, the connection is
    /// dropped, so the next call connects again (the bus restarted, the session changed).
    fn failed(&mut self, e: zbus::Error) -> NotifyError {
        if !matches!(e, zbus::Error::MethodError(..)) {
            self.conn = None;
        }
        refused(e)
    }
}

fn refused(e: zbus::Error) -> NotifyError {
    match e {
        zbus::Error::MethodError(name, text, _) => NotifyError::Refused(format!(
            "{}{}",
            name.as_str(),
            text.map(|t| format!(": {t}")).unwrap_or_default()
        )),
        other => NotifyError::Refused(other.to_string()),
    }
}

impl Backend for Dbus {
    async fn show(&mut self, replaces: Option<u32>, n: &Notification) -> Result<u32, NotifyError> {
        let conn = self.connection().await?;
        let urgency: u8 = match n.urgency {
            Urgency::Normal => 1,
            Urgency::Critical => 2,
        };
        let mut hints: HashMap<&str, Value<'_>> = HashMap::new();
        hints.insert("urgency", Value::U8(urgency));
        hints.insert("category", Value::from("device"));
        let expire = i32::try_from(n.expire.as_millis())
            .unwrap_or(i32::MAX)
            .max(1);
        let body = body_text(&n.body, self.markup);
        let actions: Vec<&str> = Vec::new();
        let reply = conn
            .call_method(
                Some(DEST),
                PATH,
                Some(IFACE),
                "Notify",
                &(
                    "auths",
                    replaces.unwrap_or(0),
                    "security-high",
                    super::clean(&n.summary),
                    body,
                    actions,
                    hints,
                    expire,
                ),
            )
            .await
            .map_err(|e| self.failed(e))?;
        reply
            .body()
            .deserialize::<u32>()
            .map_err(|e| NotifyError::Refused(format!("Notify answered no id: {e}")))
    }

    async fn close(&mut self, id: u32) -> Result<(), NotifyError> {
        let conn = self.connection().await?;
        match conn
            .call_method(Some(DEST), PATH, Some(IFACE), "CloseNotification", &(id,))
            .await
        {
            Ok(_) => Ok(()),
            // The specification's answer when the notification is gone already (the user
            // dismissed it): nothing left to withdraw.
            Err(zbus::Error::MethodError(..)) => Ok(()),
            Err(e) => Err(self.failed(e)),
        }
    }
}
