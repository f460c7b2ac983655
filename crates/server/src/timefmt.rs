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

impl fmt::Display for Rfc3339Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        if !t.offset().is_utc() || !(0..=9999).contains(&t.year()) {
            let text = t.format(&Rfc3339).map_err(|_| fmt::Error)?;
            return f.write_str(&text);
        }
        let (year, month, day) = (t.year(), u8::from(t.month()), t.day());
        write!(f, "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())?;
        let mut nanos = t.nanosecond();
        if nanos != 0 {
            let mut width = 9;
            while nanos % 10 == 0 {
                nanos /= 10;
                width -= 1;
            }
            write!(f, ".{nanos:0width$}")?;
        }
        f.write_str("Z")
    }
}

impl Serialize for Rfc3339Time {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
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
