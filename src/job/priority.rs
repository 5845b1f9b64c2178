//! Priorities: a job's `Priority`, and the one rule (`Fairness`) by which a node serves fires
//! waiting at different priorities, in its durable queue and for its workers (PROTOCOL section
//! 3.22). Pure: uses nothing of the crate's.
use serde::{Deserialize, Serialize};

/// How urgent a job's fires are when they wait on a busy node (PROTOCOL section 3.22), in its
/// durable queue or in its process for one of its workers: `high` first, then `normal`, then
/// `low`, except that a waiting level passed over `STARVATION_BOUND` times in a row is served next
/// (`Fairness`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    High,
    #[default]
    Normal,
    Low,
}

impl Priority {
    /// Highest first: the order a node drains its queue in when nothing starves.
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    /// Its name in the jobs file, the CLI, listings and the fire hash's `prio` field.
    pub fn name(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }

    /// 0 for `High`, 1 for `Normal`, 2 for `Low`: its place in `ALL`.
    pub fn rank(self) -> usize {
        self as usize
    }
}

/// How many takes from higher levels a level holding entries is passed over before it is served
/// next (PROTOCOL section 3.22).
pub const STARVATION_BOUND: u32 = 8;

/// A node's fairness between the levels of its queue (PROTOCOL section 3.22). It takes from the
/// highest level that holds an entry, except that a level passed over `STARVATION_BOUND` times
/// while it held entries goes first (the highest such, when two are). The count is kept until the
/// level is served, even across a time it held nothing (its entries stolen, say): a fire arriving
/// then may go first sooner, never later. A waiting level is therefore
/// passed over at most `STARVATION_BOUND + 1` times in a row (the extra one: a higher level served
/// for the same reason), and served at least once in every `STARVATION_BOUND + 2` takes. `High` is
/// never passed over but by a starving level. Kept in the node's memory (a restart starts the count
/// again); idle nodes stealing take the highest level and leave the count alone. Pure, so tables
/// test it. The same rule orders a node's durable queue (`recovery`) and the fires waiting in its
/// process for one of its workers (`worker::pool`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fairness {
    passed_over: [u32; 3],
}

impl Fairness {
    /// The levels to take from, in order, for the next take.
    pub fn order(&self) -> [Priority; 3] {
        let starving = |p: &Priority| self.passed_over[p.rank()] >= STARVATION_BOUND;
        let mut order = Priority::ALL;
        // A stable sort: starving levels first, each group highest first.
        order.sort_by_key(|p| !starving(p));
        order
    }

    /// After a take from `level`, with `waiting` the levels that held entries just before it.
    pub fn took(&mut self, level: Priority, waiting: &[Priority]) {
        self.passed_over[level.rank()] = 0;
        for w in waiting.iter().filter(|w| **w > level) {
            self.passed_over[w.rank()] = self.passed_over[w.rank()].saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Priority::{High as H, Low as L, Normal as N};

    /// Takes `n` times from queues that always hold entries at `levels`, as a drain under a
    /// backlog would; returns the levels taken, in order.
    fn drain(f: &mut Fairness, levels: &[Priority], n: usize) -> Vec<Priority> {
        (0..n)
            .map(|_| {
                let level = f.order().into_iter().find(|l| levels.contains(l)).expect("a level waits");
                f.took(level, levels);
                level
            })
            .collect()
    }

    #[test]
    fn with_nothing_starving_the_highest_waiting_level_goes_first() {
        let f = Fairness::default();
        assert_eq!(f.order(), [H, N, L]);
        let mut f = Fairness::default();
        assert_eq!(drain(&mut f, &[N, L], 3), [N, N, N]);
        assert_eq!(drain(&mut Fairness::default(), &[L], 3), [L, L, L], "alone, low is taken at once");
    }

    #[test]
    fn a_waiting_level_is_served_at_least_once_in_every_ten_takes() {
        // Every level waiting all along: eight highs, then the normal, then the low.
        let mut f = Fairness::default();
        let taken = drain(&mut f, &[H, N, L], 30);
        let expected: Vec<Priority> = std::iter::repeat_n(H, 8).chain([N, L]).cycle().take(30).collect();
        assert_eq!(taken, expected);
        // Two levels: the lower one after every eight.
        let taken = drain(&mut Fairness::default(), &[H, L], 18);
        let expected: Vec<Priority> = std::iter::repeat_n(H, 8).chain([L]).cycle().take(18).collect();
        assert_eq!(taken, expected);
        // The bound, over any run: never more than STARVATION_BOUND + 1 passes in a row.
        for levels in [&[H, N, L][..], &[H, N], &[N, L], &[H, L]] {
            let taken = drain(&mut Fairness::default(), levels, 200);
            for l in levels {
                let gaps = taken.split(|t| t == l).skip(1).map(|run| run.len());
                assert!(gaps.clone().all(|g| g as u32 <= STARVATION_BOUND + 1), "{levels:?} {l:?}: {taken:?}");
            }
        }
    }

    #[test]
    fn only_passes_while_waiting_count_and_a_served_level_starts_again() {
        let mut f = Fairness::default();
        // Low not waiting: highs pass nothing.
        drain(&mut f, &[H], 20);
        assert_eq!(f.order(), [H, N, L]);
        // Low waits through seven highs, then leaves (stolen): its count stays, one more pass makes 8.
        drain(&mut f, &[H, L], 7);
        f.took(H, &[H]);
        assert_eq!(f.order(), [H, N, L]);
        f.took(H, &[H, L]);
        assert_eq!(f.order(), [L, H, N], "starving: first");
        f.took(L, &[H, L]);
        assert_eq!(f.order(), [H, N, L], "served: counted from zero again");
        // A lower level's take passes no higher one.
        f.took(L, &[H, N, L]);
        assert_eq!(f, Fairness::default());
    }
}
