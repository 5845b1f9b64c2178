//! Coalesces concurrent calls of the per-fire scripts (the Redis store's `start.lua` and
//! `finish.lua`) into one call that carries them all, each caller still getting its own reply.
//! Owns the batch form of the scripts (`batched`, with `lua/batch.lua`) and how many calls are in
//! flight. Uses: the `redis` crate (a `Script` and the store's shared connection) and `error`; it
//! knows nothing of fires, keys or what a reply means.
use std::sync::Arc;

use redis::Script;

use super::topology::{run_script, Conn, ReplicaWait};
use crate::error::{Error, Result};

/// Per-fire scripts, each under its step name, made into one script that runs any mix of them for
/// many fires in one call (see `Batcher`).
pub(super) fn batched(steps: &[(&str, &str)]) -> String {
    let mut s = String::from("local steps = {}\n");
    for (name, body) in steps {
        s += &format!("steps['{name}'] = function(ko, ao)\n{}\nend\n", at_offsets(body));
    }
    s + include_str!("../lua/batch.lua")
}

/// A step's body, reading its keys and arguments where its item starts in the call's `KEYS` and
/// `ARGV` (`ko`, `ao` before its first): `KEYS[3]` becomes `KEYS[ko+3]`. Building a key table and
/// an argument table for each item cost about 1.6 µs of Redis time an item (measured). Every index
/// in a step must be a number; anything else is a mistake in the step, refused here.
fn at_offsets(body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 256);
    let mut rest = body;
    while let Some(at) = ["KEYS[", "ARGV["].iter().filter_map(|t| rest.find(t).map(|i| (i, *t))).min() {
        let (i, token) = at;
        out.push_str(&rest[..i + token.len()]);
        rest = &rest[i + token.len()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        assert!(
            digits > 0 && rest[digits..].starts_with(']'),
            "a batched step indexes {token} by a number: {rest:.20}"
        );
        out.push_str(if token == "KEYS[" { "ko+" } else { "ao+" });
    }
    out.push_str(rest);
    out
}

/// Coalesces concurrent calls of the per-fire steps of one script (made with `batched`) into one
/// call carrying all of them: a Redis script call costs about as much as a dozen commands inside
/// one, and fires that fall due together start and finish together (and one fire's finish goes
/// with another's start). Nothing waits on purpose: a call goes out at once unless `IN_FLIGHT`
/// calls are already out, and then whatever gathered meanwhile goes in the next one. Each fire
/// still gets its own reply.
pub(super) struct Batcher {
    tx: tokio::sync::mpsc::UnboundedSender<BatchItem>,
}

struct BatchItem {
    step: &'static str,
    keys: Vec<String>,
    args: Vec<String>,
    reply: tokio::sync::oneshot::Sender<Result<redis::Value>>,
}

impl Batcher {
    /// Calls out at once; more wait and go together.
    const IN_FLIGHT: usize = 2;
    /// Most fires in one call.
    const MAX_ITEMS: usize = 256;

    /// `wait`: strict mode, one `WAIT` after each call; a call its replicas did not acknowledge is
    /// every item's error.
    pub(super) fn spawn(script: &'static Script, conn: Conn, wait: Option<ReplicaWait>) -> Batcher {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<BatchItem>();
        let slots = Arc::new(tokio::sync::Semaphore::new(Self::IN_FLIGHT));
        // Ends when the store (the only sender) is dropped.
        tokio::spawn(async move {
            loop {
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { return };
                let Some(first) = rx.recv().await else { return };
                let mut items = vec![first];
                while items.len() < Self::MAX_ITEMS {
                    match rx.try_recv() {
                        Ok(item) => items.push(item),
                        Err(_) => break,
                    }
                }
                let conn = conn.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    Self::run(script, conn, wait, items).await;
                });
            }
        });
        Batcher { tx }
    }

    async fn run(script: &Script, mut conn: Conn, wait: Option<ReplicaWait>, items: Vec<BatchItem>) {
        let mut inv = script.prepare_invoke();
        inv.arg(items.len());
        for item in &items {
            inv.arg(item.step).arg(item.keys.len()).arg(item.args.len());
            for k in &item.keys {
                inv.key(k);
            }
            for a in &item.args {
                inv.arg(a);
            }
        }
        match run_script::<Vec<redis::Value>>(&inv, &mut conn, wait, "a batch of fires").await {
            Ok(replies) if replies.len() == items.len() => {
                for (item, v) in items.into_iter().zip(replies) {
                    let _ = item.reply.send(Ok(v));
                }
            }
            Ok(replies) => {
                let why = format!("batch: {} replies for {} fires", replies.len(), items.len());
                for item in items {
                    let _ = item.reply.send(Err(Error::unavailable(why.clone())));
                }
            }
            Err(e) => {
                let e = std::sync::Arc::new(e);
                for item in items {
                    let _ = item.reply.send(Err(Error::redis_failed(std::sync::Arc::clone(&e))));
                }
            }
        }
    }

    /// Runs `step` for one fire, with whatever other fires are being called at the same time.
    pub(super) async fn call<T: redis::FromRedisValue>(
        &self,
        step: &'static str,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<T> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let gone = || Error::unavailable("store is shutting down");
        self.tx.send(BatchItem { step, keys, args, reply }).map_err(|_| gone())?;
        let v = rx.await.map_err(|_| gone())??;
        T::from_redis_value(v).map_err(|e| Error::unavailable(format!("unexpected reply: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_reads_its_item_at_offsets() {
        assert_eq!(at_offsets("x(KEYS[1], ARGV[12]) #ARGV[2]"), "x(KEYS[ko+1], ARGV[ao+12]) #ARGV[ao+2]");
        assert!(std::panic::catch_unwind(|| at_offsets("KEYS[i]")).is_err());
    }
}
