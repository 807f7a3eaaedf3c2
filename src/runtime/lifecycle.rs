//! The lifecycle: deploy, start and stop, under the lifecycle lock. See "Shutdown" and
//! "Locks" in `README.md` beside this file.

use std::sync::{Arc, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver};

use super::builder::check_capacity;
use super::registry::Entry;
use super::report::{ComponentReport, ShutdownReport};
use super::{ComponentOptions, ComponentState, Phase, Restart, Runtime, JOIN_GRACE};
use crate::reactor::{
    self, Component, Core, Exit, Factory, MailboxConfig, Reactor, Settings, System,
};
use crate::types::{DownReason, Error, Name, Pattern};
use crate::worker::PoolShutdown;

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
            router: rt.bus.router(),
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

pub(super) struct Deployed {
    pub(super) name: Name,
    pub(super) reactor: Reactor,
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
        let reactor = Reactor::new(name.clone(), config, Arc::downgrade(&self.bus.router()));
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
