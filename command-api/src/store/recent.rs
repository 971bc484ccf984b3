//! Recent aggregates: in this process, commands on one aggregate take turns, and the state
//! the last accepted one left is kept for the next (`docs/adr/0010-group-commit.md`).
//!
//! Taking turns means two commands of this process never race for one stream position: the
//! second is decided on the state the first appended, after the first's batch committed.
//! The cache is verified by every append (the stream position check): another process may
//! have moved the aggregate on, so a decision on a cached state that the append did not
//! confirm is made again on the stored state (`AggregateStore`).

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use lru::LruCache;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// An aggregate's state after an accepted command.
#[derive(Debug, Clone)]
pub struct Cached<A> {
    /// Its version (the sequence of its last event).
    pub version: u64,
    /// Its state at that version.
    pub aggregate: A,
    /// How many snapshots of it exist (cqrs-es's `current_snapshot`).
    pub current_snapshot: Option<usize>,
}

impl<A: Default> Cached<A> {
    /// An aggregate with no events.
    pub fn empty() -> Self {
        Self {
            version: 0,
            aggregate: A::default(),
            current_snapshot: None,
        }
    }
}

/// The turns and the cache of one aggregate type.
#[derive(Debug)]
pub struct Recent<A> {
    turns: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
    states: Option<Mutex<LruCache<String, Cached<A>>>>,
}

/// One command's turn on one aggregate; the next command's turn starts when this is dropped.
#[derive(Debug)]
pub struct Turn<'a, A> {
    recent: &'a Recent<A>,
    aggregate_id: String,
    slot: Arc<AsyncMutex<()>>,
    guard: Option<OwnedMutexGuard<()>>,
}

impl<A: Clone> Recent<A> {
    /// Turns, and a cache of at most `entries` states (`None`: no cache, no turns).
    pub fn new(entries: Option<NonZeroUsize>) -> Self {
        Self {
            turns: Mutex::new(HashMap::new()),
            states: entries.map(|entries| Mutex::new(LruCache::new(entries))),
        }
    }

    /// Waits for the aggregate's turn; `None` when turns are off.
    pub async fn turn(&self, aggregate_id: &str) -> Option<Turn<'_, A>> {
        self.states.as_ref()?;
        let slot = Arc::clone(
            lock(&self.turns)
                .entry(aggregate_id.to_owned())
                .or_default(),
        );
        let guard = Arc::clone(&slot).lock_owned().await;
        Some(Turn {
            recent: self,
            aggregate_id: aggregate_id.to_owned(),
            slot,
            guard: Some(guard),
        })
    }

    /// The state the last accepted command left, if it is still cached.
    pub fn get(&self, aggregate_id: &str) -> Option<Cached<A>> {
        lock(self.states.as_ref()?).get(aggregate_id).cloned()
    }

    /// Keeps `state` for the aggregate's next command.
    pub fn put(&self, aggregate_id: &str, state: Cached<A>) {
        if let Some(states) = &self.states {
            lock(states).put(aggregate_id.to_owned(), state);
        }
    }

    /// Drops the aggregate's cached state (it proved stale, or its outcome is unknown).
    pub fn forget(&self, aggregate_id: &str) {
        if let Some(states) = &self.states {
            lock(states).pop(aggregate_id);
        }
    }
}

impl<A> Drop for Turn<'_, A> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut turns = lock(&self.recent.turns);
        // The map and this turn hold the slot; nobody waits for it: forget the slot too.
        // (Waiters clone it under the map's lock, so this count cannot grow meanwhile.)
        if Arc::strong_count(&self.slot) == 2 {
            turns.remove(&self.aggregate_id);
        }
    }
}

/// The std mutexes here guard plain maps; a panic while one is held leaves them consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn commands_on_one_aggregate_take_turns_and_slots_are_freed() {
        let recent: Arc<Recent<u32>> = Arc::new(Recent::new(NonZeroUsize::new(2)));
        let first = recent.turn("a").await.expect("turns on");
        let waiting = {
            let recent = Arc::clone(&recent);
            tokio::spawn(async move {
                let _second = recent.turn("a").await.expect("turns on");
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the second waits for the first");
        // Another aggregate does not wait.
        drop(recent.turn("b").await);
        drop(first);
        waiting.await.expect("second turn");
        assert!(lock(&recent.turns).is_empty(), "no slot outlives its turns");
    }

    #[test]
    fn the_cache_keeps_the_most_recent_states() {
        let recent: Recent<u64> = Recent::new(NonZeroUsize::new(2));
        let state = |version: u64| Cached {
            version,
            aggregate: version * 10,
            current_snapshot: None,
        };
        recent.put("a", state(1));
        recent.put("b", state(2));
        recent.put("c", state(3));
        assert!(recent.get("a").is_none(), "the least recent one went");
        assert_eq!(recent.get("c").map(|c| c.aggregate), Some(30));
        recent.forget("c");
        assert!(recent.get("c").is_none());

        let off: Recent<u64> = Recent::new(None);
        off.put("a", state(1));
        assert!(off.get("a").is_none());
    }

    #[tokio::test]
    async fn without_a_cache_there_are_no_turns() {
        let off: Recent<u32> = Recent::new(None);
        assert!(off.turn("a").await.is_none());
    }
}
