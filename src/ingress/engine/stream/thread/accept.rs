//! Accepting: a thread takes new connections while it holds no more than its share, pauses
//! when the OS is out of descriptors, and at the drain's start takes what the kernel holds.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use polling::Event;

use super::drain::Drain;
use super::{ConnIo, IoThread, Slot, LISTENER};
use crate::ingress::engine::registration::Registration;
use crate::ingress::engine::shared::{bump, is_resource_exhaustion};
use crate::ingress::engine::stream::{Admission, Io, StreamProtocol};
use crate::logs;

/// How long accepting pauses after the OS refused a new socket (out of descriptors, memory).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// How many connections more than the lightest I/O thread one may hold and still accept.
const ACCEPT_SLACK: usize = 8;

impl<P: StreamProtocol> IoThread<P> {
    /// Whichever thread wakes first would otherwise accept a whole burst: accept only while
    /// this thread holds no more than `ACCEPT_SLACK` connections over the lightest one.
    fn my_turn_to_accept(&self) -> bool {
        let counts = &self.control.per_thread;
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

    pub(super) fn accept(&mut self) {
        if self.control.stopping.load(Ordering::Acquire) {
            // The thread begins its drain at the top of its loop: it takes what is pending
            // then (the first thread to begin stops the listener for all).
            return;
        }
        let Some(listener) = &self.listener else {
            return;
        };
        let listener = Arc::clone(listener.source());
        loop {
            if !self.my_turn_to_accept() {
                // Another thread holds fewer connections and sees the same readiness (the
                // listener is level-triggered in every poller): leave the rest to it.
                return;
            }
            match listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    bump(&self.control.counters.accept_errors);
                    logs::limited!(
                        self.control.limits.accept_errors,
                        tracing::Level::WARN,
                        target: logs::ENGINE,
                        error = %e,
                        paused = is_resource_exhaustion(&e),
                        "accept failed"
                    );
                    if is_resource_exhaustion(&e) {
                        // Out of descriptors or memory: the connection stays in the backlog.
                        // Stop asking for a while rather than spin on a listener that stays
                        // readable; serving the open connections frees what is needed.
                        if let Some(l) = &self.listener {
                            let _ = l.modify(Event::none(LISTENER));
                        }
                        self.accept_paused_until = Some(self.cx.now + ACCEPT_PAUSE);
                        return;
                    }
                    // A connection that died in the backlog (ECONNABORTED and the like).
                }
            }
        }
    }

    /// At the drain's start: takes every connection the kernel holds, whatever the
    /// balance between threads.
    pub(super) fn accept_pending(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        let listener = Arc::clone(listener.source());
        loop {
            match listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return, // WouldBlock, or another thread stopped the listener
            }
        }
    }

    fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        let counters = &self.control.counters;
        let config = &self.control.config;
        let limits = &self.control.limits;
        let before = counters.open.fetch_add(1, Ordering::AcqRel);
        if before >= config.max_connections + config.reject_slack {
            counters.open.fetch_sub(1, Ordering::AcqRel);
            bump(&counters.refused);
            logs::limited!(
                limits.refused,
                tracing::Level::WARN,
                target: logs::ENGINE,
                %peer,
                open = before,
                max_connections = config.max_connections,
                "connection refused: over capacity, closed at once"
            );
            return; // dropped: closed at once
        }
        let admission = if before >= config.max_connections {
            logs::limited!(
                limits.over_cap,
                tracing::Level::WARN,
                target: logs::ENGINE,
                %peer,
                open = before,
                max_connections = config.max_connections,
                "connection over capacity: the protocol answers it with a refusal"
            );
            Admission::OverCap
        } else {
            Admission::Normal
        };
        if stream.set_nonblocking(true).is_err() {
            counters.open.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        if config.nodelay {
            let _ = stream.set_nodelay(true);
        }
        let key = match self.free.pop() {
            Some(k) => k,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        let io = match Registration::new(Arc::clone(&self.poller), stream, Event::readable(key + 1))
        {
            Ok(io) => io,
            Err(e) => {
                self.free.push(key);
                counters.open.fetch_sub(1, Ordering::AcqRel);
                bump(&counters.accept_errors);
                logs::limited!(
                    limits.accept_errors,
                    tracing::Level::WARN,
                    target: logs::ENGINE,
                    %peer,
                    error = %e,
                    "registering a connection failed"
                );
                return;
            }
        };
        bump(&counters.accepted);
        let mut c = ConnIo {
            io,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            wpos: 0,
            close: None,
            peer_eof: false,
            lingering: false,
            drain: Drain::No,
            deadline: None,
            engine_deadline: None,
            armed: None,
            id: self.next_conn,
            next_token: 0,
            interest: (true, false),
        };
        self.next_conn += 1;
        let conn = self.protocol.open(
            &mut Io {
                c: &mut c,
                t: &self.cx,
                key,
            },
            admission,
        );
        self.slots[key] = Some(Slot { conn, io: c });
        self.publish_open();
        self.settle(key, false);
    }
}
