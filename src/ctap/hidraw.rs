//! Why a FIDO key is not visible on Linux: which `/dev/hidraw*` devices are FIDO devices (their
//! HID report descriptor declares the FIDO usage page 0xF1D0 with usage 0x01, as systemd's
//! `fido_id` and hidapi decide), whether this user can open each (the open is tried; mode, owner
//! and group say why not), and whether a udev rule that grants access is installed (ours,
//! `udev/70-auths-fido.rules`, or systemd's `60-fido-id.rules`). `auths doctor` shows it.
//!
//! Every function takes the file system root, so tests build a fake `/dev` and `/sys` in a
//! temporary directory; the report descriptor (bytes the device chose) is parsed strictly and
//! read bounded ([`MAX_DESCRIPTOR_LEN`]).

use std::path::PathBuf;

/// The Linux kernel's cap on a HID report descriptor (`HID_MAX_DESCRIPTOR_SIZE`).
pub const MAX_DESCRIPTOR_LEN: usize = 4096;

/// At most this many hidraw devices are looked at.
pub const MAX_DEVICES: usize = 256;

/// The FIDO Alliance usage page (FIDO CTAP §11.2.8.1).
pub const FIDO_USAGE_PAGE: u32 = 0xF1D0;

/// Our udev rule's file name (`udev/` in the source tree).
pub const OUR_RULE: &str = "70-auths-fido.rules";

/// systemd's rule that tags FIDO keys for the seat's user (systemd 244 and later).
pub const SYSTEMD_RULE: &str = "60-fido-id.rules";

/// Where udev reads rules from, relative to the root.
pub const RULE_DIRS: &[&str] = &[
    "etc/udev/rules.d",
    "usr/lib/udev/rules.d",
    "lib/udev/rules.d",
];

/// True when the HID report descriptor `desc` declares usage page 0xF1D0 with usage 0x01 (the
/// CTAPHID interface). Items are walked strictly (HID 1.11 §6.2.2.2): an item whose data runs
/// past the end, or a descriptor longer than [`MAX_DESCRIPTOR_LEN`], declares nothing.
pub fn declares_fido(desc: &[u8]) -> bool {
    if desc.len() > MAX_DESCRIPTOR_LEN {
        return false;
    }
    let mut page: Option<u32> = None;
    let mut rest = desc;
    while let Some((&prefix, tail)) = rest.split_first() {
        if prefix == 0xFE {
            // Long item: bDataSize, bLongItemTag, data.
            let Some((&size, tail)) = tail.split_first() else {
                return false;
            };
            let Some(tail) = tail.get(1 + usize::from(size)..) else {
                return false;
            };
            rest = tail;
            continue;
        }
        let size = match prefix & 0x03 {
            3 => 4,
            n => usize::from(n),
        };
        let Some(data) = tail.get(..size) else {
            return false;
        };
        rest = &tail[size..];
        let value = data
            .iter()
            .rev()
            .fold(0u32, |v, b| (v << 8) | u32::from(*b));
        let kind = (prefix >> 2) & 0x03;
        let tag = prefix >> 4;
        match (kind, tag) {
            // Global: Usage Page.
            (1, 0) => page = Some(value),
            // Local: Usage, as a 16-bit usage id on the current page, or an extended
            // (32-bit) usage whose high half is the page.
            (2, 0) => {
                let (usage_page, usage) = if size == 4 {
                    (Some(value >> 16), value & 0xFFFF)
                } else {
                    (page, value)
                };
                if usage_page == Some(FIDO_USAGE_PAGE) && usage == 0x01 {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

/// Whether this user could open a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Opened for reading and writing.
    Yes,
    /// The open failed with permission denied.
    Denied,
    /// The open failed otherwise (the text is the error's, escaped by the caller).
    Error(String),
}

/// One FIDO hidraw device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FidoDevice {
    /// `/dev/hidrawN` (under the root given).
    pub path: PathBuf,
    /// Whether this user can open it.
    pub access: Access,
    /// `crw-rw---- 0:27`, as `ls -ln` would say: mode, owner uid and group gid.
    pub mode: Option<(u32, u32, u32)>,
    /// Whether this user is its owner or in its group (a uaccess ACL may grant it otherwise).
    pub owner_or_group: bool,
}

/// What was found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diagnosis {
    /// hidraw devices seen (FIDO or not).
    pub hidraw_devices: usize,
    /// The FIDO ones.
    pub fido: Vec<FidoDevice>,
    /// Installed rules that grant FIDO keys to the user: ours and/or systemd's, with the
    /// directory they are in.
    pub rules: Vec<PathBuf>,
}

/// Look at `root`'s `/sys/class/hidraw`, `/dev` and udev rule directories, as `uid` in
/// `groups` (the effective gid and the supplementary ones).
#[cfg(unix)]
pub fn diagnose(root: &std::path::Path, uid: u32, groups: &[u32]) -> Diagnosis {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let mut d = Diagnosis::default();
    let mut names: Vec<String> = std::fs::read_dir(root.join("sys/class/hidraw"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| {
            n.strip_prefix("hidraw")
                .is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()))
        })
        .take(MAX_DEVICES)
        .collect();
    names.sort_by_key(|n| n[6..].parse::<u32>().unwrap_or(u32::MAX));
    d.hidraw_devices = names.len();
    for name in names {
        let descriptor = root
            .join("sys/class/hidraw")
            .join(&name)
            .join("device/report_descriptor");
        let mut desc = Vec::new();
        let read = std::fs::File::open(&descriptor)
            .and_then(|f| f.take(MAX_DESCRIPTOR_LEN as u64 + 1).read_to_end(&mut desc));
        if read.is_err() || !declares_fido(&desc) {
            continue;
        }
        let path = root.join("dev").join(&name);
        let access = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
        {
            Ok(_) => Access::Yes,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Access::Denied,
            Err(e) => Access::Error(e.to_string()),
        };
        let md = std::fs::metadata(&path).ok();
        let mode = md.as_ref().map(|m| (m.mode(), m.uid(), m.gid()));
        let owner_or_group = md
            .as_ref()
            .is_some_and(|m| may_open(m.mode(), m.uid(), m.gid(), uid, groups));
        d.fido.push(FidoDevice {
            path,
            access,
            mode,
            owner_or_group,
        });
    }
    for dir in RULE_DIRS {
        for rule in [OUR_RULE, SYSTEMD_RULE] {
            let p = root.join(dir).join(rule);
            if p.is_file() {
                d.rules.push(p);
            }
        }
    }
    d
}

/// Whether the mode bits alone let `uid` in `groups` read and write a file of `owner`:`group`
/// (root always may; ACLs are not looked at).
pub fn may_open(mode: u32, owner: u32, group: u32, uid: u32, groups: &[u32]) -> bool {
    if uid == 0 {
        return true;
    }
    let rw = |shift: u32| (mode >> shift) & 0o6 == 0o6;
    if uid == owner {
        return rw(6);
    }
    if groups.contains(&group) {
        return rw(3);
    }
    rw(0)
}

/// `crw-rw----`-style permission bits (the type letter is `c`).
pub fn mode_string(mode: u32) -> String {
    let mut s = String::from("c");
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 0o7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A YubiKey 5's FIDO interface descriptor (usage page 0xF1D0, usage 1, 64-byte reports).
    const FIDO_DESC: &[u8] = &[
        0x06, 0xD0, 0xF1, 0x09, 0x01, 0xA1, 0x01, 0x09, 0x20, 0x15, 0x00, 0x26, 0xFF, 0x00, 0x75,
        0x08, 0x95, 0x40, 0x81, 0x02, 0x09, 0x21, 0x15, 0x00, 0x26, 0xFF, 0x00, 0x75, 0x08, 0x95,
        0x40, 0x91, 0x02, 0xC0,
    ];
    /// A boot keyboard's start (generic desktop, keyboard).
    const KEYBOARD_DESC: &[u8] = &[0x05, 0x01, 0x09, 0x06, 0xA1, 0x01, 0xC0];

    #[test]
    fn the_fido_usage_page_is_recognised_strictly() {
        assert!(declares_fido(FIDO_DESC));
        assert!(!declares_fido(KEYBOARD_DESC));
        assert!(!declares_fido(&[]));
        // The page without usage 1 (a U2F-less vendor interface) is not CTAPHID.
        assert!(!declares_fido(&[0x06, 0xD0, 0xF1, 0x09, 0x02]));
        // Extended usage: page in the high half.
        assert!(declares_fido(&[0x0B, 0x01, 0x00, 0xD0, 0xF1]));
        // Truncated item data: nothing declared, no panic.
        assert!(!declares_fido(&[0x06, 0xD0]));
        assert!(!declares_fido(&[0xFE, 0x10, 0x00, 0x01]));
        // A long item is skipped.
        let mut long = vec![0xFE, 0x02, 0x00, 0xAA, 0xBB];
        long.extend_from_slice(FIDO_DESC);
        assert!(declares_fido(&long));
        let mut big = FIDO_DESC.to_vec();
        big.resize(MAX_DESCRIPTOR_LEN + 1, 0);
        assert!(!declares_fido(&big), "over the kernel's cap");
    }

    #[test]
    fn mode_bits_alone() {
        assert!(may_open(0o660, 0, 46, 1000, &[1000, 46]));
        assert!(!may_open(0o660, 0, 46, 1000, &[1000]));
        assert!(!may_open(0o600, 0, 0, 1000, &[1000]));
        assert!(may_open(0o666, 0, 0, 1000, &[1000]));
        assert!(may_open(0o600, 1000, 0, 1000, &[1000]));
        assert!(may_open(0o000, 5, 5, 0, &[0]));
        assert_eq!(mode_string(0o660), "crw-rw----");
        assert_eq!(mode_string(0o600), "crw-------");
    }

    #[cfg(unix)]
    #[test]
    fn a_fake_sysfs_tree_is_diagnosed() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let sys = |n: &str, desc: &[u8]| {
            let d = r.join("sys/class/hidraw").join(n).join("device");
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("report_descriptor"), desc).unwrap();
        };
        std::fs::create_dir_all(r.join("dev")).unwrap();
        // hidraw0 a keyboard, hidraw1 and hidraw2 FIDO keys; hidraw2's node is missing.
        sys("hidraw0", KEYBOARD_DESC);
        sys("hidraw1", FIDO_DESC);
        sys("hidraw2", FIDO_DESC);
        sys("not-hidraw", FIDO_DESC);
        for n in ["hidraw0", "hidraw1"] {
            std::fs::write(r.join("dev").join(n), b"").unwrap();
        }
        std::fs::set_permissions(
            r.join("dev/hidraw1"),
            std::fs::Permissions::from_mode(0o660),
        )
        .unwrap();
        let d = diagnose(r, 1000, &[1000]);
        assert_eq!(d.hidraw_devices, 3);
        assert_eq!(d.fido.len(), 2, "{d:?}");
        assert_eq!(d.fido[0].path, r.join("dev/hidraw1"));
        let (mode, _, _) = d.fido[0].mode.unwrap();
        assert_eq!(mode & 0o777, 0o660);
        // Whoever runs the test owns the file; uid 1000 in no group of it may not (unless
        // the test runs as uid 1000).
        let me = nix::unistd::geteuid().as_raw();
        assert_eq!(d.fido[0].owner_or_group, me == 1000);
        // Root opens anything; another user gets permission denied from the kernel.
        if me == 0 {
            assert_eq!(d.fido[0].access, Access::Yes);
        }
        assert!(matches!(d.fido[1].access, Access::Error(_)), "{d:?}");
        assert!(d.fido[1].mode.is_none());
        assert!(d.rules.is_empty());
        // A rule installed: found where udev reads it.
        std::fs::create_dir_all(r.join("usr/lib/udev/rules.d")).unwrap();
        std::fs::write(r.join("usr/lib/udev/rules.d").join(SYSTEMD_RULE), b"").unwrap();
        std::fs::create_dir_all(r.join("etc/udev/rules.d")).unwrap();
        std::fs::write(r.join("etc/udev/rules.d").join(OUR_RULE), b"").unwrap();
        let d = diagnose(r, 1000, &[1000]);
        assert_eq!(
            d.rules,
            [
                r.join("etc/udev/rules.d").join(OUR_RULE),
                r.join("usr/lib/udev/rules.d").join(SYSTEMD_RULE)
            ]
        );
    }
}
