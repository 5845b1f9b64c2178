//! The cluster clock: the wall clock every scheduling decision reads, corrected to the store's.
//!
//! Why: fires are instants on the wall clock, and the master decides when they are due, the node
//! that runs one waits for its instant, and misfires are judged against it. One node with a wrong
//! clock (an NTP step, a bad RTC, a VM restored from a snapshot) used to move every fire of the
//! cluster when it was master, and its own fires when it was not. Quartz can only ask its users to
//! keep clocks synchronised; a rota cluster already has one clock every node talks to: Redis's
//! (`TIME`, which the scripts already use for the epoch floor, claim and start times).
//!
//! How: at every heartbeat the node asks the store for its time and measures the round trip on the
//! monotonic clock. The offset is the store's time minus the local time at the middle of the round
//! trip (the store's reading happened somewhere inside it, so the error is at most half the round
//! trip). Of the last `WINDOW` samples the one with the smallest round trip wins (the least
//! queueing, so the tightest bound); samples with a round trip over `MAX_RTT` are not used.
//! `now_ms()` is the local wall clock plus that offset, and every wall-clock reading in rota goes
//! through it (`store::now_ms` is this function).
//!
//! The offset is process-wide, because the wall clock is: every node in one process reads the same
//! clock, and a process belongs to one cluster. The in-memory store has no other clock: there the
//! local clock is the cluster's (offset 0, measured from the start).
//!
//! A node whose offset is not known (none measured yet, or the last good sample is older than
//! `stale_after`) must not become master: the master decides when every fire is due.
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::Result;
use crate::store::Store;

/// Samples kept; the one with the smallest round trip gives the offset.
const WINDOW: usize = 8;
/// A sample whose round trip is longer than this says too little about the offset (its error
/// bound is half the round trip): dropped.
pub const MAX_RTT: Duration = Duration::from_millis(500);

pub use crate::clock::{local_now_us, now_ms, now_us};

/// One measurement against the store's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Store time minus local time at the middle of the round trip, µs.
    pub offset_us: i64,
    /// Round trip of the request, µs (monotonic clock).
    pub rtt_us: i64,
    /// When the answer came (monotonic).
    pub at: Instant,
}

impl Sample {
    /// A sample from the local wall time when the request was sent, the store's answer and the
    /// round trip. The middle of the round trip is taken from the send time plus half the
    /// monotonic round trip, so a wall-clock step during the request does not enter it.
    pub fn new(sent_local_us: i64, store_us: i64, rtt: Duration, at: Instant) -> Sample {
        let rtt_us = i64::try_from(rtt.as_micros()).unwrap_or(i64::MAX);
        Sample { offset_us: store_us - (sent_local_us + rtt_us / 2), rtt_us, at }
    }
}

/// Why a sample was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SampleRejected {
    #[error("round trip of {rtt_ms} ms is over {max_ms} ms: too uncertain to use")]
    RoundTripTooLong { rtt_ms: i64, max_ms: i64 },
}

/// Picks the offset from recent samples: the one with the smallest round trip. Pure (time is in
/// the samples), so tests drive it.
#[derive(Debug, Default)]
pub struct OffsetEstimator {
    samples: VecDeque<Sample>,
}

impl OffsetEstimator {
    pub fn add(&mut self, s: Sample) -> std::result::Result<(), SampleRejected> {
        let max_us = i64::try_from(MAX_RTT.as_micros()).unwrap_or(i64::MAX);
        if s.rtt_us > max_us || s.rtt_us < 0 {
            return Err(SampleRejected::RoundTripTooLong { rtt_ms: s.rtt_us / 1000, max_ms: max_us / 1000 });
        }
        if self.samples.len() == WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back(s);
        Ok(())
    }

    /// The sample with the smallest round trip among those taken since `since` (the newest of
    /// equals), or None when there is none.
    pub fn best(&self, since: Instant) -> Option<Sample> {
        self.samples.iter().filter(|s| s.at >= since).min_by_key(|s| (s.rtt_us, std::cmp::Reverse(s.at))).copied()
    }
}

/// What this node knows of its offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockState {
    /// No usable sample yet, or the last one is older than `stale_after`.
    Unmeasured,
    Measured {
        offset_ms: i64,
        /// Round trip of the sample the offset comes from: the offset is good to half of it.
        rtt_ms: i64,
    },
}

/// This node's view of the cluster clock: the estimator, whether it is fresh, and whether the
/// offset is past the alert bound.
pub struct ClusterClock {
    /// None: the store has no clock of its own (in-memory): always measured, offset 0.
    estimator: Option<Mutex<OffsetEstimator>>,
    stale_after: Duration,
    /// |offset| above this is alerted on.
    max_offset_ms: i64,
    /// Whether the last measurement was past `max_offset_ms` (an alert is raised on the way in).
    skewed: AtomicBool,
}

/// What one measurement found, for the caller to log and alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measured {
    /// The offset in use; whether it is the first one (the clock was unmeasured until now), and
    /// whether |offset| crossed the bound with this measurement.
    Offset { offset_ms: i64, rtt_ms: i64, first: bool, crossed: Option<Crossing> },
    /// The sample was not used; the offset in use is unchanged.
    Rejected(SampleRejected),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crossing {
    /// |offset| went over the bound.
    Out,
    /// It came back within.
    Back,
}

impl ClusterClock {
    /// For a store with a clock of its own (Redis): unmeasured until the first sample.
    pub fn measured_against_store(max_offset_ms: u64, stale_after: Duration) -> ClusterClock {
        ClusterClock {
            estimator: Some(Mutex::new(OffsetEstimator::default())),
            stale_after,
            max_offset_ms: i64::try_from(max_offset_ms).unwrap_or(i64::MAX),
            skewed: AtomicBool::new(false),
        }
    }

    /// For the in-memory store: the local clock is the cluster's.
    pub fn local() -> ClusterClock {
        ClusterClock {
            estimator: None,
            stale_after: Duration::MAX,
            max_offset_ms: i64::MAX,
            skewed: AtomicBool::new(false),
        }
    }

    pub fn max_offset_ms(&self) -> i64 {
        self.max_offset_ms
    }

    pub fn state(&self) -> ClockState {
        let Some(est) = &self.estimator else { return ClockState::Measured { offset_ms: 0, rtt_ms: 0 } };
        let since = Instant::now().checked_sub(self.stale_after).unwrap_or_else(Instant::now);
        let best = est.lock().ok().and_then(|e| e.best(since));
        match best {
            Some(s) => ClockState::Measured { offset_ms: s.offset_us.div_euclid(1000), rtt_ms: s.rtt_us / 1000 },
            None => ClockState::Unmeasured,
        }
    }

    /// The offset in ms, when measured and fresh.
    pub fn offset_ms(&self) -> Option<i64> {
        match self.state() {
            ClockState::Measured { offset_ms, .. } => Some(offset_ms),
            ClockState::Unmeasured => None,
        }
    }

    /// Asks the store for its time and takes the sample. A store error is returned (the caller
    /// knows the store is unreachable from its heartbeat anyway).
    pub async fn measure(&self, store: &dyn Store) -> Result<Option<Measured>> {
        let Some(est) = &self.estimator else { return Ok(None) };
        let sent_local = local_now_us();
        let sent = Instant::now();
        let Some(store_us) = store.clock_us().await? else { return Ok(None) };
        let at = Instant::now();
        let sample = Sample::new(sent_local, store_us, at - sent, at);
        let since = at.checked_sub(self.stale_after).unwrap_or(at);
        let (before, best) = match est.lock() {
            Ok(mut e) => {
                let before = e.best(since);
                match e.add(sample) {
                    Ok(()) => (before, e.best(since)),
                    Err(why) => return Ok(Some(Measured::Rejected(why))),
                }
            }
            Err(_) => return Ok(None),
        };
        let Some(best) = best else { return Ok(None) };
        crate::clock::set_offset_us(best.offset_us);
        let offset_ms = best.offset_us.div_euclid(1000);
        let out = offset_ms.saturating_abs() > self.max_offset_ms;
        let was = self.skewed.swap(out, Ordering::Relaxed);
        let crossed = match (was, out) {
            (false, true) => Some(Crossing::Out),
            (true, false) => Some(Crossing::Back),
            _ => None,
        };
        Ok(Some(Measured::Offset { offset_ms, rtt_ms: best.rtt_us / 1000, first: before.is_none(), crossed }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(offset_ms: i64, rtt_ms: i64, at: Instant) -> Sample {
        Sample { offset_us: offset_ms * 1000, rtt_us: rtt_ms * 1000, at }
    }

    #[test]
    fn the_offset_is_taken_at_the_middle_of_the_round_trip() {
        let now = Instant::now();
        // Sent at local 10.000 s, the store said 13.004 s, 8 ms round trip: the store read its
        // clock around local 10.004 s, so it is 3 s ahead.
        let s = Sample::new(10_000_000, 13_004_000, Duration::from_millis(8), now);
        assert_eq!((s.offset_us, s.rtt_us), (3_000_000, 8_000));
        let behind = Sample::new(10_000_000, 7_001_000, Duration::from_millis(2), now);
        assert_eq!(behind.offset_us, -3_000_000);
    }

    #[test]
    fn the_sample_with_the_smallest_round_trip_wins() {
        let t0 = Instant::now();
        let mut e = OffsetEstimator::default();
        assert_eq!(e.best(t0), None);
        // A slow sample (queued behind other commands) has a worse offset, off by up to half its
        // round trip; the fast one is kept whatever the order.
        e.add(sample(3_040, 90, t0)).expect("kept");
        e.add(sample(3_001, 2, t0 + Duration::from_secs(1))).expect("kept");
        e.add(sample(2_980, 50, t0 + Duration::from_secs(2))).expect("kept");
        assert_eq!(e.best(t0).map(|s| s.offset_us), Some(3_001_000));
        // Equal round trips: the newest wins (the clock may have been stepped in between).
        e.add(sample(3_005, 2, t0 + Duration::from_secs(3))).expect("kept");
        assert_eq!(e.best(t0).map(|s| s.offset_us), Some(3_005_000));
    }

    #[test]
    fn huge_round_trips_are_ignored() {
        let t0 = Instant::now();
        let mut e = OffsetEstimator::default();
        let r = e.add(sample(0, 2_000, t0));
        assert_eq!(r, Err(SampleRejected::RoundTripTooLong { rtt_ms: 2_000, max_ms: 500 }));
        assert_eq!(e.best(t0), None);
    }

    #[test]
    fn old_samples_age_out_of_the_window() {
        let t0 = Instant::now();
        let mut e = OffsetEstimator::default();
        e.add(sample(10, 1, t0)).expect("kept");
        for i in 1..=WINDOW as u64 {
            e.add(sample(20, 5, t0 + Duration::from_secs(i))).expect("kept");
        }
        // The best sample fell out of the last WINDOW samples.
        assert_eq!(e.best(t0).map(|s| s.offset_us), Some(20_000));
        // And nothing newer than a given instant means no estimate (stale).
        assert_eq!(e.best(t0 + Duration::from_secs(100)), None);
    }

    /// Runs a lease loop for a while on the in-memory store; true when it became master.
    async fn becomes_master(clock: ClusterClock) -> bool {
        use crate::cluster::lease::{Lease, LeaseTiming};
        let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(crate::store::MemoryStore::new(60_000));
        let timing = LeaseTiming { ttl: Duration::from_millis(1_500), renew: Duration::from_millis(50) };
        let lease = std::sync::Arc::new(
            Lease::new(
                store,
                "n1",
                std::sync::Arc::new(crate::cluster::membership::Membership::new("n1", 1000)),
                timing,
                Default::default(),
            )
            .with_clock_gate(std::sync::Arc::new(clock)),
        );
        let stop = tokio_util::sync::CancellationToken::new();
        let run = tokio::spawn(std::sync::Arc::clone(&lease).run(stop.clone()));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let master = lease.role().active().is_some();
        stop.cancel();
        let _ = run.await;
        master
    }

    #[tokio::test]
    async fn a_node_that_has_not_measured_its_offset_does_not_become_master() {
        assert!(!becomes_master(ClusterClock::measured_against_store(250, Duration::from_secs(10))).await);
        assert!(becomes_master(ClusterClock::local()).await);
    }

    #[test]
    fn the_in_memory_clock_is_measured_from_the_start() {
        let c = ClusterClock::local();
        assert_eq!(c.state(), ClockState::Measured { offset_ms: 0, rtt_ms: 0 });
        let r = ClusterClock::measured_against_store(250, Duration::from_secs(10));
        assert_eq!(r.state(), ClockState::Unmeasured);
        assert_eq!(r.offset_ms(), None);
    }
}
