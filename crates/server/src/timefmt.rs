//! RFC 3339 timestamps for responses, written directly: `time`'s general formatter showed up as several
//! percent of the token status request. The output is identical to `time`'s `Rfc3339` (checked by the tests
//! below over many instants); offsets other than UTC fall back to it.

use std::fmt;

use serde::{Serialize, Serializer};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `2026-11-21T08:15:02.5Z`: fractional seconds only when non-zero, trailing zeros trimmed, `Z` for UTC.
#[cfg(test)]
pub(crate) fn rfc3339(t: OffsetDateTime) -> Option<String> {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(30);
    write!(out, "{}", Rfc3339Time(t)).ok()?;
    Some(out)
}

/// An instant that serializes as its RFC 3339 text, written straight into the response (no `String`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rfc3339Time(pub OffsetDateTime);

impl Rfc3339Time {
    /// Writes UTC instants of years 0–9999 into `buf` digit by digit (`core::fmt` machinery was most of this
    /// function's cost); `None` for anything else.
    fn write_utc(self, buf: &mut [u8; 30]) -> Option<usize> {
        let t = self.0;
        let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
        if !t.offset().is_utc() {
            return None;
        }
        let two = |buf: &mut [u8; 30], at: usize, v: u32| {
            buf[at] = b'0' + (v / 10 % 10) as u8;
            buf[at + 1] = b'0' + (v % 10) as u8;
        };
        two(buf, 0, year / 100);
        two(buf, 2, year % 100);
        buf[4] = b'-';
        two(buf, 5, u32::from(u8::from(t.month())));
        buf[7] = b'-';
        two(buf, 8, u32::from(t.day()));
        buf[10] = b'T';
        two(buf, 11, u32::from(t.hour()));
        buf[13] = b':';
        two(buf, 14, u32::from(t.minute()));
        buf[16] = b':';
        two(buf, 17, u32::from(t.second()));
        let mut len = 19;
        let nanos = t.nanosecond();
        if nanos != 0 {
            buf[len] = b'.';
            len += 1;
            let mut digits = [0u8; 9];
            let mut n = nanos;
            for d in digits.iter_mut().rev() {
                *d = b'0' + (n % 10) as u8;
                n /= 10;
            }
            let used = 9 - digits.iter().rev().take_while(|d| **d == b'0').count();
            buf[len..len + used].copy_from_slice(&digits[..used]);
            len += used;
        }
        buf[len] = b'Z';
        Some(len + 1)
    }

    /// Appends the text to `out` (the resolve answer's hand-written JSON, `routes/tokens/status_json.rs`).
    pub(crate) fn write_into(self, out: &mut Vec<u8>) -> Result<(), time::error::Format> {
        let mut buf = [0u8; 30];
        match self.write_utc(&mut buf) {
            Some(len) => out.extend_from_slice(&buf[..len]),
            None => out.extend_from_slice(self.0.format(&Rfc3339)?.as_bytes()),
        }
        Ok(())
    }
}

impl fmt::Display for Rfc3339Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 30];
        match self.write_utc(&mut buf).and_then(|len| std::str::from_utf8(&buf[..len]).ok()) {
            Some(text) => f.write_str(text),
            None => f.write_str(&self.0.format(&Rfc3339).map_err(|_| fmt::Error)?),
        }
    }
}

impl Serialize for Rfc3339Time {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 30];
        match self.write_utc(&mut buf).and_then(|len| std::str::from_utf8(&buf[..len]).ok()) {
            Some(text) => serializer.serialize_str(text),
            None => serializer.collect_str(self),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_time_crate_for_utc_instants() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            // Seconds between 1970 and ~2100, with every kind of fraction (none, millis, micros, nanos).
            let secs = i64::try_from(seed % 4_102_444_800).unwrap_or(0);
            let nanos = match (seed >> 40) % 4 {
                0 => 0,
                1 => (seed >> 20) % 1000 * 1_000_000,
                2 => (seed >> 20) % 1_000_000 * 1000,
                _ => (seed >> 20) % 1_000_000_000,
            };
            let t = OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
                + time::Duration::nanoseconds(i64::try_from(nanos).unwrap_or(0));
            assert_eq!(rfc3339(t), t.format(&Rfc3339).ok(), "{t:?}");
        }
    }

    #[test]
    fn other_offsets_use_the_general_formatter() {
        let t = OffsetDateTime::UNIX_EPOCH.to_offset(time::macros::offset!(+2));
        assert_eq!(rfc3339(t).as_deref(), Some("1970-01-01T02:00:00+02:00"));
    }
}
