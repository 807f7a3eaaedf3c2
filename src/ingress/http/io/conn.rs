//! A connection's state, its poller registration, and the way outcomes come back to it.

use std::io;
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::time::Instant;

use crossbeam::channel::Sender;
use polling::{Event, PollMode, Poller};

use super::super::wire::Head;
use crate::bus::{Bus, ReplyTicket};
use crate::types::{Error, Message};

/// A source registered with a poller, deleted from it before the source is dropped.
pub(crate) struct Registered<S: AsFd + AsRawFd> {
    pub(crate) poller: Arc<Poller>,
    pub(crate) source: S,
}

impl<S: AsFd + AsRawFd> Registered<S> {
    #[allow(unsafe_code)]
    pub(crate) fn new(
        poller: &Arc<Poller>,
        source: S,
        interest: Event,
    ) -> io::Result<Registered<S>> {
        // SAFETY: `Poller::add` requires the source to be deleted from the poller before it
        // is closed. The guard owns `source` (directly, or an `Arc` keeping the descriptor
        // open), and its `Drop` deletes it before the fields (and so the source) are dropped.
        unsafe { poller.add_with_mode(&source, interest, PollMode::Level)? };
        Ok(Registered {
            poller: Arc::clone(poller),
            source,
        })
    }

    pub(crate) fn modify(&self, interest: Event) -> io::Result<()> {
        self.poller
            .modify_with_mode(&self.source, interest, PollMode::Level)
    }
}

impl<S: AsFd + AsRawFd> Drop for Registered<S> {
    fn drop(&mut self) {
        let _ = self.poller.delete(&self.source);
    }
}

/// An outcome of a bus request, sent back to the I/O thread that made it.
pub(crate) struct Completion {
    pub(crate) key: usize,
    pub(crate) seq: u64,
    pub(crate) outcome: Result<Message, Error>,
}

/// Where request callbacks send their outcomes: a channel and the poller to wake.
pub(crate) struct Inbound {
    pub(crate) tx: Sender<Completion>,
    pub(crate) poller: Arc<Poller>,
    pub(crate) bus: Bus,
}

impl Inbound {
    pub(crate) fn deliver(&self, c: Completion) {
        match self.tx.send(c) {
            Ok(()) => {
                let _ = self.poller.notify();
            }
            // The I/O thread has ended: a reply nobody will read is the bus's late reply.
            Err(e) => {
                if let Ok(reply) = e.into_inner().outcome {
                    self.bus.late_reply(reply);
                }
            }
        }
    }
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
    /// Sent to a component; waiting for its reply.
    Waiting {
        ticket: ReplyTicket,
        seq: u64,
        route: usize,
        since: Instant,
    },
    /// A response is partly written; waiting for the socket to take the rest.
    Writing,
    /// The last response is out and our side is shut; reading and discarding what the client
    /// still sends (a body we refused), so that it reads the response rather than a reset.
    Lingering,
}

pub(crate) struct Conn {
    pub(crate) io: Registered<TcpStream>,
    pub(crate) phase: Phase,
    pub(crate) rbuf: Vec<u8>,
    pub(crate) wbuf: Vec<u8>,
    pub(crate) wpos: usize,
    /// Close once the response being written is out.
    pub(crate) close_after: bool,
    /// The peer closed its side: answer what is in flight and what is buffered (requests
    /// pipelined before the end of the stream), then close.
    pub(crate) peer_eof: bool,
    /// Admitted past `max_connections`: its first request gets `503` and the connection ends.
    pub(crate) reject: bool,
    /// The response that closes was an error given before the request was read whole:
    /// linger after it (see `Phase::Lingering`).
    pub(crate) linger: bool,
    /// When the current phase times out.
    pub(crate) deadline: Option<Instant>,
    /// The earliest entry the timer set holds for this connection (see `set_deadline`).
    pub(crate) armed: Option<Instant>,
    /// Unique within the thread: tells this connection's timer entries from those of an
    /// earlier connection in the same slot.
    pub(crate) id: u64,
    pub(crate) interest: (bool, bool),
}

impl Conn {
    pub(crate) fn in_flight(&self) -> bool {
        !matches!(self.phase, Phase::Head { .. } | Phase::Lingering)
    }
}
