//! The corrected wall clock every wall-clock reading in rota goes through: the local clock plus the
//! process-wide offset to the cluster's clock (Redis's `TIME`), which `cluster::clock` measures and
//! sets. A room of its own at the bottom of the house, so that the store, the execution records and
//! the fire path read the clock without importing the cluster room that measures it.
use std::sync::atomic::{AtomicI64, Ordering};

/// The correction added to the local wall clock, in µs: the store's clock minus ours.
static OFFSET_US: AtomicI64 = AtomicI64::new(0);

/// The local wall clock, uncorrected, in µs since the Unix epoch.
pub fn local_now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// The cluster's wall clock in µs since the Unix epoch: the local clock plus the measured offset.
pub fn now_us() -> i64 {
    local_now_us().saturating_add(OFFSET_US.load(Ordering::Relaxed))
}

/// The cluster's wall clock in ms: stamps records, computes cron instants, decides when a fire is due.
pub fn now_ms() -> i64 {
    now_us().div_euclid(1000)
}

/// Sets the correction (by `cluster::clock`, from its best sample).
pub(crate) fn set_offset_us(offset_us: i64) {
    OFFSET_US.store(offset_us, Ordering::Relaxed);
}
