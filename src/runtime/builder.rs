//! `RuntimeBuilder` (the runtime's settings, each with its default) and `ComponentOptions`
//! (a component's, each defaulting to the runtime's).

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::policy::{Restart, SupervisorOptions};
use super::registry::Registry;
use super::supervisor::Supervision;
use super::{Runtime, JOIN_GRACE};
use crate::bus::{Bus, ReactorProvider};
use crate::reactor::{OnError, MAX_CAPACITY};
use crate::types::{Clock, Error, Overflow};
use crate::worker::WorkerPool;

/// Builds a [`Runtime`]. Every setter documents its default.
#[derive(Debug, Clone)]
pub struct RuntimeBuilder {
    pub(super) worker_threads: usize,
    pub(super) worker_queue_capacity: usize,
    pub(super) mailbox_capacity: usize,
    pub(super) max_pending: usize,
    pub(super) drain_timeout: Duration,
    pub(super) thread_name_prefix: String,
    pub(super) reactor_stack_size: usize,
    pub(super) clock: Clock,
    pub(super) root: SupervisorOptions,
    pub(super) handler_latency: bool,
}

impl Default for RuntimeBuilder {
    fn default() -> Self {
        RuntimeBuilder {
            worker_threads: thread::available_parallelism().map_or(2, |n| n.get()),
            worker_queue_capacity: 1024,
            mailbox_capacity: 1024,
            max_pending: 256,
            drain_timeout: Duration::from_secs(5),
            thread_name_prefix: String::new(),
            reactor_stack_size: 512 * 1024,
            clock: Clock::system(),
            root: SupervisorOptions::default(),
            handler_latency: false,
        }
    }
}

impl RuntimeBuilder {
    /// Worker pool threads (the pool's
    /// [`WorkerPoolBuilder::num_threads`](crate::WorkerPoolBuilder::num_threads)). Default: the
    /// machine's available parallelism (2 if unknown).
    ///
    /// `0` gives a runtime without a worker pool thread, for components that never offload:
    /// every [`Context::spawn_blocking`](crate::Context::spawn_blocking) and
    /// [`WorkerPool::execute`](crate::WorkerPool::execute) then answers
    /// [`SendError::Stopped`](crate::SendError::Stopped) naming the pool (`{prefix}worker`),
    /// with the job handed back, and
    /// [`WorkerPoolStats::threads`](crate::WorkerPoolStats::threads) is 0.
    ///
    /// ```
    /// use reactorium::{Runtime, SendError};
    ///
    /// let rt = Runtime::builder().worker_threads(0).build()?;
    /// match rt.pool().execute(|| ()) {
    ///     Err(SendError::Stopped { target, rejected }) => {
    ///         assert_eq!(&*target, "worker");
    ///         rejected(); // the job, handed back
    ///     }
    ///     other => panic!("expected Stopped, got {other:?}"),
    /// }
    /// # Ok::<(), anyhow::Error>(())
    /// ```
    pub fn worker_threads(mut self, n: usize) -> Self {
        self.worker_threads = n;
        self
    }

    /// Worker pool queue capacity: jobs waiting, not running (the pool's
    /// [`WorkerPoolBuilder::queue_capacity`](crate::WorkerPoolBuilder::queue_capacity)).
    /// Default: 1024.
    pub fn worker_queue_capacity(mut self, n: usize) -> Self {
        self.worker_queue_capacity = n;
        self
    }

    /// Default mailbox capacity of each component (messages waiting). Default: 1024.
    /// Overridden per component by [`ComponentOptions::mailbox_capacity`].
    pub fn mailbox_capacity(mut self, n: usize) -> Self {
        self.mailbox_capacity = n;
        self
    }

    /// Default bound on a component's outstanding requests and jobs (each reserves room for
    /// its reply). Default: 256. Overridden by [`ComponentOptions::max_pending`].
    pub fn max_pending(mut self, n: usize) -> Self {
        self.max_pending = n;
        self
    }

    /// The stop's drain deadline: once [`Runtime::stop`] begins to stop the components, each
    /// has until this long after that instant (not after its own turn comes) to drain its
    /// mailbox; messages left then are dead-lettered. One deadline for the whole stop, so
    /// `stop` takes about this long plus a grace second however many components there are
    /// (components subscribed to the dead-letter topic get a drain of their own after the
    /// others; see `# Shutdown` on [`Runtime`]). The worker pool's queued jobs have until the
    /// same deadline. Also bounds, plus a second, how long a supervisor waits for a sibling
    /// to suspend, and a component's drain after [`Context::stop`](crate::Context::stop).
    /// Default: 5 s. Overridden per component by [`ComponentOptions::drain_timeout`].
    pub fn drain_timeout(mut self, d: Duration) -> Self {
        self.drain_timeout = d;
        self
    }

    /// Prefix of every thread name: reactors are `{prefix}{component}`, workers
    /// `{prefix}worker-{i}`. Default: empty. (Linux shows the first 15 bytes.)
    pub fn thread_name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.thread_name_prefix = prefix.into();
        self
    }

    /// Stack size of each reactor thread. Default: 512 KiB (only touched pages use memory).
    pub fn reactor_stack_size(mut self, bytes: usize) -> Self {
        self.reactor_stack_size = bytes;
        self
    }

    /// The clock timers, timeouts, backoff and restart windows read. Default:
    /// [`Clock::system`]. Tests give a [`ManualClock`](crate::ManualClock)'s.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The root supervisor's strategy, intensity and backoff (its `parent` is ignored).
    /// Default: [`SupervisorOptions::default`], one-for-one, 5 restarts in 5 s, no backoff.
    /// Components deployed without [`ComponentOptions::supervisor`] belong to the root.
    pub fn supervisor(mut self, root: SupervisorOptions) -> Self {
        self.root = root;
        self
    }

    /// Times every component's `handle` calls into a [`Histogram`](crate::Histogram) per
    /// component, read with [`Reactor::handler_latency`](crate::Reactor::handler_latency) and [`Runtime::stats`] (and rendered
    /// as `reactorium_handler_latency_seconds`). It costs two clock reads (`Instant::now`,
    /// tens of nanoseconds each) and a histogram record per message, on the reactor thread.
    /// Durations are wall-clock time even under a [`ManualClock`](crate::ManualClock).
    /// Default: `false`. Overridden per component by [`ComponentOptions::handler_latency`].
    pub fn handler_latency(mut self, on: bool) -> Self {
        self.handler_latency = on;
        self
    }

    /// Creates the runtime, its worker pool and its supervisor thread. Components are
    /// deployed next.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a zero or out-of-range size; [`Error::Spawn`] when a
    /// worker or the supervisor thread cannot be created.
    pub fn build(self) -> Result<Runtime, Error> {
        check_capacity("mailbox capacity", self.mailbox_capacity)?;
        check_capacity("max pending", self.max_pending)?;
        let pool = WorkerPool::builder()
            .num_threads(self.worker_threads)
            .queue_capacity(self.worker_queue_capacity)
            .thread_name(format!("{}worker", self.thread_name_prefix))
            .build()?;
        let bus = Bus::new();
        let registry = Arc::new(Registry::default());
        let provider: Arc<dyn ReactorProvider> = registry.clone();
        bus.set_provider(Arc::downgrade(&provider));
        let supervision = Supervision::start(
            Arc::clone(&registry),
            self.clock.clone(),
            self.root.clone(),
            self.drain_timeout + JOIN_GRACE,
            format!("{}supervisor", self.thread_name_prefix),
        )?;
        Ok(Runtime {
            bus,
            pool,
            registry,
            supervision,
            config: self,
            lifecycle: Mutex::new(()),
            state: Arc::default(),
            front_ends: Arc::default(),
        })
    }
}

pub(super) fn check_capacity(what: &str, n: usize) -> Result<(), Error> {
    if n == 0 || n > MAX_CAPACITY {
        return Err(Error::InvalidConfig {
            reason: format!("{what} must be between 1 and {MAX_CAPACITY}, not {n}"),
        });
    }
    Ok(())
}

/// Per-component settings for [`Runtime::deploy_with`].
#[derive(Debug, Clone, Default)]
pub struct ComponentOptions {
    pub(super) mailbox_capacity: Option<usize>,
    pub(super) max_pending: Option<usize>,
    pub(super) drain_timeout: Option<Duration>,
    pub(super) subscriptions: Vec<String>,
    pub(super) restart: Restart,
    pub(super) supervisor: Option<String>,
    pub(super) overflow: Overflow,
    pub(super) on_error: OnError,
    pub(super) idle_timeout: Option<Duration>,
    pub(super) handler_latency: Option<bool>,
    pub(super) keep_failed_payloads: bool,
}

impl ComponentOptions {
    /// The runtime's defaults and no subscription.
    pub fn new() -> Self {
        Self::default()
    }

    /// Mailbox capacity: messages that may wait. Default: the runtime's
    /// ([`RuntimeBuilder::mailbox_capacity`], 1024).
    ///
    /// Beyond these, the reactor holds the batch it has taken out to handle, at most
    /// `max(1, min(64, capacity / 4))` messages; see `src/reactor/README.md`.
    pub fn mailbox_capacity(mut self, n: usize) -> Self {
        self.mailbox_capacity = Some(n);
        self
    }

    /// Bound on outstanding requests and jobs. Default: the runtime's
    /// ([`RuntimeBuilder::max_pending`], 256).
    pub fn max_pending(mut self, n: usize) -> Self {
        self.max_pending = Some(n);
        self
    }

    /// This component's drain deadline at stop, counted from when the stop begins to stop
    /// the components, as the runtime's ([`RuntimeBuilder::drain_timeout`]), which is the
    /// default. A longer one lets a component deployed early (so stopped late) handle what
    /// the others send it while they drain; a shorter one (even zero) abandons its queue
    /// sooner.
    pub fn drain_timeout(mut self, d: Duration) -> Self {
        self.drain_timeout = Some(d);
        self
    }

    /// Subscribes the component to `pattern` at deploy. May be given several times.
    pub fn subscribe(mut self, pattern: impl Into<String>) -> Self {
        self.subscriptions.push(pattern.into());
        self
    }

    /// When its supervisor restarts it. Default: [`Restart::Temporary`] (never).
    pub fn restart(mut self, mode: Restart) -> Self {
        self.restart = mode;
        self
    }

    /// The supervisor it belongs to, added before with
    /// [`Runtime::add_supervisor`]. Default: the root.
    pub fn supervisor(mut self, name: impl Into<String>) -> Self {
        self.supervisor = Some(name.into());
        self
    }

    /// What a full mailbox does with a new message. Default: [`Overflow::Reject`].
    pub fn overflow(mut self, policy: Overflow) -> Self {
        self.overflow = policy;
        self
    }

    /// What a handler's `Err` means. Default: [`OnError::Fail`].
    pub fn on_error(mut self, policy: OnError) -> Self {
        self.on_error = policy;
        self
    }

    /// Calls [`Component::idle`](crate::Component::idle) once the component has received no message for `d`.
    /// Default: never.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = Some(d);
        self
    }

    /// Times this component's `handle` calls (two clock reads per message); see
    /// [`RuntimeBuilder::handler_latency`]. Default: the runtime's (off unless turned on
    /// there).
    pub fn handler_latency(mut self, on: bool) -> Self {
        self.handler_latency = Some(on);
        self
    }

    /// Keeps the payload of the message a handler fails on, for its dead letter: the letter
    /// of a panic (or of an error returned without [`Unhandled`](crate::Unhandled)) then
    /// carries the whole message, so a dead-letter queue can store or replay it. Without this
    /// it carries the envelope only, because the handler owned the message and it went down
    /// with the handler. Default: off.
    ///
    /// The reactor holds a second reference to each payload while its handler runs: two
    /// atomic reference-count updates per message (measured in `docs/decisions.md`, "Dead
    /// letters of failed messages"). [`Message::take`](crate::Message::take) still works: it
    /// gives that reference up, and a payload the handler took is not in the dead letter.
    pub fn keep_failed_payloads(mut self, on: bool) -> Self {
        self.keep_failed_payloads = on;
        self
    }
}
