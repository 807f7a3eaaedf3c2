//! The worker pool: its bound, panic-safe workers, offloading from components with and without
//! a deadline, named fixed-size threads, and shutdown.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::Result;
use crossbeam::channel::{self, TryRecvError};
use reactorium::{
    BoxError, Component, Context, Error, Message, PoolShutdown, Runtime, SendError, WorkerPool,
};
use support::{
    occupy_worker, on, run_on, runtime, thread_name, threads_named, wait_until, Remote, SOON,
};

#[test]
fn pool_handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<WorkerPool>();
}

// ---- the bound -------------------------------------------------------------------------------

#[test]
fn full_pool_refuses_with_backpressure_and_hands_job_back() -> Result<()> {
    let pool = WorkerPool::builder()
        .num_threads(2)
        .queue_capacity(3)
        .thread_name("wsat")
        .build()?;
    // Both workers busy: from now on only the queue holds jobs.
    let gates = [occupy_worker(&pool)?, occupy_worker(&pool)?];

    let (ran_tx, ran) = channel::unbounded();
    for i in 0..3 {
        let ran_tx = ran_tx.clone();
        pool.execute(move || {
            let _ = ran_tx.send((i, thread_name()));
        })?;
    }
    assert_eq!(pool.stats().queued, 3);

    let refused = ran_tx.clone();
    match pool.execute(move || {
        let _ = refused.send((99, thread_name()));
    }) {
        Err(SendError::Backpressure {
            target,
            capacity,
            rejected,
        }) => {
            assert_eq!((&*target, capacity), ("wsat", 3));
            rejected(); // our job, back in our hands: it runs here
        }
        other => panic!("expected backpressure, got {other:?}"),
    }
    assert_eq!(ran.try_recv()?, (99, thread_name()));
    assert_eq!(pool.stats().rejected, 1);
    assert_eq!(pool.stats().queued, 3);

    drop(gates);
    let mut done: Vec<i32> = (0..3)
        .map(|_| ran.recv_timeout(SOON).map(|(i, _)| i))
        .collect::<Result<_, _>>()?;
    done.sort_unstable();
    assert_eq!(done, [0, 1, 2]);

    // With room again, the pool accepts.
    pool.execute(move || {
        let _ = ran_tx.send((4, thread_name()));
    })?;
    assert_eq!(ran.recv_timeout(SOON)?.0, 4);
    assert_eq!(
        pool.shutdown(SOON),
        PoolShutdown {
            joined: 2,
            unjoined: 0
        }
    );
    Ok(())
}

#[test]
fn spawn_blocking_on_full_pool_hands_job_back_naming_pool() -> Result<()> {
    let rt = Runtime::builder()
        .worker_threads(1)
        .worker_queue_capacity(1)
        .drain_timeout(Duration::from_secs(1))
        .build()?;
    rt.deploy_with("offloader", on("offloader"), || Remote)?;
    rt.start()?;
    let gate = occupy_worker(rt.pool())?;
    rt.pool().execute(|| {})?;

    let (called_tx, called) = channel::bounded::<()>(1);
    let (tx, refusal) = channel::bounded(1);
    run_on(&rt, "offloader", move |ctx| {
        let refused = match ctx.spawn_blocking(
            || 5u64,
            move |_, _, _| {
                let _ = called_tx.send(());
            },
        ) {
            Err(SendError::Backpressure {
                target,
                capacity,
                rejected,
            }) => Ok((target.to_string(), capacity, (rejected.job)())),
            Ok(_) => Err("accepted".to_owned()),
            Err(e) => Err(format!("{e:?}")),
        };
        let _ = tx.send((refused, ctx.pending()));
    })?;

    let (refused, pending) = refusal.recv_timeout(SOON)?;
    let refused = refused.map_err(anyhow::Error::msg)?;
    assert_eq!(refused, ("worker".to_owned(), 1, 5));
    assert_eq!(pending, 0, "the refused job holds no reply slot");
    assert!(
        matches!(called.try_recv(), Err(TryRecvError::Disconnected)),
        "the continuation is dropped uncalled"
    );
    drop(gate);
    rt.stop()?;
    Ok(())
}

/// Serves each request by summing its bytes on the pool; the caller's reply handle lives in
/// the continuation, which answers it whatever the outcome, a refused job's included.
struct Summer {
    returned: channel::Sender<u64>,
}

impl Component for Summer {
    fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let caller = msg.take_reply_handle().ok_or("not a request")?;
        let data = msg.as_bytes().unwrap_or_default().to_vec();
        let offloaded = ctx.spawn_blocking(
            move || data.iter().map(|&b| u64::from(b)).sum::<u64>(),
            move |_, _, sum| {
                let _ = match sum {
                    Ok(sum) => caller.send(Message::typed(sum)),
                    Err(e) => caller.fail(e),
                };
            },
        );
        if let Err(refused) = offloaded {
            let job = refused.run_then(self, ctx);
            let _ = self.returned.send(job()); // the job handed back, run here to identify it
        }
        Ok(())
    }
}

/// Issue 12, item 12: a refused `spawn_blocking` hands its continuation back, which answers
/// the caller "busy" (the pool's `Backpressure`) rather than dropping its reply handle.
#[test]
fn a_refused_job_answers_its_caller_busy_through_its_continuation() -> Result<()> {
    let rt = Runtime::builder()
        .worker_threads(1)
        .worker_queue_capacity(1)
        .build()?;
    let (returned_tx, returned) = channel::unbounded();
    rt.deploy_with("summer", on("sum"), move || Summer {
        returned: returned_tx.clone(),
    })?;
    rt.start()?;
    let gate = occupy_worker(rt.pool())?;
    rt.pool().execute(|| {})?; // the queue is full

    let outcome = rt
        .bus()
        .request("sum", Message::bytes(vec![1, 2, 3]), SOON)?
        .wait();
    match outcome {
        Err(Error::Backpressure { target, capacity }) => {
            assert_eq!((&*target, capacity), ("worker", 1));
        }
        other => panic!("expected the pool's Backpressure, got {other:?}"),
    }
    assert_eq!(returned.recv_timeout(SOON)?, 6, "the job came back unrun");

    drop(gate);
    wait_until("the queue has room", || rt.pool().stats().queued == 0);
    let sum = rt
        .bus()
        .request("sum", Message::bytes(vec![4, 5]), SOON)?
        .wait()?;
    assert_eq!(sum.get::<u64>(), Some(&9));
    rt.stop()?;
    Ok(())
}

// ---- panics ----------------------------------------------------------------------------------

#[test]
fn panicking_job_does_not_kill_its_worker() -> Result<()> {
    let pool = WorkerPool::builder()
        .num_threads(1)
        .queue_capacity(4)
        .thread_name("wpanic")
        .build()?;
    pool.execute(|| panic!("job exploded"))?;
    let (tx, rx) = channel::bounded(1);
    pool.execute(move || {
        let _ = tx.send(thread_name());
    })?;

    // The only worker ran the next job after the panic.
    assert_eq!(rx.recv_timeout(SOON)?, "wpanic-0");
    assert_eq!(pool.stats().panicked, 1);
    wait_until("both jobs are counted as completed", || {
        pool.stats().completed == 2
    });
    assert_eq!(pool.shutdown(SOON).joined, 1);
    Ok(())
}

// ---- spawn_blocking --------------------------------------------------------------------------

#[test]
fn spawn_blocking_runs_job_on_worker_and_continuation_on_reactor() -> Result<()> {
    let rt = runtime()?;
    rt.deploy_with("offloader", on("offloader"), || Remote)?;
    rt.start()?;

    let (tx, rx) = channel::bounded(1);
    run_on(&rt, "offloader", move |ctx| {
        ctx.spawn_blocking(
            || (thread_name(), 6 * 7u64),
            move |_, _, result| {
                let _ = tx.send((thread_name(), result));
            },
        )
        .expect("the pool has room");
    })?;

    let (continuation_thread, result) = rx.recv_timeout(SOON)?;
    let (job_thread, value) = result?;
    assert!(
        job_thread.starts_with("worker-"),
        "job ran on {job_thread:?}"
    );
    assert_eq!(continuation_thread, "offloader");
    assert_eq!(value, 42);
    assert_eq!(
        rt.component("offloader")
            .expect("deployed")
            .reactor
            .stats()
            .pending,
        0
    );
    rt.stop()?;
    Ok(())
}

#[test]
fn spawn_blocking_panic_reaches_continuation_as_panicked() -> Result<()> {
    let rt = runtime()?;
    rt.deploy_with("offloader", on("offloader"), || Remote)?;
    rt.start()?;

    let (tx, rx) = channel::bounded(1);
    run_on(&rt, "offloader", move |ctx| {
        ctx.spawn_blocking(
            || -> u64 { panic!("disk on fire") },
            move |_, _, result| {
                let _ = tx.send((thread_name(), result));
            },
        )
        .expect("the pool has room");
    })?;

    let (thread, result) = rx.recv_timeout(SOON)?;
    assert_eq!(thread, "offloader");
    match result {
        Err(Error::Panicked { message }) => {
            assert!(message.contains("disk on fire"), "{message}");
        }
        other => panic!("expected Panicked, got {other:?}"),
    }

    // The worker survived: the next job runs.
    let (tx, rx) = channel::bounded(1);
    run_on(&rt, "offloader", move |ctx| {
        ctx.spawn_blocking(
            || 1u64,
            move |_, _, result| {
                let _ = tx.send(result);
            },
        )
        .expect("the pool has room");
    })?;
    assert_eq!(rx.recv_timeout(SOON)??, 1);
    assert!(!rt
        .component("offloader")
        .expect("deployed")
        .reactor
        .is_stopped());
    rt.stop()?;
    Ok(())
}

// ---- deadlines -------------------------------------------------------------------------------

#[test]
fn spawn_blocking_timeout_gives_timeout_and_discards_late_result() -> Result<()> {
    let rt = runtime()?;
    rt.deploy_with("offloader", on("offloader"), || Remote)?;
    rt.start()?;
    let offloader = rt.component("offloader").expect("deployed").reactor;

    // Generous enough that the idle worker surely starts the job before the deadline.
    let deadline = Duration::from_millis(250);
    let (gate_tx, gate) = channel::unbounded::<()>();
    let (started_tx, started) = channel::bounded(1);
    let (tx, rx) = channel::bounded(1);
    run_on(&rt, "offloader", move |ctx| {
        ctx.spawn_blocking_timeout(
            deadline,
            move || {
                let _ = started_tx.send(());
                let _ = gate.recv();
                7u64
            },
            move |_, _, result| {
                let _ = tx.send((thread_name(), result));
            },
        )
        .expect("the pool has room");
    })?;
    started.recv_timeout(SOON)?;

    let (thread, result) = rx.recv_timeout(SOON)?;
    assert_eq!(thread, "offloader");
    match result {
        Err(Error::Timeout { after }) => assert_eq!(after, deadline),
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert_eq!(offloader.stats().late_jobs, 0);

    drop(gate_tx); // the job finishes, too late
    wait_until("the late result is counted", || {
        offloader.stats().late_jobs == 1
    });
    assert_eq!(offloader.stats().pending, 0);
    rt.stop()?;
    Ok(())
}

#[test]
fn spawn_blocking_timeout_skips_job_not_started_by_deadline() -> Result<()> {
    let rt = runtime()?; // one worker
    rt.deploy_with("offloader", on("offloader"), || Remote)?;
    rt.start()?;
    let offloader = rt.component("offloader").expect("deployed").reactor;
    let gate = occupy_worker(rt.pool())?;

    let (ran_tx, ran) = channel::bounded::<()>(1);
    let (tx, rx) = channel::bounded(1);
    run_on(&rt, "offloader", move |ctx| {
        ctx.spawn_blocking_timeout(
            Duration::from_millis(20),
            move || {
                let _ = ran_tx.send(());
            },
            move |_, _, result| {
                let _ = tx.send(result);
            },
        )
        .expect("the pool has room");
    })?;
    match rx.recv_timeout(SOON)? {
        Err(Error::Timeout { .. }) => {}
        other => panic!("expected Timeout, got {other:?}"),
    }

    // Free the worker. A marker queued behind the expired job tells when the worker is past it.
    let (marker_tx, marker) = channel::bounded(1);
    rt.pool().execute(move || {
        let _ = marker_tx.send(());
    })?;
    drop(gate);
    marker.recv_timeout(SOON)?;
    assert!(
        matches!(ran.try_recv(), Err(TryRecvError::Disconnected)),
        "the expired job is dropped without running"
    );
    wait_until("the skipped job's reply slot comes back", || {
        offloader.stats().pending == 0
    });
    rt.stop()?;
    Ok(())
}

// ---- threads ---------------------------------------------------------------------------------

#[test]
fn pool_threads_are_named_and_fixed_in_number() -> Result<()> {
    let pool = WorkerPool::builder()
        .num_threads(3)
        .queue_capacity(64)
        .thread_name("wfix")
        .build()?;
    // A new thread names itself as it starts.
    wait_until("three named workers", || threads_named("wfix-").len() == 3);
    let mut names = threads_named("wfix-");
    names.sort();
    assert_eq!(names, ["wfix-0", "wfix-1", "wfix-2"]);
    assert_eq!(pool.stats().threads, 3);

    // Under load, every worker busy and 60 jobs queued: still three threads.
    let gates = [
        occupy_worker(&pool)?,
        occupy_worker(&pool)?,
        occupy_worker(&pool)?,
    ];
    let (tx, rx) = channel::unbounded();
    for _ in 0..60 {
        let tx = tx.clone();
        pool.execute(move || {
            let _ = tx.send(thread_name());
        })?;
    }
    assert_eq!(pool.stats().queued, 60);
    assert_eq!(threads_named("wfix-").len(), 3);

    drop(gates);
    for _ in 0..60 {
        let name = rx.recv_timeout(SOON)?;
        assert!(names.contains(&name), "job ran on {name:?}");
    }
    assert_eq!(threads_named("wfix-").len(), 3);
    assert_eq!(pool.shutdown(SOON).joined, 3);
    Ok(())
}

#[test]
fn runtime_threads_carry_the_runtime_prefix() -> Result<()> {
    let rt = Runtime::builder()
        .worker_threads(2)
        .thread_name_prefix("wr.")
        .build()?;
    rt.deploy_with("calc", on("calc"), || Remote)?;
    rt.start()?;
    // A thread names itself once it runs: the supervisor, spawned last by `build`, may not
    // have run yet (seen on a loaded machine), so wait for all four names.
    wait_until("four named threads", || threads_named("wr.").len() == 4);
    let mut names = threads_named("wr.");
    names.sort();
    assert_eq!(
        names,
        ["wr.calc", "wr.supervisor", "wr.worker-0", "wr.worker-1"]
    );

    let (tx, rx) = channel::bounded(1);
    run_on(&rt, "calc", move |ctx| {
        ctx.spawn_blocking(thread_name, move |_, _, job_thread| {
            let _ = tx.send((job_thread, thread_name()));
        })
        .expect("the pool has room");
    })?;
    let (job_thread, continuation_thread) = rx.recv_timeout(SOON)?;
    assert!(job_thread?.starts_with("wr.worker-"));
    assert_eq!(continuation_thread, "wr.calc");

    rt.stop()?;
    wait_until("stop joins every thread", || {
        threads_named("wr.").is_empty()
    });
    Ok(())
}

// ---- shutdown --------------------------------------------------------------------------------

#[test]
fn shutdown_finishes_queued_jobs_then_refuses_and_joins() -> Result<()> {
    let pool = WorkerPool::builder()
        .num_threads(1)
        .queue_capacity(3)
        .thread_name("wshut")
        .build()?;
    let gate = occupy_worker(&pool)?;
    let (ran_tx, ran) = channel::unbounded();
    for i in 0..3 {
        let ran_tx = ran_tx.clone();
        pool.execute(move || {
            let _ = ran_tx.send(i);
        })?;
    }

    let closer = {
        let pool = pool.clone();
        thread::spawn(move || pool.shutdown(SOON))
    };
    // The queue is full, so a probe is refused as full until shutdown closes the pool, and as
    // stopped after: none is ever queued.
    wait_until("shutdown closes the pool", || match pool.execute(|| {}) {
        Err(SendError::Stopped { target, .. }) => {
            assert_eq!(&*target, "wshut");
            true
        }
        Err(SendError::Backpressure { .. }) => false,
        other => panic!("unexpected {other:?}"),
    });
    assert!(
        ran.try_recv().is_err(),
        "the worker is still busy with the first job"
    );

    drop(gate);
    let report = closer.join().expect("the shutdown thread");
    assert_eq!(
        report,
        PoolShutdown {
            joined: 1,
            unjoined: 0
        }
    );
    assert_eq!(ran.try_iter().collect::<Vec<_>>(), [0, 1, 2]);

    // Refused after shutdown, with the job handed back.
    match pool.execute(move || {
        let _ = ran_tx.send(99);
    }) {
        Err(SendError::Stopped { target, rejected }) => {
            assert_eq!(&*target, "wshut");
            rejected();
        }
        other => panic!("expected Stopped, got {other:?}"),
    }
    assert_eq!(ran.try_recv()?, 99);
    wait_until("every worker thread is gone", || {
        threads_named("wshut").is_empty()
    });
    assert_eq!(
        pool.shutdown(SOON),
        PoolShutdown {
            joined: 0,
            unjoined: 0
        },
        "a second shutdown joins nothing more"
    );
    Ok(())
}

#[test]
fn shutdown_reports_a_job_that_never_finishes_as_unjoined() -> Result<()> {
    let pool = WorkerPool::builder()
        .num_threads(1)
        .queue_capacity(4)
        .thread_name("wstuck")
        .build()?;
    let gate = occupy_worker(&pool)?;

    let report = pool.shutdown(Duration::from_millis(100));
    assert_eq!(
        report,
        PoolShutdown {
            joined: 0,
            unjoined: 1
        }
    );

    drop(gate); // let the job end so the thread exits
    wait_until("the released worker exits", || {
        threads_named("wstuck").is_empty()
    });
    Ok(())
}

/// Every job `execute` accepted runs, even when `shutdown` closes the pool while other
/// threads are submitting: "accepted" must never mean "silently dropped".
#[test]
fn shutdown_racing_submitters_runs_every_accepted_job() -> Result<()> {
    let rounds = if cfg!(miri) { 5 } else { 200 };
    for round in 0..rounds {
        let pool = WorkerPool::builder()
            .num_threads(1)
            .queue_capacity(64)
            .thread_name("wrace")
            .build()?;
        let ran = Arc::new(AtomicUsize::new(0));
        let submitters: Vec<_> = (0..3)
            .map(|_| {
                let (pool, ran) = (pool.clone(), Arc::clone(&ran));
                thread::spawn(move || {
                    let mut accepted = 0usize;
                    loop {
                        let ran = Arc::clone(&ran);
                        match pool.execute(move || {
                            ran.fetch_add(1, Ordering::SeqCst);
                        }) {
                            Ok(()) => accepted += 1,
                            Err(SendError::Backpressure { .. }) => thread::yield_now(),
                            Err(SendError::Stopped { .. }) => return accepted,
                            Err(e) => panic!("unexpected {e:?}"),
                        }
                    }
                })
            })
            .collect();
        // Let the submitters get going before the pool closes under them.
        wait_until("the submitters get going", || pool.stats().completed >= 10);
        let report = pool.shutdown(SOON);
        let accepted: usize = submitters
            .into_iter()
            .map(|s| s.join().expect("submitter"))
            .sum();
        assert_eq!(report.unjoined, 0);
        assert_eq!(
            ran.load(Ordering::SeqCst),
            accepted,
            "round {round}: jobs accepted by execute vs jobs run before shutdown joined"
        );
    }
    Ok(())
}

// ---- no worker thread ------------------------------------------------------------------------

/// `workers(0)`: a runtime for components that never offload holds no idle pool thread.
/// Offloading is refused at once with `Stopped` naming the pool, the job handed back (it used
/// to be refused at build time, so every runtime held a pool thread).
#[test]
fn runtime_without_workers_holds_no_pool_thread_and_refuses_offloads() -> Result<()> {
    const PREFIX: &str = "Wz0-";
    let rt = Runtime::builder()
        .worker_threads(0)
        .thread_name_prefix(PREFIX)
        .build()?;
    rt.deploy_with("offloader", on("offload"), || Remote)?;
    rt.start()?;
    wait_until("the reactor and the supervisor run", || {
        let mut names = threads_named(PREFIX);
        names.sort();
        names == ["Wz0-offloader", "Wz0-supervisor"]
    });
    assert_eq!(rt.pool().stats().threads, 0);

    // From a component: refused at once, the job handed back, the continuation never called.
    let (tx, rx) = channel::bounded(1);
    let (called_tx, called) = channel::unbounded::<()>();
    run_on(&rt, "offload", move |ctx| {
        let answer = match ctx.spawn_blocking(
            || 6 * 7u32,
            move |_, _, _| {
                let _ = called_tx.send(());
            },
        ) {
            Err(SendError::Stopped { target, rejected }) => {
                format!("stopped {target} {}", (rejected.job)())
            }
            other => format!("unexpected {other:?}"),
        };
        let _ = tx.send(answer);
    })?;
    assert_eq!(rx.recv_timeout(SOON)?, "stopped Wz0-worker 42");
    assert_eq!(
        rt.component("offloader")
            .expect("deployed")
            .reactor
            .stats()
            .pending,
        0,
        "the refused job holds no place for a result"
    );

    // From a plain thread.
    let (ran_tx, ran) = channel::unbounded();
    match rt.pool().execute(move || {
        let _ = ran_tx.send(7);
    }) {
        Err(SendError::Stopped { target, rejected }) => {
            assert_eq!(&*target, "Wz0-worker");
            rejected();
        }
        other => panic!("expected Stopped, got {other:?}"),
    }
    assert_eq!(ran.try_recv()?, 7, "the job came back whole");

    let report = rt.stop()?;
    assert_eq!(
        report.pool,
        PoolShutdown {
            joined: 0,
            unjoined: 0
        }
    );
    assert!(report.is_clean(), "{report:?}");
    assert!(matches!(called.try_recv(), Err(TryRecvError::Disconnected)));
    wait_until("every thread has ended", || {
        threads_named(PREFIX).is_empty()
    });
    Ok(())
}

/// The pool on its own follows the same rule: zero threads build, and refuse every job.
#[test]
fn pool_without_threads_refuses_every_job_and_has_nothing_to_join() -> Result<()> {
    let pool = WorkerPool::builder()
        .num_threads(0)
        .thread_name("wnone")
        .build()?;
    assert_eq!(pool.stats().threads, 0);
    assert!(threads_named("wnone").is_empty());
    match pool.execute(|| ()) {
        Err(SendError::Stopped { target, .. }) => assert_eq!(&*target, "wnone"),
        other => panic!("expected Stopped, got {other:?}"),
    }
    assert_eq!(pool.stats().rejected, 0, "refused as gone, not as full");
    assert_eq!(
        pool.shutdown(SOON),
        PoolShutdown {
            joined: 0,
            unjoined: 0
        }
    );
    Ok(())
}
