//! The lifecycle: deploy, start and stop, under the lifecycle lock. See "Shutdown" and
//! "Locks" in `README.md` beside this file.

use std::sync::{Arc, MutexGuard};
use std::thread;
use std::time::Instant;

use crossbeam::channel;

use super::builder::check_capacity;
use super::registry::{Entry, ReactorThread, Spawner};
use super::report::{ComponentReport, ShutdownReport};
use super::{ComponentOptions, ComponentState, Phase, Restart, Runtime, JOIN_GRACE};
use crate::logs;
use crate::reactor::{self, Component, Core, Factory, MailboxConfig, Reactor, Settings, System};
use crate::types::{DownReason, Error, Name, Pattern, DEAD_LETTER_TOPIC};
use crate::worker::PoolShutdown;

/// Spawns `e`'s reactor thread; its component is built and started there, and says how that
/// went on `started`.
fn spawn_reactor(
    rt: &Runtime,
    e: &Entry,
    started: channel::Sender<Result<(), String>>,
) -> Result<ReactorThread, Error> {
    let core = Core {
        reactor: e.reactor.clone(),
        bus: rt.bus.clone(),
        pool: rt.pool.clone(),
        system: Arc::clone(&rt.supervision) as Arc<dyn System>,
        settings: e.settings.clone(),
    };
    let thread = format!("{}{}", rt.config.thread_name_prefix, e.name);
    let builder = thread::Builder::new()
        .name(thread.clone())
        .stack_size(rt.config.reactor_stack_size);
    let (done_tx, done_rx) = channel::bounded(1);
    e.spawn(core, builder, started, done_tx)
        .map(|h| (h, done_rx))
        .map_err(|source| Error::Spawn { thread, source })
}

impl Runtime {
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
        let capacity = options
            .mailbox_capacity
            .unwrap_or(self.config.mailbox_capacity);
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
            keep_payloads: options.keep_failed_payloads,
        };

        let _life = self.lifecycle()?;
        // Only start and stop change the phase, and they wait for the lifecycle lock.
        let running = match self.lock().phase {
            Phase::Stopped => {
                return Err(Error::InvalidState {
                    reason: "the runtime has stopped; deploy into a new one",
                })
            }
            phase => phase == Phase::Running,
        };
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
        let factory: Factory<C> = Arc::new(factory);
        let spawner: Spawner = Box::new(move |core, builder, started, done| {
            reactor::spawn(core, Arc::clone(&factory), builder, started, done)
        });
        let entry = Entry::new(
            name,
            reactor.clone(),
            options.restart,
            supervisor,
            settings,
            spawner,
        );
        // From here the component is listed, found by name and in its supervisor's group; if
        // the deploy fails below, `forget` takes all of it back before the error returns.
        let entry = self.registry.insert(entry)?;
        for p in &patterns {
            if let Err(e) = self.bus.subscribe_reactor(p.as_str(), &reactor) {
                self.forget(&entry);
                return Err(e);
            }
        }
        if running {
            match self.launch(&entry) {
                Ok(t) => entry.set_thread(t),
                Err(e) => {
                    self.forget(&entry);
                    return Err(e);
                }
            }
        }
        Ok(reactor)
    }

    /// Takes back a deploy that failed: its subscriptions, its registry entry (and with it its
    /// place in the supervision tree), and what was queued for it.
    fn forget(&self, e: &Entry) {
        self.bus.unsubscribe_reactor(&e.reactor);
        self.registry.remove(&e.name);
        reactor::abandon_unstarted(&e.reactor);
    }

    /// Spawns a reactor thread and waits until its component has started. No lock but the
    /// lifecycle lock is held, so the component's `start` may read the runtime.
    fn launch(&self, e: &Entry) -> Result<ReactorThread, Error> {
        let (tx, rx) = channel::bounded(1);
        let (handle, done) = spawn_reactor(self, e, tx)?;
        // The thread always reports (it catches panics in the factory and in `start`); a
        // closed channel would mean it died some other way.
        let outcome = rx
            .recv()
            .unwrap_or_else(|_| Err("the reactor thread died during start".into()));
        match outcome {
            Ok(()) => {
                e.set_state(ComponentState::Running);
                Ok((handle, done))
            }
            Err(reason) => {
                let _ = handle.join();
                self.registry
                    .never_ran(e, DownReason::Failed(format!("start failed: {reason}")));
                Err(Error::StartFailed {
                    component: e.name.clone(),
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
        // The lifecycle lock keeps the list as it is: only deploy adds to it.
        for e in self.registry.entries() {
            if e.has_thread() {
                continue;
            }
            match self.launch(&e) {
                Ok(t) => e.set_thread(t),
                Err(err) => {
                    self.stop_locked(&life);
                    return Err(err);
                }
            }
        }
        tracing::info!(
            target: logs::RUNTIME,
            components = self.registry.entries().len(),
            "runtime started"
        );
        Ok(())
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
        let report = self.stop_locked(&life);
        log_stopped(&report);
        Ok(report)
    }

    /// The stop itself, under the lifecycle lock the caller holds. See "Shutdown" in
    /// `README.md` beside this file.
    fn stop_locked(&self, _life: &MutexGuard<'_, ()>) -> ShutdownReport {
        let started = Instant::now();
        // Front-ends first: no new requests, and those in flight are answered while every
        // component still runs.
        let front_ends = self.front_ends.stop_all();
        // No restart from now on: a reactor waiting for one ends at its stop request.
        self.supervision.begin_shutdown();
        self.lock().phase = Phase::Stopped;
        // The components stay listed while they stop (`list`, `stats` see them go down);
        // each one's thread is taken out of its entry, to be joined without a lock.
        let (others, listeners) = self.stop_order();
        let mut components = Vec::with_capacity(others.len() + listeners.len());
        // One drain deadline for the whole stop: each component's drain timeout, counted from
        // here. A component not yet asked keeps running, so its queue drains meanwhile.
        let begun = Instant::now();
        for e in &others {
            components.push(self.stop_component(e, begun + e.settings.drain_timeout));
        }
        // Then the dead-letter subscribers, with a drain of their own for the letters the
        // others' stop produced (their abandoned messages).
        let letters_begun = Instant::now();
        for e in &listeners {
            components.push(self.stop_component(e, letters_begun + e.settings.drain_timeout));
        }
        // Every reactor has sent its last `Down`: the watchers get them, then the thread ends.
        self.supervision.finish();
        // Queued jobs have until the stop's drain deadline, threads the grace after it.
        let pool_until = grace_after(begun + self.config.drain_timeout);
        let pool: PoolShutdown = self
            .pool
            .shutdown(pool_until.saturating_duration_since(Instant::now()));
        ShutdownReport {
            components,
            pool,
            bus: self.bus.stats(),
            front_ends,
            elapsed: started.elapsed(),
        }
    }

    /// The order `stop` asks components in, as two runs: every other component, then the
    /// dead-letter subscribers (components subscribed to a pattern that matches
    /// [`DEAD_LETTER_TOPIC`]), each run in reverse deploy order. A dead-letter subscriber that
    /// never started cannot handle a letter, so it keeps its place among the others.
    fn stop_order(&self) -> (Vec<Arc<Entry>>, Vec<Arc<Entry>>) {
        let subscribed = self.bus.mailboxes_subscribed(DEAD_LETTER_TOPIC);
        let mut entries = self.registry.entries();
        entries.reverse();
        let (listeners, others) = entries
            .into_iter()
            .partition(|e| e.has_thread() && subscribed.iter().any(|m| e.reactor.is_recipient(m)));
        (others, listeners)
    }

    /// Asks one component to stop, its drain ending at `deadline`, and waits for its thread
    /// until the grace after that deadline (or after now, if the deadline has passed: a
    /// component asked late still gets the grace to run its `stop`). Reports what the thread
    /// did, or, for a thread left running, what was known when the wait ended.
    fn stop_component(&self, e: &Entry, deadline: Instant) -> ComponentReport {
        let mut report = ComponentReport::new(e.name.clone());
        match e.take_thread() {
            Some((handle, done)) => {
                e.reactor.close(deadline);
                if handle.thread().id() == thread::current().id() {
                    // Our own reactor: it drains and stops once this handler returns.
                    report.left_running(&e.reactor.accounts(), e.reactor.len());
                } else {
                    match done.recv_deadline(grace_after(deadline)) {
                        Ok(exit) => {
                            let _ = handle.join();
                            report.record(&exit, &e.reactor.accounts());
                        }
                        Err(_) => {
                            // A handler (or continuation, or `stop`) that does not return.
                            // Past its deadline the thread would abandon its queue anyway
                            // when it does: dead-letter it now, while the dead-letter
                            // subscribers still run.
                            reactor::abandon_queued(&e.reactor);
                            match done.try_recv() {
                                // It returned meanwhile.
                                Ok(exit) => {
                                    let _ = handle.join();
                                    report.record(&exit, &e.reactor.accounts());
                                }
                                Err(_) => report.left_running(&e.reactor.accounts(), 0),
                            }
                        }
                    }
                }
            }
            None => {
                reactor::abandon_unstarted(&e.reactor);
                report.count(&e.reactor.accounts());
                self.registry.never_ran(e, DownReason::Shutdown);
            }
        }
        let stats = e.reactor.stats();
        report.restarts = stats.restarts;
        report.dropped = stats.dropped;
        report
    }
}

/// When `stop` stops waiting for a thread whose drain ends at `deadline`: the grace after it,
/// or after now if it has passed.
fn grace_after(deadline: Instant) -> Instant {
    deadline.max(Instant::now()) + JOIN_GRACE
}

/// The runtime's last events: a component whose thread was not joined, then the summary.
fn log_stopped(report: &ShutdownReport) {
    for c in report.components.iter().filter(|c| !c.joined) {
        tracing::warn!(
            target: logs::RUNTIME,
            component = %c.name,
            handled = c.handled,
            "component's thread not joined: still busy past its drain deadline, or stopped \
             from its own handler"
        );
    }
    tracing::info!(
        target: logs::RUNTIME,
        components = report.components.len(),
        abandoned = report.components.iter().map(|c| c.abandoned).sum::<u64>(),
        elapsed_ms = u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX),
        "runtime stopped"
    );
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // No lifecycle call can be under way (each borrows the runtime), so this takes the
        // lifecycle lock at once, even on a reactor thread.
        let _ = self.stop();
    }
}
