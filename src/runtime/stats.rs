//! `Runtime::stats`: one snapshot of every counter the runtime keeps, and its rendering in the
//! Prometheus text format for a `GET /metrics`.

use std::sync::Mutex;

use super::registry::Registry;
use super::{Phase, Runtime, State};
use crate::bus::{Bus, BusStats};
use crate::metrics::{HistogramSnapshot, TextWriter};
use crate::reactor::ReactorStats;
use crate::runtime::ComponentState;
use crate::types::Name;
use crate::worker::{WorkerPool, WorkerPoolStats};

/// Everything the runtime counts, read at one moment ([`Runtime::stats`]).
///
/// A plain snapshot: reading it costs nothing and changes nothing. Each figure is read on its
/// own, without stopping the threads that move it, so two figures may be a few messages
/// apart (a message may show in `handled` and still in the bus's `sends`, never the reverse
/// order of events for one counter).
///
/// # Examples
///
/// ```
/// use reactorium::{BoxError, Component, ComponentOptions, Context, Message, Runtime};
///
/// struct Sink;
/// impl Component for Sink {
///     fn handle(&mut self, _m: Message, _c: &mut Context<'_, Self>) -> Result<(), BoxError> { Ok(()) }
/// }
///
/// let rt = Runtime::builder().handler_latency(true).build()?;
/// rt.deploy_with("sink", ComponentOptions::new().subscribe("in"), || Sink)?;
/// assert!(!rt.is_ready()); // deployed, not started
/// rt.start()?;
/// assert!(rt.is_ready());
/// rt.bus().send("in", Message::empty())?;
/// # while rt.component("sink").unwrap().reactor.stats().handled < 1 { std::thread::yield_now() }
///
/// let stats = rt.stats();
/// let sink = stats.component("sink").unwrap();
/// assert_eq!(sink.reactor.handled, 1);
/// assert_eq!(sink.handler_latency.as_ref().unwrap().count, 1);
/// assert_eq!(stats.bus.sends, 1);
///
/// let text = stats.to_prometheus();
/// assert!(text.contains("reactorium_messages_handled_total{component=\"sink\"} 1\n"));
/// # Ok::<(), anyhow::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeStats {
    /// `true` from [`Runtime::start`] until [`Runtime::stop`] begins.
    pub started: bool,
    /// `true` when the runtime is started and every component is
    /// [`Running`](ComponentState::Running) (none deployed-but-not-started, restarting,
    /// stopped or failed): what a readiness probe asks. See [`Runtime::is_ready`].
    pub ready: bool,
    /// One entry per component, in deploy order.
    pub components: Vec<ComponentStats>,
    /// The worker pool's counters.
    pub pool: WorkerPoolStats,
    /// The bus's counters.
    pub bus: BusStats,
}

/// One component's part of [`RuntimeStats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentStats {
    /// Its name.
    pub name: Name,
    /// Its state in the registry.
    pub state: ComponentState,
    /// Its reactor's counters: mailbox depth, capacity and high-water mark, handled,
    /// rejected, dead-lettered, dropped, failures, restarts, ...
    pub reactor: ReactorStats,
    /// How long its `handle` calls took, when handler latency is on for it
    /// ([`RuntimeBuilder::handler_latency`](crate::RuntimeBuilder::handler_latency)).
    pub handler_latency: Option<HistogramSnapshot>,
}

impl Runtime {
    /// A snapshot of every counter: per component (in deploy order) its state, reactor
    /// counters and handler latency; the worker pool's; the bus's; and whether the runtime
    /// is started and ready. Takes the runtime's state lock and the registry's read lock
    /// briefly, one after the other (neither is held while waiting on a thread), so it
    /// answers at once, during a `start` or `stop` too.
    ///
    /// # Examples
    ///
    /// See [`RuntimeStats`].
    pub fn stats(&self) -> RuntimeStats {
        collect(&self.state, &self.registry, &self.pool, &self.bus)
    }

    /// `true` when the runtime is started and every deployed component is
    /// [`Running`](ComponentState::Running): not while `start` is still starting them, not
    /// while one restarts, not once one has stopped or failed for good, not after `stop`. A
    /// runtime with no component is ready once started.
    ///
    /// # Examples
    ///
    /// ```
    /// use reactorium::Runtime;
    ///
    /// let rt = Runtime::new()?;
    /// assert!(!rt.is_ready());
    /// rt.start()?;
    /// assert!(rt.is_ready());
    /// rt.stop()?;
    /// assert!(!rt.is_ready());
    /// # Ok::<(), anyhow::Error>(())
    /// ```
    pub fn is_ready(&self) -> bool {
        self.stats().ready
    }
}

/// The snapshot, from the parts of a runtime (so an admin endpoint can take one without
/// holding the runtime). Takes the state lock, then the registry's read lock, each briefly.
pub(crate) fn collect(
    state: &Mutex<State>,
    registry: &Registry,
    pool: &WorkerPool,
    bus: &Bus,
) -> RuntimeStats {
    let started = state.lock().unwrap_or_else(|e| e.into_inner()).phase == Phase::Running;
    let components: Vec<ComponentStats> = registry
        .entries()
        .iter()
        .map(|e| ComponentStats {
            name: e.name.clone(),
            state: e.state(),
            reactor: e.reactor.stats(),
            handler_latency: e.reactor.handler_latency(),
        })
        .collect();
    let ready = started
        && components
            .iter()
            .all(|c| c.state == ComponentState::Running);
    RuntimeStats {
        started,
        ready,
        components,
        pool: pool.stats(),
        bus: bus.stats(),
    }
}

/// A per-component family: name, help, and how to read its value from a reactor's stats.
type Family<T> = (&'static str, &'static str, fn(&ReactorStats) -> T);

/// No labels, for the runtime-wide families.
const NONE: [(&str, &str); 0] = [];

/// A gauge's value for a flag.
fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

const STATES: [(ComponentState, &str); 5] = [
    (ComponentState::Deployed, "deployed"),
    (ComponentState::Running, "running"),
    (ComponentState::Restarting, "restarting"),
    (ComponentState::Stopped, "stopped"),
    (ComponentState::Failed, "failed"),
];

impl RuntimeStats {
    /// The entry of the component named `name`.
    pub fn component(&self, name: &str) -> Option<&ComponentStats> {
        self.components.iter().find(|c| &*c.name == name)
    }

    /// Appends the snapshot to `out` in the Prometheus text exposition format, version 0.0.4
    /// (`Content-Type: text/plain; version=0.0.4`): each family once, with its `# HELP` and
    /// `# TYPE`, every metric named `reactorium_...`, per-component families labelled
    /// `component`.
    ///
    /// The families: `reactorium_started` and `reactorium_ready` (0 or 1);
    /// `reactorium_component_state{component,state}` (1 for the current state, 0 for the
    /// four others); per component the gauges `reactorium_mailbox_depth`,
    /// `reactorium_mailbox_capacity`, `reactorium_mailbox_high_water`,
    /// `reactorium_pending_outcomes` and the counters `reactorium_messages_handled_total`,
    /// `reactorium_messages_rejected_total`, `reactorium_messages_dropped_total`,
    /// `reactorium_dead_letters_total`, `reactorium_late_replies_total`,
    /// `reactorium_late_jobs_total`, `reactorium_handler_failures_total`,
    /// `reactorium_handler_errors_total`, `reactorium_restarts_total`; the histogram
    /// `reactorium_handler_latency_seconds` for the components that time their handler;
    /// the pool's `reactorium_pool_threads`, `reactorium_pool_queue_depth`,
    /// `reactorium_pool_queue_capacity`, `reactorium_pool_busy_workers`,
    /// `reactorium_pool_jobs_total`, `reactorium_pool_rejected_total`,
    /// `reactorium_pool_panics_total`; the bus's `reactorium_bus_subscriptions`,
    /// `reactorium_bus_sends_total`, `reactorium_bus_publishes_total`,
    /// `reactorium_bus_requests_total`, `reactorium_bus_request_timeouts_total`,
    /// `reactorium_bus_no_subscriber_total`, `reactorium_bus_dead_letters_total`,
    /// `reactorium_bus_dead_letters_dropped_total`, `reactorium_bus_late_replies_total`.
    /// A family with no sample (no component yet, no latency timed) is left out.
    ///
    /// # Examples
    ///
    /// ```
    /// use reactorium::Runtime;
    ///
    /// let rt = Runtime::new()?;
    /// let mut out = String::new();
    /// rt.stats().write_prometheus(&mut out);
    /// assert!(out.contains("# TYPE reactorium_bus_sends_total counter\nreactorium_bus_sends_total 0\n"));
    /// # Ok::<(), anyhow::Error>(())
    /// ```
    pub fn write_prometheus(&self, out: &mut String) {
        self.write_families(&mut TextWriter::new(out));
    }

    /// Writes the families of [`write_prometheus`](RuntimeStats::write_prometheus) with `w`.
    pub(crate) fn write_families(&self, w: &mut TextWriter<'_>) {
        w.gauge(
            "reactorium_started",
            "1 from Runtime::start until Runtime::stop begins, else 0.",
            [(NONE, flag(self.started))],
        );
        w.gauge(
            "reactorium_ready",
            "1 when the runtime is started and every component is running, else 0.",
            [(NONE, flag(self.ready))],
        );
        self.write_components(w);
        self.write_pool(w);
        self.write_bus(w);
    }

    /// The snapshot in the Prometheus text format; see
    /// [`write_prometheus`](RuntimeStats::write_prometheus).
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        self.write_prometheus(&mut out);
        out
    }

    fn write_components(&self, w: &mut TextWriter<'_>) {
        let cs = &self.components;
        w.gauge(
            "reactorium_component_state",
            "1 for the component's current state, 0 for the others.",
            cs.iter().flat_map(|c| {
                STATES.iter().map(move |(state, label)| {
                    (
                        [("component", &*c.name), ("state", *label)],
                        flag(c.state == *state),
                    )
                })
            }),
        );
        let gauges: [Family<usize>; 4] = [
            (
                "reactorium_mailbox_depth",
                "Messages waiting in the component's mailbox.",
                |r| r.queued,
            ),
            (
                "reactorium_mailbox_capacity",
                "How many messages the component's mailbox holds at most.",
                |r| r.capacity,
            ),
            (
                "reactorium_mailbox_high_water",
                "The most messages that have waited in the component's mailbox at once.",
                |r| r.high_water,
            ),
            (
                "reactorium_pending_outcomes",
                "Requests and jobs of the component waiting for their reply or result.",
                |r| r.pending,
            ),
        ];
        for (name, help, get) in gauges {
            w.gauge(
                name,
                help,
                cs.iter()
                    .map(|c| ([("component", &*c.name)], get(&c.reactor) as f64)),
            );
        }
        let counters: [Family<u64>; 9] = [
            (
                "reactorium_messages_handled_total",
                "Messages the component's handler returned Ok for.",
                |r| r.handled,
            ),
            (
                "reactorium_messages_rejected_total",
                "Messages refused with backpressure because the mailbox was full.",
                |r| r.rejected,
            ),
            (
                "reactorium_messages_dropped_total",
                "Messages dropped by the mailbox's overflow policy (each dead-lettered).",
                |r| r.dropped,
            ),
            (
                "reactorium_dead_letters_total",
                "Messages the component's reactor sent to the dead-letter topic.",
                |r| r.dead_lettered,
            ),
            (
                "reactorium_late_replies_total",
                "Replies that came after the component stopped waiting for them.",
                |r| r.late_replies,
            ),
            (
                "reactorium_late_jobs_total",
                "Job results that came after the component stopped waiting for them.",
                |r| r.late_jobs,
            ),
            (
                "reactorium_handler_failures_total",
                "Failures of the component: handler panics or errors, panics in stop.",
                |r| r.failures,
            ),
            (
                "reactorium_handler_errors_total",
                "Handler errors that did not fail the component (OnError::Continue).",
                |r| r.errors,
            ),
            (
                "reactorium_restarts_total",
                "Times the component's supervisor built a fresh instance.",
                |r| r.restarts,
            ),
        ];
        for (name, help, get) in counters {
            w.counter(
                name,
                help,
                cs.iter()
                    .map(|c| ([("component", &*c.name)], get(&c.reactor))),
            );
        }
        w.histogram(
            "reactorium_handler_latency_seconds",
            "Time the component's handler took per message.",
            cs.iter().filter_map(|c| {
                c.handler_latency
                    .as_ref()
                    .map(|h| ([("component", &*c.name)], h))
            }),
        );
    }

    fn write_pool(&self, w: &mut TextWriter<'_>) {
        let p = &self.pool;
        let gauges = [
            (
                "reactorium_pool_threads",
                "Threads in the worker pool.",
                p.threads,
            ),
            (
                "reactorium_pool_queue_depth",
                "Jobs waiting in the worker pool's queue.",
                p.queued,
            ),
            (
                "reactorium_pool_queue_capacity",
                "How many jobs the worker pool's queue holds at most.",
                p.capacity,
            ),
            (
                "reactorium_pool_busy_workers",
                "Workers running a job now.",
                p.busy,
            ),
        ];
        for (name, help, v) in gauges {
            w.gauge(name, help, [(NONE, v as f64)]);
        }
        let counters = [
            (
                "reactorium_pool_jobs_total",
                "Jobs the worker pool finished (panicked ones included).",
                p.completed,
            ),
            (
                "reactorium_pool_rejected_total",
                "Jobs refused with backpressure because the queue was full.",
                p.rejected,
            ),
            (
                "reactorium_pool_panics_total",
                "Jobs that panicked.",
                p.panicked,
            ),
        ];
        for (name, help, v) in counters {
            w.counter(name, help, [(NONE, v)]);
        }
    }

    fn write_bus(&self, w: &mut TextWriter<'_>) {
        let b = &self.bus;
        w.gauge(
            "reactorium_bus_subscriptions",
            "Subscriptions on the bus.",
            [(NONE, b.subscriptions as f64)],
        );
        let counters = [
            (
                "reactorium_bus_sends_total",
                "Messages sent to one recipient (send, send_to), refused ones included.",
                b.sends,
            ),
            (
                "reactorium_bus_publishes_total",
                "Messages published to every subscriber of a topic.",
                b.publishes,
            ),
            (
                "reactorium_bus_requests_total",
                "Requests made, from plain threads and from components.",
                b.requests,
            ),
            (
                "reactorium_bus_request_timeouts_total",
                "Requests whose requester stopped waiting at its timeout.",
                b.request_timeouts,
            ),
            (
                "reactorium_bus_no_subscriber_total",
                "Sends, publishes and requests refused for lack of a subscriber.",
                b.no_subscriber,
            ),
            (
                "reactorium_bus_dead_letters_total",
                "Messages sent to the dead-letter topic.",
                b.dead_letters,
            ),
            (
                "reactorium_bus_dead_letters_dropped_total",
                "Dead letters a dead-letter subscriber refused: counted, not delivered.",
                b.dead_letters_dropped,
            ),
            (
                "reactorium_bus_late_replies_total",
                "Replies that came after their requester stopped waiting.",
                b.late_replies,
            ),
        ];
        for (name, help, v) in counters {
            w.counter(name, help, [(NONE, v)]);
        }
    }
}
