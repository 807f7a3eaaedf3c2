//! How a reactor with nothing to do waits: spin, then yield the core, then sleep, with both
//! budgets learned from how its waits end. See "Idle: spin, yield, park" in `README.md`.

use std::thread;
use std::time::{Duration, Instant};

use super::mailbox::{Mailbox, BUSY, CLOSED};

// The idle wait, tuned on this 2-core VM, where a pause is ~37 ns, an uncontended
// `yield_now` ~0.8 µs, and a futex wake of a parked thread several µs (an IPI, which in a VM
// is an exit). See README.md beside this file, "Idle: spin, yield, park".
/// The most pauses an idle reactor spins (~4.7 µs).
const MAX_SPINS: u32 = 128;
/// The least spin worth having once spinning has paid off.
const MIN_SPINS: u32 = 8;
/// The most times an idle reactor yields the core before parking.
const MAX_YIELDS: u32 = 16;
/// A park shorter than this means the reactor should have waited longer before parking.
const SHORT_PARK: Duration = Duration::from_micros(50);

/// How an idle reactor waits before it parks: spin (cheap to end, but holds the core), then
/// yield the core (lets other threads run, and still needs no futex wake to end), then park.
/// Both budgets are learned per reactor from how its waits end:
///
/// - a message that comes while spinning doubles the spin (ping-pong, request/reply);
/// - one that comes while yielding halves the spin and doubles the yields: the sender needed
///   the core this reactor was spinning on (many reactors, few cores, as in a fan-out);
/// - a wait that ends in a park halves the spin and takes one yield off (a ring, where the
///   next message is many hops away): waiting was wasted;
/// - a park cut short (under `SHORT_PARK`) doubles the yields: the futex wake cost the
///   sender more than waiting a little longer would have.
///
/// Yields grow fast and shrink slowly, because a parked reactor costs every sender a wake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IdlePolicy {
    spins: u32,
    yields: u32,
    /// No message handled yet: park at once. Ten thousand freshly started reactors spinning
    /// and yielding would starve the thread starting the next one (at 10,000 components the
    /// start took seconds).
    fresh: bool,
}

impl Default for IdlePolicy {
    fn default() -> Self {
        IdlePolicy {
            spins: MAX_SPINS,
            yields: MAX_YIELDS,
            fresh: true,
        }
    }
}

impl IdlePolicy {
    /// Called by the reactor when it found nothing to do: spins, then yields the core, as long
    /// as this policy has learned is worth it, then sleeps until a push, a flag, or `timeout`
    /// wakes it (the handshake is [`Mailbox::announce_sleep`]). Learns how the wait ended.
    pub(crate) fn wait(&mut self, mb: &Mailbox, timeout: Option<Duration>) {
        if mb.state() & BUSY == CLOSED {
            // A stop request between its two stores (see `request_stop`): let the stopping
            // thread finish rather than spin against it.
            thread::yield_now();
            return;
        }
        let (spins, yields) = if self.fresh {
            (0, 0)
        } else {
            (self.spins, self.yields)
        };
        for _ in 0..spins {
            if mb.state() & BUSY != 0 {
                self.spin_paid_off();
                return;
            }
            std::hint::spin_loop();
        }
        for _ in 0..yields {
            if mb.state() & BUSY != 0 {
                self.yield_paid_off();
                return;
            }
            thread::yield_now();
        }
        if !self.fresh {
            self.waited_in_vain();
        }
        let cur = mb.state();
        // Only a mailbox with nothing admitted, no stop and no command can be slept on.
        if cur & BUSY != 0 || !mb.announce_sleep(cur) {
            return;
        }
        let parked = Instant::now();
        mb.park(timeout);
        if !self.fresh {
            self.parked_for(parked.elapsed());
        }
    }

    /// The reactor found work: from now on, waiting before parking may pay off.
    pub(crate) fn busy(&mut self) {
        self.fresh = false;
    }

    fn spin_paid_off(&mut self) {
        self.spins = (self.spins * 2).clamp(MIN_SPINS, MAX_SPINS);
    }

    fn yield_paid_off(&mut self) {
        self.spins /= 2;
        self.yields = (self.yields * 2).clamp(1, MAX_YIELDS);
    }

    fn waited_in_vain(&mut self) {
        self.spins /= 2;
        self.yields = self.yields.saturating_sub(1);
    }

    fn parked_for(&mut self, d: Duration) {
        if d < SHORT_PARK {
            self.yields = (self.yields * 2).clamp(1, MAX_YIELDS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_policy_learns_from_how_waits_end() {
        let mut p = IdlePolicy::default();
        assert_eq!((p.spins, p.yields), (MAX_SPINS, MAX_YIELDS));
        // A ring: every wait ends in a long park; the reactor learns to park at once.
        for _ in 0..MAX_YIELDS {
            p.waited_in_vain();
            p.parked_for(Duration::from_millis(1));
        }
        assert_eq!((p.spins, p.yields), (0, 0));
        // A fan-out: short parks, then messages during the yields.
        p.parked_for(Duration::from_micros(5));
        assert_eq!(p.yields, 1);
        for _ in 0..8 {
            p.yield_paid_off();
        }
        assert_eq!((p.spins, p.yields), (0, MAX_YIELDS));
        // Ping-pong: messages during the spin grow it back, to the cap.
        for _ in 0..8 {
            p.spin_paid_off();
        }
        assert_eq!(p.spins, MAX_SPINS);
    }
}
