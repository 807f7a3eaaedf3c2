//! Micro-benchmarks of the per-message cost reactorium adds, each beside the same shape on a
//! bare `crossbeam_channel::bounded` floor measured in the same run. See `benches/README.md`.
#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use crossbeam::channel;
use reactorium::{BoxError, Component, ComponentOptions, Context, Error, Message, Runtime};

const BATCH: u64 = 10_000;

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
    let rt = Runtime::builder().workers(1).build().expect("runtime");
    let h = Arc::clone(handled);
    rt.deploy_with(
        "count",
        ComponentOptions::new()
            .mailbox(1024)
            .subscribe("bench.count"),
        move || Count(Arc::clone(&h)),
    )
    .expect("deploy");
    rt.start().expect("start");
    rt
}

/// Sends `n` messages with `send`, retrying on Backpressure, then waits until all are handled.
fn drive(n: u64, handled: &AtomicU64, mut send: impl FnMut(Message) -> Result<(), Error<Message>>) {
    let target = handled.load(Ordering::Acquire) + n;
    for _ in 0..n {
        let mut m = Message::empty();
        while let Err(e) = send(m) {
            m = e.into_inner().expect("a refusal hands the message back");
            thread::yield_now();
        }
    }
    while handled.load(Ordering::Acquire) < target {
        std::hint::spin_loop();
    }
}

fn one_to_one(c: &mut Criterion) {
    let mut g = c.benchmark_group("one_producer_one_consumer");
    g.throughput(Throughput::Elements(BATCH));

    let handled = Arc::new(AtomicU64::new(0));
    let rt = runtime(&handled);
    let reactor = rt.reactor("count").expect("deployed");
    g.bench_function("reactor_execute", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                drive(BATCH, &handled, |m| reactor.execute(m));
            }
            t.elapsed()
        })
    });
    let bus = rt.bus().clone();
    g.bench_function("bus_send", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                drive(BATCH, &handled, |m| bus.send("bench.count", m));
            }
            t.elapsed()
        })
    });

    // The floor: a bounded crossbeam channel to a consumer thread that counts.
    let (tx, rx) = channel::bounded::<Message>(1024);
    let floor_handled = Arc::new(AtomicU64::new(0));
    let fh = Arc::clone(&floor_handled);
    let consumer = thread::spawn(move || {
        for _m in rx.iter() {
            fh.fetch_add(1, Ordering::Release);
        }
    });
    g.bench_function("crossbeam_floor", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                drive(BATCH, &floor_handled, |m| {
                    tx.try_send(m).map_err(|e| Error::Backpressure {
                        target: "floor".into(),
                        capacity: 1024,
                        rejected: e.into_inner(),
                    })
                });
            }
            t.elapsed()
        })
    });
    g.finish();
    drop(tx);
    consumer.join().expect("floor consumer");
    rt.stop().expect("stop");
}

fn round_trip(c: &mut Criterion) {
    let mut g = c.benchmark_group("round_trip");
    let handled = Arc::new(AtomicU64::new(0));
    let rt = runtime(&handled);
    let bus = rt.bus().clone();
    g.bench_function("bus_request_wait", |b| {
        b.iter(|| {
            bus.request("bench.count", Message::empty(), Duration::from_secs(5))
                .map_err(Error::without_payload)
                .and_then(|p| p.wait())
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

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3));
    targets = one_to_one, round_trip
}
criterion_main!(benches);
