//! CBOR as CTAP2 uses it (CTAP 2.1 §8 "Message Encoding", "CTAP2 canonical CBOR encoding form").
//!
//! Out: canonical form (shortest lengths, definite lengths, map keys sorted by major type, then
//! encoded length, then bytes). In: strict, since a security key that sends something else is
//! either broken or lying: non-minimal lengths, indefinite lengths, tags, floats, `undefined`,
//! duplicate or unsorted map keys, invalid UTF-8, trailing bytes and nesting deeper than
//! [`MAX_DEPTH`] are all refused with a typed error.
//!
//! We keep our own small codec rather than `ciborium`: ciborium's `Value` accepts non-canonical
//! input and hides how it was encoded (a `59 00 a2` length decodes the same as `58 a2`), so the
//! strictness checks need the encoding-level view this decoder has.

use thiserror::Error;

/// Deepest nesting accepted (CTAP2 messages nest four levels at most; this leaves room).
pub const MAX_DEPTH: usize = 16;

/// A CBOR data item in the subset CTAP2 uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Major type 0.
    Unsigned(u64),
    /// Major type 1: the value is `-1 - n`.
    Negative(u64),
    /// Major type 2.
    Bytes(Vec<u8>),
    /// Major type 3.
    Text(String),
    /// Major type 4.
    Array(Vec<Value>),
    /// Major type 5, in the order the pairs were decoded (or will be sorted on encode).
    Map(Vec<(Value, Value)>),
    /// `false` / `true`.
    Bool(bool),
    /// `null`.
    Null,
}

/// Input that is not CTAP2 canonical CBOR.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CborError {
    /// The input ended inside an item.
    #[error("CBOR input ends early (needed {needed} more bytes at offset {offset})")]
    Truncated {
        /// Where the item started or was being read.
        offset: usize,
        /// How many bytes were missing.
        needed: usize,
    },
    /// Bytes follow the item.
    #[error("{0} trailing bytes after the CBOR item")]
    TrailingBytes(usize),
    /// A length or integer was not encoded in its shortest form.
    #[error("non-minimal CBOR length or integer encoding at offset {0}")]
    NonMinimal(usize),
    /// Indefinite-length item.
    #[error("indefinite-length CBOR item at offset {0}")]
    Indefinite(usize),
    /// A tag, float, undefined or reserved simple value.
    #[error("CBOR item type not allowed in CTAP2 (initial byte 0x{byte:02x} at offset {offset})")]
    Unsupported {
        /// The initial byte.
        byte: u8,
        /// Its offset.
        offset: usize,
    },
    /// Text string that is not UTF-8.
    #[error("CBOR text string is not valid UTF-8 at offset {0}")]
    InvalidUtf8(usize),
    /// Map keys not in canonical order.
    #[error("CBOR map keys out of canonical order at offset {0}")]
    UnsortedKeys(usize),
    /// The same map key twice.
    #[error("duplicate CBOR map key at offset {0}")]
    DuplicateKey(usize),
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("CBOR nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    /// A length that cannot fit in memory or in the input.
    #[error("CBOR length {len} at offset {offset} exceeds the input")]
    LengthTooLarge {
        /// The declared length.
        len: u64,
        /// Where it was declared.
        offset: usize,
    },
}

impl Value {
    /// An integer of either sign.
    pub fn int(i: i64) -> Value {
        if i >= 0 {
            Value::Unsigned(i as u64)
        } else {
            Value::Negative((-1 - i) as u64)
        }
    }

    /// A text string.
    pub fn text(s: &str) -> Value {
        Value::Text(s.to_owned())
    }

    /// A byte string.
    pub fn bytes(b: &[u8]) -> Value {
        Value::Bytes(b.to_vec())
    }

    /// The integer value, when it fits an i64.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Unsigned(u) => i64::try_from(*u).ok(),
            Value::Negative(n) => i64::try_from(*n).ok().map(|n| -1 - n),
            _ => None,
        }
    }

    /// The unsigned value.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Unsigned(u) => Some(*u),
            _ => None,
        }
    }

    /// The bytes of a byte string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The text of a text string.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(t) => Some(t),
            _ => None,
        }
    }

    /// The boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The items of an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The pairs of a map.
    pub fn as_map(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// Look up `key` in a map (None if this is not a map or the key is absent).
    pub fn get(&self, key: &Value) -> Option<&Value> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Look up an integer key in a map (CTAP2 request/response maps use small integers).
    pub fn get_int(&self, key: i64) -> Option<&Value> {
        self.get(&Value::int(key))
    }

    /// Look up a text key in a map.
    pub fn get_text(&self, key: &str) -> Option<&Value> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_text() == Some(key))
            .map(|(_, v)| v)
    }
}

/// Encode in CTAP2 canonical form. Map keys are sorted here, whatever order they were given in.
pub fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(v, &mut out);
    out
}

fn head(major: u8, n: u64, out: &mut Vec<u8>) {
    let m = major << 5;
    if n < 24 {
        out.push(m | n as u8);
    } else if n <= 0xff {
        out.extend_from_slice(&[m | 24, n as u8]);
    } else if n <= 0xffff {
        out.push(m | 25);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= 0xffff_ffff {
        out.push(m | 26);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn encode_into(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Unsigned(u) => head(0, *u, out),
        Value::Negative(n) => head(1, *n, out),
        Value::Bytes(b) => {
            head(2, b.len() as u64, out);
            out.extend_from_slice(b);
        }
        Value::Text(t) => {
            head(3, t.len() as u64, out);
            out.extend_from_slice(t.as_bytes());
        }
        Value::Array(a) => {
            head(4, a.len() as u64, out);
            for item in a {
                encode_into(item, out);
            }
        }
        Value::Map(m) => {
            head(5, m.len() as u64, out);
            let mut pairs: Vec<(Vec<u8>, &Value)> = m.iter().map(|(k, v)| (encode(k), v)).collect();
            pairs.sort_by(|a, b| canonical_cmp(&a.0, &b.0));
            for (k, v) in pairs {
                out.extend_from_slice(&k);
                encode_into(v, out);
            }
        }
        Value::Bool(false) => out.push(0xf4),
        Value::Bool(true) => out.push(0xf5),
        Value::Null => out.push(0xf6),
    }
}

/// CTAP2 canonical key order on encoded keys: major type, then encoded length, then bytes.
fn canonical_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let major = |k: &[u8]| k.first().map(|b| b >> 5).unwrap_or(0);
    major(a)
        .cmp(&major(b))
        .then(a.len().cmp(&b.len()))
        .then_with(|| a.cmp(b))
}

/// Decode exactly one item that spans all of `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Value, CborError> {
    let (v, used) = decode_prefix(bytes)?;
    if used != bytes.len() {
        return Err(CborError::TrailingBytes(bytes.len() - used));
    }
    Ok(v)
}

/// Decode one item at the start of `bytes`; returns it and how many bytes it used. Used where
/// CBOR is embedded in a binary structure (the COSE key inside attested credential data).
pub fn decode_prefix(bytes: &[u8]) -> Result<(Value, usize), CborError> {
    let mut d = Decoder { buf: bytes, pos: 0 };
    let v = d.item(0)?;
    Ok((v, d.pos))
}

struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Decoder<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], CborError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(CborError::Truncated {
                offset: self.pos,
                needed: n.saturating_sub(self.buf.len() - self.pos),
            }),
        }
    }

    /// Read the argument of a head, checking minimal encoding.
    fn argument(&mut self, start: usize, ai: u8, initial: u8) -> Result<u64, CborError> {
        let n = match ai {
            0..=23 => return Ok(u64::from(ai)),
            24 => u64::from(self.take(1)?[0]),
            25 => {
                let b = self.take(2)?;
                u64::from(u16::from_be_bytes([b[0], b[1]]))
            }
            26 => {
                let b = self.take(4)?;
                u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            }
            27 => {
                let b = self.take(8)?;
                u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
            }
            31 => return Err(CborError::Indefinite(start)),
            _ => {
                return Err(CborError::Unsupported {
                    byte: initial,
                    offset: start,
                })
            }
        };
        let min = match ai {
            24 => 24,
            25 => 0x100,
            26 => 0x1_0000,
            _ => 0x1_0000_0000,
        };
        if n < min {
            return Err(CborError::NonMinimal(start));
        }
        Ok(n)
    }

    fn len(&mut self, n: u64, offset: usize) -> Result<usize, CborError> {
        let remaining = (self.buf.len() - self.pos) as u64;
        if n > remaining {
            return Err(CborError::LengthTooLarge { len: n, offset });
        }
        Ok(n as usize)
    }

    fn item(&mut self, depth: usize) -> Result<Value, CborError> {
        if depth > MAX_DEPTH {
            return Err(CborError::TooDeep);
        }
        let start = self.pos;
        let initial = self.take(1)?[0];
        let major = initial >> 5;
        let ai = initial & 0x1f;
        if major == 7 {
            return match ai {
                20 => Ok(Value::Bool(false)),
                21 => Ok(Value::Bool(true)),
                22 => Ok(Value::Null),
                _ => Err(CborError::Unsupported {
                    byte: initial,
                    offset: start,
                }),
            };
        }
        if major == 6 {
            return Err(CborError::Unsupported {
                byte: initial,
                offset: start,
            });
        }
        let n = self.argument(start, ai, initial)?;
        match major {
            0 => Ok(Value::Unsigned(n)),
            1 => Ok(Value::Negative(n)),
            2 => {
                let n = self.len(n, start)?;
                Ok(Value::Bytes(self.take(n)?.to_vec()))
            }
            3 => {
                let n = self.len(n, start)?;
                let s = std::str::from_utf8(self.take(n)?)
                    .map_err(|_| CborError::InvalidUtf8(start))?;
                Ok(Value::Text(s.to_owned()))
            }
            4 => {
                // Every item takes at least one byte: a count beyond the input is a lie. Even a
                // count within it is only a claim: the vector grows as items arrive instead of
                // reserving what the count declares (nested declared counts would otherwise
                // reserve far more memory than the input is long).
                let n = self.len(n, start)?;
                let mut items = Vec::new();
                for _ in 0..n {
                    items.push(self.item(depth + 1)?);
                }
                Ok(Value::Array(items))
            }
            5 => {
                // A pair takes at least two bytes. As for arrays, nothing is reserved up front.
                if n.saturating_mul(2) > (self.buf.len() - self.pos) as u64 {
                    return Err(CborError::LengthTooLarge {
                        len: n,
                        offset: start,
                    });
                }
                let n = self.len(n, start)?;
                let mut pairs: Vec<(Value, Value)> = Vec::new();
                let mut prev_key: Option<&[u8]> = None;
                let mut key_spans = Vec::new();
                for _ in 0..n {
                    let key_start = self.pos;
                    let k = self.item(depth + 1)?;
                    let key_end = self.pos;
                    let v = self.item(depth + 1)?;
                    key_spans.push((key_start, key_end));
                    pairs.push((k, v));
                }
                for (ks, ke) in key_spans {
                    let key = &self.buf[ks..ke];
                    if let Some(p) = prev_key {
                        match canonical_cmp(p, key) {
                            std::cmp::Ordering::Less => {}
                            std::cmp::Ordering::Equal => return Err(CborError::DuplicateKey(ks)),
                            std::cmp::Ordering::Greater => return Err(CborError::UnsortedKeys(ks)),
                        }
                    }
                    prev_key = Some(key);
                }
                Ok(Value::Map(pairs))
            }
            _ => unreachable!("major type is three bits and 6, 7 are handled above"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctap::test_support::h;

    #[test]
    fn encodes_canonically() {
        let v = Value::Map(vec![
            (Value::text("bb"), Value::int(1)),
            (Value::int(-1), Value::int(1)),
            (Value::int(3), Value::int(-7)),
            (Value::text("a"), Value::Bool(true)),
            (Value::int(1), Value::bytes(&[0xaa; 24])),
        ]);
        let enc = encode(&v);
        // keys: 01, 03, 20, 61 61, 62 62 62
        assert_eq!(enc[0], 0xa5);
        assert_eq!(&enc[1..4], &h("015818"));
        let back = decode(&enc).unwrap();
        assert_eq!(encode(&back), enc);
        assert_eq!(back.get_int(3).and_then(Value::as_i64), Some(-7));
    }

    #[test]
    fn integer_boundaries_round_trip() {
        for i in [
            0i64,
            23,
            24,
            255,
            256,
            65535,
            65536,
            u32::MAX as i64,
            u32::MAX as i64 + 1,
            -1,
            -24,
            -25,
            -257,
            i64::MIN,
        ] {
            let enc = encode(&Value::int(i));
            assert_eq!(decode(&enc).unwrap().as_i64(), Some(i), "{i}");
        }
    }

    #[test]
    fn strict_decoder_refuses_non_canonical() {
        let exactly = [
            ("1817", CborError::NonMinimal(0)),
            ("5900020102", CborError::NonMinimal(0)),
            ("5f4101ff", CborError::Indefinite(0)),
            ("a202010101", CborError::UnsortedKeys(3)),
            ("a201010101", CborError::DuplicateKey(3)),
            ("a2616101010101", CborError::UnsortedKeys(4)),
            ("0100", CborError::TrailingBytes(1)),
            ("62ff00", CborError::InvalidUtf8(0)),
        ];
        for (input, want) in exactly {
            assert_eq!(decode(&h(input)), Err(want), "{input}");
        }
        // Refused for the right reason; the details (what, lengths) are not pinned here.
        type IsExpected = fn(&CborError) -> bool;
        let refused: [(&str, IsExpected); 7] = [
            ("c24101", |e| matches!(e, CborError::Unsupported { .. })),
            ("f93c00", |e| matches!(e, CborError::Unsupported { .. })),
            ("f7", |e| matches!(e, CborError::Unsupported { .. })),
            ("5a0001000000", |e| {
                matches!(e, CborError::LengthTooLarge { .. })
            }),
            ("9b7fffffffffffffff", |e| {
                matches!(e, CborError::LengthTooLarge { .. })
            }),
            ("1a0001", |e| matches!(e, CborError::Truncated { .. })),
            ("", |e| matches!(e, CborError::Truncated { .. })),
        ];
        for (input, want) in refused {
            let got = decode(&h(input));
            assert!(got.as_ref().is_err_and(want), "{input}: {got:?}");
        }
        let deep = vec![0x81u8; MAX_DEPTH + 2];
        assert!(matches!(
            decode(&deep),
            Err(CborError::TooDeep) | Err(CborError::Truncated { .. })
        ));
        let mut deep = vec![0x81u8; MAX_DEPTH + 2];
        deep.push(0);
        assert_eq!(decode(&deep), Err(CborError::TooDeep));
    }

    /// The largest single allocation this thread asked for since the last reset: the
    /// regression test below needs to see what the decoder reserves, not just its result.
    mod alloc_probe {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        pub struct Probe;

        thread_local! {
            static LARGEST: Cell<usize> = const { Cell::new(0) };
        }

        // SAFETY: every call forwards to `System` unchanged; the probe only records sizes.
        unsafe impl GlobalAlloc for Probe {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                let _ = LARGEST.try_with(|l| l.set(l.get().max(layout.size())));
                // SAFETY: same contract as the caller's.
                unsafe { System.alloc(layout) }
            }
            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                // SAFETY: `ptr` came from `System.alloc` with this layout.
                unsafe { System.dealloc(ptr, layout) }
            }
            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
                let _ = LARGEST.try_with(|l| l.set(l.get().max(new)));
                // SAFETY: same contract as the caller's.
                unsafe { System.realloc(ptr, layout, new) }
            }
        }

        #[global_allocator]
        static PROBE: Probe = Probe;

        pub fn reset() {
            LARGEST.with(|l| l.set(0));
        }

        pub fn largest() -> usize {
            LARGEST.with(|l| l.get())
        }
    }

    #[test]
    fn declared_counts_reserve_nothing() {
        // A huge declared count fails at once with a typed error.
        let huge = [0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            decode(&huge),
            Err(CborError::LengthTooLarge { .. })
        ));
        let huge_map = [0xbb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            decode(&huge_map),
            Err(CborError::LengthTooLarge { .. })
        ));
        // A map of n pairs needs 2n bytes: n within the input but 2n beyond it is a lie too.
        assert!(matches!(
            decode(&h("a3000000")),
            Err(CborError::LengthTooLarge { len: 3, .. })
        ));

        // Nested arrays and maps, each declaring 4000 elements (within the input, which is
        // padded to make the counts plausible), nested past MAX_DEPTH. The old decoder
        // reserved 4000 elements at every level before failing: over a MiB for 12 KiB.
        let mut input = Vec::new();
        for level in 0..=MAX_DEPTH + 1 {
            if level % 2 == 0 {
                input.extend_from_slice(&[0x99, 0x0f, 0xa0]); // array(4000)
            } else {
                input.extend_from_slice(&[0xb9, 0x0f, 0xa0, 0x00]); // map(4000), key 0
            }
        }
        input.resize(input.len() + 12_000, 0);
        alloc_probe::reset();
        let result = decode(&input);
        let largest = alloc_probe::largest();
        assert_eq!(result, Err(CborError::TooDeep));
        assert!(largest < 1024, "decoder reserved {largest} bytes at once");
    }

    #[test]
    fn decode_prefix_reports_length() {
        let (v, used) = decode_prefix(&h("a1010203ff")).unwrap();
        assert_eq!(used, 3);
        assert_eq!(v.get_int(1), Some(&Value::int(2)));
    }
}
