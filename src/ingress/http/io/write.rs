//! Writing responses: queue, write what the socket takes, then keep-alive, close or linger.

use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::time::Instant;

use polling::Event;

use super::conn::Phase;
use super::{IoThread, KEEP_BUFFER, LINGER};
use crate::ingress::http::wire::Response;

impl IoThread {
    // ---- writing ---------------------------------------------------------------------

    /// Queues `r` and writes what the socket takes. `close` ends the connection after it.
    pub(super) fn respond(
        &mut self,
        key: usize,
        r: Response,
        route: Option<usize>,
        since: Instant,
        close: bool,
    ) {
        let draining = self.draining.is_some();
        let took = self.now.saturating_duration_since(since);
        self.shared.stats.record(route, r.status, took);
        if draining {
            self.shared
                .stats
                .drain_completed
                .fetch_add(1, Ordering::Relaxed);
        }
        let Some(c) = self.conn(key) else { return };
        // After the peer's end of stream, the last response closes; requests it pipelined
        // before that are still answered.
        let last = c.peer_eof && c.rbuf.is_empty();
        c.close_after |= close || draining || last || c.reject;
        c.linger |= close && !c.peer_eof;
        c.phase = Phase::Writing;
        r.write_to(&mut c.wbuf, c.close_after);
        self.flush(key);
    }

    pub(super) fn flush(&mut self, key: usize) {
        let draining = self.draining.is_some();
        let Some(c) = self.conn(key) else { return };
        while c.wpos < c.wbuf.len() {
            match (&c.io.source).write(&c.wbuf[c.wpos..]) {
                Ok(0) => {
                    self.close(key);
                    return;
                }
                Ok(n) => c.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let d = self.now + self.shared.config.write_timeout;
                    self.set_interest(key, false, Some(true));
                    self.set_deadline(key, Some(d));
                    return;
                }
                Err(_) => {
                    self.close(key);
                    return;
                }
            }
        }
        c.wbuf.clear();
        c.wpos = 0;
        if c.wbuf.capacity() > KEEP_BUFFER {
            c.wbuf = Vec::new(); // a large response's buffer is not kept for the idle time
        }
        if draining && !c.close_after {
            // A response queued before the stop, written out during it: in flight at the
            // stop and answered. The connection closes now rather than idle to the deadline.
            self.shared
                .stats
                .drain_completed
                .fetch_add(1, Ordering::Relaxed);
            self.close(key);
            return;
        }
        if c.close_after && c.linger {
            // Shut our side (the client sees the end of the response), then read and discard
            // until the client closes too, for at most LINGER.
            let _ = c.io.source.shutdown(std::net::Shutdown::Write);
            c.phase = Phase::Lingering;
            c.rbuf = Vec::new();
            let d = self.now + LINGER;
            self.set_interest(key, true, Some(false));
            self.set_deadline(key, Some(d));
            return;
        }
        if c.close_after || (c.peer_eof && c.rbuf.is_empty()) {
            self.close(key);
            return;
        }
        c.phase = Phase::Head { since: None };
        let peer_eof = c.peer_eof;
        let d = self.now + self.shared.config.idle_timeout;
        self.set_interest(key, !peer_eof, Some(false));
        self.set_deadline(key, Some(d));
    }

    /// Sets read interest (and write interest, when `write` is given), with one `modify`
    /// only when something changed.
    pub(super) fn set_interest(&mut self, key: usize, read: bool, write: Option<bool>) {
        let Some(c) = self.conn(key) else { return };
        let want = (read, write.unwrap_or(c.interest.1));
        if want != c.interest {
            c.interest = want;
            let _ = c.io.modify(Event::new(key + 1, want.0, want.1));
        }
    }
}
