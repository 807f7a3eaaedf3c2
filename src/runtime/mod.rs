//! The runtime: configuration, deploy / start / stop, supervision (restart modes, supervisors
//! and their strategies, the supervisor thread), the registry of components with their states
//! and watches (the bus reaches reactors through it as `ReactorProvider`), and the shutdown
//! report. Depends on every other module.
//!
//! The stop sequence and the supervision protocol are described in `README.md` beside this
//! file.

mod agent;
mod registry;
mod report;
mod serve;
mod stats;
mod supervisor;

use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver};

pub use agent::{Agent, AgentStats};
pub use registry::{ComponentInfo, ComponentState, Watch};
pub use report::{ComponentReport, ShutdownReport};
pub use stats::{ComponentStats, RuntimeStats};
pub use supervisor::{Restart, RestartBackoff, Strategy, SupervisorOptions};

use crate::bus::{Bus, ReactorProvider};
use crate::reactor::{
    self, Component, Core, Exit, Factory, MailboxConfig, OnError, Reactor, Settings, System,
    WatchId, Watcher, MAX_CAPACITY,
};
use crate::types::{Clock, DownReason, Error, Message, Name, Overflow, Pattern, Topic};
use crate::worker::{PoolShutdown, WorkerPool};
use registry::{Entry, Registry};
use supervisor::Supervision;

/// How long `stop` waits for a reactor thread beyond its drain deadline before it gives up on
/// joining it (a handler that never returns cannot be interrupted).
const JOIN_GRACE: Duration = Duration::from_secs(1);

/// Builds a [`Runtime`]. Every setter documents its default.
#[derive(Debug, Clone)]
pub struct RuntimeBuilder {
    workers: usize,
    worker_queue: usize,
    mailbox_capacity: usize,
    max_pending: usize,
    drain_timeout: Duration,
    thread_name_prefix: String,
    reactor_stack_size: usize,
    clock: Clock,
    root: SupervisorOptions,
    handler_latency: bool,
}

impl Default for RuntimeBuilder {
    fn default() -> Self {
        RuntimeBuilder {
            workers: thread::available_parallelism().map_or(2, |n| n.get()),
            worker_queue: 1024,
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
    /// Worker pool threads. Default: the machine's available parallelism.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Worker pool queue capacity (jobs waiting, not running). Default: 1024.
    pub fn worker_queue(mut self, n: usize) -> Self {
        self.worker_queue = n;
        self
    }

    /// Default mailbox capacity of each component (messages waiting). Default: 1024.
    /// Overridden per component by [`ComponentOptions::mailbox`].
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

    /// How long each component may take, once asked to stop, to drain its mailbox. Messages
    /// left after it are dead-lettered. Default: 5 s. Overridden by
    /// [`ComponentOptions::drain_timeout`].
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
    /// component, read with [`Reactor::handler_latency`] and [`Runtime::stats`] (and rendered
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
            .num_threads(self.workers)
            .queue_capacity(self.worker_queue)
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

fn check_capacity(what: &str, n: usize) -> Result<(), Error> {
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
    mailbox: Option<usize>,
    max_pending: Option<usize>,
    drain_timeout: Option<Duration>,
    subscriptions: Vec<String>,
    restart: Restart,
    supervisor: Option<String>,
    overflow: Overflow,
    on_error: OnError,
    idle_timeout: Option<Duration>,
    handler_latency: Option<bool>,
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
    pub fn mailbox(mut self, n: usize) -> Self {
        self.mailbox = Some(n);
        self
    }

    /// Bound on outstanding requests and jobs. Default: the runtime's
    /// ([`RuntimeBuilder::max_pending`], 256).
    pub fn max_pending(mut self, n: usize) -> Self {
        self.max_pending = Some(n);
        self
    }

    /// Drain deadline at stop. Default: the runtime's ([`RuntimeBuilder::drain_timeout`]).
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

    /// Calls [`Component::idle`] once the component has received no message for `d`.
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
}

/// Starts a component of a type known only at deploy.
trait Launch: Send + Sync {
    fn launch(
        &self,
        rt: &Runtime,
        d: &Launching,
        started: channel::Sender<Result<(), String>>,
    ) -> Result<ReactorThread, Error>;
}

/// A running reactor thread: its handle, and the channel its `Exit` arrives on.
type ReactorThread = (JoinHandle<()>, Receiver<Exit>);

/// What launching a component needs, taken out of `State` so no lock is held meanwhile.
struct Launching {
    name: Name,
    reactor: Reactor,
    launcher: Arc<dyn Launch>,
}

struct Launcher<C> {
    factory: Factory<C>,
    settings: Settings,
}

impl<C: Component> Launch for Launcher<C> {
    fn launch(
        &self,
        rt: &Runtime,
        d: &Launching,
        started: channel::Sender<Result<(), String>>,
    ) -> Result<ReactorThread, Error> {
        let core = Core {
            reactor: d.reactor.clone(),
            bus: rt.bus.clone(),
            pool: rt.pool.clone(),
            system: Arc::clone(&rt.supervision) as Arc<dyn System>,
            settings: self.settings.clone(),
        };
        let thread = format!("{}{}", rt.config.thread_name_prefix, d.name);
        let builder = thread::Builder::new()
            .name(thread.clone())
            .stack_size(rt.config.reactor_stack_size);
        let (done_tx, done_rx) = channel::bounded(1);
        reactor::spawn(core, Arc::clone(&self.factory), builder, started, done_tx)
            .map(|h| (h, done_rx))
            .map_err(|source| Error::Spawn { thread, source })
    }
}

struct Deployed {
    name: Name,
    reactor: Reactor,
    drain_timeout: Duration,
    launcher: Arc<dyn Launch>,
    thread: Option<ReactorThread>,
}

impl Deployed {
    fn launching(&self) -> Launching {
        Launching {
            name: self.name.clone(),
            reactor: self.reactor.clone(),
            launcher: Arc::clone(&self.launcher),
        }
    }
}

#[derive(Default, PartialEq, Eq, Clone, Copy, Debug)]
enum Phase {
    #[default]
    Created,
    Running,
    Stopped,
}

#[derive(Default)]
struct State {
    phase: Phase,
    components: Vec<Deployed>,
}

/// Owns the components, their reactor threads, the bus and the worker pool.
///
/// # Examples
///
/// ```
/// use reactorium::{BoxError, Component, ComponentOptions, Context, Message, Runtime};
/// use std::time::Duration;
///
/// struct Doubler;
///
/// impl Component for Doubler {
///     fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
///         let n = *msg.get::<u64>().ok_or("expected a u64")?;
///         ctx.reply(&mut msg, Message::typed(n * 2))?;
///         Ok(())
///     }
/// }
///
/// let rt = Runtime::builder().workers(1).build()?;
/// rt.deploy_with("doubler", ComponentOptions::new().subscribe("math.double"), || Doubler)?;
/// rt.start()?;
/// let reply = rt.bus()
///     .request("math.double", Message::typed(21u64), Duration::from_secs(1))
///     .map_err(|e| e.without_payload())?
///     .wait()?;
/// assert_eq!(reply.get::<u64>(), Some(&42));
/// let report = rt.stop()?;
/// assert_eq!(report.component("doubler").unwrap().handled, 1);
/// # Ok::<(), anyhow::Error>(())
/// ```
///
/// # Shutdown
///
/// [`stop`](Runtime::stop) stops components in reverse deploy order. Each reactor first
/// refuses new messages ([`Error::Stopped`]), then drains its mailbox until it is empty or its
/// drain deadline passes, gives pending continuations [`Error::Stopped`], calls the
/// component's `stop`, and exits; messages left are dead-lettered and counted as abandoned.
/// `stop` waits for each thread up to its drain deadline plus one second: a handler that never
/// returns cannot be interrupted, so such a thread is left running and reported with
/// `joined: false`. The worker pool goes last: queued jobs finish, then its threads are joined
/// within the default drain deadline. `stop` returns a [`ShutdownReport`].
///
/// Dropping a runtime that is running stops it the same way (and discards the report), so a
/// dropped runtime leaves no thread behind unless a handler or job never returns. Dropping one
/// that was never started dead-letters whatever was queued for its components.
///
/// A component may hold the runtime and call it. Reading it (`components`, `reactor`, `bus`)
/// always works; `deploy`, `start` and `stop` called on a reactor thread return
/// [`Error::WouldDeadlock`] rather than wait while another of them is under way. `stop` (or
/// the last handle's drop) on one of this runtime's own reactor threads stops every other
/// component as usual and asks the calling one to stop without waiting for it.
pub struct Runtime {
    bus: Bus,
    pool: WorkerPool,
    registry: Arc<Registry>,
    supervision: Arc<Supervision>,
    config: RuntimeBuilder,
    // Serializes start / deploy / stop, and is held while they wait on reactor threads.
    lifecycle: Mutex<()>,
    // Short critical sections only: never held while waiting on a thread.
    state: Arc<Mutex<State>>,
    // Front-ends (HTTP) started by `serve_http`; stopped before any component.
    front_ends: Arc<serve::FrontEnds>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock();
        f.debug_struct("Runtime")
            .field("phase", &st.phase)
            .field(
                "components",
                &st.components.iter().map(|d| &d.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Runtime {
    /// A builder with the defaults documented on each setter.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// A runtime with every default.
    ///
    /// # Errors
    ///
    /// As [`RuntimeBuilder::build`].
    pub fn new() -> Result<Runtime, Error> {
        Runtime::builder().build()
    }

    /// The bus, to send, publish, request and subscribe from outside components.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The worker pool.
    pub fn pool(&self) -> &WorkerPool {
        &self.pool
    }

    /// The reactor of the component named `name`.
    pub fn reactor(&self, name: &str) -> Option<Reactor> {
        self.registry.reactor(name)
    }

    /// What the registry knows of the component named `name`: its state, restarts, last
    /// `Down` reason and reactor.
    pub fn whois(&self, name: &str) -> Option<ComponentInfo> {
        self.registry.get(name).map(|e| e.info())
    }

    /// Every deployed component, in deploy order, with its state.
    pub fn list(&self) -> Vec<ComponentInfo> {
        self.components()
            .iter()
            .filter_map(|n| self.whois(n))
            .collect()
    }

    /// Adds a supervisor named `name` (under `options`' parent, default the root). Deploy its
    /// children next with [`ComponentOptions::supervisor`]; a child supervisor's place among
    /// its parent's children is its place in this call order.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when the name is taken or the parent does not exist.
    pub fn add_supervisor(&self, name: &str, options: SupervisorOptions) -> Result<(), Error> {
        self.supervision.add_supervisor(name, options)
    }

    /// Watches the component named `name` from a plain thread: each time an instance of it
    /// goes down, the returned [`Watch`] gets a [`Down`](crate::Down). Watching a component
    /// that is down for good delivers its `Down` at once.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when no component has that name.
    pub fn watch(&self, name: &str) -> Result<Watch, Error> {
        let (tx, rx) = channel::unbounded();
        let id = self.registry.watch(name, Watcher::Channel(tx))?;
        Ok(Watch { id, rx })
    }

    /// Ends a watch (made here or by a component); `false` if it had ended already.
    pub fn unwatch(&self, id: WatchId) -> bool {
        self.registry.unwatch(id)
    }

    /// Deploys an interval agent in one line: every `period`, on its own reactor, it calls
    /// `produce` with the tick number (1, 2, ...) and publishes what it returns on `topic`
    /// (`None`: nothing this tick). [`Agent::signal`] makes it produce once more at once.
    ///
    /// Backpressure is handled explicitly, by counting and skipping: a subscriber that
    /// refuses an event (full mailbox) misses that event, and the count goes to
    /// [`AgentStats::refused`]; with no subscriber at all the event is skipped and counted in
    /// [`AgentStats::no_subscriber`]. The agent never blocks and never queues events of its
    /// own. It is `permanent`: restarted after a panic in `produce` (its tick count starts
    /// again).
    ///
    /// # Errors
    ///
    /// As [`deploy_with`](Runtime::deploy_with); [`Error::InvalidTopic`] for a malformed or
    /// wildcard topic; [`Error::InvalidConfig`] for a zero period.
    ///
    /// # Examples
    ///
    /// ```
    /// use reactorium::{Message, Runtime};
    /// use std::time::Duration;
    ///
    /// let rt = Runtime::new()?;
    /// let ticks = rt.bus().subscribe_inbox("clock.tick", 16)?;
    /// let agent = rt.deploy_interval("ticker", Duration::from_millis(10), "clock.tick",
    ///     |n| Some(Message::typed(n)))?;
    /// rt.start()?;
    /// let first = ticks.recv_timeout(Duration::from_secs(5))?;
    /// assert_eq!(first.get::<u64>(), Some(&1));
    /// assert!(agent.stats().produced >= 1);
    /// # Ok::<(), anyhow::Error>(())
    /// ```
    pub fn deploy_interval<F>(
        &self,
        name: &str,
        period: Duration,
        topic: &str,
        produce: F,
    ) -> Result<Agent, Error>
    where
        F: Fn(u64) -> Option<Message> + Send + Sync + 'static,
    {
        Topic::new(topic)?;
        if period.is_zero() {
            return Err(Error::InvalidConfig {
                reason: format!("agent `{name}`: the period must be above zero"),
            });
        }
        let (factory, parts) = agent::IntervalAgent::factory(Arc::new(produce), topic, period);
        let options = ComponentOptions::new()
            .mailbox(16)
            .restart(Restart::Permanent);
        let reactor = self.deploy_with(name, options, factory)?;
        Ok(parts.into_agent(reactor))
    }

    /// Why the runtime failed, when its root supervisor exceeded its restart intensity: every
    /// component was then stopped. `None` while it has not.
    pub fn failure(&self) -> Option<String> {
        self.supervision.failure()
    }

    /// Names of the deployed components, in deploy order.
    pub fn components(&self) -> Vec<Name> {
        self.lock()
            .components
            .iter()
            .map(|d| d.name.clone())
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the lifecycle lock. A reactor thread may not wait for it: the operation holding
    /// it may be waiting for that very reactor (a `start` launching it, a `stop` draining it).
    fn lifecycle(&self) -> Result<MutexGuard<'_, ()>, Error> {
        if reactor::on_reactor_thread() {
            return match self.lifecycle.try_lock() {
                Ok(g) => Ok(g),
                Err(std::sync::TryLockError::Poisoned(e)) => Ok(e.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => Err(Error::WouldDeadlock),
            };
        }
        Ok(self.lifecycle.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Deploys a component with default options; see [`deploy_with`](Runtime::deploy_with).
    ///
    /// # Errors
    ///
    /// As [`deploy_with`](Runtime::deploy_with).
    pub fn deploy<C, F>(&self, name: &str, factory: F) -> Result<Reactor, Error>
    where
        C: Component,
        F: Fn() -> C + Send + Sync + 'static,
    {
        self.deploy_with(name, ComponentOptions::new(), factory)
    }

    /// Deploys a component under the unique `name`, built by `factory` on its own reactor
    /// thread. Its subscriptions take effect at once: messages sent before [`start`](Runtime::start)
    /// wait in the mailbox. On a running runtime the component starts before this returns.
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidConfig`] for a bad name (empty, whitespace, leading `$`) or capacity;
    /// - [`Error::InvalidTopic`] for a malformed subscription pattern;
    /// - [`Error::AlreadyDeployed`] when the name is taken;
    /// - [`Error::InvalidState`] after [`stop`](Runtime::stop);
    /// - [`Error::StartFailed`], [`Error::Spawn`] when the runtime is running and the
    ///   component cannot start (it is then removed again).
    pub fn deploy_with<C, F>(
        &self,
        name: &str,
        options: ComponentOptions,
        factory: F,
    ) -> Result<Reactor, Error>
    where
        C: Component,
        F: Fn() -> C + Send + Sync + 'static,
    {
        if name.is_empty() || name.starts_with('$') || name.chars().any(char::is_whitespace) {
            return Err(Error::InvalidConfig {
                reason: format!(
                    "component name {name:?} must be non-empty, without whitespace or leading `$`"
                ),
            });
        }
        let capacity = options.mailbox.unwrap_or(self.config.mailbox_capacity);
        let max_pending = options.max_pending.unwrap_or(self.config.max_pending);
        check_capacity("mailbox capacity", capacity)?;
        check_capacity("max pending", max_pending)?;
        let patterns = options
            .subscriptions
            .iter()
            .map(Pattern::new)
            .collect::<Result<Vec<_>, _>>()?;
        let supervisor = self
            .supervision
            .supervisor_name(options.supervisor.as_deref())?;
        let drain_timeout = options.drain_timeout.unwrap_or(self.config.drain_timeout);
        let settings = Settings {
            clock: self.config.clock.clone(),
            await_after_failure: options.restart != Restart::Temporary,
            await_after_normal: options.restart == Restart::Permanent,
            on_error: options.on_error,
            idle_timeout: options.idle_timeout,
            drain_timeout,
        };

        let _life = self.lifecycle()?;
        let mut st = self.lock();
        if st.phase == Phase::Stopped {
            return Err(Error::InvalidState {
                reason: "the runtime has stopped; deploy into a new one",
            });
        }
        let name: Name = Name::from(name);
        let config = MailboxConfig {
            capacity,
            max_pending,
            overflow: options.overflow,
            handler_latency: options
                .handler_latency
                .unwrap_or(self.config.handler_latency),
        };
        let reactor = Reactor::new(name.clone(), config, &self.bus);
        {
            let mut reg = self
                .registry
                .by_name
                .write()
                .unwrap_or_else(|e| e.into_inner());
            if reg.contains_key(&name) {
                return Err(Error::AlreadyDeployed { name });
            }
            let entry = Entry::new(name.clone(), reactor.clone(), options.restart, supervisor);
            reg.insert(name.clone(), Arc::new(entry));
        }
        self.supervision
            .adopt(&name, options.supervisor.as_deref().unwrap_or("root"));
        for p in &patterns {
            self.bus.subscribe_reactor(p.as_str(), &reactor)?;
        }
        let deployed = Deployed {
            name,
            reactor: reactor.clone(),
            drain_timeout,
            launcher: Arc::new(Launcher {
                factory: Arc::new(factory) as Factory<C>,
                settings,
            }),
            thread: None,
        };
        let launching = (st.phase == Phase::Running).then(|| deployed.launching());
        st.components.push(deployed);
        let index = st.components.len() - 1;
        drop(st);
        if let Some(l) = launching {
            // The lifecycle lock keeps `index` valid: only deploy pushes, and stop waits.
            match self.launch(&l) {
                Ok(t) => self.lock().components[index].thread = Some(t),
                Err(e) => {
                    let d = self.lock().components.remove(index);
                    self.forget(&d);
                    return Err(e);
                }
            }
        }
        Ok(reactor)
    }

    fn forget(&self, d: &Deployed) {
        self.bus.unsubscribe_reactor(&d.reactor);
        self.registry
            .by_name
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&d.name);
        self.supervision.disown(&d.name);
        reactor::abandon_unstarted(&d.reactor);
    }

    /// Spawns a reactor thread and waits until its component has started. No lock but the
    /// lifecycle lock is held, so the component's `start` may read the runtime.
    fn launch(&self, l: &Launching) -> Result<ReactorThread, Error> {
        let (tx, rx) = channel::bounded(1);
        let (handle, done) = l.launcher.launch(self, l, tx)?;
        // The thread always reports (it catches panics in the factory and in `start`); a
        // closed channel would mean it died some other way.
        let outcome = rx
            .recv()
            .unwrap_or_else(|_| Err("the reactor thread died during start".into()));
        match outcome {
            Ok(()) => {
                if let Some(e) = self.registry.get(&l.name) {
                    e.set_state(ComponentState::Running);
                }
                Ok((handle, done))
            }
            Err(reason) => {
                let _ = handle.join();
                self.registry.never_ran(
                    &l.name,
                    DownReason::Failed(format!("start failed: {reason}")),
                );
                Err(Error::StartFailed {
                    component: l.name.clone(),
                    reason,
                })
            }
        }
    }

    /// Starts every deployed component, in deploy order: each one's `start` has returned
    /// before the next is built.
    ///
    /// # Errors
    ///
    /// [`Error::StartFailed`] or [`Error::Spawn`] when a component cannot start: the
    /// components already started are stopped again (in reverse order) and the runtime is
    /// left stopped. [`Error::InvalidState`] when called twice or after `stop`.
    pub fn start(&self) -> Result<(), Error> {
        let life = self.lifecycle()?;
        {
            let mut st = self.lock();
            if st.phase != Phase::Created {
                return Err(Error::InvalidState {
                    reason: "start may be called once, on a runtime not yet started",
                });
            }
            st.phase = Phase::Running;
        }
        let mut index = 0;
        loop {
            let launching = {
                let st = self.lock();
                match st.components.get(index) {
                    None => break,
                    Some(d) if d.thread.is_some() => None,
                    Some(d) => Some(d.launching()),
                }
            };
            if let Some(l) = launching {
                match self.launch(&l) {
                    Ok(t) => self.lock().components[index].thread = Some(t),
                    Err(e) => {
                        self.stop_locked(&life);
                        return Err(e);
                    }
                }
            }
            index += 1;
        }
        Ok(())
    }

    fn is_stopped(&self) -> bool {
        self.lock().phase == Phase::Stopped
    }

    /// Stops the runtime; see `# Shutdown` on [`Runtime`]. Returns what each component did.
    ///
    /// Called from one of this runtime's own components, `stop` cannot wait for that
    /// component: it asks it to stop and reports it with `joined: false`; the others are
    /// stopped and joined as usual.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] when the runtime was stopped already; [`Error::WouldDeadlock`]
    /// when called on a reactor thread while another start, deploy or stop of this runtime is
    /// in progress (it may be waiting for that very reactor).
    pub fn stop(&self) -> Result<ShutdownReport, Error> {
        let life = self.lifecycle()?;
        if self.lock().phase == Phase::Stopped {
            return Err(Error::InvalidState {
                reason: "the runtime was stopped already",
            });
        }
        Ok(self.stop_locked(&life))
    }

    /// The stop itself, under the lifecycle lock the caller holds.
    fn stop_locked(&self, _life: &MutexGuard<'_, ()>) -> ShutdownReport {
        let started = Instant::now();
        // Front-ends first: no new requests, and those in flight are answered while every
        // component still runs.
        let http = self.front_ends.stop_all();
        // No restart from now on: a reactor waiting for one ends at its stop request.
        self.supervision.begin_shutdown();
        // The components stay listed while they stop (`list`, `stats` see them go down);
        // only their threads are taken out, to be joined without the lock.
        let mut deployed: Vec<Deployed> = {
            let mut st = self.lock();
            st.phase = Phase::Stopped;
            st.components
                .iter_mut()
                .map(|d| Deployed {
                    name: d.name.clone(),
                    reactor: d.reactor.clone(),
                    drain_timeout: d.drain_timeout,
                    launcher: Arc::clone(&d.launcher),
                    thread: d.thread.take(),
                })
                .collect()
        };
        let me = thread::current().id();
        let mut components = Vec::with_capacity(deployed.len());
        for d in deployed.iter_mut().rev() {
            let mut report = ComponentReport::new(d.name.clone());
            match d.thread.take() {
                Some((handle, done)) => {
                    d.reactor.close(Instant::now() + d.drain_timeout);
                    if handle.thread().id() == me {
                        // Our own reactor: it stops once this handler returns.
                        report.joined = false;
                    } else {
                        match done.recv_timeout(d.drain_timeout + JOIN_GRACE) {
                            Ok(exit) => {
                                let _ = handle.join();
                                report.record(&exit);
                            }
                            Err(_) => report.joined = false,
                        }
                    }
                }
                None => {
                    report.abandoned = reactor::abandon_unstarted(&d.reactor);
                    self.registry.never_ran(&d.name, DownReason::Shutdown);
                }
            }
            report.restarts = d.reactor.stats().restarts;
            report.dropped = d.reactor.stats().dropped;
            components.push(report);
        }
        // Every reactor has sent its last `Down`: the watchers get them, then the thread ends.
        self.supervision.finish();
        let pool: PoolShutdown = self.pool.shutdown(self.config.drain_timeout);
        ShutdownReport {
            components,
            pool,
            bus: self.bus.stats(),
            http,
            elapsed: started.elapsed(),
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // No lifecycle call can be under way (each borrows the runtime), so this takes the
        // lifecycle lock at once, even on a reactor thread.
        let _ = self.stop();
    }
}
