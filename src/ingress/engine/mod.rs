//! The connection engine every front-end sits on: the socket work of a protocol server,
//! written once. On `polling` (epoll), without async: a fixed number of I/O threads, each
//! with its own poller, owns the sockets; a protocol is a trait the engine is generic over,
//! called on those threads with the bytes that arrived and a handle to answer. Design notes:
//! `src/ingress/README.md`.
//!
//! The engine owns: the listener and accepting (balanced across threads, a connection cap
//! with a reject mode and a slack past which connections are refused, a pause when the OS
//! is out of descriptors); the poll loop and its wake-up, so outcomes of work done on other
//! threads (bus replies) come back to the connection's thread ([`Completer`]); a scratch
//! read buffer per thread; the write queue and write interest; each connection's deadline
//! in a lazy timer set; lingering close; the graceful stop (stop accepting, close idle
//! connections, finish what is in flight up to a deadline, abandon and count the rest); the
//! counters; and the one `unsafe` registration guard ([`Registration`]).
//!
//! The protocol owns: what bytes mean, each connection's state, which deadline comes next,
//! what is in flight, and what to answer.
//!
//! - Streams (TCP): [`StreamProtocol`] on a [`StreamEngine`]; callbacks get an [`Io`].
//! - Datagrams (UDP): [`DatagramProtocol`] on a [`DatagramEngine`]; callbacks get a
//!   [`DatagramIo`].
//!
//! A front-end built on an engine usually wraps its handle in a type that implements
//! [`FrontEnd`](crate::FrontEnd) and attaches itself to a runtime, as the HTTP front-end
//! does; `examples/line_protocol.rs` and `examples/udp_ingest.rs` are two written only
//! against this public API.
//!
//! # Examples
//!
//! A line protocol that answers each line with its length, one connection at a time per
//! thread, with an idle deadline:
//!
//! ```
//! use reactorium::engine::{Admission, EngineConfig, Io, StreamEngine, StreamProtocol};
//! use std::io::{BufRead, BufReader, Write};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! struct Lengths;
//!
//! impl StreamProtocol for Lengths {
//!     type Conn = ();
//!     type Outcome = ();
//!     fn open(&self, io: &mut Io<'_, Self>, _admission: Admission) {
//!         let idle = io.now() + Duration::from_secs(30);
//!         io.set_deadline(Some(idle));
//!     }
//!     fn on_input(&self, _conn: &mut (), io: &mut Io<'_, Self>) {
//!         while let Some(end) = io.input().iter().position(|&b| b == b'\n') {
//!             let line: Vec<u8> = io.input().drain(..=end).collect();
//!             let answer = format!("{}\n", line.len() - 1);
//!             io.write(answer.as_bytes());
//!         }
//!         let idle = io.now() + Duration::from_secs(30);
//!         io.set_deadline(Some(idle));
//!     }
//!     fn on_outcome(&self, _conn: &mut (), _token: u64, _outcome: (), _io: &mut Io<'_, Self>) {}
//!     fn in_flight(&self, _conn: &()) -> bool { false }
//! }
//!
//! let engine = StreamEngine::start(EngineConfig::new("lengths"), Arc::new(Lengths))?;
//! let stream = std::net::TcpStream::connect(engine.local_addr())?;
//! (&stream).write_all(b"hello\nab\n")?;
//! let mut lines = BufReader::new(stream).lines();
//! assert_eq!(lines.next().transpose()?.as_deref(), Some("5"));
//! assert_eq!(lines.next().transpose()?.as_deref(), Some("2"));
//! assert_eq!(engine.stats().accepted, 1);
//! engine.stop();
//! # Ok::<(), anyhow::Error>(())
//! ```

mod datagram;
mod registration;
mod shared;
mod stream;

pub use datagram::{DatagramEngine, DatagramIo, DatagramProtocol, DatagramStats};
pub use registration::{Registration, Source};
pub use shared::{Completer, EngineConfig, EngineReport, EngineStats};
pub use stream::{Admission, CloseReason, Io, StreamEngine, StreamProtocol};

/// The `polling` crate the engine runs on: its `Poller` and `Event` appear in
/// [`Registration`]'s signature.
pub use polling;
