//! The graceful stop of one I/O thread: what each connection owes when the drain begins, and
//! what is abandoned when its deadline passes. See `../../../README.md` ("The drain (graceful stop)").

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Got, IoThread};
use crate::ingress::engine::shared::bump;
use crate::ingress::engine::stream::{CloseReason, StreamProtocol};

impl<P: StreamProtocol> IoThread<P> {
    pub(super) fn drain_if_stopping(&mut self) {
        if !self.cx.draining && self.control.stopping.load(Ordering::Acquire) {
            self.begin_drain(self.cx.now);
        }
    }

    fn begin_drain(&mut self, now: Instant) {
        // Stop accepting. Connections the kernel holds for us (a client may have sent its
        // request on one already) are taken first, and judged below with the others; then
        // the listener stops listening for every thread at once (a connection left in the
        // backlog would be reset), and this thread's registration goes; the socket closes
        // with the last.
        self.accept_pending();
        self.cx.draining = true;
        self.drain_deadline = Some(self.control.drain_deadline().unwrap_or(now));
        if let Some(l) = self.listener.take() {
            let _ = socket2::SockRef::from(&**l.source()).shutdown(std::net::Shutdown::Read);
        }
        self.accept_paused_until = None;
        let grace = self.control.config.drain_grace.min(
            self.drain_deadline
                .map_or(Duration::ZERO, |d| d.saturating_duration_since(now)),
        );
        for key in 0..self.slots.len() {
            let Some(s) = self.slots[key].as_ref() else {
                continue;
            };
            // What has arrived and not been read yet (a request in the socket's buffer) is
            // not idle: read it before judging, and hand it to the protocol (which sees
            // `draining`).
            let mut came = false;
            if !s.io.lingering && s.io.interest.0 && !Self::busy(&self.protocol, s) {
                match self.read_some(key) {
                    Got::Bytes => came = true,
                    Got::Failed => {
                        bump(&self.control.counters.drain_closed_idle);
                        self.close(key, CloseReason::Error);
                        continue;
                    }
                    Got::End | Got::Nothing | Got::Full => {}
                }
            }
            let Some(s) = self.slots[key].as_mut() else {
                continue;
            };
            if Self::busy(&self.protocol, s) {
                s.io.drain = Drain::Owed;
                if came {
                    self.settle(key, true);
                }
            } else if !s.io.lingering && !s.io.peer_eof && !grace.is_zero() {
                // Idle: a unit the peer sent as the stop began may be on its way. Served if
                // it comes within the grace; closed idle when the grace ends.
                s.io.drain = Drain::Grace;
                s.io.engine_deadline = Some(now + grace);
                self.update(key);
            } else {
                // Idle (a lingering connection was answered already; its lingering is cut
                // short).
                bump(&self.control.counters.drain_closed_idle);
                self.close(key, CloseReason::Drained);
            }
        }
    }

    pub(super) fn abandon_all(&mut self) {
        for key in 0..self.slots.len() {
            if let Some(s) = &self.slots[key] {
                // A lingering connection was answered: its lingering is cut short.
                let reason = if s.io.lingering {
                    CloseReason::Done
                } else if s.io.drain == Drain::Grace {
                    CloseReason::Drained
                } else {
                    CloseReason::Abandoned
                };
                self.close(key, reason);
            }
        }
    }
}

/// A connection's part in a graceful stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Drain {
    /// No stop, or opened after its start (accepted from the backlog, judged with the rest).
    No,
    /// Busy when the drain began (or sent something within its grace): counted completed or
    /// abandoned when it closes.
    Owed,
    /// Idle when the drain began: kept open for the grace, in case a unit is on its way;
    /// counted closed idle if none came.
    Grace,
    /// Counted already (answered, now lingering).
    Counted,
}
