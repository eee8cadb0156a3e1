//! The direct decoder's first reader of JSON: one pass over the bytes of
//! a flat object whose strings have no escapes, eight bytes at a time
//! through strings. It gives up on everything else (an escape, a nested
//! value, a long number, a malformed text) and the serde reader in
//! `decode.rs` takes the record from the start; both resolve scalars
//! through `resolve.rs`, so whatever the scanner accepts, the serde
//! reader would have read the same.

use apache_avro::types::Value;

use crate::codec::direct::DirectPlan;
use crate::codec::json::resolve::{Scalar, put};

impl DirectPlan {
    /// The values of the object in `bytes`, or `None` where the serde
    /// reader must decide (see the module doc).
    #[cfg(test)]
    pub(in crate::codec) fn scan(&self, bytes: &[u8]) -> Option<Vec<Value>> {
        let mut values = self.blank();
        self.scan_into(bytes, &mut values).map(|()| values)
    }

    /// The values of the object in `bytes` into `values`, a record's
    /// slots (see [`DirectPlan::reset`]): every one is written where it
    /// returns `Some`, some may be where it returns `None` (the serde
    /// reader must then decide).
    pub(in crate::codec) fn scan_into(&self, bytes: &[u8], values: &mut Vec<Value>) -> Option<()> {
        self.reset(values);
        let mut c = Cursor { bytes, at: 0 };
        let mut present = 0u128;
        // The field found before this key (`n` before the first).
        let mut last = self.slots.len();
        c.space();
        c.expect(b'{')?;
        c.space();
        if !c.eat(b'}') {
            loop {
                c.expect(b'"')?;
                let key = c.string()?;
                c.space();
                c.expect(b':')?;
                c.space();
                match self.field_index(last, key.as_bytes()) {
                    // A repeated key: the last one counts, as in serde_json.
                    Some(i) => {
                        put(self.slots[i], c.scalar()?, &mut values[i]).ok()?;
                        present |= 1 << i;
                        last = i;
                    }
                    // A field the schema lacks: any scalar is a valid
                    // value of it (a nested one is the serde reader's).
                    None => {
                        c.scalar()?;
                    }
                }
                c.space();
                if c.eat(b'}') {
                    break;
                }
                c.expect(b',')?;
                c.space();
            }
        }
        c.space();
        (c.at == bytes.len() && present.count_ones() as usize == values.len()).then_some(())
    }
}

/// A position in the text.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

/// Eight copies of a byte.
const fn lanes(b: u8) -> u64 {
    u64::from_ne_bytes([b; 8])
}

/// The high bit of each byte of `w` that is below `n` (`n` ≤ 0x80); the
/// lowest one set is exact, higher ones may be borrows from it.
const fn below(w: u64, n: u8) -> u64 {
    w.wrapping_sub(lanes(n)) & !w & lanes(0x80)
}

/// The high bit of each byte of `w` that ends a plain string's run: `"`,
/// `\`, or a control character (exact for the lowest one, as [`below`]).
const fn stops(w: u64) -> u64 {
    below(w ^ lanes(b'"'), 1) | below(w ^ lanes(b'\\'), 1) | below(w, 0x20)
}

/// For sixteen bytes: a bit per byte that ends a plain string's run (as
/// [`stops`], exact in every bit) and a bit per byte with its high bit
/// set. SSE2 is part of every x86-64 processor.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
fn stops16(chunk: &[u8; 16]) -> (u32, u32) {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    // SAFETY: the load reads the sixteen bytes of `chunk`, and allows any
    // alignment.
    let v = unsafe { _mm_loadu_si128(chunk.as_ptr().cast()) };
    let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
    let slash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
    // `b` ≤ 0x1f exactly where min(b, 0x1f) = b, unsigned.
    let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
    let stop = _mm_or_si128(_mm_or_si128(quote, slash), control);
    (_mm_movemask_epi8(stop) as u32, _mm_movemask_epi8(v) as u32)
}

/// The length of the run of `bytes` before its first `"`, `\\` or
/// control character, and whether the run is ASCII; `None` when there is
/// no such byte. Sixteen bytes a step where SSE2 is there, then
/// [`plain_run8`].
fn plain_run(bytes: &[u8]) -> Option<(usize, bool)> {
    #[cfg_attr(
        not(all(target_arch = "x86_64", target_feature = "sse2")),
        expect(unused_mut)
    )]
    let (mut i, mut ascii) = (0, true);
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    while let Some(chunk) = bytes.get(i..i + 16) {
        // SAFETY: the build targets SSE2 (the `cfg` above), so the
        // processor has it.
        let (hits, high) = unsafe { stops16(chunk.try_into().ok()?) };
        if hits != 0 {
            let before = hits.trailing_zeros();
            return Some((
                i + before as usize,
                ascii && high & ((1 << before) - 1) == 0,
            ));
        }
        ascii &= high == 0;
        i += 16;
    }
    let (len, rest_ascii) = plain_run8(bytes.get(i..)?)?;
    Some((i + len, ascii && rest_ascii))
}

/// [`plain_run`], eight bytes a step in a `u64`, then one at a time.
fn plain_run8(bytes: &[u8]) -> Option<(usize, bool)> {
    let mut i = 0;
    // The bytes of the run, OR'd together.
    let mut high = 0u64;
    while let Some(word) = bytes.get(i..i + 8) {
        let w = u64::from_le_bytes(word.try_into().ok()?);
        // Little-endian, so the lowest set bit is the first byte.
        let hits = stops(w);
        if hits != 0 {
            let before = hits.trailing_zeros() / 8;
            high |= w & ((1u64 << (before * 8)) - 1);
            return Some((i + before as usize, high & lanes(0x80) == 0));
        }
        high |= w;
        i += 8;
    }
    let rest = bytes.get(i..)?;
    let len = rest
        .iter()
        .position(|b| matches!(b, b'"' | b'\\' | 0..=0x1f))?;
    let ascii = high & lanes(0x80) == 0 && rest.get(..len)?.is_ascii();
    Some((i + len, ascii))
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// Steps over `b` if it is next.
    fn eat(&mut self, b: u8) -> bool {
        let next = self.peek() == Some(b);
        self.at += usize::from(next);
        next
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        self.eat(b).then_some(())
    }

    /// Skips JSON whitespace.
    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\t' | b'\r')) {
            self.at += 1;
        }
    }

    /// A string up to its closing quote (the opening one read); `None`
    /// at an escape, a control character or bytes that are not UTF-8.
    fn string(&mut self) -> Option<&'a str> {
        let rest = self.bytes.get(self.at..)?;
        let (len, ascii) = plain_run(rest)?;
        if rest.get(len) != Some(&b'"') {
            return None;
        }
        self.at += len + 1;
        let s = rest.get(..len)?;
        if ascii {
            // SAFETY: `plain_run` found no byte of `s` with its high bit
            // set, so `s` is ASCII, which is UTF-8.
            Some(unsafe { std::str::from_utf8_unchecked(s) })
        } else {
            std::str::from_utf8(s).ok()
        }
    }

    /// A string, number, `true`, `false` or `null`.
    fn scalar(&mut self) -> Option<Scalar<'a>> {
        match self.peek()? {
            b'"' => {
                self.at += 1;
                self.string().map(Scalar::Str)
            }
            b't' => self.word(b"true", Scalar::Bool(true)),
            b'f' => self.word(b"false", Scalar::Bool(false)),
            b'n' => self.word(b"null", Scalar::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn word(&mut self, word: &[u8], scalar: Scalar<'a>) -> Option<Scalar<'a>> {
        let end = self.at + word.len();
        (self.bytes.get(self.at..end)? == word).then(|| {
            self.at = end;
            scalar
        })
    }

    /// A number, as serde_json reads it (see [`Scalar`]). Integers of up
    /// to 18 digits are read here, a fraction or exponent by serde_json
    /// itself; longer integers are the serde reader's.
    fn number(&mut self) -> Option<Scalar<'a>> {
        let start = self.at;
        let negative = self.eat(b'-');
        let digits = self.at;
        let mut n = 0u64;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            n = n * 10 + u64::from(d - b'0');
            self.at += 1;
            if self.at - digits > 18 {
                return None;
            }
        }
        let len = self.at - digits;
        // No digits, or a leading zero before more: not JSON.
        if len == 0 || (len > 1 && self.bytes.get(digits) == Some(&b'0')) {
            return None;
        }
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            while matches!(
                self.peek(),
                Some(b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
            ) {
                self.at += 1;
            }
            let token = self.bytes.get(start..self.at)?;
            return serde_json::from_slice::<f64>(token).ok().map(Scalar::F64);
        }
        Some(match (negative, n) {
            (false, n) => Scalar::U64(n),
            // serde_json reads `-0` as a float.
            (true, 0) => Scalar::F64(-0.0),
            (true, n) => Scalar::I64(-(n as i64)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The first byte that ends a plain string's run, one byte at a time.
    fn first_stop(bytes: &[u8]) -> Option<usize> {
        bytes
            .iter()
            .position(|b| matches!(b, b'"' | b'\\' | 0..=0x1f))
    }

    /// Text for a string's body: long plain runs, and now and then a
    /// stop, a stray high byte or a whole multi-byte character.
    fn body() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![
                // Runs long enough to cross eight- and sixteen-byte steps.
                30 => (b' '..=b'~').prop_map(|b| vec![b]),
                1 => Just(vec![b'"']),
                1 => Just(vec![b'\\']),
                1 => (0u8..0x20).prop_map(|b| vec![b]),
                1 => (0x80u8..=0xff).prop_map(|b| vec![b]),
                // Whole characters of two, three and four bytes.
                3 => prop::sample::select(vec!["é", "€", "𝄞"]).prop_map(|c| c.as_bytes().to_vec()),
            ],
            0..80,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        #[test]
        fn each_step_width_finds_the_run_a_byte_by_byte_scan_finds(bytes in body()) {
            let expected = first_stop(&bytes).map(|at| (at, bytes[..at].is_ascii()));
            prop_assert_eq!(plain_run(&bytes), expected);
            prop_assert_eq!(plain_run8(&bytes), expected);
        }

        #[test]
        fn a_string_ends_where_a_byte_by_byte_scan_ends_it(bytes in body()) {
            let mut c = Cursor { bytes: &bytes, at: 0 };
            let read = c.string();
            match first_stop(&bytes) {
                Some(at) if bytes[at] == b'"' => {
                    // UTF-8 or not at all, checked on the bytes before the stop.
                    prop_assert_eq!(read, std::str::from_utf8(&bytes[..at]).ok());
                    if read.is_some() {
                        prop_assert_eq!(c.at, at + 1);
                    }
                }
                _ => prop_assert_eq!(read, None),
            }
        }

        #[test]
        fn numbers_read_as_serde_json_reads_them(
            text in prop_oneof![
                any::<i64>().prop_map(|n| n.to_string()),
                any::<u64>().prop_map(|n| n.to_string()),
                any::<f64>().prop_map(|x| x.to_string()),
                "-?[0-9]{0,20}(\\.[0-9]{0,3})?([eE][+-]?[0-9]{0,4})?",
            ],
        ) {
            let mut c = Cursor { bytes: text.as_bytes(), at: 0 };
            let scanned = c.number().filter(|_| c.at == text.len());
            let serde = serde_json::from_str::<serde_json::Value>(&text).ok();
            match (scanned, serde) {
                (Some(s), Some(serde_json::Value::Number(n))) => {
                    let expected = if let Some(u) = n.as_u64() {
                        Scalar::U64(u)
                    } else if let Some(i) = n.as_i64() {
                        Scalar::I64(i)
                    } else {
                        Scalar::F64(n.as_f64().unwrap())
                    };
                    // `-0` as a float, and equal as bits (NaN never comes).
                    prop_assert_eq!(format!("{s:?}"), format!("{expected:?}"), "{}", text);
                }
                (Some(s), serde) => prop_assert!(false, "{text}: scanned {s:?}, serde_json {serde:?}"),
                // Giving up is safe, but only on a number whose integer
                // part has more than 18 digits.
                (None, Some(_)) => {
                    let digits = text
                        .trim_start_matches('-')
                        .bytes()
                        .take_while(u8::is_ascii_digit)
                        .count();
                    prop_assert!(digits > 18, "gave up on {text}");
                }
                (None, None) => {}
            }
        }
    }
}

#[cfg(all(test, feature = "nexmark"))]
mod nexmark {
    use crate::codec::direct::DirectPlan;
    use crate::codec::schema::RecordSchema;
    use crate::generate::{NEXMARK_BID_SCHEMA, nexmark_bid_json, nexmark_bids};

    #[test]
    fn the_benchmarks_bids_are_scanned() {
        let schema = RecordSchema::parse("bid.avsc".as_ref(), NEXMARK_BID_SCHEMA).unwrap();
        let plan = DirectPlan::new(&schema.schema).unwrap();
        for b in nexmark_bids().take(1000) {
            let text = nexmark_bid_json(&b, b.date_time);
            assert!(plan.scan(text.as_bytes()).is_some(), "gave up on {text}");
        }
    }
}
