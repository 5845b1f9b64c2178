//! A node's own workers, handed out by priority (PROTOCOL section 3.22). Whatever waits in this
//! process for one of them waits in the line of a priority: a fire accepted from a master, claimed
//! or triggered here, or taken on an external worker's room, at its job's priority; the drain of
//! the node's durable queue, at the level of the entry it will take next. A freed worker goes to
//! the line `Fairness` names, first come first served within a line.
//! Owns: the permits and the lines. Uses: `job::priority`.
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{AcquireError, Notify, OwnedSemaphorePermit, Semaphore};

use crate::job::priority::{Fairness, Priority};

pub struct Pool {
    permits: Arc<Semaphore>,
    line: Mutex<Line>,
}

/// One waiter: its place, and how it is told that its turn came or went.
struct Ticket {
    id: u64,
    wake: Arc<Notify>,
}

#[derive(Default)]
struct Line {
    /// Tickets waiting, per level (`Priority::rank`), oldest first.
    waiting: [VecDeque<Ticket>; 3],
    next_ticket: u64,
    fairness: Fairness,
}

impl Line {
    /// The ticket whose turn it is: the oldest of the first level in `Fairness` order that waits.
    fn turn(&self) -> Option<&Ticket> {
        self.fairness.order().into_iter().find_map(|l| self.waiting[l.rank()].front())
    }

    fn leave(&mut self, level: Priority, ticket: u64) {
        let line = &mut self.waiting[level.rank()];
        if let Some(i) = line.iter().position(|t| t.id == ticket) {
            line.remove(i);
        }
    }

    /// The levels with someone waiting, highest first.
    fn levels(&self) -> Vec<Priority> {
        Priority::ALL.into_iter().filter(|l| !self.waiting[l.rank()].is_empty()).collect()
    }
}

/// Takes a ticket out of its line if it is still there (its wait was given up: the fire was
/// cancelled, or the node cut short), so that the turn passes on.
struct InLine<'p> {
    pool: &'p Pool,
    level: Priority,
    ticket: u64,
}

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        self.pool.change(|line| line.leave(self.level, self.ticket));
    }
}

impl Pool {
    pub fn new(workers: usize) -> Pool {
        Pool { permits: Arc::new(Semaphore::new(workers)), line: Mutex::new(Line::default()) }
    }

    fn line(&self) -> MutexGuard<'_, Line> {
        // A poisoned lock means a panic mid-update of a few counters: still usable.
        self.line.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the lines; when that moves the turn, tells the ticket that had it (it stops asking
    /// the semaphore) and the one that has it now. Only those two wake: a burst of waiters costs a
    /// wake-up or two per change, not one per waiter. (`notify_one` keeps its wake-up for a waiter
    /// not yet waiting, so none is lost.)
    fn change<T>(&self, f: impl FnOnce(&mut Line) -> T) -> T {
        let mut line = self.line();
        let before = line.turn().map(|t| (t.id, Arc::clone(&t.wake)));
        let out = f(&mut line);
        let after = line.turn().map(|t| (t.id, Arc::clone(&t.wake)));
        drop(line);
        if before.as_ref().map(|b| b.0) != after.as_ref().map(|a| a.0) {
            for (_, wake) in before.into_iter().chain(after) {
                wake.notify_one();
            }
        }
        out
    }

    /// One of the workers at once, when one is free and nobody waits in any line; None otherwise.
    pub fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        let line = self.line();
        if line.turn().is_some() {
            return None;
        }
        // Under the lines' lock: nobody can join ahead of this take unseen.
        Arc::clone(&self.permits).try_acquire_owned().ok()
    }

    /// Waits for one of the workers in the line of `level`. Only the ticket whose turn it is asks
    /// the semaphore, and it keeps its place there while its turn lasts; cancel-safe (a dropped
    /// wait leaves the line). An error: the pool is closed.
    pub async fn acquire(&self, level: Priority) -> Result<OwnedSemaphorePermit, AcquireError> {
        let wake = Arc::new(Notify::new());
        let ticket = self.change(|line| {
            let id = line.next_ticket;
            line.next_ticket += 1;
            line.waiting[level.rank()].push_back(Ticket { id, wake: Arc::clone(&wake) });
            id
        });
        let _in_line = InLine { pool: self, level, ticket };
        let mut asking = None;
        loop {
            if self.line().turn().map(|t| t.id) != Some(ticket) {
                // Not (or no longer) its turn: it gives up its place at the semaphore.
                asking = None;
                wake.notified().await;
                continue;
            }
            let ask = asking.get_or_insert_with(|| Box::pin(Arc::clone(&self.permits).acquire_owned()));
            // The wake first: when the turn moved on just as a worker was handed to this ask, the
            // ask is dropped (giving the worker back) rather than taken out of turn.
            tokio::select! {
                biased;
                _ = wake.notified() => {}
                p = ask => {
                    let p = p?;
                    self.change(|line| {
                        line.leave(level, ticket);
                        let waiting = line.levels();
                        line.fairness.took(level, &waiting);
                    });
                    return Ok(p);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use Priority::{High as H, Low as L, Normal as N};

    /// With the one worker busy, fires join the lines in `joins` order; the worker is then freed
    /// and passed on run after run. Returns the order in which they got it.
    async fn served(joins: &[Priority]) -> Vec<(Priority, usize)> {
        let pool = Arc::new(Pool::new(1));
        let busy = pool.acquire(N).await.expect("a worker");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for (i, level) in joins.iter().copied().enumerate() {
            let (waiter, tx) = (Arc::clone(&pool), tx.clone());
            tokio::spawn(async move {
                let p = waiter.acquire(level).await.expect("open");
                tx.send((level, i)).expect("send");
                // The run: the worker goes to the next one when it ends.
                tokio::time::sleep(Duration::from_millis(2)).await;
                drop(p);
            });
            // Each is in its line before the next joins.
            while pool.line().waiting.iter().map(VecDeque::len).sum::<usize>() < i + 1 {
                tokio::task::yield_now().await;
            }
        }
        drop(busy);
        let mut got = Vec::new();
        for _ in joins {
            got.push(tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("served").expect("one"));
        }
        got
    }

    #[tokio::test]
    async fn a_freed_worker_goes_to_the_highest_line_first_come_first_served_within_it() {
        let got = served(&[L, N, H, L, H, N]).await;
        assert_eq!(got, vec![(H, 2), (H, 4), (N, 1), (N, 5), (L, 0), (L, 3)]);
    }

    #[tokio::test]
    async fn a_waiting_line_is_served_within_ten_turns() {
        // Eleven highs and a low waiting: the low gets the ninth worker freed.
        let mut joins = vec![L];
        joins.extend(std::iter::repeat_n(H, 11));
        let got = served(&joins).await;
        assert_eq!(got.iter().position(|(l, _)| *l == L), Some(8), "{got:?}");
    }

    #[tokio::test]
    async fn a_wait_given_up_leaves_the_line_and_the_turn_passes_on() {
        let pool = Arc::new(Pool::new(1));
        let busy = pool.acquire(N).await.expect("a worker");
        let high = {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move { pool.acquire(H).await.map(drop) })
        };
        let low = {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move { pool.acquire(L).await })
        };
        while pool.line().waiting.iter().map(VecDeque::len).sum::<usize>() < 2 {
            tokio::task::yield_now().await;
        }
        high.abort();
        let _ = high.await;
        assert_eq!(pool.line().waiting[H.rank()].len(), 0, "the cancelled wait left its line");
        drop(busy);
        let p = tokio::time::timeout(Duration::from_secs(10), low).await.expect("served").expect("join");
        assert!(p.is_ok());
    }
}
