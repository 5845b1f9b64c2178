//! Helpers shared by the benchmarks: knobs from the environment, percentiles, the machine's core
//! count and a plain Redis round trip to read results against.
#![allow(dead_code)]

use std::time::Instant;

pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
}

/// `p` in 0..=1 of an ascending slice (0 when empty).
pub fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

pub fn median(v: &mut [i64]) -> i64 {
    v.sort_unstable();
    percentile(v, 0.5)
}

/// Median of `n` sequential PINGs, in microseconds.
pub fn redis_rtt_us(url: &str, n: usize) -> f64 {
    let mut c = redis::Client::open(url).and_then(|c| c.get_connection()).expect("redis");
    let mut v: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            let _: String = redis::cmd("PING").query(&mut c).expect("ping");
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
