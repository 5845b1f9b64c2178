//! The actions: which are enabled in a state, and what each does. Store steps follow their Lua
//! scripts line by line (the script is named on each); node steps follow the Rust that calls them.

use crate::*;

/// How a call's reply went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reply {
    Got,
    /// Committed, reply lost (a timeout, a broken connection): the caller asks again.
    LostRetry,
    /// Committed, reply lost, and the caller gives up (the rescan or the sweep finds the rest).
    LostGiveUp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    // Faults, and what undoes them.
    Crash(u8),
    Restart(u8),
    Pause(u8, PauseLen),
    Wake(u8),
    /// Redis restarts; `long`: longer than the lease and node TTLs (keys with those TTLs expire).
    RedisRestart {
        long: bool,
    },
    /// `appendfsync everysec`: the AOF reaches the disk.
    Fsync,
    /// Redis has been up for a node TTL again (the master may judge liveness).
    Uptime,
    // Timers.
    LeaseExpire(u8),
    HbExpire(u8),
    LockExpire(u8),
    // Lease and membership.
    Acquire {
        node: u8,
        shard: u8,
        reply_lost: bool,
    },
    StepDown {
        node: u8,
        shard: u8,
    },
    Beat(u8),
    // The master's scheduler and dispatch.
    /// `Scheduler::step`: mastership checked, `due.lua` read the watermark, `claim.lua`, then the
    /// claimed fire routed to `route` (this node: accepted here; another: SubmitTask).
    Claim {
        node: u8,
        job: u8,
        route: u8,
        reply_lost: bool,
    },
    /// A fault: the master checked its mastership and read the watermark, then is paused before
    /// its claim goes out (or the request is slow): the claim arrives later, with this lease.
    PauseBeforeClaim {
        node: u8,
        job: u8,
        len: PauseLen,
    },
    /// The claim planned before a pause goes out.
    SendClaim {
        node: u8,
        route: u8,
        reply_lost: bool,
    },
    Deliver {
        fire: u8,
        reply_lost: bool,
    },
    Timeout {
        fire: u8,
        keep: bool,
    },
    Enqueue {
        node: u8,
        fire: u8,
    },
    // The master's sweep.
    Sweep {
        node: u8,
        fire: u8,
        target: u8,
    },
    Reap {
        node: u8,
        dead: u8,
        fire: u8,
        processing: bool,
        target: u8,
    },
    // A node's queue and recovery.
    Pop {
        node: u8,
        fire: u8,
        reply_lost: bool,
    },
    Steal {
        node: u8,
        victim: u8,
        fire: u8,
        reply_lost: bool,
    },
    Rescan {
        node: u8,
        fire: u8,
    },
    // A worker task on (node, fire).
    Accept {
        node: u8,
        fire: u8,
        reply_lost: bool,
    },
    /// `start.lua`, then the checks before the handler and the handler call, in one step unless
    /// `pause_after` (a fault: the node is paused right after the start's reply).
    Start {
        node: u8,
        fire: u8,
        reply: Reply,
        pause_after: Option<PauseLen>,
    },
    HandToMaster {
        node: u8,
        fire: u8,
        wait_over: bool,
        reply_lost: bool,
    },
    Check {
        node: u8,
        fire: u8,
    },
    /// `hand_back`: mastership lapsed before a master-only handler; hand the started fire to the
    /// master (`hand_over`, running).
    HandBack {
        node: u8,
        fire: u8,
        wait_over: bool,
        reply_lost: bool,
    },
    Begin {
        node: u8,
        fire: u8,
    },
    /// The handler returns and `finish.lua` records it.
    End {
        node: u8,
        fire: u8,
        reply_lost: bool,
    },
    Finish {
        node: u8,
        fire: u8,
        reply_lost: bool,
    },
}

/// What `enqueue.lua` answered, as far as `enqueue_somewhere` cares.
enum Enqueued {
    Fenced,
    TargetDead,
    Done,
}

#[derive(Debug, PartialEq)]
enum Reaped {
    Fenced,
    Alive,
    Gone,
    StaleCopy,
    Moved,
    Rerun,
    Lost,
    Dropped,
}

#[derive(Clone, Copy)]
enum Fence {
    Lease(Lease),
    /// `hb:<node>` must hold `inc`; `handoff`: the worker's own hand-over (`-`).
    Own {
        inc: u8,
        handoff: bool,
    },
}

enum Accepted {
    /// Taken only (a master-only job's fire): start.lua starts it.
    Ok,
    /// Taken and started in the same step (section 3.8), as this attempt.
    Started(u8),
    Refused,
}

enum Started {
    NotLive,
    Gone,
    Resume(u8),
    MasterOnly,
    Ok(u8),
}

fn bit(f: u8) -> u16 {
    1u16 << f
}

impl ProtocolModel {
    pub(crate) fn initial(&self) -> State {
        let n = self.cfg.nodes as usize;
        let mut redis = Redis {
            lease: [None; SHARDS],
            epoch: [0; SHARDS],
            next: [None; MAX_JOBS],
            fires: [None; MAX_FIRES],
            lock: [None; MAX_JOBS],
            hb: [None; MAX_NODES],
            gone: [0; MAX_NODES],
            q: [0; MAX_NODES],
            p: [0; MAX_NODES],
            inflight: 0,
            uptime_ok: true,
        };
        for j in 0..self.cfg.jobs.len() {
            redis.next[j] = Some(0);
        }
        let idle = Node { up: false, paused: None, registered: false, inc: 0, role: [None; SHARDS], intent: None };
        let mut nodes = [idle; MAX_NODES];
        for (i, node) in nodes.iter_mut().enumerate().take(n) {
            node.up = true;
            node.registered = true;
            redis.hb[i] = Some(0);
        }
        State {
            synced: (self.cfg.aof == Aof::EverySec).then(|| redis.clone()),
            redis,
            nodes,
            tasks: Vec::new(),
            net: Vec::new(),
            enq: Vec::new(),
            ghost: Ghost {
                faults: self.cfg.faults,
                max_epoch: 0,
                claim_epoch: [0; SHARDS],
                runs: [0; MAX_FIRES],
                active: [0; MAX_FIRES],
                bad: 0,
                seen: 0,
            },
        }
    }

    fn node_ids(&self) -> impl Iterator<Item = u8> {
        0..self.cfg.nodes
    }

    fn fire_ids(&self) -> impl Iterator<Item = u8> {
        0..self.cfg.fires() as u8
    }

    /// Up and not paused: the process can take a step.
    fn acts(s: &State, n: u8) -> bool {
        let node = &s.nodes[n as usize];
        node.up && node.paused.is_none()
    }

    /// `Role::active()`: the lease this node may act under.
    fn active(s: &State, n: u8, shard: usize) -> Option<Lease> {
        s.nodes[n as usize].role[shard]
    }

    /// Where a recovered fire may go: the master itself for a master-only job (`target_for`), else
    /// a live node by the master's load table (any node whose heartbeat key is there, or itself).
    fn targets(&self, s: &State, master: u8, f: u8) -> Vec<u8> {
        if self.cfg.spec_of(f).master_only {
            return vec![master];
        }
        self.node_ids().filter(|&t| t == master || s.redis.hb[t as usize].is_some()).collect()
    }

    pub(crate) fn enabled(&self, s: &State, out: &mut Vec<Action>) {
        let c = &self.cfg;
        let any = s.ghost.faults > 0;
        let k = c.kinds;
        let fault = any && k.messages;
        let (crash, pause, restart) = (any && k.crash, any && k.pause, any && k.redis_restart);
        let everysec = c.aof == Aof::EverySec;
        // Faults.
        for n in self.node_ids() {
            let node = &s.nodes[n as usize];
            if node.up && crash {
                out.push(Action::Crash(n));
            }
            if !node.up && s.redis.hb[n as usize].is_none() {
                out.push(Action::Restart(n));
            }
            if node.up && node.paused.is_none() && pause {
                for len in self.pause_lens(true) {
                    out.push(Action::Pause(n, len));
                }
            }
            if node.up && node.paused.is_some() {
                out.push(Action::Wake(n));
            }
        }
        if restart {
            out.push(Action::RedisRestart { long: false });
            out.push(Action::RedisRestart { long: true });
        }
        if everysec && s.synced.as_ref() != Some(&s.redis) {
            out.push(Action::Fsync);
        }
        if !s.redis.uptime_ok
            && self.node_ids().all(|n| {
                let node = &s.nodes[n as usize];
                !(node.up && node.paused.is_none() && node.registered) || s.redis.hb[n as usize] == Some(node.inc)
            })
        {
            out.push(Action::Uptime);
        }
        // Timers.
        for sh in 0..SHARDS {
            if let Some(l) = s.redis.lease[sh] {
                let h = &s.nodes[l.node as usize];
                if !h.up || h.role[sh] != Some(l) {
                    out.push(Action::LeaseExpire(sh as u8));
                }
            }
        }
        for n in self.node_ids() {
            let node = &s.nodes[n as usize];
            if let Some(x) = s.redis.hb[n as usize] {
                if !node.up || x != node.inc || !node.registered {
                    out.push(Action::HbExpire(n));
                }
            }
        }
        for j in 0..c.jobs.len() {
            if let Some(f) = s.redis.lock[j] {
                if self.lock_may_expire(s, f) {
                    out.push(Action::LockExpire(j as u8));
                }
            }
        }
        // Lease and membership.
        for n in self.node_ids() {
            if !Self::acts(s, n) {
                continue;
            }
            let node = &s.nodes[n as usize];
            for sh in 0..SHARDS {
                if node.registered
                    && s.redis.hb[n as usize] == Some(node.inc)
                    && s.redis.lease[sh].is_none()
                    && node.role[sh].is_none()
                {
                    out.push(Action::Acquire { node: n, shard: sh as u8, reply_lost: false });
                    if fault {
                        out.push(Action::Acquire { node: n, shard: sh as u8, reply_lost: true });
                    }
                }
                if let Some(l) = node.role[sh] {
                    if s.redis.lease[sh] != Some(l) {
                        out.push(Action::StepDown { node: n, shard: sh as u8 });
                    }
                }
            }
            if s.redis.hb[n as usize] != Some(node.inc) && (node.registered || s.redis.hb[n as usize].is_none()) {
                out.push(Action::Beat(n));
            }
        }
        // The master: claim, dispatch.
        for n in self.node_ids() {
            if !Self::acts(s, n) {
                continue;
            }
            let node = &s.nodes[n as usize];
            match node.intent {
                None => {
                    for j in 0..c.jobs.len() {
                        let Some(k) = s.redis.next[j] else { continue };
                        if Self::active(s, n, c.shard_of(j)).is_none() {
                            continue;
                        }
                        for route in self.targets(s, n, c.fire(j, k)) {
                            out.push(Action::Claim { node: n, job: j as u8, route, reply_lost: false });
                        }
                        if fault {
                            // The reply of a claim into the master's hands lost, and of one for a
                            // peer (claimed `dispatching`, for the sweep).
                            out.push(Action::Claim { node: n, job: j as u8, route: n, reply_lost: true });
                            if let Some(peer) = self.targets(s, n, c.fire(j, k)).into_iter().find(|r| *r != n) {
                                out.push(Action::Claim { node: n, job: j as u8, route: peer, reply_lost: true });
                            }
                        }
                        if pause {
                            for len in self.pause_lens(false) {
                                out.push(Action::PauseBeforeClaim { node: n, job: j as u8, len });
                            }
                        }
                    }
                }
                Some(i) => {
                    let f = c.fire(i.job as usize, i.k);
                    for route in self.targets(s, n, f) {
                        out.push(Action::SendClaim { node: n, route, reply_lost: false });
                    }
                    if fault {
                        out.push(Action::SendClaim { node: n, route: n, reply_lost: true });
                        if let Some(peer) = self.targets(s, n, f).into_iter().find(|r| *r != n) {
                            out.push(Action::SendClaim { node: n, route: peer, reply_lost: true });
                        }
                    }
                }
            }
        }
        for d in &s.net {
            if Self::acts(s, d.to) {
                out.push(Action::Deliver { fire: d.fire, reply_lost: false });
                if fault && d.waiting {
                    out.push(Action::Deliver { fire: d.fire, reply_lost: true });
                }
            }
            if d.waiting && (fault || !Self::acts(s, d.to)) {
                out.push(Action::Timeout { fire: d.fire, keep: false });
                out.push(Action::Timeout { fire: d.fire, keep: true });
            }
        }
        for e in &s.enq {
            if Self::acts(s, e.node) {
                out.push(Action::Enqueue { node: e.node, fire: e.fire });
            }
        }
        // The master's sweep.
        for n in self.node_ids() {
            if !Self::acts(s, n) {
                continue;
            }
            for f in self.fire_ids() {
                if s.redis.inflight & bit(f) == 0 || Self::active(s, n, c.shard_of_fire(f)).is_none() {
                    continue;
                }
                if self.being_delivered(s, f) {
                    continue;
                }
                if let Some(fire) = s.redis.fires[f as usize] {
                    // A fire handed over and still in its owner's lists is only looked at again.
                    if matches!(fire.state, FState::Accepted | FState::Queued) {
                        let o = fire.node.unwrap_or(0) as usize;
                        if (s.redis.q[o] | s.redis.p[o]) & bit(f) != 0 {
                            continue;
                        }
                    }
                }
                for target in self.targets(s, n, f) {
                    out.push(Action::Sweep { node: n, fire: f, target });
                }
            }
            if !s.redis.uptime_ok {
                continue;
            }
            for dead in self.node_ids() {
                if dead == n || s.redis.hb[dead as usize].is_some() {
                    continue;
                }
                for f in self.fire_ids() {
                    if Self::active(s, n, c.shard_of_fire(f)).is_none() {
                        continue;
                    }
                    for (processing, list) in [(false, s.redis.q[dead as usize]), (true, s.redis.p[dead as usize])] {
                        if list & bit(f) != 0 {
                            for target in self.targets(s, n, f) {
                                out.push(Action::Reap { node: n, dead, fire: f, processing, target });
                            }
                        }
                    }
                }
            }
        }
        // Queues and recovery.
        for n in self.node_ids() {
            if !Self::acts(s, n) {
                continue;
            }
            let (q, p) = (s.redis.q[n as usize], s.redis.p[n as usize]);
            for f in self.fire_ids() {
                if q & bit(f) != 0 {
                    out.push(Action::Pop { node: n, fire: f, reply_lost: false });
                    if fault {
                        out.push(Action::Pop { node: n, fire: f, reply_lost: true });
                    }
                }
                if p & bit(f) != 0 && !s.holds(n, f) {
                    out.push(Action::Rescan { node: n, fire: f });
                }
            }
            if q == 0 {
                for v in self.node_ids() {
                    if v == n || s.redis.hb[v as usize].is_none() {
                        continue;
                    }
                    for f in self.fire_ids() {
                        let queued_on_v =
                            s.redis.fires[f as usize].is_some_and(|x| x.state == FState::Queued && x.node == Some(v));
                        if s.redis.q[v as usize] & bit(f) != 0 && queued_on_v {
                            out.push(Action::Steal { node: n, victim: v, fire: f, reply_lost: false });
                            if fault {
                                out.push(Action::Steal { node: n, victim: v, fire: f, reply_lost: true });
                            }
                        }
                    }
                }
            }
        }
        // Worker tasks.
        for t in &s.tasks {
            let (node, fire) = (t.node, t.fire);
            if !Self::acts(s, node) {
                continue;
            }
            match t.phase {
                Phase::Accept { .. } => {
                    out.push(Action::Accept { node, fire, reply_lost: false });
                    if fault {
                        out.push(Action::Accept { node, fire, reply_lost: true });
                    }
                }
                Phase::Start { .. } => {
                    out.push(Action::Start { node, fire, reply: Reply::Got, pause_after: None });
                    if pause {
                        for len in self.pause_lens(false) {
                            out.push(Action::Start { node, fire, reply: Reply::Got, pause_after: Some(len) });
                        }
                    }
                    if fault {
                        out.push(Action::Start { node, fire, reply: Reply::LostRetry, pause_after: None });
                        out.push(Action::Start { node, fire, reply: Reply::LostGiveUp, pause_after: None });
                    }
                }
                Phase::MasterOnly => {
                    out.push(Action::HandToMaster { node, fire, wait_over: false, reply_lost: false });
                    if fault {
                        out.push(Action::HandToMaster { node, fire, wait_over: false, reply_lost: true });
                    }
                    if c.master_wait_times_out {
                        out.push(Action::HandToMaster { node, fire, wait_over: true, reply_lost: false });
                    }
                }
                Phase::HandBack => {
                    out.push(Action::HandBack { node, fire, wait_over: false, reply_lost: false });
                    if fault {
                        out.push(Action::HandBack { node, fire, wait_over: false, reply_lost: true });
                    }
                    if c.master_wait_times_out {
                        out.push(Action::HandBack { node, fire, wait_over: true, reply_lost: false });
                    }
                }
                Phase::Check { .. } => out.push(Action::Check { node, fire }),
                Phase::Ready => out.push(Action::Begin { node, fire }),
                Phase::Run => {
                    out.push(Action::End { node, fire, reply_lost: false });
                    if fault {
                        out.push(Action::End { node, fire, reply_lost: true });
                    }
                }
                Phase::Finish(_) => {
                    out.push(Action::Finish { node, fire, reply_lost: false });
                    if fault {
                        out.push(Action::Finish { node, fire, reply_lost: true });
                    }
                }
            }
        }
    }

    /// Pause lengths worth trying (`short`: also a pause that outlives nothing).
    fn pause_lens(&self, short: bool) -> Vec<PauseLen> {
        let mut v = Vec::with_capacity(4);
        if short {
            v.push(PauseLen::Short);
        }
        v.push(PauseLen::PastLease);
        v.push(PauseLen::PastNode);
        if self.cfg.pause_outlasts_lock {
            v.push(PauseLen::PastLock);
        }
        v
    }

    /// A node is paused; what the pause outlives expires now.
    fn pause(s: &mut State, n: u8, len: PauseLen) {
        s.nodes[n as usize].paused = Some(len);
        s.ghost.faults -= 1;
        if len >= PauseLen::PastLease {
            for sh in 0..SHARDS {
                if s.redis.lease[sh].is_some_and(|l| l.node == n) {
                    s.redis.lease[sh] = None;
                    s.nodes[n as usize].role[sh] = None;
                }
            }
        }
        if len >= PauseLen::PastNode {
            s.redis.hb[n as usize] = None;
        }
    }

    /// A forbid lock expires only when nobody renews it: its fire is over (a fire recorded `lost`
    /// leaves its lock to expire) and no worker is between the lock check and the end of its run
    /// (a paused one still counts, unless a pause may outlast the lock). A lock held for a fire
    /// still waiting to start outlives the start deadline (misfires are not modelled).
    fn lock_may_expire(&self, s: &State, f: u8) -> bool {
        let renewing = s.tasks.iter().any(|t| {
            t.fire == f
                && matches!(
                    t.phase,
                    Phase::Check { .. } | Phase::HandBack | Phase::Ready | Phase::Run | Phase::Finish(_)
                )
                && s.nodes[t.node as usize].up
                && s.nodes[t.node as usize].paused != Some(PauseLen::PastLock)
        });
        if renewing {
            return false;
        }
        match s.redis.fires[f as usize] {
            None => true,
            Some(x) if x.state.is_final() => true,
            Some(x) => {
                x.state == FState::Running
                    && x.node.is_some_and(|o| s.nodes[o as usize].paused == Some(PauseLen::PastLock))
            }
        }
    }

    pub(crate) fn step(&self, s0: &State, a: Action) -> Option<State> {
        let c = &self.cfg;
        let mut s = s0.clone();
        match a {
            Action::Crash(n) => {
                let node = &mut s.nodes[n as usize];
                node.up = false;
                node.paused = None;
                node.role = [None; SHARDS];
                node.intent = None;
                s.tasks.retain(|t| t.node != n);
                s.enq.retain(|e| e.node != n);
                for d in s.net.iter_mut() {
                    if d.from == n {
                        d.waiting = false;
                    }
                }
                s.net.retain(|d| d.to != n || d.waiting);
                for a in s.ghost.active.iter_mut() {
                    *a &= !(1 << n);
                }
                // Its lease expires (nobody else can act as master before that anyway).
                for sh in 0..SHARDS {
                    if s.redis.lease[sh].is_some_and(|l| l.node == n) {
                        s.redis.lease[sh] = None;
                    }
                }
                s.ghost.faults -= 1;
            }
            Action::Restart(n) => {
                // A new process: a new incarnation, registered (`register.lua`: SET NX).
                let node = &mut s.nodes[n as usize];
                node.up = true;
                node.registered = true;
                node.inc += 1;
                s.redis.hb[n as usize] = Some(node.inc);
            }
            Action::Pause(n, len) => Self::pause(&mut s, n, len),
            Action::Wake(n) => s.nodes[n as usize].paused = None,
            Action::RedisRestart { long } => {
                s.ghost.faults -= 1;
                if let Some(synced) = &s.synced {
                    let mut back = synced.clone();
                    // A TTL key whose value changed after the fsync was replaced after it expired
                    // (a lease taken over, a node registered anew): restored, it is expired.
                    for sh in 0..SHARDS {
                        if back.lease[sh] != s.redis.lease[sh] {
                            back.lease[sh] = None;
                        }
                    }
                    for n in 0..MAX_NODES {
                        if back.hb[n] != s.redis.hb[n] {
                            back.hb[n] = None;
                        }
                    }
                    s.redis = back;
                }
                if long {
                    for sh in 0..SHARDS {
                        s.redis.lease[sh] = None;
                    }
                    s.redis.hb = [None; MAX_NODES];
                    // Nobody could renew: every holder's local deadline has passed too.
                    for node in s.nodes.iter_mut() {
                        node.role = [None; SHARDS];
                    }
                }
                s.redis.uptime_ok = false;
            }
            Action::Fsync => s.synced = Some(s.redis.clone()),
            Action::Uptime => s.redis.uptime_ok = true,
            Action::LeaseExpire(sh) => {
                let l = s.redis.lease[sh as usize].take()?;
                // The holder's local deadline passed before the key's TTL: a paused holder notices
                // when it wakes (a claim it planned before still goes out, with this lease).
                let h = &mut s.nodes[l.node as usize];
                if h.role[sh as usize] == Some(l) {
                    h.role[sh as usize] = None;
                }
            }
            Action::HbExpire(n) => s.redis.hb[n as usize] = None,
            Action::LockExpire(j) => s.redis.lock[j as usize] = None,
            Action::Acquire { node: n, shard, reply_lost } => {
                // `lease_acquire.lua`: max(Redis TIME ms, counter, floor) + 1; Redis's clock is
                // above every epoch issued before, so the epoch is the next above all of them.
                let sh = shard as usize;
                let e = s.ghost.max_epoch.max(s.redis.epoch[sh]) + 1;
                if e <= s.ghost.max_epoch {
                    s.ghost.bad |= BAD_EPOCH;
                }
                s.ghost.max_epoch = e;
                s.redis.epoch[sh] = e;
                let l = Lease { node: n, epoch: e, inc: s.nodes[n as usize].inc };
                s.redis.lease[sh] = Some(l);
                if reply_lost {
                    s.ghost.faults -= 1;
                } else {
                    s.nodes[n as usize].role[sh] = Some(l);
                }
            }
            Action::StepDown { node, shard } => s.nodes[node as usize].role[shard as usize] = None,
            Action::Beat(n) => {
                // `beat.lua` (and `register.lua` after a revocation).
                let node = s.nodes[n as usize];
                let cur = s.redis.hb[n as usize];
                if !node.registered {
                    s.redis.hb[n as usize] = Some(node.inc);
                    s.nodes[n as usize].registered = true;
                } else if cur.is_none() && s.redis.gone[n as usize] & (1 << node.inc) == 0 {
                    // RESUMED: the key had merely expired.
                    s.redis.hb[n as usize] = Some(node.inc);
                } else {
                    // REVOKED: a new incarnation, registered if the key is free.
                    let nn = &mut s.nodes[n as usize];
                    nn.inc += 1;
                    nn.registered = cur.is_none();
                    if cur.is_none() {
                        s.redis.hb[n as usize] = Some(nn.inc);
                    }
                }
            }
            Action::Claim { node: n, job, route, reply_lost } => {
                let lease = Self::active(&s, n, c.shard_of(job as usize))?;
                let k = s.redis.next[job as usize]?;
                self.send_claim(&mut s, n, Intent { job, k, lease }, route, reply_lost)?;
            }
            Action::PauseBeforeClaim { node: n, job, len } => {
                let lease = Self::active(&s, n, c.shard_of(job as usize))?;
                let k = s.redis.next[job as usize]?;
                s.nodes[n as usize].intent = Some(Intent { job, k, lease });
                Self::pause(&mut s, n, len);
            }
            Action::SendClaim { node: n, route, reply_lost } => {
                let i = s.nodes[n as usize].intent.take()?;
                self.send_claim(&mut s, n, i, route, reply_lost)?;
            }
            Action::Deliver { fire: f, reply_lost } => {
                // `NodeApi::submit` -> `accept_submitted`: `accept.lua` with the sender's epoch.
                let idx = s.net.iter().position(|d| d.fire == f)?;
                let d = s.net.remove(idx);
                let inc = s.nodes[d.to as usize].inc;
                let r = self.accept(&mut s, d.to, inc, d.lease.epoch, f);
                let ok = !matches!(r, Accepted::Refused);
                Self::spawn_taken(&mut s, d.to, f, r);
                if reply_lost {
                    s.ghost.faults -= 1;
                }
                if d.waiting && (!ok || reply_lost) {
                    Self::push_enq(&mut s, Enq { node: d.from, fire: f, target: d.to, lease: d.lease });
                }
            }
            Action::Timeout { fire: f, keep } => {
                let idx = s.net.iter().position(|d| d.fire == f)?;
                let d = s.net[idx];
                if Self::acts(&s, d.to) {
                    s.ghost.faults -= 1;
                }
                if keep {
                    s.net[idx].waiting = false;
                } else {
                    s.net.remove(idx);
                }
                Self::push_enq(&mut s, Enq { node: d.from, fire: f, target: d.to, lease: d.lease });
            }
            Action::Enqueue { node: n, fire: f } => {
                let idx = s.enq.iter().position(|e| e.node == n && e.fire == f)?;
                let e = s.enq.remove(idx);
                self.enqueue_somewhere(&mut s, n, e.lease, f, e.target);
            }
            Action::Sweep { node: n, fire: f, target } => {
                let lease = Self::active(&s, n, c.shard_of_fire(f))?;
                self.enqueue_somewhere(&mut s, n, lease, f, target);
            }
            Action::Reap { node: n, dead, fire: f, processing, target } => {
                let lease = Self::active(&s, n, c.shard_of_fire(f))?;
                self.reap(&mut s, Fence::Lease(lease), dead, processing, f, target);
            }
            Action::Pop { node: n, fire: f, reply_lost } => {
                // `take_queued`: take.lua moves q -> p (no fence; the model's one queue list stands for
                // the three priority lists, whose order does not touch safety).
                s.redis.q[n as usize] &= !bit(f);
                Self::push(&mut s, ListRef::P(n), f);
                if reply_lost {
                    s.ghost.faults -= 1;
                } else {
                    Self::spawn(&mut s, n, f, Phase::Start { as_master: false });
                }
            }
            Action::Steal { node: n, victim: v, fire: f, reply_lost } => {
                // `steal.lua`.
                let inc = s.nodes[n as usize].inc;
                if s.redis.hb[n as usize] != Some(inc) {
                    return None;
                }
                let x = s.redis.fires[f as usize].as_mut()?;
                if x.state != FState::Queued || x.node != Some(v) {
                    return None;
                }
                x.state = FState::Accepted;
                x.node = Some(n);
                x.inc = Some(inc);
                s.redis.q[v as usize] &= !bit(f);
                Self::push(&mut s, ListRef::P(n), f);
                s.ghost.seen |= SEEN_STEAL;
                if reply_lost {
                    s.ghost.faults -= 1;
                } else {
                    Self::spawn(&mut s, n, f, Phase::Start { as_master: false });
                }
            }
            Action::Rescan { node: n, fire: f } => {
                // `Recovery::rescan`: adoption by `reap.lua` fenced by the live incarnation, then a
                // start of what is still in the processing list and in no task.
                let inc = s.nodes[n as usize].inc;
                let target = if c.spec_of(f).master_only { Self::current_master(&s, n, f, c) } else { n };
                let r = self.reap(&mut s, Fence::Own { inc, handoff: false }, n, true, f, target);
                if r == Reaped::Alive || r == Reaped::Fenced {
                    Self::spawn(&mut s, n, f, Phase::Start { as_master: false });
                }
            }
            Action::Accept { node: n, fire: f, reply_lost } => {
                let Phase::Accept { epoch } = s.task(n, f)?.phase else { return None };
                let inc = s.nodes[n as usize].inc;
                let r = self.accept(&mut s, n, inc, epoch, f);
                if reply_lost {
                    s.ghost.faults -= 1;
                }
                match r {
                    Accepted::Ok if !reply_lost => Self::set_phase(&mut s, n, f, Phase::Start { as_master: false }),
                    Accepted::Started(att) if !reply_lost => {
                        Self::set_attempt(&mut s, n, f, att);
                        Self::set_phase(&mut s, n, f, Phase::Check { stand_in: false });
                    }
                    _ => Self::drop_task(&mut s, n, f),
                }
            }
            Action::Start { node: n, fire: f, reply, pause_after } => {
                let t = *s.task(n, f)?;
                let Phase::Start { as_master } = t.phase else { return None };
                let not_master = !as_master && Self::active(&s, n, c.shard_of_fire(f)).is_none();
                let r = self.start(&mut s, n, t.inc, f, not_master);
                match reply {
                    Reply::Got => match r {
                        Started::Ok(att) | Started::Resume(att) => {
                            Self::set_attempt(&mut s, n, f, att);
                            Self::set_phase(&mut s, n, f, Phase::Check { stand_in: as_master });
                            if let Some(len) = pause_after {
                                Self::pause(&mut s, n, len);
                            } else {
                                // The checks before the handler, at once (they may have to wait).
                                self.check(&mut s, n, f);
                            }
                        }
                        Started::MasterOnly if pause_after.is_none() => {
                            Self::set_phase(&mut s, n, f, Phase::MasterOnly)
                        }
                        Started::NotLive | Started::Gone if pause_after.is_none() => Self::drop_task(&mut s, n, f),
                        _ => return None,
                    },
                    Reply::LostRetry => s.ghost.faults -= 1,
                    Reply::LostGiveUp => {
                        s.ghost.faults -= 1;
                        Self::drop_task(&mut s, n, f);
                    }
                }
            }
            Action::HandToMaster { node: n, fire: f, wait_over, reply_lost } => {
                // `hand_to_master`: `master_elsewhere`, then `hand_over` (not running) to it.
                if s.task(n, f)?.phase != Phase::MasterOnly {
                    return None;
                }
                let inc = s.nodes[n as usize].inc;
                match self.master_elsewhere(&s, n, f) {
                    Elsewhere::Me if !reply_lost => Self::set_phase(&mut s, n, f, Phase::Start { as_master: true }),
                    Elsewhere::Node(m) => {
                        let r = self.reap(&mut s, Fence::Own { inc, handoff: true }, n, true, f, m);
                        if reply_lost {
                            // An error: not handed over (as far as the worker knows).
                            s.ghost.faults -= 1;
                            Self::set_phase(&mut s, n, f, Phase::Start { as_master: true });
                        } else if r == Reaped::Moved {
                            s.ghost.seen |= SEEN_HANDED;
                            Self::drop_task(&mut s, n, f);
                        } else {
                            Self::set_phase(&mut s, n, f, Phase::Start { as_master: true });
                        }
                    }
                    Elsewhere::Nobody if wait_over && !reply_lost => {
                        Self::set_phase(&mut s, n, f, Phase::Start { as_master: true })
                    }
                    _ => return None,
                }
            }
            Action::HandBack { node: n, fire: f, wait_over, reply_lost } => {
                if s.task(n, f)?.phase != Phase::HandBack {
                    return None;
                }
                let inc = s.nodes[n as usize].inc;
                match self.master_elsewhere(&s, n, f) {
                    Elsewhere::Me if !reply_lost => self.ready(&mut s, n, f),
                    Elsewhere::Node(m) => {
                        let r = self.reap(&mut s, Fence::Own { inc, handoff: true }, n, true, f, m);
                        if reply_lost {
                            s.ghost.faults -= 1;
                            if !c.old_hand_back {
                                // Leave the fire to the rescan (it is in this node's processing
                                // list unless the hand-over went through).
                                Self::drop_task(&mut s, n, f);
                            } else {
                                // The old hand_back: an error was `NoOtherMaster`: the handler ran here.
                                self.ready(&mut s, n, f);
                            }
                        } else if r == Reaped::Rerun {
                            // Handed: this attempt is recorded skipped, the fire waits on the master.
                            s.ghost.seen |= SEEN_HANDED;
                            Self::drop_task(&mut s, n, f);
                        } else if r == Reaped::Fenced && !c.old_hand_back {
                            // This node's heartbeat key is not its own right now (expired during a
                            // pause, or revoked): leave the fire to the rescan / the reaper.
                            Self::drop_task(&mut s, n, f);
                        } else {
                            // `RecoveredElsewhere`, recorded superseded (for Fenced: the old hand_back).
                            Self::set_phase(&mut s, n, f, Phase::Finish(FState::Superseded));
                        }
                    }
                    Elsewhere::Nobody if wait_over && !reply_lost => self.ready(&mut s, n, f),
                    _ => return None,
                }
            }
            Action::Check { node: n, fire: f } => {
                if !matches!(s.task(n, f)?.phase, Phase::Check { .. }) {
                    return None;
                }
                self.check(&mut s, n, f);
            }
            Action::Begin { node: n, fire: f } => {
                if s.task(n, f)?.phase != Phase::Ready {
                    return None;
                }
                self.begin(&mut s, n, f);
            }
            Action::End { node: n, fire: f, reply_lost } => {
                let t = *s.task(n, f)?;
                s.ghost.active[f as usize] &= !(1 << n);
                self.finish(&mut s, n, t.inc, f, FState::Succeeded, t.attempt);
                if reply_lost {
                    s.ghost.faults -= 1;
                    Self::set_phase(&mut s, n, f, Phase::Finish(FState::Succeeded));
                } else {
                    Self::drop_task(&mut s, n, f);
                }
            }
            Action::Finish { node: n, fire: f, reply_lost } => {
                let t = *s.task(n, f)?;
                let Phase::Finish(outcome) = t.phase else { return None };
                self.finish(&mut s, n, t.inc, f, outcome, t.attempt);
                if reply_lost {
                    s.ghost.faults -= 1;
                } else {
                    Self::drop_task(&mut s, n, f);
                }
            }
        }
        Some(s)
    }

    /// `claim.lua` for a planned claim, then the route of a claimed fire. A fire routed to the
    /// claimer is claimed into its hands (`Claim::here`): accepted by it in the claim's step when
    /// its heartbeat holds its incarnation, else claimed `dispatching` and accepted after, as
    /// before. None for an action that names a route it cannot take (the same step under another
    /// name).
    fn send_claim(&self, s: &mut State, n: u8, i: Intent, route: u8, reply_lost: bool) -> Option<()> {
        let claimed = self.claim(s, i);
        // claim.lua's `here`: the lease's incarnation checked against the heartbeat only (the
        // claim is fenced already), and written into the fire.
        let inc = i.lease.inc;
        let here = match claimed {
            Some(f) if route == n && s.redis.hb[n as usize] == Some(inc) => Some(self.take(s, n, inc, f)),
            _ => None,
        };
        if reply_lost {
            s.ghost.faults -= 1;
            return Some(());
        }
        match (claimed, here) {
            (Some(f), Some(taken)) => Self::spawn_taken(s, n, f, taken),
            (Some(f), None) => self.route(s, n, f, route, i.lease),
            (None, _) if route != n => return None,
            (None, _) => {}
        }
        Some(())
    }

    /// A dispatching fire whose hand-over is still under way: a SubmitTask awaited by a running
    /// sender, a fallback enqueue about to be made, the master's own accept. The sweep looks at a
    /// fire only after the dispatch deadline (2.6 s), past the SubmitTask timeout (0.5 s): it
    /// finds such a fire only when that process is paused.
    fn being_delivered(&self, s: &State, f: u8) -> bool {
        s.net.iter().any(|d| d.fire == f && d.waiting && Self::acts(s, d.from))
            || s.enq.iter().any(|e| e.fire == f && Self::acts(s, e.node))
            || s.tasks.iter().any(|t| t.fire == f && matches!(t.phase, Phase::Accept { .. }) && Self::acts(s, t.node))
    }

    /// The worker's checks before the handler (`execute`'s stand-in check, `run_fire`'s lock
    /// renewal, `run_attempt`'s mastership check), then the handler call.
    fn check(&self, s: &mut State, n: u8, f: u8) {
        let c = &self.cfg;
        let Some(Phase::Check { stand_in }) = s.task(n, f).map(|t| t.phase) else { return };
        let spec = c.spec_of(f);
        let j = c.job_of(f);
        let master = Self::active(s, n, c.shard_of(j)).is_some();
        if spec.master_only && stand_in && !master {
            // `execute`: started as a stand-in, still not master: recorded skipped.
            Self::set_phase(s, n, f, Phase::Finish(FState::Skipped));
        } else if spec.forbid && s.redis.lock[j] != Some(f) {
            // `run_fire`: `renew_lock` found the lock gone.
            Self::set_phase(s, n, f, Phase::Finish(FState::Skipped));
        } else if spec.master_only && !master {
            // `run_attempt`: mastership lapsed since the start: `hand_back`.
            Self::set_phase(s, n, f, Phase::HandBack);
        } else {
            self.ready(s, n, f);
        }
    }

    /// The checks passed: the handler is called now, or (with `pause_before_handler`) next.
    /// The last check first (`Membership::still_owns`): this incarnation's heartbeat key still
    /// holds it, so no one can have judged it dead and recovered the fire; otherwise the fire is
    /// left in the processing list (for the rescan, or the reaper).
    fn ready(&self, s: &mut State, n: u8, f: u8) {
        let inc = s.task(n, f).map(|t| t.inc);
        if inc.is_none() || s.redis.hb[n as usize] != inc {
            Self::drop_task(s, n, f);
            return;
        }
        if self.cfg.pause_before_handler {
            Self::set_phase(s, n, f, Phase::Ready);
        } else {
            self.begin(s, n, f);
        }
    }

    /// The handler is called: the run the properties count.
    fn begin(&self, s: &mut State, n: u8, f: u8) {
        let c = &self.cfg;
        let spec = c.spec_of(f);
        let j = c.job_of(f);
        if spec.master_only && s.redis.lease[c.shard_of(j)].map(|l| l.node) != Some(n) {
            s.ghost.bad |= BAD_MASTER_ONLY;
        }
        if spec.forbid {
            let others = (0..c.fires() as u8).filter(|&g| c.job_of(g) == j).any(|g| {
                let a = s.ghost.active[g as usize];
                if g == f {
                    a & !(1 << n) != 0
                } else {
                    a != 0
                }
            });
            if others {
                s.ghost.bad |= BAD_OVERLAP;
            }
        }
        let r = &mut s.ghost.runs[f as usize];
        *r = (*r + 1).min(3);
        s.ghost.active[f as usize] |= 1 << n;
        Self::set_phase(s, n, f, Phase::Run);
    }

    /// `master_elsewhere`: None when this node is master (`Me`), the lease holder when it is
    /// another node, `Nobody` while no other node holds it (the worker waits up to MASTER_WAIT).
    fn master_elsewhere(&self, s: &State, n: u8, f: u8) -> Elsewhere {
        let sh = self.cfg.shard_of_fire(f);
        if Self::active(s, n, sh).is_some() {
            return Elsewhere::Me;
        }
        match s.redis.lease[sh] {
            Some(l) if l.node != n => Elsewhere::Node(l.node),
            _ => Elsewhere::Nobody,
        }
    }

    /// `Recovery::current_master` for adoption: the lease holder if another node holds it, else
    /// this node (after the wait).
    fn current_master(s: &State, n: u8, f: u8, c: &Config) -> u8 {
        let sh = c.shard_of_fire(f);
        if Self::active(s, n, sh).is_some() {
            return n;
        }
        match s.redis.lease[sh] {
            Some(l) if l.node != n => l.node,
            _ => n,
        }
    }

    // ----- store steps (the Lua scripts) -----

    /// `claim.lua` for one claim. Returns the fire when `CLAIMED` (dispatching).
    fn claim(&self, s: &mut State, i: Intent) -> Option<u8> {
        let c = &self.cfg;
        let j = i.job as usize;
        let sh = c.shard_of(j);
        if c.claim_fence && s.redis.lease[sh] != Some(i.lease) {
            s.ghost.seen |= SEEN_FENCED_CLAIM;
            return None; // FENCED
        }
        if s.redis.next[j] != Some(i.k) {
            return None; // STALE
        }
        // The watermark moves in the same step.
        s.redis.next[j] = if i.k + 1 < c.jobs[j].instants { Some(i.k + 1) } else { None };
        if i.lease.epoch < s.ghost.claim_epoch[sh] {
            s.ghost.bad |= BAD_EPOCH;
        }
        s.ghost.claim_epoch[sh] = s.ghost.claim_epoch[sh].max(i.lease.epoch);
        let f = c.fire(j, i.k);
        if s.redis.fires[f as usize].is_some() {
            return None; // DUP
        }
        let fresh = |state| Fire { state, node: None, inc: None, epoch: i.lease.epoch, attempts: 0, recoveries: 0 };
        if c.jobs[j].forbid {
            if s.redis.lock[j].is_some() {
                s.redis.fires[f as usize] = Some(fresh(FState::Skipped));
                return None; // SKIPPED
            }
            s.redis.lock[j] = Some(f);
        }
        s.redis.fires[f as usize] = Some(fresh(FState::Dispatching));
        s.redis.inflight |= bit(f);
        Some(f)
    }

    /// `Router::route` of a claimed fire: run here (`accept_and_run`) or SubmitTask to a peer.
    fn route(&self, s: &mut State, n: u8, f: u8, to: u8, lease: Lease) {
        if to == n {
            Self::spawn(s, n, f, Phase::Accept { epoch: lease.epoch });
        } else {
            let d = Delivery { fire: f, from: n, to, lease, waiting: true };
            let at = s.net.binary_search(&d).unwrap_or_else(|e| e);
            s.net.insert(at, d);
        }
    }

    /// `accept.lua` for one fire.
    fn accept(&self, s: &mut State, n: u8, inc: u8, epoch: u8, f: u8) -> Accepted {
        let sh = self.cfg.shard_of_fire(f);
        if s.redis.hb[n as usize] != Some(inc) || s.redis.epoch[sh] != epoch {
            return Accepted::Refused; // NOT_LIVE, STALE_EPOCH
        }
        let Some(x) = s.redis.fires[f as usize].as_mut() else { return Accepted::Refused };
        if x.state != FState::Dispatching {
            return Accepted::Refused; // ALREADY, TAKEN
        }
        self.take(s, n, inc, f)
    }

    /// A dispatching fire taken by node `n` (accept.lua, and claim.lua's `here`): `running`, its
    /// first attempt started in the same step (section 3.8), unless its job is master-only: then
    /// `accepted`, for start.lua.
    fn take(&self, s: &mut State, n: u8, inc: u8, f: u8) -> Accepted {
        let start = !self.cfg.spec_of(f).master_only;
        let mut taken = Accepted::Ok;
        if let Some(x) = s.redis.fires[f as usize].as_mut() {
            x.state = FState::Accepted;
            x.node = Some(n);
            x.inc = Some(inc);
            if start {
                x.state = FState::Running;
                x.attempts += 1;
                taken = Accepted::Started(x.attempts);
            }
        }
        Self::push(s, ListRef::P(n), f);
        if start {
            s.redis.inflight &= !bit(f);
        } else {
            s.redis.inflight |= bit(f);
        }
        taken
    }

    /// The task of a fire just taken by node `n`: its start, or, started with its take, the checks
    /// before its handler.
    fn spawn_taken(s: &mut State, n: u8, f: u8, taken: Accepted) {
        match taken {
            Accepted::Ok => Self::spawn(s, n, f, Phase::Start { as_master: false }),
            Accepted::Started(att) => {
                Self::spawn(s, n, f, Phase::Check { stand_in: false });
                Self::set_attempt(s, n, f, att);
            }
            Accepted::Refused => {}
        }
    }

    /// `enqueue_somewhere`: `enqueue.lua` on the target, then on this node if the target is dead.
    fn enqueue_somewhere(&self, s: &mut State, n: u8, lease: Lease, f: u8, target: u8) {
        for t in [target, n] {
            match self.enqueue(s, lease, f, t) {
                Enqueued::TargetDead => continue,
                Enqueued::Fenced | Enqueued::Done => return,
            }
        }
    }

    /// `enqueue.lua`.
    fn enqueue(&self, s: &mut State, lease: Lease, f: u8, t: u8) -> Enqueued {
        if s.redis.lease[self.cfg.shard_of_fire(f)] != Some(lease) {
            return Enqueued::Fenced;
        }
        if s.redis.hb[t as usize].is_none() {
            return Enqueued::TargetDead;
        }
        let Some(x) = s.redis.fires[f as usize] else {
            s.redis.inflight &= !bit(f);
            return Enqueued::Done; // UNKNOWN
        };
        match x.state {
            FState::Accepted | FState::Queued => {
                let o = x.node.unwrap_or(0) as usize;
                if (s.redis.p[o] | s.redis.q[o]) & bit(f) == 0 {
                    self.queue(s, f, t); // ORPHAN
                }
            }
            FState::Dispatching => self.queue(s, f, t),
            _ => s.redis.inflight &= !bit(f),
        }
        Enqueued::Done
    }

    fn queue(&self, s: &mut State, f: u8, t: u8) {
        let x = s.redis.fires[f as usize].as_mut().expect("queued fire exists");
        x.state = FState::Queued;
        x.node = Some(t);
        x.inc = None;
        Self::push(s, ListRef::Q(t), f);
        s.redis.inflight |= bit(f);
    }

    /// `reap.lua`: one entry of `dead`'s queue or processing list.
    fn reap(&self, s: &mut State, fence: Fence, dead: u8, processing: bool, f: u8, target: u8) -> Reaped {
        let c = &self.cfg;
        let master = matches!(fence, Fence::Lease(_));
        match fence {
            Fence::Lease(l) if s.redis.lease[c.shard_of_fire(f)] != Some(l) => return Reaped::Fenced,
            Fence::Own { inc, .. } if s.redis.hb[dead as usize] != Some(inc) => return Reaped::Fenced,
            _ => {}
        }
        if master && s.redis.hb[dead as usize].is_some() {
            return Reaped::Alive;
        }
        let list = if processing { &mut s.redis.p[dead as usize] } else { &mut s.redis.q[dead as usize] };
        if *list & bit(f) == 0 {
            return Reaped::Gone;
        }
        *list &= !bit(f);
        let Some(x) = s.redis.fires[f as usize] else { return Reaped::StaleCopy };
        if x.node != Some(dead) {
            return Reaped::StaleCopy;
        }
        if let Fence::Own { inc, handoff: false } = fence {
            if x.inc == Some(inc) {
                // Our own live incarnation's entry: put back.
                let list = if processing { &mut s.redis.p[dead as usize] } else { &mut s.redis.q[dead as usize] };
                *list |= bit(f);
                return Reaped::Alive;
            }
        }
        match x.state {
            FState::Queued | FState::Accepted => {
                self.queue(s, f, target);
                Reaped::Moved
            }
            FState::Running => {
                if master {
                    if let Some(i) = x.inc {
                        s.redis.gone[dead as usize] |= 1 << i;
                    }
                }
                let (rerun, max) = match fence {
                    // `hand_over` of a started fire: re-run, no limit.
                    Fence::Own { handoff: true, .. } => (true, u8::MAX),
                    _ => (c.spec_of(f).recovery == Recovery::Rerun, c.max_recoveries),
                };
                let x = s.redis.fires[f as usize].as_mut().expect("fire");
                x.recoveries = x.recoveries.saturating_add(1);
                if rerun && x.recoveries <= max {
                    // The lock (if this fire owns it) is extended: `PEXPIRE`, nothing to model.
                    self.queue(s, f, target);
                    Reaped::Rerun
                } else {
                    x.state = FState::Lost;
                    Reaped::Lost
                }
            }
            _ => Reaped::Dropped,
        }
    }

    /// `start.lua`.
    fn start(&self, s: &mut State, n: u8, inc: u8, f: u8, not_master: bool) -> Started {
        if s.redis.hb[n as usize] != Some(inc) {
            return Started::NotLive;
        }
        let Some(x) = s.redis.fires[f as usize] else {
            s.redis.p[n as usize] &= !bit(f);
            return Started::Gone; // POISON
        };
        if x.state == FState::Running && x.node == Some(n) {
            let same = x.inc == Some(inc) || self.cfg.resume_any_incarnation;
            return if same && x.attempts > 0 { Started::Resume(x.attempts) } else { Started::Gone };
            // ALREADY
        }
        if !matches!(x.state, FState::Queued | FState::Accepted) || x.node != Some(n) {
            s.redis.p[n as usize] &= !bit(f);
            return Started::Gone; // NOT_MINE
        }
        if not_master && self.cfg.spec_of(f).master_only {
            return Started::MasterOnly;
        }
        let x = s.redis.fires[f as usize].as_mut().expect("fire");
        x.state = FState::Running;
        x.inc = Some(inc);
        x.attempts += 1;
        let att = x.attempts;
        s.redis.inflight &= !bit(f);
        Started::Ok(att)
    }

    /// `finish.lua`.
    fn finish(&self, s: &mut State, n: u8, inc: u8, f: u8, outcome: FState, attempt: u8) {
        let j = self.cfg.job_of(f);
        let Some(x) = s.redis.fires[f as usize] else { return };
        if x.state == outcome && x.node == Some(n) && x.inc == Some(inc) && x.attempts == attempt {
            s.redis.p[n as usize] &= !bit(f); // a repeat: OK
            return;
        }
        let mine = x.state == FState::Running && x.node == Some(n) && x.inc == Some(inc);
        if mine || x.node != Some(n) || x.inc == Some(inc) {
            s.redis.p[n as usize] &= !bit(f);
        }
        if mine {
            let x = s.redis.fires[f as usize].as_mut().expect("fire");
            x.state = outcome;
            x.attempts = attempt;
            if s.redis.lock[j] == Some(f) {
                s.redis.lock[j] = None;
            }
        }
        // Not mine: only a `superseded` evidence record.
    }

    // ----- helpers -----

    fn push(s: &mut State, list: ListRef, f: u8) {
        let l = match list {
            ListRef::Q(n) => &mut s.redis.q[n as usize],
            ListRef::P(n) => &mut s.redis.p[n as usize],
        };
        if *l & bit(f) != 0 {
            s.ghost.bad |= BAD_DUP_ENTRY;
        }
        *l |= bit(f);
    }

    /// `Worker::hold` then a task: none when a task of this process has the fire already.
    fn spawn(s: &mut State, n: u8, f: u8, phase: Phase) {
        if s.holds(n, f) {
            return;
        }
        let t = Task { node: n, fire: f, inc: s.nodes[n as usize].inc, attempt: 0, phase };
        let at = s.tasks.binary_search(&t).unwrap_or_else(|e| e);
        s.tasks.insert(at, t);
    }

    fn drop_task(s: &mut State, n: u8, f: u8) {
        s.tasks.retain(|t| !(t.node == n && t.fire == f));
    }

    fn set_phase(s: &mut State, n: u8, f: u8, phase: Phase) {
        Self::edit_task(s, n, f, |t| t.phase = phase);
    }

    fn set_attempt(s: &mut State, n: u8, f: u8, attempt: u8) {
        Self::edit_task(s, n, f, |t| t.attempt = attempt);
    }

    fn edit_task(s: &mut State, n: u8, f: u8, edit: impl FnOnce(&mut Task)) {
        if let Some(i) = s.tasks.iter().position(|t| t.node == n && t.fire == f) {
            let mut t = s.tasks.remove(i);
            edit(&mut t);
            let at = s.tasks.binary_search(&t).unwrap_or_else(|e| e);
            s.tasks.insert(at, t);
        }
    }

    fn push_enq(s: &mut State, e: Enq) {
        if s.nodes[e.node as usize].up && !s.enq.contains(&e) {
            let at = s.enq.binary_search(&e).unwrap_or_else(|x| x);
            s.enq.insert(at, e);
        }
    }

    /// An action in words, with fires named `j<job>@<instant>`.
    pub fn action_name(&self, a: &Action) -> String {
        let f = |x: &u8| fire_name(&self.cfg, *x);
        match a {
            Action::Claim { node, job, route, reply_lost } => {
                format!("Claim {{ node: {node}, job: j{job}, route to: {route}, reply_lost: {reply_lost} }}")
            }
            Action::PauseBeforeClaim { node, job, len } => {
                format!("PauseBeforeClaim {{ node: {node}, job: j{job}, {len:?} }}")
            }
            Action::SendClaim { node, route, reply_lost } => {
                format!("SendClaim {{ node: {node}, route to: {route}, reply_lost: {reply_lost} }}")
            }
            Action::Deliver { fire, reply_lost } => format!("Deliver {{ {}, reply_lost: {reply_lost} }}", f(fire)),
            Action::Timeout { fire, keep } => format!("Timeout {{ {}, request kept: {keep} }}", f(fire)),
            Action::Enqueue { node, fire } => format!("Enqueue {{ node: {node}, {} }}", f(fire)),
            Action::Sweep { node, fire, target } => format!("Sweep {{ node: {node}, {}, to: {target} }}", f(fire)),
            Action::Reap { node, dead, fire, processing, target } => format!(
                "Reap {{ node: {node}, dead: {dead}, {} from {}, to: {target} }}",
                f(fire),
                if *processing { "p" } else { "q" }
            ),
            Action::Pop { node, fire, reply_lost } => {
                format!("Pop {{ node: {node}, {}, reply_lost: {reply_lost} }}", f(fire))
            }
            Action::Steal { node, victim, fire, reply_lost } => {
                format!("Steal {{ node: {node}, from: {victim}, {}, reply_lost: {reply_lost} }}", f(fire))
            }
            Action::Rescan { node, fire } => format!("Rescan {{ node: {node}, {} }}", f(fire)),
            Action::Accept { node, fire, reply_lost } => {
                format!("Accept {{ node: {node}, {}, reply_lost: {reply_lost} }}", f(fire))
            }
            Action::Start { node, fire, reply, pause_after } => {
                format!("Start {{ node: {node}, {}, reply: {reply:?}, pause_after: {pause_after:?} }}", f(fire))
            }
            Action::HandToMaster { node, fire, wait_over, reply_lost } => format!(
                "HandToMaster {{ node: {node}, {}, wait_over: {wait_over}, reply_lost: {reply_lost} }}",
                f(fire)
            ),
            Action::HandBack { node, fire, wait_over, reply_lost } => {
                format!("HandBack {{ node: {node}, {}, wait_over: {wait_over}, reply_lost: {reply_lost} }}", f(fire))
            }
            Action::Check { node, fire } => format!("Check {{ node: {node}, {} }}", f(fire)),
            Action::Begin { node, fire } => format!("Begin handler {{ node: {node}, {} }}", f(fire)),
            Action::End { node, fire, reply_lost } => {
                format!("End handler + Finish {{ node: {node}, {}, reply_lost: {reply_lost} }}", f(fire))
            }
            Action::Finish { node, fire, reply_lost } => {
                format!("Finish {{ node: {node}, {}, reply_lost: {reply_lost} }}", f(fire))
            }
            Action::LockExpire(j) => format!("LockExpire(j{j})"),
            other => format!("{other:?}"),
        }
    }

    /// The state in a few lines: Redis's keys, then each node's process.
    pub fn state_summary(&self, s: &State) -> String {
        let c = &self.cfg;
        let set = |m: u16| -> String {
            let v: Vec<String> = (0..c.fires() as u8).filter(|f| m & bit(*f) != 0).map(|f| fire_name(c, f)).collect();
            format!("[{}]", v.join(" "))
        };
        let mut o = String::new();
        o.push_str(&format!(
            "  lease {:?} epoch {:?} watermarks {:?} locks {:?}\n",
            s.redis.lease,
            s.redis.epoch,
            &s.redis.next[..c.jobs.len()],
            &s.redis.lock[..c.jobs.len()]
        ));
        for f in self.fire_ids() {
            if let Some(x) = s.redis.fires[f as usize] {
                o.push_str(&format!(
                    "  fire {}: {:?} node {:?} inc {:?} epoch {} attempts {} recoveries {} | handler runs {}\n",
                    fire_name(c, f),
                    x.state,
                    x.node,
                    x.inc,
                    x.epoch,
                    x.attempts,
                    x.recoveries,
                    s.ghost.runs[f as usize]
                ));
            }
        }
        for n in self.node_ids() {
            let node = &s.nodes[n as usize];
            o.push_str(&format!(
                "  node {n}: up {} paused {:?} inc {} role {:?} hb {:?} q {} p {}\n",
                node.up,
                node.paused,
                node.inc,
                node.role,
                s.redis.hb[n as usize],
                set(s.redis.q[n as usize]),
                set(s.redis.p[n as usize])
            ));
        }
        o
    }
}

enum ListRef {
    Q(u8),
    P(u8),
}

enum Elsewhere {
    Me,
    Node(u8),
    Nobody,
}
