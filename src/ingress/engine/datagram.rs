//! The datagram side: a UDP socket on one I/O thread, each datagram handed to the protocol,
//! work in flight kept as exchanges with outcomes and deadlines, replies sent with
//! `send_to` (queued when the socket is full, dropped and counted past the queue's bound),
//! and the same graceful stop as streams.

use std::collections::{BTreeSet, VecDeque};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::Receiver;
use polling::{Event, Events, Poller};

use super::registration::Registration;
use super::shared::{bump, Completer, Completion, Control, Inbound, Running};
use super::{EngineConfig, EngineReport};
use crate::logs::{self, RateLimit};
use crate::types::Error;

/// The largest datagram taken whole (a larger one is cut to this).
const MAX_DATAGRAM: usize = 64 * 1024;
/// Datagrams received per readiness event before the thread looks at its other work.
const RECV_BATCH: usize = 64;
/// The poller key of the socket.
const SOCKET: usize = 0;

/// A protocol over UDP, on the [`DatagramEngine`]: what a datagram means and what is sent
/// back. Each datagram is handed to [`on_datagram`](DatagramProtocol::on_datagram) on the
/// engine's I/O thread; work that waits for an answer from elsewhere (a bus request) is an
/// *exchange*, begun with [`DatagramIo::begin`]: its state is kept by the engine until its
/// outcome comes ([`on_outcome`](DatagramProtocol::on_outcome)) or its deadline passes
/// ([`on_deadline`](DatagramProtocol::on_deadline)), each of which takes it back by value.
///
/// At a graceful stop the engine stops receiving, lets the exchanges in flight finish (each
/// counted completed) until the stop's deadline, then hands the rest to
/// [`on_abandon`](DatagramProtocol::on_abandon) (counted abandoned); queued replies are sent
/// first.
///
/// # Examples
///
/// An echo server:
///
/// ```
/// use reactorium::engine::{DatagramEngine, DatagramIo, DatagramProtocol, EngineConfig};
/// use std::net::{SocketAddr, UdpSocket};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// struct Echo;
///
/// impl DatagramProtocol for Echo {
///     type Exchange = ();
///     type Outcome = ();
///     fn on_datagram(&self, from: SocketAddr, data: &[u8], io: &mut DatagramIo<'_, Self>) {
///         io.send_to(from, data);
///     }
///     fn on_outcome(&self, _exchange: (), _outcome: (), _io: &mut DatagramIo<'_, Self>) {}
/// }
///
/// let engine = DatagramEngine::start(EngineConfig::new("echo"), Arc::new(Echo))?;
/// let client = UdpSocket::bind("127.0.0.1:0")?;
/// client.set_read_timeout(Some(Duration::from_secs(5)))?;
/// client.send_to(b"ping", engine.local_addr())?;
/// let mut got = [0u8; 16];
/// let (n, _) = client.recv_from(&mut got)?;
/// assert_eq!(&got[..n], b"ping");
/// assert!(engine.stop().joined);
/// # Ok::<(), anyhow::Error>(())
/// ```
pub trait DatagramProtocol: Send + Sync + Sized + 'static {
    /// The state of one exchange: what answering it later needs (the peer's address, a
    /// request id).
    type Exchange: Send;
    /// What comes back through a [`Completer`].
    type Outcome: Send + 'static;

    /// A datagram came from `from` (cut to 64 KiB).
    fn on_datagram(&self, from: SocketAddr, data: &[u8], io: &mut DatagramIo<'_, Self>);

    /// The outcome of `exchange` came.
    fn on_outcome(
        &self,
        exchange: Self::Exchange,
        outcome: Self::Outcome,
        io: &mut DatagramIo<'_, Self>,
    );

    /// The deadline of `exchange` passed first; a later outcome goes to `unclaimed`.
    /// Default: dropped.
    fn on_deadline(&self, exchange: Self::Exchange, io: &mut DatagramIo<'_, Self>) {
        let _ = (exchange, io);
    }

    /// A graceful stop's deadline passed with `exchange` in flight. Default: dropped.
    fn on_abandon(&self, exchange: Self::Exchange) {
        let _ = exchange;
    }

    /// An outcome nobody will read (its exchange ended first, or the engine stopped).
    /// Default: dropped.
    fn unclaimed(&self, outcome: Self::Outcome) {
        let _ = outcome;
    }
}

/// What a [`DatagramProtocol`]'s callback may do: send datagrams, begin exchanges.
pub struct DatagramIo<'a, P: DatagramProtocol> {
    x: &'a mut Exchanges<P::Exchange>,
    out: &'a mut Outbox,
    now: Instant,
    draining: bool,
    inbound: &'a Arc<Inbound<P::Outcome>>,
    counters: &'a DatagramCounters,
}

impl<P: DatagramProtocol> std::fmt::Debug for DatagramIo<'_, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatagramIo")
            .field("in_flight", &self.x.live)
            .field("queued", &self.out.queue.len())
            .finish()
    }
}

impl<P: DatagramProtocol> DatagramIo<'_, P> {
    /// Sends `data` to `to`: at once when the socket takes it, else queued (in order) up to
    /// the engine's `send_queue`. `false` when it was dropped (queue full, or the send
    /// failed), counted in [`DatagramStats`].
    pub fn send_to(&mut self, to: SocketAddr, data: &[u8]) -> bool {
        self.out.send(to, data, self.counters)
    }

    /// Begins an exchange: the engine keeps `exchange` until a [`Completer`] brings its
    /// outcome ([`DatagramProtocol::on_outcome`]) or `deadline` passes
    /// ([`DatagramProtocol::on_deadline`]).
    pub fn begin(&mut self, exchange: P::Exchange, deadline: Instant) -> Completer<P::Outcome> {
        let (slot, id) = self.x.insert(exchange, deadline);
        Completer::new(self.inbound, slot, id, id)
    }

    /// Exchanges in flight.
    pub fn in_flight(&self) -> usize {
        self.x.live
    }

    /// The time, read once per turn of the loop.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// A graceful stop has begun.
    pub fn draining(&self) -> bool {
        self.draining
    }
}

/// A snapshot of a datagram engine's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct DatagramStats {
    /// Datagrams received.
    pub received: u64,
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams dropped: the send queue was full.
    pub send_dropped: u64,
    /// Receives and sends that failed.
    pub errors: u64,
    /// Exchanges in flight now.
    pub in_flight: usize,
    /// Exchanges whose deadline passed before their outcome.
    pub timeouts: u64,
    /// Failed waits on the poller; each costs the thread a 10 ms pause.
    pub poll_errors: u64,
}

#[derive(Default)]
struct DatagramCounters {
    received: AtomicU64,
    sent: AtomicU64,
    send_dropped: AtomicU64,
    errors: AtomicU64,
    in_flight: AtomicU64,
    timeouts: AtomicU64,
    /// Rate limit of the "send or receive failed" event.
    error_events: RateLimit,
}

impl DatagramCounters {
    /// A failed send or receive: counted, and reported (`warn`, rate-limited).
    fn error(&self, e: &io::Error, op: &'static str) {
        bump(&self.errors);
        logs::limited!(
            self.error_events,
            tracing::Level::WARN,
            target: logs::ENGINE,
            op,
            error = %e,
            "datagram I/O failed"
        );
    }
}

/// The exchanges in flight: a slab, and a timer set of their deadlines.
struct Exchanges<E> {
    slots: Vec<Option<Pending<E>>>,
    free: Vec<usize>,
    timers: BTreeSet<(Instant, usize, u64)>,
    next_id: u64,
    live: usize,
}

struct Pending<E> {
    exchange: E,
    id: u64,
    deadline: Instant,
    /// In flight when the drain began.
    owed: bool,
}

impl<E> Exchanges<E> {
    fn insert(&mut self, exchange: E, deadline: Instant) -> (usize, u64) {
        self.next_id += 1;
        let id = self.next_id;
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        self.slots[slot] = Some(Pending {
            exchange,
            id,
            deadline,
            owed: false,
        });
        self.timers.insert((deadline, slot, id));
        self.live += 1;
        (slot, id)
    }

    fn take(&mut self, slot: usize, id: u64) -> Option<Pending<E>> {
        if !self.slots.get(slot)?.as_ref().is_some_and(|p| p.id == id) {
            return None;
        }
        let p = self.slots[slot].take()?;
        self.timers.remove(&(p.deadline, slot, id));
        self.free.push(slot);
        self.live -= 1;
        Some(p)
    }
}

/// Replies waiting for the socket.
struct Outbox {
    socket: Registration<UdpSocket>,
    queue: VecDeque<(SocketAddr, Vec<u8>)>,
    cap: usize,
    writing: bool,
}

impl Outbox {
    fn send(&mut self, to: SocketAddr, data: &[u8], counters: &DatagramCounters) -> bool {
        if self.queue.is_empty() {
            match self.socket.source().send_to(data, to) {
                Ok(_) => {
                    bump(&counters.sent);
                    return true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    counters.error(&e, "send");
                    return false;
                }
            }
        }
        if self.queue.len() >= self.cap {
            bump(&counters.send_dropped);
            return false;
        }
        self.queue.push_back((to, data.to_vec()));
        true
    }

    /// Sends what the socket takes of the queue.
    fn flush(&mut self, counters: &DatagramCounters) {
        while let Some((to, data)) = self.queue.front() {
            match self.socket.source().send_to(data, *to) {
                Ok(_) => bump(&counters.sent),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => counters.error(&e, "send"),
            }
            self.queue.pop_front();
        }
    }
}

struct DatagramThread<P: DatagramProtocol> {
    control: Arc<Control>,
    counters: Arc<DatagramCounters>,
    protocol: Arc<P>,
    poller: Arc<Poller>,
    inbound: Arc<Inbound<P::Outcome>>,
    rx: Receiver<Completion<P::Outcome>>,
    x: Exchanges<P::Exchange>,
    out: Outbox,
    now: Instant,
    draining: Option<Instant>,
    scratch: Box<[u8]>,
}

/// Runs `$body` with a `DatagramIo` named `$io` on the thread `$t`.
macro_rules! with_io {
    ($t:expr, |$io:ident| $body:expr) => {{
        let $io = &mut DatagramIo::<P> {
            x: &mut $t.x,
            out: &mut $t.out,
            now: $t.now,
            draining: $t.draining.is_some(),
            inbound: &$t.inbound,
            counters: &$t.counters,
        };
        $body;
    }};
}

impl<P: DatagramProtocol> DatagramThread<P> {
    fn run(mut self) {
        let mut events = Events::new();
        loop {
            self.now = Instant::now();
            self.drain_if_stopping();
            if let Some(deadline) = self.draining {
                if self.x.live == 0 && self.out.queue.is_empty() {
                    break;
                }
                if self.now >= deadline {
                    self.abandon_all();
                    break;
                }
            }
            let next = [self.x.timers.first().map(|t| t.0), self.draining]
                .into_iter()
                .flatten()
                .min();
            events.clear();
            let timeout = next.map(|t| t.saturating_duration_since(self.now));
            if self.poller.wait(&mut events, timeout).is_err() {
                bump(&self.control.counters.poll_errors);
                logs::limited!(
                    self.control.limits.poll_errors,
                    tracing::Level::WARN,
                    target: logs::ENGINE,
                    "poll failed"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            self.now = Instant::now();
            // A stop asked while the thread waited (it wakes the poller): the drain begins
            // before anything else is handled, so an outcome that comes with the wake-up is
            // counted as the drain's.
            self.drain_if_stopping();
            for ev in events.iter() {
                if ev.writable {
                    self.out.flush(&self.counters);
                }
                if ev.readable && self.draining.is_none() {
                    self.receive();
                }
            }
            self.fire_timers();
            self.drain_if_stopping();
            while let Ok(c) = self.rx.try_recv() {
                self.complete(c);
            }
            self.update_interest();
        }
        while let Ok(c) = self.rx.try_recv() {
            self.protocol.unclaimed(c.outcome);
        }
        self.counters.in_flight.store(0, Ordering::Relaxed);
    }

    fn receive(&mut self) {
        for _ in 0..RECV_BATCH {
            match self.out.socket.source().recv_from(&mut self.scratch) {
                Ok((n, from)) => {
                    bump(&self.counters.received);
                    let data = &self.scratch[..n];
                    let protocol = &self.protocol;
                    let io = &mut DatagramIo::<P> {
                        x: &mut self.x,
                        out: &mut self.out,
                        now: self.now,
                        draining: false,
                        inbound: &self.inbound,
                        counters: &self.counters,
                    };
                    protocol.on_datagram(from, data, io);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // An ICMP error of an earlier send (port unreachable) and the like.
                Err(e) => self.counters.error(&e, "receive"),
            }
        }
        self.publish_in_flight();
    }

    fn fire_timers(&mut self) {
        while let Some(&(at, slot, id)) = self.x.timers.first() {
            if at > self.now {
                break;
            }
            let Some(p) = self.x.take(slot, id) else {
                self.x.timers.pop_first();
                continue;
            };
            bump(&self.counters.timeouts);
            self.finished(p.owed);
            with_io!(self, |io| self.protocol.on_deadline(p.exchange, io));
        }
        self.publish_in_flight();
    }

    fn complete(&mut self, c: Completion<P::Outcome>) {
        let Some(p) = self.x.take(c.key, c.id) else {
            self.protocol.unclaimed(c.outcome);
            return;
        };
        self.finished(p.owed);
        with_io!(self, |io| self
            .protocol
            .on_outcome(p.exchange, c.outcome, io));
        self.publish_in_flight();
    }

    fn finished(&self, owed: bool) {
        if owed {
            bump(&self.control.counters.drain_completed);
        }
    }

    fn publish_in_flight(&self) {
        self.counters
            .in_flight
            .store(self.x.live as u64, Ordering::Relaxed);
    }

    fn update_interest(&mut self) {
        let write = !self.out.queue.is_empty();
        if write != self.out.writing {
            self.out.writing = write;
            let read = self.draining.is_none();
            let _ = self.out.socket.modify(Event::new(SOCKET, read, write));
        }
    }

    fn drain_if_stopping(&mut self) {
        if self.draining.is_none() && self.control.stopping.load(Ordering::Acquire) {
            self.begin_drain();
        }
    }

    fn begin_drain(&mut self) {
        self.draining = Some(self.control.drain_deadline().unwrap_or(self.now));
        for p in self.x.slots.iter_mut().flatten() {
            p.owed = true;
        }
        // Stop receiving; keep sending what is queued.
        let write = !self.out.queue.is_empty();
        self.out.writing = write;
        let _ = self.out.socket.modify(Event::new(SOCKET, false, write));
    }

    fn abandon_all(&mut self) {
        for slot in 0..self.x.slots.len() {
            let Some(id) = self.x.slots[slot].as_ref().map(|p| p.id) else {
                continue;
            };
            if let Some(p) = self.x.take(slot, id) {
                bump(&self.control.counters.drain_abandoned);
                self.protocol.on_abandon(p.exchange);
            }
        }
        self.publish_in_flight();
    }
}

/// A running datagram engine: a UDP socket served by one I/O thread with protocol `P`.
/// Cheap to clone (a handle).
///
/// # Shutdown
///
/// [`stop`](DatagramEngine::stop) stops receiving, lets the exchanges in flight finish and
/// the queued replies go out up to [`EngineConfig::shutdown_timeout`], abandons the rest,
/// and joins the thread. The socket closes with the thread.
pub struct DatagramEngine<P: DatagramProtocol> {
    inner: Arc<DatagramInner<P>>,
}

struct DatagramInner<P> {
    running: Running,
    counters: Arc<DatagramCounters>,
    protocol: Arc<P>,
}

impl<P: DatagramProtocol> Clone for DatagramEngine<P> {
    fn clone(&self) -> Self {
        DatagramEngine {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<P: DatagramProtocol> std::fmt::Debug for DatagramEngine<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatagramEngine")
            .field("local_addr", &self.inner.running.local_addr)
            .field("stats", &self.stats())
            .finish()
    }
}

impl<P: DatagramProtocol> DatagramEngine<P> {
    /// Binds a UDP socket on `config`'s address and starts its I/O thread, named
    /// `{name}-{port}-0`. Of `config`, `bind`, `shutdown_timeout` and `send_queue` apply.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the address cannot be bound or the poller cannot be made;
    /// [`Error::Spawn`] when the thread cannot be started.
    pub fn start(config: EngineConfig, protocol: Arc<P>) -> Result<DatagramEngine<P>, Error> {
        let io_err = |context: String| move |source| Error::Io { context, source };
        let socket =
            UdpSocket::bind(config.bind).map_err(io_err(format!("bind {}", config.bind)))?;
        socket
            .set_nonblocking(true)
            .map_err(io_err("make the socket non-blocking".into()))?;
        let local_addr = socket
            .local_addr()
            .map_err(io_err("read the socket's address".into()))?;
        let poller = Arc::new(Poller::new().map_err(io_err("create a poller".into()))?);
        let socket = Registration::new(Arc::clone(&poller), socket, Event::readable(SOCKET))
            .map_err(io_err("register the socket".into()))?;
        let (tx, rx) = crossbeam::channel::unbounded();
        let p = Arc::clone(&protocol);
        let inbound = Arc::new(Inbound {
            tx,
            poller: Arc::clone(&poller),
            unclaimed: Box::new(move |o| p.unclaimed(o)),
        });
        let cap = config.send_queue;
        let control = Arc::new(Control::new(config, 1));
        let counters = Arc::new(DatagramCounters::default());
        let t = DatagramThread {
            control: Arc::clone(&control),
            counters: Arc::clone(&counters),
            protocol: Arc::clone(&protocol),
            poller: Arc::clone(&poller),
            inbound,
            rx,
            x: Exchanges {
                slots: Vec::new(),
                free: Vec::new(),
                timers: BTreeSet::new(),
                next_id: 0,
                live: 0,
            },
            out: Outbox {
                socket,
                queue: VecDeque::new(),
                cap,
                writing: false,
            },
            now: Instant::now(),
            draining: None,
            scratch: vec![0; MAX_DATAGRAM].into_boxed_slice(),
        };
        let engine = DatagramEngine {
            inner: Arc::new(DatagramInner {
                running: Running::new(control, local_addr, vec![poller]),
                counters,
                protocol,
            }),
        };
        engine.inner.running.spawn(0, move || t.run())?;
        Ok(engine)
    }

    /// The address the socket is bound to (with the port the OS chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.running.local_addr
    }

    /// The protocol it serves.
    pub fn protocol(&self) -> &Arc<P> {
        &self.inner.protocol
    }

    /// A snapshot of its counters.
    pub fn stats(&self) -> DatagramStats {
        let c = &self.inner.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DatagramStats {
            received: l(&c.received),
            sent: l(&c.sent),
            send_dropped: l(&c.send_dropped),
            errors: l(&c.errors),
            in_flight: l(&c.in_flight) as usize,
            timeouts: l(&c.timeouts),
            poll_errors: l(&self.inner.running.control.counters.poll_errors),
        }
    }

    /// [`stop`](DatagramEngine::stop) has been called.
    pub fn is_stopped(&self) -> bool {
        self.inner.running.is_stopped()
    }

    /// Stops it gracefully; see `# Shutdown` on [`DatagramEngine`]. Blocks until the thread
    /// has ended (at most the shutdown timeout and one second more). A call after the first
    /// returns the first call's report (`closed_idle` is always 0).
    pub fn stop(&self) -> EngineReport {
        self.inner.running.stop()
    }
}
