//! HID report descriptors as a device (or whoever wrote the sysfs file) chose them: the FIDO
//! usage-page check `auths doctor` runs over `/sys/class/hidraw/*/device/report_descriptor`.
#![no_main]
use auths_presence::ctap::hidraw::{declares_fido, MAX_DESCRIPTOR_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let fido = declares_fido(data);
    if fido {
        assert!(data.len() <= MAX_DESCRIPTOR_LEN);
        // The declaration is about the items seen: more bytes after it cannot undo it.
        let mut longer = data.to_vec();
        longer.push(0xC0);
        assert!(longer.len() > MAX_DESCRIPTOR_LEN || declares_fido(&longer));
    }
});
