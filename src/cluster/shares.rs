//! Which live node should master which shard (docs/DESIGN.md "Shards"). Every node computes the
//! same table from the same list of live nodes (`assign`, a pure function), and each of its shard
//! leases competes only for the shards the table gives it, and hands back one the table gives to
//! another live node. No counting of leases held, so no oscillation: an earlier rule (take below
//! `ceil(S / live)`, hand back above it or to a starving node) reacted to counts read while leases
//! were moving and kept handing shards round (about 70 hand-backs per node in 40 s at 16 shards).
//! Uses: nothing but std.
use std::sync::RwLock;

/// This node's view of who should master what: the live nodes as the heartbeat last counted them.
#[derive(Debug)]
pub struct Share {
    node_id: String,
    shards: u16,
    /// Sorted, this node included; the table made from them, shard k at k.
    table: RwLock<(Vec<String>, Vec<String>)>,
}

impl Share {
    /// Until the heartbeat first counts, this node believes it is alone: a lone first node masters
    /// every shard at once, and a node joining a running cluster only tries leases others hold.
    pub fn new(node_id: &str, shards: u16) -> Share {
        let alone = vec![node_id.to_string()];
        let table = assign(&alone, shards);
        Share { node_id: node_id.to_string(), shards, table: RwLock::new((alone, table)) }
    }

    /// The live nodes (fresh record, not draining, not left) as the heartbeat read them.
    pub fn observe(&self, mut live: Vec<String>) {
        if !live.contains(&self.node_id) {
            live.push(self.node_id.clone());
        }
        live.sort();
        live.dedup();
        let Ok(mut t) = self.table.write() else { return };
        if t.0 != live {
            let table = assign(&live, self.shards);
            *t = (live, table);
        }
    }

    /// The node the table gives `shard` to.
    pub fn owner(&self, shard: u16) -> Option<String> {
        self.table.read().ok().and_then(|t| t.1.get(usize::from(shard)).cloned())
    }

    pub fn is_mine(&self, shard: u16) -> bool {
        self.owner(shard).is_some_and(|o| o == self.node_id)
    }
}

/// The node that should master each shard among `live` (sorted, not empty): shard by shard, the
/// node ranking highest for it (rendezvous hashing: `score(node, shard)`) among those with room:
/// every node gets `shards / live` shards, and `shards % live` of them one more (the first to
/// want it). Deterministic, exactly balanced, and a node that joins or leaves moves few shards
/// (those it ranks first for, and those the caps push along).
pub fn assign(live: &[String], shards: u16) -> Vec<String> {
    if live.is_empty() {
        return Vec::new();
    }
    let (base, extra) = (usize::from(shards) / live.len(), usize::from(shards) % live.len());
    let mut held = vec![0usize; live.len()];
    let mut extras = 0;
    (0..shards)
        .map(|k| {
            let mut ranked: Vec<usize> = (0..live.len()).collect();
            ranked.sort_by_key(|i| std::cmp::Reverse(score(&live[*i], k)));
            // One always has room: the rooms add up to `shards`, and fewer are taken.
            let i = ranked.into_iter().find(|i| held[*i] < base || (held[*i] == base && extras < extra)).unwrap_or(0);
            if held[i] == base {
                extras += 1;
            }
            held[i] += 1;
            live[i].clone()
        })
        .collect()
}

/// A stable pseudo-random rank of `node` for `shard`.
fn score(node: &str, shard: u16) -> u64 {
    stable_hash(node.as_bytes(), &shard.to_be_bytes())
}

/// A stable 64-bit hash of a pair: FNV-1a over both with a separator, then SplitMix64's finaliser
/// (FNV alone ranks ids that differ in one character too much alike). Fixed here, not Rust's
/// hasher (not promised stable), so nodes of different versions and machines agree: the shards'
/// ranks and the routing's rendezvous hashing (`dispatch::pick`).
pub fn stable_hash(a: &[u8], b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in a.iter().chain(&[0xff]).chain(b) {
        h ^= u64::from(x);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    fn counts(table: &[String], live: &[String]) -> Vec<usize> {
        live.iter().map(|n| table.iter().filter(|o| *o == n).count()).collect()
    }

    /// Every shard has an owner, every node within one of the others, for every size up to 64
    /// shards and 9 nodes.
    #[test]
    fn the_table_is_balanced() {
        for n in 1..=9 {
            let live = nodes(n);
            for s in 1..=64u16 {
                let t = assign(&live, s);
                assert_eq!(t.len(), usize::from(s));
                let c = counts(&t, &live);
                let (lo, hi) = (c.iter().min().copied().unwrap_or(0), c.iter().max().copied().unwrap_or(0));
                assert!(hi <= usize::from(s).div_ceil(n), "{n} nodes, {s} shards: {c:?}");
                assert!(hi - lo <= 1, "{n} nodes, {s} shards: {c:?}");
            }
        }
    }

    /// A node joining moves few shards: at 16 shards, from 3 nodes to 4, at most 16/4 plus the
    /// caps' knock-on; leaving gives back only the leaver's shards and their knock-on.
    #[test]
    fn a_node_that_joins_or_leaves_moves_few_shards() {
        let three = assign(&nodes(3), 16);
        let four = assign(&nodes(4), 16);
        let moved = three.iter().zip(&four).filter(|(a, b)| a != b).count();
        assert!(moved <= 8, "{moved} of 16 moved: {three:?} -> {four:?}");
        let back = assign(&nodes(3), 16);
        assert_eq!(three, back, "the same live set gives the same table");
        let without_n2: Vec<String> = vec!["n1".into(), "n3".into()];
        let two = assign(&without_n2, 16);
        let kept = three.iter().zip(&two).filter(|(a, b)| a == b && *a != "n2").count();
        let had = three.iter().filter(|a| *a != "n2").count();
        assert!(kept + 3 >= had, "the survivors keep most of theirs: {three:?} -> {two:?}");
    }

    #[test]
    fn a_share_gives_a_lone_node_everything_and_follows_the_live_list() {
        let s = Share::new("n2", 4);
        assert!((0..4).all(|k| s.is_mine(k)));
        s.observe(vec!["n1".into(), "n3".into()]);
        let mine = (0..4).filter(|k| s.is_mine(*k)).count();
        assert!((1..=2).contains(&mine), "n2 has its part of 4 among 3: {mine}");
        assert_eq!(s.owner(9), None);
    }
}
