//! Front-ends as plug-ins: the [`FrontEnd`] trait any protocol implements, the list of those
//! attached to a runtime (stopped first when it stops), the one report shape they return,
//! and the read-only [`AdminHandle`] they are lent. The runtime names no protocol: HTTP, a
//! console or an SNMP agent live in `ingress`, above this module, and attach themselves.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::registry::{ComponentState, Registry};
use super::stats::{self, RuntimeStats};
use super::{Runtime, State};
use crate::bus::Bus;
use crate::metrics::TextWriter;
use crate::types::Error;
use crate::worker::WorkerPool;

/// A way into the runtime from outside the process (HTTP, a line console, an SNMP agent, a
/// bridge): attached to a [`Runtime`] with [`Runtime::attach`], it contributes its metric
/// families to the runtime's metrics and is stopped first when the runtime stops, before any
/// component, so the requests it has in flight are answered while every component still
/// runs.
///
/// The trait is what the runtime needs of a front-end, nothing more: how it reads the wire
/// is its own business (the connection engine does the socket work for the built-in ones
/// and for yours). A front-end that serves admin
/// endpoints reads the runtime through an [`AdminHandle`] ([`Runtime::admin`]), which does
/// not keep the runtime alive.
///
/// The threading contract: every method may be called from any thread, at any time,
/// concurrently with the front-end's own threads.
///
/// # Examples
///
/// A front-end that serves nothing, to show the shape (see `examples/line_protocol.rs` for
/// one on the connection engine):
///
/// ```
/// use reactorium::{FrontEnd, FrontEndReport, Runtime, TextWriter};
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
///
/// struct Ticker { ticks: AtomicU64 }
///
/// impl FrontEnd for Ticker {
///     fn name(&self) -> &str { "ticker" }
///     fn kind(&self) -> &'static str { "ticker" }
///     fn write_metrics(&self, w: &mut TextWriter<'_>) {
///         let ticks = self.ticks.load(Ordering::Relaxed);
///         w.counter("ticker_ticks_total", "Ticks seen.", [([("name", "ticker")], ticks)]);
///     }
///     fn stop(&self) -> FrontEndReport {
///         FrontEndReport::new(self.name(), self.kind())
///     }
/// }
///
/// let rt = Runtime::new()?;
/// rt.start()?;
/// rt.attach(Arc::new(Ticker { ticks: AtomicU64::new(3) }))?;
/// assert!(rt.admin().metrics().contains("ticker_ticks_total{name=\"ticker\"} 3\n"));
/// let report = rt.stop()?;
/// assert_eq!(report.front_ends[0].name, "ticker");
/// # Ok::<(), anyhow::Error>(())
/// ```
pub trait FrontEnd: Send + Sync + 'static {
    /// A name that tells it from the runtime's other front-ends, such as
    /// `"http 127.0.0.1:8080"`.
    fn name(&self) -> &str;

    /// The protocol, such as `"http"`, `"line"`, `"snmp"`.
    fn kind(&self) -> &'static str;

    /// Writes its metric families with `w`, beside the runtime's (what a `GET /metrics`
    /// answers). Several front-ends of one kind may write the same family: the writer
    /// appends their samples to it, so each must label its own (HTTP uses `listen`).
    /// Default: none.
    fn write_metrics(&self, w: &mut TextWriter<'_>) {
        let _ = w;
    }

    /// Stops it gracefully, blocking until it has: no new work is taken, idle connections
    /// close, work in flight finishes up to the front-end's own deadline, and what is left
    /// then is abandoned and counted. Called by [`Runtime::stop`] before any component stops;
    /// a call after the first returns the first call's report.
    fn stop(&self) -> FrontEndReport;
}

/// What a front-end's graceful stop did, in one shape for every protocol.
///
/// The three counts split what the front-end held when the stop began: work in flight that
/// was finished (`completed`) or cut off at the deadline (`abandoned`), and connections with
/// nothing in flight, closed at once (`closed`). What else a protocol wants to report goes
/// in `detail`, as named counts.
///
/// # Examples
///
/// ```
/// use reactorium::FrontEndReport;
///
/// let mut r = FrontEndReport::new("line 127.0.0.1:7000", "line");
/// r.completed = 2;
/// r.detail.push(("lines", 40));
/// assert_eq!(r.detail("lines"), Some(40));
/// assert!(r.is_clean());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FrontEndReport {
    /// The front-end's [`name`](FrontEnd::name).
    pub name: String,
    /// Its protocol ([`FrontEnd::kind`]).
    pub kind: &'static str,
    /// Work in flight at the stop, or arriving within the protocol's drain grace (a request
    /// waiting for its reply, a response being written, bytes received and not yet
    /// answered), that was finished before the deadline.
    pub completed: u64,
    /// Work in flight at the stop that was not finished: still in flight at the deadline, or
    /// its peer left before the answer.
    pub abandoned: u64,
    /// Connections where no request bytes had arrived, closed once the drain grace passed.
    pub closed: u64,
    /// Every thread of the front-end was joined.
    pub joined: bool,
    /// How long the stop took.
    pub elapsed: Duration,
    /// The protocol's own counts, by name (HTTP: `requests`, the responses written over its
    /// life).
    pub detail: Vec<(&'static str, u64)>,
}

impl FrontEndReport {
    /// A report of nothing done, `joined`, for the front-end `name` of protocol `kind`.
    pub fn new(name: impl Into<String>, kind: &'static str) -> FrontEndReport {
        FrontEndReport {
            name: name.into(),
            kind,
            completed: 0,
            abandoned: 0,
            closed: 0,
            joined: true,
            elapsed: Duration::ZERO,
            detail: Vec::new(),
        }
    }

    /// The count named `name` in `detail`.
    pub fn detail(&self, name: &str) -> Option<u64> {
        self.detail.iter().find(|(n, _)| *n == name).map(|d| d.1)
    }

    /// `true` when nothing was abandoned and every thread was joined.
    pub fn is_clean(&self) -> bool {
        self.abandoned == 0 && self.joined
    }
}

/// The runtime's front-ends, in attach order, until the stop takes them.
#[derive(Default)]
pub(crate) struct FrontEnds {
    inner: Mutex<Attached>,
}

#[derive(Default)]
struct Attached {
    list: Vec<Arc<dyn FrontEnd>>,
    /// Set by the stop, under the same lock as it takes the list: a front-end attached after
    /// it is refused rather than left running.
    stopped: bool,
}

impl FrontEnds {
    fn lock(&self) -> std::sync::MutexGuard<'_, Attached> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn list(&self) -> Vec<Arc<dyn FrontEnd>> {
        self.lock().list.clone()
    }

    /// Stops every front-end, in attach order (each gracefully, within its own deadline).
    pub(crate) fn stop_all(&self) -> Vec<FrontEndReport> {
        let list = {
            let mut attached = self.lock();
            attached.stopped = true;
            std::mem::take(&mut attached.list)
        };
        list.iter().map(|f| f.stop()).collect()
    }
}

/// What a front-end's admin endpoints may read of the runtime: its stats, its readiness,
/// its bus, and the metrics text of the runtime and every attached front-end. Cheap to
/// clone; it does not keep the runtime alive (once the runtime is dropped, `stats` is `None`
/// and readiness says so).
///
/// # Examples
///
/// ```
/// use reactorium::Runtime;
///
/// let rt = Runtime::new()?;
/// let admin = rt.admin();
/// assert!(!admin.readiness().ready);
/// rt.start()?;
/// assert!(admin.readiness().ready);
/// assert!(admin.metrics().contains("reactorium_ready 1\n"));
/// drop(rt);
/// assert!(admin.stats().is_none());
/// assert_eq!(admin.readiness().detail["runtime"], "gone");
/// # Ok::<(), anyhow::Error>(())
/// ```
#[derive(Clone)]
pub struct AdminHandle {
    state: Weak<Mutex<State>>,
    registry: Arc<Registry>,
    bus: Bus,
    pool: WorkerPool,
    front_ends: Weak<FrontEnds>,
    thread_name_prefix: Arc<str>,
}

impl std::fmt::Debug for AdminHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminHandle")
            .field("runtime_alive", &(self.state.strong_count() > 0))
            .finish()
    }
}

/// Whether the runtime is ready, and why (or why not), as an admin endpoint shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Readiness {
    /// What [`Runtime::is_ready`] says.
    pub ready: bool,
    /// A JSON object: `ready`, `runtime` (`"running"`, `"not running"`, `"gone"`),
    /// `components` (how many) and `not_running` (each with its `component` and `state`).
    pub detail: serde_json::Value,
}

impl AdminHandle {
    /// A snapshot of the runtime's counters ([`Runtime::stats`]); `None` once it is dropped.
    pub fn stats(&self) -> Option<RuntimeStats> {
        let state = self.state.upgrade()?;
        Some(stats::collect(
            &state,
            &self.registry,
            &self.pool,
            &self.bus,
        ))
    }

    /// Whether the runtime is ready ([`Runtime::is_ready`]), with a JSON detail.
    pub fn readiness(&self) -> Readiness {
        let Some(stats) = self.stats() else {
            return Readiness {
                ready: false,
                detail: serde_json::json!({"ready": false, "runtime": "gone"}),
            };
        };
        let not_running: Vec<_> = stats
            .components
            .iter()
            .filter(|c| c.state != ComponentState::Running)
            .map(|c| serde_json::json!({"component": &*c.name, "state": format!("{:?}", c.state)}))
            .collect();
        let detail = serde_json::json!({
            "ready": stats.ready,
            "runtime": if stats.started { "running" } else { "not running" },
            "components": stats.components.len(),
            "not_running": not_running,
        });
        Readiness {
            ready: stats.ready,
            detail,
        }
    }

    /// The runtime's bus.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The runtime's metrics and every attached front-end's, in the Prometheus text format
    /// (what a `GET /metrics` answers).
    pub fn metrics(&self) -> String {
        let mut out = String::new();
        let mut w = TextWriter::new(&mut out);
        if let Some(stats) = self.stats() {
            stats.write_families(&mut w);
        }
        if let Some(f) = self.front_ends.upgrade() {
            for front_end in f.list() {
                front_end.write_metrics(&mut w);
            }
        }
        out
    }

    /// The prefix the runtime gives its threads' names
    /// ([`RuntimeBuilder::thread_name_prefix`](crate::RuntimeBuilder::thread_name_prefix)),
    /// for a front-end to name its own threads alike.
    pub fn thread_name_prefix(&self) -> &str {
        &self.thread_name_prefix
    }
}

impl Runtime {
    /// Attaches a front-end: from now on its metric families are part of the runtime's
    /// metrics ([`AdminHandle::metrics`]), and [`stop`](Runtime::stop) stops it before any
    /// component (front-ends in attach order), listing its report in
    /// [`ShutdownReport::front_ends`](crate::ShutdownReport::front_ends). A front-end may be
    /// attached before or after [`start`](Runtime::start). Built-in front-ends attach
    /// themselves (`HttpServer::start`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] once the runtime has begun to stop; the front-end is then not
    /// attached, and its owner should stop it.
    ///
    /// # Examples
    ///
    /// See [`FrontEnd`].
    pub fn attach(&self, front_end: Arc<dyn FrontEnd>) -> Result<(), Error> {
        let mut attached = self.front_ends.lock();
        if attached.stopped || self.is_stopped() {
            return Err(Error::InvalidState {
                reason: "attach on a runtime that has stopped",
            });
        }
        attached.list.push(front_end);
        Ok(())
    }

    /// The front-ends attached to this runtime and not yet stopped by it, in attach order.
    pub fn front_ends(&self) -> Vec<Arc<dyn FrontEnd>> {
        self.front_ends.list()
    }

    /// A read-only handle on this runtime for a front-end's admin endpoints; see
    /// [`AdminHandle`].
    pub fn admin(&self) -> AdminHandle {
        AdminHandle {
            state: Arc::downgrade(&self.state),
            registry: Arc::clone(&self.registry),
            bus: self.bus.clone(),
            pool: self.pool.clone(),
            front_ends: Arc::downgrade(&self.front_ends),
            thread_name_prefix: Arc::from(self.config.thread_name_prefix.as_str()),
        }
    }
}
