//! Micro-benchmarks of the per-message cost reactorium adds, each beside the same shape on a
//! bare `crossbeam_channel::bounded` floor measured in the same run. See `benches/README.md`.
#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use crossbeam::channel;
use reactorium::{
    BoxError, Component, ComponentOptions, Context, Message, Reactor, Runtime, SendError,
    WorkerPool,
};

const BATCH: u64 = 10_000;
/// Publishes per iteration of the fan-out group; each is delivered `FANOUT` times. Below
/// `CAPACITY`, and every iteration starts with empty mailboxes, so no copy is ever refused:
/// the group measures publishing without backpressure (the retry path is there regardless).
const PUBLISH_BATCH: u64 = 200;
/// Subscribers of the fan-out topic.
const FANOUT: usize = 64;
/// Threads of the worker pool and of its floor.
const WORKERS: usize = 2;
/// Mailbox, channel and job-queue capacity everywhere.
const CAPACITY: usize = 1024;

/// Counts what it handles; answers requests.
struct Count(Arc<AtomicU64>);

impl Component for Count {
    fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Release);
        if msg.expects_reply() {
            ctx.reply(&mut msg, Message::empty())?;
        }
        Ok(())
    }
}

fn runtime(handled: &Arc<AtomicU64>) -> Runtime {
    let rt = Runtime::builder()
        .worker_threads(1)
        .build()
        .expect("runtime");
    let h = Arc::clone(handled);
    rt.deploy_with(
        "count",
        ComponentOptions::new()
            .mailbox_capacity(CAPACITY)
            .subscribe("bench.count"),
        move || Count(Arc::clone(&h)),
    )
    .expect("deploy");
    rt.start().expect("start");
    rt
}

/// Hands `item` to `send` until it is accepted. A refusal must be Backpressure (anything else
/// would never clear); it hands the item back, is counted in `refused`, and is retried.
fn retry<T>(mut item: T, refused: &AtomicU64, mut send: impl FnMut(T) -> Result<(), SendError<T>>) {
    while let Err(e) = send(item) {
        assert!(e.is_backpressure(), "only Backpressure is retried: {e:?}");
        item = e.into_inner();
        refused.fetch_add(1, Ordering::Relaxed);
        thread::yield_now();
    }
}

/// Waits (spinning) until `handled` reaches `target`.
fn wait_for(handled: &AtomicU64, target: u64) {
    while handled.load(Ordering::Acquire) < target {
        std::hint::spin_loop();
    }
}

/// Sends `n` messages with `send`, retrying on Backpressure, then waits until all are handled.
fn drive(
    n: u64,
    handled: &AtomicU64,
    refused: &AtomicU64,
    mut send: impl FnMut(Message) -> Result<(), SendError<Message>>,
) {
    let target = handled.load(Ordering::Acquire) + n;
    for _ in 0..n {
        retry(Message::empty(), refused, &mut send);
    }
    wait_for(handled, target);
}

/// A crossbeam `try_send` refusal in reactorium's shape, so the floors share `retry`.
fn floor_refusal<T>(e: channel::TrySendError<T>) -> SendError<T> {
    SendError::Backpressure {
        target: "floor".into(),
        capacity: CAPACITY,
        rejected: e.into_inner(),
    }
}

/// Refusals seen by each bench of a group, over warm-up and measurement together.
fn report_refusals(group: &str, counts: &[(&str, &AtomicU64)]) {
    let counts: Vec<String> = counts
        .iter()
        .map(|(name, n)| format!("{name} {}", n.load(Ordering::Relaxed)))
        .collect();
    eprintln!(
        "{group}: Backpressure refusals retried: {}",
        counts.join(", ")
    );
}

fn one_to_one(c: &mut Criterion) {
    let mut g = c.benchmark_group("one_producer_one_consumer");
    g.throughput(Throughput::Elements(BATCH));

    let handled = Arc::new(AtomicU64::new(0));
    let rt = runtime(&handled);
    let reactor = rt.component("count").expect("deployed").reactor;
    let send_refused = AtomicU64::new(0);
    g.bench_function("reactor_send", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                drive(BATCH, &handled, &send_refused, |m| reactor.send(m));
            }
            t.elapsed()
        })
    });
    let bus = rt.bus().clone();
    let send_refused = AtomicU64::new(0);
    g.bench_function("bus_send", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                drive(BATCH, &handled, &send_refused, |m| {
                    bus.send("bench.count", m)
                });
            }
            t.elapsed()
        })
    });

    // The floor: a bounded crossbeam channel to a consumer thread that counts.
    let (tx, rx) = channel::bounded::<Message>(CAPACITY);
    let floor_handled = Arc::new(AtomicU64::new(0));
    let fh = Arc::clone(&floor_handled);
    let consumer = thread::spawn(move || {
        for _m in rx.iter() {
            fh.fetch_add(1, Ordering::Release);
        }
    });
    let floor_refused = AtomicU64::new(0);
    g.bench_function("crossbeam_floor", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                drive(BATCH, &floor_handled, &floor_refused, |m| {
                    tx.try_send(m).map_err(floor_refusal)
                });
            }
            t.elapsed()
        })
    });
    g.finish();
    drop(tx);
    consumer.join().expect("floor consumer");
    rt.stop().expect("stop");
    report_refusals(
        "one_producer_one_consumer",
        &[
            ("reactor_send", &send_refused),
            ("bus_send", &send_refused),
            ("crossbeam_floor", &floor_refused),
        ],
    );
}

fn publish_fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("publish_64");
    g.throughput(Throughput::Elements(PUBLISH_BATCH));

    // 64 components (64 reactor threads) subscribed to one topic.
    let handled = Arc::new(AtomicU64::new(0));
    let rt = Runtime::builder()
        .worker_threads(1)
        .build()
        .expect("runtime");
    for i in 0..FANOUT {
        let h = Arc::clone(&handled);
        rt.deploy_with(
            &format!("sub{i:02}"),
            ComponentOptions::new()
                .mailbox_capacity(CAPACITY)
                .subscribe("bench.fanout"),
            move || Count(Arc::clone(&h)),
        )
        .expect("deploy");
    }
    rt.start().expect("start");
    // A refused copy names its subscriber; it is retried on that subscriber alone.
    let reactors: HashMap<String, Reactor> = (0..FANOUT)
        .map(|i| {
            let name = format!("sub{i:02}");
            let r = rt.component(&name).expect("deployed").reactor;
            (name, r)
        })
        .collect();
    let bus = rt.bus().clone();
    let publish_refused = AtomicU64::new(0);
    g.bench_function("bus_publish", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                let target = handled.load(Ordering::Acquire) + PUBLISH_BATCH * FANOUT as u64;
                for _ in 0..PUBLISH_BATCH {
                    let mut report = None;
                    retry(Message::empty(), &publish_refused, |m| {
                        bus.publish("bench.fanout", m).map(|r| report = Some(r))
                    });
                    for e in report.expect("published").refused {
                        assert!(e.is_backpressure(), "only Backpressure is retried: {e:?}");
                        let reactor = match &e {
                            SendError::Backpressure { target, .. } => &reactors[&**target],
                            _ => unreachable!(),
                        };
                        publish_refused.fetch_add(1, Ordering::Relaxed);
                        let copy = e.into_inner();
                        retry(copy, &publish_refused, |m| reactor.send(m));
                    }
                }
                wait_for(&handled, target);
            }
            t.elapsed()
        })
    });

    // The floor: one thread sends a clone into each of 64 bounded channels, each drained by
    // its own counting thread; refused copies are retried after the first pass, as above.
    let floor_handled = Arc::new(AtomicU64::new(0));
    let mut txs = Vec::with_capacity(FANOUT);
    let mut consumers = Vec::with_capacity(FANOUT);
    for _ in 0..FANOUT {
        let (tx, rx) = channel::bounded::<Message>(CAPACITY);
        let fh = Arc::clone(&floor_handled);
        consumers.push(thread::spawn(move || {
            for _m in rx.iter() {
                fh.fetch_add(1, Ordering::Release);
            }
        }));
        txs.push(tx);
    }
    let floor_refused = AtomicU64::new(0);
    g.bench_function("crossbeam_floor", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                let target = floor_handled.load(Ordering::Acquire) + PUBLISH_BATCH * FANOUT as u64;
                for _ in 0..PUBLISH_BATCH {
                    let msg = Message::empty();
                    let mut refused = Vec::new();
                    // Like `Bus::publish`: clones for all but the last, the original for it.
                    for (i, tx) in txs[..FANOUT - 1].iter().enumerate() {
                        if let Err(e) = tx.try_send(msg.clone()) {
                            refused.push((i, e.into_inner()));
                        }
                    }
                    if let Err(e) = txs[FANOUT - 1].try_send(msg) {
                        refused.push((FANOUT - 1, e.into_inner()));
                    }
                    for (i, copy) in refused {
                        floor_refused.fetch_add(1, Ordering::Relaxed);
                        retry(copy, &floor_refused, |m| {
                            txs[i].try_send(m).map_err(floor_refusal)
                        });
                    }
                }
                wait_for(&floor_handled, target);
            }
            t.elapsed()
        })
    });
    g.finish();
    drop(txs);
    for c in consumers {
        c.join().expect("floor consumer");
    }
    rt.stop().expect("stop");
    report_refusals(
        "publish_64",
        &[
            ("bus_publish", &publish_refused),
            ("crossbeam_floor", &floor_refused),
        ],
    );
}

fn round_trip(c: &mut Criterion) {
    let mut g = c.benchmark_group("round_trip");
    let handled = Arc::new(AtomicU64::new(0));
    let rt = runtime(&handled);
    let bus = rt.bus().clone();
    g.bench_function("bus_request_wait", |b| {
        b.iter(|| {
            bus.request("bench.count", Message::empty(), Duration::from_secs(5))
                .expect("sent")
                .wait()
                .expect("reply")
        })
    });

    let (atx, arx) = channel::bounded::<Message>(1);
    let (btx, brx) = channel::bounded::<Message>(1);
    let echo = thread::spawn(move || {
        for m in arx.iter() {
            if btx.send(m).is_err() {
                break;
            }
        }
    });
    g.bench_function("crossbeam_floor", |b| {
        b.iter(|| {
            atx.send(Message::empty()).expect("send");
            brx.recv().expect("recv")
        })
    });
    g.finish();
    drop(atx);
    echo.join().expect("echo");
    rt.stop().expect("stop");
}

/// A boxed job, as the worker floor's channel carries it (and as the pool's queue does).
type Job = Box<dyn FnOnce() + Send + 'static>;

fn worker_submit(c: &mut Criterion) {
    let mut g = c.benchmark_group("worker_submit");
    g.throughput(Throughput::Elements(BATCH));

    // The job is the same trivial closure on both sides: bump a counter. The counters are
    // leaked so a job borrows it instead of cloning an `Arc` per job.
    let done: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
    let pool = WorkerPool::builder()
        .num_threads(WORKERS)
        .queue_capacity(CAPACITY)
        .thread_name("bench-worker")
        .build()
        .expect("pool");
    let pool_refused = AtomicU64::new(0);
    g.bench_function("pool_execute", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                let target = done.load(Ordering::Acquire) + BATCH;
                for _ in 0..BATCH {
                    let job = move || {
                        done.fetch_add(1, Ordering::Release);
                    };
                    retry(job, &pool_refused, |j| pool.execute(j));
                }
                wait_for(done, target);
            }
            t.elapsed()
        })
    });

    // The floor: a bounded channel of boxed jobs drained by as many threads as the pool has.
    let floor_done: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
    let (tx, rx) = channel::bounded::<Job>(CAPACITY);
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let rx = rx.clone();
            thread::spawn(move || {
                for job in rx.iter() {
                    job();
                }
            })
        })
        .collect();
    drop(rx);
    let floor_refused = AtomicU64::new(0);
    g.bench_function("crossbeam_floor", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                let target = floor_done.load(Ordering::Acquire) + BATCH;
                for _ in 0..BATCH {
                    let job: Job = Box::new(move || {
                        floor_done.fetch_add(1, Ordering::Release);
                    });
                    retry(job, &floor_refused, |j| {
                        tx.try_send(j).map_err(floor_refusal)
                    });
                }
                wait_for(floor_done, target);
            }
            t.elapsed()
        })
    });
    g.finish();
    drop(tx);
    for w in workers {
        w.join().expect("floor worker");
    }
    let down = pool.shutdown(Duration::from_secs(5));
    assert_eq!(down.unjoined, 0, "every pool thread joins");
    report_refusals(
        "worker_submit",
        &[
            ("pool_execute", &pool_refused),
            ("crossbeam_floor", &floor_refused),
        ],
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3));
    targets = one_to_one, publish_fanout, round_trip, worker_submit
}
criterion_main!(benches);
