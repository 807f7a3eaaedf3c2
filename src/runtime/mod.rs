//! The runtime: the `Runtime` type and its reads (this file); its builder and per-component
//! options (`builder.rs`); deploy / start / stop (`lifecycle.rs`); the registry of components
//! with their states and watches, which the bus reaches reactors through as `ReactorProvider`
//! (`registry.rs`); supervision, its policy (`policy.rs`) and its thread (`supervisor.rs`);
//! agents, stats and the shutdown report. Depends on every other module.
//!
//! The stop sequence, the supervision protocol and the locks are described in `README.md`
//! beside this file.

mod agent;
mod builder;
mod front_end;
mod lifecycle;
mod policy;
mod registry;
mod report;
mod stats;
mod supervisor;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crossbeam::channel;

pub use agent::{Agent, AgentStats};
pub use builder::{ComponentOptions, RuntimeBuilder};
pub use front_end::{AdminHandle, FrontEnd, FrontEndReport, Readiness};
pub use policy::{Restart, RestartBackoff, Strategy, SupervisorOptions};
pub use registry::{ComponentInfo, ComponentState, Watch};
pub use report::{ComponentReport, ShutdownReport};
pub use stats::{ComponentStats, RuntimeStats};

use crate::bus::Bus;
use crate::reactor::{WatchId, Watcher};
use crate::types::Error;
use crate::worker::WorkerPool;
use registry::Registry;
use supervisor::Supervision;

/// How long `stop` waits for a reactor thread beyond its drain deadline (or beyond the moment
/// it asked it to stop, when that deadline had passed already) before it gives up on joining
/// it (a handler that never returns cannot be interrupted). Also the worker pool's, beyond the
/// stop's drain deadline.
const JOIN_GRACE: Duration = Duration::from_secs(1);

#[derive(Default, PartialEq, Eq, Clone, Copy, Debug)]
enum Phase {
    #[default]
    Created,
    Running,
    Stopped,
}

/// What the runtime keeps beside its registry: where it is in its life. (The components
/// themselves live in the registry, their one owner.)
#[derive(Default)]
struct State {
    phase: Phase,
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
/// let rt = Runtime::builder().worker_threads(1).build()?;
/// rt.deploy_with("doubler", ComponentOptions::new().subscribe("math.double"), || Doubler)?;
/// rt.start()?;
/// let reply = rt.bus()
///     .request("math.double", Message::typed(21u64), Duration::from_secs(1))?
///     .wait()?;
/// assert_eq!(reply.get::<u64>(), Some(&42));
/// let report = rt.stop()?;
/// assert_eq!(report.component("doubler").unwrap().handled, 1);
/// # Ok::<(), anyhow::Error>(())
/// ```
///
/// # Shutdown
///
/// [`stop`](Runtime::stop) stops the front-ends first (those [`attach`](Runtime::attach)ed,
/// each until its graceful drain is done), then the components, one after the other in reverse deploy order: each is asked
/// once the one deployed after it has stopped, so each component's `stop` runs after those of the
/// components deployed after it, and what a stopping component sends one deployed before it
/// still lands there. Asked, a reactor refuses new messages
/// ([`SendError::Stopped`](crate::SendError::Stopped)), drains its
/// mailbox until it is empty or its drain deadline passes, gives pending continuations
/// [`Error::Stopped`], calls the component's `stop`, and exits; messages left are
/// dead-lettered and counted as abandoned.
///
/// The drain deadline is one for the whole stop: `drain_timeout`
/// ([`RuntimeBuilder::drain_timeout`], or the component's own) after the components begin to
/// stop, however many there are. A component not yet asked keeps running meanwhile, so its
/// queue drains too; one asked after the deadline (those after it used the time) handles
/// nothing more. Components subscribed to the dead-letter topic
/// ([`DEAD_LETTER_TOPIC`](crate::DEAD_LETTER_TOPIC), also through `$sys.>` or `>`) are
/// stopped after every other, with a drain deadline of their own counted from then, so they
/// receive and handle the dead letters of the others' stop.
///
/// `stop` waits for each thread up to one second after its drain deadline (or after it was
/// asked, if the deadline had passed). A handler that never returns cannot be interrupted:
/// such a thread is left running and reported with `joined: false`, with the count of messages
/// it had handled, and what was still queued for it is dead-lettered before `stop` goes on.
/// So `stop` returns within the front-ends' shutdown, `drain_timeout` and a second (twice
/// `drain_timeout` and two seconds with dead-letter subscribers), plus a second for each
/// thread left running. The worker pool goes last: queued jobs may run until the drain
/// deadline, and its threads are joined within a second after it (or after the components
/// have stopped). `stop` returns a [`ShutdownReport`].
///
/// Dropping a runtime that is running stops it the same way (and discards the report), so a
/// dropped runtime leaves no thread behind unless a handler or job never returns. Dropping one
/// that was never started dead-letters whatever was queued for its components.
///
/// A component may hold the runtime and call it. Reading it (`component`, `components`, `bus`)
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
    // Front-ends attached with `attach`; stopped before any component.
    front_ends: Arc<front_end::FrontEnds>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let phase = self.lock().phase;
        f.debug_struct("Runtime")
            .field("phase", &phase)
            .field("components", &self.registry.names())
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

    /// The component named `name`, as the registry knows it now: its state, restart mode,
    /// supervisor, restarts, last `Down` reason, and its [`Reactor`](crate::Reactor) handle (to send to it
    /// directly, or read its counters). `None` when no component has that name.
    ///
    /// # Examples
    ///
    /// ```
    /// use reactorium::{BoxError, Component, ComponentState, Context, Message, Runtime};
    ///
    /// struct Quiet;
    /// impl Component for Quiet {
    ///     fn handle(&mut self, _m: Message, _c: &mut Context<'_, Self>) -> Result<(), BoxError> {
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let rt = Runtime::new()?;
    /// rt.deploy("quiet", || Quiet)?;
    /// let quiet = rt.component("quiet").expect("deployed");
    /// assert_eq!(quiet.state, ComponentState::Deployed);
    /// quiet.reactor.send(Message::empty())?; // waits in the mailbox until `start`
    /// assert_eq!(quiet.reactor.len(), 1);
    /// assert!(rt.component("loud").is_none());
    /// # Ok::<(), anyhow::Error>(())
    /// ```
    pub fn component(&self, name: &str) -> Option<ComponentInfo> {
        self.registry.get(name).map(|e| e.info())
    }

    /// Every deployed component, in deploy order, as [`component`](Runtime::component) gives
    /// each.
    pub fn components(&self) -> Vec<ComponentInfo> {
        self.registry.entries().iter().map(|e| e.info()).collect()
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
    /// that is down for good delivers its `Down` at once. The watch lasts until the `Watch` is
    /// dropped, [`unwatch`](Runtime::unwatch) ends it, or the component is down for good.
    ///
    /// # Errors
    ///
    /// [`Error::NoComponent`] when no component has that name.
    pub fn watch(&self, name: &str) -> Result<Watch, Error> {
        let (tx, rx) = channel::unbounded();
        let id = self.registry.watch(name, Watcher::Channel(tx))?;
        Ok(Watch::new(id, rx, &self.registry))
    }

    /// Ends a watch (made here or by a component); `false` if it had ended already.
    pub fn unwatch(&self, id: WatchId) -> bool {
        self.registry.unwatch(id)
    }

    /// Why the runtime failed, when its root supervisor exceeded its restart intensity: every
    /// component was then stopped. `None` while it has not.
    pub fn failure(&self) -> Option<String> {
        self.supervision.failure()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_stopped(&self) -> bool {
        self.lock().phase == Phase::Stopped
    }
}
