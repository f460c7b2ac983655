//! Timestamps are stored as Unix milliseconds in both backends: portable, indexable, and exact enough.

use time::OffsetDateTime;

use crate::StorageError;

pub(crate) fn to_millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

pub(crate) fn from_millis(ms: i64) -> Result<OffsetDateTime, StorageError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|e| StorageError::Corrupt(format!("timestamp {ms}: {e}")))
}

pub(crate) fn opt_from_millis(ms: Option<i64>) -> Result<Option<OffsetDateTime>, StorageError> {
    ms.map(from_millis).transpose()
}
