//! The cluster: which node is master (`lease`; with shards, of which shard: `shares`), which nodes
//! are alive (`membership`), how loaded they are (`loads`), and how far this node's clock is from
//! the cluster's (`clock`).
//! Uses: `store`, `clock`, `metrics`, `alert`; nothing above it.
//!
//! LEADERSHIP. One node at a time holds the master lease in the store, a key with a TTL whose value
//! names the holder, its fencing epoch and its incarnation (`<node>:<epoch>:<inc>`). Candidates try
//! to take it every renewal interval; the holder renews it every interval by compare-and-set.
//! Each acquisition raises the epoch to above every epoch issued, above the highest epoch the
//! candidate has seen and above the store's clock in ms, so it keeps rising even if Redis lost data.
//!
//! The lease only makes it likely that one node acts as master; what keeps fires single is fencing.
//! Every claim carries the master's lease value, and the claim script refuses it unless that value
//! is still the stored lease. A master that was paused past its lease (SIGSTOP, a long stall) and
//! wakes up is refused by Redis, not merely unlikely to act. In addition the master keeps a local
//! deadline on the monotonic clock, counted from when it *sent* its last successful renewal
//! (`t_send + ttl - margin`), and stops acting at that deadline whatever Redis says later.
//!
//! MEMBERSHIP. Each process start is an incarnation (a random id) registered under `hb:<node>`
//! with a TTL and renewed by compare-and-PEXPIRE. A key that merely expired (Redis was down or
//! restarted) is taken back at the next beat; once the master has taken the incarnation's running
//! work over it can never come back (the reap buries it), and the process registers anew. The
//! master judges liveness only after a node TTL of unbroken contact with a store up that long. It reaps
//! a dead node's durable queue and processing list: fires that never started move to live nodes;
//! a fire that was running re-runs (recovery `rerun`) or is recorded lost with an alert. A late
//! result from a reaped incarnation is recorded as superseded, never as the fire's outcome.
//!
//! CLOCK. Every node corrects its wall clock to Redis's (`clock.rs`), measured at each heartbeat;
//! a node that has not measured its offset does not become master.
//!
//! Failover after a master crash takes at most ttl + renewal interval + one round trip; after a
//! graceful shutdown the master deletes the lease and a candidate takes it at its next poll.
pub mod clock;
pub mod lease;
pub mod loads;
pub mod membership;
pub mod shares;
