//! The fixed-size worker pool: N named threads, a bounded job queue, panic-safe workers.
//! Depends on `types` and `logs` only; the reactor above offloads to it
//! (`Context::spawn_blocking`).
//!
//! The bound lives here, not in the channel: one atomic word holds the number of queued jobs
//! and a closed flag, so [`WorkerPool::execute`] decides "full", "closed" or "accepted"
//! with a single `fetch_add` *before* the job is boxed, and can hand the caller's own closure
//! back. The channel behind it is crossbeam's unbounded list (it allocates per block of slots,
//! not `capacity` slots up front); it can never hold more than `queue_capacity` jobs because
//! every push is admitted by the counter first. `threadpool` was not used: its queue is an
//! unbounded channel that cannot refuse work (see `docs/decisions.md`).

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, Sender};

use crate::logs::{self, mark_worker_thread, take_panic_location, RateLimit};
use crate::types::{panic_message, Error, Name, SendError};

/// A job as the queue holds it.
type Job = Box<dyn FnOnce() + Send + 'static>;

enum Work {
    Run(Job),
    Exit,
}

const CLOSED: usize = 1 << (usize::BITS - 1);

/// Builds a [`WorkerPool`], in the shape of rayon's `ThreadPoolBuilder`.
#[derive(Debug, Clone)]
pub struct WorkerPoolBuilder {
    num_threads: usize,
    queue_capacity: usize,
    thread_name: String,
    stack_size: Option<usize>,
}

impl Default for WorkerPoolBuilder {
    fn default() -> Self {
        WorkerPoolBuilder {
            num_threads: thread::available_parallelism().map_or(2, |n| n.get()),
            queue_capacity: 1024,
            thread_name: "worker".to_owned(),
            stack_size: None,
        }
    }
}

impl WorkerPoolBuilder {
    /// Number of worker threads. Default: the machine's available parallelism (2 if unknown).
    ///
    /// `0` builds a pool without threads, for a program that never offloads: it holds no
    /// thread, and refuses every job with [`Error::Stopped`] naming the pool (the job handed
    /// back), as a pool that has shut down does, since no job will ever run on it.
    pub fn num_threads(mut self, n: usize) -> Self {
        self.num_threads = n;
        self
    }

    /// How many jobs may wait in the queue (not counting those running). Default: 1024.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n;
        self
    }

    /// Thread name prefix; threads are named `{prefix}-{index}`. Default: `worker`.
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Self {
        self.thread_name = prefix.into();
        self
    }

    /// Stack size of each worker thread in bytes. Default: the standard library's (2 MiB).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Spawns the threads.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when `queue_capacity` is 0 or absurdly large;
    /// [`Error::Spawn`] (with the OS error as `source()`) when a thread cannot be created,
    /// after the threads already created have been stopped and joined.
    pub fn build(self) -> Result<WorkerPool, Error> {
        if self.queue_capacity == 0 || self.queue_capacity >= CLOSED / 2 {
            return Err(Error::InvalidConfig {
                reason: format!(
                    "worker queue capacity {} is out of range",
                    self.queue_capacity
                ),
            });
        }
        let (tx, rx) = channel::unbounded();
        // A pool without threads is closed from the start: a job admitted to it would never
        // run.
        let closed = if self.num_threads == 0 { CLOSED } else { 0 };
        let shared = Arc::new(Shared {
            name: Name::from(self.thread_name.as_str()),
            state: AtomicUsize::new(closed),
            capacity: self.queue_capacity,
            tx,
            busy: AtomicUsize::new(0),
            completed: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            panicked: AtomicU64::new(0),
            threads: Mutex::new(Vec::new()),
            num_threads: self.num_threads,
            refused: RateLimit::new(),
        });
        let pool = WorkerPool { shared };
        for i in 0..self.num_threads {
            let name = format!("{}-{i}", self.thread_name);
            let mut b = thread::Builder::new().name(name.clone());
            if let Some(s) = self.stack_size {
                b = b.stack_size(s);
            }
            let (rx, shared) = (rx.clone(), Arc::clone(&pool.shared));
            match b.spawn(move || {
                mark_worker_thread();
                worker_loop(&shared, &rx);
            }) {
                Ok(h) => pool.shared.lock_threads().push(h),
                Err(source) => {
                    pool.shutdown(Duration::from_secs(5));
                    return Err(Error::Spawn {
                        thread: name,
                        source,
                    });
                }
            }
        }
        Ok(pool)
    }
}

struct Shared {
    name: Name,
    // Jobs admitted and not yet taken by a worker, plus the CLOSED bit.
    state: AtomicUsize,
    capacity: usize,
    tx: Sender<Work>,
    busy: AtomicUsize,
    completed: AtomicU64,
    rejected: AtomicU64,
    panicked: AtomicU64,
    threads: Mutex<Vec<JoinHandle<()>>>,
    num_threads: usize,
    /// Rate limit of the "queue full" event.
    refused: RateLimit,
}

impl Shared {
    fn lock_threads(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.threads.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn worker_loop(shared: &Shared, rx: &Receiver<Work>) {
    // After `Exit`, a worker keeps going while the admission count says jobs are still on
    // their way: a submitter can be admitted just before `shutdown` closes the pool and push
    // its job just after the `Exit`s, and an accepted job must run. Once closed, the count
    // only falls, so this ends.
    let mut exiting = false;
    loop {
        let work = if exiting {
            match rx.recv_timeout(Duration::from_millis(1)) {
                Ok(w) => w,
                Err(_) if shared.state.load(Ordering::Acquire) & !CLOSED == 0 => return,
                Err(_) => continue,
            }
        } else {
            // `recv` fails only when every sender is gone, and `Shared` owns one.
            match rx.recv() {
                Ok(w) => w,
                Err(_) => return,
            }
        };
        match work {
            Work::Run(job) => {
                shared.state.fetch_sub(1, Ordering::AcqRel);
                shared.busy.fetch_add(1, Ordering::Relaxed);
                // A panicking job must not kill its worker. Jobs from components catch their
                // own panic and report it to the submitter; this catch is for plain jobs.
                // One that ran in its submitter's span caught and reported its panic there.
                match catch_unwind(AssertUnwindSafe(job)) {
                    Ok(()) if !JOB_PANICKED.with(Cell::get) => {}
                    Ok(()) => {
                        JOB_PANICKED.with(|p| p.set(false));
                        shared.panicked.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(p) => {
                        shared.panicked.fetch_add(1, Ordering::Relaxed);
                        log_job_panic(&*p);
                    }
                }
                shared.busy.fetch_sub(1, Ordering::Relaxed);
                shared.completed.fetch_add(1, Ordering::Relaxed);
            }
            // A second `Exit` belongs to a worker still blocked in `recv`: pass it on.
            Work::Exit if exiting => {
                let _ = shared.tx.send(Work::Exit);
            }
            Work::Exit => exiting = true,
        }
        if exiting && shared.state.load(Ordering::Acquire) & !CLOSED == 0 {
            return;
        }
    }
}

/// A fixed-size pool of worker threads with a bounded job queue.
///
/// Cloning the pool clones a handle; all clones share the threads.
/// [`execute`](WorkerPool::execute) never blocks, and can be called from any thread,
/// reactors included. Inside a component, prefer
/// [`Context::spawn_blocking`](crate::Context::spawn_blocking), which brings the result back to
/// the component's own reactor.
///
/// # Examples
///
/// ```
/// use reactorium::WorkerPool;
/// use std::sync::mpsc;
///
/// let pool = WorkerPool::builder().num_threads(2).queue_capacity(8).build()?;
/// let (tx, rx) = mpsc::channel();
/// pool.execute(move || tx.send(6 * 7).unwrap())?;
/// assert_eq!(rx.recv()?, 42);
/// pool.shutdown(std::time::Duration::from_secs(1));
/// # Ok::<(), anyhow::Error>(())
/// ```
///
/// # Panics in jobs
///
/// A panicking job does not kill its worker; the panic is caught and counted
/// ([`WorkerPoolStats::panicked`]). Jobs submitted through `Context::spawn_blocking` report the
/// panic to their continuation as [`Error::Panicked`].
///
/// # Shutdown
///
/// [`shutdown`](WorkerPool::shutdown) refuses new jobs ([`SendError::Stopped`]), lets the workers
/// finish every job already queued, and joins them, waiting at most the given time. A job that
/// is still running then cannot be killed: its thread is left to finish on its own and
/// reported in [`PoolShutdown::unjoined`]. Dropping the last handle does not stop the threads;
/// the [`Runtime`](crate::Runtime) that owns a pool shuts it down in its own `stop`.
#[derive(Clone)]
pub struct WorkerPool {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerPool")
            .field("name", &self.shared.name)
            .field("stats", &self.stats())
            .finish()
    }
}

/// A snapshot of a pool's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkerPoolStats {
    /// Threads in the pool.
    pub threads: usize,
    /// Jobs waiting in the queue.
    pub queued: usize,
    /// The queue's capacity.
    pub capacity: usize,
    /// Workers running a job now.
    pub busy: usize,
    /// Jobs finished (panicked ones included).
    pub completed: u64,
    /// Submissions refused with `Backpressure`.
    pub rejected: u64,
    /// Jobs that panicked.
    pub panicked: u64,
}

/// What [`WorkerPool::shutdown`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolShutdown {
    /// Threads joined.
    pub joined: usize,
    /// Threads still running a job when the deadline passed, left to finish on their own.
    pub unjoined: usize,
}

/// An admitted place in the queue; see [`WorkerPool::try_reserve`].
pub(crate) struct Slot<'a> {
    pool: &'a Shared,
    used: bool,
}

impl Slot<'_> {
    /// Queues `job` in the reserved place. Never blocks.
    #[inline]
    pub(crate) fn execute(mut self, job: Job) {
        self.used = true;
        // The channel is unbounded and never disconnected (`Shared` owns a sender), so this
        // cannot fail. If `shutdown` closed the pool after this slot was admitted, the job
        // lands behind the `Exit`s; workers keep taking jobs while admitted ones are
        // outstanding (see `worker_loop`), so it still runs.
        let _ = self.pool.tx.send(Work::Run(job));
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if !self.used {
            self.pool.state.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl WorkerPool {
    /// A builder with the defaults documented on each setter.
    pub fn builder() -> WorkerPoolBuilder {
        WorkerPoolBuilder::default()
    }

    /// Never blocks. Queues `job` to run on a worker thread.
    ///
    /// # Errors
    ///
    /// - [`SendError::Backpressure`] when `queue_capacity` jobs are waiting; `job` is handed back.
    /// - [`SendError::Stopped`] after [`shutdown`](WorkerPool::shutdown), and always from a pool
    ///   built with no threads; `job` is handed back.
    #[inline]
    pub fn execute<F>(&self, job: F) -> Result<(), SendError<F>>
    where
        F: FnOnce() + Send + 'static,
    {
        match self.try_reserve() {
            Ok(slot) => {
                // With no subscriber ever installed there is no span to carry: the job goes
                // as it is (one relaxed load decides).
                let job: Job = if tracing::dispatcher::has_been_set() {
                    in_current_span(job)
                } else {
                    Box::new(job)
                };
                slot.execute(job);
                Ok(())
            }
            Err(e) => Err(e.with(job)),
        }
    }

    /// Admits one job or refuses, before the job is boxed.
    pub(crate) fn try_reserve(&self) -> Result<Slot<'_>, SendError<()>> {
        let s = &*self.shared;
        let prev = s.state.fetch_add(1, Ordering::AcqRel);
        if prev & CLOSED != 0 {
            s.state.fetch_sub(1, Ordering::AcqRel);
            return Err(SendError::Stopped {
                target: s.name.clone(),
                rejected: (),
            });
        }
        if prev >= s.capacity {
            s.state.fetch_sub(1, Ordering::AcqRel);
            s.rejected.fetch_add(1, Ordering::Relaxed);
            logs::limited!(
                s.refused,
                tracing::Level::DEBUG,
                target: logs::WORKER,
                recipient = %s.name,
                capacity = s.capacity,
                "worker queue full, job refused"
            );
            return Err(SendError::Backpressure {
                target: s.name.clone(),
                capacity: s.capacity,
                rejected: (),
            });
        }
        Ok(Slot {
            pool: s,
            used: false,
        })
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> WorkerPoolStats {
        let s = &*self.shared;
        WorkerPoolStats {
            threads: s.num_threads,
            queued: s.state.load(Ordering::Relaxed) & !CLOSED,
            capacity: s.capacity,
            busy: s.busy.load(Ordering::Relaxed),
            completed: s.completed.load(Ordering::Relaxed),
            rejected: s.rejected.load(Ordering::Relaxed),
            panicked: s.panicked.load(Ordering::Relaxed),
        }
    }

    /// Refuses new jobs, lets queued jobs finish, and joins the threads within `timeout`.
    /// Calling it again is harmless and joins nothing more. See the type's `# Shutdown`.
    pub fn shutdown(&self, timeout: Duration) -> PoolShutdown {
        let s = &*self.shared;
        let first = s.state.fetch_or(CLOSED, Ordering::AcqRel) & CLOSED == 0;
        let handles = std::mem::take(&mut *s.lock_threads());
        if first {
            for _ in 0..s.num_threads {
                let _ = s.tx.send(Work::Exit);
            }
        }
        join_within(handles, Instant::now() + timeout)
    }
}

thread_local! {
    /// Set by a job run in its submitter's span that caught its own panic (and reported it
    /// there), for the worker to count it.
    static JOB_PANICKED: Cell<bool> = const { Cell::new(false) };
}

/// `job`, boxed to run in the calling thread's span (a component's, on its reactor thread),
/// where its panic is reported too.
#[inline(never)]
fn in_current_span<F: FnOnce() + Send + 'static>(job: F) -> Job {
    let span = tracing::Span::current();
    Box::new(move || {
        let _entered = span.enter();
        if let Err(p) = catch_unwind(AssertUnwindSafe(job)) {
            log_job_panic(&*p);
            JOB_PANICKED.with(|f| f.set(true));
        }
    })
}

/// Reports a job's panic, caught on its worker thread, at `warn` on `reactorium::worker` (in
/// the job's span: its submitter's).
pub(crate) fn log_job_panic(payload: &(dyn std::any::Any + Send)) {
    let message = panic_message(payload);
    let location = take_panic_location(&message);
    tracing::warn!(
        target: logs::WORKER,
        reason = %message,
        location = location.as_deref(),
        "job panicked"
    );
}

/// Joins each thread that finishes before `deadline`; leaves the rest running.
pub(crate) fn join_within<T>(handles: Vec<JoinHandle<T>>, deadline: Instant) -> PoolShutdown {
    let mut out = PoolShutdown {
        joined: 0,
        unjoined: 0,
    };
    let me = thread::current().id();
    for h in handles {
        if h.thread().id() == me {
            // Shut down from one of its own threads: that thread cannot wait for itself.
            out.unjoined += 1;
            continue;
        }
        while !h.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        if h.is_finished() {
            let _ = h.join();
            out.joined += 1;
        } else {
            out.unjoined += 1;
        }
    }
    out
}
