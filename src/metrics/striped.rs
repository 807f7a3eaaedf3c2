//! Counters bumped from many threads at once: one cache line per stripe, summed on read.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam::utils::CachePadded;

/// Stripes per counter set. Sixteen covers the producer threads of a 2- to 16-core machine
/// one stripe each; more threads share stripes round robin, which is still correct, only
/// less spread.
const STRIPES: usize = 16;
const _: () = assert!(
    STRIPES.is_power_of_two(),
    "a stripe index is masked, not bounds-checked"
);

/// The next stripe to hand a thread that has none yet.
static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // This thread's stripe, `usize::MAX` until its first count. Shared by every counter set,
    // so a thread always writes the same line of each.
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's stripe: given out round robin on first use, then fixed.
#[inline]
fn stripe() -> usize {
    STRIPE.with(|s| {
        let i = s.get();
        if i != usize::MAX {
            return i;
        }
        let i = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
        s.set(i);
        i
    })
}

/// `K` counters that many threads bump at once, each thread in its own cache line.
///
/// One shared `AtomicU64` per counter would make every producer's `fetch_add` pull the same
/// line away from the others (the bus's sends come from every thread that sends). Here a
/// thread adds to its stripe's copy, so producers on different stripes never touch the same
/// line; a read sums the stripes. The `K` counters of one stripe share its line: a thread that
/// sends and publishes dirties one line, not two.
///
/// Relaxed throughout: the counts are statistics, ordered with nothing else. A sum taken while
/// threads count is some value between the totals before and after, never torn per counter.
pub(crate) struct Striped<const K: usize> {
    stripes: [CachePadded<[AtomicU64; K]>; STRIPES],
}

impl<const K: usize> Default for Striped<K> {
    fn default() -> Self {
        Striped {
            stripes: std::array::from_fn(|_| {
                CachePadded::new(std::array::from_fn(|_| AtomicU64::new(0)))
            }),
        }
    }
}

impl<const K: usize> Striped<K> {
    /// Adds one to counter `which` on this thread's stripe. No lock, no allocation.
    #[inline]
    pub(crate) fn incr(&self, which: usize) {
        // The mask lets the compiler drop the bounds check (`stripe()` is below STRIPES).
        self.stripes[stripe() & (STRIPES - 1)][which].fetch_add(1, Ordering::Relaxed);
    }

    /// The total of counter `which` over all stripes.
    pub(crate) fn sum(&self, which: usize) -> u64 {
        self.stripes
            .iter()
            .map(|s| s[which].load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn sums_counts_from_many_threads() {
        let c = Arc::new(Striped::<2>::default());
        let per = if cfg!(miri) { 50 } else { 10_000 };
        let threads: Vec<_> = (0..20)
            .map(|_| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    for _ in 0..per {
                        c.incr(0);
                    }
                    c.incr(1);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(c.sum(0), 20 * per);
        assert_eq!(c.sum(1), 20);
    }
}
