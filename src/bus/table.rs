//! The subscription table: an immutable snapshot, replaced whole on every (rare) change.
//!
//! Readers load the current snapshot through `arc_swap` (no lock, no shared write on the read
//! path); writers serialize on a mutex, copy the table (the exact map in shards, so only the
//! touched shard), and swap it in. Exact patterns live in a hash map keyed by topic, so a
//! send to a subscribed exact topic is one hash lookup and the message gets the table's interned `Topic` (no string copy). Wildcard patterns are a list
//! scanned per send; most deployments have few.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam::channel::{Sender, TrySendError};

use crate::types::{Message, Name, Pattern, SendError, Topic};

/// Identifies one subscription, for [`Bus::unsubscribe`](crate::Bus::unsubscribe).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct SubscriptionId(pub(super) u64);

/// What the bus delivers a component's messages into: its reactor's mailbox, which implements
/// this. All the bus knows of reactors.
pub(crate) trait Deliver: Send + Sync + 'static {
    /// Never blocks. Queues `msg` for the component, or hands it back refused
    /// (`Backpressure`, `Stopped`).
    fn deliver(&self, msg: Message) -> Result<(), SendError<Message>>;
}

/// Where a subscription delivers.
#[derive(Clone)]
pub(super) enum Target {
    /// A component's mailbox, behind the [`Deliver`] trait: the bus names no reactor type. The
    /// pointer is the reactor's own `Arc` of its mailbox (no allocation, no extra hop); the
    /// indirect call costs nothing measurable (see `deliver`, and "The bus below the reactor"
    /// in `docs/decisions.md`).
    Reactor(Arc<dyn Deliver>),
    Inbox {
        name: Name,
        tx: Sender<Message>,
        capacity: usize,
    },
}

impl Target {
    /// Never blocks.
    ///
    /// Inlined into the send paths: through the `dyn` call, a message passed on by a function
    /// that took it by value is copied once more (the direct call it replaced passed the
    /// caller's pointer through); inlined, that copy merges with the caller's own move.
    /// Callgrind, per plain-thread `Bus::send`: 560 instructions not inlined, 534 inlined,
    /// 540 with the concrete `Reactor` of before.
    #[inline]
    pub(super) fn deliver(&self, msg: Message) -> Result<(), SendError<Message>> {
        match self {
            Target::Reactor(r) => r.deliver(msg),
            Target::Inbox { name, tx, capacity } => Target::push_inbox(name, tx, *capacity, msg),
        }
    }

    fn push_inbox(
        name: &Name,
        tx: &Sender<Message>,
        capacity: usize,
        msg: Message,
    ) -> Result<(), SendError<Message>> {
        tx.try_send(msg).map_err(|e| match e {
            TrySendError::Full(m) => SendError::Backpressure {
                target: name.clone(),
                capacity,
                rejected: m,
            },
            TrySendError::Disconnected(m) => SendError::Stopped {
                target: name.clone(),
                rejected: m,
            },
        })
    }

    fn is_mailbox(&self, m: &dyn Deliver) -> bool {
        // The data pointers only: vtable pointers of one type may differ between codegen units.
        matches!(self, Target::Reactor(mine) if std::ptr::addr_eq(Arc::as_ptr(mine), m))
    }
}

#[derive(Clone)]
pub(super) struct Sub {
    pub(super) id: SubscriptionId,
    pub(super) target: Target,
}

/// The subscribers of one pattern, with the round-robin cursor `send` uses.
pub(super) struct Group {
    pub(super) pattern: Pattern,
    /// For an exact pattern: the interned topic messages sent to it carry.
    pub(super) topic: Option<Topic>,
    pub(super) subs: Vec<Sub>,
    pub(super) cursor: AtomicUsize,
}

/// Shards of the exact map. A change copies one shard, so deploying n components with a
/// subscription each copies n²/(2·SHARDS) entries, not n²/2: at 10,000 components the deploy
/// loop went from 2.5 s to about 0.15 s (`reactorium loadtest spawn`).
const SHARDS: usize = 64;

type Shard = HashMap<Arc<str>, Arc<Group>, TopicHash>;

/// The exact groups by topic, in `SHARDS` maps each behind its own `Arc`: cloning the table
/// copies 64 pointers, and a change copies the one shard it touches.
#[derive(Clone)]
pub(super) struct Exact {
    shards: Arc<[Arc<Shard>]>,
}

impl Default for Exact {
    fn default() -> Self {
        Exact {
            shards: (0..SHARDS).map(|_| Arc::default()).collect(),
        }
    }
}

impl Exact {
    fn shard_of(topic: &str) -> usize {
        let mut h = TopicHasher::default();
        h.write(topic.as_bytes());
        // The map hashes the same way, indexing with the low bits and tagging with the top
        // seven; take middle ones here so neither is constant within a shard.
        (h.finish() >> 32) as usize % SHARDS
    }

    pub(super) fn get(&self, topic: &str) -> Option<&Arc<Group>> {
        self.shards[Exact::shard_of(topic)].get(topic)
    }

    fn shard_mut(&mut self, topic: &str) -> &mut Shard {
        let i = Exact::shard_of(topic);
        let shards = Arc::make_mut(&mut self.shards);
        Arc::make_mut(&mut shards[i])
    }

    fn insert(&mut self, topic: Arc<str>, group: Arc<Group>) {
        self.shard_mut(&topic).insert(topic, group);
    }

    fn remove(&mut self, topic: &str) {
        if self.get(topic).is_some() {
            self.shard_mut(topic).remove(topic);
        }
    }

    fn values(&self) -> impl Iterator<Item = &Arc<Group>> {
        self.shards.iter().flat_map(|s| s.values())
    }
}

/// The exact map's hasher: a multiply-rotate hash over the topic's bytes, several times
/// cheaper than SipHash on short topics. Keys are the topics the application subscribes
/// (never chosen by a remote peer), and lookups of absent keys cannot degrade the map, so the
/// flooding resistance SipHash buys is not needed here.
type TopicHash = BuildHasherDefault<TopicHasher>;

#[derive(Default)]
struct TopicHasher(u64);

impl Hasher for TopicHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(23) ^ w).wrapping_mul(K);
        }
        let mut tail = [0u8; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.0 = (self.0.rotate_left(23) ^ u64::from_le_bytes(tail) ^ bytes.len() as u64)
            .wrapping_mul(K);
    }

    fn write_u8(&mut self, b: u8) {
        // `str`'s Hash ends with a 0xff marker; the length is already mixed in.
        self.0 ^= u64::from(b);
    }

    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
}

#[derive(Clone, Default)]
pub(super) struct Table {
    pub(super) exact: Exact,
    pub(super) wild: Vec<Arc<Group>>,
}

impl Table {
    /// Subscribers of `topic`: those of its exact group first, then of each matching wildcard
    /// group, in subscription order.
    pub(super) fn matching<'t>(
        &'t self,
        topic: &'t str,
    ) -> impl Iterator<Item = &'t Sub> + Clone + 't {
        let exact = self.exact.get(topic).into_iter();
        let wild = self.wild.iter().filter(move |g| g.pattern.matches(topic));
        exact.chain(wild).flat_map(|g| g.subs.iter())
    }

    /// The group whose cursor spreads `send`s to `topic`.
    pub(super) fn cursor_for(&self, topic: &str) -> Option<&AtomicUsize> {
        match self.exact.get(topic) {
            Some(g) => Some(&g.cursor),
            None => self
                .wild
                .iter()
                .find(|g| g.pattern.matches(topic))
                .map(|g| &g.cursor),
        }
    }

    pub(super) fn with(&self, pattern: Pattern, sub: Sub) -> Table {
        let mut t = self.clone();
        let key: Arc<str> = Arc::from(pattern.as_str());
        let old = if pattern.is_exact() {
            t.exact.get(&key).cloned()
        } else {
            t.wild.iter().find(|g| g.pattern == pattern).cloned()
        };
        let mut subs = old.as_ref().map(|g| g.subs.clone()).unwrap_or_default();
        subs.push(sub);
        let group = Arc::new(Group {
            topic: pattern
                .is_exact()
                .then(|| Topic::interned(pattern.as_str())),
            cursor: AtomicUsize::new(old.map_or(0, |g| g.cursor.load(Ordering::Relaxed))),
            pattern,
            subs,
        });
        t.put(key, group);
        t
    }

    /// The table without subscription `id`, or `None` if it has no such subscription.
    pub(super) fn without(&self, id: SubscriptionId) -> Option<Table> {
        self.without_where(|s| s.id == id)
    }

    /// The table without any subscription of the mailbox `m`.
    pub(super) fn without_mailbox(&self, m: &dyn Deliver) -> Option<Table> {
        self.without_where(|s| s.target.is_mailbox(m))
    }

    fn without_where(&self, gone: impl Fn(&Sub) -> bool) -> Option<Table> {
        let groups = self.exact.values().chain(self.wild.iter());
        let hit: Vec<Arc<Group>> = groups
            .filter(|g| g.subs.iter().any(&gone))
            .cloned()
            .collect();
        if hit.is_empty() {
            return None;
        }
        let mut t = self.clone();
        for g in hit {
            let key: Arc<str> = Arc::from(g.pattern.as_str());
            t.exact.remove(&key);
            t.wild.retain(|w| !Arc::ptr_eq(w, &g));
            let subs: Vec<Sub> = g.subs.iter().filter(|s| !gone(s)).cloned().collect();
            if !subs.is_empty() {
                let group = Arc::new(Group {
                    pattern: g.pattern.clone(),
                    topic: g.topic.clone(),
                    subs,
                    cursor: AtomicUsize::new(g.cursor.load(Ordering::Relaxed)),
                });
                t.put(key, group);
            }
        }
        Some(t)
    }

    fn put(&mut self, key: Arc<str>, group: Arc<Group>) {
        if group.pattern.is_exact() {
            self.exact.insert(key, group);
        } else {
            match self.wild.iter_mut().find(|g| g.pattern == group.pattern) {
                Some(slot) => *slot = group,
                None => self.wild.push(group),
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        self.exact
            .values()
            .chain(self.wild.iter())
            .map(|g| g.subs.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_spread_over_the_shards() {
        let mut count = [0usize; SHARDS];
        let n = 10_000;
        for i in 0..n {
            count[Exact::shard_of(&format!("load.spawn.{i}"))] += 1;
        }
        let mean = n / SHARDS;
        for (i, c) in count.iter().enumerate() {
            assert!(
                (mean / 2..=mean * 3 / 2).contains(c),
                "shard {i} holds {c}, mean {mean}: {count:?}"
            );
        }
    }
}
