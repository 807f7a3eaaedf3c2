//! The registry: every deployed component, in deploy order and by name, and the watches on
//! them. It is the one owner of a component's entry (its reactor, restart mode, supervisor,
//! life state, how to spawn it, its thread): the lifecycle, the supervisor and the bus all
//! read it here. The bus finds reactors through it (`ReactorProvider`); reactors reach
//! watches through the `System` trait the supervisor implements.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, Weak};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam::channel::{Receiver, RecvTimeoutError, Sender};

use super::policy::Restart;
use crate::bus::{Deliver, ReactorProvider};
use crate::reactor::{on_reactor_thread, Control, Core, Exit, Reactor, Settings, WatchId, Watcher};
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

/// What the registry knows of one component ([`Runtime::component`](crate::Runtime::component),
/// [`Runtime::components`](crate::Runtime::components)): a snapshot, taken when asked.
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
    /// Its reactor, to [`send`](Reactor::send) to directly.
    pub reactor: Reactor,
}

/// Spawns a component's reactor thread with its factory (whose type only `deploy` knew):
/// `reactor::spawn` with the factory bound.
pub(crate) type Spawner = Box<
    dyn Fn(
            Core,
            thread::Builder,
            Sender<Result<(), String>>,
            Sender<Exit>,
        ) -> io::Result<JoinHandle<()>>
        + Send
        + Sync,
>;

/// A running reactor thread: its handle, and the channel its `Exit` arrives on.
pub(crate) type ReactorThread = (JoinHandle<()>, Receiver<Exit>);

/// One deployed component: everything the runtime keeps about it, in one place. The fields
/// are fixed at deploy but three: its state (written by the lifecycle and the supervisor),
/// why it last went down, and its reactor thread (set and taken under the lifecycle lock).
pub(crate) struct Entry {
    pub(crate) name: Name,
    pub(crate) reactor: Reactor,
    pub(crate) restart: Restart,
    /// The supervisor it belongs to: its place in the supervision tree, with `seq`.
    pub(crate) supervisor: Name,
    /// Its deploy sequence number, given by [`Registry::insert`] and never reused: orders it
    /// among its supervisor's children (see `Supervision::children`).
    pub(crate) seq: u64,
    /// How its reactor runs an instance (clock, restart waits, error policy, idle, drain).
    pub(crate) settings: Settings,
    spawner: Spawner,
    thread: Mutex<Option<ReactorThread>>,
    state: AtomicU8,
    last_down: Mutex<Option<DownReason>>,
}

impl Entry {
    pub(crate) fn new(
        name: Name,
        reactor: Reactor,
        restart: Restart,
        supervisor: Name,
        settings: Settings,
        spawner: Spawner,
    ) -> Self {
        Entry {
            name,
            reactor,
            restart,
            supervisor,
            seq: 0,
            settings,
            spawner,
            thread: Mutex::new(None),
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

    /// Spawns its reactor thread on `core`; see [`Spawner`].
    pub(crate) fn spawn(
        &self,
        core: Core,
        builder: thread::Builder,
        started: Sender<Result<(), String>>,
        done: Sender<Exit>,
    ) -> io::Result<JoinHandle<()>> {
        (self.spawner)(core, builder, started, done)
    }

    fn thread(&self) -> MutexGuard<'_, Option<ReactorThread>> {
        self.thread.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `true` once its reactor thread was started (and until `stop` takes it).
    pub(crate) fn has_thread(&self) -> bool {
        self.thread().is_some()
    }

    pub(crate) fn set_thread(&self, t: ReactorThread) {
        *self.thread() = Some(t);
    }

    /// Takes its reactor thread out, to join it.
    pub(crate) fn take_thread(&self) -> Option<ReactorThread> {
        self.thread().take()
    }
}

/// Every deployed component: the one owner of its [`Entry`]. The bus finds reactors here,
/// the lifecycle starts and stops them in this order, the supervisor reads its groups here.
#[derive(Default)]
pub(crate) struct Registry {
    table: RwLock<Table>,
    /// The next deploy sequence number. Taken under the table's write lock; read alone by
    /// `add_supervisor`, to place a supervisor after the components deployed before it.
    next_seq: AtomicU64,
    watches: Mutex<Watches>,
}

/// The entries in deploy order, and the index that finds one by name. Both change together,
/// under the write lock, in `insert` and `remove` only.
#[derive(Default)]
struct Table {
    entries: Vec<Arc<Entry>>,
    /// name → position in `entries`.
    index: HashMap<Name, usize>,
}

#[derive(Default)]
struct Watches {
    next: u64,
    /// target → its watches (id, watcher, the watching component if it is one).
    by_target: HashMap<Name, Vec<(WatchId, Watcher, Option<Name>)>>,
}

impl ReactorProvider for Registry {
    // On every `Bus::send_to`: one read lock, one hash lookup, one `Arc` clone.
    fn mailbox(&self, name: &str) -> Option<Arc<dyn Deliver>> {
        let t = self.table();
        t.index.get(name).map(|&i| t.entries[i].reactor.recipient())
    }
}

impl Registry {
    fn table(&self) -> RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<Entry>> {
        let t = self.table();
        t.index.get(name).map(|&i| Arc::clone(&t.entries[i]))
    }

    /// Adds `entry` last, with the next deploy sequence number.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyDeployed`] when its name is taken.
    pub(crate) fn insert(&self, mut entry: Entry) -> Result<Arc<Entry>, Error> {
        let mut t = self.table.write().unwrap_or_else(|e| e.into_inner());
        if t.index.contains_key(&entry.name) {
            return Err(Error::AlreadyDeployed { name: entry.name });
        }
        entry.seq = self.next_seq.fetch_add(1, Ordering::AcqRel);
        let entry = Arc::new(entry);
        let at = t.entries.len();
        t.index.insert(entry.name.clone(), at);
        t.entries.push(Arc::clone(&entry));
        Ok(entry)
    }

    /// Removes the entry named `name` (a deploy that failed takes its own back).
    pub(crate) fn remove(&self, name: &str) -> Option<Arc<Entry>> {
        let mut t = self.table.write().unwrap_or_else(|e| e.into_inner());
        let at = t.index.remove(name)?;
        let entry = t.entries.remove(at);
        let Table { entries, index } = &mut *t;
        for e in &entries[at..] {
            if let Some(i) = index.get_mut(&e.name) {
                *i -= 1;
            }
        }
        Some(entry)
    }

    /// Every entry, in deploy order.
    pub(crate) fn entries(&self) -> Vec<Arc<Entry>> {
        self.table().entries.clone()
    }

    /// Every name, in deploy order.
    pub(crate) fn names(&self) -> Vec<Name> {
        self.table()
            .entries
            .iter()
            .map(|e| e.name.clone())
            .collect()
    }

    /// The components of the supervisor named `supervisor`, in deploy order, each with its
    /// deploy sequence number.
    pub(crate) fn members(&self, supervisor: &str) -> Vec<(u64, Name)> {
        self.table()
            .entries
            .iter()
            .filter(|e| &*e.supervisor == supervisor)
            .map(|e| (e.seq, e.name.clone()))
            .collect()
    }

    /// The sequence number the next deploy will get.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq.load(Ordering::Acquire)
    }

    fn watches(&self) -> std::sync::MutexGuard<'_, Watches> {
        self.watches.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a watch on `target`. A target down for good gets its `Down` delivered at once and
    /// no watch is kept.
    pub(crate) fn watch(&self, target: &str, watcher: Watcher) -> Result<WatchId, Error> {
        let entry = self.get(target).ok_or_else(|| Error::NoComponent {
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
    pub(crate) fn never_ran(&self, entry: &Entry, reason: DownReason) {
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
        // A `Watch` being dropped (its drop has not unwatched yet): nobody to tell.
        Watcher::Channel(tx) => {
            let _ = tx.send(down);
        }
    }
}

/// A plain thread's watch on a component ([`Runtime::watch`](crate::Runtime::watch)): its
/// [`Down`] notices, in order.
///
/// Dropping it ends the watch, as dropping an [`Inbox`](crate::Inbox) unsubscribes it;
/// [`Runtime::unwatch`](crate::Runtime::unwatch) ends it earlier, and the watch also ends with
/// the final notice of a component down for good.
pub struct Watch {
    id: WatchId,
    rx: Receiver<Down>,
    // Held weakly: a watch does not keep a dropped runtime's registry alive.
    registry: Weak<Registry>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("id", &self.id)
            .field("queued", &self.rx.len())
            .finish()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            registry.unwatch(self.id);
        }
    }
}

impl Watch {
    pub(crate) fn new(id: WatchId, rx: Receiver<Down>, registry: &Arc<Registry>) -> Watch {
        Watch {
            id,
            rx,
            registry: Arc::downgrade(registry),
        }
    }

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
            },
        })
    }
}
