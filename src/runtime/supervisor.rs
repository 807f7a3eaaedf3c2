//! Supervision: the supervision tree (supervisors, their strategies and restart logs) and the
//! one supervisor thread per runtime that applies them. The settings themselves are in
//! `policy.rs`. See "Supervision" in `README.md` beside this file.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, RecvTimeoutError, Sender};

use super::policy::{Restart, Strategy, SupervisorOptions};
use super::registry::{ComponentState, Registry};
use crate::logs;
use crate::reactor::{Control, InstanceDown, System, WatchId, Watcher};
use crate::types::{Clock, DeadLetterReason, Down, DownReason, Error, Name, Wake};

/// The root supervisor's name.
pub(crate) const ROOT: &str = "root";

#[derive(Clone, Debug, PartialEq, Eq)]
enum Child {
    Comp(Name),
    Sup(usize),
}

/// A supervisor. Its children are not listed here: its components are the registry entries
/// that name it, and its child supervisors the nodes whose `parent` it is; `place` orders
/// them (see [`Supervision::children`]).
struct Node {
    name: Name,
    parent: Option<usize>,
    opts: SupervisorOptions,
    /// The registry's next deploy sequence number when this supervisor was added: it comes
    /// after the components deployed before it, among its parent's children.
    place: u64,
    /// Restarts within the window, oldest first.
    log: VecDeque<Instant>,
}

#[derive(Default)]
struct Tree {
    nodes: Vec<Node>,
    by_name: HashMap<Name, usize>,
}

enum Event {
    Down(InstanceDown),
    Tick,
    Quit,
}

/// Sends the supervisor thread a tick when a manual clock moves.
struct Ticker(Sender<Event>);

impl Wake for Ticker {
    fn wake(&self) {
        let _ = self.0.send(Event::Tick);
    }
}

/// The supervision tree and the channel to its thread. Reactors reach it as their `System`.
pub(crate) struct Supervision {
    registry: Arc<Registry>,
    tx: Sender<Event>,
    tree: Mutex<Tree>,
    clock: Clock,
    /// How long to wait for a reactor to acknowledge a suspend or a restart.
    ack_timeout: Duration,
    shutting_down: AtomicBool,
    failure: Mutex<Option<String>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    _ticker: Arc<Ticker>,
}

impl System for Supervision {
    fn watch(&self, target: &str, watcher: Watcher) -> Result<WatchId, Error> {
        self.registry.watch(target, watcher)
    }

    fn unwatch(&self, id: WatchId) -> bool {
        self.registry.unwatch(id)
    }

    fn down(&self, down: InstanceDown) {
        let _ = self.tx.send(Event::Down(down));
    }
}

impl Supervision {
    /// The tree with its root, and the thread that acts on it.
    pub(crate) fn start(
        registry: Arc<Registry>,
        clock: Clock,
        root: SupervisorOptions,
        ack_timeout: Duration,
        thread_name: String,
    ) -> Result<Arc<Supervision>, Error> {
        let (tx, rx) = channel::unbounded();
        let ticker = Arc::new(Ticker(tx.clone()));
        let me: Weak<dyn Wake> = Arc::downgrade(&ticker) as _;
        clock.register(me);
        let mut tree = Tree::default();
        tree.nodes.push(Node {
            name: ROOT.into(),
            parent: None,
            opts: root,
            place: 0,
            log: VecDeque::new(),
        });
        tree.by_name.insert(ROOT.into(), 0);
        let sup = Arc::new(Supervision {
            registry,
            tx,
            tree: Mutex::new(tree),
            clock,
            ack_timeout,
            shutting_down: AtomicBool::new(false),
            failure: Mutex::new(None),
            thread: Mutex::new(None),
            _ticker: ticker,
        });
        // The thread holds the tree weakly: dropping the runtime ends it.
        let weak = Arc::downgrade(&sup);
        let handle = thread::Builder::new()
            .name(thread_name.clone())
            .spawn(move || supervise(&weak, &rx))
            .map_err(|source| Error::Spawn {
                thread: thread_name,
                source,
            })?;
        *sup.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
        Ok(sup)
    }

    fn tree(&self) -> MutexGuard<'_, Tree> {
        self.tree.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a supervisor under its parent.
    pub(crate) fn add_supervisor(&self, name: &str, opts: SupervisorOptions) -> Result<(), Error> {
        let mut t = self.tree();
        if t.by_name.contains_key(name) {
            return Err(Error::InvalidConfig {
                reason: format!("a supervisor named `{name}` exists already"),
            });
        }
        let parent = self.find(&t, opts.parent.as_deref())?;
        let i = t.nodes.len();
        t.nodes.push(Node {
            name: name.into(),
            parent: Some(parent),
            opts,
            // Read under the tree lock: places grow with the node index.
            place: self.registry.next_seq(),
            log: VecDeque::new(),
        });
        t.by_name.insert(name.into(), i);
        Ok(())
    }

    fn find(&self, t: &Tree, name: Option<&str>) -> Result<usize, Error> {
        let name = name.unwrap_or(ROOT);
        t.by_name
            .get(name)
            .copied()
            .ok_or_else(|| Error::InvalidConfig {
                reason: format!("no supervisor named `{name}` (add it with `add_supervisor`)"),
            })
    }

    /// Checks that a supervisor exists; its canonical name.
    pub(crate) fn supervisor_name(&self, name: Option<&str>) -> Result<Name, Error> {
        let t = self.tree();
        let i = self.find(&t, name)?;
        Ok(t.nodes[i].name.clone())
    }

    /// The children of `group`, in their order: its components (registry entries naming it,
    /// in deploy order) and its child supervisors (in the order they were added), each
    /// supervisor before the components deployed after it was added.
    ///
    /// Takes the tree lock, then (after releasing it) the registry's read lock: never both.
    fn children(&self, group: usize) -> Vec<Child> {
        let (name, subs) = {
            let t = self.tree();
            let subs: Vec<(u64, usize)> = t
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.parent == Some(group))
                .map(|(i, n)| (n.place, i))
                .collect();
            (t.nodes[group].name.clone(), subs)
        };
        let comps = self.registry.members(&name);
        let mut children = Vec::with_capacity(subs.len() + comps.len());
        let mut subs = subs.into_iter().peekable();
        for (seq, comp) in comps {
            while let Some((_, i)) = subs.next_if(|&(place, _)| place <= seq) {
                children.push(Child::Sup(i));
            }
            children.push(Child::Comp(comp));
        }
        children.extend(subs.map(|(_, i)| Child::Sup(i)));
        children
    }

    /// Why the runtime failed, if its root supervisor gave up.
    pub(crate) fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// From now on nothing is restarted: the runtime is stopping.
    pub(crate) fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// Ends the thread once it has handled every event sent before (the last `Down` notices
    /// of a shutdown among them), and joins it.
    pub(crate) fn finish(&self) {
        self.begin_shutdown();
        let _ = self.tx.send(Event::Quit);
        let handle = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            if h.thread().id() != thread::current().id() {
                let _ = h.join();
            }
        }
    }

    /// A child's name for the logs: a component's, or a nested supervisor's.
    fn child_name(&self, child: &Child) -> Name {
        match child {
            Child::Comp(name) => name.clone(),
            Child::Sup(i) => self.tree().nodes[*i].name.clone(),
        }
    }

    fn stopping(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    // ---- the supervisor thread -----------------------------------------------------------

    fn on_down(&self, d: InstanceDown, delayed: &mut Vec<Delayed>) {
        let Some(entry) = self.registry.get(&d.name) else {
            return;
        };
        // Watches end with the instance that made them.
        self.registry.drop_watches_by(&d.name);
        if !d.awaiting {
            let state = if d.reason.is_failure() {
                ComponentState::Failed
            } else {
                ComponentState::Stopped
            };
            entry.went_down(&d.reason, state);
            self.registry.notify(&Down {
                name: d.name,
                reason: d.reason,
                restarting: false,
            });
            return;
        }
        if self.stopping() {
            // The runtime's stop request ends the waiting reactor; nothing to decide.
            entry.went_down(&d.reason, ComponentState::Restarting);
            return;
        }
        let Some(group) = self.tree().by_name.get(&*entry.supervisor).copied() else {
            return;
        };
        entry.went_down(&d.reason, ComponentState::Restarting);
        self.registry.notify(&Down {
            name: d.name.clone(),
            reason: d.reason.clone(),
            restarting: true,
        });
        let origin = d.name.clone();
        self.child_failed(
            group,
            Child::Comp(d.name),
            &origin,
            &d.reason,
            d.at,
            delayed,
        );
    }

    /// `child` of `group` failed (and is down, waiting): apply the group's strategy. `origin`:
    /// the component whose failure this is (the child itself, or one under it).
    fn child_failed(
        &self,
        group: usize,
        child: Child,
        origin: &Name,
        reason: &DownReason,
        now: Instant,
        delayed: &mut Vec<Delayed>,
    ) {
        let (strategy, delay, gave_up, count, opts) = {
            let mut t = self.tree();
            let node = &mut t.nodes[group];
            let window = node.opts.window;
            node.log.push_back(now);
            while node
                .log
                .front()
                .is_some_and(|&at| now.saturating_duration_since(at) > window)
            {
                node.log.pop_front();
            }
            let count = u32::try_from(node.log.len()).unwrap_or(u32::MAX);
            let gave_up =
                node.opts.strategy == Strategy::Escalate || count > node.opts.max_restarts;
            let opts = (node.name.clone(), node.opts.max_restarts, node.opts.window);
            (
                node.opts.strategy,
                node.opts.backoff.delay(count),
                gave_up,
                count,
                opts,
            )
        };
        let (supervisor, max_restarts, window) = opts;
        let child_name = self.child_name(&child);
        if gave_up {
            if strategy == Strategy::Escalate {
                tracing::warn!(
                    target: logs::SUPERVISOR,
                    supervisor = %supervisor,
                    component = %origin,
                    child = %child_name,
                    reason = %reason,
                    "escalating to the parent supervisor"
                );
            } else {
                tracing::error!(
                    target: logs::SUPERVISOR,
                    supervisor = %supervisor,
                    component = %origin,
                    child = %child_name,
                    reason = %reason,
                    restarts = count,
                    max_restarts,
                    window_ms = millis(window),
                    "supervisor gave up: too many restarts"
                );
            }
            self.group_failed(group, &child, origin, reason, now, delayed);
            return;
        }
        tracing::warn!(
            target: logs::SUPERVISOR,
            supervisor = %supervisor,
            component = %origin,
            child = %child_name,
            reason = %reason,
            restarts = count,
            max_restarts,
            strategy = ?strategy,
            backoff_ms = millis(delay),
            "restarting"
        );
        let children = self.children(group);
        let pos = children.iter().position(|c| *c == child).unwrap_or(0);
        let targets: Vec<Child> = match strategy {
            Strategy::OneForOne | Strategy::Escalate => vec![child.clone()],
            Strategy::AllForOne => children,
            Strategy::RestForOne => children[pos..].to_vec(),
        };
        for t in targets.iter().rev() {
            if *t != child {
                self.suspend(t);
            }
        }
        delayed.push(Delayed {
            at: now + delay,
            targets,
        });
    }

    /// `group` gives up (intensity exceeded, or `Escalate`): every child of it goes down, and
    /// its parent treats it as one failed child; the root fails the runtime instead.
    fn group_failed(
        &self,
        group: usize,
        failed: &Child,
        origin: &Name,
        reason: &DownReason,
        now: Instant,
        delayed: &mut Vec<Delayed>,
    ) {
        let (parent, name) = {
            let t = self.tree();
            let n = &t.nodes[group];
            (n.parent, n.name.clone())
        };
        let children = self.children(group);
        for c in children.iter().rev() {
            if c != failed {
                self.suspend(c);
            }
        }
        match parent {
            Some(p) => self.child_failed(p, Child::Sup(group), origin, reason, now, delayed),
            None => {
                let why = format!("supervisor `{name}` gave up: {reason}");
                tracing::error!(
                    target: logs::SUPERVISOR,
                    supervisor = %name,
                    component = %origin,
                    reason = %why,
                    "runtime failed: every component stops"
                );
                *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(why.clone());
                self.exit_all(&Child::Sup(group), &why);
                delayed.clear();
            }
        }
    }

    /// Every component under `child` goes down for good.
    fn exit_all(&self, child: &Child, why: &str) {
        match child {
            Child::Comp(name) => {
                if let Some(e) = self.registry.get(name) {
                    let dl = match e.state() {
                        ComponentState::Restarting
                            if e.info().last_down.is_some_and(|r| r.is_failure()) =>
                        {
                            DeadLetterReason::Failed(why.to_owned())
                        }
                        _ => DeadLetterReason::Stopped,
                    };
                    e.reactor.command(Control::Exit(dl));
                }
            }
            Child::Sup(i) => {
                let children = self.children(*i);
                for c in children.iter().rev() {
                    self.exit_all(c, why);
                }
            }
        }
    }

    /// Stops a running child (a subtree: its components in reverse order) so that it can be
    /// restarted; its queued messages stay. A temporary component is stopped for good.
    fn suspend(&self, child: &Child) {
        match child {
            Child::Comp(name) => {
                let Some(e) = self.registry.get(name) else {
                    return;
                };
                if e.state() != ComponentState::Running {
                    return;
                }
                let (tx, rx) = channel::bounded(1);
                e.reactor.command(Control::Suspend(tx));
                if rx.recv_timeout(self.ack_timeout).is_err() {
                    // A handler that does not return: the command stays queued and takes
                    // effect when it does. Restarting it then is still ordered after its stop.
                    tracing::warn!(
                        target: logs::SUPERVISOR,
                        component = %name,
                        timeout_ms = millis(self.ack_timeout),
                        "suspend not acknowledged in time, moving on"
                    );
                    return;
                }
                self.registry.drop_watches_by(name);
                if e.restart == Restart::Temporary {
                    e.reactor.command(Control::Exit(DeadLetterReason::Stopped));
                    return;
                }
                e.went_down(&DownReason::Shutdown, ComponentState::Restarting);
                self.registry.notify(&Down {
                    name: e.name.clone(),
                    reason: DownReason::Shutdown,
                    restarting: true,
                });
            }
            Child::Sup(i) => {
                let children = self.children(*i);
                for c in children.iter().rev() {
                    self.suspend(c);
                }
            }
        }
    }

    /// Starts fresh instances of `child` (a subtree: in deploy order), one at a time: each
    /// one's `start` has returned before the next is built.
    fn restart(&self, child: &Child) {
        if self.stopping() {
            return;
        }
        match child {
            Child::Comp(name) => {
                let Some(e) = self.registry.get(name) else {
                    return;
                };
                if e.state() != ComponentState::Restarting {
                    return;
                }
                let (tx, rx) = channel::bounded(1);
                e.reactor.command(Control::Restart(tx));
                match rx.recv_timeout(self.ack_timeout) {
                    Ok(Ok(())) => e.set_state(ComponentState::Running),
                    // A failed start comes back as another `Down`, under the intensity limit
                    // (its reactor reports it).
                    Ok(Err(_)) => {}
                    Err(_) => tracing::warn!(
                        target: logs::SUPERVISOR,
                        component = %name,
                        timeout_ms = millis(self.ack_timeout),
                        "restart not acknowledged in time"
                    ),
                }
            }
            Child::Sup(i) => {
                // A restarted supervisor starts with a clean restart history.
                self.tree().nodes[*i].log.clear();
                let children = self.children(*i);
                for c in &children {
                    self.restart(c);
                }
            }
        }
    }
}

/// A duration as whole milliseconds, for an event's field.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Restarts due at `at`.
struct Delayed {
    at: Instant,
    targets: Vec<Child>,
}

/// The supervisor thread's loop: one event at a time, restarts when their backoff is over.
fn supervise(sup: &Weak<Supervision>, rx: &Receiver<Event>) {
    let mut delayed: Vec<Delayed> = Vec::new();
    loop {
        let wait = {
            let Some(s) = sup.upgrade() else { return };
            delayed
                .iter()
                .map(|d| d.at)
                .min()
                .map(|at| s.clock.park_for(at))
        };
        let event = match wait {
            Some(Some(d)) => rx.recv_timeout(d),
            // Nothing delayed, or a manual clock (it sends a tick when it moves).
            _ => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let Some(s) = sup.upgrade() else { return };
        match event {
            Ok(Event::Down(d)) => s.on_down(d, &mut delayed),
            Ok(Event::Tick) | Err(RecvTimeoutError::Timeout) => {}
            Ok(Event::Quit) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = s.clock.now();
        let (due, later): (Vec<Delayed>, Vec<Delayed>) =
            delayed.drain(..).partition(|d| d.at <= now);
        delayed = later;
        for d in due {
            for t in &d.targets {
                s.restart(t);
            }
        }
    }
}
