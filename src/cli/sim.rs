//! `auths sim serve|touch`: a virtual security key behind a Unix socket (a named pipe on
//! Windows).

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};

use super::CliResult;

#[derive(Subcommand, Debug)]
pub enum SimCmd {
    /// Serve a virtual key on a Unix socket that carries raw 64-byte CTAPHID reports (on
    /// Windows a named pipe, --socket \\.\pipe\NAME).
    Serve {
        /// Data socket path (the control socket is PATH.ctl); on Windows \\.\pipe\NAME.
        #[arg(long, value_name = "P")]
        socket: PathBuf,
        /// State file (master secret and counter), created with mode 0600.
        #[arg(long, value_name = "F")]
        state: PathBuf,
        /// How the virtual user answers a request for a touch.
        #[arg(long, value_enum, default_value_t = TouchArg::Auto)]
        touch: TouchArg,
        /// With --touch auto: how long the virtual user takes to touch.
        #[arg(long, value_name = "N", default_value_t = 0)]
        touch_delay_ms: u64,
        /// Support clientPIN with this PIN already set (a test PIN: it shows in `ps`).
        #[arg(long, value_name = "PIN")]
        pin: Option<String>,
        /// Support clientPIN with this PIN/UV auth protocol only (default with --pin: 2 then 1).
        #[arg(long, value_name = "1|2", value_parser = clap::value_parser!(u8).range(1..=2))]
        pin_protocol: Option<u8>,
        /// alwaysUv: every request needs the PIN (implies clientPIN support).
        #[arg(long)]
        always_uv: bool,
        /// Built-in user verification (a fingerprint): the virtual finger is the touch.
        #[arg(long)]
        builtin_uv: bool,
        /// getInfo maxCredentialCountInList (default 8): longer allowLists are refused, so the
        /// client must split them.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=64))]
        max_creds_in_list: Option<u64>,
        /// Make credentials with this credProtect level unless asked otherwise (3: every
        /// credential needs the user verified).
        #[arg(long, value_name = "1|2|3", value_parser = clap::value_parser!(u8).range(1..=3))]
        cred_protect: Option<u8>,
        /// Behave as a CTAP 2.0 key (like a YubiKey 5 before firmware 5.4): getPinToken only,
        /// and makeCredential needs the PIN once one is set.
        #[arg(long, value_name = "V", value_parser = ["2.0", "2.1"], default_value = "2.1")]
        fido_version: String,
        /// Behave as a U2F-only key (like a YubiKey 4 or NEO): no CTAP2, U2F over CTAPHID_MSG,
        /// no PIN.
        #[arg(long, conflicts_with_all = ["pin", "pin_protocol", "always_uv"])]
        u2f_only: bool,
    },
    /// Press the virtual key's button (error if nothing waits for a touch).
    Touch {
        /// Data socket path given to `auths sim serve`.
        #[arg(long, value_name = "P")]
        socket: PathBuf,
    },
    /// Another program holds the virtual key for a while (a browser waiting for a touch):
    /// every request gets CHANNEL_BUSY until then.
    Busy {
        /// Data socket path given to `auths sim serve`.
        #[arg(long, value_name = "P")]
        socket: PathBuf,
        /// How long, at most 600000 ms.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(0..=600_000))]
        for_ms: u64,
    },
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TouchArg {
    /// Touch at once (or after --touch-delay-ms).
    Auto,
    /// Never touch: requests time out.
    Never,
    /// Wait for `auths sim touch`.
    Manual,
}

pub fn run(cmd: SimCmd) -> CliResult {
    match cmd {
        SimCmd::Serve {
            socket,
            state,
            touch,
            touch_delay_ms,
            pin,
            pin_protocol,
            always_uv,
            builtin_uv,
            fido_version,
            u2f_only,
            max_creds_in_list,
            cred_protect,
        } => {
            use auths_presence::ctap::virtual_key::{StateLocation, TouchMode, VirtualKeyConfig};
            let touch_mode = match touch {
                TouchArg::Auto => TouchMode::Auto {
                    delay: std::time::Duration::from_millis(touch_delay_ms),
                },
                TouchArg::Never => TouchMode::Never,
                TouchArg::Manual => TouchMode::Manual,
            };
            let pin = pin_config(
                pin,
                pin_protocol,
                always_uv,
                builtin_uv,
                fido_version == "2.0",
            )?;
            let config = VirtualKeyConfig {
                state: StateLocation::File(state),
                touch_mode,
                pin,
                u2f_only,
                max_credentials_in_list: max_creds_in_list.map(|n| n as usize),
                cred_protect,
                ..VirtualKeyConfig::default()
            };
            serve(socket, touch, config)
        }
        SimCmd::Touch { socket } => touch_cmd(socket),
        SimCmd::Busy { socket, for_ms } => {
            sim_available()?;
            auths_presence::ctap::virtual_key::sim_busy(
                &socket,
                std::time::Duration::from_millis(for_ms),
            )?;
            eprintln!(
                "the virtual key at {} is busy with another program for {for_ms} ms",
                socket.display()
            );
            Ok(())
        }
    }
}

/// clientPIN support when `--pin` or `--pin-protocol` asks for it.
fn pin_config(
    pin: Option<String>,
    protocol: Option<u8>,
    always_uv: bool,
    builtin_uv: bool,
    ctap_2_0: bool,
) -> Result<Option<auths_presence::ctap::virtual_key::PinConfig>, Box<dyn std::error::Error>> {
    use auths_presence::ctap::pin::PinProtocol;
    use auths_presence::ctap::virtual_key::client_pin::MIN_PIN_LENGTH;
    use auths_presence::ctap::virtual_key::PinConfig;
    if pin.is_none() && protocol.is_none() && !always_uv && !builtin_uv && !ctap_2_0 {
        return Ok(None);
    }
    if let Some(p) = &pin {
        if p.len() < MIN_PIN_LENGTH || p.len() > 63 {
            return Err(format!(
                "--pin must be {MIN_PIN_LENGTH} to 63 bytes long, as a real key requires"
            )
            .into());
        }
    }
    let protocols = match protocol.map(u64::from).and_then(PinProtocol::from_number) {
        Some(p) => vec![p],
        // CTAP 2.0 has protocol One only.
        None if ctap_2_0 => vec![PinProtocol::One],
        None => PinConfig::default().protocols,
    };
    Ok(Some(PinConfig {
        protocols,
        pin: pin.map(|p| zeroize::Zeroizing::new(p.into_bytes())),
        always_uv,
        builtin_uv,
        ctap_2_0,
    }))
}

fn serve(
    socket: PathBuf,
    touch: TouchArg,
    config: auths_presence::ctap::virtual_key::VirtualKeyConfig,
) -> CliResult {
    sim_available()?;
    use auths_presence::ctap::virtual_key::{serve_unix, StateLocation, VirtualKey};
    let state = match &config.state {
        StateLocation::File(p) => p.display().to_string(),
        StateLocation::InMemory => "in memory".to_owned(),
    };
    let u2f_only = config.u2f_only;
    // Block the stop signals before any thread starts, so every thread inherits the mask and
    // the signal is taken by `wait` below instead of killing the process mid-write.
    let signals = super::os::StopSignals::block()?;
    let key = VirtualKey::start(config)?;
    let server = serve_unix(&socket, &key)?;
    eprintln!(
        "virtual security key (NOT hardware{}) listening on {} (touch: {:?}, state {})",
        if u2f_only { ", U2F only" } else { "" },
        socket.display(),
        touch,
        state
    );
    eprintln!(
        "use it with --device sim:{}; stop with Ctrl-C",
        socket.display()
    );
    signals.wait()?;
    server.shutdown();
    key.shutdown();
    Ok(())
}

fn touch_cmd(socket: PathBuf) -> CliResult {
    sim_available()?;
    auths_presence::ctap::virtual_key::sim_touch(&socket)?;
    eprintln!("touched the virtual key at {}", socket.display());
    Ok(())
}

/// The sim needs Unix sockets (named pipes on Windows).
fn sim_available() -> CliResult {
    if auths_presence::ctap::virtual_key::SIM_AVAILABLE {
        Ok(())
    } else {
        Err("auths sim needs Unix sockets; it is not available on this platform".into())
    }
}
