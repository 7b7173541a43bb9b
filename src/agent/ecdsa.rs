//! ECDSA private scalars as OpenSSH writes them, put in the fixed-size form `ssh-key` reads.
//!
//! OpenSSH writes the private scalar `d` of an ECDSA key as an SSH `mpint` (RFC 4251 §5:
//! minimal two's complement, so leading zero bytes are dropped and a `0x00` sign byte is added
//! when the top bit is set), both in agent messages (draft-miller-ssh-agent §3.2,
//! `SSH_AGENTC_ADD_IDENTITY`) and in private key files (OpenSSH `PROTOCOL.key`). `ssh-key` 0.6
//! reads exactly the field size (or one more byte, a zero), so a scalar whose first byte is
//! zero (one P-256 key in 256; one P-521 key in two) arrives short and is refused with
//! `Encoding(Length)`. The functions here rewrite that one field, strictly, before `ssh-key`
//! sees the bytes:
//!
//! - [`fixed_scalar`]: one mpint to the curve's field size. Accepted: the minimal form, the
//!   minimal form with its sign byte, and anything in between up to the field size (the
//!   fixed-size form `ssh-key` itself writes). Refused: a negative mpint, more than the field
//!   size plus a needed sign byte, zero, and (P-256) a value not below the curve order.
//! - [`normalise_add_request`]: the scalar of an `SSH_AGENTC_ADD_IDENTITY` or
//!   `SSH_AGENTC_ADD_ID_CONSTRAINED` body.
//! - [`normalise_private_section`]: the scalar of a `PROTOCOL.key` private section, padded
//!   again.
//!
//! Anything that does not parse as far as the scalar is left untouched, for `ssh-key` to refuse
//! as before; nothing here panics or allocates more than the input's size. Whether the public
//! point is `d·G` is checked when a key is added (`keys::KeyStore::add`).

use thiserror::Error;
use zeroize::Zeroizing;

/// Why an ECDSA private scalar is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ScalarError {
    /// The mpint has its top bit set: a negative number.
    #[error("the ECDSA private scalar is a negative mpint")]
    Negative,
    /// More bytes than the curve's field size (plus one sign byte when the top bit is set).
    #[error("the ECDSA private scalar is {len} bytes long; a {size}-byte field allows at most {size} (and a sign byte)")]
    TooLong {
        /// The mpint's length.
        len: usize,
        /// The curve's field size in bytes.
        size: usize,
    },
    /// The scalar is zero.
    #[error("the ECDSA private scalar is zero")]
    Zero,
    /// The scalar is not below the curve order.
    #[error("the ECDSA private scalar is not below the curve order")]
    NotBelowOrder,
}

/// The field size of the curve `name` (RFC 5656 §10.1 identifiers).
fn curve_size(name: &[u8]) -> Option<usize> {
    match name {
        b"nistp256" => Some(32),
        b"nistp384" => Some(48),
        b"nistp521" => Some(66),
        _ => None,
    }
}

/// The curve of an ECDSA key or certificate algorithm name (RFC 5656 §6.2, OpenSSH
/// `PROTOCOL.certkeys`), and whether it is the certificate form.
fn ecdsa_curve(algorithm: &[u8]) -> Option<(&[u8], bool)> {
    let rest = algorithm.strip_prefix(b"ecdsa-sha2-")?;
    match rest.strip_suffix(b"-cert-v01@openssh.com") {
        Some(curve) => Some((curve, true)),
        None => Some((rest, false)),
    }
}

/// The mpint `mpint` (its bytes, without the length) as a big-endian scalar of exactly `size`
/// bytes. See the module documentation for the forms accepted.
pub fn fixed_scalar(mpint: &[u8], size: usize) -> Result<Zeroizing<Vec<u8>>, ScalarError> {
    if mpint.first().is_some_and(|b| b & 0x80 != 0) {
        return Err(ScalarError::Negative);
    }
    let magnitude = if mpint.len() == size + 1 {
        // One byte over the field size: only as the sign byte of a value with its top bit set.
        match mpint {
            [0, next, ..] if next & 0x80 != 0 => &mpint[1..],
            _ => {
                return Err(ScalarError::TooLong {
                    len: mpint.len(),
                    size,
                })
            }
        }
    } else if mpint.len() > size {
        return Err(ScalarError::TooLong {
            len: mpint.len(),
            size,
        });
    } else {
        mpint
    };
    let mut out = Zeroizing::new(vec![0u8; size]);
    out[size - magnitude.len()..].copy_from_slice(magnitude);
    if out.iter().all(|&b| b == 0) {
        return Err(ScalarError::Zero);
    }
    if size == 32 && p256::SecretKey::from_slice(&out).is_err() {
        return Err(ScalarError::NotBelowOrder);
    }
    Ok(out)
}

/// A cursor over SSH wire data (RFC 4251 §5) that reports a short read as `None`.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.rest.len() < n {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.u32()?).ok()?;
        self.take(len)
    }
}

/// Where the scalar of an ECDSA key starts, its bytes and its field size: `c` stands at the
/// algorithm name of a key (`string alg, string curve, string Q, mpint d`) or a certificate
/// (`string alg, string cert, mpint d`). `None` when the key is not ECDSA or the bytes end
/// early.
fn find_scalar<'a>(c: &mut Cursor<'a>) -> Option<(&'a [u8], usize)> {
    let (curve, cert) = ecdsa_curve(c.string()?)?;
    let size = curve_size(curve)?;
    if cert {
        c.string()?;
    } else {
        // The curve name again: one that differs from the algorithm's is ssh-key's to refuse.
        if c.string()? != curve {
            return None;
        }
        c.string()?; // Q.
    }
    Some((c.string()?, size))
}

/// `head || mpint(fixed) || tail`, zeroized on drop, with room for `spare` more bytes (a
/// secret is never left behind in memory a growing vector gave back).
fn splice(head: &[u8], fixed: &[u8], tail: &[u8], spare: usize) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(
        head.len() + 4 + fixed.len() + tail.len() + spare,
    ));
    out.extend_from_slice(head);
    // The fixed scalar is at most 66 bytes.
    out.extend_from_slice(&(fixed.len() as u32).to_be_bytes());
    out.extend_from_slice(fixed);
    out.extend_from_slice(tail);
    out
}

/// An `SSH_AGENTC_ADD_IDENTITY` (17) or `SSH_AGENTC_ADD_ID_CONSTRAINED` (25) body with an ECDSA
/// key or certificate, its scalar rewritten to the field size. `Ok(None)`: not such a body, or
/// one that ends before its scalar (left to the decoder to refuse).
pub fn normalise_add_request(body: &[u8]) -> Result<Option<Zeroizing<Vec<u8>>>, ScalarError> {
    let mut c = Cursor { rest: body };
    if !matches!(c.take(1), Some([17 | 25])) {
        return Ok(None);
    }
    let Some((mpint, size)) = find_scalar(&mut c) else {
        return Ok(None);
    };
    let fixed = fixed_scalar(mpint, size)?;
    let head = &body[..body.len() - c.rest.len() - mpint.len() - 4];
    Ok(Some(splice(head, &fixed, c.rest, 0)))
}

/// A private section of an OpenSSH key file (`PROTOCOL.key` §3, decrypted: `uint32 checkint`
/// twice, the key, `string comment`, padding `1, 2, 3, …` to `block_size`) holding one ECDSA
/// key, its scalar rewritten to the field size and padded again to `out_block_size`.
/// `Ok(None)`: not an ECDSA key, or a section that does not parse (left to `ssh-key`).
pub fn normalise_private_section(
    section: &[u8],
    block_size: usize,
    out_block_size: usize,
) -> Result<Option<Zeroizing<Vec<u8>>>, ScalarError> {
    // A section not aligned to its cipher's blocks is ssh-key's to refuse.
    if block_size == 0 || section.len() % block_size != 0 {
        return Ok(None);
    }
    let mut c = Cursor { rest: section };
    // The two checkints must agree (a wrong passphrase decrypts to noise).
    if c.u32().is_none() || c.u32() != section.first_chunk::<4>().map(|b| u32::from_be_bytes(*b)) {
        return Ok(None);
    }
    let Some((mpint, size)) = find_scalar(&mut c) else {
        return Ok(None);
    };
    let head = &section[..section.len() - c.rest.len() - mpint.len() - 4];
    let after = c.rest;
    if c.string().is_none() {
        return Ok(None);
    }
    let padding = c.rest;
    let padding_ok =
        padding.len() < block_size && padding.iter().zip(1u8..).all(|(&b, want)| b == want);
    if !padding_ok {
        return Ok(None);
    }
    let comment = &after[..after.len() - padding.len()];
    let fixed = fixed_scalar(mpint, size)?;
    let block = out_block_size.clamp(1, 255);
    let mut out = splice(head, &fixed, comment, block);
    let pad = (block - out.len() % block) % block;
    out.extend((1u8..).take(pad));
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// n, the order of P-256 (SEC 2 §2.4.2).
    const P256_ORDER: &str = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";

    #[test]
    fn mpint_forms_of_a_p256_scalar() {
        let mut short = [0x11u8; 32];
        short[0] = 0;
        let fixed = |m: &[u8]| fixed_scalar(m, 32).map(|v| v.to_vec());
        // Minimal forms: 31 and 30 bytes, padded back to 32.
        assert_eq!(fixed(&short[1..]), Ok(short.to_vec()));
        short[1] = 0;
        assert_eq!(fixed(&short[2..]), Ok(short.to_vec()));
        // The fixed-size form ssh-key writes (leading zeros kept) is accepted too.
        assert_eq!(fixed(&short), Ok(short.to_vec()));
        // Top bit set: 33 bytes with the sign byte.
        let mut high = [0x22u8; 33];
        high[0] = 0;
        high[1] = 0x80;
        assert_eq!(fixed(&high), Ok(high[1..].to_vec()));
        // Without the sign byte it is negative; a sign byte before a clear top bit, or any
        // 34th byte, is over-long.
        assert_eq!(fixed(&high[1..]), Err(ScalarError::Negative));
        assert_eq!(fixed(&[0x80]), Err(ScalarError::Negative));
        let mut unneeded = [0x22u8; 33];
        unneeded[0] = 0;
        assert_eq!(
            fixed(&unneeded),
            Err(ScalarError::TooLong { len: 33, size: 32 })
        );
        assert_eq!(
            fixed(&[0; 34]),
            Err(ScalarError::TooLong { len: 34, size: 32 })
        );
        // Zero, however written; the order and above.
        assert_eq!(fixed(&[]), Err(ScalarError::Zero));
        assert_eq!(fixed(&[0; 32]), Err(ScalarError::Zero));
        let n = hex::decode(P256_ORDER).unwrap();
        let mut with_sign = vec![0];
        with_sign.extend_from_slice(&n);
        assert_eq!(fixed(&with_sign), Err(ScalarError::NotBelowOrder));
        let mut below = n.clone();
        below[31] -= 1;
        with_sign[32] -= 1;
        assert_eq!(fixed(&with_sign), Ok(below));
    }

    #[test]
    fn other_curves_are_padded_to_their_field() {
        assert_eq!(fixed_scalar(&[1], 48).unwrap()[47], 1);
        let p521 = fixed_scalar(&[1; 65], 66).unwrap();
        assert_eq!((p521.len(), p521[0], p521[1]), (66, 0, 1));
        assert_eq!(
            fixed_scalar(&[1; 67], 66),
            Err(ScalarError::TooLong { len: 67, size: 66 })
        );
    }

    /// A `PROTOCOL.key` private section of a P-256 key, its scalar the mpint bytes `mpint`,
    /// padded to `block`.
    fn section(mpint: &[u8], checkint2: u32, block: usize) -> Vec<u8> {
        let string = |out: &mut Vec<u8>, b: &[u8]| {
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(b);
        };
        let mut s = 7u32.to_be_bytes().to_vec();
        s.extend_from_slice(&checkint2.to_be_bytes());
        string(&mut s, b"ecdsa-sha2-nistp256");
        string(&mut s, b"nistp256");
        string(&mut s, &[4; 65]);
        string(&mut s, mpint);
        string(&mut s, b"comment");
        let mut pad = 1;
        while s.len() % block != 0 {
            s.push(pad);
            pad += 1;
        }
        s
    }

    #[test]
    fn private_sections_are_fixed_and_padded_again() {
        for block in [8, 16] {
            let out = normalise_private_section(&section(&[0x11; 31], 7, block), block, 8);
            let mut want = section(&[0x11; 32], 7, 8);
            want[8 + 23 + 12 + 69 + 4] = 0; // 31 bytes of 0x11, padded with one zero
            assert_eq!(out.unwrap().unwrap().to_vec(), want, "block {block}");
        }
        // Checkints that differ (a wrong passphrase), a section not aligned to its blocks, bad
        // padding: left to ssh-key.
        assert_eq!(
            normalise_private_section(&section(&[0x11; 31], 8, 8), 8, 8),
            Ok(None)
        );
        let mut unaligned = section(&[0x11; 31], 7, 8);
        unaligned.push(9);
        assert_eq!(normalise_private_section(&unaligned, 8, 8), Ok(None));
        let mut bad_pad = section(&[0x11; 31], 7, 8);
        let last = bad_pad.len() - 1;
        bad_pad[last] ^= 0x40;
        assert_eq!(normalise_private_section(&bad_pad, 8, 8), Ok(None));
        assert_eq!(
            normalise_private_section(&section(&[0x91; 32], 7, 8), 8, 8),
            Err(ScalarError::Negative)
        );
        assert_eq!(normalise_private_section(&[], 8, 8), Ok(None));
    }

    #[test]
    fn bodies_that_are_not_ecdsa_adds_are_left_alone() {
        for body in [
            &b""[..],
            b"\x11",
            b"\x0b",
            b"\x11\0\0\0\x0bssh-ed25519\0\0\0\x20",
            b"\x11\0\0\0\x13ecdsa-sha2-nistp256\0\0\0\x08nistp256\0\0\0\x41",
            b"\x11\0\0\0\x13ecdsa-sha2-nistp999\0\0\0\x08nistp999\0\0\0\0\0\0\0\x01\x01",
            b"\x11\xff\xff\xff\xff",
        ] {
            assert_eq!(normalise_add_request(body), Ok(None), "{body:?}");
        }
    }
}
