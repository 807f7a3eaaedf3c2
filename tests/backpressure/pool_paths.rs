//! Paths into a worker pool's queue: `WorkerPool::execute`, and
//! `Context::spawn_blocking` from a component (whose item is the job with its continuation,
//! `UnsentJob`).

use std::sync::Arc;
use std::time::Duration;

use crossbeam::channel::{self, Receiver, Sender};
use reactorium::{
    ComponentOptions, Context, Error, Reactor, Runtime, SendError, UnsentJob, WorkerPool,
};

use crate::helpers::{block_worker, on_driver, seq_of, sorted, Driver, Job, Jobs};
use crate::support::{wait_until, DropCounter, SOON};
use crate::{EnqueuePath, Gone, Tally, CAP};

// ---- WorkerPool::execute -------------------------------------------------------------

/// A one-thread pool (queue `CAP`) whose worker is held by a blocker job.
pub(crate) struct PoolExecute {
    jobs: Jobs,
    pool: WorkerPool,
    gate: Option<Sender<()>>,
}

impl PoolExecute {
    pub(crate) fn new() -> PoolExecute {
        let pool = WorkerPool::builder()
            .num_threads(1)
            .queue_capacity(CAP)
            .thread_name("bp-pool")
            .build()
            .unwrap();
        let gate = Some(block_worker(&pool));
        PoolExecute {
            jobs: Jobs::new(),
            pool,
            gate,
        }
    }
}

impl EnqueuePath for PoolExecute {
    type Item = Job;

    fn full_target(&self) -> &str {
        "bp-pool"
    }

    fn gone(&self) -> Gone {
        Gone::Stopped("bp-pool")
    }

    fn drops(&self) -> DropCounter {
        self.jobs.drops.clone()
    }

    fn make(&mut self, seq: u64) -> Job {
        self.jobs.make(seq)
    }

    fn identify(&mut self, job: Job) -> (u64, Option<Job>) {
        (self.jobs.identify(job), None)
    }

    fn try_one(&mut self, job: Job) -> Result<(), SendError<Job>> {
        self.pool.execute(job)
    }

    fn make_room(&mut self) {
        self.gate = None;
        wait_until("the worker takes a queued job", || {
            self.pool.stats().queued < CAP
        });
    }

    fn stop_then_try(&mut self, job: Job) -> Result<(), SendError<Job>> {
        // Shut down without waiting: the worker may still be held, the queue still full.
        self.pool.shutdown(Duration::ZERO);
        let r = self.try_one(job);
        self.gate = None;
        r
    }

    fn finish(mut self, tally: &Tally) {
        self.gate = None;
        self.pool.shutdown(SOON);
        let ran = self.jobs.wait_ran_elsewhere(tally.accepted.len());
        assert_eq!(
            sorted(ran),
            sorted(tally.accepted.clone()),
            "each accepted job ran once"
        );
        let stats = self.pool.stats();
        wait_until("the pool counts every job it ran", || {
            self.pool.stats().completed == 1 + tally.accepted.len() as u64
        });
        assert_eq!(stats.rejected, tally.full, "each Backpressure counted once");
        assert_eq!(stats.panicked, 0);
    }
}

// ---- Context::spawn_blocking -------------------------------------------------------------

/// A continuation as the path makes it: it reports its own sequence number when called.
pub(crate) type JobThen =
    Box<dyn for<'c> FnOnce(&mut Driver, &mut Context<'c, Driver>, Result<(), Error>) + Send>;

/// A "driver" component offloading to a one-thread pool (queue `CAP`) whose worker is held.
/// Its `max_pending` is larger than the queue, so the pool is what fills.
pub(crate) struct ContextSpawn {
    jobs: Jobs,
    /// Each continuation's token (a tracked message it owns), to count its drops.
    thens: DropCounter,
    made: u64,
    rt: Runtime,
    driver: Reactor,
    gate: Option<Sender<()>>,
    /// `(seq, the job's result came)` from each continuation called.
    outcomes_tx: Sender<(u64, bool)>,
    outcomes: Receiver<(u64, bool)>,
    commands: u64,
}

impl ContextSpawn {
    pub(crate) fn new() -> ContextSpawn {
        let rt = Runtime::builder()
            .worker_threads(1)
            .worker_queue_capacity(CAP)
            .thread_name_prefix("bp-")
            .build()
            .unwrap();
        let driver = rt
            .deploy_with(
                "driver",
                ComponentOptions::new().max_pending(4 * CAP),
                || Driver {
                    at_stop: Arc::default(),
                },
            )
            .unwrap();
        rt.start().unwrap();
        let gate = Some(block_worker(rt.pool()));
        let (outcomes_tx, outcomes) = channel::unbounded();
        ContextSpawn {
            jobs: Jobs::new(),
            thens: DropCounter::default(),
            made: 0,
            rt,
            driver,
            gate,
            outcomes_tx,
            outcomes,
            commands: 0,
        }
    }
}

impl EnqueuePath for ContextSpawn {
    type Item = UnsentJob<Job, JobThen>;

    fn full_target(&self) -> &str {
        "bp-worker"
    }

    fn gone(&self) -> Gone {
        Gone::Stopped("bp-worker")
    }

    fn drops(&self) -> DropCounter {
        self.jobs.drops.clone()
    }

    fn make(&mut self, seq: u64) -> UnsentJob<Job, JobThen> {
        self.made += 1;
        let token = self.thens.message(seq);
        let out = self.outcomes_tx.clone();
        UnsentJob {
            job: self.jobs.make(seq),
            then: Box::new(move |_, _, done| {
                let _ = out.send((seq_of(&token), done.is_ok()));
            }),
        }
    }

    /// Runs the job here (it reports its number); the continuation, which cannot be called
    /// off the driver, is dropped uncalled.
    fn identify(
        &mut self,
        item: UnsentJob<Job, JobThen>,
    ) -> (u64, Option<UnsentJob<Job, JobThen>>) {
        (self.jobs.identify(item.job), None)
    }

    fn try_one(
        &mut self,
        item: UnsentJob<Job, JobThen>,
    ) -> Result<(), SendError<UnsentJob<Job, JobThen>>> {
        self.commands += 1;
        on_driver(&self.driver, move |ctx| {
            let (before, places) = (ctx.pending(), ctx.reactor().stats().pending);
            let r = ctx.spawn_blocking(item.job, item.then);
            // A refused job leaves no continuation and no reserved place behind.
            let more = usize::from(r.is_ok());
            assert_eq!(ctx.pending(), before + more);
            assert_eq!(ctx.reactor().stats().pending, places + more);
            r.map(drop)
        })
    }

    fn make_room(&mut self) {
        self.gate = None;
        wait_until("the worker takes a queued job", || {
            self.rt.pool().stats().queued < CAP
        });
    }

    fn stop_then_try(
        &mut self,
        item: UnsentJob<Job, JobThen>,
    ) -> Result<(), SendError<UnsentJob<Job, JobThen>>> {
        self.rt.pool().shutdown(Duration::ZERO);
        let r = self.try_one(item);
        self.gate = None;
        r
    }

    fn finish(mut self, tally: &Tally) {
        self.gate = None;
        let ran = self.jobs.wait_ran_elsewhere(tally.accepted.len());
        assert_eq!(
            sorted(ran),
            sorted(tally.accepted.clone()),
            "each accepted job ran once"
        );
        // Each accepted job's continuation runs once, on the driver, with the job's result:
        // the continuation made with that job.
        let mut called = Vec::new();
        for _ in &tally.accepted {
            let (seq, ok) = self
                .outcomes
                .recv_timeout(SOON)
                .expect("each accepted job's continuation runs");
            assert!(ok, "the job's result came back");
            called.push(seq);
        }
        assert_eq!(sorted(called), sorted(tally.accepted.clone()));
        let report = self.rt.stop().unwrap();
        assert!(
            self.outcomes.try_recv().is_err(),
            "no continuation ran twice"
        );
        let c = report.component("driver").unwrap();
        assert_eq!(c.handled, self.commands);
        assert!(c.failure.is_none() && c.abandoned == 0, "{report:?}");
        let stats = self.rt.pool().stats();
        assert_eq!(stats.rejected, tally.full, "each Backpressure counted once");
        let driver = self.driver.stats();
        assert_eq!((driver.late_jobs, driver.pending), (0, 0));
        // Every continuation made was dropped exactly once: run, or handed back and dropped.
        assert_eq!(
            self.thens.dropped() as u64,
            self.made,
            "continuations made vs dropped"
        );
    }
}
