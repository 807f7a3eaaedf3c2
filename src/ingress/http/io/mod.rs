//! The I/O threads. Each owns one `Poller`, the connections it accepted, and their deadlines;
//! nothing here is shared between threads but the listener, the counters and the stop flag.
//! See `../README.md` (the front-end's design notes) for the connection life cycle and the
//! shutdown protocol.

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, Sender};
use polling::{Event, Events, Poller};

mod conn;
mod timers;
mod write;

use super::route::{Admin, Matched, Target};
use super::stats::TimeoutKind;
use super::wire::{self, Head, Response};
use super::{http_names, Shared};
use crate::types::Message;
use conn::{Completion, Conn, Inbound, Phase, Registered};

/// The poller key of the listener; a connection's key is its slab index + 1.
const LISTENER: usize = 0;
/// How long accepting pauses after the OS refused a new socket (out of descriptors, memory).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// The most bytes one read takes; level-triggered polling brings the connection back if more
/// is waiting, so one busy connection cannot hold the thread.
const READ_CHUNK: usize = 16 * 1024;
/// How long a connection closed after an early error keeps reading (and discarding) what the
/// client still sends. Discarding costs no memory; the time bounds what a client can take.
const LINGER: Duration = Duration::from_secs(2);
/// How many connections more than the lightest I/O thread one may hold and still accept.
const ACCEPT_SLACK: usize = 8;
/// The most buffer capacity an idle connection keeps between requests.
const KEEP_BUFFER: usize = 16 * 1024;
/// Connections past `max_connections` that are still read far enough to be told `503`.
const REJECT_SLACK: usize = 256;
/// How long an over-the-limit connection may take to send its head before it is just closed.
const REJECT_READ: Duration = Duration::from_secs(2);

pub(super) struct IoThread {
    /// Which of the server's I/O threads this is (its slot in `Shared::per_thread`).
    index: usize,
    shared: Arc<Shared>,
    poller: Arc<Poller>,
    inbound: Arc<Inbound>,
    rx: Receiver<Completion>,
    listener: Option<Registered<Arc<TcpListener>>>,
    accept_paused_until: Option<Instant>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// Wake-ups: (when, slot, connection id). Lazy: an entry may be earlier than its
    /// connection's deadline (then it is re-armed when it comes up) or stale (skipped).
    timers: BTreeSet<(Instant, usize, u64)>,
    /// The time read once per loop turn, after the wait.
    now: Instant,
    next_conn: u64,
    next_seq: u64,
    draining: Option<Instant>,
    scratch: Box<[u8]>,
}

impl IoThread {
    pub(super) fn new(
        index: usize,
        shared: Arc<Shared>,
        listener: Arc<TcpListener>,
        poller: Arc<Poller>,
        tx: Sender<Completion>,
        rx: Receiver<Completion>,
    ) -> io::Result<IoThread> {
        let listener = Registered::new(&poller, listener, Event::readable(LISTENER))?;
        Ok(IoThread {
            index,
            inbound: Arc::new(Inbound {
                tx,
                poller: Arc::clone(&poller),
                bus: shared.bus.clone(),
            }),
            shared,
            poller,
            rx,
            listener: Some(listener),
            accept_paused_until: None,
            conns: Vec::new(),
            free: Vec::new(),
            timers: BTreeSet::new(),
            now: Instant::now(),
            next_conn: 0,
            next_seq: 0,
            draining: None,
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
        })
    }

    /// The loop: until stopped and every connection is done (or the drain deadline passed).
    pub(super) fn run(mut self) {
        let mut events = Events::new();
        loop {
            let now = Instant::now();
            self.now = now;
            if self.draining.is_none() && self.shared.stopping.load(Ordering::Acquire) {
                self.begin_drain(now);
            }
            if let Some(deadline) = self.draining {
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
                self.draining,
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
                let errors = &self.shared.stats.poll_errors;
                errors.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
            self.now = Instant::now();
            for ev in events.iter() {
                if ev.key == LISTENER {
                    self.accept();
                } else {
                    self.on_ready(ev.key - 1, ev.readable, ev.writable);
                }
            }
            self.fire_timers(self.now);
            while let Ok(c) = self.rx.try_recv() {
                self.complete(c);
            }
        }
        // Outcomes that raced with the end: replies go to the bus's late-reply accounting.
        while let Ok(c) = self.rx.try_recv() {
            if let Ok(reply) = c.outcome {
                self.shared.bus.late_reply(reply);
            }
        }
    }

    fn open(&self) -> usize {
        self.conns.len() - self.free.len()
    }

    /// Publishes this thread's connection count, for the others' `my_turn_to_accept`.
    fn publish_open(&self) {
        self.shared.per_thread[self.index].store(self.open(), Ordering::Relaxed);
    }

    /// Whichever thread wakes first would otherwise accept a whole burst: accept only while
    /// this thread holds no more than `ACCEPT_SLACK` connections over the lightest one.
    fn my_turn_to_accept(&self) -> bool {
        let counts = &self.shared.per_thread;
        if counts.len() < 2 {
            return true;
        }
        let lightest = counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0);
        self.open() <= lightest + ACCEPT_SLACK
    }

    // ---- accepting -------------------------------------------------------------------

    fn accept(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        let listener = Arc::clone(&listener.source);
        loop {
            if !self.my_turn_to_accept() {
                // Another thread holds fewer connections and sees the same readiness (the
                // listener is level-triggered in every poller): leave the rest to it.
                return;
            }
            match listener.accept() {
                Ok((stream, _)) => self.admit(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.shared
                        .stats
                        .accept_errors
                        .fetch_add(1, Ordering::Relaxed);
                    if is_resource_exhaustion(&e) {
                        // Out of descriptors or memory: the connection stays in the backlog.
                        // Stop asking for a while rather than spin on a listener that stays
                        // readable; serving the open connections frees what is needed.
                        if let Some(l) = &self.listener {
                            let _ = l.modify(Event::none(LISTENER));
                        }
                        self.accept_paused_until = Some(self.now + ACCEPT_PAUSE);
                        return;
                    }
                    // A connection that died in the backlog (ECONNABORTED and the like).
                }
            }
        }
    }

    fn admit(&mut self, stream: TcpStream) {
        let stats = &self.shared.stats;
        let max = self.shared.config.max_connections;
        let before = self.shared.open.fetch_add(1, Ordering::AcqRel);
        if before >= max + REJECT_SLACK {
            self.shared.open.fetch_sub(1, Ordering::AcqRel);
            stats.refused_connections.fetch_add(1, Ordering::Relaxed);
            return; // dropped: closed at once
        }
        let reject = before >= max;
        if stream.set_nonblocking(true).is_err() {
            self.shared.open.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let _ = stream.set_nodelay(true);
        let key = match self.free.pop() {
            Some(k) => k,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        let io = match Registered::new(&self.poller, stream, Event::readable(key + 1)) {
            Ok(io) => io,
            Err(_) => {
                self.free.push(key);
                self.shared.open.fetch_sub(1, Ordering::AcqRel);
                stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        self.conns[key] = Some(Conn {
            io,
            phase: Phase::Head { since: None },
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            wpos: 0,
            close_after: false,
            peer_eof: false,
            reject,
            linger: false,
            deadline: None,
            armed: None,
            id: self.next_conn,
            interest: (true, false),
        });
        self.next_conn += 1;
        self.publish_open();
        let now = self.now;
        let wait = if reject {
            REJECT_READ
        } else {
            self.shared.config.header_timeout
        };
        self.set_deadline(key, Some(now + wait));
    }

    // ---- readiness -------------------------------------------------------------------

    fn on_ready(&mut self, key: usize, readable: bool, writable: bool) {
        if writable
            && self
                .conn(key)
                .is_some_and(|c| matches!(c.phase, Phase::Writing))
        {
            self.flush(key);
            // Written out: a pipelined request may be waiting in the buffer already.
            if self
                .conn(key)
                .is_some_and(|c| matches!(c.phase, Phase::Head { .. }) && !c.rbuf.is_empty())
            {
                self.process(key);
            }
        }
        if readable && self.conn(key).is_some() {
            self.read(key);
        }
    }

    fn conn(&mut self, key: usize) -> Option<&mut Conn> {
        self.conns.get_mut(key).and_then(Option::as_mut)
    }

    fn read(&mut self, key: usize) {
        let limit = self.read_limit(key);
        let Some(c) = self.conns.get_mut(key).and_then(Option::as_mut) else {
            return;
        };
        if let Phase::Lingering = c.phase {
            match (&c.io.source).read(&mut self.scratch) {
                Ok(n) if n > 0 => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                _ => self.close(key), // end of stream, or an error
            }
            return;
        }
        let have = c.rbuf.len();
        if have >= limit {
            // Nothing more may be buffered until what is there is used.
            self.set_interest(key, false, None);
            return;
        }
        // Read into the thread's scratch buffer and keep only what came: an idle or
        // half-sent connection holds a few hundred bytes, not a whole read chunk.
        let want = self.scratch.len().min(limit - have);
        match (&c.io.source).read(&mut self.scratch[..want]) {
            Ok(0) => {
                c.peer_eof = true;
                if c.in_flight() {
                    self.set_interest(key, false, None);
                } else {
                    self.close(key);
                }
            }
            Ok(n) => {
                c.rbuf.extend_from_slice(&self.scratch[..n]);
                self.process(key);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => self.close(key),
        }
    }

    /// How many bytes a connection may hold unread in its current phase.
    fn read_limit(&mut self, key: usize) -> usize {
        let header = self.shared.config.max_header_bytes;
        match self.conn(key).map(|c| &c.phase) {
            Some(Phase::Body { head, .. }) => head.content_length + header,
            // One byte past the limit tells a head that is too large from one that fits.
            _ => header + 1,
        }
    }

    /// Moves the connection forward with what it has buffered, as far as it can go.
    fn process(&mut self, key: usize) {
        let shared = Arc::clone(&self.shared);
        loop {
            let now = self.now;
            let Some(c) = self.conn(key) else { return };
            match &mut c.phase {
                Phase::Head { since } => {
                    if c.rbuf.is_empty() {
                        return;
                    }
                    let started = *since.get_or_insert(now);
                    let limit = shared.config.max_header_bytes;
                    match wire::parse_head(&c.rbuf, &shared.config.forward_headers) {
                        // Over the limit, whole or not (a head that ends in the one byte read
                        // past the limit is over it too).
                        Ok(Some((_, used))) if used > limit => {
                            let r = wire::head_too_large(limit);
                            self.respond(key, r, None, started, true);
                            return;
                        }
                        Ok(None) if c.rbuf.len() > limit => {
                            let r = wire::head_too_large(limit);
                            self.respond(key, r, None, started, true);
                            return;
                        }
                        // The rest of a head that cannot come any more.
                        Ok(None) if c.peer_eof => {
                            self.close(key);
                            return;
                        }
                        Ok(None) => {
                            if c.reject {
                                // keep reading until the head is in (or REJECT_READ passes)
                            } else {
                                let d = started + shared.config.header_timeout;
                                self.set_deadline(key, Some(d));
                            }
                            return;
                        }
                        Err(e) => {
                            self.respond(key, wire::head_error(&e), None, started, true);
                            return;
                        }
                        Ok(Some((head, used))) => {
                            c.rbuf.drain(..used);
                            // Answered at once or not, go round: a pipelined head may be
                            // buffered already, and no more bytes may come to wake us.
                            self.route(key, head, started);
                        }
                    }
                }
                Phase::Body { head, .. } => {
                    if c.rbuf.len() < head.content_length {
                        return;
                    }
                    let Phase::Body {
                        head,
                        route,
                        params,
                        since,
                    } = std::mem::replace(&mut c.phase, Phase::Writing)
                    else {
                        unreachable!()
                    };
                    let body: Vec<u8> = if head.content_length == 0 {
                        Vec::new() // no allocation; the read buffer stays
                    } else if c.rbuf.len() == head.content_length {
                        std::mem::take(&mut c.rbuf)
                    } else {
                        let body = c.rbuf.drain(..head.content_length).collect();
                        c.rbuf.shrink_to(KEEP_BUFFER);
                        body
                    };
                    self.dispatch(key, head, route, params, body, since);
                }
                Phase::Waiting { .. } | Phase::Writing | Phase::Lingering => return,
            }
            // Go round while there is something to do: a body to check for, or (pipelining)
            // the next head.
            match self.conn(key) {
                Some(c) if matches!(c.phase, Phase::Body { .. }) => {}
                Some(c) if matches!(c.phase, Phase::Head { .. }) && !c.rbuf.is_empty() => {}
                _ => return,
            }
        }
    }

    /// A head is in: find its route and decide what comes next. `false` when a response was
    /// given at once (the connection may have closed).
    fn route(&mut self, key: usize, head: Head, since: Instant) -> bool {
        let shared = Arc::clone(&self.shared);
        let config = &shared.config;
        let c = self.conn(key).expect("routing a live connection");
        c.close_after |= !head.keep_alive;
        let has_body = head.content_length > 0;
        if c.reject {
            let r = Response::error(
                503,
                "too_many_connections",
                &format!(
                    "the server holds its maximum of {} connections",
                    config.max_connections
                ),
            )
            .with_header("Retry-After", config.retry_after_secs().to_string());
            self.respond(key, r, None, since, true);
            return false;
        }
        if head.content_length > config.max_body_bytes {
            let r = Response::error(
                413,
                "body_too_large",
                &format!(
                    "the body is {} bytes; the limit is {}",
                    head.content_length, config.max_body_bytes
                ),
            );
            self.respond(key, r, None, since, true);
            return false;
        }
        match shared.routes.find(&head.method, &head.path) {
            Matched::Route { index, params } => {
                if head.expect_continue && c.rbuf.len() < head.content_length {
                    // The client waits for this before it sends the body.
                    let sent = (&c.io.source).write(b"HTTP/1.1 100 Continue\r\n\r\n");
                    if !matches!(sent, Ok(25)) {
                        self.close(key);
                        return false;
                    }
                }
                c.phase = Phase::Body {
                    head,
                    route: index,
                    params,
                    since,
                };
                let d = self.now + config.body_timeout;
                self.set_deadline(key, Some(d));
                true
            }
            Matched::WrongMethod(allowed) => {
                let r = Response::error(
                    405,
                    "method_not_allowed",
                    &format!(
                        "{} {} is not routed; allowed: {}",
                        head.method,
                        head.path,
                        allowed.join(", ")
                    ),
                )
                .with_header("Allow", allowed.join(", "));
                self.respond(key, r, None, since, has_body);
                false
            }
            Matched::NotFound => {
                let r = Response::error(
                    404,
                    "not_found",
                    &format!("no route for {} {}", head.method, head.path),
                );
                self.respond(key, r, None, since, has_body);
                false
            }
            Matched::BadPath => {
                let r = Response::error(
                    400,
                    "bad_request",
                    "a path parameter is not valid percent-encoded UTF-8",
                );
                self.respond(key, r, None, since, has_body);
                false
            }
        }
    }

    /// A whole request is in: answer it, or send it to its component.
    fn dispatch(
        &mut self,
        key: usize,
        head: Head,
        route: usize,
        params: Vec<(String, String)>,
        body: Vec<u8>,
        since: Instant,
    ) {
        let shared = Arc::clone(&self.shared);
        let target = &shared.routes.routes[route].target;
        let (topic, timeout) = match target {
            Target::Fixed {
                status,
                content_type,
                body,
            } => {
                let r = Response::new(*status, content_type, body.to_vec());
                self.respond(key, r, Some(route), since, false);
                return;
            }
            Target::Admin(kind) => {
                let r = admin_response(&shared, *kind);
                self.respond(key, r, Some(route), since, false);
                return;
            }
            Target::Topic { topic, timeout } => {
                (topic, timeout.unwrap_or(shared.config.request_timeout))
            }
        };
        let msg = if body.is_empty() {
            Message::empty()
        } else if head.json_body {
            match serde_json::from_slice(&body) {
                Ok(v) => Message::json(v),
                Err(e) => {
                    let r = Response::error(
                        400,
                        "malformed_json",
                        &format!("the body is not valid JSON: {e}"),
                    );
                    self.respond(key, r, Some(route), since, false);
                    return;
                }
            }
        } else {
            Message::bytes(body)
        };
        // One vector for every header, sized once.
        let mut headers = Vec::with_capacity(3 + params.len() + head.forwarded.len());
        headers.push((http_names::METHOD.to_owned(), head.method));
        headers.push((http_names::PATH.to_owned(), head.path));
        if !head.query.is_empty() {
            headers.push((http_names::QUERY.to_owned(), head.query));
        }
        for (n, v) in params {
            headers.push((format!("{}{n}", http_names::PARAM_PREFIX), v));
        }
        for (n, v) in head.forwarded {
            headers.push((format!("{}{n}", http_names::HEADER_PREFIX), v));
        }
        let msg = msg.with_headers(headers);
        let seq = self.next_seq;
        self.next_seq += 1;
        let inbound = Arc::clone(&self.inbound);
        let sent = shared
            .bus
            .request_callback(topic, msg, timeout, move |outcome| {
                inbound.deliver(Completion { key, seq, outcome });
            });
        match sent {
            Ok(ticket) => {
                let deadline = ticket.deadline();
                if let Some(c) = self.conn(key) {
                    c.phase = Phase::Waiting {
                        ticket,
                        seq,
                        route,
                        since,
                    };
                }
                self.set_deadline(key, Some(deadline));
            }
            Err(e) => {
                let r = wire::bus_error(&e.without_payload(), shared.config.retry_after_secs());
                self.respond(key, r, Some(route), since, false);
            }
        }
    }

    /// A component's answer (or a timeout) for the request in flight on `key`.
    fn complete(&mut self, c: Completion) {
        let current = match self.conn(c.key).map(|conn| &conn.phase) {
            Some(Phase::Waiting {
                seq, route, since, ..
            }) if *seq == c.seq => Some((*route, *since)),
            _ => None,
        };
        let Some((route, since)) = current else {
            // The connection closed (and its ticket expired) before this came: a reply
            // nobody will read is the bus's late reply.
            if let Ok(reply) = c.outcome {
                self.shared.bus.late_reply(reply);
            }
            return;
        };
        if let Some(conn) = self.conn(c.key) {
            conn.phase = Phase::Writing;
        }
        let r = match c.outcome {
            Ok(reply) => wire::from_reply(&reply),
            Err(e) => {
                if e.is_timeout() {
                    self.shared.stats.timeout(TimeoutKind::Reply);
                }
                wire::bus_error(&e, self.shared.config.retry_after_secs())
            }
        };
        self.respond(c.key, r, Some(route), since, false);
        self.process(c.key);
    }

    // ---- ending ----------------------------------------------------------------------

    fn close(&mut self, key: usize) {
        let Some(c) = self.conns.get_mut(key).and_then(Option::take) else {
            return;
        };
        if let Some(a) = c.armed {
            self.timers.remove(&(a, key, c.id));
        }
        if let Phase::Waiting { ticket, .. } = &c.phase {
            // The client is gone: stop waiting, so a reply that comes later is counted late.
            ticket.expire();
        }
        self.free.push(key);
        self.publish_open();
        self.shared.open.fetch_sub(1, Ordering::AcqRel);
        self.shared.stats.closed.fetch_add(1, Ordering::Relaxed);
        drop(c); // deletes it from the poller, then closes the socket
    }

    fn begin_drain(&mut self, now: Instant) {
        self.draining = Some(self.shared.drain_deadline().unwrap_or(now));
        // Stop accepting: this thread's registration goes; the socket closes with the last.
        self.listener = None;
        self.accept_paused_until = None;
        let idle: Vec<usize> = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(k, c)| c.as_ref().filter(|c| !c.in_flight()).map(|_| k))
            .collect();
        for key in idle {
            self.shared
                .stats
                .drain_closed_idle
                .fetch_add(1, Ordering::Relaxed);
            self.close(key);
        }
    }

    fn abandon_all(&mut self) {
        for key in 0..self.conns.len() {
            if self.conns[key].is_some() {
                self.shared
                    .stats
                    .drain_abandoned
                    .fetch_add(1, Ordering::Relaxed);
                self.close(key);
            }
        }
    }
}

/// `EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`: the OS is out of something that serving frees.
fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24 | 105 | 12))
}

fn admin_response(shared: &Shared, kind: Admin) -> Response {
    let admin = &shared.admin;
    match kind {
        Admin::Health => Response::new(200, "application/json", r#"{"status":"ok"}"#),
        Admin::Ready => {
            let r = admin.readiness();
            let status = if r.ready { 200 } else { 503 };
            Response::new(status, "application/json", r.detail.to_string())
        }
        Admin::Metrics => Response::new(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            admin.metrics(),
        ),
    }
}
