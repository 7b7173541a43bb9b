//! The one verification path (WebAuthn §7.2) over a getAssertion response from a device.
//! Input: flags (bit 0 require UV, bit 1 a second allowed credential), the stored sign count
//! (u32 BE), the rp id (u8 length), the client data hash (32), the enrolled COSE key (u16 BE
//! length), the enrolled credential id (u8 length), then the response CBOR (no status byte).
#![no_main]
use auths_presence::ctap::command::GetAssertionResponse;
use auths_presence::ctap::cose::CoseKey;
use auths_presence::presence::verify::{verify_assertion, AllowedCredential, Expected};
use libfuzzer_sys::fuzz_target;

fn take<'a>(data: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if data.len() < n {
        return None;
    }
    let (head, tail) = data.split_at(n);
    *data = tail;
    Some(head)
}

fn parse(mut data: &[u8]) -> Option<()> {
    let d = &mut data;
    let flags = take(d, 1)?[0];
    let stored = u32::from_be_bytes(take(d, 4)?.try_into().ok()?);
    let n = usize::from(take(d, 1)?[0]);
    let rp_id = String::from_utf8_lossy(take(d, n)?).into_owned();
    let client_data_hash: [u8; 32] = take(d, 32)?.try_into().ok()?;
    let m = usize::from(u16::from_be_bytes(take(d, 2)?.try_into().ok()?));
    let public_key = CoseKey::from_cbor_bytes(take(d, m)?).ok()?;
    let k = usize::from(take(d, 1)?[0]);
    let id = take(d, k)?.to_vec();
    let response = GetAssertionResponse::decode(d).ok()?;
    let mut allowed = vec![AllowedCredential {
        id,
        public_key: public_key.clone(),
        sign_count: stored,
    }];
    if flags & 2 != 0 {
        allowed.push(AllowedCredential {
            id: b"another credential".to_vec(),
            public_key,
            sign_count: 0,
        });
    }
    let expected = Expected {
        rp_id: &rp_id,
        client_data_hash,
        allowed: &allowed,
        require_uv: flags & 1 != 0,
    };
    if let Ok(v) = verify_assertion(&expected, &response) {
        assert!(v.flags().user_present());
        assert!(!expected.require_uv || v.flags().user_verified());
        assert!(allowed.iter().any(|a| a.id == v.credential_id()));
        assert!(stored == 0 || v.sign_count() > stored || v.sign_count() == 0);
    }
    Some(())
}

fuzz_target!(|data: &[u8]| {
    let _ = parse(data);
});
