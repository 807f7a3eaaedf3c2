//! A stream engine's I/O thread. Each owns one `Poller`, the connections it accepted, their
//! deadlines and a scratch read buffer; nothing per connection is shared between threads.
//! See `../../../README.md` for a connection's life and the drain.

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::Receiver;
use polling::{Event, Events, Poller};

use super::{CloseReason, Closing, Io, StreamProtocol};
use crate::ingress::engine::registration::Registration;
use crate::ingress::engine::shared::{bump, Completion, Control, Inbound};
use crate::logs;
use drain::Drain;

mod accept;
mod drain;

/// The poller key of the listener; a connection's key is its slot + 1.
const LISTENER: usize = 0;
/// The most bytes one read takes; level-triggered polling brings the connection back if more
/// is waiting, so one busy connection cannot hold the thread.
const READ_CHUNK: usize = 16 * 1024;
/// The most output buffer capacity a connection keeps once its output is written.
const KEEP_BUFFER: usize = 16 * 1024;

/// What the engine keeps of a connection, beside the protocol's state.
pub(crate) struct ConnIo {
    io: Registration<TcpStream>,
    pub(crate) rbuf: Vec<u8>,
    pub(crate) wbuf: Vec<u8>,
    pub(crate) wpos: usize,
    pub(crate) close: Option<Closing>,
    /// The peer closed its side: no more input.
    pub(crate) peer_eof: bool,
    /// Output written, write side shut, reading and discarding until the peer closes.
    lingering: bool,
    /// Its part in a graceful stop, and how it will be counted.
    drain: Drain,
    /// The protocol's deadline.
    pub(crate) deadline: Option<Instant>,
    /// The engine's own: the write timeout while output waits, or the end of lingering.
    engine_deadline: Option<Instant>,
    /// The earliest entry the timer set holds for this connection (see `arm`).
    armed: Option<Instant>,
    /// Unique within the thread: tells this connection's timer entries and outcomes from
    /// those of an earlier connection in the same slot.
    pub(crate) id: u64,
    pub(crate) next_token: u64,
    interest: (bool, bool),
}

impl ConnIo {
    pub(crate) fn stream(&self) -> &TcpStream {
        self.io.source()
    }

    fn output_pending(&self) -> bool {
        self.wpos < self.wbuf.len()
    }
}

/// What every callback of one thread may read: the time of this turn, whether the drain has
/// begun, and where completers send outcomes.
pub(crate) struct ThreadCx<P: StreamProtocol> {
    pub(crate) now: Instant,
    pub(crate) draining: bool,
    pub(crate) inbound: Arc<Inbound<P::Outcome>>,
}

struct Slot<C> {
    conn: C,
    io: ConnIo,
}

pub(crate) struct IoThread<P: StreamProtocol> {
    /// Which of the engine's I/O threads this is (its slot in `Control::per_thread`).
    index: usize,
    control: Arc<Control>,
    protocol: Arc<P>,
    poller: Arc<Poller>,
    cx: ThreadCx<P>,
    rx: Receiver<Completion<P::Outcome>>,
    listener: Option<Registration<Arc<TcpListener>>>,
    accept_paused_until: Option<Instant>,
    slots: Vec<Option<Slot<P::Conn>>>,
    free: Vec<usize>,
    /// Wake-ups: (when, slot, connection id). Lazy: an entry may be earlier than its
    /// connection's deadline (then it is re-armed when it comes up) or stale (skipped).
    timers: BTreeSet<(Instant, usize, u64)>,
    next_conn: u64,
    drain_deadline: Option<Instant>,
    scratch: Box<[u8]>,
}

/// Calls `$method` of the protocol on the connection in `$key` with an `Io` for it.
macro_rules! call {
    ($t:expr, $key:expr, |$conn:ident, $io:ident| $body:expr) => {{
        let key = $key;
        if let Some(slot) = $t.slots.get_mut(key).and_then(Option::as_mut) {
            let $conn = &mut slot.conn;
            let $io = &mut Io {
                c: &mut slot.io,
                t: &$t.cx,
                key,
            };
            $body;
        }
    }};
}

impl<P: StreamProtocol> IoThread<P> {
    pub(crate) fn new(
        index: usize,
        control: Arc<Control>,
        protocol: Arc<P>,
        listener: Arc<TcpListener>,
        poller: Arc<Poller>,
        inbound: Arc<Inbound<P::Outcome>>,
        rx: Receiver<Completion<P::Outcome>>,
    ) -> io::Result<IoThread<P>> {
        let listener = Registration::new(Arc::clone(&poller), listener, Event::readable(LISTENER))?;
        Ok(IoThread {
            index,
            control,
            protocol,
            poller,
            cx: ThreadCx {
                now: Instant::now(),
                draining: false,
                inbound,
            },
            rx,
            listener: Some(listener),
            accept_paused_until: None,
            slots: Vec::new(),
            free: Vec::new(),
            timers: BTreeSet::new(),
            next_conn: 0,
            drain_deadline: None,
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
        })
    }

    /// The loop: until stopped and every connection is done (or the drain deadline passed).
    pub(crate) fn run(mut self) {
        let mut events = Events::new();
        loop {
            let now = Instant::now();
            self.cx.now = now;
            self.drain_if_stopping();
            if let Some(deadline) = self.drain_deadline {
                if self.open() == 0 {
                    break;
                }
                if now >= deadline {
                    self.abandon_all();
                    break;
                }
            }
            if let Some(t) = self.accept_paused_until {
                if now >= t {
                    self.accept_paused_until = None;
                    if let Some(l) = &self.listener {
                        let _ = l.modify(Event::readable(LISTENER));
                    }
                }
            }
            let next = [
                self.timers.first().map(|t| t.0),
                self.drain_deadline,
                self.accept_paused_until,
            ]
            .into_iter()
            .flatten()
            .min();
            let timeout = next.map(|t| t.saturating_duration_since(now));
            events.clear();
            if self.poller.wait(&mut events, timeout).is_err() {
                // Not expected from epoll on a valid poller (EINTR is retried inside); count
                // it and do not spin on it.
                bump(&self.control.counters.poll_errors);
                logs::limited!(
                    self.control.limits.poll_errors,
                    tracing::Level::WARN,
                    target: logs::ENGINE,
                    "poll failed"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            self.cx.now = Instant::now();
            // A stop asked while the thread waited (it wakes the poller): the drain begins
            // before anything else is handled, so what comes with the wake-up is judged
            // and counted by it.
            self.drain_if_stopping();
            for ev in events.iter() {
                if ev.key == LISTENER {
                    self.accept();
                } else {
                    self.on_ready(ev.key - 1, ev.readable, ev.writable);
                }
            }
            self.fire_timers(self.cx.now);
            self.drain_if_stopping();
            while let Ok(c) = self.rx.try_recv() {
                self.complete(c);
            }
        }
        // Outcomes that raced with the end.
        while let Ok(c) = self.rx.try_recv() {
            self.protocol.unclaimed(c.outcome);
        }
    }

    fn open(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Publishes this thread's connection count, for the others' `my_turn_to_accept`.
    fn publish_open(&self) {
        self.control.per_thread[self.index].store(self.open(), Ordering::Relaxed);
    }

    // ---- readiness -------------------------------------------------------------------

    fn on_ready(&mut self, key: usize, readable: bool, writable: bool) {
        if writable && self.slot(key).is_some_and(|s| s.io.output_pending()) {
            self.settle(key, false);
        }
        if readable && self.slot(key).is_some() {
            self.read(key);
        }
    }

    fn slot(&mut self, key: usize) -> Option<&mut Slot<P::Conn>> {
        self.slots.get_mut(key).and_then(Option::as_mut)
    }

    fn read(&mut self, key: usize) {
        let Some(s) = self.slots.get_mut(key).and_then(Option::as_mut) else {
            return;
        };
        let c = &mut s.io;
        if c.lingering {
            match c.io.source().read(&mut self.scratch) {
                Ok(n) if n > 0 => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                _ => self.close(key, CloseReason::Done), // end of stream, or an error
            }
            return;
        }
        if !c.interest.0 {
            // Readiness without read interest is a hang-up or an error (epoll reports those
            // whatever the interest): the peer reset the connection. Reading again would
            // only find the end of stream again, and the event would come back at once.
            self.close(key, CloseReason::PeerClosed);
            return;
        }
        match self.read_some(key) {
            Got::Bytes => self.settle(key, true),
            Got::End => self.settle(key, false),
            Got::Nothing => {}
            Got::Full => self.update(key),
            Got::Failed => self.close(key, CloseReason::Error),
        }
    }

    /// One read of what has arrived, kept in the connection's input (up to the protocol's
    /// `read_limit`); the end of stream is noted in `peer_eof`.
    fn read_some(&mut self, key: usize) -> Got {
        let Some(s) = self.slots.get_mut(key).and_then(Option::as_mut) else {
            return Got::Nothing;
        };
        let c = &mut s.io;
        let limit = self.protocol.read_limit(&s.conn);
        let have = c.rbuf.len();
        if have >= limit {
            // Nothing more may be buffered until what is there is used.
            return Got::Full;
        }
        // Read into the thread's scratch buffer and keep only what came: an idle or
        // half-sent connection holds a few hundred bytes, not a whole read chunk.
        let want = self.scratch.len().min(limit - have);
        match c.io.source().read(&mut self.scratch[..want]) {
            Ok(0) => {
                c.peer_eof = true;
                Got::End
            }
            Ok(n) => {
                c.rbuf.extend_from_slice(&self.scratch[..n]);
                Got::Bytes
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Got::Nothing
            }
            Err(_) => Got::Failed,
        }
    }

    /// The connection holds something of the peer's to finish: output not written yet,
    /// input not consumed yet (a unit partly received, or sent ahead), or work the protocol
    /// says is in flight. A graceful stop waits for a busy connection and closes the others.
    fn busy(protocol: &P, s: &Slot<P::Conn>) -> bool {
        !s.io.lingering
            && (s.io.output_pending() || !s.io.rbuf.is_empty() || protocol.in_flight(&s.conn))
    }

    /// After an event or a callback: writes what is queued, carries out a close that was
    /// asked, hands buffered input to the protocol when `poke` (new bytes, or output just
    /// written out), closes what a drain or the peer's end of stream finished, and brings
    /// the poller interest and the timer set up to date. Loops while the protocol has more
    /// to do (pipelined input after a response).
    fn settle(&mut self, key: usize, mut poke: bool) {
        loop {
            let draining = self.cx.draining;
            let Some(s) = self.slots.get_mut(key).and_then(Option::as_mut) else {
                return;
            };
            if s.io.drain == Drain::Grace && Self::busy(&self.protocol, s) {
                // Idle when the drain began, and the peer sent something within the grace:
                // served like work in flight.
                s.io.drain = Drain::Owed;
                s.io.engine_deadline = None;
            }
            let c = &mut s.io;
            if c.lingering {
                self.update(key);
                return;
            }
            if c.close == Some(Closing::Now) {
                self.close(key, CloseReason::Done);
                return;
            }
            if c.output_pending() {
                match flush(c) {
                    Flushed::All => {}
                    Flushed::Blocked => {
                        c.engine_deadline = Some(self.cx.now + self.control.config.write_timeout);
                        self.update(key);
                        return;
                    }
                    Flushed::Failed => {
                        self.close(key, CloseReason::Error);
                        return;
                    }
                }
                c.wbuf.clear();
                c.wpos = 0;
                if c.wbuf.capacity() > KEEP_BUFFER {
                    c.wbuf = Vec::new(); // a large output's buffer is not kept for idle time
                }
                c.engine_deadline = None;
                if c.close.is_none() {
                    self.protocol.on_written(
                        &mut s.conn,
                        &mut Io {
                            c: &mut s.io,
                            t: &self.cx,
                            key,
                        },
                    );
                    // Output is out: input buffered meanwhile (a pipelined request) may be
                    // taken now.
                    poke = true;
                    continue;
                }
            }
            match c.close {
                Some(Closing::AfterOutput) => {
                    self.close(key, CloseReason::Done);
                    return;
                }
                Some(Closing::Linger) => {
                    self.linger(key);
                    return;
                }
                _ => {}
            }
            if poke && !c.rbuf.is_empty() {
                poke = false;
                call!(self, key, |conn, io| self.protocol.on_input(conn, io));
                continue;
            }
            // (An idle connection in its grace stays open until the grace ends.)
            if draining && s.io.drain != Drain::Grace && !Self::busy(&self.protocol, s) {
                self.close(key, CloseReason::Drained);
                return;
            }
            // After the peer's end of stream, work that needs nothing more from it goes on
            // (its answer can still be read: a half-close is not a hang-up); a unit still
            // waiting for input never will be whole.
            if s.io.peer_eof
                && (!self.protocol.in_flight(&s.conn) || self.protocol.wants_input(&s.conn))
            {
                self.close(key, CloseReason::PeerClosed);
                return;
            }
            self.update(key);
            return;
        }
    }

    /// Sets the poller interest the connection's state calls for (one `modify`, only when
    /// it changes), and arms its wake-up.
    fn update(&mut self, key: usize) {
        let Some(s) = self.slots.get_mut(key).and_then(Option::as_mut) else {
            return;
        };
        let c = &mut s.io;
        let want = if c.lingering {
            (true, false)
        } else {
            let write = c.output_pending();
            // No reading while output waits: a peer that does not read cannot make us
            // buffer what it sends.
            let read = !c.peer_eof
                && !write
                && c.close.is_none()
                && c.rbuf.len() < self.protocol.read_limit(&s.conn);
            (read, write)
        };
        if want != c.interest {
            c.interest = want;
            let _ = c.io.modify(Event::new(key + 1, want.0, want.1));
        }
        let next = match (c.deadline, c.engine_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(at) = next {
            if c.armed.map_or(true, |a| at < a) {
                self.timers.insert((at, key, c.id));
                c.armed = Some(at);
            }
        }
    }

    /// Output is out and the connection asked to linger: shut our side (the peer sees the
    /// end of the output), then read and discard until the peer closes too, for at most
    /// the engine's `linger`.
    fn linger(&mut self, key: usize) {
        let linger = self.control.config.linger;
        let now = self.cx.now;
        let Some(s) = self.slot(key) else { return };
        let c = &mut s.io;
        let _ = c.io.source().shutdown(std::net::Shutdown::Write);
        c.lingering = true;
        c.rbuf = Vec::new();
        c.deadline = None;
        c.engine_deadline = Some(now + linger);
        if c.drain == Drain::Owed {
            // Answered during a drain: that was its work in flight.
            c.drain = Drain::Counted;
            bump(&self.control.counters.drain_completed);
        }
        self.update(key);
    }

    /// An outcome for the connection `c.key`.
    fn complete(&mut self, c: Completion<P::Outcome>) {
        let current = self
            .slot(c.key)
            .is_some_and(|s| s.io.id == c.id && !s.io.lingering);
        if !current {
            self.protocol.unclaimed(c.outcome);
            return;
        }
        call!(self, c.key, |conn, io| self
            .protocol
            .on_outcome(conn, c.token, c.outcome, io));
        self.settle(c.key, false);
    }

    // ---- time ------------------------------------------------------------------------

    /// Runs what is due at `now`. An entry is `(when, slot, connection id)`; most deadline
    /// changes push a deadline later and add nothing to the set (see `update`): an entry
    /// that comes up before its connection's deadline is re-armed then, and an entry of a
    /// closed connection (another id in its slot) is skipped.
    fn fire_timers(&mut self, now: Instant) {
        while let Some(&(at, key, id)) = self.timers.first() {
            if at > now {
                return;
            }
            self.timers.pop_first();
            let Some(s) = self.slots.get_mut(key).and_then(Option::as_mut) else {
                continue;
            };
            let c = &mut s.io;
            if c.id != id {
                continue; // an entry of a closed connection whose slot was reused
            }
            if c.armed == Some(at) {
                c.armed = None;
            }
            if c.engine_deadline.is_some_and(|d| d <= now) {
                let reason = if c.lingering {
                    CloseReason::Done
                } else if c.drain == Drain::Grace {
                    CloseReason::Drained
                } else {
                    CloseReason::WriteTimeout
                };
                self.close(key, reason);
                continue;
            }
            if c.deadline.is_some_and(|d| d <= now) {
                c.deadline = None;
                call!(self, key, |conn, io| self.protocol.on_deadline(conn, io));
                self.settle(key, false);
                continue;
            }
            // Not due yet: wake up again at the nearest deadline.
            self.update(key);
        }
    }

    // ---- ending ----------------------------------------------------------------------

    pub(super) fn close(&mut self, key: usize, reason: CloseReason) {
        let Some(s) = self.slots.get_mut(key).and_then(Option::take) else {
            return;
        };
        if let Some(a) = s.io.armed {
            self.timers.remove(&(a, key, s.io.id));
        }
        let counters = &self.control.counters;
        // Each connection open during a drain is counted once: here, or at `linger`.
        match s.io.drain {
            // Busy: its work finished (answered, closed as asked), or it did not (the
            // deadline, the peer gone, a failed write).
            Drain::Owed => match reason {
                CloseReason::Done | CloseReason::Drained => bump(&counters.drain_completed),
                _ => bump(&counters.drain_abandoned),
            },
            // Nothing of the peer's came during its grace.
            Drain::Grace => bump(&counters.drain_closed_idle),
            Drain::No | Drain::Counted => {}
        }
        self.free.push(key);
        self.publish_open();
        counters.open.fetch_sub(1, Ordering::AcqRel);
        bump(&counters.closed);
        self.protocol.on_close(s.conn, reason);
        drop(s.io); // deletes it from the poller, then closes the socket
    }
}

/// What one read found.
enum Got {
    Bytes,
    End,
    Nothing,
    /// The input holds `read_limit` bytes: nothing was read.
    Full,
    Failed,
}

enum Flushed {
    All,
    Blocked,
    Failed,
}

/// Writes what the socket takes of the queued output.
fn flush(c: &mut ConnIo) -> Flushed {
    while c.wpos < c.wbuf.len() {
        match c.io.source().write(&c.wbuf[c.wpos..]) {
            Ok(0) => return Flushed::Failed,
            Ok(n) => c.wpos += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Flushed::Blocked,
            Err(_) => return Flushed::Failed,
        }
    }
    Flushed::All
}
