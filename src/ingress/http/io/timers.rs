//! Deadlines: one per connection, kept lazily in the thread's timer set.

use std::time::Instant;

use super::conn::Phase;
use super::IoThread;
use crate::ingress::http::stats::TimeoutKind;
use crate::ingress::http::wire::Response;

impl IoThread {
    // ---- time ------------------------------------------------------------------------

    /// Sets when the connection's current phase times out. Most changes push the deadline
    /// later and cost nothing here: the set gets a new entry only when the connection needs
    /// waking earlier than any entry it has; a late entry is re-armed when it comes up.
    pub(super) fn set_deadline(&mut self, key: usize, at: Option<Instant>) {
        let Some(c) = self.conns.get_mut(key).and_then(Option::as_mut) else {
            return;
        };
        c.deadline = at;
        if let Some(at) = at {
            if c.armed.map_or(true, |a| at < a) {
                self.timers.insert((at, key, c.id));
                c.armed = Some(at);
            }
        }
    }

    pub(super) fn fire_timers(&mut self, now: Instant) {
        while let Some(&(at, key, id)) = self.timers.first() {
            if at > now {
                return;
            }
            self.timers.pop_first();
            let Some(c) = self.conns.get_mut(key).and_then(Option::as_mut) else {
                continue;
            };
            if c.id != id {
                continue; // an entry of a closed connection whose slot was reused
            }
            if c.armed == Some(at) {
                c.armed = None;
            }
            match c.deadline {
                None => continue,
                Some(d) if d > now => {
                    if c.armed.map_or(true, |a| d < a) {
                        self.timers.insert((d, key, id));
                        c.armed = Some(d);
                    }
                    continue;
                }
                Some(_) => c.deadline = None,
            }
            match &c.phase {
                Phase::Head { since: None } => {
                    self.shared.stats.timeout(TimeoutKind::Idle);
                    self.close(key);
                }
                Phase::Head { since: Some(since) } => {
                    let since = *since;
                    self.shared.stats.timeout(TimeoutKind::Header);
                    let r =
                        Response::error(408, "header_timeout", "the request head took too long");
                    self.respond(key, r, None, since, true);
                }
                Phase::Body { since, route, .. } => {
                    let (since, route) = (*since, *route);
                    self.shared.stats.timeout(TimeoutKind::Body);
                    let r = Response::error(408, "body_timeout", "the request body took too long");
                    self.respond(key, r, Some(route), since, true);
                }
                Phase::Waiting { ticket, .. } => {
                    // Runs our own callback with `Timeout`; `complete` answers 504 shortly.
                    ticket.expire();
                }
                Phase::Writing => {
                    self.shared.stats.timeout(TimeoutKind::Write);
                    self.close(key);
                }
                Phase::Lingering => self.close(key),
            }
        }
    }
}
