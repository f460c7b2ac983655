//! The count of data keys wrapped under each key version, kept in slots (`key_version_wraps`, migration 0011).
//!
//! A single counter row per version serialised every insert of a connection on PostgreSQL: each transaction
//! held that row's lock until its commit. Writers now add to one of [`SLOTS`] rows instead, and a read sums
//! them. Consecutive writes of a process take consecutive slots (from a random start, so that instances
//! sharing a database seldom meet), so concurrent transactions almost never wait for one another's commit.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::Result;
use crate::sql::{Session, sql, vals};

/// Slots per key version: well above the transactions one process runs at once (its pool holds 16).
const SLOTS: u32 = 64;

static NEXT_SLOT: LazyLock<AtomicU32> = LazyLock::new(|| AtomicU32::new(uuid::Uuid::new_v4().as_u128() as u32));

pub(crate) fn next_slot() -> u32 {
    NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % SLOTS
}

/// Counts one wrap under `?1` in slot `?2` (PostgreSQL's single-statement insert of a connection, in
/// `connections`, has the same upsert).
const COUNT_WRAP: &str = "INSERT INTO key_version_wraps (version, slot, wraps) VALUES (?1, ?2, 1)
     ON CONFLICT (version, slot) DO UPDATE SET wraps = key_version_wraps.wraps + 1";

/// Counts one data key wrapped under `version`, in the caller's transaction.
pub(crate) async fn count_wrap(s: &mut impl Session, version: u32) -> Result<()> {
    s.execute(sql!(COUNT_WRAP), &vals![version, next_slot()]).await?;
    Ok(())
}
