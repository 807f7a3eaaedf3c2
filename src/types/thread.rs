//! Which threads may block. A reactor thread must never wait for something that only another
//! reactor, or itself, can bring about: every blocking wait in the crate asks here first and
//! answers [`Error::WouldDeadlock`](crate::Error::WouldDeadlock) instead of waiting.
//!
//! The flag lives here, below the modules that wait (`bus`: inboxes and pending replies;
//! `runtime`: its lifecycle lock and watches), because the reactor that sets it sits above
//! the bus.

use std::cell::Cell;

thread_local! {
    static ON_REACTOR: Cell<bool> = const { Cell::new(false) };
}

/// Marks the calling thread as a reactor thread, for the rest of its life.
pub(crate) fn mark_reactor_thread() {
    ON_REACTOR.with(|f| f.set(true));
}

/// `true` on a reactor thread, where blocking waits are refused.
pub(crate) fn on_reactor_thread() -> bool {
    ON_REACTOR.with(Cell::get)
}
