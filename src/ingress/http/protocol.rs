//! HTTP/1.1 as a protocol on the stream engine: a connection's phases, what each step of
//! its life does, and the deadline of each phase. The engine does the socket work (see
//! `../engine` and `../README.md`); this file is what the bytes mean. See `README.md` beside
//! this file for the connection life cycle.

use std::time::{Duration, Instant};

use super::route::{Admin, Matched, Routes, Target};
use super::stats::{Counters, TimeoutKind};
use super::wire::{self, Frame, Head, Response};
use super::{http_names, HttpConfig};
use crate::bus::{Bus, ReplyTicket};
use crate::ingress::engine::{Admission, CloseReason, Io, StreamProtocol};
use crate::runtime::AdminHandle;
use crate::types::{Error, Message};

/// The most buffer capacity a connection's input keeps after a large body.
const KEEP_BUFFER: usize = 16 * 1024;
/// How long an over-the-limit connection may take to send its head before it is just closed.
const REJECT_READ: Duration = Duration::from_secs(2);

/// The HTTP protocol: what every connection of one server shares.
pub(crate) struct Http {
    pub(crate) config: HttpConfig,
    pub(crate) routes: Routes,
    pub(crate) bus: Bus,
    pub(crate) admin: AdminHandle,
    pub(crate) stats: Counters,
}

pub(crate) enum Phase {
    /// Waiting for a head. `since` is when its first byte came (`None`: idle keep-alive).
    Head { since: Option<Instant> },
    /// The head is in; waiting for `head.content_length` body bytes.
    Body {
        head: Head,
        route: usize,
        params: Vec<(String, String)>,
        since: Instant,
    },
    /// Sent to a component; waiting for its reply (the outcome with `token`).
    Waiting {
        ticket: ReplyTicket,
        token: u64,
        route: usize,
        since: Instant,
    },
    /// A response is queued; waiting for the engine to write it out.
    Writing,
}

/// One connection's HTTP state.
pub(crate) struct Conn {
    phase: Phase,
    /// Admitted past `max_connections`: its first request gets `503` and the connection ends.
    reject: bool,
    /// The client asked to close after this request (`Connection: close`, HTTP/1.0).
    close_after: bool,
    /// The request being answered is HTTP/1.0 (its keep-alive is said in the response).
    http10: bool,
    /// The request being answered is a HEAD: its response has no body.
    head_only: bool,
}

impl StreamProtocol for Http {
    type Conn = Conn;
    type Outcome = Result<Message, Error>;

    fn open(&self, io: &mut Io<'_, Self>, admission: Admission) -> Conn {
        let reject = admission == Admission::OverCap;
        let wait = if reject {
            REJECT_READ
        } else {
            self.config.header_timeout
        };
        io.set_deadline(Some(io.now() + wait));
        Conn {
            phase: Phase::Head { since: None },
            reject,
            close_after: false,
            http10: false,
            head_only: false,
        }
    }

    /// Moves the connection forward with what it has buffered, as far as it can go.
    fn on_input(&self, c: &mut Conn, io: &mut Io<'_, Self>) {
        loop {
            let now = io.now();
            match &mut c.phase {
                Phase::Head { since } => {
                    if io.input().is_empty() {
                        return;
                    }
                    let started = *since.get_or_insert(now);
                    let limit = self.config.max_header_bytes;
                    let parsed = wire::parse_head(io.input(), &self.config.forward_headers);
                    match parsed {
                        // Over the limit, whole or not (a head that ends in the one byte read
                        // past the limit is over it too).
                        Ok(Some((_, used))) if used > limit => {
                            let r = wire::head_too_large(limit);
                            self.respond(c, io, r, None, started, true);
                            return;
                        }
                        Ok(None) if io.input().len() > limit => {
                            let r = wire::head_too_large(limit);
                            self.respond(c, io, r, None, started, true);
                            return;
                        }
                        // The rest of a head that cannot come any more.
                        Ok(None) if io.peer_closed() => {
                            io.close_now();
                            return;
                        }
                        Ok(None) => {
                            if !c.reject {
                                // (a rejected one keeps reading until the head is in, or
                                // REJECT_READ passes)
                                io.set_deadline(Some(started + self.config.header_timeout));
                            }
                            return;
                        }
                        Err(e) => {
                            self.respond(c, io, wire::head_error(&e), None, started, true);
                            return;
                        }
                        Ok(Some((head, used))) => {
                            io.input().drain(..used);
                            // Answered at once or not, go round: a pipelined head may be
                            // buffered already, and no more bytes may come to wake us.
                            self.route(c, io, head, started);
                        }
                    }
                }
                Phase::Body { head, .. } => {
                    if io.input().len() < head.content_length {
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
                    let rbuf = io.input();
                    let body: Vec<u8> = if head.content_length == 0 {
                        Vec::new() // no allocation; the read buffer stays
                    } else if rbuf.len() == head.content_length {
                        std::mem::take(rbuf)
                    } else {
                        let body = rbuf.drain(..head.content_length).collect();
                        rbuf.shrink_to(KEEP_BUFFER);
                        body
                    };
                    self.dispatch(c, io, head, route, params, body, since);
                }
                Phase::Waiting { .. } | Phase::Writing => return,
            }
            if io.closing() {
                return;
            }
            // Go round while there is something to do: a body to check for, or (pipelining)
            // the next head.
            match &c.phase {
                Phase::Body { .. } => {}
                Phase::Head { .. } if !io.input().is_empty() => {}
                _ => return,
            }
        }
    }

    /// A component's answer (or a timeout) for the request in flight.
    fn on_outcome(
        &self,
        c: &mut Conn,
        token: u64,
        outcome: Result<Message, Error>,
        io: &mut Io<'_, Self>,
    ) {
        let current = match &c.phase {
            Phase::Waiting {
                token: t,
                route,
                since,
                ..
            } if *t == token => Some((*route, *since)),
            _ => None,
        };
        let Some((route, since)) = current else {
            // Not the request this connection waits for (not expected: one at a time).
            self.unclaimed(outcome);
            return;
        };
        c.phase = Phase::Writing;
        let r = match outcome {
            Ok(reply) => wire::from_reply(&reply),
            Err(e) => {
                if e.is_timeout() {
                    self.stats.timeout(TimeoutKind::Reply);
                }
                wire::bus_error(&e, self.config.retry_after_secs())
            }
        };
        self.respond(c, io, r, Some(route), since, false);
    }

    fn in_flight(&self, c: &Conn) -> bool {
        !matches!(c.phase, Phase::Head { .. })
    }

    /// A body not all here: at the client's end of stream it never will be, and the
    /// connection closes then rather than at the body timeout.
    fn wants_input(&self, c: &Conn) -> bool {
        matches!(c.phase, Phase::Body { .. })
    }

    fn on_deadline(&self, c: &mut Conn, io: &mut Io<'_, Self>) {
        match &c.phase {
            Phase::Head { since: None } => {
                self.stats.timeout(TimeoutKind::Idle);
                io.close_now();
            }
            Phase::Head { since: Some(since) } => {
                let since = *since;
                self.stats.timeout(TimeoutKind::Header);
                let r = Response::error(408, "header_timeout", "the request head took too long");
                self.respond(c, io, r, None, since, true);
            }
            Phase::Body { since, route, .. } => {
                let (since, route) = (*since, *route);
                self.stats.timeout(TimeoutKind::Body);
                let r = Response::error(408, "body_timeout", "the request body took too long");
                self.respond(c, io, r, Some(route), since, true);
            }
            Phase::Waiting { ticket, .. } => {
                // Runs our own callback with `Timeout`; `on_outcome` answers 504 shortly.
                ticket.expire();
            }
            Phase::Writing => {} // the engine's write timeout covers it
        }
    }

    /// The response is out: the connection waits for its next request.
    fn on_written(&self, c: &mut Conn, io: &mut Io<'_, Self>) {
        if matches!(c.phase, Phase::Writing) {
            c.phase = Phase::Head { since: None };
            c.http10 = false;
            c.head_only = false;
            io.set_deadline(Some(io.now() + self.config.idle_timeout));
        }
    }

    fn read_limit(&self, c: &Conn) -> usize {
        let header = self.config.max_header_bytes;
        match &c.phase {
            Phase::Body { head, .. } => head.content_length + header,
            // One byte past the limit tells a head that is too large from one that fits.
            _ => header + 1,
        }
    }

    fn on_close(&self, c: Conn, reason: CloseReason) {
        if let Phase::Waiting { ticket, .. } = &c.phase {
            // The client is gone: stop waiting, so a reply that comes later is counted late.
            ticket.expire();
        }
        if reason == CloseReason::WriteTimeout {
            self.stats.timeout(TimeoutKind::Write);
        }
    }

    /// A reply nobody will read is the bus's late reply (counted, dead-lettered).
    fn unclaimed(&self, outcome: Result<Message, Error>) {
        if let Ok(reply) = outcome {
            self.bus.late_reply(reply);
        }
    }
}

impl Http {
    /// Queues `r`; `close` (an error given before the request was read whole) ends the
    /// connection after it, lingering.
    fn respond(
        &self,
        c: &mut Conn,
        io: &mut Io<'_, Self>,
        r: Response,
        route: Option<usize>,
        since: Instant,
        close: bool,
    ) {
        let took = io.now().saturating_duration_since(since);
        self.stats.record(route, r.status, took);
        // After the peer's end of stream, the last response closes; requests it pipelined
        // before that are still answered.
        let last = io.peer_closed() && io.input().is_empty();
        c.close_after |= close || io.draining() || last || c.reject;
        c.phase = Phase::Writing;
        let frame = Frame {
            close: c.close_after,
            keep_alive: c.http10,
            head: c.head_only,
        };
        r.write_to(io.output(), frame);
        io.set_deadline(None);
        if c.close_after {
            if close && !io.peer_closed() {
                io.close_linger();
            } else {
                io.close();
            }
        }
    }

    /// A head is in: find its route and decide what comes next.
    fn route(&self, c: &mut Conn, io: &mut Io<'_, Self>, mut head: Head, since: Instant) {
        let config = &self.config;
        c.close_after |= !head.keep_alive;
        c.http10 = head.http10;
        c.head_only = head.method == "HEAD";
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
            self.respond(c, io, r, None, since, true);
            return;
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
            self.respond(c, io, r, None, since, true);
            return;
        }
        match self.routes.find(&head.method, &head.path) {
            Matched::Route { index, params } => {
                if c.head_only {
                    // Taken by its GET route (or one of its own): what the component sees.
                    head.method = self.routes.routes[index].method.clone();
                }
                if head.expect_continue && io.input().len() < head.content_length {
                    // The client waits for this before it sends the body.
                    io.write(b"HTTP/1.1 100 Continue\r\n\r\n");
                }
                c.phase = Phase::Body {
                    head,
                    route: index,
                    params,
                    since,
                };
                io.set_deadline(Some(io.now() + config.body_timeout));
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
                self.respond(c, io, r, None, since, has_body);
            }
            Matched::NotFound => {
                let r = Response::error(
                    404,
                    "not_found",
                    &format!("no route for {} {}", head.method, head.path),
                );
                self.respond(c, io, r, None, since, has_body);
            }
            Matched::BadPath => {
                let r = Response::error(
                    400,
                    "bad_request",
                    "a path parameter is not valid percent-encoded UTF-8",
                );
                self.respond(c, io, r, None, since, has_body);
            }
        }
    }

    /// A whole request is in: answer it, or send it to its component.
    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        &self,
        c: &mut Conn,
        io: &mut Io<'_, Self>,
        head: Head,
        route: usize,
        params: Vec<(String, String)>,
        body: Vec<u8>,
        since: Instant,
    ) {
        let target = &self.routes.routes[route].target;
        let (topic, timeout) = match target {
            Target::Fixed {
                status,
                content_type,
                body,
            } => {
                let r = Response::new(*status, content_type, body.to_vec());
                self.respond(c, io, r, Some(route), since, false);
                return;
            }
            Target::Admin(kind) => {
                let r = self.admin_response(*kind);
                self.respond(c, io, r, Some(route), since, false);
                return;
            }
            Target::Topic { topic, timeout } => {
                (topic, timeout.unwrap_or(self.config.request_timeout))
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
                    self.respond(c, io, r, Some(route), since, false);
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
        let done = io.completer();
        let token = done.token();
        let sent = self
            .bus
            .request_callback(topic, msg, timeout, move |outcome| done.complete(outcome));
        match sent {
            Ok(ticket) => {
                let deadline = ticket.deadline();
                c.phase = Phase::Waiting {
                    ticket,
                    token,
                    route,
                    since,
                };
                io.set_deadline(Some(deadline));
            }
            Err(e) => {
                let r = wire::bus_error(&Error::from(e), self.config.retry_after_secs());
                self.respond(c, io, r, Some(route), since, false);
            }
        }
    }

    fn admin_response(&self, kind: Admin) -> Response {
        match kind {
            Admin::Health => Response::new(200, "application/json", r#"{"status":"ok"}"#),
            Admin::Ready => {
                let r = self.admin.readiness();
                let status = if r.ready { 200 } else { 503 };
                Response::new(status, "application/json", r.detail.to_string())
            }
            Admin::Metrics => Response::new(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                self.admin.metrics(),
            ),
        }
    }
}
