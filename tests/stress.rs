//! Stress tests: many threads against small mailboxes and queues. Each checks invariants (every
//! attempt ends exactly one way, every message is handled exactly once, counts agree from
//! every side), never timings. Counts scale down in debug builds.

mod support;

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::Result;
use crossbeam::channel::{self, Sender};
use reactorium::{
    BoxError, Component, ComponentOptions, Context, Error, Message, ReplyHandle, Runtime,
    SendError, WorkerPool,
};
use support::{wait_until, DropCounter, Tracked, SOON};

/// `debug` in debug builds, `release` otherwise.
fn scaled(debug: u64, release: u64) -> u64 {
    if cfg!(debug_assertions) {
        debug
    } else {
        release
    }
}

fn seq_of(msg: &Message) -> u64 {
    msg.get::<Tracked>().expect("a tracked message").seq
}

/// Producer index and per-producer number, packed into one sequence number.
fn pack(producer: u64, n: u64) -> u64 {
    (producer << 32) | n
}

fn unpack(seq: u64) -> (u64, u64) {
    (seq >> 32, seq & 0xffff_ffff)
}

// ---- fan-in through Bus::send --------------------------------------------------------------

/// Records the sequence number of every message it handles; reports them when it stops.
struct Recorder {
    index: u64,
    seen: Vec<u64>,
    out: Sender<(u64, Vec<u64>)>,
}

impl Component for Recorder {
    fn handle(&mut self, msg: Message, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        self.seen.push(seq_of(&msg));
        Ok(())
    }

    fn stop(&mut self, _ctx: &mut Context<'_, Self>) {
        let _ = self.out.send((self.index, std::mem::take(&mut self.seen)));
    }
}

/// What one producer did.
#[derive(Debug, Default, Clone, Copy)]
struct Sent {
    attempts: u64,
    accepted: u64,
    /// Backpressure on a direct topic (one subscriber refused).
    direct_refused: u64,
    /// Backpressure on the shared topic (every subscriber refused).
    shared_refused: u64,
}

const COMPONENTS: u64 = 3;

/// The topic of producer `p`'s message `n`: every fourth goes to one component directly, the
/// rest round robin among all of them. Returns the component a direct message must reach.
fn route(p: u64, n: u64) -> (String, Option<u64>) {
    if n % 4 == 3 {
        let c = (p + n) % COMPONENTS;
        (format!("st.direct.{c}"), Some(c))
    } else {
        ("st.work".to_owned(), None)
    }
}

/// 4 producers send into 3 components with mailboxes of 8, through `Bus::send` (round robin
/// on a shared topic, and direct topics), retrying on Backpressure. Every message is accepted
/// once and handled once, in order per producer and component; the counts agree from the
/// producers, the components, the reactors' stats and the shutdown report.
#[test]
fn stress_fan_in_counts_match() -> Result<()> {
    const PRODUCERS: u64 = 4;
    let per_producer = scaled(20_000, 200_000);
    let rt = Runtime::builder()
        .worker_threads(1)
        .thread_name_prefix("st-")
        .build()?;
    let (out_tx, out) = channel::unbounded();
    let mut reactors = Vec::new();
    for c in 0..COMPONENTS {
        let out_tx = out_tx.clone();
        reactors.push(
            rt.deploy_with(
                &format!("rec{c}"),
                ComponentOptions::new()
                    .mailbox_capacity(8)
                    .subscribe("st.work")
                    .subscribe(format!("st.direct.{c}")),
                move || Recorder {
                    index: c,
                    seen: Vec::new(),
                    out: out_tx.clone(),
                },
            )?,
        );
    }
    rt.start()?;

    let drops = DropCounter::default();
    let sent: Vec<Sent> = thread::scope(|s| {
        let handles: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let (bus, drops) = (rt.bus().clone(), drops.clone());
                s.spawn(move || {
                    let mut sent = Sent::default();
                    for n in 0..per_producer {
                        let seq = pack(p, n);
                        let (topic, direct) = route(p, n);
                        let mut msg = drops.message(seq);
                        loop {
                            sent.attempts += 1;
                            match bus.send(&topic, msg) {
                                Ok(()) => {
                                    sent.accepted += 1;
                                    break;
                                }
                                Err(SendError::Backpressure { rejected, .. }) => {
                                    assert_eq!(seq_of(&rejected), seq, "the same message back");
                                    match direct {
                                        Some(_) => sent.direct_refused += 1,
                                        None => sent.shared_refused += 1,
                                    }
                                    msg = rejected;
                                    thread::yield_now();
                                }
                                Err(other) => panic!("a live component refused with {other:?}"),
                            }
                        }
                    }
                    sent
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let report = rt.stop()?;
    assert!(report.is_clean(), "{report:?}");
    let total = PRODUCERS * per_producer;
    let accepted: u64 = sent.iter().map(|s| s.accepted).sum();
    for s in &sent {
        assert_eq!(
            s.attempts,
            s.accepted + s.direct_refused + s.shared_refused,
            "{s:?}"
        );
        assert_eq!(s.accepted, per_producer);
    }

    // Each message handled exactly once, by a component allowed to get it, and in send order
    // per producer and component.
    let mut handled_by = vec![None::<u64>; total as usize];
    let mut handled_total = 0;
    let mut per_component = HashMap::new();
    for (c, seen) in out.try_iter() {
        let mut last: HashMap<u64, u64> = HashMap::new();
        for &seq in &seen {
            let (p, n) = unpack(seq);
            let slot = &mut handled_by[(p * per_producer + n) as usize];
            assert_eq!(*slot, None, "message {p}/{n} handled twice");
            *slot = Some(c);
            if let (_, Some(to)) = route(p, n) {
                assert_eq!(to, c, "direct message {p}/{n} reached the wrong component");
            }
            if let Some(prev) = last.insert(p, n) {
                assert!(prev < n, "producer {p} to rec{c}: {n} handled after {prev}");
            }
        }
        handled_total += seen.len() as u64;
        per_component.insert(c, seen.len() as u64);
    }
    assert_eq!(
        per_component.len() as u64,
        COMPONENTS,
        "every component reported"
    );
    assert!(
        handled_by.iter().all(Option::is_some),
        "every message handled"
    );
    assert_eq!(handled_total, accepted);
    assert_eq!(accepted, total);

    // The same counts from the report and from the reactors.
    let mut stats_rejected = 0;
    for (c, reactor) in reactors.iter().enumerate() {
        let name = format!("rec{c}");
        let from_report = report.component(&name).unwrap();
        let stats = reactor.stats();
        assert_eq!(from_report.handled, per_component[&(c as u64)]);
        assert_eq!(stats.handled, from_report.handled);
        assert_eq!(stats.queued, 0);
        stats_rejected += stats.rejected;
    }
    // A direct refusal is one mailbox refusal; a shared one means all three refused.
    let direct: u64 = sent.iter().map(|s| s.direct_refused).sum();
    let shared: u64 = sent.iter().map(|s| s.shared_refused).sum();
    assert!(
        stats_rejected >= direct + COMPONENTS * shared,
        "reactors counted {stats_rejected} refusals; senders saw {direct} direct, {shared} shared"
    );
    drop(rt);
    assert_eq!(
        drops.dropped() as u64,
        total,
        "each message dropped exactly once"
    );
    Ok(())
}

// ---- concurrent Bus::request ---------------------------------------------------------------

/// Answers each request with `2n + 1`: inline, or (every other one) from the worker pool,
/// which its small `max_pending` and the small pool queue often refuse (it then answers
/// inline). Counts the replies that came too late.
struct Echo {
    late: u64,
    offloaded: u64,
    out: Sender<(u64, u64)>,
}

/// Answers; `true` when the requester had stopped waiting (timed out).
fn answer(handle: ReplyHandle, n: u64) -> bool {
    match handle.send(Message::typed(2 * n + 1)) {
        Ok(()) => false,
        Err(Error::Timeout { .. }) => true,
        Err(other) => panic!("the requester can only have timed out, got {other:?}"),
    }
}

impl Component for Echo {
    fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let n = seq_of(&msg);
        let handle = msg.take_reply_handle().ok_or("not a request")?;
        if n % 2 == 0 {
            self.late += u64::from(answer(handle, n));
            return Ok(());
        }
        // The handle is shared with the continuation, so a refused offload can still answer.
        let slot = Rc::new(Cell::new(Some(handle)));
        let in_cont = Rc::clone(&slot);
        let offload = ctx.spawn_blocking(
            move || 2 * n + 1,
            move |this: &mut Self, _ctx, r| {
                // At stop a waiting continuation gets Err(Stopped): it answers anyway.
                assert!(r.as_ref().map_or(true, |v| *v == 2 * n + 1));
                let handle = in_cont.take().expect("answered once");
                this.late += u64::from(answer(handle, n));
            },
        );
        match offload {
            Ok(_) => self.offloaded += 1,
            Err(e) => {
                assert!(e.is_backpressure(), "{e:?}");
                let job = e.into_inner().job;
                assert_eq!(job(), 2 * n + 1, "the job handed back is the one given");
                let handle = slot.take().expect("a refused continuation never ran");
                self.late += u64::from(answer(handle, n));
            }
        }
        Ok(())
    }

    fn stop(&mut self, _ctx: &mut Context<'_, Self>) {
        let _ = self.out.send((self.late, self.offloaded));
    }
}

/// Many plain threads `Bus::request` one component with a mailbox of 4 at once, some with no
/// time to wait. Every request ends exactly one way: a reply (the right one), Backpressure
/// (with the request handed back), or Timeout; the counts add up, and every timed-out request
/// yields exactly one late reply.
#[test]
fn stress_requests_each_end_exactly_once() -> Result<()> {
    const THREADS: u64 = 8;
    let per_thread = scaled(3_000, 30_000);
    let rt = Runtime::builder()
        .worker_threads(2)
        .worker_queue_capacity(4)
        .thread_name_prefix("st-")
        .build()?;
    let (out_tx, out) = channel::unbounded();
    let echo = rt.deploy_with(
        "echo",
        ComponentOptions::new()
            .mailbox_capacity(4)
            .max_pending(2)
            .subscribe("st.echo"),
        move || Echo {
            late: 0,
            offloaded: 0,
            out: out_tx.clone(),
        },
    )?;
    rt.start()?;

    #[derive(Debug, Default, Clone, Copy)]
    struct Ends {
        attempts: u64,
        replies: u64,
        full: u64,
        timeouts: u64,
    }
    let drops = DropCounter::default();
    let ends: Vec<Ends> = thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (bus, drops) = (rt.bus().clone(), drops.clone());
                s.spawn(move || {
                    let mut e = Ends::default();
                    for i in 0..per_thread {
                        // Even numbers are answered inline, odd ones maybe through the pool.
                        let n = pack(t, i);
                        let msg = drops.message(n);
                        let id = msg.id();
                        let timeout = if i % 3 == 0 { Duration::ZERO } else { SOON };
                        e.attempts += 1;
                        match bus.request("st.echo", msg, timeout) {
                            Ok(pending) => match pending.wait() {
                                Ok(reply) => {
                                    assert_eq!(reply.correlation(), Some(id));
                                    assert_eq!(reply.get::<u64>(), Some(&(2 * n + 1)));
                                    e.replies += 1;
                                }
                                Err(Error::Timeout { after }) => {
                                    assert_eq!(after, timeout);
                                    e.timeouts += 1;
                                }
                                Err(other) => panic!("unexpected {other:?}"),
                            },
                            Err(SendError::Backpressure {
                                target,
                                capacity,
                                rejected,
                            }) => {
                                assert_eq!((&*target, capacity), ("echo", 4));
                                assert_eq!(rejected.id(), id);
                                assert!(!rejected.expects_reply());
                                e.full += 1;
                                thread::yield_now();
                            }
                            Err(other) => panic!("unexpected {other:?}"),
                        }
                    }
                    e
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let report = rt.stop()?;
    let (late, offloaded) = out.try_recv().expect("echo reported at stop");
    let sum = |f: fn(&Ends) -> u64| ends.iter().map(f).sum::<u64>();
    let (attempts, replies, full, timeouts) = (
        sum(|e| e.attempts),
        sum(|e| e.replies),
        sum(|e| e.full),
        sum(|e| e.timeouts),
    );
    assert_eq!(attempts, THREADS * per_thread);
    assert_eq!(attempts, replies + full + timeouts, "{ends:?}");
    let c = report.component("echo").unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(c.handled, attempts - full, "every accepted request handled");
    assert_eq!(
        echo.stats().rejected,
        full,
        "each Backpressure counted once"
    );
    // Every timed-out request was answered later: exactly one late reply each, seen by the
    // responder, counted by the bus, and dead-lettered.
    assert_eq!(late, timeouts);
    assert_eq!(report.bus.late_replies, timeouts);
    assert_eq!(report.bus.dead_letters, timeouts);
    assert!(offloaded <= c.handled);
    drop(rt);
    assert_eq!(
        drops.dropped() as u64,
        attempts,
        "each request dropped once"
    );
    Ok(())
}

// ---- Context::request between components ---------------------------------------------------

/// What a front component did with its triggers.
#[derive(Debug, Default)]
struct FrontCounts {
    triggers: AtomicU64,
    asked: AtomicU64,
    asked_no_wait: AtomicU64,
    refused_own: AtomicU64,
    refused_back: AtomicU64,
    replies: AtomicU64,
    timeouts: AtomicU64,
}

/// On each trigger, requests from "back" (some with no time to wait); counts every outcome.
struct Front {
    counts: Arc<FrontCounts>,
}

impl Component for Front {
    fn handle(&mut self, msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let counts = Arc::clone(&self.counts);
        counts.triggers.fetch_add(1, Ordering::Relaxed);
        let n = seq_of(&msg);
        let no_wait = n % 5 == 0;
        let timeout = if no_wait { Duration::ZERO } else { SOON };
        let req = Message::typed(n);
        let id = req.id();
        let asked = ctx.request("st.back", req, timeout, {
            let counts = Arc::clone(&counts);
            move |_, _, r| match r {
                Ok(reply) => {
                    assert_eq!(reply.correlation(), Some(id));
                    assert_eq!(reply.get::<u64>(), Some(&(n + 1)));
                    counts.replies.fetch_add(1, Ordering::Relaxed);
                }
                Err(Error::Timeout { .. }) => {
                    counts.timeouts.fetch_add(1, Ordering::Relaxed);
                }
                Err(other) => panic!("unexpected {other:?}"),
            }
        });
        match asked {
            Ok(request_id) => {
                assert_eq!(request_id, id);
                counts.asked.fetch_add(1, Ordering::Relaxed);
                if no_wait {
                    counts.asked_no_wait.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(SendError::Backpressure {
                target,
                capacity,
                rejected,
            }) => {
                assert_eq!(rejected.message.id(), id);
                if &*target == ctx.name() {
                    assert_eq!(capacity, 3, "the front's own max_pending");
                    counts.refused_own.fetch_add(1, Ordering::Relaxed);
                } else {
                    assert_eq!((&*target, capacity), ("back", 4));
                    counts.refused_back.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
        Ok(())
    }
}

/// Replies `n + 1`.
struct Back;

impl Component for Back {
    fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let n = *msg.get::<u64>().ok_or("expected a u64")?;
        // A late reply (its requester timed out) is counted by the requester's reactor.
        let _ = ctx.reply(&mut msg, Message::typed(n + 1));
        Ok(())
    }
}

/// Two components request from a third with a mailbox of 4, each allowed 3 outstanding
/// requests, while producers feed them triggers. Every trigger ends exactly one way (refused
/// by the requester's bound, by the responder's mailbox, or continued with a reply or a
/// timeout); a request given no time always times out, and its reply is counted late once.
#[test]
fn stress_context_requests_counts_match() -> Result<()> {
    const FRONTS: u64 = 2;
    let per_front = scaled(10_000, 100_000);
    let rt = Runtime::builder()
        .worker_threads(1)
        .thread_name_prefix("st-")
        .build()?;
    let back = rt.deploy_with(
        "back",
        ComponentOptions::new()
            .mailbox_capacity(4)
            .subscribe("st.back"),
        || Back,
    )?;
    let mut fronts = Vec::new();
    for f in 0..FRONTS {
        let counts = Arc::new(FrontCounts::default());
        let c = Arc::clone(&counts);
        let reactor = rt.deploy_with(
            &format!("front{f}"),
            ComponentOptions::new()
                .mailbox_capacity(8)
                .max_pending(3)
                .subscribe(format!("st.front.{f}")),
            move || Front {
                counts: Arc::clone(&c),
            },
        )?;
        fronts.push((reactor, counts));
    }
    rt.start()?;

    let drops = DropCounter::default();
    thread::scope(|s| {
        for f in 0..FRONTS {
            let (bus, drops) = (rt.bus().clone(), drops.clone());
            s.spawn(move || {
                let topic = format!("st.front.{f}");
                for n in 0..per_front {
                    let mut msg = drops.message(n);
                    loop {
                        match bus.send(&topic, msg) {
                            Ok(()) => break,
                            Err(SendError::Backpressure { rejected, .. }) => {
                                msg = rejected;
                                thread::yield_now();
                            }
                            Err(other) => panic!("unexpected {other:?}"),
                        }
                    }
                }
            });
        }
    });

    // Every trigger handled and every continuation run, and every late reply seen, before
    // stopping (a stop would end waiting continuations with Stopped).
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    for (reactor, c) in &fronts {
        wait_until("every trigger handled and continued", || {
            load(&c.triggers) == per_front
                && load(&c.replies) + load(&c.timeouts) == load(&c.asked)
                && reactor.stats().late_replies == load(&c.timeouts)
        });
    }
    let report = rt.stop()?;
    assert!(report.is_clean(), "{report:?}");
    let mut asked_total = 0;
    let mut timeouts_total = 0;
    for (f, (reactor, c)) in fronts.iter().enumerate() {
        let (triggers, asked) = (load(&c.triggers), load(&c.asked));
        assert_eq!(
            triggers,
            asked + load(&c.refused_own) + load(&c.refused_back),
            "{c:?}"
        );
        assert_eq!(asked, load(&c.replies) + load(&c.timeouts), "{c:?}");
        // With time to wait the reply always comes. With none, the request times out unless
        // the responder took its reply slot before the requester's timer fired: one CAS on
        // the permit decides, and exactly one of reply or timeout reaches the continuation.
        assert!(
            load(&c.timeouts) <= load(&c.asked_no_wait),
            "only requests with no time to wait may time out: {c:?}"
        );
        let r = report.component(&format!("front{f}")).unwrap();
        assert_eq!(r.handled, per_front);
        let stats = reactor.stats();
        assert_eq!(stats.late_replies, load(&c.timeouts));
        assert_eq!(stats.pending, 0);
        asked_total += asked;
        timeouts_total += load(&c.timeouts);
    }
    assert_eq!(report.component("back").unwrap().handled, asked_total);
    assert_eq!(back.stats().handled, asked_total);
    assert_eq!(
        report.bus.dead_letters, timeouts_total,
        "late replies dead-lettered"
    );
    drop(rt);
    assert_eq!(drops.dropped() as u64, FRONTS * per_front);
    Ok(())
}

// ---- Context::spawn_blocking -------------------------------------------------------------

#[derive(Debug, Default)]
struct OffloadCounts {
    triggers: AtomicU64,
    submitted: AtomicU64,
    accepted: AtomicU64,
    completed: AtomicU64,
    refused_pool: AtomicU64,
    refused_own: AtomicU64,
}

/// On each trigger, offloads `3n` to the pool; checks the result in the continuation.
struct Offloader {
    counts: Arc<OffloadCounts>,
}

impl Component for Offloader {
    fn handle(&mut self, msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let c = Arc::clone(&self.counts);
        c.triggers.fetch_add(1, Ordering::Relaxed);
        let n = seq_of(&msg);
        c.submitted.fetch_add(1, Ordering::Relaxed);
        let done = Arc::clone(&c);
        let r = ctx.spawn_blocking(
            move || 3 * n,
            move |_, _, r| {
                assert_eq!(r.ok(), Some(3 * n), "the job's own result");
                done.completed.fetch_add(1, Ordering::Relaxed);
            },
        );
        match r {
            Ok(_) => {
                c.accepted.fetch_add(1, Ordering::Relaxed);
            }
            Err(SendError::Backpressure {
                target,
                capacity,
                rejected,
            }) => {
                assert_eq!(
                    (rejected.job)(),
                    3 * n,
                    "the job handed back is the one given"
                );
                if &*target == ctx.name() {
                    assert_eq!(capacity, 6);
                    c.refused_own.fetch_add(1, Ordering::Relaxed);
                } else {
                    assert_eq!((&*target, capacity), ("st-worker", 4));
                    c.refused_pool.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
        Ok(())
    }
}

/// Two components offload a job per trigger to a 2-thread pool with a queue of 4. Jobs
/// submitted = continuations completed + refused (by the pool or the component's own bound),
/// and the pool's counters agree.
#[test]
fn stress_spawn_blocking_counts_match() -> Result<()> {
    const COMPS: u64 = 2;
    let per_comp = scaled(10_000, 100_000);
    let rt = Runtime::builder()
        .worker_threads(2)
        .worker_queue_capacity(4)
        .thread_name_prefix("st-")
        .build()?;
    let mut comps = Vec::new();
    for i in 0..COMPS {
        let counts = Arc::new(OffloadCounts::default());
        let c = Arc::clone(&counts);
        let reactor = rt.deploy_with(
            &format!("off{i}"),
            ComponentOptions::new()
                .mailbox_capacity(8)
                .max_pending(6)
                .subscribe(format!("st.off.{i}")),
            move || Offloader {
                counts: Arc::clone(&c),
            },
        )?;
        comps.push((reactor, counts));
    }
    rt.start()?;

    let drops = DropCounter::default();
    thread::scope(|s| {
        for i in 0..COMPS {
            let (bus, drops) = (rt.bus().clone(), drops.clone());
            s.spawn(move || {
                let topic = format!("st.off.{i}");
                for n in 0..per_comp {
                    let mut msg = drops.message(n);
                    while let Err(e) = bus.send(&topic, msg) {
                        assert!(e.is_backpressure(), "{e:?}");
                        msg = e.into_inner();
                        thread::yield_now();
                    }
                }
            });
        }
    });

    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    for (_, c) in &comps {
        wait_until("every trigger handled and every job continued", || {
            load(&c.triggers) == per_comp && load(&c.completed) == load(&c.accepted)
        });
    }
    let pool = rt.pool().clone();
    let report = rt.stop()?;
    assert!(report.is_clean(), "{report:?}");
    let (mut completed, mut refused_pool) = (0, 0);
    for (i, (reactor, c)) in comps.iter().enumerate() {
        let submitted = load(&c.submitted);
        assert_eq!(submitted, per_comp);
        assert_eq!(
            submitted,
            load(&c.completed) + load(&c.refused_pool) + load(&c.refused_own),
            "{c:?}"
        );
        assert_eq!(
            report.component(&format!("off{i}")).unwrap().handled,
            per_comp
        );
        let stats = reactor.stats();
        assert_eq!((stats.late_jobs, stats.pending), (0, 0));
        completed += load(&c.completed);
        refused_pool += load(&c.refused_pool);
    }
    let stats = pool.stats();
    assert_eq!(
        stats.rejected, refused_pool,
        "the pool counted each refusal once"
    );
    assert_eq!(stats.completed, completed, "each accepted job ran once");
    assert_eq!((stats.queued, stats.panicked), (0, 0));
    drop(rt);
    assert_eq!(drops.dropped() as u64, COMPS * per_comp);
    Ok(())
}

// ---- WorkerPool shutdown racing submitters -------------------------------------------------

/// Submitters race `shutdown`: a job is either refused (handed back) or accepted, and every
/// accepted job runs before `shutdown` has joined the workers ("lets the workers finish every
/// job already queued").
#[test]
fn stress_pool_shutdown_runs_every_accepted_job() {
    let rounds = scaled(300, 800);
    for round in 0..rounds {
        let pool = WorkerPool::builder()
            .num_threads(2)
            .queue_capacity(64)
            .thread_name("st-race")
            .build()
            .unwrap();
        let ran = Arc::new(AtomicU64::new(0));
        let (accepted, joined) = thread::scope(|s| {
            let submitters: Vec<_> = (0..2)
                .map(|_| {
                    let (pool, ran) = (pool.clone(), Arc::clone(&ran));
                    s.spawn(move || {
                        let mut accepted = 0u64;
                        loop {
                            let ran = Arc::clone(&ran);
                            match pool.execute(move || {
                                ran.fetch_add(1, Ordering::SeqCst);
                            }) {
                                Ok(()) => accepted += 1,
                                Err(SendError::Backpressure { rejected, .. }) => {
                                    drop(rejected);
                                    thread::yield_now();
                                }
                                Err(SendError::Stopped { rejected, .. }) => {
                                    drop(rejected);
                                    return accepted;
                                }
                                Err(other) => panic!("unexpected {other:?}"),
                            }
                        }
                    })
                })
                .collect();
            wait_until("the pool runs jobs", || ran.load(Ordering::SeqCst) > 16);
            // At most 64 trivial jobs are left to run: seconds are plenty.
            let shut = pool.shutdown(Duration::from_secs(3));
            let accepted: u64 = submitters.into_iter().map(|h| h.join().unwrap()).sum();
            (accepted, shut.joined)
        });
        assert_eq!(
            joined, 2,
            "round {round}: a worker did not exit after shutdown"
        );
        assert_eq!(
            ran.load(Ordering::SeqCst),
            accepted,
            "round {round}: accepted jobs that never ran"
        );
    }
}
