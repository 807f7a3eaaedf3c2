//! What an engine's threads and its handle share: the settings, the counters, the stop flag
//! and drain deadline, and the way outcomes come back to the thread that waits for them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::Sender;
use polling::Poller;

use crate::logs::{self, RateLimit};
use crate::metrics::TextWriter;
use crate::runtime::FrontEndReport;
use crate::types::Error;

/// Settings of a connection engine ([`StreamEngine`](super::StreamEngine),
/// [`DatagramEngine`](super::DatagramEngine)). Every setter documents its default.
///
/// # Examples
///
/// ```
/// use reactorium::engine::EngineConfig;
/// use std::time::Duration;
///
/// let config = EngineConfig::new("line")
///     .bind("127.0.0.1:0".parse()?)
///     .io_threads(2)
///     .max_connections(1_000)
///     .shutdown_timeout(Duration::from_secs(2));
/// # Ok::<(), anyhow::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub(crate) name: String,
    pub(crate) bind: SocketAddr,
    pub(crate) io_threads: usize,
    pub(crate) max_connections: usize,
    pub(crate) reject_slack: usize,
    pub(crate) backlog: u32,
    pub(crate) write_timeout: Duration,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) linger: Duration,
    pub(crate) drain_grace: Duration,
    pub(crate) nodelay: bool,
    pub(crate) send_queue: usize,
}

impl EngineConfig {
    /// The defaults documented on each setter. `name` names the I/O threads:
    /// `{name}-{port}-{index}` (Linux shows 15 bytes of a thread's name).
    pub fn new(name: impl Into<String>) -> EngineConfig {
        EngineConfig {
            name: name.into(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            io_threads: 2,
            max_connections: 10_000,
            reject_slack: 256,
            backlog: 1024,
            write_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(5),
            linger: Duration::from_secs(2),
            drain_grace: Duration::from_millis(100),
            nodelay: true,
            send_queue: 1024,
        }
    }

    /// The address to listen on (or, for datagrams, to bind). Default `127.0.0.1:0` (port
    /// 0: the OS picks one; see `local_addr`).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// I/O threads of a stream engine, fixed for its life. Default 2; 1..=64. A datagram
    /// engine has one.
    pub fn io_threads(mut self, n: usize) -> Self {
        self.io_threads = n;
        self
    }

    /// Connections served at once. From it to `max_connections + reject_slack` a new
    /// connection is admitted in reject mode ([`Admission::OverCap`](super::Admission)):
    /// the protocol answers it with a refusal and closes it. Past that, new connections
    /// are closed at once and counted refused. Default 10,000.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// See [`max_connections`](EngineConfig::max_connections). Default 256.
    pub fn reject_slack(mut self, n: usize) -> Self {
        self.reject_slack = n;
        self
    }

    /// The listen backlog (the kernel caps it at `net.core.somaxconn`). Default 1024.
    pub fn backlog(mut self, n: u32) -> Self {
        self.backlog = n;
        self
    }

    /// How long queued output may wait for the peer to take more of it, measured between
    /// two writes that make progress. Past it the connection closes
    /// ([`CloseReason::WriteTimeout`](super::CloseReason)). Default 30 s.
    pub fn write_timeout(mut self, d: Duration) -> Self {
        self.write_timeout = d;
        self
    }

    /// How long a graceful stop waits for work in flight before it abandons it. Default 5 s.
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.shutdown_timeout = d;
        self
    }

    /// How long a connection closed with [`Io::close_linger`](super::Io::close_linger)
    /// keeps reading and discarding what the peer still sends. Default 2 s.
    pub fn linger(mut self, d: Duration) -> Self {
        self.linger = d;
        self
    }

    /// At a graceful stop, how long a connection with nothing in flight and nothing
    /// received is kept open before it is closed as idle, in case the peer sent something
    /// as the stop began (a keep-alive client's next request, a new connection's first):
    /// what arrives within it is served (the protocol sees [`Io::draining`](super::Io::draining))
    /// and counted completed. Closing an idle connection at once races with such a unit on
    /// its way, and its sender sees the connection reset. A stop with idle connections
    /// takes at least this long (never past `shutdown_timeout`); zero closes them at once.
    /// Default 100 ms.
    pub fn drain_grace(mut self, d: Duration) -> Self {
        self.drain_grace = d;
        self
    }

    /// `TCP_NODELAY` on accepted connections. Default `true`.
    pub fn nodelay(mut self, on: bool) -> Self {
        self.nodelay = on;
        self
    }

    /// Datagrams a datagram engine queues when the socket does not take them at once; past
    /// it a reply is dropped and counted. Default 1024.
    pub fn send_queue(mut self, n: usize) -> Self {
        self.send_queue = n;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        let bad = |reason: &str| {
            Err(Error::InvalidConfig {
                reason: format!("{}: {reason}", self.name),
            })
        };
        if !(1..=64).contains(&self.io_threads) {
            return bad("io_threads must be in 1..=64");
        }
        if self.max_connections == 0 {
            return bad("max_connections must be at least 1");
        }
        if self.write_timeout.is_zero() {
            return bad("write_timeout must be above zero");
        }
        Ok(())
    }
}

/// A snapshot of a stream engine's counters (a datagram engine has
/// [`DatagramStats`](super::DatagramStats)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct EngineStats {
    /// Connections open now.
    pub open: usize,
    /// Connections accepted.
    pub accepted: u64,
    /// Connections closed.
    pub closed: u64,
    /// Connections closed at once past `max_connections + reject_slack`.
    pub refused: u64,
    /// Failed `accept` calls. Out of descriptors or memory, the thread pauses accepting for
    /// 100 ms.
    pub accept_errors: u64,
    /// Failed waits on a poller; each costs that thread a 10 ms pause.
    pub poll_errors: u64,
}

impl EngineStats {
    /// Writes the connection families `{prefix}_open_connections`,
    /// `{prefix}_connections_accepted_total`, `{prefix}_connections_refused_total`,
    /// `{prefix}_accept_errors_total` and `{prefix}_poll_errors_total`, each sample with
    /// `labels`: what a front-end on a stream engine reports about its sockets.
    ///
    /// # Examples
    ///
    /// ```
    /// use reactorium::engine::EngineStats;
    /// use reactorium::TextWriter;
    ///
    /// let mut out = String::new();
    /// EngineStats::default().write_metrics(&mut TextWriter::new(&mut out), "line", &[("listen", "x")]);
    /// assert!(out.contains("line_open_connections{listen=\"x\"} 0\n"));
    /// ```
    pub fn write_metrics(&self, w: &mut TextWriter<'_>, prefix: &str, labels: &[(&str, &str)]) {
        w.gauge(
            &format!("{prefix}_open_connections"),
            "Connections open now.",
            [(labels, self.open as f64)],
        );
        for (name, help, v) in [
            (
                "connections_accepted_total",
                "Connections accepted.",
                self.accepted,
            ),
            (
                "connections_refused_total",
                "Connections closed at once, past the connection cap and its slack.",
                self.refused,
            ),
            (
                "accept_errors_total",
                "Failed accept calls (each pauses accepting for 100 ms).",
                self.accept_errors,
            ),
            (
                "poll_errors_total",
                "Failed waits on an I/O thread's poller (each pauses that thread 10 ms).",
                self.poll_errors,
            ),
        ] {
            w.counter(&format!("{prefix}_{name}"), help, [(labels, v)]);
        }
    }
}

/// What an engine's graceful stop did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct EngineReport {
    /// Connections (exchanges) busy at the stop, or sent a unit within the drain grace,
    /// whose work finished before the deadline.
    pub completed: u64,
    /// Connections with nothing in flight and nothing of the peer's received (what had
    /// arrived is read first), closed when the drain grace ended, or earlier if the peer
    /// closed first.
    pub closed_idle: u64,
    /// Connections (exchanges) whose work did not finish: still in flight at the deadline,
    /// or whose peer went or whose write failed before it was answered.
    pub abandoned: u64,
    /// Every I/O thread was joined.
    pub joined: bool,
    /// How long the stop took.
    pub elapsed: Duration,
}

impl EngineReport {
    /// The report in the shape every front-end returns, for the front-end `name` of
    /// protocol `kind` (`closed` is `closed_idle`; `detail` is empty).
    pub fn to_front_end(&self, name: impl Into<String>, kind: &'static str) -> FrontEndReport {
        let mut r = FrontEndReport::new(name, kind);
        r.completed = self.completed;
        r.closed = self.closed_idle;
        r.abandoned = self.abandoned;
        r.joined = self.joined;
        r.elapsed = self.elapsed;
        r
    }
}

/// The counters, relaxed atomics: each is a count on its own, read only for reports.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) open: AtomicUsize,
    pub(crate) accepted: AtomicU64,
    pub(crate) closed: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) accept_errors: AtomicU64,
    pub(crate) poll_errors: AtomicU64,
    pub(crate) drain_completed: AtomicU64,
    pub(crate) drain_closed_idle: AtomicU64,
    pub(crate) drain_abandoned: AtomicU64,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// What the threads of one engine share with each other and with its handle.
pub(crate) struct Control {
    pub(crate) config: EngineConfig,
    pub(crate) counters: Counters,
    /// Connections each I/O thread holds (for balancing accepts).
    pub(crate) per_thread: Box<[AtomicUsize]>,
    pub(crate) stopping: AtomicBool,
    drain_deadline: Mutex<Option<Instant>>,
    /// Rate limits of the engine's events, which a flood of connections could repeat.
    pub(crate) limits: Limits,
}

/// One rate limit per kind of engine event (see `logs`).
#[derive(Default)]
pub(crate) struct Limits {
    pub(crate) refused: RateLimit,
    pub(crate) over_cap: RateLimit,
    pub(crate) accept_errors: RateLimit,
    pub(crate) poll_errors: RateLimit,
}

impl Control {
    pub(crate) fn new(config: EngineConfig, threads: usize) -> Control {
        Control {
            config,
            counters: Counters::default(),
            per_thread: (0..threads).map(|_| AtomicUsize::new(0)).collect(),
            stopping: AtomicBool::new(false),
            drain_deadline: Mutex::new(None),
            limits: Limits::default(),
        }
    }

    pub(crate) fn drain_deadline(&self) -> Option<Instant> {
        *self
            .drain_deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn stats(&self) -> EngineStats {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        EngineStats {
            open: c.open.load(Ordering::Relaxed),
            accepted: l(&c.accepted),
            closed: l(&c.closed),
            refused: l(&c.refused),
            accept_errors: l(&c.accept_errors),
            poll_errors: l(&c.poll_errors),
        }
    }
}

/// The threads of a running engine and the stop that ends them: shared by both engines'
/// handles.
pub(crate) struct Running {
    pub(crate) control: Arc<Control>,
    pub(crate) local_addr: SocketAddr,
    pub(crate) pollers: Vec<Arc<Poller>>,
    pub(crate) threads: Mutex<Vec<JoinHandle<()>>>,
    report: Mutex<Option<EngineReport>>,
}

impl Running {
    pub(crate) fn new(
        control: Arc<Control>,
        local_addr: SocketAddr,
        pollers: Vec<Arc<Poller>>,
    ) -> Running {
        tracing::info!(
            target: logs::ENGINE,
            front_end = %control.config.name,
            addr = %local_addr,
            "front-end listening"
        );
        Running {
            control,
            local_addr,
            pollers,
            threads: Mutex::new(Vec::new()),
            report: Mutex::new(None),
        }
    }

    /// Spawns `run` on a thread named `{name}-{port}-{index}`; on failure stops the threads
    /// already started.
    pub(crate) fn spawn(
        &self,
        index: usize,
        run: impl FnOnce() + Send + 'static,
    ) -> Result<(), Error> {
        let c = &self.control.config;
        let thread = format!("{}-{}-{index}", c.name, self.local_addr.port());
        // Every event on the thread (the engine's, its protocol's) names the front-end.
        let span = tracing::error_span!(
            target: logs::ENGINE,
            parent: None,
            "front_end",
            front_end = %c.name,
            port = self.local_addr.port()
        );
        let spawned = std::thread::Builder::new()
            .name(thread.clone())
            .spawn(move || span.in_scope(run));
        match spawned {
            Ok(h) => {
                self.threads
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(h);
                Ok(())
            }
            Err(source) => {
                self.stop();
                Err(Error::Spawn { thread, source })
            }
        }
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.control.stopping.load(Ordering::Acquire)
    }

    /// The graceful stop: store the deadline, set `stopping`, wake every poller, join the
    /// threads (each ends by the deadline; one second more covers a busy machine).
    pub(crate) fn stop(&self) -> EngineReport {
        let mut report = self.report.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = *report {
            return r;
        }
        let started = Instant::now();
        let s = &self.control;
        let deadline = started + s.config.shutdown_timeout;
        *s.drain_deadline.lock().unwrap_or_else(|e| e.into_inner()) = Some(deadline);
        s.stopping.store(true, Ordering::Release);
        for p in &self.pollers {
            let _ = p.notify();
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        let mut joined = true;
        for h in threads {
            while !h.is_finished() && Instant::now() < deadline + Duration::from_secs(1) {
                std::thread::sleep(Duration::from_millis(1));
            }
            if h.is_finished() {
                let _ = h.join();
            } else {
                joined = false;
            }
        }
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let c = &s.counters;
        let r = EngineReport {
            completed: l(&c.drain_completed),
            closed_idle: l(&c.drain_closed_idle),
            abandoned: l(&c.drain_abandoned),
            joined,
            elapsed: started.elapsed(),
        };
        tracing::info!(
            target: logs::ENGINE,
            front_end = %s.config.name,
            port = self.local_addr.port(),
            completed = r.completed,
            closed_idle = r.closed_idle,
            abandoned = r.abandoned,
            joined = r.joined,
            elapsed_ms = u64::try_from(r.elapsed.as_millis()).unwrap_or(u64::MAX),
            "front-end stopped"
        );
        *report = Some(r);
        r
    }
}

/// An outcome on its way back to the I/O thread that waits for it.
pub(crate) struct Completion<O> {
    pub(crate) key: usize,
    pub(crate) id: u64,
    pub(crate) token: u64,
    pub(crate) outcome: O,
}

/// Where completers send outcomes: a thread's channel and the poller to wake, and what to do
/// with an outcome once that thread has ended.
pub(crate) struct Inbound<O> {
    pub(crate) tx: Sender<Completion<O>>,
    pub(crate) poller: Arc<Poller>,
    pub(crate) unclaimed: Box<dyn Fn(O) + Send + Sync>,
}

/// Brings the outcome of work done elsewhere (a bus request's reply, a worker's result) back
/// to the I/O thread of the connection (or datagram exchange) that waits for it, from any
/// thread: the engine then calls the protocol's `on_outcome` there with this completer's
/// [`token`](Completer::token). Made by [`Io::completer`](super::Io::completer) and
/// [`DatagramIo::begin`](super::DatagramIo::begin).
///
/// Delivering is a channel send and a `Poller::notify` (which coalesces: one wake-up until
/// the thread next waits). An outcome for a connection that has closed meanwhile, or sent
/// after the engine stopped, goes to the protocol's `unclaimed`, so nothing is lost silently.
pub struct Completer<O: Send + 'static> {
    inbound: Arc<Inbound<O>>,
    key: usize,
    id: u64,
    token: u64,
}

impl<O: Send + 'static> std::fmt::Debug for Completer<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completer")
            .field("token", &self.token)
            .finish()
    }
}

impl<O: Send + 'static> Completer<O> {
    pub(crate) fn new(inbound: &Arc<Inbound<O>>, key: usize, id: u64, token: u64) -> Self {
        Completer {
            inbound: Arc::clone(inbound),
            key,
            id,
            token,
        }
    }

    /// The token the protocol's `on_outcome` will be given with the outcome: unique per
    /// connection (per engine, for datagram exchanges), so a protocol tells the outcome it
    /// waits for from a stale one.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// Sends `outcome` to the connection's I/O thread and wakes it. Never blocks.
    pub fn complete(self, outcome: O) {
        let c = Completion {
            key: self.key,
            id: self.id,
            token: self.token,
            outcome,
        };
        match self.inbound.tx.send(c) {
            Ok(()) => {
                let _ = self.inbound.poller.notify();
            }
            // The I/O thread has ended.
            Err(e) => (self.inbound.unclaimed)(e.into_inner().outcome),
        }
    }
}

/// `EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`: the OS is out of something that serving frees.
pub(crate) fn is_resource_exhaustion(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24 | 105 | 12))
}
