//! Helpers shared by the integration tests. No sleep-then-assert: waits are on channels, or
//! deadline-bounded polls of a condition.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::Mutex;

pub mod http;
pub mod life;
pub mod logs;

use reactorium::{
    BoxError, Component, ComponentOptions, Context, Message, Runtime, SendError, WorkerPool,
};

/// Generous bound for anything that should happen "soon" on a loaded 2-core CI machine.
pub const SOON: Duration = Duration::from_secs(10);

/// Polls `cond` until it holds or `SOON` passes; panics with `what` on timeout.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + SOON;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A payload that counts how many times it is dropped: every accepted message must be dropped
/// exactly once, wherever it ends (handled, handed back, dead-lettered, drained at shutdown).
#[derive(Debug)]
pub struct Tracked {
    pub seq: u64,
    drops: Arc<AtomicUsize>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

/// Makes [`Tracked`] payloads and counts their drops.
#[derive(Clone, Default, Debug)]
pub struct DropCounter(Arc<AtomicUsize>);

impl DropCounter {
    pub fn message(&self, seq: u64) -> Message {
        Message::typed(Tracked {
            seq,
            drops: Arc::clone(&self.0),
        })
    }

    pub fn dropped(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Names of this process's threads whose name starts with `prefix` (Linux `/proc`; names are
/// cut to 15 bytes there, so keep prefixes short).
pub fn threads_named(prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for e in dir.flatten() {
            if let Ok(name) = std::fs::read_to_string(e.path().join("comm")) {
                let name = name.trim_end().to_owned();
                if name.starts_with(prefix) {
                    out.push(name);
                }
            }
        }
    }
    out
}

/// Waits until every thread the calling thread spawned has named itself. A new thread starts
/// with its parent's name (Linux `comm`) and takes its own once it runs, so a count of
/// threads by name taken before that misses it; until then it shows under the caller's.
pub fn wait_for_spawned_threads_to_name_themselves() {
    let own = |path: std::path::PathBuf| std::fs::read_to_string(path).unwrap_or_default();
    let mine = own("/proc/thread-self/comm".into());
    wait_until("the threads spawned here name themselves", || {
        std::fs::read_dir("/proc/self/task").map_or(true, |d| {
            d.flatten()
                .filter(|e| own(e.path().join("comm")) == mine)
                .count()
                <= 1
        })
    });
}

/// CPU time (user and system) used so far by this process's threads whose name starts with
/// `prefix`, from `/proc/self/task/*/schedstat` (nanoseconds), or `stat` (clock ticks, taken
/// as 100 a second) where the kernel has no schedstat. A resource bound for tests ("an idle
/// I/O thread uses no CPU"), not a speed measure.
pub fn thread_cpu(prefix: &str) -> Duration {
    let mut total = Duration::ZERO;
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return total;
    };
    for e in dir.flatten() {
        let named = std::fs::read_to_string(e.path().join("comm"))
            .is_ok_and(|n| n.trim_end().starts_with(prefix));
        if !named {
            continue;
        }
        if let Some(ns) = std::fs::read_to_string(e.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        {
            total += Duration::from_nanos(ns);
        } else if let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) {
            // After the `(comm)` field: state is field 3; utime and stime are 14 and 15.
            let rest = stat.rsplit_once(')').map_or("", |r| r.1);
            let f: Vec<u64> = rest
                .split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|v| v.parse().ok())
                .collect();
            total += Duration::from_millis(10 * f.iter().sum::<u64>());
        }
    }
    total
}

/// Watches the CPU time of the threads named `prefix*` for `window` and fails as soon as it
/// passes `bound` (naming both): threads that should be idle must stay idle. Returns the CPU
/// time used in the window.
pub fn assert_threads_stay_idle(prefix: &str, window: Duration, bound: Duration) -> Duration {
    let start = thread_cpu(prefix);
    let end = Instant::now() + window;
    loop {
        let used = thread_cpu(prefix).saturating_sub(start);
        assert!(
            used <= bound,
            "threads {prefix}* used {used:?} of CPU within {window:?} (bound {bound:?})"
        );
        if Instant::now() >= end {
            return used;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A component that forwards every message it handles to a crossbeam channel, so a test can
/// wait on what it handled (and on which thread).
pub struct Probe {
    pub tx: crossbeam::channel::Sender<(Message, String)>,
}

impl Component for Probe {
    fn handle(&mut self, msg: Message, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let thread = std::thread::current().name().unwrap_or("").to_owned();
        let _ = self.tx.send((msg, thread));
        Ok(())
    }
}

/// A component whose handler waits until the test opens the gate: a way to fill its mailbox
/// deterministically. Each handled message is reported on `handled`.
pub struct Gated {
    pub gate: crossbeam::channel::Receiver<()>,
    pub handled: crossbeam::channel::Sender<Message>,
}

impl Component for Gated {
    fn handle(&mut self, msg: Message, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let _ = self.gate.recv();
        let _ = self.handled.send(msg);
        Ok(())
    }
}

/// Serves each request by asking `downstream` (with `Context::request`) and answering with
/// its outcome, whatever it is, as a gateway does: the caller's reply handle lives in the
/// continuation. When its own request is refused, it has the continuation answer the caller
/// with the refusal (`run_then`), and sends the message handed back on `returned`.
pub struct Forwarder {
    pub downstream: &'static str,
    pub returned: crossbeam::channel::Sender<Message>,
}

impl Component for Forwarder {
    fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let caller = msg.take_reply_handle().ok_or("not a request")?;
        let asked = ctx.request(self.downstream, msg, SOON, move |_, _, outcome| {
            let _ = match outcome {
                Ok(reply) => caller.send(reply),
                Err(e) => caller.fail(e),
            };
        });
        if let Err(refused) = asked {
            let back = refused.run_then(self, ctx);
            let _ = self.returned.send(back);
        }
        Ok(())
    }
}

/// A component that runs, on its own reactor thread, the closures a test sends it: a way to
/// call `Context` methods from a test with the test's logic written inline.
pub struct Remote;

pub type Errand = Box<dyn FnOnce(&mut Context<'_, Remote>) + Send>;

/// The payload carrying an errand (a `Mutex` so the payload is `Sync`).
pub struct Order(Mutex<Option<Errand>>);

impl Component for Remote {
    fn handle(&mut self, msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let errand = msg
            .get::<Order>()
            .and_then(|o| o.0.lock().unwrap().take())
            .ok_or("not an errand")?;
        errand(ctx);
        Ok(())
    }
}

/// Sends `f` to be run by the `Remote` subscribed to `topic`.
pub fn run_on(
    rt: &Runtime,
    topic: &str,
    f: impl FnOnce(&mut Context<'_, Remote>) + Send + 'static,
) -> Result<(), SendError<Message>> {
    let errand: Errand = Box::new(f);
    rt.bus()
        .send(topic, Message::typed(Order(Mutex::new(Some(errand)))))
}

/// A runtime with one worker and a 1 s drain deadline.
pub fn runtime() -> anyhow::Result<Runtime> {
    Ok(Runtime::builder()
        .worker_threads(1)
        .drain_timeout(Duration::from_secs(1))
        .build()?)
}

/// Options subscribing a component to `topic`.
pub fn on(topic: &str) -> ComponentOptions {
    ComponentOptions::new().subscribe(topic)
}

/// The current thread's name ("" if it has none).
pub fn thread_name() -> String {
    std::thread::current().name().unwrap_or("").to_owned()
}

/// Occupies one worker of `pool` until the returned gate sender is dropped; returns once the
/// job is running.
pub fn occupy_worker(pool: &WorkerPool) -> anyhow::Result<crossbeam::channel::Sender<()>> {
    let (gate_tx, gate) = crossbeam::channel::unbounded::<()>();
    let (started_tx, started) = crossbeam::channel::bounded(1);
    pool.execute(move || {
        let _ = started_tx.send(());
        let _ = gate.recv();
    })?;
    started.recv_timeout(SOON)?;
    Ok(gate_tx)
}

/// `promtool check metrics` (Debian's `prometheus` package) on `text`: where it is installed
/// it must accept the text, lint included. CI installs it, so there its absence is a failure;
/// elsewhere the check is skipped with a note.
pub fn promtool_check(text: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if std::env::var_os("CI").is_some() {
                anyhow::bail!("promtool is not on PATH, and CI installs it (see .ci/run)");
            }
            eprintln!(
                "note: promtool not found; skipping `promtool check metrics` \
                 (apt-get install prometheus provides it)"
            );
            return Ok(());
        }
        Err(e) => return Err(e).context("running promtool"),
    };
    child
        .stdin
        .take()
        .context("promtool's stdin")?
        .write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "promtool check metrics failed ({}):\n{}{}\n--- text:\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    Ok(())
}
