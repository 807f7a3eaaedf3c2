//! The stream side: the protocol trait a TCP protocol implements, the [`Io`] its callbacks
//! are given, and the [`StreamEngine`] handle.

mod thread;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use polling::Poller;

use super::shared::{Completer, Control, Inbound, Running};
use super::{EngineConfig, EngineReport, EngineStats};
use crate::types::Error;

/// A protocol over TCP, on the [`StreamEngine`]: what a connection's bytes mean and what is
/// answered. The engine owns the sockets, the threads, the buffers, the deadlines' timer set
/// and the graceful stop; the protocol owns a connection's state (`Conn`) and is called on
/// the connection's I/O thread at each step of its life. Calls are static (the engine is
/// generic over the protocol), one connection at a time per thread.
///
/// A connection's life: [`open`](StreamProtocol::open) when accepted; then
/// [`on_input`](StreamProtocol::on_input) each time bytes arrive (and again after its
/// output is written out if input is still buffered: pipelined requests);
/// [`on_outcome`](StreamProtocol::on_outcome) when work it started elsewhere comes back
/// through a [`Completer`]; [`on_deadline`](StreamProtocol::on_deadline) when the deadline
/// it set passes; [`on_written`](StreamProtocol::on_written) when every byte it queued is
/// out; [`on_close`](StreamProtocol::on_close) last, whatever the reason. What a callback
/// queues is written when it returns; what it asks (close, a deadline) is done then. When
/// the peer ends its stream, a connection with nothing in flight, or whose work
/// [`wants_input`](StreamProtocol::wants_input), is closed; other work goes on and its
/// answer is written.
///
/// At a graceful stop the engine first reads what has arrived on each connection and hands
/// it to the protocol, then judges: a connection is *busy* while it has work
/// [`in_flight`](StreamProtocol::in_flight), input not consumed yet (a unit partly received,
/// or sent ahead) or output not written yet. Busy ones go on until they are not (then they
/// are closed and counted completed) or the stop's deadline passes (closed, counted
/// abandoned). The others are idle: kept open for the engine's
/// [`drain_grace`](EngineConfig::drain_grace), in case the peer's next unit is on its way
/// (one that comes is served, and counted completed), then closed and counted closed idle.
/// [`Io::draining`] tells a protocol the stop has begun (HTTP then answers with
/// `Connection: close`).
///
/// # Examples
///
/// An echo server: every byte that comes is sent back.
///
/// ```
/// use reactorium::engine::{Admission, EngineConfig, Io, StreamEngine, StreamProtocol};
/// use std::io::{Read, Write};
/// use std::sync::Arc;
///
/// struct Echo;
///
/// impl StreamProtocol for Echo {
///     type Conn = ();
///     type Outcome = ();
///     fn open(&self, _io: &mut Io<'_, Self>, _admission: Admission) {}
///     fn on_input(&self, _conn: &mut (), io: &mut Io<'_, Self>) {
///         let input = std::mem::take(io.input());
///         io.write(&input);
///     }
///     fn on_outcome(&self, _conn: &mut (), _token: u64, _outcome: (), _io: &mut Io<'_, Self>) {}
///     fn in_flight(&self, _conn: &()) -> bool { false }
/// }
///
/// let engine = StreamEngine::start(EngineConfig::new("echo"), Arc::new(Echo))?;
/// let mut client = std::net::TcpStream::connect(engine.local_addr())?;
/// client.write_all(b"ping")?;
/// let mut got = [0u8; 4];
/// client.read_exact(&mut got)?;
/// assert_eq!(&got, b"ping");
/// let report = engine.stop();
/// assert_eq!((report.closed_idle, report.joined), (1, true));
/// # Ok::<(), anyhow::Error>(())
/// ```
pub trait StreamProtocol: Send + Sync + Sized + 'static {
    /// A connection's state; it lives on the connection's I/O thread alone.
    type Conn: Send;
    /// What comes back through a [`Completer`] (a bus request's outcome, say).
    type Outcome: Send + 'static;

    /// A connection was accepted; returns its state. `admission` is
    /// [`OverCap`](Admission::OverCap) past the engine's `max_connections`: answer it with a
    /// refusal the client can read, and close it. Set a first deadline here (a client that
    /// sends nothing) with [`Io::set_deadline`].
    fn open(&self, io: &mut Io<'_, Self>, admission: Admission) -> Self::Conn;

    /// Bytes arrived: [`Io::input`] holds every byte not consumed yet. Consume what is used
    /// (drain it from the front), queue output, start work, set the next deadline. Also
    /// called when the connection's output has been written out and input is still
    /// buffered, so requests the client pipelined are taken in turn.
    fn on_input(&self, conn: &mut Self::Conn, io: &mut Io<'_, Self>);

    /// An outcome sent with a [`Completer`] of this connection, with that completer's
    /// `token` (compare it with the token you wait for: an outcome of work this connection
    /// no longer waits for may still come).
    fn on_outcome(
        &self,
        conn: &mut Self::Conn,
        token: u64,
        outcome: Self::Outcome,
        io: &mut Io<'_, Self>,
    );

    /// Whether the connection has work in flight: a request read (or partly read, if the
    /// protocol wants it finished) and not yet answered. Asked when a graceful stop begins,
    /// after each callback during it, and at the peer's end of stream. Output not yet
    /// written and input not yet consumed keep a connection in a graceful stop whatever
    /// this answers (see [`StreamEngine`]'s `# Shutdown`).
    fn in_flight(&self, conn: &Self::Conn) -> bool;

    /// Whether the work in flight cannot go on without more input from the peer: a unit
    /// begun and not yet whole (a request whose body has not all come). When the peer ends
    /// its stream, no more will come, so the engine closes such a connection at once
    /// ([`CloseReason::PeerClosed`]) instead of holding it until a deadline; work in flight
    /// that needs nothing more (a request whose answer is awaited) goes on, and its answer
    /// is written (a half-close is not a hang-up). Default: `false`.
    fn wants_input(&self, conn: &Self::Conn) -> bool {
        let _ = conn;
        false
    }

    /// The deadline set with [`Io::set_deadline`] has passed (it is cleared first). Default:
    /// close the connection at once.
    fn on_deadline(&self, conn: &mut Self::Conn, io: &mut Io<'_, Self>) {
        let _ = conn;
        io.close_now();
    }

    /// Every byte queued so far has been written. Default: nothing.
    fn on_written(&self, conn: &mut Self::Conn, io: &mut Io<'_, Self>) {
        let _ = (conn, io);
    }

    /// The most bytes the connection may hold unconsumed in [`Io::input`]: reading stops
    /// there until some are consumed. Default 64 KiB.
    fn read_limit(&self, conn: &Self::Conn) -> usize {
        let _ = conn;
        64 * 1024
    }

    /// The connection is closed (its socket closes after this returns), for `reason`.
    /// Default: nothing.
    fn on_close(&self, conn: Self::Conn, reason: CloseReason) {
        let _ = (conn, reason);
    }

    /// An outcome nobody will read: its connection closed before it came, or the engine had
    /// stopped. Default: dropped.
    fn unclaimed(&self, outcome: Self::Outcome) {
        let _ = outcome;
    }
}

/// How a connection was admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Below the engine's `max_connections`: serve it.
    Normal,
    /// Past `max_connections` (within its slack): answer it with a refusal and close it.
    OverCap,
}

/// Why a connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The protocol asked ([`Io::close`], [`Io::close_now`]), or its lingering ended.
    Done,
    /// The peer closed its side with nothing in flight (or with work that
    /// [`wants_input`](StreamProtocol::wants_input)), or reset the connection.
    PeerClosed,
    /// A read or write failed.
    Error,
    /// Queued output was not taken within the engine's `write_timeout`.
    WriteTimeout,
    /// A graceful stop closed it: nothing was in flight, or its work finished.
    Drained,
    /// A graceful stop's deadline passed with its work still in flight.
    Abandoned,
}

/// What a protocol's callback may do to its connection: read its input, queue output, set
/// its deadline, ask for outcomes, close it. Given by the engine to every
/// [`StreamProtocol`] callback; it borrows the connection's buffers, so nothing is copied.
pub struct Io<'a, P: StreamProtocol> {
    pub(crate) c: &'a mut thread::ConnIo,
    pub(crate) t: &'a thread::ThreadCx<P>,
    pub(crate) key: usize,
}

impl<P: StreamProtocol> std::fmt::Debug for Io<'_, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Io")
            .field("input", &self.c.rbuf.len())
            .field("output", &self.c.wbuf.len().saturating_sub(self.c.wpos))
            .finish()
    }
}

impl<P: StreamProtocol> Io<'_, P> {
    /// The bytes received and not consumed yet. Drain what you use from the front.
    pub fn input(&mut self) -> &mut Vec<u8> {
        &mut self.c.rbuf
    }

    /// The output queue, to append to (`serde_json::to_writer(io.output(), ..)`). Append
    /// only: what is in it may be partly on the wire already. Written when the callback
    /// returns.
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.c.wbuf
    }

    /// Queues `bytes`.
    pub fn write(&mut self, bytes: &[u8]) {
        self.c.wbuf.extend_from_slice(bytes);
    }

    /// Output queued and not yet written.
    pub fn pending_output(&self) -> usize {
        self.c.wbuf.len().saturating_sub(self.c.wpos)
    }

    /// Sets when [`on_deadline`](StreamProtocol::on_deadline) is called (`None`: never).
    /// One deadline per connection; setting one replaces the last. Cheap: most changes push
    /// the deadline later and cost nothing until it comes up.
    pub fn set_deadline(&mut self, at: Option<Instant>) {
        self.c.deadline = at;
    }

    /// The deadline set.
    pub fn deadline(&self) -> Option<Instant> {
        self.c.deadline
    }

    /// The time, read once per turn of the I/O thread's loop (after its wait).
    pub fn now(&self) -> Instant {
        self.t.now
    }

    /// A graceful stop has begun.
    pub fn draining(&self) -> bool {
        self.t.draining
    }

    /// The peer has closed its side: no more input will come. (A connection with nothing in
    /// flight is then closed by the engine.)
    pub fn peer_closed(&self) -> bool {
        self.c.peer_eof
    }

    /// Closes the connection once its queued output is written.
    pub fn close(&mut self) {
        self.c.close = Some(Closing::AfterOutput);
    }

    /// Closes the connection once its queued output is written, lingering: the write side
    /// is shut (the peer sees the end of the output), and what the peer still sends is read
    /// and discarded until it closes too, for at most the engine's `linger`. Use it after
    /// refusing input the peer may still be sending: closing a socket with unread input
    /// makes the kernel send a reset, and the peer may then never read the refusal.
    pub fn close_linger(&mut self) {
        self.c.close = Some(Closing::Linger);
    }

    /// Closes the connection when the callback returns, dropping queued output.
    pub fn close_now(&mut self) {
        self.c.close = Some(Closing::Now);
    }

    /// A closing was asked.
    pub fn closing(&self) -> bool {
        self.c.close.is_some()
    }

    /// A [`Completer`] that brings an outcome back to this connection, with a new token
    /// ([`Completer::token`]). Cheap: a reference count.
    pub fn completer(&mut self) -> Completer<P::Outcome> {
        self.c.next_token += 1;
        Completer::new(&self.t.inbound, self.key, self.c.id, self.c.next_token)
    }

    /// The connection's socket (its peer's address, its options). Reading or writing it
    /// directly bypasses the engine's buffers: use [`input`](Io::input) and
    /// [`write`](Io::write).
    pub fn stream(&self) -> &TcpStream {
        self.c.stream()
    }
}

/// How a connection ends, once asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Closing {
    AfterOutput,
    Linger,
    Now,
}

/// A running stream engine: a TCP listener and `io_threads` I/O threads serving connections
/// with protocol `P`. Cheap to clone (a handle).
///
/// # Shutdown
///
/// [`stop`](StreamEngine::stop) stops accepting at once: connections the kernel already
/// holds are taken, then the listener stops listening (new connections are refused). Each
/// connection's arrived bytes are read and handed to the protocol; busy connections (work
/// [`in_flight`](StreamProtocol::in_flight), input not consumed, output not written) finish
/// up to [`EngineConfig::shutdown_timeout`]; idle ones are closed after
/// [`EngineConfig::drain_grace`] unless a unit arrives within it (then they are served).
/// What is left at the deadline is closed (counted abandoned), and the threads are joined.
/// Every connection open during the stop lands in one of the [`EngineReport`]'s three
/// counts. Dropping the handles does not stop it.
pub struct StreamEngine<P: StreamProtocol> {
    inner: Arc<Inner<P>>,
}

struct Inner<P> {
    running: Running,
    protocol: Arc<P>,
}

impl<P: StreamProtocol> Clone for StreamEngine<P> {
    fn clone(&self) -> Self {
        StreamEngine {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<P: StreamProtocol> std::fmt::Debug for StreamEngine<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamEngine")
            .field("name", &self.inner.running.control.config.name)
            .field("local_addr", &self.inner.running.local_addr)
            .field("stats", &self.stats())
            .finish()
    }
}

/// A non-blocking listener on `addr` with `backlog`, with `SO_REUSEADDR` as the standard
/// library sets it (a restarted server can bind while old connections sit in TIME_WAIT).
fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

impl<P: StreamProtocol> StreamEngine<P> {
    /// Binds `config`'s address and starts the I/O threads, named
    /// `{name}-{port}-{index}`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a setting out of range; [`Error::Io`] when the address
    /// cannot be bound or a poller cannot be made; [`Error::Spawn`] when a thread cannot be
    /// started (those already started are stopped).
    pub fn start(config: EngineConfig, protocol: Arc<P>) -> Result<StreamEngine<P>, Error> {
        config.validate()?;
        let io_err = |context: String| move |source| Error::Io { context, source };
        let listener =
            bind(config.bind, config.backlog).map_err(io_err(format!("bind {}", config.bind)))?;
        let local_addr = listener
            .local_addr()
            .map_err(io_err("read the listener's address".into()))?;
        // Owned by the I/O threads alone (each registration holds it): the socket closes,
        // refusing new connections, once every thread has begun its drain, however long
        // the application keeps a handle.
        let listener = Arc::new(listener);
        let threads = config.io_threads;
        let control = Arc::new(Control::new(config, threads));
        let mut pollers = Vec::new();
        let mut loops = Vec::new();
        for index in 0..threads {
            let poller = Arc::new(Poller::new().map_err(io_err("create a poller".into()))?);
            let (tx, rx) = crossbeam::channel::unbounded();
            let p = Arc::clone(&protocol);
            let inbound = Arc::new(Inbound {
                tx,
                poller: Arc::clone(&poller),
                unclaimed: Box::new(move |o| p.unclaimed(o)),
            });
            let t = thread::IoThread::new(
                index,
                Arc::clone(&control),
                Arc::clone(&protocol),
                Arc::clone(&listener),
                Arc::clone(&poller),
                inbound,
                rx,
            )
            .map_err(io_err("register the listener".into()))?;
            pollers.push(poller);
            loops.push(t);
        }
        let engine = StreamEngine {
            inner: Arc::new(Inner {
                running: Running::new(control, local_addr, pollers),
                protocol,
            }),
        };
        for (i, t) in loops.into_iter().enumerate() {
            engine.inner.running.spawn(i, move || t.run())?;
        }
        Ok(engine)
    }

    /// The address it listens on (with the port the OS chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.running.local_addr
    }

    /// The protocol it serves.
    pub fn protocol(&self) -> &Arc<P> {
        &self.inner.protocol
    }

    /// The settings it was started with.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.running.control.config
    }

    /// A snapshot of its counters.
    pub fn stats(&self) -> EngineStats {
        self.inner.running.control.stats()
    }

    /// [`stop`](StreamEngine::stop) has been called.
    pub fn is_stopped(&self) -> bool {
        self.inner.running.is_stopped()
    }

    /// Stops it gracefully; see `# Shutdown` on [`StreamEngine`]. Blocks until the threads
    /// have ended (at most the shutdown timeout and one second more). A call after the first
    /// returns the first call's report.
    pub fn stop(&self) -> EngineReport {
        self.inner.running.stop()
    }
}
