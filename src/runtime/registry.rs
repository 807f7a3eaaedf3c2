//! The registry: every deployed component by name, with its life state, and the watches on
//! them. The bus finds reactors here (`ReactorProvider`); reactors reach watches through the
//! `System` trait the supervisor implements.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crossbeam::channel::{Receiver, RecvTimeoutError};

use super::supervisor::Restart;
use crate::bus::{Deliver, ReactorProvider};
use crate::reactor::{on_reactor_thread, Control, Reactor, WatchId, Watcher};
use crate::types::{Down, DownReason, Error, Name};

/// Where a component is in its life, as the registry sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ComponentState {
    /// Deployed; the runtime has not started it yet.
    Deployed,
    /// Its instance is running.
    Running,
    /// Its instance went down and its supervisor will start a new one (perhaps after a
    /// backoff). Messages sent meanwhile wait in its mailbox.
    Restarting,
    /// Down for good after an orderly stop (its own, or the runtime's).
    Stopped,
    /// Down for good after a failure its supervisor did not (or could not) restart.
    Failed,
}

impl ComponentState {
    fn from_u8(v: u8) -> ComponentState {
        match v {
            0 => ComponentState::Deployed,
            1 => ComponentState::Running,
            2 => ComponentState::Restarting,
            3 => ComponentState::Stopped,
            _ => ComponentState::Failed,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            ComponentState::Deployed => 0,
            ComponentState::Running => 1,
            ComponentState::Restarting => 2,
            ComponentState::Stopped => 3,
            ComponentState::Failed => 4,
        }
    }

    /// `true` for `Stopped` and `Failed`: no instance will run again.
    pub fn is_down_for_good(self) -> bool {
        matches!(self, ComponentState::Stopped | ComponentState::Failed)
    }
}

/// What the registry knows of one component ([`Runtime::whois`](crate::Runtime::whois),
/// [`Runtime::list`](crate::Runtime::list)).
#[derive(Clone, Debug)]
pub struct ComponentInfo {
    /// Its name.
    pub name: Name,
    /// Its state now.
    pub state: ComponentState,
    /// Its restart mode.
    pub restart: Restart,
    /// The supervisor it belongs to (`"root"` for the runtime's own).
    pub supervisor: Name,
    /// How many times a fresh instance was built after the first.
    pub restarts: u64,
    /// Why its last instance went down, if one did.
    pub last_down: Option<DownReason>,
    /// Its reactor, to [`execute`](Reactor::execute) on directly.
    pub reactor: Reactor,
}

/// One registered component.
pub(crate) struct Entry {
    pub(crate) name: Name,
    pub(crate) reactor: Reactor,
    pub(crate) restart: Restart,
    pub(crate) supervisor: Name,
    state: AtomicU8,
    last_down: Mutex<Option<DownReason>>,
}

impl Entry {
    pub(crate) fn new(name: Name, reactor: Reactor, restart: Restart, supervisor: Name) -> Self {
        Entry {
            name,
            reactor,
            restart,
            supervisor,
            state: AtomicU8::new(ComponentState::Deployed.to_u8()),
            last_down: Mutex::new(None),
        }
    }

    pub(crate) fn state(&self) -> ComponentState {
        ComponentState::from_u8(self.state.load(Ordering::Acquire))
    }

    pub(crate) fn set_state(&self, s: ComponentState) {
        self.state.store(s.to_u8(), Ordering::Release);
    }

    pub(crate) fn went_down(&self, reason: &DownReason, state: ComponentState) {
        *self.last_down.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.clone());
        self.set_state(state);
    }

    pub(crate) fn info(&self) -> ComponentInfo {
        ComponentInfo {
            name: self.name.clone(),
            state: self.state(),
            restart: self.restart,
            supervisor: self.supervisor.clone(),
            restarts: self.reactor.stats().restarts,
            last_down: self
                .last_down
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            reactor: self.reactor.clone(),
        }
    }
}

/// Components by name, and the watches on them.
#[derive(Default)]
pub(crate) struct Registry {
    pub(crate) by_name: RwLock<HashMap<Name, Arc<Entry>>>,
    watches: Mutex<Watches>,
}

#[derive(Default)]
struct Watches {
    next: u64,
    /// target → its watches (id, watcher, the watching component if it is one).
    by_target: HashMap<Name, Vec<(WatchId, Watcher, Option<Name>)>>,
}

impl ReactorProvider for Registry {
    fn mailbox(&self, name: &str) -> Option<Arc<dyn Deliver>> {
        self.get(name).map(|e| e.reactor.recipient())
    }
}

impl Registry {
    pub(crate) fn reactor(&self, name: &str) -> Option<Reactor> {
        self.get(name).map(|e| e.reactor.clone())
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<Entry>> {
        self.by_name
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    fn watches(&self) -> std::sync::MutexGuard<'_, Watches> {
        self.watches.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a watch on `target`. A target down for good gets its `Down` delivered at once and
    /// no watch is kept.
    pub(crate) fn watch(&self, target: &str, watcher: Watcher) -> Result<WatchId, Error> {
        let entry = self.get(target).ok_or_else(|| Error::NotFound {
            name: target.to_owned(),
        })?;
        let by = match &watcher {
            Watcher::Reactor(r) => Some(Name::from(r.name())),
            Watcher::Channel(_) => None,
        };
        let mut w = self.watches();
        w.next += 1;
        let id = WatchId(w.next);
        // Under the watches lock: a final Down is delivered either here or by `notify`.
        let state = entry.state();
        if state.is_down_for_good() {
            let reason = entry.info().last_down.unwrap_or(DownReason::Shutdown);
            deliver(
                &watcher,
                Down {
                    name: entry.name.clone(),
                    reason,
                    restarting: false,
                },
            );
            return Ok(id);
        }
        w.by_target
            .entry(entry.name.clone())
            .or_default()
            .push((id, watcher, by));
        Ok(id)
    }

    pub(crate) fn unwatch(&self, id: WatchId) -> bool {
        let mut w = self.watches();
        for list in w.by_target.values_mut() {
            if let Some(i) = list.iter().position(|(wid, _, _)| *wid == id) {
                list.remove(i);
                return true;
            }
        }
        false
    }

    /// Tells every watcher of `down.name`. A final `Down` ends the watches on it.
    pub(crate) fn notify(&self, down: &Down) {
        let mut w = self.watches();
        let list = if down.restarting {
            w.by_target.get(&down.name).cloned().unwrap_or_default()
        } else {
            w.by_target.remove(&down.name).unwrap_or_default()
        };
        for (_, watcher, _) in &list {
            deliver(watcher, down.clone());
        }
    }

    /// A component that never ran (its first start failed, or the runtime stopped before
    /// starting it) is down for good: record it and tell its watchers, as the supervisor does
    /// for one that ran.
    pub(crate) fn never_ran(&self, name: &str, reason: DownReason) {
        let Some(entry) = self.get(name) else { return };
        if entry.state().is_down_for_good() {
            return;
        }
        let state = if reason.is_failure() {
            ComponentState::Failed
        } else {
            ComponentState::Stopped
        };
        entry.went_down(&reason, state);
        self.notify(&Down {
            name: entry.name.clone(),
            reason,
            restarting: false,
        });
    }

    /// The instance of `name` went down: the watches it made end with it.
    pub(crate) fn drop_watches_by(&self, name: &Name) {
        let mut w = self.watches();
        for list in w.by_target.values_mut() {
            list.retain(|(_, _, by)| by.as_ref() != Some(name));
        }
    }
}

fn deliver(watcher: &Watcher, down: Down) {
    match watcher {
        Watcher::Reactor(r) => r.command(Control::Down(down)),
        // A dropped `Watch` handle: nobody to tell.
        Watcher::Channel(tx) => {
            let _ = tx.send(down);
        }
    }
}

/// A plain thread's watch on a component ([`Runtime::watch`](crate::Runtime::watch)): its
/// [`Down`] notices, in order.
///
/// Dropping it does not end the watch by itself (use [`Runtime::unwatch`](crate::Runtime::unwatch));
/// notices for a dropped handle are discarded.
#[derive(Debug)]
pub struct Watch {
    pub(crate) id: WatchId,
    pub(crate) rx: Receiver<Down>,
}

impl Watch {
    /// The watch's id, for [`Runtime::unwatch`](crate::Runtime::unwatch).
    pub fn id(&self) -> WatchId {
        self.id
    }

    /// Never blocks: the next notice, if one came.
    pub fn try_recv(&self) -> Option<Down> {
        self.rx.try_recv().ok()
    }

    /// Blocks until a notice comes or `timeout` passes.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`]; [`Error::Stopped`] once the watch has ended and every notice was
    /// read; [`Error::WouldDeadlock`] on a reactor thread.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Down, Error> {
        if on_reactor_thread() {
            return Err(Error::WouldDeadlock);
        }
        self.rx.recv_timeout(timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => Error::Timeout { after: timeout },
            RecvTimeoutError::Disconnected => Error::Stopped {
                target: "watch".into(),
                rejected: (),
            },
        })
    }
}
