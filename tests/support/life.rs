//! A component that journals its life, for the supervision and watch tests: every component
//! of a test writes `"<name>#<instance> start"`, `"... stop"`, `"... handled x"` into one
//! journal, in the order it happened, so a test can assert on the order of stops and starts
//! across components, and wait on the journal's feed for a line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, Sender};
use reactorium::{
    BoxError, Component, ComponentOptions, Context, Message, Restart, Runtime, SupervisorOptions,
};

use super::SOON;

/// The journal components write to: `"<name>#<instance> start"` etc., with a feed to wait on.
#[derive(Clone)]
pub struct Journal {
    lines: Arc<Mutex<Vec<String>>>,
    tx: Sender<String>,
}

impl Journal {
    pub fn with_feed() -> (Journal, Receiver<String>) {
        let (tx, rx) = channel::unbounded();
        (
            Journal {
                lines: Arc::default(),
                tx,
            },
            rx,
        )
    }

    pub fn log(&self, line: String) {
        self.lines.lock().unwrap().push(line.clone());
        let _ = self.tx.send(line);
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The lines about start and stop only, from index `from`.
    pub fn life_since(&self, from: usize) -> Vec<String> {
        self.lines()[from..]
            .iter()
            .filter(|l| l.ends_with(" start") || l.ends_with(" stop"))
            .cloned()
            .collect()
    }
}

/// Waits for the journal feed to show `line`; panics after `SOON`.
pub fn expect_line(feed: &Receiver<String>, line: &str) {
    let deadline = Instant::now() + SOON;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match feed.recv_timeout(left) {
            Ok(l) if l == line => return,
            Ok(_) => {}
            Err(_) => panic!("timed out waiting for journal line {line:?}"),
        }
    }
}

/// A component that journals its life. `"boom"` panics with `"boom in <name>"`, `"fail"`
/// returns the error `"failed on purpose"`, `"quit"` stops the instance; others are journalled.
pub struct Life {
    name: &'static str,
    instance: u64,
    journal: Journal,
}

pub fn life(name: &'static str, journal: &Journal) -> impl Fn() -> Life + Send + Sync + 'static {
    let journal = journal.clone();
    let instances = Arc::new(AtomicU64::new(0));
    move || Life {
        name,
        instance: instances.fetch_add(1, Ordering::SeqCst) + 1,
        journal: journal.clone(),
    }
}

impl Life {
    pub fn log(&self, what: &str) {
        self.journal
            .log(format!("{}#{} {what}", self.name, self.instance));
    }
}

impl Component for Life {
    fn start(&mut self, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        self.log("start");
        Ok(())
    }

    fn handle(&mut self, msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        match msg.as_json().and_then(|v| v.as_str()) {
            Some("boom") => panic!("boom in {}", self.name),
            Some("fail") => Err("failed on purpose".into()),
            Some("quit") => {
                ctx.stop();
                Ok(())
            }
            Some(other) => {
                self.log(&format!("handled {other}"));
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn stop(&mut self, _ctx: &mut Context<'_, Self>) {
        self.log("stop");
    }
}

pub fn text(s: &str) -> Message {
    Message::json(s.into())
}

pub fn send_to(rt: &Runtime, name: &str, s: &str) {
    rt.bus()
        .send_to(name, text(s))
        .unwrap_or_else(|e| panic!("send to {name}: {e}"));
}

pub fn runtime_with(root: SupervisorOptions) -> anyhow::Result<Runtime> {
    Ok(Runtime::builder()
        .worker_threads(1)
        .drain_timeout(Duration::from_secs(1))
        .supervisor(root)
        .build()?)
}

pub fn temporary() -> ComponentOptions {
    ComponentOptions::new().restart(Restart::Temporary)
}

pub fn permanent() -> ComponentOptions {
    ComponentOptions::new().restart(Restart::Permanent)
}
